# Copyright: pik3s developers
# Apache License 2.0 (see LICENSE)
"""The one table of CPU architectures pik3s knows: Ansible's
``ansible_architecture`` (``uname -m``) -> K3s release assets."""

from __future__ import annotations

_AMD64 = {"asset": "k3s", "checksum_file": "sha256sum-amd64.txt", "image_arch": "amd64", "k8s_arch": "amd64"}
_ARM64 = {"asset": "k3s-arm64", "checksum_file": "sha256sum-arm64.txt", "image_arch": "arm64", "k8s_arch": "arm64"}
# The 32-bit checksum file and image tarball say "arm", the binary "armhf".
_ARMHF = {"asset": "k3s-armhf", "checksum_file": "sha256sum-arm.txt", "image_arch": "arm", "k8s_arch": "arm"}

ARCHITECTURES = {
    "x86_64": _AMD64,
    "amd64": _AMD64,
    "aarch64": _ARM64,
    "arm64": _ARM64,
    "armv7l": _ARMHF,
    "armv8l": _ARMHF,  # 32-bit userland on an ARMv8 CPU (Raspberry Pi OS 32-bit on a Pi 3/4)
    "armhf": _ARMHF,
}

ARMV6_MESSAGE = (
    "{value!r} is ARMv6 (Raspberry Pi Zero / Zero W / Pi 1): K3s needs ARMv7 or newer since "
    "v1.19.4, and its armhf binary dies there with SIGILL. Use a Raspberry Pi 2 v1.2, 3, 4, 5 "
    "or Zero 2 W, or leave this host out of the cluster."
)


def arch_assets(value):
    """Release facts for an architecture name; raises ValueError with the reason."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected an architecture name such as ansible_architecture, got {value!r}")
    key = value.strip().lower()
    if key.startswith("armv6"):
        raise ValueError(ARMV6_MESSAGE.format(value=value))
    try:
        return dict(ARCHITECTURES[key])
    except KeyError:
        raise ValueError(
            f"unsupported CPU architecture {value!r}: K3s ships binaries for "
            "x86_64 (amd64), aarch64 (arm64) and armv7l (armhf) only"
        ) from None
