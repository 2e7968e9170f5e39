# Copyright: pik3s developers
# Apache License 2.0 (see LICENSE)
"""The one rule set of a pik3s inventory, applied on the controller before
any host changes: by the playbooks' preflight (the k3s_inventory_problems
filter) and by the Python driver's offline validation (``pik3s inventory
validate`` and every verb), with the same inputs. Every problem is returned
at once, each naming the host or variable and the fix. Messages never quote
the value of a secret variable.

The variables' types come from the roles' ``meta/argument_specs.yml`` (the
one description of the variables); this file adds what a spec cannot say:
ranges, which settings are one value for the whole cluster, the K3s keys
pik3s owns, and the rules of names, addresses and tokens.

The description checked (built by the playbook's inventory_check.yml and by
the driver's ``pik3s.inventory.describe``)::

    {"server_group": "server", "agent_group": "agent",
     "cluster": [hosts of k3s_cluster], "servers": [...], "agents": [...],
     "hosts": {name: {"vars": {variable: value, ...},   # only what the inventory or -e sets
                      "arch": "aarch64" or None}}}      # None: unknown (offline, no facts)
"""

from __future__ import annotations

import functools
import ipaddress
import os
import re

import yaml

from ansible_collections.pik3s.cluster.plugins.module_utils.k3s_arch import ARCHITECTURES
from ansible_collections.pik3s.cluster.plugins.module_utils.k3s_token import (
    TokenError,
    mask_tokens_in_text,
    parse_token,
)
from ansible_collections.pik3s.cluster.plugins.module_utils.k3s_version import parse_version
from ansible_collections.pik3s.cluster.plugins.plugin_utils import k3s_addons, k3s_datastore
from ansible_collections.pik3s.cluster.plugins.plugin_utils.k3s_release import IMAGES_NAME

COLLECTION = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SPEC_ROLES = ("_common", "prepare", "k3s_server", "k3s_agent")

# Keys of config.yaml the roles own; users set them through these variables.
OWNED_KEYS = {
    "token": "k3s_token",
    "token-file": "k3s_token",
    "agent-token": "k3s_token",
    "server": "k3s_api_endpoint",
    "cluster-init": "the number of servers in the inventory",
    "node-name": "k3s_node_name",
    "node-ip": "k3s_node_ip",
    "data-dir": "(not supported; pik3s uses /var/lib/rancher/k3s)",
    "datastore-endpoint": "k3s_datastore_endpoint",
    "datastore-cafile": "k3s_datastore_cafile",
    "datastore-certfile": "k3s_datastore_certfile",
    "datastore-keyfile": "k3s_datastore_keyfile",
}
CONFIG_VARS = ("k3s_cluster_config", "k3s_server_config", "k3s_agent_config")

# One value for the whole cluster: a host that differs is a mistake (set them in group_vars/k3s_cluster).
CLUSTER_WIDE = (
    "k3s_version", "k3s_channel", "k3s_release_url", "k3s_channel_url", "k3s_airgap_dir", "k3s_token",
    "k3s_api_endpoint", "k3s_api_port", "k3s_server_group", "k3s_agent_group", "k3s_cluster_config",
    "k3s_agent_batch", "k3s_upgrade_batch", "k3s_api_vip", "k3s_api_vip_interface",
    "k3s_datastore_endpoint", "k3s_datastore_cafile", "k3s_datastore_certfile", "k3s_datastore_keyfile",
)
# One value for all servers (what K3s's auto-deploy directory holds: K3s does not sync it between servers).
SERVER_WIDE = ("k3s_server_manifests", "k3s_helm_charts", "k3s_addons", "k3s_addon_overrides", "k3s_addon_access")
# What K3s compares when a server joins ("critical configuration value mismatch"): equal on every server.
SERVER_EQUAL_KEYS = (
    "cluster-cidr", "service-cidr", "cluster-dns", "cluster-domain", "disable", "disable-cloud-controller",
    "disable-helm-controller", "disable-kube-proxy", "disable-network-policy", "disable-scheduler",
    "disable-apiserver", "disable-controller-manager", "disable-etcd", "flannel-backend",
    "flannel-ipv6-masq", "flannel-external-ip", "egress-selector-mode", "service-node-port-range",
    "secrets-encryption", "embedded-registry",
)
# Integers and their bounds (inclusive; None: unbounded).
RANGES = {
    "k3s_api_port": (1, 65535),
    "k3s_ready_timeout": (1, None),
    "k3s_upgrade_drain_timeout": (1, None),
    "prepare_reboot_timeout": (1, None),
}
BATCH_VARS = ("k3s_agent_batch", "k3s_upgrade_batch")
# A token the operator sets must be long enough not to be guessed (K3s generates 32 hex digits).
MIN_TOKEN_LENGTH = 16
CHANNEL_RE = re.compile(r"(stable|latest|testing|v[0-9]+\.[0-9]+)")
_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
NODE_NAME_RE = re.compile(rf"{_LABEL}(\.{_LABEL})*")
_DNS_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
DNS_NAME_RE = re.compile(rf"{_DNS_LABEL}(\.{_DNS_LABEL})*")
_TYPE_WORDS = {"str": "a string", "int": "an integer", "bool": "true or false", "dict": "a mapping",
               "list": "a list", "raw": "a value"}
_BOOL_WORDS = {"true", "false", "yes", "no", "on", "off", "1", "0", "y", "n", "t", "f"}
IPV6_REASON = ("IPv6 is not supported by pik3s yet (an IPv6 or dual-stack K3s cluster needs cluster-cidr and "
               "service-cidr settings pik3s does not manage): use an IPv4 address or a DNS name")


@functools.lru_cache(maxsize=1)
def variables():
    """Every variable the roles take, from their main entry points' argument specs:
    {name: {"type", "elements", "default", "role", "no_log"}}."""
    out = {}
    for role in SPEC_ROLES:
        with open(os.path.join(COLLECTION, "roles", role, "meta", "argument_specs.yml"), encoding="utf-8") as fh:
            spec = yaml.safe_load(fh)["argument_specs"]["main"].get("options") or {}
        for name, opt in spec.items():
            out[name] = {"type": opt.get("type", "str"), "elements": opt.get("elements"),
                         "default": opt.get("default"), "role": role, "no_log": bool(opt.get("no_log"))}
    return out


# Variables the rules read besides the roles': Ansible's address of a host, and the playbooks' own
# (a play's batch size, its serial, is read before any role runs, so no role declares it).
INVENTORY_VARIABLES = {
    "ansible_host": {"type": "str", "elements": None, "default": None, "role": None, "no_log": False},
    "k3s_agent_batch": {"type": "raw", "elements": None, "default": None, "role": None, "no_log": False},
    "k3s_upgrade_batch": {"type": "raw", "elements": None, "default": None, "role": None, "no_log": False},
}
MASK = "********"


def checked_variables():
    """The variables a description carries per host: the roles' and the inventory's own."""
    return sorted(set(variables()) | set(INVENTORY_VARIABLES))


def _spec(name):
    return variables().get(name) or INVENTORY_VARIABLES.get(name)


def _q(value):
    """A quoted value for a message: a string with any assignment to a secret-named key in it masked
    (``token: x`` given where a mapping was expected), anything else as Python shows it."""
    return repr(mask_secret_assignments(value)) if isinstance(value, str) else repr(value)


def _describe(value):
    """A value, named for a message (never used on secrets)."""
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int):
        return f"the integer {value}"
    if isinstance(value, float):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the string {_q(value)}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    if value is None:
        return "null (empty)"
    return f"a {type(value).__name__}"


# Names of variables whose values are secrets, wherever they appear (the driver masks them by this too).
SECRET_NAME_RE = re.compile(r"(token|passw|secret|_pass$|^ansible_.*pass$|private_key(?!_file)|client_key)", re.I)


def is_secret_name(name):
    """Whether a variable of this name holds a secret (a no_log option, or a secret-looking name)."""
    spec = _spec(name)
    return bool(spec and spec["no_log"]) or SECRET_NAME_RE.search(str(name)) is not None


def type_problem(name, value):
    """Why ``value`` is not of the type the argument specs give ``name``; '' when it is. Values of
    ``-e k=v`` arrive as strings: integer and boolean variables take them as Ansible does
    (digits; true/false/yes/no)."""
    spec = _spec(name)
    if spec is None:
        return ""
    kind = spec["type"]
    secret = is_secret_name(name)
    shown = "a value of another type" if secret else _describe(value)
    hint = ""
    if kind == "str":
        ok = isinstance(value, str)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            hint = " (quote it in YAML)"
    elif kind == "int":
        ok = (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, str) and re.fullmatch(r"-?[0-9]+", value.strip()) is not None)
    elif kind == "bool":
        ok = isinstance(value, bool) or (isinstance(value, str) and value.strip().lower() in _BOOL_WORDS)
    elif kind == "dict":
        ok = isinstance(value, dict)
        if isinstance(value, str):
            hint = " (write it as a YAML mapping, key: value on each line, or -e '{\"name\": {...}}' as JSON)"
    elif kind == "list":
        ok = isinstance(value, list)
        if ok and spec["elements"] == "str":
            bad = [v for v in value if not isinstance(v, str)]
            if bad:
                return f"{name}: every item must be a string, not {_describe(bad[0])}"
    else:
        ok = True
    if ok:
        return ""
    return f"{name} must be {_TYPE_WORDS.get(kind, kind)}, not {shown}{hint}"


def _int(value):
    return value if isinstance(value, int) else int(str(value).strip())


def _value_problems(name, value):
    """Rules on one well-typed value of ``name`` beyond its type."""
    p = []
    if name in RANGES:
        low, high = RANGES[name]
        n = _int(value)
        if (low is not None and n < low) or (high is not None and n > high):
            bound = f"between {low} and {high}" if high is not None else f"at least {low}"
            p.append(f"{name} is {n}: it must be {bound}")
    elif name in BATCH_VARS:
        p.extend(batch_problems(name, value))
    elif name in CONFIG_VARS:
        for key in value:
            bare = str(key).rstrip("+")
            if bare in OWNED_KEYS:
                p.append(f"{name} sets '{bare}', which pik3s manages: use {OWNED_KEYS[bare]} instead")
    elif name in ("ansible_host", "k3s_node_ip"):
        p.extend(address_problems(name, value, allow_name=name == "ansible_host"))
    elif name == "k3s_registries":
        p.extend(k3s_datastore.registries_problems(value))
    return p


def batch_problems(name, value):
    """A play's batch size (serial): a positive integer or a percentage from 1% to 100%."""
    text = str(value) if isinstance(value, (int, str)) and not isinstance(value, bool) else ""
    m = re.fullmatch(r"([0-9]+)(%?)", text)
    if m is None or int(m.group(1)) < 1 or (m.group(2) and int(m.group(1)) > 100):
        shown = repr(value) if isinstance(value, str) else _describe(value)
        return [f"{name} is {shown}: a batch is a whole number of hosts (1 or more) or a percentage "
                "from 1% to 100%"]
    return []


def node_name_problems(name):
    """A node name as Kubernetes takes it (RFC 1123 subdomain) and K3s keeps it (lower case)."""
    if name != name.strip():
        return [f"k3s_node_name {_q(name)} has leading or trailing whitespace: remove it"]
    if not name:
        return ["k3s_node_name is empty: leave it unset (the inventory name is used) or name the node"]
    if name.lower() != name and NODE_NAME_RE.fullmatch(name.lower()):
        return [f"node name {_q(name)} has upper-case letters: Kubernetes node names are lower case and K3s "
                f"would register it as {_q(name.lower())}; set k3s_node_name: {name.lower()}"]
    if not NODE_NAME_RE.fullmatch(name) or len(name) > 253:
        return [f"node name {_q(name)} is not a valid Kubernetes node name: lower-case letters, digits, '-' "
                "and '.', each dot-separated part 1 to 63 characters starting and ending with a letter or "
                "digit, 253 at most (RFC 1123); set k3s_node_name"]
    return []


def _ip(value):
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def address_problems(name, value, allow_name=True, what=None):
    """An address pik3s connects to or gives K3s: IPv4, or (``allow_name``) a DNS name; never IPv6.
    ``what`` says what it must be, in the message about a value that is neither."""
    if value != value.strip():
        return [f"{name} {_q(value)} has leading or trailing whitespace: remove it"]
    if value == "":
        return [] if name == "k3s_node_ip" else [f"{name} is empty: set the host's address or leave it unset"]
    ip = _ip(value.strip("[]"))
    if ip is not None and ip.version == 6:
        return [f"{name} {value}: {IPV6_REASON}"]
    if ip is None and (not allow_name or not DNS_NAME_RE.fullmatch(value)):
        what = what or ("an IPv4 address or a DNS name" if allow_name else "an IPv4 address")
        return [f"{name} '{mask_secret_assignments(value)}' is not {what}"]
    return []


def token_problems(token):
    """A token the operator sets: K3s's grammar, and long enough to be secret. Never quotes it."""
    try:
        parts = parse_token(token)
    except TokenError as exc:
        return [f"k3s_token: {exc}"]
    if len(parts["password"]) < MIN_TOKEN_LENGTH:
        part = "its password part" if parts["format"] == "secure" else "it"
        return [f"k3s_token: too short to be secret ({part} has {len(parts['password'])} characters, "
                f"{MIN_TOKEN_LENGTH} at least): anyone who can reach port 6443 could guess it and join a node; "
                "use a long random one (openssl rand -hex 16), or leave k3s_token empty to have one generated"]
    return []


def version_problems(version):
    try:
        parse_version(version)
    except ValueError:
        return [f"k3s_version {_q(version)} is not a release name like v1.31.4+k3s1"]
    return []


def _members_text(hosts, values, secret):
    groups = {}
    for h in hosts:
        groups.setdefault(repr(values[h]), []).append(h)
    if secret:
        return " | ".join(", ".join(g) for g in groups.values())
    return "; ".join(f"{', '.join(g)}: {_q(values[g[0]])}" for g in groups.values())


def _airgap_problems(airgap_dir, version, archs):
    """Air-gap mode on the controller: a pinned version, the directory, and each CPU's files."""
    if not airgap_dir:
        return []
    p = []
    if not version:
        p.append(f"k3s_airgap_dir is set ({airgap_dir}) but k3s_version is empty: air-gap mode installs the "
                 "release in that directory, so pin it (k3s_version: v1.31.4+k3s1)")
    if not os.path.isdir(airgap_dir):
        return [*p, f"k3s_airgap_dir {airgap_dir}: no such directory on the controller"]
    by_asset = {}
    for arch in archs:
        if arch in ARCHITECTURES:
            by_asset.setdefault(ARCHITECTURES[arch]["asset"], arch)
    for _asset, arch in sorted(by_asset.items()):
        facts = ARCHITECTURES[arch]
        wanted = (facts["asset"], facts["checksum_file"], IMAGES_NAME % facts["image_arch"])
        missing = [f for f in wanted if not os.path.isfile(os.path.join(airgap_dir, f))]
        if missing:
            p.append(f"k3s_airgap_dir {airgap_dir} lacks {', '.join(missing)} for the {arch} hosts: add them "
                     "from the K3s release")
    return p


def describe(hostvars, groups, archs=None, networks=None):
    """The description the rules check, from every host's variables and the inventory's groups (both
    as Ansible has them: ``hostvars`` maps a host to its variables, ``groups`` a group to its hosts,
    children included). ``archs`` maps a host to its CPU where it is known. Both the playbooks' preflight
    and the driver build it here, so the rules see the same input. ``networks`` maps a host to its IPv4
    addresses ([{ifname, address, prefix}]) where they are known (read from the hosts)."""
    archs = archs or {}
    networks = networks or {}
    names = checked_variables()
    members = list(groups.get("k3s_cluster") or [])
    first = hostvars[members[0]] if members and members[0] in hostvars else {}
    server_group, agent_group = (str(first[n] if n in first else variables()[n]["default"])
                                 for n in ("k3s_server_group", "k3s_agent_group"))
    servers, agents = list(groups.get(server_group) or []), list(groups.get(agent_group) or [])
    # Servers first, then agents, then the rest: the order of every message that lists hosts.
    cluster = [h for h in dict.fromkeys(servers + agents + members) if h in members]
    hosts = {}
    for h in dict.fromkeys(cluster + servers + agents):
        hv = hostvars[h] if h in hostvars else {}
        hosts[h] = {"vars": {n: hv[n] for n in names if n in hv}, "arch": archs.get(h),
                    "networks": networks.get(h)}
    return {"server_group": server_group, "agent_group": agent_group, "cluster": cluster,
            "servers": servers, "agents": agents, "hosts": hosts}


def _secret_values(hosts):
    """The values of secret variables anywhere in the description (a message must quote none of them,
    whatever variable it quotes)."""
    found = set()
    for host in hosts.values():
        for name, value in (host.get("vars") or {}).items():
            if is_secret_name(name) and isinstance(value, str) and value:
                found.add(value)
                try:
                    found.add(parse_token(value)["password"])
                except TokenError:
                    pass
    return sorted(found, key=len, reverse=True)


# A key being assigned in quoted input (YAML `name: value`, INI or -e `name=value`).
_KEY = re.compile(r"""(?P<key>[\w.-]+)["']?[ \t]*[:=][ \t]*(?=\S)""")


def mask_secret_assignments(text):
    """``text`` with everything after a secret-named key, to the end of its line, masked (a source line a
    parser quotes, a string given where a mapping was expected), and any secure K3s token in it."""
    lines = []
    for line in str(text).split("\n"):
        for m in _KEY.finditer(line):
            if is_secret_name(m.group("key")):
                line = line[:m.end()] + MASK
                break
        lines.append(line)
    return mask_tokens_in_text("\n".join(lines))


def mask(message, secrets):
    """``message`` with every secret value and anything shaped like a secure K3s token masked (values
    assigned to secret-named keys are masked where a message quotes them, by ``_q``)."""
    for secret in secrets:
        message = message.replace(secret, MASK)
    return mask_tokens_in_text(message)


def inventory_problems(description):
    """Every problem of an inventory description (see the module's docstring); [] when it is good.
    No message quotes a secret: values of secret variables are masked wherever they appear."""
    secrets = _secret_values(description.get("hosts") or {})
    return [mask(problem, secrets) for problem in _problems(description)]


def _per_host(by_message, cluster):
    """Problems found on some hosts: once, plainly, when every host has it, else naming the hosts."""
    return [message if len(where) == len(cluster) else f"{', '.join(where)}: {message}"
            for message, where in by_message.items()]


def _problems(description):
    p = []
    server_group = description.get("server_group") or "server"
    agent_group = description.get("agent_group") or "agent"
    cluster = list(description.get("cluster") or [])
    servers = list(description.get("servers") or [])
    agents = list(description.get("agents") or [])
    hosts = description.get("hosts") or {}

    # Structure: the groups (an empty server group is checked below, with the cluster-wide values).
    outside = [h for h in servers + agents if h not in cluster]
    if outside:
        p.append(f"{', '.join(dict.fromkeys(outside))} in '{server_group}'/'{agent_group}' but not in k3s_cluster: "
                 f"make '{server_group}' and '{agent_group}' children of the k3s_cluster group (pik3s's plays "
                 "run on k3s_cluster)")
    for h in servers:
        if h in agents:
            p.append(f"{h} is in both '{server_group}' and '{agent_group}': a K3s server already runs an "
                     "agent; list it as a server only")
    for h in cluster:
        if h not in servers and h not in agents:
            p.append(f"{h} is in k3s_cluster but in neither '{server_group}' nor '{agent_group}'")

    # Types, on every host's own values.
    typed = {}  # host -> {var: value} of the values whose type is right
    by_message = {}
    for h in cluster:
        good = {}
        for name, value in (hosts.get(h, {}).get("vars") or {}).items():
            problem = type_problem(name, value)
            if problem:
                by_message.setdefault(problem, []).append(h)
            else:
                good[name] = value
        typed[h] = good
    p.extend(_per_host(by_message, cluster))

    def value(h, name):
        if name in typed.get(h, {}):
            return typed[h][name]
        default = (_spec(name) or {}).get("default")
        return None if isinstance(default, str) and "{{" in default else default

    # One value for the whole cluster.
    for name in CLUSTER_WIDE:
        values = {h: value(h, name) for h in cluster}
        if len({repr(v) for v in values.values()}) > 1:
            p.append(f"{name} differs between hosts ({_members_text(cluster, values, is_secret_name(name))}): it is "
                     "one setting for the whole cluster; set it once, in group_vars of k3s_cluster (or all)")
    for name in SERVER_WIDE:
        values = {h: value(h, name) for h in servers if h in typed}
        if len({repr(v) for v in values.values()}) > 1:
            p.append(f"{name} differs between servers ({_members_text(list(values), values, True)}): every server "
                     "must hold the same auto-deploy manifests; set it once, in group_vars of the server group "
                     "(or k3s_cluster)")
    first = cluster[0] if cluster else None
    cvars = {name: value(first, name) for name in CLUSTER_WIDE} if first else {}
    # Agents may join a running cluster whose servers are not in this inventory (an AWX job slice of
    # agents) when its address and token are given; reported first, as the structure's first problem.
    if not servers and not (agents and (cvars.get("k3s_api_endpoint") or "").strip()
                            and (cvars.get("k3s_token") or "").strip()):
        p.insert(0, f"no hosts in the '{server_group}' group: put at least one server there (or set "
                    "k3s_server_group; to join agents to a running cluster whose servers are not in this "
                    "inventory, set k3s_api_endpoint and k3s_token)")
    first_server = next((h for h in servers if h in typed), None)
    svars = {name: value(first_server, name) for name in SERVER_WIDE} if first_server else {}

    # Per-host values beyond their type (a problem every host shares is reported once).
    by_message = {}
    for h in cluster:
        for name, val in typed[h].items():
            if name in CLUSTER_WIDE + SERVER_WIDE and name not in CONFIG_VARS + BATCH_VARS + tuple(RANGES):
                continue  # one value: checked once below
            for problem in _value_problems(name, val):
                by_message.setdefault(problem, []).append(h)
    p.extend(_per_host(by_message, cluster))

    # Names and addresses: valid, and unique (node names after K3s lower-cases them, addresses after
    # normalisation).
    names, addrs = {}, {}
    for h in cluster:
        node = typed[h].get("k3s_node_name", h)
        p.extend(f"{h}: {problem}" for problem in node_name_problems(node))
        key = node.lower()
        if key in names:
            same = "" if names[key][1] == node else \
                f" ('{names[key][1]}' and '{node}' are one name once K3s lower-cases them)"
            p.append(f"node name '{node}' is used by {names[key][0]} and {h}{same}: K3s refuses a second node "
                     "with a taken name; set k3s_node_name")
        names.setdefault(key, (h, node))
        addr = typed.get(h, {}).get("ansible_host", h)
        ip = _ip(str(addr))
        akey = str(ip) if ip is not None else str(addr).lower()
        if akey in addrs:
            p.append(f"address {addr} is used by {addrs[akey]} and {h}; fix ansible_host")
        addrs.setdefault(akey, h)
        arch = (hosts.get(h) or {}).get("arch")
        if arch is not None:
            if str(arch).startswith("armv6"):
                p.append(f"{h}: {arch} is ARMv6 (Raspberry Pi Zero / Pi 1); K3s needs ARMv7 or newer; "
                         "leave this host out")
            elif arch not in ARCHITECTURES:
                p.append(f"{h}: CPU architecture '{arch}' has no K3s binary (x86_64, aarch64, armv7l only)")

    # Cluster-wide values.
    if cvars:
        cluster_config = cvars.get("k3s_cluster_config") or {}
        endpoint = cvars.get("k3s_datastore_endpoint") or ""
        if servers and len(servers) % 2 == 0 and not endpoint:
            p.append(f"{len(servers)} servers ({', '.join(servers)}): embedded etcd needs an odd number "
                     "(1, 3, 5, ...) to keep quorum; add or remove one (or put the servers on an external "
                     "datastore, k3s_datastore_endpoint, where any number share it)")
        server_ha = value(first_server, "k3s_server_ha") if first_server else False
        p.extend(k3s_datastore.datastore_problems(
            endpoint, {n: cvars.get(n) or "" for n in k3s_datastore.FILE_VARS},
            lambda path: os.path.isfile(path) and os.access(path, os.R_OK),
            str(server_ha).strip().lower() in ("true", "yes", "on", "1", "y", "t")))
        version = cvars.get("k3s_version") or ""
        if version:
            p.extend(version_problems(version))
        elif not CHANNEL_RE.fullmatch(str(cvars.get("k3s_channel") or "")):
            p.append(f"k3s_channel {_q(cvars.get('k3s_channel'))} is not a K3s release channel: stable, latest, "
                     "testing or a minor version like v1.31 (or pin k3s_version)")
        if cvars.get("k3s_token"):
            p.extend(token_problems(cvars["k3s_token"]))
        if cvars.get("k3s_api_endpoint"):
            p.extend(address_problems("k3s_api_endpoint", cvars["k3s_api_endpoint"],
                                      what="an IP address or DNS name (no scheme, no port: set k3s_api_port)"))
        p.extend(_airgap_problems(cvars.get("k3s_airgap_dir") or "", version,
                                  [(hosts.get(h) or {}).get("arch") for h in cluster]))
        p.extend(k3s_addons.vip_problems(
            cvars.get("k3s_api_vip") or "", cvars.get("k3s_api_vip_interface") or "eth0",
            (svars or {}).get("k3s_addons") or [],
            {h: [a for a in (typed[h].get("ansible_host", h), typed[h].get("k3s_node_ip")) if a] for h in cluster},
            {h: (hosts.get(h) or {}).get("networks") for h in servers}))
        if svars:
            p.extend(k3s_addons.problems(svars.get("k3s_server_manifests"), svars.get("k3s_helm_charts"),
                                         svars.get("k3s_addons"), svars.get("k3s_addon_overrides"),
                                         svars.get("k3s_addon_access") or "read-only",
                                         cvars.get("k3s_airgap_dir") or ""))
        # What K3s compares when a server joins.
        for key in SERVER_EQUAL_KEYS:
            seen = {}
            for h in servers:
                if h not in typed:
                    continue
                merged = dict(cluster_config)
                merged.update(value(h, "k3s_server_config") or {})
                seen[h] = merged.get(key, merged.get(key + "+"))
            if len({repr(v) for v in seen.values()}) > 1:
                p.append(f"'{key}' differs between servers ({_members_text(list(seen), seen, False)}): K3s refuses "
                         "a server whose value differs (critical configuration value mismatch); set it once, in "
                         "k3s_cluster_config")
    return p


def remove_names(value):
    """The node names of ``k3s_remove``: a comma-separated string or a list."""
    items = value.split(",") if isinstance(value, str) else list(value or [])
    return [str(n).strip() for n in items if str(n).strip()]


def remove_problems(value, description):
    """Why removing the nodes ``value`` names (``k3s_remove``) is refused; [] when it is fine."""
    names = remove_names(value)
    if not names:
        return ["set k3s_remove to the inventory name(s) of the node(s) to remove, for example -e k3s_remove=pi3-2"]
    cluster, servers = description.get("cluster") or [], description.get("servers") or []
    p = [f"{n} is not in k3s_cluster" for n in names if n not in cluster]
    if servers and servers[0] in names:
        p.append(f"{servers[0]} is the first server (pik3s runs kubectl there): put another server first in the "
                 f"'{description.get('server_group') or 'server'}' group before removing it")
    return p


# What backup.yml writes into a backup directory and restore.yml reads back.
BACKUP_FILES = ("snapshot", "token", "nodes.json")


def restore_problems(path):
    """Why ``path`` (``k3s_restore``, on the controller) is not a backup restore.yml can use; [] when it is."""
    path = str(path or "").strip()
    example = "for example -e k3s_restore=inventories/prod/.backups/pik3s-srv1-1700000000"
    if not path:
        return [f"set k3s_restore to a directory written by backup.yml ({', '.join(BACKUP_FILES)}), {example}"]
    missing = [f for f in BACKUP_FILES if not os.path.isfile(os.path.join(path, f))]
    if missing:
        return [f"k3s_restore {path} is not a backup written by backup.yml: it lacks {', '.join(missing)} "
                f"({example})"]
    return []
