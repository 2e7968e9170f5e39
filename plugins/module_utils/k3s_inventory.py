# Copyright: pik3s developers
# Apache License 2.0 (see LICENSE)
"""The one rule set of a pik3s inventory, checked before any host changes:
by the playbooks' controller-side preflight (the k3s_inventory_problems
filter) and by the Python driver's offline validation (``pik3s inventory
validate``). Every problem is returned at once, each naming the host or
variable and the fix. Messages never contain the token."""

from __future__ import annotations

import re

from ansible_collections.pik3s.cluster.plugins.module_utils.k3s_arch import ARCHITECTURES
from ansible_collections.pik3s.cluster.plugins.module_utils.k3s_token import TokenError, parse_token

VERSION_RE = re.compile(r"^v[0-9]+\.[0-9]+\.[0-9]+\+k3s[0-9]+$")
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
ENDPOINT_RE = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")
CONFIG_VARS = ("k3s_cluster_config", "k3s_server_config", "k3s_agent_config")


def inventory_problems(inventory, owned_keys):
    """Problems of an inventory described as::

        {"hosts": [{"name": ..., "node_name": ..., "address": ..., "arch": ... or None}, ...],
         "server_group": "server", "agent_group": "agent",
         "servers": [names], "agents": [names],
         "vars": {"k3s_version": ..., "k3s_token": ..., "k3s_api_endpoint": ...,
                  "k3s_cluster_config": {...}, "k3s_server_config": {...}, "k3s_agent_config": {...}}}

    ``arch`` None means unknown (offline validation, no facts): not checked.
    ``owned_keys`` maps the config.yaml keys pik3s owns to the variable to use.
    """
    p = []
    server_group, agent_group = inventory.get("server_group", "server"), inventory.get("agent_group", "agent")
    servers, agents = list(inventory.get("servers") or []), list(inventory.get("agents") or [])
    cvars = inventory.get("vars") or {}
    if not servers:
        p.append(f"no hosts in the '{server_group}' group: put at least one server there (or set k3s_server_group)")
    elif len(servers) % 2 == 0 and "datastore-endpoint" not in (cvars.get("k3s_cluster_config") or {}):
        p.append(f"{len(servers)} servers ({', '.join(servers)}): embedded etcd needs an odd number "
                 "(1, 3, 5, ...) to keep quorum; add or remove one")
    names, addrs = {}, {}
    for host in inventory.get("hosts") or []:
        h = host["name"]
        n = host.get("node_name") or h
        a = host.get("address") or h
        if n in names:
            p.append(f"node name '{n}' is used by {names[n]} and {h}: K3s refuses a second node with a taken "
                     "name; set k3s_node_name")
        if a in addrs:
            p.append(f"address {a} is used by {addrs[a]} and {h}; fix ansible_host")
        names.setdefault(n, h)
        addrs.setdefault(a, h)
        arch = host.get("arch")
        if arch is not None:
            if str(arch).startswith("armv6"):
                p.append(f"{h}: {arch} is ARMv6 (Raspberry Pi Zero / Pi 1); K3s needs ARMv7 or newer; "
                         "leave this host out")
            elif arch not in ARCHITECTURES:
                p.append(f"{h}: CPU architecture '{arch}' has no K3s binary (x86_64, aarch64, armv7l only)")
        if h not in servers and h not in agents:
            p.append(f"{h} is in k3s_cluster but in neither '{server_group}' nor '{agent_group}'")
    version = cvars.get("k3s_version") or ""
    if version and not VERSION_RE.match(str(version)):
        p.append(f"k3s_version '{version}' is not a release name like v1.31.4+k3s1")
    token = cvars.get("k3s_token") or ""
    if token:
        try:
            parse_token(token)
        except TokenError as exc:
            p.append(f"k3s_token: {exc}")
    for var in CONFIG_VARS:
        for key in (cvars.get(var) or {}):
            bare = str(key).rstrip("+")
            if bare in owned_keys:
                p.append(f"{var} sets '{bare}', which pik3s manages: use {owned_keys[bare]} instead")
    endpoint = cvars.get("k3s_api_endpoint") or ""
    if endpoint and not ENDPOINT_RE.match(str(endpoint)):
        p.append(f"k3s_api_endpoint '{endpoint}' is not an IP address or DNS name "
                 "(no scheme, no port: set k3s_api_port)")
    return p
