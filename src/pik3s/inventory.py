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

import functools
import importlib
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from pik3s.collection import find_collection
from pik3s.errors import Pik3sError


def collections_root() -> Path:
    """The directory holding ansible_collections/pik3s/cluster that pik3s runs (pik3s.collection)."""
    return find_collection().root


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


def collection_module(name: str, kind: str = "module_utils") -> ModuleType:
    """One of the collection's ``module_utils`` (or ``plugin_utils``), where its rules live, e.g.
    ``k3s_token`` or ``k3s_rules``."""
    root = str(collections_root())
    if root not in sys.path:
        sys.path.insert(0, root)
    return importlib.import_module(f"ansible_collections.pik3s.cluster.plugins.{kind}.{name}")


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
    description: dict[str, Any] = field(default_factory=dict)

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


_UNREADABLE = object()


@dataclass(frozen=True)
class Vault:
    """The vault options of ``ansible-playbook`` (``--vault-id``, ``--vault-password-file``), passed to
    every Ansible command pik3s runs; ANSIBLE_VAULT_PASSWORD_FILE, ANSIBLE_VAULT_IDENTITY_LIST and the
    config's vault settings apply as they do for Ansible."""

    ids: tuple[str, ...] = ()
    password_files: tuple[str, ...] = ()

    def args(self) -> list[str]:
        out: list[str] = []
        for vault_id in self.ids:
            out += ["--vault-id", vault_id]
        for path in self.password_files:
            out += ["--vault-password-file", path]
        return out

    def decrypt(self, data: Any) -> tuple[Any, list[str]]:
        """``data`` (``ansible-inventory --list`` output) with each vault-encrypted value decrypted, and
        the variables that could not be."""
        names: set[str] = set()
        cache: dict[str, Any] = {}

        def variable(path: tuple[str, ...]) -> str:
            """The variable a value belongs to: _meta.hostvars.<host>.<variable>... or <group>.vars.<variable>..."""
            if path[:2] == ("_meta", "hostvars") and len(path) > 3:
                return path[3]
            return path[2] if len(path) > 2 and path[1] == "vars" else path[-1]

        def walk(value: Any, path: tuple[str, ...]) -> Any:
            if isinstance(value, dict):
                if set(value) == {"__ansible_vault"}:
                    return self._plain(value["__ansible_vault"], variable(path), names, cache)
                out = {k: walk(v, (*path, str(k))) for k, v in value.items()}
                return {k: v for k, v in out.items() if v is not _UNREADABLE}  # reported, not checked
            if isinstance(value, list):
                return [walk(v, path) for v in value]
            return value

        plain = walk(data, ())
        if not names:
            return plain, []
        given = bool(self.ids or self.password_files or os.environ.get("ANSIBLE_VAULT_PASSWORD_FILE")
                      or os.environ.get("ANSIBLE_VAULT_IDENTITY_LIST"))
        why = ("the vault password did not decrypt it" if given else
               "no vault password was given: pass it as to ansible-playbook (--vault-password-file FILE, "
               "--vault-id ID@FILE, --ask-vault-pass, or ANSIBLE_VAULT_PASSWORD_FILE)")
        return plain, [f"{n} is vault-encrypted and {why}" for n in sorted(names)]

    def _plain(self, ciphertext: str, name: str, failed: set[str], cache: dict[str, Any]) -> Any:
        if ciphertext in cache:
            if cache[ciphertext] is _UNREADABLE:
                failed.add(name)
            return cache[ciphertext]
        from ansible.errors import AnsibleError
        from ansible.parsing.vault import VaultLib

        try:
            value: Any = VaultLib(self._secrets()).decrypt(ciphertext.encode()).decode()
        except AnsibleError:
            value = _UNREADABLE
            failed.add(name)
        cache[ciphertext] = value
        return value

    def _secrets(self) -> list[Any]:
        return _vault_secrets(self.ids, self.password_files)


@functools.lru_cache(maxsize=4)
def _vault_secrets(ids: tuple[str, ...], password_files: tuple[str, ...]) -> list[Any]:
    """Ansible's vault secrets from these options and its configuration, loaded once."""
    from ansible import constants
    from ansible.cli import CLI
    from ansible.parsing.dataloader import DataLoader

    vault_ids = [*(constants.DEFAULT_VAULT_IDENTITY_LIST or []), *ids]
    options: dict[str, Any] = {"vault_ids": vault_ids, "vault_password_files": list(password_files),
                               "ask_vault_pass": False, "auto_prompt": False}
    if "initialize_context" in inspect.signature(CLI.setup_vault_secrets).parameters:  # ansible-core 2.19
        options["initialize_context"] = False  # pik3s's own use: Ansible's process-wide context untouched
    try:
        return list(CLI.setup_vault_secrets(DataLoader(), **options))
    except Exception as exc:  # noqa: BLE001 (Ansible's errors for an unreadable password file)
        raise Pik3sError(f"cannot load the vault password: {exc}") from None


def _inventory_env() -> dict[str, str]:
    return {**os.environ, "ANSIBLE_INVENTORY_UNPARSED_FAILED": "true",
            "ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED": "true", "ANSIBLE_FORCE_COLOR": "0",
            "ANSIBLE_NOCOLOR": "1"}


def read_inventory(inventory: str, vault: Vault | None = None) -> dict[str, Any]:
    """``ansible-inventory --list`` of ``inventory`` (offline); vault-encrypted values stay encrypted
    (``Vault.decrypt``)."""
    cmd = [ansible_tool("ansible-inventory"), "-i", inventory, "--list", *(vault or Vault()).args()]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_inventory_env(), check=False)
    if proc.returncode != 0:
        # All of it: the cause (a YAML line, a script's status and output, a missing path) is rarely last.
        from pik3s.masking import mask_secret_assignments  # (masking imports this module)

        cause = "\n  ".join(mask_secret_assignments(line) for line in proc.stderr.strip().splitlines()
                             if line.strip())
        raise Pik3sError(f"cannot read inventory {inventory}:\n  {cause or 'ansible-inventory failed'}")
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
    variables, which win over the inventory as in Ansible), built by the collection's own
    ``describe`` as the playbooks' preflight builds it, and what could not be checked offline."""
    rules = collection_module("k3s_rules", "plugin_utils")
    extravars = extravars or {}
    checked = set(rules.checked_variables())
    unchecked: list[str] = []
    hostvars: dict[str, dict[str, Any]] = {}
    templated: dict[str, list[str]] = {}
    for h, v in (data.get("_meta", {}).get("hostvars", {}) or {}).items():
        merged = {**v, **extravars}
        for name in sorted(checked & set(merged)):
            if _templated(merged[name]):
                templated.setdefault(name, []).append(h)
                del merged[name]
        hostvars[h] = merged
    groups = {g: _members(data, g) for g in data if g != "_meta"}
    for h in groups.get("all", []):
        hostvars.setdefault(h, dict(extravars))
    cluster = groups.get("k3s_cluster", [])
    for name, where in sorted(templated.items()):
        who = "" if set(cluster) <= set(where) else f" on {', '.join(where)}"
        unchecked.append(f"{name}{who} (a template; resolved only when a playbook runs)")
    # No facts offline: a CPU is checked when the inventory says it (ansible_architecture).
    archs = {h: v["ansible_architecture"] for h, v in hostvars.items()
             if isinstance(v.get("ansible_architecture"), str) and not _templated(v["ansible_architecture"])}
    return rules.describe(hostvars, groups, archs), unchecked


def validate(inventory: str, vault: Vault | None = None) -> Validation:
    """Apply the preflight rules to ``inventory`` without contacting any host."""
    vault = vault or Vault()
    data, vault_problems = vault.decrypt(read_inventory(inventory, vault))
    return validate_data(data, vault_problems=vault_problems)


def validate_data(data: dict[str, Any], extravars: dict[str, Any] | None = None,
                  vault_problems: list[str] | None = None) -> Validation:
    """Apply the preflight rules to an ``ansible-inventory --list`` result whose vault values are
    decrypted (``Vault.decrypt``, which also says what it could not decrypt: ``vault_problems``), and
    the run's extra variables."""
    description, unchecked = describe(data, extravars)
    problems = [*(vault_problems or []),
                *collection_module("k3s_rules", "plugin_utils").inventory_problems(description)]
    return Validation(problems, unchecked, list(description["cluster"]), description)


def remove_problems(nodes: Any, checked: Validation) -> list[str]:
    """The collection's rule for ``k3s_remove`` (remove_node.yml applies it too)."""
    return list(collection_module("k3s_rules", "plugin_utils").remove_problems(nodes, checked.description))


def limit_problems(inventory: str, limit: str, vault: Vault | None = None) -> list[str]:
    """Each part of a ``--limit`` pattern that matches no host, as Ansible itself matches them
    (``ansible-inventory --limit``, offline)."""
    proc = subprocess.run([ansible_tool("ansible-inventory"), "-i", inventory, "--list", "--limit", limit,
                           *(vault or Vault()).args()],
                          capture_output=True, text=True, env=_inventory_env(), check=False)
    unmatched = re.findall(r"Could not match supplied host pattern, ignoring: (.+)", proc.stderr)
    problems = [f"--limit: '{part.strip()}' matches no host of the inventory" for part in unmatched]
    if proc.returncode == 0 and not problems:
        data = json.loads(proc.stdout or "{}")
        if not (data.get("_meta") or {}).get("hostvars"):
            problems.append(f"--limit '{limit}' matches no host of the inventory")
    return problems


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
