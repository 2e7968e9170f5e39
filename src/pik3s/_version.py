"""pik3s's version. It is written once, as the ``version`` of ``galaxy.yml``: the
collection and the Python package are released together under that number.
A built package carries it in ``pik3s/_build.py`` (written by ``setup.py``); a
checkout reads ``galaxy.yml`` itself. Standard library only: ``setup.py`` runs
this file to stamp the package's metadata.
"""

from __future__ import annotations

import re
from pathlib import Path

GALAXY_YML = Path(__file__).resolve().parents[2] / "galaxy.yml"
_VERSION_LINE = re.compile(r"^version:\s*['\"]?([0-9][0-9A-Za-z.+-]*)['\"]?\s*(?:#.*)?$", re.M)


def read_version(galaxy_yml: Path) -> str:
    """The ``version:`` of a collection's galaxy.yml (a top-level scalar line)."""
    match = _VERSION_LINE.search(galaxy_yml.read_text())
    if not match:
        raise ValueError(f"{galaxy_yml} has no 'version:' line")
    return match.group(1)


def _version() -> str:
    try:
        from pik3s._build import VERSION  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return read_version(GALAXY_YML)
    return str(VERSION)


__version__ = _version()
