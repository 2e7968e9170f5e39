"""Offline inventory validation: the playbooks' preflight rules, applied
without contacting any host.

The rules are the collection's own (``plugins/module_utils/k3s_inventory.py``,
also behind the ``pik3s.cluster.k3s_inventory_problems`` filter that
``site.yml`` runs), so both report the same messages. The inventory is read
with ``ansible-inventory --list`` (which runs dynamic inventory scripts
locally, never SSH). Values that are Jinja templates cannot be resolved
offline; they are listed as unchecked instead of guessed.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from pik3s.errors import Pik3sError

CHECKOUT = Path(__file__).resolve().parents[2]
CLUSTER_VARS = ("k3s_version", "k3s_token", "k3s_api_endpoint", "k3s_cluster_config", "k3s_server_config",
                "k3s_agent_config", "k3s_server_group", "k3s_agent_group")


def collections_root() -> Path:
    """The directory holding ansible_collections/pik3s/cluster: $PIK3S_COLLECTIONS_PATH, else the
    checkout's, else Ansible's default collection paths."""
    for candidate in (os.environ.get("PIK3S_COLLECTIONS_PATH"), CHECKOUT / "collections",
                      Path.home() / ".ansible/collections", Path("/usr/share/ansible/collections")):
        if candidate and (Path(candidate) / "ansible_collections/pik3s/cluster/galaxy.yml").is_file():
            return Path(candidate)
    raise Pik3sError("cannot find the pik3s.cluster collection: set PIK3S_COLLECTIONS_PATH to the directory "
                     "that holds ansible_collections/pik3s/cluster")


def cluster_state_dir(name: str) -> Path:
    """Where a cluster described in memory keeps its inventory, kubeconfig (.kube/) and backups
    (.backups/): $PIK3S_HOME/clusters/<name>, else $XDG_STATE_HOME/pik3s/clusters/<name>
    (~/.local/state/pik3s/clusters/<name>)."""
    if not name.replace("-", "").replace("_", "").isalnum():
        raise Pik3sError(f"cluster name {name!r}: use letters, digits, '-' and '_'")
    base = os.environ.get("PIK3S_HOME")
    root = Path(base) if base else Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local/state") / "pik3s"
    return root / "clusters" / name


def collection_dir() -> Path:
    """The pik3s.cluster collection itself (roles/, playbooks/, inventories/)."""
    return collections_root() / "ansible_collections/pik3s/cluster"


def collection_module(name: str) -> ModuleType:
    """One of the collection's ``module_utils`` (the one place its rules live), e.g. ``k3s_inventory``."""
    root = str(collections_root())
    if root not in sys.path:
        sys.path.insert(0, root)
    return importlib.import_module(f"ansible_collections.pik3s.cluster.plugins.module_utils.{name}")


def role_defaults(role: str) -> dict[str, Any]:
    """A role's defaults/main.yml, as written (the one place a default lives)."""
    return _role_file(role, "defaults")


def _role_file(role: str, kind: str) -> dict[str, Any]:
    data = yaml.safe_load((collection_dir() / "roles" / role / kind / "main.yml").read_text())
    return data if isinstance(data, dict) else {}


@dataclass
class Validation:
    problems: list[str] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def ansible_tool(name: str) -> str:
    """The Ansible command installed with this Python (the venv's), else the one on PATH, absolute."""
    tool = Path(sys.executable).with_name(name)
    if tool.exists():
        return str(tool)
    found = shutil.which(name)
    if not found:
        raise Pik3sError(f"{name} not found: install ansible-core (pip install pik3s brings it)")
    return str(Path(found).resolve())


def read_inventory(inventory: str) -> dict[str, Any]:
    """``ansible-inventory --list`` of ``inventory`` (offline)."""
    cmd = [ansible_tool("ansible-inventory"), "-i", inventory, "--list"]
    env = {**os.environ, "ANSIBLE_INVENTORY_UNPARSED_FAILED": "true",
           "ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED": "true"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["ansible-inventory failed"])[-1]
        raise Pik3sError(f"cannot read inventory {inventory}: {last}")
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def _members(data: dict[str, Any], group: str) -> list[str]:
    """Hosts of ``group`` and its children, in inventory order, each once."""
    out: list[str] = []
    entry = data.get(group) or {}
    for h in entry.get("hosts", []):
        if h not in out:
            out.append(h)
    for child in entry.get("children", []):
        for h in _members(data, child):
            if h not in out:
                out.append(h)
    return out


def _templated(value: Any) -> bool:
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    if isinstance(value, dict):
        return any(_templated(k) or _templated(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_templated(v) for v in value)
    return False


def describe(data: dict[str, Any], extravars: dict[str, Any] | None = None) -> tuple[dict[str, Any], list[str]]:
    """The rules' description of an ``ansible-inventory --list`` result (with the run's extra
    variables, which win over the inventory as in Ansible), and what could not be checked."""
    extravars = extravars or {}
    hostvars: dict[str, dict[str, Any]] = data.get("_meta", {}).get("hostvars", {})
    defaults = _role_file("_common", "defaults")
    cluster = _members(data, "k3s_cluster")
    first = hostvars.get(cluster[0], {}) if cluster else {}
    unchecked: list[str] = []
    cvars: dict[str, Any] = {}
    for name in CLUSTER_VARS:
        value = extravars[name] if name in extravars else first.get(name, defaults.get(name))
        if _templated(value):
            unchecked.append(f"{name} (a template; resolved only when a playbook runs)")
            value = "" if not isinstance(value, dict) else {}
        cvars[name] = value
    server_group = str(cvars.pop("k3s_server_group") or "server")
    agent_group = str(cvars.pop("k3s_agent_group") or "agent")
    hosts = []
    for h in cluster:
        v = hostvars.get(h, {})
        node_name, address = v.get("k3s_node_name", h), v.get("ansible_host", h)
        if _templated(node_name) or _templated(address):
            unchecked.append(f"{h}: k3s_node_name / ansible_host (a template)")
            node_name, address = h, h
        # No facts offline: the CPU is checked when the inventory says it.
        arch = v.get("ansible_architecture")
        hosts.append({"name": h, "node_name": node_name, "address": address,
                      "arch": None if arch is None or _templated(arch) else arch})
    return ({"hosts": hosts, "server_group": server_group, "agent_group": agent_group,
             "servers": _members(data, server_group), "agents": _members(data, agent_group),
             "vars": cvars}, unchecked)


def validate(inventory: str) -> Validation:
    """Apply the preflight rules to ``inventory`` without contacting any host."""
    return validate_data(read_inventory(inventory))


def validate_data(data: dict[str, Any], extravars: dict[str, Any] | None = None) -> Validation:
    """Apply the preflight rules to an ``ansible-inventory --list`` result (and extra variables)."""
    description, unchecked = describe(data, extravars)
    owned = _role_file("_common", "vars").get("_k3s_owned_keys", {})
    problems = list(collection_module("k3s_inventory").inventory_problems(description, owned))
    return Validation(problems, unchecked, [h["name"] for h in description["hosts"]])


_DESCRIPTION_KEYS = {"name", "servers", "agents", "user", "vars"}
_HOST_KEYS = {"name", "host", "user", "arch", "vars"}


def _host_entry(entry: Any, where: str) -> tuple[str, dict[str, Any]]:
    if isinstance(entry, str) and entry:
        name, spec = entry, {}
    elif isinstance(entry, dict):
        unknown = set(entry) - _HOST_KEYS
        if unknown:
            raise Pik3sError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} "
                             f"(a host takes {', '.join(sorted(_HOST_KEYS))})")
        given = entry.get("name") or entry.get("host")
        if not isinstance(given, str) or not given:
            raise Pik3sError(f"{where}: a host needs a name or host")
        name, spec = given, entry
    else:
        raise Pik3sError(f"{where}: a host is a name/address or a mapping with name, host, user, arch, vars")
    hv: dict[str, Any] = {}
    if spec.get("host") and spec["host"] != name:
        hv["ansible_host"] = spec["host"]
    if spec.get("user"):
        hv["ansible_user"] = spec["user"]
    if spec.get("arch"):  # what `validate` checks offline; gathered facts decide on the host
        hv["ansible_architecture"] = spec["arch"]
    extra = spec.get("vars") or {}
    if not isinstance(extra, dict):
        raise Pik3sError(f"{where}: vars must be a mapping")
    hv.update(extra)
    return name, hv


def build(description: dict[str, Any]) -> dict[str, Any]:
    """An Ansible inventory (the k3s_cluster/server/agent shape) from a short description::

        {"servers": ["pi4-1"], "agents": ["pi4-2", {"name": "pi3-1", "host": "10.0.0.13", "arch": "armv7l"}],
         "user": "pi", "vars": {"k3s_version": "v1.31.4+k3s1"}}

    A host is its name (also its address) or a mapping with ``name``, ``host`` (address), ``user``,
    ``arch`` (``ansible_architecture``, checked by offline validation) and ``vars``.
    """
    if not isinstance(description, dict):
        raise Pik3sError("an inventory description is a mapping with servers, agents, user, vars")
    unknown = set(description) - _DESCRIPTION_KEYS
    if unknown:
        raise Pik3sError(f"inventory description: unknown key(s) {', '.join(sorted(unknown))} "
                         f"(it takes {', '.join(sorted(_DESCRIPTION_KEYS))})")
    servers, agents = description.get("servers") or [], description.get("agents") or []
    if not isinstance(servers, list) or not servers:
        raise Pik3sError("inventory description: servers must list at least one host")
    if not isinstance(agents, list):
        raise Pik3sError("inventory description: agents must be a list")
    user = description.get("user")
    groups: dict[str, dict[str, Any]] = {"server": {}, "agent": {}}
    seen: set[str] = set()
    for group, entries in (("server", servers), ("agent", agents)):
        for i, entry in enumerate(entries):
            name, hv = _host_entry(entry, f"inventory description: {group}s[{i}]")
            if name in seen:
                raise Pik3sError(f"inventory description: {name} is listed twice")
            seen.add(name)
            groups[group][name] = hv or None
    cluster_vars = dict(description.get("vars") or {})
    if user:
        cluster_vars.setdefault("ansible_user", user)
    inv: dict[str, Any] = {"k3s_cluster": {"children": {g: {"hosts": h} for g, h in groups.items()}}}
    if cluster_vars:
        inv["k3s_cluster"]["vars"] = cluster_vars
    return inv


def write(description: dict[str, Any], directory: Path) -> Path:
    """Write the inventory built from ``description`` to ``directory/inventory.yml`` (0600 in a 0700
    directory: it may hold the token). Its directory is the playbooks' inventory_dir (kubeconfig, backups)."""
    inv = build(description)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    directory.chmod(0o700)
    path = directory / "inventory.yml"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("# Written by pik3s from an inventory description; rewritten at each run.\n")
        yaml.safe_dump(inv, fh, sort_keys=False)
    path.chmod(0o600)
    return path
