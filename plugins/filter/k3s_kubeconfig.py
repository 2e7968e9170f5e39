# Copyright: pik3s developers
# Apache License 2.0 (see LICENSE)
"""Filters: shape and merge kubeconfigs (docs in k3s_kubeconfig_rename.yml, k3s_kubeconfig_merge.yml)."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.pik3s.cluster.plugins.module_utils import k3s_kubeconfig


def k3s_kubeconfig_rename(kubeconfig, name, server):
    try:
        return k3s_kubeconfig.rename(kubeconfig, name, server)
    except ValueError as exc:
        raise AnsibleFilterError(str(exc)) from None


def k3s_kubeconfig_merge(existing, new):
    try:
        return k3s_kubeconfig.merge(existing, new)
    except ValueError as exc:
        raise AnsibleFilterError(str(exc)) from None


class FilterModule:
    def filters(self):
        return {"k3s_kubeconfig_rename": k3s_kubeconfig_rename, "k3s_kubeconfig_merge": k3s_kubeconfig_merge}
