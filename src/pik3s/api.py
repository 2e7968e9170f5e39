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
from pik3s.results import Result
from pik3s.runner import OPERATIONS, EventCallback, Run, prepare

Inventory = str | Path | dict[str, Any]


def start(operation: str, inventory: Inventory, *, extravars: dict[str, Any] | None = None,
          limit: str | list[str] | None = None, verbosity: int = 0, on_event: EventCallback | None = None,
          timeout: int | None = None, state_dir: Path | None = None,
          require_hosts: list[str] | None = None) -> Run | Result:
    """Start ``operation`` (a key of ``OPERATIONS``) and return its Run at once, or the ``invalid``
    Result when the inventory breaks the preflight rules."""
    if operation not in OPERATIONS:
        raise Pik3sError(f"unknown operation {operation!r} (one of {', '.join(OPERATIONS)})")
    prepared = prepare(operation, inventory, extravars=extravars, limit=limit, verbosity=verbosity,
                       on_event=on_event, timeout=timeout, state_dir=state_dir, require_hosts=require_hosts)
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
    if not nodes:
        raise Pik3sError("add_nodes: name the node(s) to add (inventory hostnames)")
    return _run("add_nodes", inventory, limit=list(nodes), require_hosts=list(nodes), **kw)


def upgrade(inventory: Inventory, version: str | None = None, **kw: Any) -> Result:
    """Rolling upgrade to ``version`` (else the inventory's k3s_version or channel)."""
    extravars = dict(kw.pop("extravars", None) or {})
    if version:
        extravars["k3s_version"] = version
    return _run("upgrade", inventory, extravars=extravars, **kw)


def remove_nodes(inventory: Inventory, nodes: list[str], **kw: Any) -> Result:
    """Drain, uninstall and delete ``nodes``."""
    if not nodes:
        raise Pik3sError("remove_nodes: name the node(s) to remove (inventory hostnames)")
    extravars = {**(kw.pop("extravars", None) or {}), "k3s_remove": ",".join(nodes)}
    return _run("remove_nodes", inventory, extravars=extravars, require_hosts=list(nodes), **kw)


def backup(inventory: Inventory, **kw: Any) -> Result:
    """Snapshot etcd and fetch it; ``Result.data['pik3s_backup']['path']`` is the backup directory."""
    return _run("backup", inventory, **kw)


def restore(inventory: Inventory, backup_dir: str | Path, **kw: Any) -> Result:
    """Restore the cluster from a backup directory made by ``backup``."""
    path = Path(backup_dir).expanduser().resolve()
    if not (path / "snapshot").is_file():
        raise Pik3sError(f"{backup_dir} is not a pik3s backup (no snapshot file in it)")
    extravars = {**(kw.pop("extravars", None) or {}), "k3s_restore": str(path)}
    return _run("restore", inventory, extravars=extravars, **kw)


def reset(inventory: Inventory, *, confirm: bool = False, revert_prepare: bool = False, **kw: Any) -> Result:
    """Remove K3s and all its data from the hosts. Refused unless ``confirm=True``."""
    if not confirm:
        raise Pik3sError("reset removes K3s and all its data: pass confirm=True (CLI: --yes)")
    extravars = {**(kw.pop("extravars", None) or {}), "k3s_reset_confirm": True,
                 "k3s_reset_revert_prepare": bool(revert_prepare)}
    return _run("reset", inventory, extravars=extravars, **kw)


def status(inventory: Inventory, **kw: Any) -> Result:
    """The cluster as its first server sees it (``Result.cluster``); changes nothing."""
    return _run("status", inventory, **kw)
