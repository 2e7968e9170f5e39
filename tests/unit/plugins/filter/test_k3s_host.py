from __future__ import annotations

import re

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.pik3s.cluster.plugins.filter.k3s_host import FilterModule, k3s_host_packages

PI4 = "Raspberry Pi 4 Model B Rev 1.4"
EXTRA = ["linux-modules-extra-raspi"]


@pytest.mark.parametrize(("distribution", "version", "model", "expected"), [
    ("Ubuntu", "21.04", PI4, []),
    ("Ubuntu", "21.10", PI4, EXTRA),
    ("Ubuntu", "22.04", PI4, EXTRA),
    ("Ubuntu", "22.04.3", PI4, EXTRA),   # point releases count as their series
    ("Ubuntu", "22.10", PI4, EXTRA),
    ("Ubuntu", "23.04", PI4, EXTRA),
    ("Ubuntu", "23.10", PI4, EXTRA),
    ("Ubuntu", "24.04", PI4, []),
    ("Ubuntu", "22.04", "", []),         # not a Pi: the generic kernel has VXLAN
    ("Debian", "12", PI4, []),           # Raspberry Pi OS reports Debian
    ("Debian", "22.04", PI4, []),
])
def test_packages(distribution: str, version: str, model: str, expected: list[str]) -> None:
    assert k3s_host_packages(distribution, version, model) == expected


@pytest.mark.parametrize(("distribution", "version", "message"), [
    ("Ubuntu", "jammy", "expected a release number like 22.04 (ansible_distribution_version), got 'jammy'"),
    ("Ubuntu", None, "got None"),
    ("", "22.04", "expected a distribution name such as ansible_distribution, got ''"),
])
def test_rejected(distribution: str, version: object, message: str) -> None:
    with pytest.raises(AnsibleFilterError, match=re.escape(message)):
        k3s_host_packages(distribution, version, PI4)


def test_registered() -> None:
    assert FilterModule().filters() == {"k3s_host_packages": k3s_host_packages}
