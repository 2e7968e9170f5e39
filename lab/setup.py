"""pik3s-lab's version is pik3s's (galaxy.yml, one directory up), and it needs exactly that pik3s."""

from __future__ import annotations

import re
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).resolve().parent
GALAXY = ROOT.parent / "galaxy.yml"
PKG_INFO = ROOT / "PKG-INFO"  # building from this package's own sdist
if GALAXY.is_file():
    VERSION = re.search(r"^version:\s*['\"]?([^'\"\s#]+)", GALAXY.read_text(), re.M).group(1)  # type: ignore[union-attr]
else:
    VERSION = re.search(r"^Version:\s*(\S+)", PKG_INFO.read_text(), re.M).group(1)  # type: ignore[union-attr]

setup(version=VERSION, install_requires=[f"pik3s=={VERSION}", "PyYAML>=6,<7"])
