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
from pathlib import Path
from typing import Any

import yaml

from pik3s import __version__, api, ui
from pik3s import inventory as inventory_mod
from pik3s.collection import find_collection
from pik3s.errors import Pik3sError, UsageError
from pik3s.progress import LineView, Progress, TtyView, cluster_table, summary
from pik3s.results import EXIT_ERROR, EXIT_INVALID, EXIT_OK, EXIT_USAGE, Result
from pik3s.runner import OPERATIONS, Event, playbook_path, plays


def progress(msg: str) -> None:
    print(f"pik3s: {msg}", file=sys.stderr, flush=True)


# The lab's verbs: test equipment in the pik3s-lab package (pik3s_lab.cli), which only they load.
LAB_VERBS = ("lab", "demo")
LAB_HELP = "local Raspberry-Pi-shaped test hosts (containers) with a K3s simulator (the pik3s-lab package)"
DEMO_HELP = "bring up the seed lab (3 x Pi 4 + 2 x Pi 3) and deploy K3s onto it (the pik3s-lab package)"
LAB_MISSING = ("`pik3s {verb}` is in the pik3s-lab package (test equipment, apart from pik3s): "
               "pip install pik3s-lab, or from a checkout: pip install -e ./lab")


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
    for note in find_collection().notes:  # which collection runs, when another is about
        progress(note)
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
        progress("cancelling (ansible-playbook is being stopped)")
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


def add_run_options(p: argparse.ArgumentParser, inventory: bool = True, limit: bool = True) -> None:
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pik3s", description="Deploy and operate K3s on Raspberry Pis and Debian/Ubuntu hosts.")
    parser.add_argument("--version", action=_VersionAction, nargs=0,
                        help="the versions of pik3s and of the pik3s.cluster collection it uses, then exit")
    sub = parser.add_subparsers(dest="command", required=True)
    # Named here for the help; main() hands them to pik3s_lab.cli before this parser runs.
    sub.add_parser("lab", help=LAB_HELP, add_help=False)
    sub.add_parser("demo", help=DEMO_HELP, add_help=False)

    inv_p = sub.add_parser("inventory", help="inventory tools")
    inv_sub = inv_p.add_subparsers(dest="inventory_command", required=True)
    p = inv_sub.add_parser("validate", help="check an inventory with the playbooks' preflight rules, offline")
    p.add_argument("-i", "--inventory", required=True, help="inventory file, directory or script")
    p.add_argument("--output", "-o", choices=("text", "json"), default="text")
    add_vault_options(p)
    p.set_defaults(func=cmd_inventory_validate)

    for verb, func, text in (
            ("deploy", cmd_deploy, "deploy or converge the cluster (site.yml)"),
            ("check", cmd_check, "dry run of deploy (site.yml --check): what would change, per host"),
            ("backup", cmd_backup, "etcd snapshot of the cluster, fetched to this machine")):
        p = sub.add_parser(verb, help=text)
        add_run_options(p)
        p.set_defaults(func=func)
    p = sub.add_parser("add", help="join hosts that are in the inventory but not yet in the cluster")
    p.add_argument("nodes", nargs="+", metavar="NODE", help="inventory hostname")
    add_run_options(p, limit=False)
    p.set_defaults(func=cmd_add, limit=None)
    p = sub.add_parser("remove", help="drain, uninstall and delete nodes")
    p.add_argument("nodes", nargs="+", metavar="NODE", help="inventory hostname")
    p.add_argument("--force", action="store_true",
                   help="the hosts are dead and will not return: delete their nodes through the first server "
                        "without contacting them (no drain, no uninstall on the hosts)")
    add_run_options(p, limit=False)
    p.set_defaults(func=cmd_remove, limit=None)
    p = sub.add_parser("upgrade", help="rolling upgrade (servers one at a time, then agents in batches)")
    p.add_argument("--k3s-version", default=None, help="target release, e.g. v1.31.4+k3s1 "
                                                       "(default: the inventory's k3s_version or channel)")
    add_run_options(p)
    p.set_defaults(func=cmd_upgrade)
    p = sub.add_parser("restore", help="restore the cluster from a backup directory")
    p.add_argument("backup", help="a directory made by `pik3s backup` (…/.backups/pik3s-<node>-<time>)")
    add_run_options(p)
    p.set_defaults(func=cmd_restore)
    p = sub.add_parser("reset", help="remove K3s and all its data from the hosts")
    p.add_argument("--yes", action="store_true", help="do not ask (needed without a terminal)")
    p.add_argument("--revert-prepare", action="store_true",
                   help="also undo prepare (cgroup flags, swap, module and sysctl files)")
    add_run_options(p)
    p.set_defaults(func=cmd_reset)
    p = sub.add_parser("status", help="nodes, roles, Ready, versions, from the first server")
    add_run_options(p, limit=False)
    p.set_defaults(func=cmd_status, limit=None)

    p = sub.add_parser("dashboard", help="make sure the UI add-on is deployed; print how to open it and a "
                                         "short-lived token (the token is printed here only)")
    p.add_argument("--addon", choices=("headlamp", "dashboard"), default=None,
                   help="the UI add-on (default: the first UI add-on in k3s_addons)")
    p.add_argument("--duration", default=ui.DEFAULT_DURATION,
                   help="the token's lifetime, 10m to 48h (default: %(default)s)")
    add_run_options(p, limit=False)
    p.set_defaults(func=cmd_dashboard, limit=None)

    return parser


class _VersionAction(argparse.Action):
    """--version: pik3s's version and the collection's, looked up only when asked."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        lines = [f"pik3s {__version__}"]
        try:
            found = find_collection()
            lines.append(f"pik3s.cluster {found.version} ({found.origin}: {found.path})")
        except Pik3sError as exc:
            lines.append(f"pik3s.cluster: {exc}")
        print("\n".join(lines))
        parser.exit()


def _verb(argv: list[str]) -> str | None:
    return next((a for a in argv if not a.startswith("-")), None)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    verb = _verb(argv)
    if verb in LAB_VERBS and "--version" not in argv[:argv.index(verb)]:
        try:
            from pik3s_lab import cli as lab_cli  # only the lab's verbs load the lab
        except ModuleNotFoundError as exc:
            if exc.name != "pik3s_lab":
                raise
            print(f"pik3s: error: {LAB_MISSING.format(verb=verb)}", file=sys.stderr)
            return EXIT_USAGE
        return lab_cli.main(argv)
    return run_parsed(build_parser(), argv)


def run_parsed(parser: argparse.ArgumentParser, argv: list[str] | None) -> int:
    """Parse ``argv`` with ``parser`` and run the verb's function, with pik3s's errors and exit codes."""
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
