"""`k3s etcd-snapshot`: save, list, delete, prune."""

from __future__ import annotations

import datetime as _dt
import json
import ssl
import time
from pathlib import Path

from .common import SIM_NAME, Fatal, log, p
from .config import FLAGS, resolve_config
from .host import version
from .httpclient import HttpError, https_request
from .server import node_name_from
from .tokens import write_private


# etcd-snapshot.
def split_flags(command: str, argv: list[str]) -> tuple[list[str], list[str]]:
    """Separate flags (with their values) from positional arguments."""
    table = FLAGS[command]
    flags: list[str] = []
    positional: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("-") and arg != "-":
            flags.append(arg)
            name = arg.lstrip("-").partition("=")[0]
            if "=" not in arg and table.get(name) in ("str", "list") and i + 1 < len(argv):
                i += 1
                flags.append(argv[i])
        else:
            positional.append(arg)
        i += 1
    return flags, positional


def etcd_snapshot(argv: list[str]) -> int:
    flags, positional = split_flags("etcd-snapshot", argv)
    sub = positional.pop(0) if positional else "save"
    cfg = resolve_config("etcd-snapshot", flags)
    data_dir = Path(cfg.get("data-dir") or p("/var/lib/rancher/k3s"))
    server_dir = data_dir / "server"
    snap_dir = Path(cfg.get("dir") or cfg.get("etcd-snapshot-dir") or server_dir / "db" / "snapshots")
    if not (server_dir / "db" / "etcd").exists():
        raise Fatal(f"etcd database not found in {server_dir}")
    if sub == "save":
        tls = server_dir / "tls"
        endpoint_file = server_dir / "db" / "sim-endpoint"
        endpoint = endpoint_file.read_text().strip() if endpoint_file.exists() else "https://127.0.0.1:6443"
        try:
            state = json.loads(https_request(
                f"{endpoint}/pik3s-sim/snapshot", "GET",
                cadata=(tls / "server-ca.crt").read_text(),
                client_cert=((tls / "client-admin.crt").read_bytes(), (tls / "client-admin.key").read_bytes())))
        except (OSError, ssl.SSLError, HttpError) as exc:
            raise Fatal(f"failed to save snapshot: the local etcd did not answer: {exc}") from exc
        node = node_name_from(cfg)
        name = f"{cfg.get('name') or cfg.get('etcd-snapshot-name') or 'on-demand'}-{node}-{int(time.time())}"
        snap = {"kind": "pik3s-sim-etcd-snapshot", "simulator": SIM_NAME, "version": version(),
                "node": node, "created": time.time(), "state": state}
        snap_dir.mkdir(parents=True, exist_ok=True)
        write_private(snap_dir / name, json.dumps(snap))
        log("info", f"Snapshot {name} saved.")
        retention = cfg.get("snapshot-retention") or cfg.get("etcd-snapshot-retention")
        if retention:
            _prune(snap_dir, int(retention))
        return 0
    if sub in ("ls", "list"):
        rows = [("Name", "Location", "Size", "Created")]
        for f in sorted(snap_dir.glob("*")) if snap_dir.is_dir() else []:
            if f.is_file():
                created = _dt.datetime.fromtimestamp(f.stat().st_mtime, _dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                rows.append((f.name, f"file://{f}", str(f.stat().st_size), created))
        widths = [max(len(r[c]) for r in rows) for c in range(4)]
        for r in rows:
            print(" ".join(v.ljust(widths[c]) for c, v in enumerate(r)).rstrip())
        return 0
    if sub == "delete":
        if not positional:
            raise Fatal("no snapshots given for removal")
        for name in positional:
            target = snap_dir / name
            if not target.is_file():
                raise Fatal(f"snapshot {name} not found in {snap_dir}")
            target.unlink()
            log("info", f"Snapshot {name} deleted.")
        return 0
    if sub == "prune":
        _prune(snap_dir, int(cfg.get("snapshot-retention") or cfg.get("etcd-snapshot-retention") or 5))
        return 0
    raise Fatal(f"unknown etcd-snapshot command {sub!r}")


def _prune(snap_dir: Path, keep: int) -> None:
    snaps = sorted((f for f in snap_dir.glob("*") if f.is_file()), key=lambda f: f.stat().st_mtime)
    for f in snaps[:-keep] if keep > 0 else snaps:
        f.unlink()
        log("info", f"Removing local snapshot {f}")
