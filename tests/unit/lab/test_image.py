"""Image recipe hashing and Debian mirror discovery (no Docker needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pik3s.errors import Pik3sError
from pik3s_lab import binfmt, image


def test_tag_is_keyed_on_recipe_and_arch() -> None:
    tags = {image.image_tag(a) for a in image.ARCHES}
    assert len(tags) == 3
    assert image.image_tag("arm64") == image.image_tag("arm64")
    assert image.image_tag("arm64").startswith("pik3s-lab:arm64-")


def test_recipe_change_changes_the_tag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    recipe = tmp_path / "recipe"
    (recipe / "overlay").mkdir(parents=True)
    (recipe / "packages.txt").write_text("systemd\n")
    monkeypatch.setattr(image, "RECIPE", recipe)
    before = image.image_tag("amd64")
    (recipe / "overlay" / "x").write_text("new file\n")
    assert image.image_tag("amd64") != before


def test_unknown_arch() -> None:
    with pytest.raises(Pik3sError, match="unknown lab arch 'i386'"):
        image.image_tag("i386")


DEB822 = """Types: deb
URIs: http://deb.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.example/debian-security
Suites: bookworm-security
Components: main
"""


def test_mirror_from_deb822_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = tmp_path / "sources.list.d"
    d.mkdir()
    (d / "debian.sources").write_text(DEB822)
    (d / "other.list").write_text("deb https://packages.example/apt cloud-sdk-bookworm main\n")
    monkeypatch.setattr(image, "APT_SOURCES", (tmp_path / "sources.list", d))
    assert image.debian_mirror() == "http://deb.example/debian"


def test_mirror_from_one_line_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "sources.list"
    f.write_text("# comment\ndeb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian/ bookworm main contrib\n")
    monkeypatch.setattr(image, "APT_SOURCES", (f, tmp_path / "none.d"))
    assert image.debian_mirror() == "http://mirror.example/debian"


def test_no_bookworm_mirror_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "sources.list"
    f.write_text("deb http://mirror.example/debian bullseye main\n")
    monkeypatch.setattr(image, "APT_SOURCES", (f, tmp_path / "none.d"))
    with pytest.raises(Pik3sError, match="no Debian bookworm mirror found"):
        image.debian_mirror()


def test_binfmt_flags_include_credentials() -> None:
    # C (credentials) is what makes sudo work under emulation; F works in containers.
    assert set("CF") <= set(binfmt.FLAGS)
    assert binfmt.ENTRIES["arm64"][2].endswith("aarch64-binfmt-P")


def test_binfmt_reads_registered_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(binfmt, "BINFMT", tmp_path)
    (tmp_path / "qemu-arm").write_text("enabled\ninterpreter /usr/libexec/qemu-binfmt/arm-binfmt-P\nflags: PF\n")
    assert binfmt.current_flags("qemu-arm") == "PF"
    assert binfmt.current_flags("qemu-aarch64") is None


def test_the_image_is_compared_with_pi_os_lite_as_a_whole() -> None:
    """Every Pi OS Lite package in the reference is in the image or left out with a reason."""
    reference = image.RECIPE.parent / "data" / "raspios-lite-bookworm.txt"
    kept: set[str] = set()
    left_out: dict[str, str] = {}
    for line in reference.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, lab, *reason = line.split(None, 2)
        assert lab in ("yes", "no"), line
        if lab == "yes":
            assert not reason, line
            kept.add(name)
        else:
            assert reason and len(reason[0]) >= 15, f"{name} is left out without a reason"
            left_out[name] = reason[0]
    packages = {ln.strip() for ln in (image.RECIPE / "packages.txt").read_text().splitlines()
                if ln.strip() and not ln.startswith("#")}
    assert packages == kept
    assert "python3-apt" in kept  # package_facts and apt's check mode need it
    assert not kept & set(left_out)
