"""The pik3s Python API: cluster operations on the pik3s.cluster playbooks.

Every operation takes an inventory (a path to a file, directory or script,
or an in-memory description, see ``pik3s.inventory.build``), extra
variables, a ``--limit`` pattern, a verbosity and an event callback, and
returns a ``pik3s.results.Result``. The inventory is first checked offline
with the playbooks' own preflight rules: a broken one gives a Result with
status ``invalid`` and its problems, and no host is contacted.

``start()`` is the asynchronous form: it returns a ``Run`` whose
``events()`` stream as they happen, ``cancel()`` stops it and ``wait()``
returns the Result.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pik3s.errors import Pik3sError
from pik3s.inventory import Vault, collection_module
from pik3s.results import Result
from pik3s.runner import OPERATIONS, EventCallback, Run, prepare
from pik3s.ui import DashboardAccess, access, parse_duration

Inventory = str | Path | dict[str, Any]


def _operation_arguments(operation: str, *, extravars: dict[str, Any] | None, limit: str | list[str] | None,
                         nodes: list[str] | None, version: str | None, backup_dir: str | Path | None,
                         confirm: bool, revert_prepare: bool, addon: str | None = None,
                         force: bool = False) -> dict[str, Any]:
    """What ``operation`` itself adds to the caller's extra variables and limit (its own values win),
    after its own checks: the one place for each operation's parameters, for the API and the CLI."""
    given = {"nodes": nodes, "version": version, "backup_dir": backup_dir, "confirm": confirm,
             "revert_prepare": revert_prepare, "addon": addon, "force": force}
    stray = [k for k, v in given.items() if v not in (None, False) and k not in _PARAMETERS.get(operation, ())]
    if stray:
        raise Pik3sError(f"{operation} takes no {', '.join(stray)}")
    own: dict[str, Any] = {}
    require_hosts: list[str] = []
    if operation in ("add_nodes", "remove_nodes"):
        if not nodes:
            verb = "add" if operation == "add_nodes" else "remove"
            raise Pik3sError(f"{operation}: name the node(s) to {verb} (inventory hostnames)")
        require_hosts = list(nodes)
        if operation == "add_nodes":  # site.yml on the new nodes only: no other node restarts
            limit = require_hosts
        else:
            own["k3s_remove"] = ",".join(nodes)
            if force:  # dead hosts: deleted through the first server, never contacted
                own["k3s_remove_force"] = True
    elif operation == "upgrade" and version:
        own["k3s_version"] = version
    elif operation == "restore":
        path = str(Path(backup_dir).expanduser().resolve()) if backup_dir else ""
        problems = collection_module("k3s_rules", "plugin_utils").restore_problems(path)  # restore.yml's rule
        if problems:
            raise Pik3sError(" | ".join(problems))
        own["k3s_restore"] = path
    elif operation == "dashboard" and addon:
        own["k3s_dashboard_addon"] = addon
    elif operation == "reset":
        if not confirm:
            raise Pik3sError("reset removes K3s and all its data: pass confirm=True (CLI: --yes)")
        own.update(k3s_reset_confirm=True, k3s_reset_revert_prepare=bool(revert_prepare))
    return {"extravars": {**(extravars or {}), **own}, "limit": limit, "require_hosts": require_hosts}


_PARAMETERS = {"add_nodes": ("nodes",), "remove_nodes": ("nodes", "force"), "upgrade": ("version",),
               "restore": ("backup_dir",), "reset": ("confirm", "revert_prepare"), "dashboard": ("addon",)}


def start(operation: str, inventory: Inventory, *, extravars: dict[str, Any] | None = None,
          limit: str | list[str] | None = None, verbosity: int = 0, on_event: EventCallback | None = None,
          timeout: int | None = None, state_dir: Path | None = None, nodes: list[str] | None = None,
          version: str | None = None, backup_dir: str | Path | None = None, confirm: bool = False,
          revert_prepare: bool = False, vault_ids: list[str] | None = None,
          vault_password_files: list[str] | None = None, addon: str | None = None,
          force: bool = False) -> Run | Result:
    """Start ``operation`` (a key of ``OPERATIONS``) and return its Run at once, or the ``invalid``
    Result when the inventory breaks the preflight rules. ``nodes`` (add_nodes, remove_nodes),
    ``force`` (remove_nodes: dead hosts, not contacted), ``version`` (upgrade), ``backup_dir``
    (restore), ``confirm`` and ``revert_prepare`` (reset) are the operations' own parameters.
    ``vault_ids`` and ``vault_password_files`` are ansible-playbook's ``--vault-id`` and
    ``--vault-password-file``: the offline check decrypts with them, and the run gets them."""
    if operation not in OPERATIONS:
        raise Pik3sError(f"unknown operation {operation!r} (one of {', '.join(OPERATIONS)})")
    arguments = _operation_arguments(operation, extravars=extravars, limit=limit, nodes=nodes, version=version,
                                     backup_dir=backup_dir, confirm=confirm, revert_prepare=revert_prepare,
                                     addon=addon, force=force)
    vault = Vault(tuple(vault_ids or ()), tuple(vault_password_files or ()))
    prepared = prepare(operation, inventory, verbosity=verbosity, on_event=on_event, timeout=timeout,
                       state_dir=state_dir, vault=vault, **arguments)
    return prepared.start() if isinstance(prepared, Run) else prepared


def _run(operation: str, inventory: Inventory, **kw: Any) -> Result:
    started = start(operation, inventory, **kw)
    if isinstance(started, Result):
        return started
    try:
        return started.wait()
    except KeyboardInterrupt:
        started.cancel()
        return started.wait()


def deploy(inventory: Inventory, **kw: Any) -> Result:
    """Deploy (or converge) the cluster: site.yml."""
    return _run("deploy", inventory, **kw)


def check(inventory: Inventory, **kw: Any) -> Result:
    """site.yml in check mode: ``Result.changes`` lists, per host, the tasks that would change."""
    return _run("check", inventory, **kw)


def add_nodes(inventory: Inventory, nodes: list[str], **kw: Any) -> Result:
    """Join ``nodes`` (already in the inventory) to the cluster: site.yml limited to them; no other
    node restarts."""
    return _run("add_nodes", inventory, nodes=nodes, **kw)


def upgrade(inventory: Inventory, version: str | None = None, **kw: Any) -> Result:
    """Rolling upgrade to ``version`` (else the inventory's k3s_version or channel)."""
    return _run("upgrade", inventory, version=version, **kw)


def remove_nodes(inventory: Inventory, nodes: list[str], force: bool = False, **kw: Any) -> Result:
    """Drain, uninstall and delete ``nodes``. ``force``: the hosts are dead and will not return: their
    nodes are deleted through the first server without contacting them (no drain, no uninstall; the
    Result's ``data['pik3s_removed']`` says so per node)."""
    return _run("remove_nodes", inventory, nodes=nodes, force=force, **kw)


def backup(inventory: Inventory, **kw: Any) -> Result:
    """Snapshot etcd and fetch it; ``Result.data['pik3s_backup']['path']`` is the backup directory."""
    return _run("backup", inventory, **kw)


def restore(inventory: Inventory, backup_dir: str | Path, **kw: Any) -> Result:
    """Restore the cluster from a backup directory made by ``backup``."""
    return _run("restore", inventory, backup_dir=backup_dir, **kw)


def reset(inventory: Inventory, *, confirm: bool = False, revert_prepare: bool = False, **kw: Any) -> Result:
    """Remove K3s and all its data from the hosts. Refused unless ``confirm=True``."""
    return _run("reset", inventory, confirm=confirm, revert_prepare=revert_prepare, **kw)


def status(inventory: Inventory, **kw: Any) -> Result:
    """The cluster as its first server sees it (``Result.cluster``); changes nothing."""
    return _run("status", inventory, **kw)


def dashboard(inventory: Inventory, addon: str | None = None, duration: str = "1h",
              **kw: Any) -> tuple[Result, DashboardAccess | None]:
    """Make sure the UI add-on (``addon``, else the first of k3s_addons) is deployed, then return how to
    open it and a fresh token of ``duration`` (10m to 48h), asked of the API directly: the token is in
    the returned DashboardAccess only, never in the Result, its events or logs."""
    parse_duration(duration)  # a bad duration fails before anything runs
    result = _run("dashboard", inventory, addon=addon, **kw)
    info = result.data.get("pik3s_dashboard")
    if not result.ok or not isinstance(info, dict):
        return result, None
    return result, access(info, duration)
