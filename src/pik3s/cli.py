"""The ``pik3s`` command line.

Exit codes: 0 success, 1 the operation failed (message on stderr),
2 bad usage, 3 the lab is not up (``lab status``), 4 the inventory is
invalid (``inventory validate``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

from pik3s import __version__
from pik3s import inventory as inventory_mod
from pik3s.errors import Pik3sError
from pik3s.lab import image, lab, spec


def _progress(msg: str) -> None:
    print(f"pik3s: {msg}", file=sys.stderr, flush=True)


def _lab_name(args: argparse.Namespace) -> str:
    if args.name:
        return str(args.name)
    return spec.load_spec(args.spec).name


def cmd_lab_image(args: argparse.Namespace) -> int:
    arches = image.ARCHES if args.arch == "all" else (args.arch,)
    # Builds are mostly single-threaded (dpkg under emulation): two at once
    # use both cores of a small machine.
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(lambda a: image.ensure_image(a, force=args.force), arches))
    for arch, result in zip(arches, results, strict=True):
        how = f"built in {result.seconds:.0f}s" if result.built else "cached (recipe unchanged)"
        print(f"{arch}\t{result.tag}\t{how}")
    return 0


def cmd_lab_up(args: argparse.Namespace) -> int:
    lab_spec = spec.load_spec(args.spec)
    started = time.monotonic()
    record = lab.up(lab_spec, args.state_dir, progress=_progress)
    _progress(f"lab {record.name} up in {time.monotonic() - started:.1f}s")
    _print_status(record.name, args.state_dir, "table")
    print(f"\ninventory: {record.inventory}")
    return 0


def cmd_lab_down(args: argparse.Namespace) -> int:
    removed = lab.down(_lab_name(args), args.state_dir, progress=_progress)
    if not removed:
        _progress("nothing to remove")
    return 0


def _print_status(name: str, state_dir: Path | None, output: str) -> int:
    record, hosts = lab.status(name, state_dir)
    if record is None:
        if output == "json":
            print(json.dumps({"name": name, "up": False}))
        else:
            print(f"lab {name} is not up")
        return 3
    if output == "json":
        print(json.dumps({"name": name, "up": True, "mirror": None if record.airgap else record.mirror_url,
                          "inventory": str(record.inventory),
                          "hosts": [asdict(h) for h in hosts]}, indent=1))
        return 0
    rows = [("NAME", "ARCH", "MODEL", "IP", "CONTAINER", "SYSTEMD", "MEMORY")]
    rows += [(h.name, h.arch, h.model, h.ip, h.container, h.systemd, h.memory_used) for h in hosts]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(v.ljust(widths[i]) for i, v in enumerate(r)).rstrip())
    if record.airgap:
        print("\nair-gapped: no mirror; releases (the pik3s K3s simulator, not K3s) on the controller")
    else:
        print(f"\nmirror: {record.mirror_url} (serves the pik3s K3s simulator, not K3s)")
    return 0


def cmd_lab_status(args: argparse.Namespace) -> int:
    return _print_status(_lab_name(args), args.state_dir, args.output)


def cmd_lab_inventory(args: argparse.Namespace) -> int:
    state = args.state_dir or lab.default_state_dir(_lab_name(args))
    data = lab.inventory_json(state)
    if args.host is not None:
        print(json.dumps(data["_meta"]["hostvars"].get(args.host, {})))
    else:
        print(json.dumps(data, indent=1))
    return 0


EXIT_INVALID_INVENTORY = 4


def cmd_inventory_validate(args: argparse.Namespace) -> int:
    result = inventory_mod.validate(args.inventory)
    if args.output == "json":
        print(json.dumps({"inventory": args.inventory, "valid": result.ok, "hosts": result.hosts,
                          "problems": result.problems, "unchecked": result.unchecked}, indent=1))
    else:
        for problem in result.problems:
            print(f"problem: {problem}")
        for item in result.unchecked:
            print(f"unchecked: {item}")
        verdict = "valid" if result.ok else f"invalid ({len(result.problems)} problem(s))"
        print(f"{args.inventory}: {verdict}; {len(result.hosts)} host(s) in k3s_cluster; no host was contacted")
    return 0 if result.ok else EXIT_INVALID_INVENTORY


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pik3s", description="Deploy and operate K3s on Raspberry Pis and Debian/Ubuntu hosts.")
    parser.add_argument("--version", action="version", version=f"pik3s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    lab_p = sub.add_parser("lab", help="local Raspberry-Pi-shaped test hosts (containers) with a K3s simulator")
    lab_sub = lab_p.add_subparsers(dest="lab_command", required=True)

    p = lab_sub.add_parser("image", help="build the lab host image(s), unless the recipe's image exists")
    p.add_argument("--arch", choices=(*image.ARCHES, "all"), default="amd64")
    p.add_argument("--force", action="store_true", help="rebuild even when the image exists")
    p.add_argument("--jobs", "-j", type=int, default=2, help="images built at once (default 2)")
    p.set_defaults(func=cmd_lab_image)

    def add_where(p: argparse.ArgumentParser, name: bool) -> None:
        p.add_argument("--spec", type=Path, default=None,
                       help="lab spec YAML (default: the seed lab, 3 x Pi 4 + 2 x Pi 3)")
        if name:
            p.add_argument("--name", default=None, help="lab name (instead of --spec)")
        p.add_argument("--state-dir", type=Path, default=None,
                       help="where the lab's key, inventory and record live "
                            "(default: $PIK3S_LAB_HOME/<name> or ~/.local/state/pik3s/labs/<name>)")

    p = lab_sub.add_parser("up", help="start the hosts of a lab spec and write their Ansible inventory")
    add_where(p, name=False)
    p.set_defaults(func=cmd_lab_up)

    p = lab_sub.add_parser("down", help="remove exactly what `lab up` created")
    add_where(p, name=True)
    p.set_defaults(func=cmd_lab_down)

    p = lab_sub.add_parser("inventory", help="the lab's Ansible inventory as a dynamic inventory (JSON)")
    add_where(p, name=True)
    p.add_argument("--list", action="store_true", help="all groups and hosts (the default)")
    p.add_argument("--host", default=None, help="one host's variables")
    p.set_defaults(func=cmd_lab_inventory)

    p = lab_sub.add_parser("status", help="list the lab's hosts and their state")
    add_where(p, name=True)
    p.add_argument("--output", "-o", choices=("table", "json"), default="table")
    p.set_defaults(func=cmd_lab_status)

    inv_p = sub.add_parser("inventory", help="inventory tools")
    inv_sub = inv_p.add_subparsers(dest="inventory_command", required=True)
    p = inv_sub.add_parser("validate", help="check an inventory with the playbooks' preflight rules, offline")
    p.add_argument("-i", "--inventory", required=True, help="inventory file, directory or script")
    p.add_argument("--output", "-o", choices=("text", "json"), default="text")
    p.set_defaults(func=cmd_inventory_validate)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except Pik3sError as exc:
        print(f"pik3s: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
