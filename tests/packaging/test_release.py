"""The release artifacts as users get them: scripts/release from a tag (sdists, wheels, the collection
tarball, CHANGELOG.rst, versions agreeing, twine check), and the wheel alone in a fresh venv."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import pik3s
from tests.conftest import ROOT, build_wheel, fresh_venv, outside_env

VERSION = pik3s.__version__


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clone of this checkout's HEAD (what is committed), where the tests may tag."""
    dest = tmp_path_factory.mktemp("release") / "repo"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(dest)], check=True)
    for tag in (f"v{VERSION}", "v9.9.9"):
        subprocess.run(["git", "-C", str(dest), "tag", tag], check=True)
    return dest


def _release(repo: Path, tag: str, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(ROOT / "scripts/release"), tag, "--repo", str(repo), "--out", str(out)],
                          capture_output=True, text=True,
                          check=False, env={**outside_env(Path(sys.executable).parent, Path.home()),
                                            "PIK3S_PYTHON": sys.executable})


def test_a_release_builds_every_artifact_from_the_tag(repo: Path, tmp_path: Path) -> None:
    res = _release(repo, f"v{VERSION}", tmp_path)
    assert res.returncode == 0, res.stderr
    summary = json.loads((tmp_path / "release.json").read_text())
    assert summary["version"] == VERSION and summary["twine_check"] == "passed"
    if importlib.util.find_spec("galaxy_importer"):  # the lint env has it (the release extra)
        assert summary["galaxy_importer"] == "passed"
    assert sorted(summary["artifacts"]) == sorted([
        f"pik3s-{VERSION}-py3-none-any.whl", f"pik3s-{VERSION}.tar.gz", f"pik3s-cluster-{VERSION}.tar.gz",
        f"pik3s_lab-{VERSION}-py3-none-any.whl", f"pik3s_lab-{VERSION}.tar.gz"])
    changelog = (tmp_path / "CHANGELOG.rst").read_text()
    assert changelog.startswith("===========================\npik3s.cluster Release Notes\n")
    assert f"\nv{VERSION}\n" in changelog
    with tarfile.open(tmp_path / f"pik3s-cluster-{VERSION}.tar.gz") as tf:
        names = tf.getnames()
    assert "CHANGELOG.rst" in names and "roles/k3s_server/tasks/main.yml" in names
    assert not [n for n in names if n.startswith(("lab/", "src/", "molecule/", "scripts/", ".ci/", "tests/unit",
                                                  "tests/integration", "inventories/lab"))]
    with zipfile.ZipFile(tmp_path / f"pik3s-{VERSION}-py3-none-any.whl") as zf:
        wheel = zf.namelist()
    assert "ansible_collections/pik3s/cluster/roles/k3s_server/tasks/main.yml" in wheel
    assert not [n for n in wheel if n.startswith("pik3s_lab")]
    assert "release: error" not in res.stderr


def test_a_tag_that_is_not_the_version_is_refused(repo: Path, tmp_path: Path) -> None:
    res = _release(repo, "v9.9.9", tmp_path)
    assert res.returncode == 1
    assert res.stderr == (f"release: error: tag v9.9.9 does not match galaxy.yml's version {VERSION}: "
                          f"tag the release v{VERSION}\n")


def test_the_wheel_alone_runs_from_anywhere(tmp_path: Path) -> None:
    """`pip install pik3s-*.whl` into a fresh venv: pik3s finds the collection its wheel carries, with no
    checkout and no environment variable, and validates an inventory; the lab's verbs say where they are."""
    bindir = fresh_venv(tmp_path / "venv", build_wheel(tmp_path / "dist"))
    work = tmp_path / "elsewhere"
    shutil.copytree(ROOT / "inventories/sample", work / "inventory")
    env = outside_env(bindir, tmp_path / "home")
    version = subprocess.run(["pik3s", "--version"], cwd=work, env=env, capture_output=True, text=True, check=True)
    site = next((tmp_path / "venv/lib").glob("python3*/site-packages"))
    assert version.stdout.splitlines() == [
        f"pik3s {VERSION}", f"pik3s.cluster {VERSION} (bundled: {site}/ansible_collections/pik3s/cluster)"]
    valid = subprocess.run(["pik3s", "inventory", "validate", "-i", "inventory/hosts.yml"], cwd=work, env=env,
                           capture_output=True, text=True, check=False)
    assert valid.returncode == 0, valid.stdout + valid.stderr
    lab = subprocess.run(["pik3s", "lab", "status"], cwd=work, env=env, capture_output=True, text=True, check=False)
    assert lab.returncode == 2 and "is in the pik3s-lab package" in lab.stderr


def test_the_lab_package_installed_is_the_checkout_s_lab(tmp_path: Path) -> None:
    """pik3s-lab from its wheel (beside pik3s's): the verbs are back, and it ships every file the lab
    uses: the image recipe (the same recipe hash, so the same images), the simulator's modules (the
    same published bytes), the inventory script (executable)."""
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "--disable-pip-version-check", "-w", str(dist), str(ROOT / "lab")], check=True, capture_output=True)
    (lab_wheel,) = dist.glob("pik3s_lab-*.whl")
    bindir = fresh_venv(tmp_path / "venv", build_wheel(dist), lab_wheel)
    site = next((tmp_path / "venv/lib").glob("python3*/site-packages"))
    env = outside_env(bindir, tmp_path / "home")
    code = ("import hashlib, os, pik3s_lab\nfrom pik3s_lab import cli, image, mirror\n"
            "print(os.path.dirname(pik3s_lab.__file__))\n"
            "print(' '.join(image.recipe_hash(a) for a in image.ARCHES))\n"
            "print(hashlib.sha256(mirror.simulator_asset('v1.31.4+k3s1', 'arm64')).hexdigest())\n"
            "print(os.access(cli.INVENTORY / 'hosts', os.X_OK), (cli.INVENTORY / 'group_vars/all.yml').is_file())")
    res = subprocess.run([str(bindir / "python"), "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         check=True)
    where, hashes, asset, inventory = res.stdout.splitlines()
    from pik3s_lab import image, mirror

    assert Path(where) == site / "pik3s_lab"  # the installed one, not this checkout's
    assert hashes == " ".join(image.recipe_hash(a) for a in image.ARCHES)
    assert asset == hashlib.sha256(mirror.simulator_asset("v1.31.4+k3s1", "arm64")).hexdigest()
    assert inventory == "True True"
    status = subprocess.run(["pik3s", "lab", "status", "--name", "nosuchlab", "-o", "json"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, check=False)
    assert (status.returncode, status.stdout.strip()) == (3, '{"name": "nosuchlab", "up": false}')
