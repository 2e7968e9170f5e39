"""The lab release mirror: GitHub-shaped tree, real checksums, update.k3s.io-style channels."""

from __future__ import annotations

import hashlib
import http.client
import itertools
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from pik3s_lab import mirror, mirror_server, releases

DOWNLOAD = releases.RELEASE_PATH.lstrip("/")


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mirror")
    mirror.build_tree(root)
    return root


@pytest.fixture(scope="module")
def served(tree: Path) -> Iterator[tuple[str, int]]:
    server = mirror_server.make_server(tree, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield "127.0.0.1", int(server.server_address[1])
    server.shutdown()


def _get(addr: tuple[str, int], path: str) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection(*addr, timeout=5)
    conn.request("GET", path)
    return conn.getresponse()


def test_two_versions_one_minor_apart() -> None:
    minors = sorted({int(v.split(".")[1]) for v in releases.VERSIONS})
    assert len(releases.VERSIONS) >= 2
    assert any(b - a == 1 for a, b in itertools.pairwise(minors))


@pytest.mark.parametrize("version", releases.VERSIONS)
def test_tree_has_every_asset_and_checksums_are_real(tree: Path, version: str) -> None:
    vdir = tree / DOWNLOAD / version
    names = {p.name for p in vdir.iterdir()}
    assert names == {
        "k3s", "k3s-arm64", "k3s-armhf", "sha256sum-amd64.txt", "sha256sum-arm64.txt", "sha256sum-arm.txt",
        "k3s-airgap-images-amd64.tar", "k3s-airgap-images-amd64.tar.gz",
        "k3s-airgap-images-arm64.tar", "k3s-airgap-images-arm64.tar.gz",
        "k3s-airgap-images-arm.tar", "k3s-airgap-images-arm.tar.gz", "charts",
    }
    for _arch, (binary, sumfile, image_arch) in releases.ASSETS.items():
        lines = (vdir / sumfile).read_text().splitlines()
        listed = dict(reversed(line.split("  ")) for line in lines)
        assert set(listed) == {binary, f"k3s-airgap-images-{image_arch}.tar", f"k3s-airgap-images-{image_arch}.tar.gz"}
        for name, digest in listed.items():
            assert hashlib.sha256((vdir / name).read_bytes()).hexdigest() == digest


def test_assets_differ_per_arch_and_version(tree: Path) -> None:
    digests = {hashlib.sha256((tree / DOWNLOAD / v / releases.ASSETS[a][0]).read_bytes()).hexdigest()
               for v in releases.VERSIONS for a in releases.ASSETS}
    assert len(digests) == len(releases.VERSIONS) * len(releases.ASSETS)


def test_build_is_deterministic(tmp_path: Path, tree: Path) -> None:
    assert mirror.build_tree(tmp_path) == mirror.build_tree(tree)


def test_download_with_encoded_plus(served: tuple[str, int], tree: Path) -> None:
    version = releases.VERSIONS[-1]
    resp = _get(served, f"{releases.RELEASE_PATH}/{urllib.parse.quote(version)}/k3s-arm64")
    assert resp.status == 200
    assert resp.read() == (tree / DOWNLOAD / version / "k3s-arm64").read_bytes()


@pytest.mark.parametrize(("channel", "version"), sorted(releases.CHANNELS.items()))
def test_channels_redirect_to_release_tag(served: tuple[str, int], channel: str, version: str) -> None:
    resp = _get(served, f"{releases.CHANNEL_PATH}/{channel}")
    assert resp.status == 302
    location = resp.getheader("Location") or ""
    assert location.endswith(f"{releases.TAG_PATH}/{version}")  # '+' literal, as GitHub's tag URLs
    assert location.rsplit("/", 1)[1] == version
    assert _get(served, urllib.parse.urlsplit(location).path).status == 200


def test_unknown_channel_version_and_listing_are_404(served: tuple[str, int]) -> None:
    assert _get(served, f"{releases.CHANNEL_PATH}/v1.99").status == 404
    assert _get(served, f"{releases.RELEASE_PATH}/v9.9.9%2Bk3s1/k3s").status == 404
    assert _get(served, f"{releases.RELEASE_PATH}/").status == 404
    assert _get(served, "/channels.json").status == 404


def test_the_simulator_is_published_as_one_executable_with_its_release_in_a_generated_module(
        tmp_path: Path) -> None:
    """The package built into a zipapp: the version and arch in _published.py (not substituted into the
    sources), every module inside, nothing of the build machine's, the same bytes every time."""
    import io
    import subprocess
    import zipfile

    asset = mirror.simulator_asset("v1.30.8+k3s1", "armhf")
    assert asset.startswith(b"#!/usr/bin/env python3\n")
    assert asset == mirror.simulator_asset("v1.30.8+k3s1", "armhf")  # reproducible: checksums stay put
    with zipfile.ZipFile(io.BytesIO(asset)) as zf:
        names = {n for n in zf.namelist() if not n.endswith("/")}
        published = zf.read(f"{mirror.SIM_PACKAGE}/_published.py").decode()
    sources = {f"{mirror.SIM_PACKAGE}/{f.name}" for f in mirror.SIMULATOR.glob("*.py")}
    assert names == sources | {"__main__.py", f"{mirror.SIM_PACKAGE}/_published.py"}
    assert 'VERSION = "v1.30.8+k3s1"' in published and 'ARCH = "armhf"' in published
    exe = tmp_path / "k3s"
    exe.write_bytes(mirror.simulator_asset("v1.31.4+k3s1", "amd64"))
    exe.chmod(0o755)
    out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[0] == "k3s version v1.31.4+k3s1 (pik3s K3s simulator)"


@pytest.mark.parametrize(("lab_arch", "machine"), [("amd64", "x86_64"), ("arm64", "aarch64"), ("armhf", "armv7l")])
def test_lab_release_table_agrees_with_the_roles_arch_table(lab_arch: str, machine: str) -> None:
    """Two independent tables of one fact: the mirror's (the world) and the roles' (our knowledge of it)."""
    from ansible_collections.pik3s.cluster.plugins.module_utils.k3s_arch import arch_assets
    binary, sumfile, image_arch = releases.ASSETS[lab_arch]
    facts = arch_assets(machine)
    assert (facts["asset"], facts["checksum_file"], facts["image_arch"]) == (binary, sumfile, image_arch)


def test_chart_repository_is_one_helm_reads(tree: Path) -> None:
    """index.yaml names every stand-in with the digest of its archive, which holds <name>/Chart.yaml."""
    import tarfile

    import yaml
    for where in (tree / releases.CHART_PATH.lstrip("/"), tree / DOWNLOAD / releases.VERSIONS[-1] / "charts"):
        index = yaml.safe_load((where / "index.yaml").read_text())
        for name, version, image, tag in releases.CHARTS:
            (entry,) = index["entries"][name]
            data = (where / entry["urls"][0]).read_bytes()
            assert entry["version"] == version and hashlib.sha256(data).hexdigest() == entry["digest"]
            with tarfile.open(where / entry["urls"][0]) as tar:
                chart = yaml.safe_load(tar.extractfile(f"{name}/Chart.yaml").read())  # type: ignore[union-attr]
                values = yaml.safe_load(tar.extractfile(f"{name}/values.yaml").read())  # type: ignore[union-attr]
            assert (chart["name"], chart["version"]) == (name, version)
            assert f"{values['image']['registry']}/{values['image']['repository']}:{values['image']['tag']}" == \
                f"{image}:{tag}"


def test_lab_charts_carry_the_versions_pik3s_pins() -> None:
    """The stand-ins and the add-on catalogue name the same charts and versions."""
    from ansible_collections.pik3s.cluster.plugins.plugin_utils.k3s_addons import CATALOGUE
    lab = {name: version for name, version, _image, _tag in releases.CHARTS}
    for addon in CATALOGUE.values():
        assert lab.get(addon["chart"]) == addon["version"], addon["chart"]
