"""Settling and verifying a K3s release on the controller, with a fake network."""

from __future__ import annotations

import hashlib
import io
import urllib.error
from email.message import Message
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.pik3s.cluster.plugins.plugin_utils import k3s_release as r

V = "v1.31.4+k3s1"
BASE = "https://releases.example/k3s-io/k3s/releases/download"
CHANNELS = "https://channels.example/v1-release/channels"
BIN = {"k3s": b"amd64 binary", "k3s-arm64": b"arm64 binary", "k3s-armhf": b"armhf binary"}
SUMS = {"sha256sum-amd64.txt": "k3s", "sha256sum-arm64.txt": "k3s-arm64", "sha256sum-arm.txt": "k3s-armhf"}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class FakeNet:
    """Serves a release and a channel service; counts what is fetched."""

    def __init__(self, binaries: dict[str, bytes] | None = None, served: dict[str, bytes] | None = None):
        self.files: dict[str, bytes] = {}
        binaries = binaries or BIN
        for sumfile, asset in SUMS.items():
            self.files[f"{BASE}/v1.31.4%2Bk3s1/{sumfile}"] = f"{sha(binaries[asset])}  {asset}\n".encode()
            self.files[f"{BASE}/v1.31.4%2Bk3s1/{asset}"] = (served or binaries)[asset]
        self.fetched: list[str] = []

    def __call__(self, url: str, follow_redirects: str = "safe") -> Any:
        self.fetched.append(url)
        if url.startswith(CHANNELS):
            name = url.rsplit("/", 1)[1]
            if name in ("stable", "v1.31"):
                headers = Message()
                headers["Location"] = "https://github.example/k3s-io/k3s/releases/tag/v1.31.4%2Bk3s1"
                raise urllib.error.HTTPError(headers["Location"], 302, "Found", headers, io.BytesIO())
            raise urllib.error.HTTPError(url, 404, "Not Found", Message(), io.BytesIO())
        if url not in self.files:
            raise urllib.error.HTTPError(url, 404, "Not Found", Message(), io.BytesIO())
        return io.BytesIO(self.files[url])


@pytest.mark.parametrize(("version", "channel", "expected"), [
    (V, "stable", V),
    ("", "stable", V),
    ("", "v1.31", V),
])
def test_resolve(version: str, channel: str, expected: str) -> None:
    assert r.resolve_version(version, channel, CHANNELS, "", FakeNet()) == expected


@pytest.mark.parametrize(("version", "channel", "airgap", "message"), [
    ("", "v9.99", "", "the K3s channel 'v9.99' could not be resolved: https://channels.example/v1-release/channels/"
                      "v9.99 answered 404 Not Found"),
    ("1.31.4", "stable", "", "K3s version '1.31.4' is not a release name like v1.31.4+k3s1"),
    ("", "stable", "/bundle", "k3s_airgap_dir is set: set k3s_version too"),
])
def test_resolve_refusals(version: str, channel: str, airgap: str, message: str) -> None:
    with pytest.raises(r.ReleaseError) as err:
        r.resolve_version(version, channel, CHANNELS, airgap, FakeNet())
    assert message in str(err.value)


def test_downloads_each_cpu_once_verified_then_reuses_the_cache(tmp_path: Path) -> None:
    net = FakeNet()
    out = r.prepare(V, ["x86_64", "aarch64", "aarch64", "armv7l"], BASE, str(tmp_path), "", net)
    assert {n: a["ok"] for n, a in out["assets"].items()} == {"k3s": True, "k3s-arm64": True, "k3s-armhf": True}
    assert (tmp_path / V / "k3s-arm64").read_bytes() == BIN["k3s-arm64"]
    assert out["assets"]["k3s"]["sha256"] == sha(BIN["k3s"])
    assert len(net.fetched) == 6  # three checksum files, three binaries
    again = FakeNet()
    assert r.prepare(V, ["x86_64"], BASE, str(tmp_path), "", again)["assets"]["k3s"]["ok"]
    assert again.fetched == []
    assert out["known_binaries"] == {sha(BIN[a]): V for a in BIN}


def test_a_tampered_download_is_refused_and_not_kept(tmp_path: Path) -> None:
    net = FakeNet(served=dict(BIN, k3s=b"evil"))
    asset = r.prepare(V, ["x86_64"], BASE, str(tmp_path), "", net)["assets"]["k3s"]
    assert not asset["ok"]
    assert asset["problem"] == f"did not match the release checksum (sha256sum-amd64.txt says {sha(BIN['k3s'])})"
    assert not (tmp_path / V / "k3s").exists() and not (tmp_path / V / "k3s.unverified").exists()


def test_a_corrupted_cached_binary_is_downloaded_again(tmp_path: Path) -> None:
    r.prepare(V, ["x86_64"], BASE, str(tmp_path), "", FakeNet())
    (tmp_path / V / "k3s").write_bytes(b"bit rot")
    net = FakeNet()
    assert r.prepare(V, ["x86_64"], BASE, str(tmp_path), "", net)["assets"]["k3s"]["ok"]
    assert net.fetched == [f"{BASE}/v1.31.4%2Bk3s1/k3s"]


def test_an_unreachable_release_says_why(tmp_path: Path) -> None:
    asset = r.prepare(V, ["x86_64"], "https://nowhere.example", str(tmp_path), "", FakeNet())["assets"]["k3s"]
    assert not asset["ok"]
    assert asset["problem"] == ("could not be verified: https://nowhere.example/v1.31.4%2Bk3s1/sha256sum-amd64.txt: "
                                "404 Not Found")


def test_unknown_cpus_are_left_to_the_inventory_check(tmp_path: Path) -> None:
    assert r.prepare(V, ["armv6l", "mips"], BASE, str(tmp_path), "", FakeNet())["assets"] == {}


def _bundle(tmp_path: Path, tamper: str = "") -> Path:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    images = {"k3s-airgap-images-amd64.tar.gz": b"images amd64"}
    files = {"k3s": BIN["k3s"], **images}
    (bundle / "sha256sum-amd64.txt").write_text("".join(f"{sha(d)}  {n}\n" for n, d in files.items()))
    for name, data in files.items():
        (bundle / name).write_bytes(data + (b"x" if name == tamper else b""))
    return bundle


def test_airgap_verifies_binary_and_images_and_downloads_nothing(tmp_path: Path) -> None:
    net = FakeNet()
    out = r.prepare(V, ["x86_64"], BASE, str(tmp_path / "cache"), str(_bundle(tmp_path)), net)
    assert {n: a["ok"] for n, a in out["assets"].items()} == {"k3s": True, "k3s-airgap-images-amd64.tar.gz": True}
    assert net.fetched == []
    assert out["known_binaries"] == {sha(BIN["k3s"]): V}


@pytest.mark.parametrize("tamper", ["k3s", "k3s-airgap-images-amd64.tar.gz"])
def test_airgap_refuses_a_tampered_file(tmp_path: Path, tamper: str) -> None:
    out = r.prepare(V, ["x86_64"], BASE, str(tmp_path / "cache"), str(_bundle(tmp_path, tamper)), FakeNet())
    assert not out["assets"][tamper]["ok"]
    assert out["assets"][tamper]["problem"].startswith("did not match the release checksum (sha256sum-amd64.txt says")


def test_airgap_missing_checksum_file(tmp_path: Path) -> None:
    out = r.prepare(V, ["aarch64"], BASE, str(tmp_path / "cache"), str(_bundle(tmp_path)), FakeNet())
    assert out["assets"]["k3s-arm64"]["problem"].startswith("could not be verified: cannot read ")


@pytest.mark.parametrize(("text", "parsed"), [
    (f"{'a' * 64}  k3s\n{'b' * 64} *k3s-arm64\n", {"k3s": "a" * 64, "k3s-arm64": "b" * 64}),
    ("garbage\n\n", {}),
])
def test_parse_checksums(text: str, parsed: dict[str, str]) -> None:
    assert r.parse_checksums(text) == parsed
