"""Facts about the host the simulator runs on: CPU, arch, cgroups, addresses, systemd."""

from __future__ import annotations

import os
import platform
import socket
import sys
from pathlib import Path

from .common import ARCH_RUNS_ON, PUBLISHED_ARCH, PUBLISHED_VERSION, SIM_NAME, log, p


# Host facts.
def check_cpu() -> None:
    """Refuse to run on a CPU this asset was not built for, as a binary would."""
    arch = PUBLISHED_ARCH
    if not arch:
        return  # unpublished source, as in the simulator's own tests
    machine = platform.machine().lower()
    if arch == "armhf" and machine in ("armv6l", "armv6"):
        sys.stderr.write("Illegal instruction\n")
        sys.exit(132)
    if machine not in ARCH_RUNS_ON[arch][0]:
        sys.stderr.write(f"{sys.argv[0]}: cannot execute binary file: Exec format error "
                         f"({SIM_NAME}: {arch} asset on a {machine} CPU)\n")
        sys.exit(126)


def k8s_arch() -> str:
    arch = PUBLISHED_ARCH
    if not arch:
        machine = platform.machine().lower()
        return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}.get(machine, machine)
    return ARCH_RUNS_ON[arch][1]


def version() -> str:
    return PUBLISHED_VERSION or "v0.0.0+sim"


def memory_cgroup_state(v2_controllers: Path | None = None, v1_cgroups: Path | None = None) -> tuple[bool, str]:
    """Whether the running kernel has the memory cgroup controller enabled."""
    v2 = v2_controllers or p("/sys/fs/cgroup/cgroup.controllers")
    v1 = v1_cgroups or p("/proc/cgroups")
    if v2.is_file():
        if "memory" in v2.read_text().split():
            return True, "cgroups V2 mounted, memory controller enabled"
        return False, "failed to find memory cgroup (v2)"
    if v1.is_file():
        for line in v1.read_text().splitlines():
            fields = line.split()
            if fields and fields[0] == "memory":
                if len(fields) >= 4 and fields[3] == "1":
                    return True, "cgroups V1 mounted, memory controller enabled"
                return False, "failed to find memory cgroup (v1): memory is disabled"
        return False, "failed to find memory cgroup (v1)"
    return False, "no cgroup hierarchy found"


def primary_ip(towards: str | None = None) -> str:
    """The address this host uses to reach ``towards`` (no packet is sent)."""
    target = towards or "192.0.2.1"
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((target, 9))
            return str(s.getsockname()[0])
    except OSError:
        return "127.0.0.1"


def os_image() -> str:
    try:
        for line in p("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return "Linux"


def sd_notify(message: str) -> None:
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.connect(addr)
            s.sendall(message.encode())
    except OSError as exc:
        log("warning", f"sd_notify failed: {exc}")
