"""The execution environment for AWX / Automation Platform: `scripts/ee-context` writes a valid
ansible-builder build context offline, its pins match the ones pik3s declares, and the artifacts it
puts in work as the image lays them out (the collection in a collections path, pik3s from its wheel:
the API and CLI find the collection and validate an inventory)."""

from __future__ import annotations

import email.parser
import json
import os
import re
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def context(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ctx = tmp_path_factory.mktemp("ee") / "context"
    env = {**os.environ, "PIK3S_BIN": str(BIN), "PATH": f"{BIN}:{os.environ['PATH']}"}  # this venv's tools
    proc = subprocess.run([str(ROOT / "scripts/ee-context"), str(ctx)], capture_output=True, text=True,
                          timeout=300, check=False, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return ctx


def test_the_context_is_complete(context: Path) -> None:
    containerfile = (context / "Containerfile").read_text()
    ee = yaml.safe_load((ROOT / "execution-environment.yml").read_text())
    assert containerfile.startswith(f'ARG EE_BASE_IMAGE="{ee["images"]["base_image"]["name"]}"')
    assert 'ARG PYCMD="/usr/bin/python3.11"' in containerfile
    # Four stages, the collection installed from the file in the galaxy stage, pik3s in the final one.
    assert re.findall(r"^FROM .* AS (\w+)$", containerfile, re.M) == ["base", "galaxy", "builder", "final"]
    assert "ansible-galaxy collection install $ANSIBLE_GALAXY_CLI_COLLECTION_OPTS -r requirements.yml" in containerfile
    final = containerfile.split("AS final", 1)[1]
    assert "COPY _build/pik3s/ /tmp/pik3s/" in final
    assert "pip install --no-cache-dir --no-deps /tmp/pik3s/pik3s-*.whl" in final
    assert yaml.safe_load((context / "_build/requirements.yml").read_text()) == {
        "collections": [{"name": "/build/pik3s/pik3s-cluster.tar.gz", "type": "file"}]}
    assert "openssh-clients" in (context / "_build/bindep.txt").read_text()


def test_the_pins_are_the_ones_pik3s_declares(context: Path) -> None:
    """ansible-core/runner and the Python dependencies: the EE takes what pyproject.toml and
    meta/runtime.yml say, so the two cannot drift apart."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {re.split(r"[<>=!~ ]", d, maxsplit=1)[0].lower(): d.replace(" ", "") for d in project["dependencies"]}
    containerfile = (context / "Containerfile").read_text()
    refs = re.search(r'^ARG ANSIBLE_INSTALL_REFS="(.*)"$', containerfile, re.M).group(1).split()  # type: ignore[union-attr]
    python = (context / "_build/requirements.txt").read_text().split()
    assert sorted([*refs, *python]) == sorted(declared.values())
    runtime = yaml.safe_load((ROOT / "meta/runtime.yml").read_text())["requires_ansible"]
    assert runtime == ">=2.17.0,<2.20.0" and declared["ansible-core"] == "ansible-core>=2.17,<2.20"


def test_the_artifacts_are_this_checkout(context: Path) -> None:
    galaxy = yaml.safe_load((ROOT / "galaxy.yml").read_text())
    with tarfile.open(context / "_build/pik3s/pik3s-cluster.tar.gz") as tar:
        manifest = json.load(tar.extractfile("MANIFEST.json"))  # type: ignore[arg-type]
        names = tar.getnames()
    info = manifest["collection_info"]
    assert (info["namespace"], info["name"], info["version"]) == ("pik3s", "cluster", galaxy["version"])
    assert "plugins/plugin_utils/k3s_rules.py" in names and "playbooks/site.yml" in names
    assert not any(n.startswith(("build/", "context/", "src/", ".venv/")) for n in names)
    (wheel,) = (context / "_build/pik3s").glob("pik3s-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        meta = email.parser.Parser().parsestr(zf.read(next(n for n in zf.namelist()
                                                           if n.endswith("METADATA"))).decode())
        names = zf.namelist()
        bundled = json.loads(zf.read("ansible_collections/pik3s/cluster/MANIFEST.json"))["collection_info"]
    assert "pik3s/api.py" in names and "pik3s/_build.py" in names
    assert not any(n.startswith(("pik3s_lab/", "pik3s/lab/")) for n in names)  # the lab is its own package
    assert meta["Version"] == galaxy["version"] == bundled["version"]  # one version, galaxy.yml's


def test_pik3s_runs_as_the_image_lays_it_out(context: Path, tmp_path: Path) -> None:
    """The collection installed from the tarball into a collections path (the image's
    /usr/share/ansible/collections), pik3s from the wheel, run from elsewhere than this checkout."""
    collections = tmp_path / "collections"
    site = tmp_path / "site"
    subprocess.run([str(BIN / "ansible-galaxy"), "collection", "install", "--force", "-p", str(collections),
                    str(context / "_build/pik3s/pik3s-cluster.tar.gz")], check=True, capture_output=True)
    (wheel,) = (context / "_build/pik3s").glob("pik3s-*.whl")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", str(site),
                    str(wheel)], check=True, capture_output=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIK3S_", "ANSIBLE_"))}
    env.update(PYTHONPATH=str(site), ANSIBLE_COLLECTIONS_PATH=str(collections),
               PATH=f"{BIN}:{os.environ['PATH']}")
    sample = collections / "ansible_collections/pik3s/cluster/inventories/sample/hosts.yml"
    code = ("import pik3s, pik3s.inventory as i, sys; "
            "print(pik3s.__file__); print(i.collection_dir()); "
            f"v = i.validate({str(sample)!r}); print(v.ok, len(v.hosts))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    where, collection, verdict = proc.stdout.split("\n")[:3]
    assert where.startswith(str(site)) and collection == str(collections / "ansible_collections/pik3s/cluster")
    assert verdict == "True 5"
