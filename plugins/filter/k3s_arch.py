# Copyright: pik3s developers
# Apache License 2.0 (see LICENSE)
"""Filter: CPU architecture -> K3s release asset names (docs in k3s_arch.yml)."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.pik3s.cluster.plugins.module_utils.k3s_arch import arch_assets


def k3s_arch(value):
    try:
        return arch_assets(value)
    except ValueError as exc:
        raise AnsibleFilterError(str(exc)) from None


class FilterModule:
    def filters(self):
        return {"k3s_arch": k3s_arch}
