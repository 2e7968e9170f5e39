"""Lab specs: which Pi-shaped hosts a lab has.

A spec is YAML::

    name: seed                 # lab name: Docker resources are named pik3s-<name>-*
    hosts:
      - name: pi4-1            # hostname and inventory name
        arch: arm64            # amd64 | arm64 | armhf (arm ones run under qemu)
        model: rpi4            # rpi4 | rpi3 | generic (plain Debian, no Pi files)
        memory: 2g             # container memory limit (Docker syntax)
        groups: [server]       # optional inventory groups (server, agent)
      - name: pi               # count: N makes N hosts of this entry, named
        count: 50              # pi-01 .. pi-50 (numbers padded to N's width)
        memory: 384m
    airgap: false              # optional: true = no mirror container and a Docker
                               # network without outside routes; the release tree
                               # stays on the controller (pik3s_lab_airgap_dir)
    api_lb: false              # optional: true = a TCP load balancer for the K3s API
                               # (port 6443) in front of the server-group hosts,
                               # at pik3s_lab_api_lb (what kube-vip/haproxy give a rack)
    etcd: none                 # optional: none | plain | tls = an external datastore for
                               # K3s (datastore-endpoint): Debian's etcd in its own
                               # container with a data volume, at pik3s_lab_etcd_endpoint;
                               # tls: the lab's CA, client certificates required
                               # (pik3s_lab_etcd_cafile/certfile/keyfile on the controller)
    vars: {}                   # optional: extra inventory variables for all hosts
"""

from __future__ import annotations

import collections
import os
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from pik3s.errors import Pik3sError
from pik3s_lab.image import ARCHES

MODELS = ("rpi4", "rpi3", "generic")
GROUPS = ("server", "agent")
NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$")
MEMORY_RE = re.compile(r"^[0-9]+[kmg]$")
# Names the lab gives its own containers (pik3s-<lab>-mirror, -lb, -etcd): no host may take them.
RESERVED_NAMES = ("mirror", "lb", "etcd")
ETCD_MODES = ("none", "plain", "tls")
# A lab network is a /24: the first addresses go to the gateway, mirror and load balancer.
MAX_HOSTS = 244
MAX_COUNT = MAX_HOSTS
# Below this a host cannot run systemd, sshd and K3s (a Pi 3 has 1 GiB).
MIN_MEMORY = 256 * 1024**2
_UNITS = {"k": 1024, "m": 1024**2, "g": 1024**3}


def memory_bytes(memory: str) -> int:
    """A Docker memory size (512m, 2g) in bytes."""
    return int(memory[:-1]) * _UNITS[memory[-1]]


def machine_memory() -> int:
    """This machine's memory in bytes (MemTotal)."""
    with open("/proc/meminfo", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    raise Pik3sError("cannot read MemTotal from /proc/meminfo")


@dataclass(frozen=True)
class HostSpec:
    name: str
    arch: str
    model: str
    memory: str
    groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class LabSpec:
    name: str
    hosts: tuple[HostSpec, ...] = field(default_factory=tuple)
    airgap: bool = False
    vars: dict[str, Any] = field(default_factory=dict)
    api_lb: bool = False
    etcd: str = "none"

    @property
    def arches(self) -> list[str]:
        return sorted({h.arch for h in self.hosts})


def default_spec_path() -> Path:
    return Path(str(resources.files("pik3s_lab") / "data" / "seed-lab.yml"))


def _fail(where: str, msg: str) -> Pik3sError:
    return Pik3sError(f"lab spec {where}: {msg}")


def parse_spec(data: Any, where: str = "") -> LabSpec:
    if not isinstance(data, dict):
        raise _fail(where, "the top level must be a mapping with 'name' and 'hosts'")
    unknown = set(data) - {"name", "hosts", "airgap", "vars", "api_lb", "etcd"}
    if unknown:
        raise _fail(where, f"unknown key(s) {', '.join(sorted(unknown))}")
    name = data.get("name")
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise _fail(where, f"name {name!r} must be lowercase letters, digits and '-' (max 32)")
    hosts_data = data.get("hosts")
    if not isinstance(hosts_data, list) or not hosts_data:
        raise _fail(where, "'hosts' must be a non-empty list")
    hosts: list[HostSpec] = []
    for i, h in enumerate(hosts_data):
        at = f"hosts[{i}]"
        if not isinstance(h, dict):
            raise _fail(where, f"{at} must be a mapping")
        unknown = set(h) - {"name", "arch", "model", "memory", "groups", "count"}
        if unknown:
            raise _fail(where, f"{at}: unknown key(s) {', '.join(sorted(unknown))}")
        count = h.get("count", 1)
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_COUNT:
            raise _fail(where, f"{at}: count {count!r} must be a whole number from 1 to {MAX_COUNT}")
        hname = h.get("name")
        if not isinstance(hname, str) or not NAME_RE.fullmatch(hname):
            raise _fail(where, f"{at}: name {hname!r} must be a lowercase hostname (letters, digits, '-')")
        if hname in RESERVED_NAMES:
            raise _fail(where, f"{at}: name {hname!r} is taken by the lab's own {hname} container; "
                        "name the host otherwise")
        arch = h.get("arch", "amd64")
        if arch not in ARCHES:
            raise _fail(where, f"host {hname}: arch {arch!r} is not one of {', '.join(ARCHES)}")
        model = h.get("model", "generic")
        if model not in MODELS:
            raise _fail(where, f"host {hname}: model {model!r} is not one of {', '.join(MODELS)}")
        memory = str(h.get("memory", "1g")).lower()
        if not MEMORY_RE.fullmatch(memory):
            raise _fail(where, f"host {hname}: memory {memory!r} must look like 512m or 2g")
        if memory_bytes(memory) < MIN_MEMORY:
            raise _fail(where, f"host {hname}: memory {memory} is too little for systemd, sshd and K3s: "
                        "give it 256m or more")
        groups = h.get("groups", [])
        if not isinstance(groups, list) or any(g not in GROUPS for g in groups):
            raise _fail(where, f"host {hname}: groups must be a list of {', '.join(GROUPS)}")
        if "count" in h:  # name-01 .. name-NN
            width = len(str(count))
            names = [f"{hname}-{i:0{width}d}" for i in range(1, count + 1)]
            too_long = [n for n in names if not NAME_RE.fullmatch(n)]
            if too_long:
                raise _fail(where, f"{at}: {too_long[0]!r} is too long for a hostname (32 characters at most)")
        else:
            names = [hname]
        hosts += [HostSpec(n, arch, model, memory, tuple(groups)) for n in names]
    if len(hosts) > MAX_HOSTS:
        raise _fail(where, f"{len(hosts)} hosts: a lab network (a /24) holds {MAX_HOSTS} at most")
    names = [h.name for h in hosts]
    dupes = sorted({n for n, c in collections.Counter(names).items() if c > 1})
    if dupes:
        raise _fail(where, f"duplicate host name(s) {', '.join(dupes)}")
    airgap = data.get("airgap", False)
    if not isinstance(airgap, bool):
        raise _fail(where, f"airgap must be true or false, got {airgap!r}")
    extra = data.get("vars", {})
    if not isinstance(extra, dict) or not all(isinstance(k, str) for k in extra):
        raise _fail(where, "vars must be a mapping of inventory variable names to values")
    clash = sorted(k for k in extra if k.startswith("pik3s_lab_") or k.startswith("ansible_"))
    if clash:
        raise _fail(where, f"vars may not set {', '.join(clash)}: the lab sets those itself")
    api_lb = data.get("api_lb", False)
    if not isinstance(api_lb, bool):
        raise _fail(where, f"api_lb must be true or false, got {api_lb!r}")
    if api_lb and not any("server" in h.groups for h in hosts):
        raise _fail(where, "api_lb needs hosts in the server group to balance")
    etcd = data.get("etcd", "none")
    if etcd not in ETCD_MODES:
        raise _fail(where, f"etcd must be one of {', '.join(ETCD_MODES)}, got {etcd!r}")
    return LabSpec(name, tuple(hosts), airgap, dict(extra), api_lb, etcd)


# systemd in a lab host holds about 7 inotify instances (measured: 28 for 4 hosts); a little headroom.
INOTIFY_PER_HOST = 8
INOTIFY_SYSCTL = Path("/proc/sys/fs/inotify/max_user_instances")


def inotify_problem(spec: LabSpec, limit: int | None = None, in_use: int | None = None) -> str:
    """Why this machine's inotify limit cannot take ``spec``'s hosts ('' when it can): past it, a host's
    systemd hangs while booting."""
    limit = int(INOTIFY_SYSCTL.read_text()) if limit is None else limit
    if in_use is None:
        in_use = sum(1 for fd in Path("/proc").glob("[0-9]*/fd/*") if _is_inotify(fd))
    wanted = in_use + INOTIFY_PER_HOST * len(spec.hosts)
    if wanted <= limit:
        return ""
    return (f"lab spec {spec.name}: {len(spec.hosts)} hosts need about {INOTIFY_PER_HOST * len(spec.hosts)} inotify "
            f"instances (systemd in each holds ~{INOTIFY_PER_HOST - 1}) and this machine allows {limit}, "
            f"{in_use} in use: raise it (sysctl -w fs.inotify.max_user_instances=8192; scripts/setup-host does)")


def _is_inotify(fd: Path) -> bool:
    try:
        return os.readlink(fd) == "anon_inode:inotify"
    except OSError:
        return False


def fit_problem(spec: LabSpec, available: int | None = None) -> str:
    """Why ``spec``'s hosts do not fit this machine's memory ('' when they do): checked before
    ``lab up`` creates anything."""
    available = machine_memory() if available is None else available
    wanted = sum(memory_bytes(h.memory) for h in spec.hosts)
    if wanted <= available:
        return ""
    gib = 1024**3
    return (f"lab spec {spec.name}: its {len(spec.hosts)} hosts ask for {wanted / gib:.1f} GiB of memory and this "
            f"machine has {available / gib:.1f} GiB: give the hosts less memory (memory: 512m) or fewer hosts")


def load_spec(path: Path | None = None) -> LabSpec:
    path = path or default_spec_path()
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise Pik3sError(f"cannot read lab spec {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        from pik3s.masking import mask_secret_assignments  # the parser quotes the line: vars may hold secrets

        raise Pik3sError(f"lab spec {path} is not valid YAML: {mask_secret_assignments(str(exc))}") from None
    return parse_spec(data, str(path))
