"""``pik3s lab`` and ``pik3s demo``: the lab's verbs of the pik3s command line.

The product's command line (``pik3s.cli``) names these verbs in its help and
hands them here; it never imports this package for any other verb.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict
from importlib import resources
from pathlib import Path
from typing import Any

from pik3s import cli as product
from pik3s import inventory as inventory_mod
from pik3s.cli import progress
from pik3s_lab import image, lab, spec

# The lab's dynamic inventory (hosts script + group_vars): in a checkout, inventories/lab links here.
INVENTORY = Path(str(resources.files("pik3s_lab") / "inventory"))
# A checkout: lab/src/pik3s_lab is three levels below the collection's galaxy.yml.
CHECKOUT = Path(__file__).resolve().parents[3]


def _lab_name(args: argparse.Namespace) -> str:
    if args.name:
        return str(args.name)
    return spec.load_spec(args.spec).name


def cmd_lab_image(args: argparse.Namespace) -> int:
    arches = image.ARCHES if args.arch == "all" else (args.arch,)
    results = image.ensure_images(arches, jobs=args.jobs, force=args.force)
    for arch, result in zip(arches, results, strict=True):
        how = f"built in {result.seconds:.0f}s" if result.built else "cached (recipe unchanged)"
        print(f"{arch}\t{result.tag}\t{how}")
    return 0


def cmd_lab_up(args: argparse.Namespace) -> int:
    lab_spec = spec.load_spec(args.spec)
    started = time.monotonic()
    record = lab.up(lab_spec, args.state_dir, progress=progress)
    progress(f"lab {record.name} up in {time.monotonic() - started:.1f}s")
    _print_status(record.name, args.state_dir, "table")
    print(f"\ninventory: {record.inventory}")
    return 0


def cmd_lab_down(args: argparse.Namespace) -> int:
    removed = lab.down(_lab_name(args), args.state_dir, progress=progress)
    if not removed:
        progress("nothing to remove")
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
                          "inventory": str(record.inventory), "etcd": record.etcd_endpoint or None,
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
    if record.etcd_container:
        print(f"etcd: {record.etcd_endpoint} (Debian's etcd, for K3s's external datastore; "
              f"container {record.etcd_container}{', TLS with client certificates' if record.etcd_tls else ''})")
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


def cmd_demo(args: argparse.Namespace) -> int:
    if args.demo_command == "down":
        removed = lab.down(spec.load_spec(None).name, args.state_dir, progress=progress)
        progress("seed lab removed" if removed else "no seed lab to remove")
        return 0
    lab_spec = spec.load_spec(None)
    started = time.monotonic()
    progress(f"bringing up the seed lab '{lab_spec.name}': "
              + ", ".join(f"{h.name} ({h.model}, {h.arch})" for h in lab_spec.hosts))
    record = lab.up(lab_spec, args.state_dir, progress=progress)
    progress(f"lab up after {time.monotonic() - started:.0f}s")
    simulated = not args.release_url
    if simulated:
        progress("K3s comes from the lab mirror, where it is the pik3s K3s SIMULATOR (test equipment: "
                  "no containers run); --release-url/--k3s-version point at real K3s releases")
    extravars: dict[str, Any] = {}
    if args.k3s_version:
        extravars["k3s_version"] = args.k3s_version
    if args.release_url:
        # real binaries: not the lab's cache of simulator "releases"
        extravars["k3s_release_url"] = args.release_url
        extravars["k3s_cache_dir"] = inventory_mod.role_defaults("_common")["k3s_cache_dir"]
    if not (CHECKOUT / "galaxy.yml").is_file():
        # an installed lab package: the kubeconfig goes to the lab's state directory, not site-packages
        extravars["k3s_server_kubeconfig_dest"] = str(Path(record.state_dir) / ".kube" / "k3s.yaml")
    os.environ["PIK3S_LAB_STATE_DIR"] = record.state_dir
    args.inventory, args.limit = str(INVENTORY), None
    rc = product.run_operation(args, "deploy", extravars=extravars)
    if args.output == "text":
        print(f"\ndemo: {time.monotonic() - started:.0f}s in all; remove it with `pik3s demo down`")
        if simulated:
            print("demo: the nodes above run the pik3s K3s simulator, not K3s")
    return rc


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pik3s", description="The pik3s lab (test equipment).")
    sub = parser.add_subparsers(dest="command", required=True)

    lab_p = sub.add_parser("lab", help=product.LAB_HELP)
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

    p = sub.add_parser("demo", help=product.DEMO_HELP)
    p.add_argument("demo_command", nargs="?", choices=("up", "down"), default="up",
                   help="up (default): lab up + deploy + status; down: remove the lab")
    p.add_argument("--k3s-version", default=None, help="release to install (default: the channel's newest)")
    p.add_argument("--release-url", default=None,
                   help="download K3s from here (e.g. https://github.com/k3s-io/k3s/releases/download) "
                        "instead of the lab mirror's simulator")
    p.add_argument("--state-dir", type=Path, default=None, help="the lab's state directory")
    product.add_run_options(p, inventory=False, limit=False)
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    return product.run_parsed(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
