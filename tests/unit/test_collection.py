"""The repository is the pik3s.cluster collection: it resolves from a
checkout and builds into a tarball that installs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _ansible(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    return subprocess.run([str(BIN / args[0]), *args[1:]], cwd=cwd, capture_output=True, text=True,
                          env={**base, **(env or {})}, check=False, timeout=120)


def test_checkout_resolves_pik3s_cluster() -> None:
    res = _ansible("ansible-galaxy", "collection", "list", "pik3s.cluster", "--format", "json")
    assert res.returncode == 0, res.stderr
    found = json.loads(res.stdout)
    assert found == {str(ROOT / "collections" / "ansible_collections"): {"pik3s.cluster": {"version": "0.1.0"}}}


def test_galaxy_metadata() -> None:
    galaxy = yaml.safe_load((ROOT / "galaxy.yml").read_text())
    assert (galaxy["namespace"], galaxy["name"], galaxy["version"]) == ("pik3s", "cluster", "0.1.0")
    assert galaxy["license"] == ["Apache-2.0"]


def test_requires_ansible_matches_the_python_package_bound() -> None:
    runtime = yaml.safe_load((ROOT / "meta" / "runtime.yml").read_text())
    pyproject = (ROOT / "pyproject.toml").read_text()
    low, high = re.fullmatch(r">=(\d+\.\d+)\.0,<(\d+\.\d+)\.0", runtime["requires_ansible"]).groups()  # type: ignore[union-attr]
    assert f'"ansible-core>={low},<{high}"' in pyproject


def test_build_and_install(tmp_path: Path) -> None:
    built = _ansible("ansible-galaxy", "collection", "build", "--output-path", str(tmp_path))
    assert built.returncode == 0, built.stderr
    tarball = tmp_path / "pik3s-cluster-0.1.0.tar.gz"
    with tarfile.open(tarball) as tf:
        names = tf.getnames()
    assert {"MANIFEST.json", "FILES.json", "meta/runtime.yml", "README.md", "LICENSE"} <= set(names)
    leaked = [n for n in names if n.split("/")[0] in ("src", "collections", ".ci", ".github", ".venv", ".tox")
              or n in ("ansible.cfg", "pyproject.toml", "tox.ini", "tests/unit/test_collection.py")
              or n.startswith(("tests/integration", "tests/unit/lab", "tests/callback_plugins", "scripts/"))]
    assert leaked == []
    dest = tmp_path / "installed"
    inst = _ansible("ansible-galaxy", "collection", "install", "--offline", "--force", "-p", str(dest), str(tarball),
                    cwd=tmp_path)
    assert inst.returncode == 0, inst.stderr
    listed = _ansible("ansible-galaxy", "collection", "list", "pik3s.cluster", "--format", "json",
                      cwd=tmp_path, env={"ANSIBLE_COLLECTIONS_PATH": str(dest)})
    assert str(dest / "ansible_collections") in json.loads(listed.stdout)
