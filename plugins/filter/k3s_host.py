# Copyright: pik3s developers
# Apache License 2.0 (see LICENSE)
"""Filter: the extra packages a K3s node needs on its OS (docs in k3s_host_packages.yml)."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.pik3s.cluster.plugins.module_utils.k3s_host import host_packages


def k3s_host_packages(distribution, version, pi_model=""):
    try:
        return host_packages(distribution, version, pi_model)
    except ValueError as exc:
        raise AnsibleFilterError(str(exc)) from None


class FilterModule:
    def filters(self):
        return {"k3s_host_packages": k3s_host_packages}
