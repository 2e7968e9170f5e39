from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.pik3s.cluster.plugins.filter.k3s_arch import FilterModule, k3s_arch

AMD64 = {"asset": "k3s", "checksum_file": "sha256sum-amd64.txt", "image_arch": "amd64", "k8s_arch": "amd64"}
ARM64 = {"asset": "k3s-arm64", "checksum_file": "sha256sum-arm64.txt", "image_arch": "arm64", "k8s_arch": "arm64"}
ARMHF = {"asset": "k3s-armhf", "checksum_file": "sha256sum-arm.txt", "image_arch": "arm", "k8s_arch": "arm"}


@pytest.mark.parametrize(("arch", "expected"), [
    ("x86_64", AMD64),
    ("amd64", AMD64),
    ("aarch64", ARM64),   # Raspberry Pi OS 64-bit, Pi 3/4/5
    ("arm64", ARM64),
    ("armv7l", ARMHF),    # Raspberry Pi OS 32-bit on a Pi 2 v1.1 / 3 / 4
    ("armv8l", ARMHF),
    ("armhf", ARMHF),
    ("AArch64", ARM64),
])
def test_supported(arch: str, expected: dict[str, str]) -> None:
    assert k3s_arch(arch) == expected


@pytest.mark.parametrize(("arch", "message"), [
    ("armv6l", "'armv6l' is ARMv6 (Raspberry Pi Zero / Zero W / Pi 1): K3s needs ARMv7 or newer"),
    ("armv6", "K3s needs ARMv7 or newer since v1.19.4"),
    ("i686", "unsupported CPU architecture 'i686': K3s ships binaries for x86_64 (amd64), "
             "aarch64 (arm64) and armv7l (armhf) only"),
    ("riscv64", "unsupported CPU architecture 'riscv64'"),
    ("", "expected an architecture name such as ansible_architecture, got ''"),
    (None, "got None"),
])
def test_rejected(arch: object, message: str) -> None:
    with pytest.raises(AnsibleFilterError) as err:
        k3s_arch(arch)
    assert message in str(err.value)


def test_results_are_copies() -> None:
    k3s_arch("x86_64")["asset"] = "changed"
    assert k3s_arch("x86_64")["asset"] == "k3s"


def test_registered() -> None:
    assert FilterModule().filters() == {"k3s_arch": k3s_arch}
