"""pik3s as users install it: one version, the collection it runs (and refuses), the lab kept out of
the product's imports."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import pik3s
from pik3s import collection
from pik3s.errors import Pik3sError
from tests.conftest import ROOT

PIK3S = str(Path(sys.executable).with_name("pik3s"))


def _installed(root: Path, version: str) -> Path:
    """A pik3s.cluster as ansible-galaxy installs it (MANIFEST.json) under ``root``."""
    here = root / "ansible_collections/pik3s/cluster"
    here.mkdir(parents=True)
    (here / "MANIFEST.json").write_text(json.dumps({"collection_info": {
        "namespace": "pik3s", "name": "cluster", "version": version}}))
    return root


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in ("PIK3S_COLLECTIONS_PATH", "ANSIBLE_COLLECTIONS_PATH", collection.ALLOW_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path


def test_one_version_for_the_package_and_the_collection() -> None:
    galaxy = (ROOT / "galaxy.yml").read_text()
    assert f"\nversion: {pik3s.__version__}\n" in galaxy
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject and "\nversion =" not in pyproject  # written nowhere else
    assert collection.collection_version(ROOT / "collections") == pik3s.__version__


def test_a_checkout_runs_its_own_collection(clean_env: Path) -> None:
    found = collection.find_collection()
    assert (found.origin, found.root, found.version) == ("checkout", ROOT / "collections", pik3s.__version__)
    assert found.notes == ()


def test_a_collection_of_another_version_is_refused(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old = _installed(clean_env / "old", "0.0.9")
    monkeypatch.setenv("ANSIBLE_COLLECTIONS_PATH", str(old))
    with pytest.raises(Pik3sError) as err:
        collection.find_collection()
    assert str(err.value) == (
        f"the pik3s.cluster collection at {old}/ansible_collections/pik3s/cluster (ANSIBLE_COLLECTIONS_PATH) is "
        f"version 0.0.9, and this is pik3s {pik3s.__version__}: the driver and its playbooks must be the same "
        f"release. Install pik3s.cluster {pik3s.__version__}, or remove that one from the path, or set "
        "PIK3S_ALLOW_COLLECTION_MISMATCH=1 to run it anyway")
    monkeypatch.setenv("PIK3S_ALLOW_COLLECTION_MISMATCH", "1")  # told otherwise: runs it, and says so
    found = collection.find_collection()
    assert (found.root, found.version) == (old, "0.0.9")
    assert found.notes == (f"running pik3s.cluster 0.0.9 from {old}/ansible_collections/pik3s/cluster "
                           f"(ANSIBLE_COLLECTIONS_PATH) with pik3s {pik3s.__version__} "
                           "(PIK3S_ALLOW_COLLECTION_MISMATCH=1)",)


def test_the_same_version_in_the_ansible_path_is_run(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    same = _installed(clean_env / "ee", pik3s.__version__)  # as an execution environment installs it
    monkeypatch.setenv("ANSIBLE_COLLECTIONS_PATH", f"{clean_env / 'empty'}:{same}")
    found = collection.find_collection()
    assert (found.origin, found.root) == ("ANSIBLE_COLLECTIONS_PATH", same)


def test_another_version_in_the_default_path_is_reported_not_run(clean_env: Path) -> None:
    user = _installed(clean_env / "home/.ansible/collections", "0.0.9")
    found = collection.find_collection()
    assert found.origin == "checkout"
    assert found.notes == (f"{user}/ansible_collections/pik3s/cluster holds pik3s.cluster 0.0.9: not used "
                           f"(pik3s {pik3s.__version__} runs its checkout collection {pik3s.__version__})",)


def test_version_prints_both(clean_env: Path) -> None:
    out = subprocess.run([PIK3S, "--version"], capture_output=True, text=True, check=True,
                         env={**os.environ, "HOME": str(clean_env / "home")}).stdout
    assert out.splitlines() == [
        f"pik3s {pik3s.__version__}",
        f"pik3s.cluster {pik3s.__version__} (checkout: {ROOT}/collections/ansible_collections/pik3s/cluster)"]


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_the_product_never_imports_the_lab() -> None:
    """Only the hand-over of `pik3s lab`/`pik3s demo` in cli.main names the lab package."""
    reaching = {str(p.relative_to(ROOT)): sorted(m for m in _imports(p) if m.split(".")[0] == "pik3s_lab")
                for p in sorted((ROOT / "src/pik3s").rglob("*.py"))}
    assert {p: m for p, m in reaching.items() if m} == {"src/pik3s/cli.py": ["pik3s_lab"]}
    # and at run time: a product verb's start-up loads nothing of it
    code = ("import sys; from pik3s import cli\n"
            "try:\n    cli.main(['deploy', '--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.startswith('pik3s_lab')), file=sys.stderr)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stderr.strip() == "[]"


def test_the_lab_verbs_without_the_lab_package_say_where_it_is() -> None:
    code = ("import sys; sys.modules['pik3s_lab'] = None  # as if pik3s-lab were not installed\n"
            "from pik3s import cli\nsys.exit(cli.main(['lab', 'status']))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert res.returncode == 2
    assert res.stderr == ("pik3s: error: `pik3s lab` is in the pik3s-lab package (test equipment, apart from "
                          "pik3s): pip install pik3s-lab, or from a checkout: pip install -e ./lab\n")
