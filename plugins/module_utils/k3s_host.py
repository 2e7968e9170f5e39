# Copyright: pik3s developers
# Apache License 2.0 (see LICENSE)
"""Per-OS packages a K3s node needs beyond the base system, by distribution,
release and whether the host is a Raspberry Pi. One table, used by the
prepare role through the k3s_host_packages filter."""

from __future__ import annotations

import re

# (distribution, first release, last release, Pi only, packages, why)
EXTRA_PACKAGES = (
    ("Ubuntu", (21, 10), (23, 10), True, ("linux-modules-extra-raspi",),
     "Ubuntu 21.10-23.10 moved the VXLAN module flannel needs out of the Pi kernel package "
     "(flannel exits with 'operation not supported'); 24.04 has it again"),
)


def _release(version):
    match = re.match(r"^\s*(\d+)\.(\d+)", str(version or ""))
    if not match:
        raise ValueError(f"expected a release number like 22.04 (ansible_distribution_version), got {version!r}")
    return int(match.group(1)), int(match.group(2))


def host_packages(distribution, version, pi_model=""):
    """The extra packages for this host, in table order; [] when none."""
    if not isinstance(distribution, str) or not distribution:
        raise ValueError(f"expected a distribution name such as ansible_distribution, got {distribution!r}")
    out = []
    for dist, first, last, pi_only, packages, _why in EXTRA_PACKAGES:
        if dist != distribution or (pi_only and not pi_model):
            continue
        if first <= _release(version) <= last:
            out.extend(p for p in packages if p not in out)
    return out
