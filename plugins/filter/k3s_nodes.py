# Copyright: pik3s developers
# Apache License 2.0 (see LICENSE)
"""Filters: a cluster's nodes, summarised; those not Ready (docs in k3s_nodes_summary.yml, k3s_nodes_not_ready.yml)."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.pik3s.cluster.plugins.module_utils.k3s_nodes import nodes_not_ready, nodes_summary


def k3s_nodes_summary(node_list):
    try:
        return nodes_summary(node_list)
    except ValueError as exc:
        raise AnsibleFilterError(str(exc)) from None


def k3s_nodes_not_ready(node_list, expected):
    try:
        return nodes_not_ready(node_list, list(expected))
    except (TypeError, ValueError) as exc:
        raise AnsibleFilterError(str(exc)) from None


class FilterModule:
    def filters(self):
        return {"k3s_nodes_summary": k3s_nodes_summary, "k3s_nodes_not_ready": k3s_nodes_not_ready}
