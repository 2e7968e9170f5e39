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


def _collection() -> Path:
    return collections_root() / "ansible_collections/pik3s/cluster"


def _rules() -> ModuleType:
    root = str(collections_root())
    if root not in sys.path:
        sys.path.insert(0, root)
    return importlib.import_module("ansible_collections.pik3s.cluster.plugins.module_utils.k3s_inventory")


def _role_file(role: str, kind: str) -> dict[str, Any]:
    data = yaml.safe_load((_collection() / "roles" / role / kind / "main.yml").read_text())
    return data if isinstance(data, dict) else {}


@dataclass
class Validation:
    problems: list[str] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def read_inventory(inventory: str) -> dict[str, Any]:
    """``ansible-inventory --list`` of ``inventory`` (offline)."""
    tool = Path(sys.executable).with_name("ansible-inventory")
    cmd = [str(tool) if tool.exists() else "ansible-inventory", "-i", inventory, "--list"]
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


def describe(data: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The rules' description of an ``ansible-inventory --list`` result, and what could not be checked."""
    hostvars: dict[str, dict[str, Any]] = data.get("_meta", {}).get("hostvars", {})
    defaults = _role_file("_common", "defaults")
    cluster = _members(data, "k3s_cluster")
    first = hostvars.get(cluster[0], {}) if cluster else {}
    unchecked: list[str] = []
    cvars: dict[str, Any] = {}
    for name in CLUSTER_VARS:
        value = first.get(name, defaults.get(name))
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
    data = read_inventory(inventory)
    description, unchecked = describe(data)
    owned = _role_file("_common", "vars").get("_k3s_owned_keys", {})
    problems = list(_rules().inventory_problems(description, owned))
    return Validation(problems, unchecked, [h["name"] for h in description["hosts"]])
