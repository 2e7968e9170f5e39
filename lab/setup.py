"""pik3s-lab's version is pik3s's (galaxy.yml, one directory up), and it needs exactly that pik3s."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).resolve().parent
GALAXY = ROOT.parent / "galaxy.yml"
PKG_INFO = ROOT / "PKG-INFO"  # building from this package's own sdist
if GALAXY.is_file():  # in the repository: pik3s's own reader of galaxy.yml's version
    VERSION = runpy.run_path(str(ROOT.parent / "src/pik3s/_version.py"))["read_version"](GALAXY)
else:
    VERSION = re.search(r"^Version:\s*(\S+)", PKG_INFO.read_text(), re.M).group(1)  # type: ignore[union-attr]

setup(version=VERSION, install_requires=[f"pik3s=={VERSION}", "PyYAML>=6,<7"])
