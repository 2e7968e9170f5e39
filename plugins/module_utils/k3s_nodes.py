# Copyright: pik3s developers
# Apache License 2.0 (see LICENSE)
"""The one summary of a cluster's nodes (from ``kubectl get nodes -o json``)
that the playbooks report with set_stats and the pik3s driver shows."""

from __future__ import annotations

import json

_ROLE_PREFIX = "node-role.kubernetes.io/"


def _ready(status):
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Ready":
            return cond.get("status") == "True"
    return False


def nodes_summary(node_list):
    """One entry per node, sorted by name: name, roles, ready, schedulable, version, arch, address.

    ``node_list`` is the Kubernetes NodeList, as JSON text or already parsed."""
    data = json.loads(node_list) if isinstance(node_list, str) else node_list
    if not isinstance(data, dict) or not isinstance(data.get("items"), list):
        raise ValueError("expected a Kubernetes NodeList (kubectl get nodes -o json)")
    out = []
    for item in data["items"]:
        meta, spec, status = item.get("metadata") or {}, item.get("spec") or {}, item.get("status") or {}
        labels = meta.get("labels") or {}
        roles = sorted(k[len(_ROLE_PREFIX):] for k in labels if k.startswith(_ROLE_PREFIX))
        info = status.get("nodeInfo") or {}
        addresses = {a.get("type"): a.get("address") for a in status.get("addresses") or []}
        out.append({
            "name": meta.get("name", ""),
            "roles": roles,
            "ready": _ready(status),
            "schedulable": not spec.get("unschedulable", False),
            "version": info.get("kubeletVersion", ""),
            "arch": info.get("architecture", labels.get("kubernetes.io/arch", "")),
            "address": addresses.get("InternalIP", ""),
        })
    return sorted(out, key=lambda n: n["name"])


def nodes_not_ready(node_list, expected):
    """The names in ``expected`` that the NodeList does not show Ready (missing ones included), in order."""
    ready = {n["name"] for n in nodes_summary(node_list) if n["ready"]}
    return [name for name in expected if name not in ready]
