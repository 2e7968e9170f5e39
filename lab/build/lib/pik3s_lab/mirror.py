"""Publish a local K3s release tree: the simulator under K3s's asset names,
with real sha256 checksum files and airgap image tarballs.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
import zipapp
from pathlib import Path

from pik3s_lab import releases

SIMULATOR = Path(__file__).with_name("simulator")
SERVER = Path(__file__).with_name("mirror_server.py")
# The simulator's package name inside the published executable.
SIM_PACKAGE = "k3s_simulator"
# Every file of an asset gets this time, so one version and arch always make the same bytes.
_EPOCH = 315964800  # 1980-01-06, within the zip format's range


def simulator_asset(version: str, arch: str, source: Path = SIMULATOR) -> bytes:
    """The simulator as published for one version and arch: its package (``source``) built into one
    executable (a zipapp for the hosts' python3), the version and arch written into a generated module."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        pkg = root / SIM_PACKAGE
        shutil.copytree(source, pkg, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "_published.py"))
        (pkg / "_published.py").write_text(
            '"""Written by pik3s_lab.mirror when it published this asset."""\n\n'
            f"VERSION = {json.dumps(version)}\nARCH = {json.dumps(arch)}\n")
        (root / "__main__.py").write_text(
            f"import sys\n\nfrom {SIM_PACKAGE}.main import main\n\nsys.exit(main())\n")
        for path in root.rglob("*"):
            os.utime(path, (_EPOCH, _EPOCH))
        out = io.BytesIO()
        zipapp.create_archive(root, out, interpreter="/usr/bin/env python3", compressed=True)
        return out.getvalue()


def airgap_tar(version: str, image_arch: str) -> bytes:
    """A deterministic image tarball: a manifest naming the images and arch."""
    manifest = json.dumps({
        "simulator": "pik3s K3s simulator (no real images)", "version": version,
        "arch": image_arch, "images": [f"{i}:{version}" for i in releases.AIRGAP_IMAGES],
    }, indent=1).encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        info = tarfile.TarInfo("manifest.json")
        info.size, info.mtime, info.mode = len(manifest), 0, 0o644
        tf.addfile(info, io.BytesIO(manifest))
    return buf.getvalue()


def _gzip(data: bytes) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz:
        gz.write(data)
    return buf.getvalue()


def _write(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(mode)


def chart_archive(name: str, version: str, image: str, tag: str) -> bytes:
    """A deterministic lab stand-in for a Helm chart: Chart.yaml, values.yaml naming one image, a README."""
    registry, _sep, repository = image.partition("/")
    files = {
        "Chart.yaml": (f"apiVersion: v2\nname: {name}\nversion: {version}\nappVersion: \"{tag}\"\n"
                       "description: \"pik3s lab stand-in (test equipment) with the name and version of the real "
                       "chart and no templates\"\n"),
        "values.yaml": f"image:\n  registry: {registry}\n  repository: {repository}\n  tag: \"{tag}\"\n",
        "README.md": f"A pik3s lab stand-in for the {name} chart {version}. It renders nothing.\n",
    }
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        for fname, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{name}/{fname}")
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tf.addfile(info, io.BytesIO(data))
    return _gzip(buf.getvalue())


def chart_repository(directory: Path) -> None:
    """The stand-in charts and their index.yaml (a Helm chart repository) in ``directory``."""
    entries = []
    for name, version, image, tag in releases.CHARTS:
        data = chart_archive(name, version, image, tag)
        _write(directory / f"{name}-{version}.tgz", data)
        entries.append(f"  {name}:\n  - apiVersion: v2\n    name: {name}\n    version: {version}\n"
                       f"    appVersion: \"{tag}\"\n    digest: {hashlib.sha256(data).hexdigest()}\n"
                       f"    urls:\n    - {name}-{version}.tgz\n")
    _write(directory / "index.yaml", ("apiVersion: v1\nentries:\n" + "".join(entries)).encode())


def build_tree(root: Path) -> dict[str, dict[str, str]]:
    """Write the release tree under ``root``; return {version: {asset: sha256}}."""
    sums: dict[str, dict[str, str]] = {}
    for version in releases.VERSIONS:
        vdir = root / releases.RELEASE_PATH.lstrip("/") / version
        sums[version] = {}
        for arch, (binary, sumfile, image_arch) in releases.ASSETS.items():
            files = {binary: simulator_asset(version, arch)}
            tar = airgap_tar(version, image_arch)
            files[f"k3s-airgap-images-{image_arch}.tar"] = tar
            files[f"k3s-airgap-images-{image_arch}.tar.gz"] = _gzip(tar)
            lines = []
            for name, data in files.items():
                _write(vdir / name, data, 0o755 if name == binary else 0o644)
                digest = hashlib.sha256(data).hexdigest()
                sums[version][name] = digest
                lines.append(f"{digest}  {name}\n")
            _write(vdir / sumfile, "".join(lines).encode())
        chart_repository(vdir / "charts")  # air-gap mode reads <k3s_airgap_dir>/charts/<chart>-<version>.tgz
    chart_repository(root / releases.CHART_PATH.lstrip("/"))
    _write(root / "channels.json", json.dumps(releases.CHANNELS, indent=1).encode())
    return sums
