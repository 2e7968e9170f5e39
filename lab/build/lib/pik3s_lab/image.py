"""Build the lab host images: Debian bookworm shaped like Raspberry Pi OS Lite.

An image is tagged with a hash of its recipe (the build script, the package
list, every overlay file, the architecture), so it is rebuilt exactly when the
recipe changes and reused otherwise.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from pik3s.errors import Pik3sError
from pik3s_lab import binfmt, docker

ARCHES = ("amd64", "arm64", "armhf")
RECIPE = Path(__file__).parent / "recipe"
IMAGE_REPO = "pik3s-lab"
APT_SOURCES = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))


def recipe_hash(arch: str) -> str:
    """A short hash of everything that goes into the image of ``arch``."""
    digest = hashlib.sha256(f"arch={arch}\n".encode())
    for path in sorted(p for p in RECIPE.rglob("*") if p.is_file()):
        rel = path.relative_to(RECIPE).as_posix()
        digest.update(f"{rel}\n".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def image_tag(arch: str) -> str:
    check_arch(arch)
    return f"{IMAGE_REPO}:{arch}-{recipe_hash(arch)}"


def check_arch(arch: str) -> None:
    if arch not in ARCHES:
        raise Pik3sError(f"unknown lab arch {arch!r}: choose one of {', '.join(ARCHES)}")


def _mirrors_in(text: str, deb822: bool) -> list[str]:
    found: list[str] = []
    if deb822:
        for stanza in re.split(r"\n\s*\n", text):
            fields = dict(
                (m.group(1).lower(), m.group(2).strip())
                for m in re.finditer(r"^([A-Za-z-]+):[ \t]*(.*)$", stanza, re.M)
            )
            types = fields.get("types", "").split()
            suites = fields.get("suites", "").split()
            if "deb" in types and "bookworm" in suites and "main" in fields.get("components", ""):
                found.extend(fields.get("uris", "").split())
    else:
        for line in text.splitlines():
            line = re.sub(r"\[[^\]]*\]", " ", line.split("#", 1)[0])  # drop [options]
            parts = line.split()
            if parts[:1] != ["deb"]:
                continue
            parts = parts[1:]
            if len(parts) >= 3 and parts[1] == "bookworm" and "main" in parts[2:]:
                found.append(parts[0])
    return found


def debian_mirror() -> str:
    """The Debian bookworm mirror apt is configured with on this machine."""
    files: list[Path] = []
    for source in APT_SOURCES:
        if source.is_dir():
            files.extend(sorted(source.glob("*.list")) + sorted(source.glob("*.sources")))
        elif source.is_file():
            files.append(source)
    for path in files:
        for uri in _mirrors_in(path.read_text(), deb822=path.suffix == ".sources"):
            if uri.startswith(("http://", "https://")):
                return uri.rstrip("/")
    raise Pik3sError(
        "no Debian bookworm mirror found in /etc/apt/sources.list{,.d}: "
        "configure apt with one (the lab images are built from it)"
    )


@dataclass(frozen=True)
class BuildResult:
    tag: str
    built: bool
    seconds: float


def ensure_image(arch: str, workdir: Path | None = None, force: bool = False) -> BuildResult:
    """Build the image of ``arch`` unless the current recipe's image exists."""
    tag = image_tag(arch)
    docker.ensure_engine()
    if not force and docker.exists("image", tag):
        return BuildResult(tag, built=False, seconds=0.0)
    binfmt.ensure(arch)
    # debootstrap needs a real disk (device nodes, no noexec): not a tmpfs /tmp.
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    workdir = workdir or cache / "pik3s" / "lab-build"
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    proc = subprocess.run(
        ["bash", str(RECIPE / "build-rootfs.sh"), arch, debian_mirror(), tag, str(workdir)],
        capture_output=True, text=True, check=False,
    )
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-25:])
        raise Pik3sError(f"building the {arch} lab image failed:\n{tail}")
    return BuildResult(tag, built=True, seconds=time.monotonic() - started)


def ensure_images(arches: Sequence[str], jobs: int = 2, force: bool = False) -> list[BuildResult]:
    """``ensure_image`` for each arch, ``jobs`` at a time (builds are mostly single-threaded dpkg
    under emulation: two at once use both cores of a small machine). Results in ``arches`` order."""
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(lambda a: ensure_image(a, force=force), arches))
