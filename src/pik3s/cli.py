"""The ``pik3s`` command line.

Exit codes (``pik3s.results``): 0 success; 1 pik3s could not do it (one
message on stderr); 2 bad usage; 3 the lab is not up (``lab status``); 4 the
inventory breaks the preflight rules (no host contacted); 5 a task failed on
a host; 6 a host was unreachable (and nothing failed); 130 cancelled.
"""

from __future__ import annotations

import argparse
import atexit
import getpass
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml

from pik3s import __version__, api, ui
from pik3s import inventory as inventory_mod
from pik3s.errors import Pik3sError, UsageError
from pik3s.lab import image, lab, spec
from pik3s.progress import LineView, Progress, TtyView, cluster_table, summary
from pik3s.results import EXIT_ERROR, EXIT_INVALID, EXIT_OK, EXIT_USAGE, Result
from pik3s.runner import OPERATIONS, Event, playbook_path, plays


def _progress(msg: str) -> None:
    print(f"pik3s: {msg}", file=sys.stderr, flush=True)


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


def vault_options(args: argparse.Namespace) -> dict[str, Any]:
    """The vault options of the command line, as the API takes them. --ask-vault-pass asks once, on
    the terminal, and hands the password to Ansible in a 0600 file removed when pik3s exits."""
    ids, files = list(args.vault_id or []), list(args.vault_password_file or [])
    if args.ask_vault_pass:
        if not sys.stdin.isatty():
            raise UsageError("--ask-vault-pass needs a terminal: use --vault-password-file FILE instead")
        password = getpass.getpass("Vault password: ")
        where = Path(tempfile.mkdtemp(prefix="pik3s-vault-"))  # 0700
        atexit.register(shutil.rmtree, where, True)
        path = where / "password"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(password + "\n")
        files.append(str(path))
    return {"vault_ids": ids, "vault_password_files": files}


def add_vault_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--vault-id", action="append", metavar="ID@SOURCE", help="as for ansible-playbook (repeatable)")
    p.add_argument("--vault-password-file", action="append", metavar="FILE",
                   help="as for ansible-playbook (repeatable); ANSIBLE_VAULT_PASSWORD_FILE works too")
    p.add_argument("-J", "--ask-vault-pass", action="store_true", help="ask for the vault password")


def cmd_inventory_validate(args: argparse.Namespace) -> int:
    vault = vault_options(args)
    result = inventory_mod.validate(args.inventory, inventory_mod.Vault(tuple(vault["vault_ids"]),
                                                                        tuple(vault["vault_password_files"])))
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
    return EXIT_OK if result.ok else EXIT_INVALID


# ---- cluster operations ------------------------------------------------------------------------

def parse_extravars(items: list[str]) -> dict[str, Any]:
    """-e values, in order (later wins), read as ``ansible-playbook -e`` reads them: ``@file`` (a YAML/JSON
    mapping), inline YAML/JSON (starting with ``{`` or ``[``, a mapping), or ``key=value`` pairs, several
    in one string, quoted as Ansible quotes them. An error names the argument by its position, never
    quotes it: it may hold a secret."""
    from ansible.errors import AnsibleError
    from ansible.parsing.splitter import parse_kv  # Ansible's own key=value grammar

    out: dict[str, Any] = {}
    for n, item in enumerate(items, start=1):
        where = f"-e #{n}"
        if not item:
            continue
        if item.startswith("@"):
            path = Path(item[1:]).expanduser()
            where = f"-e @{path}"
            try:
                text = path.read_text()
            except OSError as exc:
                raise UsageError(f"{where}: cannot read it: {exc.strerror}") from None
        elif item[0] in "/.":
            raise UsageError(f"{where}: a file name needs '@' in front of it (-e @{item})")
        else:
            text = item
        if item.startswith("@") or item[0] in "[{":
            try:
                data = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                mark = getattr(exc, "problem_mark", None)
                at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
                raise UsageError(f"{where}: not valid YAML/JSON{at}") from None
        else:
            try:
                data = parse_kv(text)
            except AnsibleError:  # Ansible's message quotes the argument: keep it out
                raise UsageError(f"{where}: unbalanced quotes or Jinja braces in key=value pairs") from None
            if "_raw_params" in data:
                raise UsageError(f"{where}: use key=value (several separated by spaces), inline YAML/JSON "
                                 "({...}) or @file")
        if not isinstance(data, dict):
            raise UsageError(f"{where}: must be a mapping of variables (key=value, {{...}} or a file holding one)")
        out.update(data)
    return out


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of seconds") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: give 1 second or more")
    return value


def _views(args: argparse.Namespace, title: str, phases: list[str], hosts: list[str]) -> Any:
    if args.output == "json":
        return None
    if args.output == "jsonl":
        class JsonLines:
            def feed(self, ev: Event) -> None:
                print(json.dumps(ev.to_dict()), flush=True)

            def close(self) -> None:
                pass
        return JsonLines()
    progress = Progress(phases, list(hosts))
    if sys.stderr.isatty() and not args.verbose:  # -v: Ansible's own lines scroll, no redrawn screen
        return TtyView(progress, title)  # sized to the terminal
    return LineView(progress, verbose=args.verbose > 0)


def _report(args: argparse.Namespace, result: Result) -> int:
    if args.output == "json":
        print(json.dumps(result.to_dict(), indent=1))
    elif args.output == "jsonl":
        print(json.dumps({"type": "result", **result.to_dict()}), flush=True)
    else:
        print(summary(result))
    return result.exit_code


def run_operation(args: argparse.Namespace, operation: str, extravars: dict[str, Any] | None = None,
                  **params: Any) -> int:
    """Run ``operation`` with the common options and its own ``params`` (see ``api.start``); -e values
    win over ``extravars``."""
    return _report(args, _run_with_view(args, operation, extravars, **params))


def _run_with_view(args: argparse.Namespace, operation: str, extravars: dict[str, Any] | None = None,
                   **params: Any) -> Result:
    """The run of ``operation`` with its live view, and its Result."""
    op = OPERATIONS[operation]
    started = api.start(operation, args.inventory,
                        extravars={**(extravars or {}), **parse_extravars(args.extra_vars)},
                        limit=args.limit, verbosity=args.verbose, timeout=args.timeout, **vault_options(args),
                        **params)
    if isinstance(started, Result):  # invalid inventory: nothing ran
        return started
    view = _views(args, op.title, plays(playbook_path(op.playbook)), started.hosts)
    try:
        for ev in started.events():
            if view is not None:
                view.feed(ev)
    except KeyboardInterrupt:
        _progress("cancelling (ansible-playbook is being stopped)")
        started.cancel()
        for _ in started.events():
            pass
    if view is not None:
        view.close()
    return started.wait()


def cmd_deploy(args: argparse.Namespace) -> int:
    return run_operation(args, "deploy")


def cmd_check(args: argparse.Namespace) -> int:
    return run_operation(args, "check")


def cmd_add(args: argparse.Namespace) -> int:
    return run_operation(args, "add_nodes", nodes=args.nodes)


def cmd_remove(args: argparse.Namespace) -> int:
    return run_operation(args, "remove_nodes", nodes=args.nodes, force=args.force)


def cmd_upgrade(args: argparse.Namespace) -> int:
    return run_operation(args, "upgrade", version=args.k3s_version)


def cmd_backup(args: argparse.Namespace) -> int:
    return run_operation(args, "backup")


def cmd_restore(args: argparse.Namespace) -> int:
    return run_operation(args, "restore", backup_dir=args.backup)


def cmd_reset(args: argparse.Namespace) -> int:
    if not args.yes:
        if not sys.stdin.isatty():
            raise Pik3sError("reset removes K3s and ALL its data from the hosts: pass --yes to run it "
                             "without a terminal; nothing was changed")
        answer = input(f"This removes K3s and ALL its data from the hosts of {args.inventory}"
                       f"{' (limit ' + args.limit + ')' if args.limit else ''}. Type 'yes' to go on: ")
        if answer.strip() != "yes":
            raise Pik3sError("reset not confirmed; nothing was changed")
    return run_operation(args, "reset", confirm=True, revert_prepare=args.revert_prepare)


def cmd_status(args: argparse.Namespace) -> int:
    if args.output != "text":
        return run_operation(args, "status")
    result = api.status(args.inventory, extravars=parse_extravars(args.extra_vars), verbosity=args.verbose,
                        timeout=args.timeout, **vault_options(args))
    if result.ok and result.cluster is not None:
        print(cluster_table(result))
        return EXIT_OK if result.cluster.nodes else EXIT_ERROR
    print(summary(result))
    return result.exit_code


def cmd_dashboard(args: argparse.Namespace) -> int:
    ui.parse_duration(args.duration)  # before anything runs
    result = _run_with_view(args, "dashboard", addon=args.addon)
    info = result.data.get("pik3s_dashboard")
    if not result.ok or not isinstance(info, dict):
        return _report(args, result)
    access = ui.access(info, args.duration)  # the token: asked of the API here, printed here only
    if args.output == "text":
        print(ui.text(access))
    else:
        print(json.dumps({"result": result.to_dict(), "dashboard": access.to_dict()}, indent=1))
    return result.exit_code


# ---- demo --------------------------------------------------------------------------------------

def cmd_demo(args: argparse.Namespace) -> int:
    if args.demo_command == "down":
        removed = lab.down(spec.load_spec(None).name, args.state_dir, progress=_progress)
        _progress("seed lab removed" if removed else "no seed lab to remove")
        return 0
    lab_spec = spec.load_spec(None)
    started = time.monotonic()
    _progress(f"bringing up the seed lab '{lab_spec.name}': "
              + ", ".join(f"{h.name} ({h.model}, {h.arch})" for h in lab_spec.hosts))
    record = lab.up(lab_spec, args.state_dir, progress=_progress)
    _progress(f"lab up after {time.monotonic() - started:.0f}s")
    simulated = not args.release_url
    if simulated:
        _progress("K3s comes from the lab mirror, where it is the pik3s K3s SIMULATOR (test equipment: "
                  "no containers run); --release-url/--k3s-version point at real K3s releases")
    extravars: dict[str, Any] = {}
    if args.k3s_version:
        extravars["k3s_version"] = args.k3s_version
    if args.release_url:
        # real binaries: not the lab's cache of simulator "releases"
        extravars["k3s_release_url"] = args.release_url
        extravars["k3s_cache_dir"] = inventory_mod.role_defaults("_common")["k3s_cache_dir"]
    os.environ["PIK3S_LAB_STATE_DIR"] = record.state_dir
    args.inventory, args.limit = str(inventory_mod.collection_dir() / "inventories/lab"), None
    rc = run_operation(args, "deploy", extravars=extravars)
    if args.output == "text":
        print(f"\ndemo: {time.monotonic() - started:.0f}s in all; remove it with `pik3s demo down`")
        if simulated:
            print("demo: the nodes above run the pik3s K3s simulator, not K3s")
    return rc


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
    add_vault_options(p)
    p.set_defaults(func=cmd_inventory_validate)

    def add_run(p: argparse.ArgumentParser, inventory: bool = True, limit: bool = True) -> None:
        if inventory:
            p.add_argument("-i", "--inventory", required=True, help="inventory file, directory or script")
        if limit:
            p.add_argument("-l", "--limit", default=None, help="only these hosts (an Ansible host pattern)")
        p.add_argument("-e", "--extra-vars", dest="extra_vars", action="append", default=[],
                       metavar="KEY=VALUE|@FILE", help="extra variables, as for ansible-playbook (repeatable)")
        p.add_argument("-v", "--verbose", action="count", default=0,
                       help="more detail from Ansible (-vvv ...); also Python tracebacks on errors")
        p.add_argument("--output", "-o", choices=("text", "json", "jsonl"), default="text",
                       help="text: live progress + summary; json: one result document; "
                            "jsonl: events as JSON lines, then the result")
        p.add_argument("--timeout", type=_positive_int, default=None,
                       help="cancel the run after this many seconds (1 or more)")
        add_vault_options(p)

    for verb, func, text in (
            ("deploy", cmd_deploy, "deploy or converge the cluster (site.yml)"),
            ("check", cmd_check, "dry run of deploy (site.yml --check): what would change, per host"),
            ("backup", cmd_backup, "etcd snapshot of the cluster, fetched to this machine")):
        p = sub.add_parser(verb, help=text)
        add_run(p)
        p.set_defaults(func=func)
    p = sub.add_parser("add", help="join hosts that are in the inventory but not yet in the cluster")
    p.add_argument("nodes", nargs="+", metavar="NODE", help="inventory hostname")
    add_run(p, limit=False)
    p.set_defaults(func=cmd_add, limit=None)
    p = sub.add_parser("remove", help="drain, uninstall and delete nodes")
    p.add_argument("nodes", nargs="+", metavar="NODE", help="inventory hostname")
    p.add_argument("--force", action="store_true",
                   help="the hosts are dead and will not return: delete their nodes through the first server "
                        "without contacting them (no drain, no uninstall on the hosts)")
    add_run(p, limit=False)
    p.set_defaults(func=cmd_remove, limit=None)
    p = sub.add_parser("upgrade", help="rolling upgrade (servers one at a time, then agents in batches)")
    p.add_argument("--k3s-version", default=None, help="target release, e.g. v1.31.4+k3s1 "
                                                       "(default: the inventory's k3s_version or channel)")
    add_run(p)
    p.set_defaults(func=cmd_upgrade)
    p = sub.add_parser("restore", help="restore the cluster from a backup directory")
    p.add_argument("backup", help="a directory made by `pik3s backup` (…/.backups/pik3s-<node>-<time>)")
    add_run(p)
    p.set_defaults(func=cmd_restore)
    p = sub.add_parser("reset", help="remove K3s and all its data from the hosts")
    p.add_argument("--yes", action="store_true", help="do not ask (needed without a terminal)")
    p.add_argument("--revert-prepare", action="store_true",
                   help="also undo prepare (cgroup flags, swap, module and sysctl files)")
    add_run(p)
    p.set_defaults(func=cmd_reset)
    p = sub.add_parser("status", help="nodes, roles, Ready, versions, from the first server")
    add_run(p, limit=False)
    p.set_defaults(func=cmd_status, limit=None)

    p = sub.add_parser("dashboard", help="make sure the UI add-on is deployed; print how to open it and a "
                                         "short-lived token (the token is printed here only)")
    p.add_argument("--addon", choices=("headlamp", "dashboard"), default=None,
                   help="the UI add-on (default: the first UI add-on in k3s_addons)")
    p.add_argument("--duration", default=ui.DEFAULT_DURATION,
                   help="the token's lifetime, 10m to 48h (default: %(default)s)")
    add_run(p, limit=False)
    p.set_defaults(func=cmd_dashboard, limit=None)

    p = sub.add_parser("demo", help="bring up the seed lab (3 x Pi 4 + 2 x Pi 3) and deploy K3s onto it")
    p.add_argument("demo_command", nargs="?", choices=("up", "down"), default="up",
                   help="up (default): lab up + deploy + status; down: remove the lab")
    p.add_argument("--k3s-version", default=None, help="release to install (default: the channel's newest)")
    p.add_argument("--release-url", default=None,
                   help="download K3s from here (e.g. https://github.com/k3s-io/k3s/releases/download) "
                        "instead of the lab mirror's simulator")
    p.add_argument("--state-dir", type=Path, default=None, help="the lab's state directory")
    add_run(p, inventory=False, limit=False)
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except UsageError as exc:
        print(f"pik3s: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Pik3sError as exc:
        print(f"pik3s: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # one readable line, the traceback only with -v
        if getattr(args, "verbose", 0):
            raise
        print(f"pik3s: error: {type(exc).__name__}: {exc} (run with -v for the traceback)", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
