"""The command line: k3s's subcommands and the kubectl/crictl/ctr names."""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from .agent import Agent
from .common import GO_VERSION, SIM_NAME, Fatal, log, p
from .config import UsageError, resolve_config
from .host import check_cpu, memory_cgroup_state, version
from .kubectl import k3s_completion, kubectl
from .server import Server
from .snapshots import etcd_snapshot


# check-config.
def check_config() -> int:
    ok, why = memory_cgroup_state()
    print(f"Verifying binaries in {p('/var/lib/rancher/k3s/data')}:\n"
          f"- {SIM_NAME}: no bundled binaries to verify\n\n"
          "System:\n"
          f"- cgroup hierarchy: {why}\n"
          f"- memory cgroup: {'enabled' if ok else 'missing'}\n")
    print("STATUS: pass" if ok else "STATUS: 1 (fail)")
    return 0 if ok else 1


def _run_daemon(obj: Server | Agent) -> int:
    def on_signal(signum: int, _frame: Any) -> None:
        log("info", f"Received {signal.Signals(signum).name}, shutting down")
        obj.stop.set()
        if isinstance(obj, Server):
            obj.shutdown()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        obj.start()
    except OSError as exc:  # a data directory that cannot be written (full disk, read-only SD card)
        what = "preparing server" if isinstance(obj, Server) else "failed to prepare agent"
        where = f"open {exc.filename}: " if exc.filename else ""
        raise Fatal(f"{what}: {where}{(exc.strerror or str(exc)).lower()}") from exc
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv if argv is None else argv)
    check_cpu()
    prog = os.path.basename(argv[0])
    args = argv[1:]
    try:
        if prog == "kubectl":
            return kubectl(args)
        if prog in ("crictl", "ctr"):
            raise Fatal(f"{prog} is not simulated: the {SIM_NAME} runs no containers")
        if not args or args[0] in ("-h", "--help", "help"):
            print(f"k3s ({SIM_NAME}, test equipment, not K3s)\n"
                  "commands: server, agent, kubectl, etcd-snapshot, check-config, completion, --version")
            return 0
        cmd, rest = args[0], args[1:]
        if cmd in ("--version", "-v", "version"):
            print(f"k3s version {version()} ({SIM_NAME})\n{GO_VERSION} ({SIM_NAME}, test equipment, not K3s)")
            return 0
        if cmd == "server":
            cfg = resolve_config("server", rest)
            return _run_daemon(Server(cfg))
        if cmd == "agent":
            cfg = resolve_config("agent", rest)
            return _run_daemon(Agent(cfg))
        if cmd == "kubectl":
            return kubectl(rest)
        if cmd in ("crictl", "ctr"):
            raise Fatal(f"{cmd} is not simulated: the {SIM_NAME} runs no containers")
        if cmd == "etcd-snapshot":
            return etcd_snapshot(rest)
        if cmd == "completion":
            return k3s_completion(rest)
        if cmd == "check-config":
            return check_config()
        raise UsageError(f"No help topic for '{cmd}'")
    except UsageError as exc:
        sys.stderr.write(f"Incorrect Usage: {exc}\n")
        log("fatal", str(exc))
        return 1
    except Fatal as exc:
        log("fatal", str(exc))
        return 1
