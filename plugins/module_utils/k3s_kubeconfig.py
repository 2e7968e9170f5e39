# Copyright: pik3s developers
# Apache License 2.0 (see LICENSE)
"""Kubeconfig shaping: the admin kubeconfig K3s writes, renamed and pointed at
the API endpoint; and merging it into an existing kubeconfig.

Pure functions over parsed YAML (dicts), shared by the filter plugins.
"""

from __future__ import annotations

import copy

SECTIONS = ("clusters", "contexts", "users")


def _one(doc, section):
    entries = doc.get(section) if isinstance(doc, dict) else None
    if not isinstance(entries, list) or len(entries) != 1 or not isinstance(entries[0], dict):
        raise ValueError(f"expected a kubeconfig with exactly one entry in '{section}' "
                         "(as K3s writes /etc/rancher/k3s/k3s.yaml)")
    return entries[0]


def rename(kubeconfig, name, server):
    """K3s's single-entry kubeconfig with every name set to ``name`` and the
    cluster's server URL set to ``server``; credentials and CA are kept."""
    if not isinstance(name, str) or not name:
        raise ValueError("the cluster name must be a non-empty string")
    if not isinstance(server, str) or not server.startswith("https://"):
        raise ValueError(f"the server URL must start with https://, got {server!r}")
    cluster = copy.deepcopy(_one(kubeconfig, "clusters").get("cluster"))
    user = copy.deepcopy(_one(kubeconfig, "users").get("user"))
    _one(kubeconfig, "contexts")
    if not isinstance(cluster, dict) or not isinstance(user, dict):
        raise ValueError("the kubeconfig's cluster or user entry is empty")
    cluster["server"] = server
    out = {k: copy.deepcopy(v) for k, v in kubeconfig.items() if k not in SECTIONS}
    out.update({
        "apiVersion": kubeconfig.get("apiVersion", "v1"),
        "kind": kubeconfig.get("kind", "Config"),
        "clusters": [{"name": name, "cluster": cluster}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "users": [{"name": name, "user": user}],
        "current-context": name,
    })
    return out


def merge(existing, new):
    """``existing`` with the clusters, contexts and users of ``new`` added or
    replaced by name; other entries kept in order. The current context is
    kept when ``existing`` has one, else it becomes ``new``'s."""
    if existing is None or existing == "":
        existing = {}
    if not isinstance(existing, dict):
        raise ValueError("the kubeconfig to merge into is not a mapping")
    if not isinstance(new, dict):
        raise ValueError("the kubeconfig to merge is not a mapping")
    out = copy.deepcopy(existing)
    out.setdefault("apiVersion", "v1")
    out.setdefault("kind", "Config")
    for section in SECTIONS:
        entries = list(out.get(section) or [])
        for entry in new.get(section) or []:
            names = [e.get("name") for e in entries]
            if entry.get("name") in names:
                entries[names.index(entry["name"])] = copy.deepcopy(entry)
            else:
                entries.append(copy.deepcopy(entry))
        out[section] = entries
    if not out.get("current-context"):
        out["current-context"] = new.get("current-context", "")
    return out
