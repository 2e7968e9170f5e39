"""Build hooks of the pik3s package (the metadata is in pyproject.toml).

* The version is galaxy.yml's (pik3s/_version.py reads it; one number for the
  package and the collection), stamped into the package as pik3s/_build.py.
* The wheel carries the pik3s.cluster collection, built with ansible-galaxy
  from this tree (galaxy.yml's build_ignore says what it leaves out) and
  installed beside the package as site-packages/ansible_collections/pik3s/
  cluster, as the `ansible` package bundles its collections. An editable
  install runs the checkout's collection and gets neither.
"""

from __future__ import annotations

import runpy
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
VERSION = runpy.run_path(str(ROOT / "src/pik3s/_version.py"))["read_version"](ROOT / "galaxy.yml")


class BuildWithCollection(build_py):
    def run(self) -> None:
        lib = Path(self.build_lib)
        if not self.editable_mode:
            shutil.rmtree(lib, ignore_errors=True)  # setuptools keeps build/lib between builds: no stale files
        super().run()
        if self.editable_mode:
            return
        (lib / "pik3s/_build.py").write_text(
            f'"""Written by setup.py when this package was built."""\n\nVERSION = "{VERSION}"\n')
        galaxy = [sys.executable, "-m", "ansible.cli.galaxy", "collection"]
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run([*galaxy, "build", "--force", "--output-path", tmp, str(ROOT)],
                           check=True, stdout=subprocess.DEVNULL)
            (tarball,) = Path(tmp).glob("pik3s-cluster-*.tar.gz")
            subprocess.run([*galaxy, "install", "--offline", "--force", "--no-deps", "-p", str(lib), str(tarball)],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not (lib / "ansible_collections/pik3s/cluster/MANIFEST.json").is_file():
            raise RuntimeError("the pik3s.cluster collection was not installed into the wheel's tree")


setup(version=VERSION, cmdclass={"build_py": BuildWithCollection})
