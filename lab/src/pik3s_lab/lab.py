"""Bring a lab of Pi-shaped hosts up and down, and report on it.

``up`` creates, all labelled ``pik3s.lab=<name>``: one Docker network, one
container and one volume (``/var/lib/rancher``) per host, one mirror
container serving the K3s release tree on that network only, and what the
spec asks for besides: an API load balancer, an etcd for K3s's external
datastore (with its data volume). It writes into
the lab's state directory an SSH key, a known_hosts file with each host's own
key (host key checking stays on), the Ansible inventory and ``lab.json``, the
record of what it created. ``down`` removes exactly that.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from pik3s.errors import Pik3sError
from pik3s_lab import binfmt, docker, image, mirror, releases
from pik3s_lab import etcd as lab_etcd
from pik3s_lab.spec import HostSpec, LabSpec, fit_problem, inotify_problem

LABEL = "pik3s.lab"
MIRROR_PORT = 8080
API_PORT = 6443
LB_SCRIPT = Path(__file__).with_name("lb.py")
BOOT_TIMEOUT = 180.0
SECCOMP = Path(__file__).with_name("seccomp.json")
# The hosts' init and its data, mounted read-only into every host and run as PID 1 at each boot.
BOOT_DIR = Path(__file__).with_name("boot")
BOOT_MOUNT = "/usr/local/lib/pik3s-lab"
STATE_FILES = ("lab.json", "inventory.yml", "known_hosts", "id_ed25519", "id_ed25519.pub")
STATE_DIRS = ("cpuinfo", "mirror", "k3s-cache", "etcd")
ETCD_TIMEOUT = 30.0

Progress = Callable[[str], None]


def _quiet(_msg: str) -> None:
    pass


def default_state_dir(name: str) -> Path:
    base = os.environ.get("PIK3S_LAB_HOME") or os.path.join(
        os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state"), "pik3s", "labs")
    return Path(base) / name


@dataclass
class HostRecord:
    name: str
    arch: str
    model: str
    memory: str
    groups: list[str]
    ip: str
    container: str
    volume: str


@dataclass
class LabRecord:
    name: str
    network: str
    subnet: str
    mirror_container: str
    mirror_ip: str
    hosts: list[HostRecord]
    state_dir: str
    airgap: bool = False
    vars: dict[str, Any] = field(default_factory=dict)
    lb_container: str = ""
    lb_ip: str = ""
    etcd_container: str = ""
    etcd_ip: str = ""
    etcd_volume: str = ""
    etcd_tls: bool = False

    @property
    def etcd_endpoint(self) -> str:
        if not self.etcd_container:
            return ""
        return f"{'https' if self.etcd_tls else 'http'}://{self.etcd_ip}:{lab_etcd.PORT}"

    @property
    def etcd_pki(self) -> Path:
        return Path(self.state_dir) / "etcd"

    @property
    def mirror_url(self) -> str:
        return f"http://{self.mirror_ip}:{MIRROR_PORT}"

    @property
    def inventory(self) -> Path:
        return Path(self.state_dir) / "inventory.yml"

    def save(self) -> None:
        (Path(self.state_dir) / "lab.json").write_text(json.dumps(asdict(self), indent=1) + "\n")

    @classmethod
    def load(cls, state_dir: Path) -> LabRecord | None:
        path = state_dir / "lab.json"
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        data["hosts"] = [HostRecord(**h) for h in data["hosts"]]
        return cls(**data)


def container_name(lab: str, host: str) -> str:
    return f"pik3s-{lab}-{host}"


def _cpuinfo(model: str, host: str) -> str:
    data = resources.files("pik3s_lab") / "data"
    processor = (data / f"cpuinfo-{model}-processor.txt").read_text()
    body = "".join(processor.replace("@N@", str(n)) for n in range(4))
    serial = "10000000" + hashlib.sha256(host.encode()).hexdigest()[:8]
    return (data / f"cpuinfo-{model}.txt").read_text().replace("@PROCESSORS@\n", body).replace("@SERIAL@", serial)


def _host_run_args(lab: LabRecord, spec: HostSpec, rec: HostRecord, tag: str, pubkey: str) -> list[str]:
    args = [
        "run", "-d", "--name", rec.container, "--hostname", spec.name,
        "--network", lab.network, "--ip", rec.ip, "--label", f"{LABEL}={lab.name}",
        "--label", f"pik3s.lab.host={spec.name}",
        # systemd as PID 1 without --privileged (which fails on these machines):
        # every capability but those that act on the whole machine.
        "--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE", "--cap-drop", "SYS_TIME",
        "--cap-drop", "SYS_MODULE",
        "--security-opt", f"seccomp={SECCOMP}", "--security-opt", "apparmor=unconfined",
        "--device-cgroup-rule", "a *:* rwm", "--cgroupns=host",
        "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
        "--tmpfs", "/run", "--tmpfs", "/run/lock", "--tmpfs", "/tmp:exec",  # noqa: S108 - the host's own /tmp
        "--stop-signal", "SIGRTMIN+3", "--restart", "unless-stopped",
        "--memory", spec.memory, "-v", f"{rec.volume}:/var/lib/rancher",
        "-e", f"PIK3S_LAB_MODEL={spec.model}", "-e", f"PIK3S_LAB_AUTHORIZED_KEY={pubkey}",
    ]
    if spec.model != "generic":
        cpuinfo = Path(lab.state_dir) / "cpuinfo" / spec.name
        cpuinfo.parent.mkdir(parents=True, exist_ok=True)
        cpuinfo.write_text(_cpuinfo(spec.model, spec.name))
        args += ["-v", f"{cpuinfo}:/proc/cpuinfo:ro"]
    args += ["-v", f"{BOOT_DIR}:{BOOT_MOUNT}:ro"]
    return [*args, tag, "/bin/sh", f"{BOOT_MOUNT}/pik3s-lab-init"]


def _system_state(container: str) -> str:
    proc = subprocess.run(["docker", "exec", container, "systemctl", "is-system-running"],
                          capture_output=True, text=True, check=False)
    return proc.stdout.strip() or "down"


def _wait_booted(container: str, timeout: float = BOOT_TIMEOUT) -> str:
    deadline = time.monotonic() + timeout
    state = "down"
    while time.monotonic() < deadline:
        state = _system_state(container)
        if state in ("running", "degraded"):
            return state
        time.sleep(0.5)
    raise Pik3sError(f"{container} did not finish booting within {timeout:.0f}s (systemd: {state})")


def _ssh_args(lab: LabRecord, ip: str) -> list[str]:
    state = Path(lab.state_dir)
    return ["ssh", "-i", str(state / "id_ed25519"), "-o", "BatchMode=yes",
            "-o", "IdentitiesOnly=yes", "-o", f"UserKnownHostsFile={state / 'known_hosts'}",
            "-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=5", f"pi@{ip}"]


def _wait_ssh(lab: LabRecord, rec: HostRecord, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    err = ""
    while time.monotonic() < deadline:
        proc = subprocess.run([*_ssh_args(lab, rec.ip), "sudo", "-n", "true"],
                              capture_output=True, text=True, check=False)
        if proc.returncode == 0:
            return
        err = proc.stderr.strip()
        time.sleep(1)
    raise Pik3sError(f"{rec.name} ({rec.ip}) does not accept the lab key over SSH: {err}")


def write_inventory(lab: LabRecord) -> None:
    state = Path(lab.state_dir)
    hostvars = {
        h.name: {"ansible_host": h.ip, "pik3s_lab_arch": h.arch, "pik3s_lab_model": h.model}
        for h in lab.hosts
    }
    children: dict[str, Any] = {"pik3s_lab": {"hosts": {h: None for h in hostvars}}}
    for group in ("server", "agent"):
        members = {h.name: None for h in lab.hosts if group in h.groups}
        if members:
            children.setdefault("k3s_cluster", {"children": {}})["children"][group] = {"hosts": members}
    inventory = {"all": {
        "vars": {
            "ansible_user": "pi",
            "ansible_ssh_private_key_file": str(state / "id_ed25519"),
            "ansible_ssh_common_args": (
                f"-o UserKnownHostsFile={state / 'known_hosts'} "
                "-o StrictHostKeyChecking=yes -o IdentitiesOnly=yes"),
            "ansible_python_interpreter": "/usr/bin/python3",
            # Where this lab's release mirror answers, for roles to point at
            # (nothing answers there in an air-gapped lab).
            "pik3s_lab_release_url": lab.mirror_url + releases.RELEASE_PATH,
            "pik3s_lab_channel_url": lab.mirror_url + releases.CHANNEL_PATH,
            # A Helm chart repository of lab stand-ins for the charts pik3s pins (add-ons) and one more.
            "pik3s_lab_chart_url": lab.mirror_url + releases.CHART_PATH,
            # The same releases on the controller, one directory per version:
            # what an operator copies from a GitHub release for air-gap mode.
            "pik3s_lab_airgap_dir": str(state / "mirror" / releases.RELEASE_PATH.lstrip("/")),
            # The controller's download cache for this lab's releases: it lives and goes with the lab,
            # since the mirror's "releases" are simulator builds that change with the simulator.
            "pik3s_lab_k3s_cache": str(state / "k3s-cache"),
            "pik3s_lab_airgap": lab.airgap,
            # The API load balancer in front of the servers ("" when the spec has none).
            "pik3s_lab_api_lb": lab.lb_ip,
            # A free address of the lab network kept for a virtual IP (k3s_api_vip): no container has it.
            "pik3s_lab_vip": lab_vip(lab.subnet),
            # The lab's etcd for K3s's external datastore ("" when the spec has none), its container, and
            # with TLS the CA and the client certificate and key for K3s (files on the controller).
            "pik3s_lab_etcd_endpoint": lab.etcd_endpoint,
            "pik3s_lab_etcd_container": lab.etcd_container,
            **{f"pik3s_lab_etcd_{what}file": str(lab.etcd_pki / name) if lab.etcd_tls else ""
               for what, name in (("ca", "ca.crt"), ("cert", "client.crt"), ("key", "client.key"))},
            **lab.vars,
        },
        "hosts": hostvars,
        "children": children,
    }}
    header = (f"# Ansible inventory of the pik3s lab '{lab.name}', written by `pik3s lab up`.\n"
              "# Hosts are containers shaped like Raspberry Pis; the K3s on the mirror is a simulator.\n")
    lab.inventory.write_text(header + yaml.safe_dump(inventory, sort_keys=False))


# Lab networks are /24s taken from this range, the first one that no Docker
# network and no route of the lab machine already uses.
SUBNET_POOL = ipaddress.IPv4Network("172.29.0.0/16")


def _used_networks() -> list[ipaddress.IPv4Network]:
    used = []
    for net_id in docker.run(["network", "ls", "-q"]).split():
        info = docker.inspect("network", net_id) or {}
        for cfg in (info.get("IPAM") or {}).get("Config") or []:
            if cfg.get("Subnet") and ":" not in cfg["Subnet"]:
                used.append(ipaddress.IPv4Network(cfg["Subnet"], strict=False))
    routes = subprocess.run(["ip", "-4", "route", "show"], capture_output=True, text=True, check=False)
    for line in routes.stdout.splitlines():
        dest = line.split()[0] if line.strip() else ""
        if dest and dest != "default":
            try:
                used.append(ipaddress.IPv4Network(dest, strict=False))
            except ValueError:
                pass
    return used


def _create_network(network: str, lab: str, internal: bool = False) -> ipaddress.IPv4Network:
    used = _used_networks()
    for candidate in SUBNET_POOL.subnets(new_prefix=24):
        if any(candidate.overlaps(u) for u in used):
            continue
        proc = subprocess.run(
            ["docker", "network", "create", "--label", f"{LABEL}={lab}", "--subnet", str(candidate),
             "--gateway", str(candidate.network_address + 1), *(["--internal"] if internal else []), network],
            capture_output=True, text=True, check=False)
        if proc.returncode == 0:
            return candidate
        if "overlap" not in proc.stderr:
            raise Pik3sError(f"docker network create {network} failed: {proc.stderr.strip()}")
    raise Pik3sError(f"no free /24 left in {SUBNET_POOL} for lab network {network}")


def inventory_json(state_dir: Path) -> dict[str, Any]:
    """The lab's inventory in Ansible's dynamic-inventory (--list) form; empty when the lab is down."""
    out: dict[str, Any] = {"_meta": {"hostvars": {}}}
    path = state_dir / "inventory.yml"
    if not path.exists():
        return out
    root = yaml.safe_load(path.read_text())["all"]

    def walk(name: str, group: dict[str, Any]) -> None:
        entry: dict[str, Any] = {}
        if group.get("hosts"):
            entry["hosts"] = list(group["hosts"])
            for host, hvars in group["hosts"].items():
                out["_meta"]["hostvars"].setdefault(host, {}).update(hvars or {})
        if group.get("vars"):
            entry["vars"] = group["vars"]
        if group.get("children"):
            entry["children"] = list(group["children"])
            for child, body in group["children"].items():
                walk(child, body or {})
        out[name] = entry

    walk("all", root)
    return out


def lab_vip(subnet: str) -> str:
    """The lab network's address kept for an API virtual IP: the fourth (gateway, mirror and load balancer
    before it, etcd at the sixth; hosts start at the tenth)."""
    return str(ipaddress.ip_network(subnet).network_address + 4)


def up(spec: LabSpec, state_dir: Path | None = None, progress: Progress = _quiet) -> LabRecord:
    """Start the lab described by ``spec``; idempotent for a lab that is up."""
    state = state_dir or default_state_dir(spec.name)
    existing = LabRecord.load(state)
    problem = (fit_problem(spec) or inotify_problem(spec)) if existing is None else ""
    if problem:  # before anything is created
        raise Pik3sError(problem)
    docker.ensure_engine()
    if existing is not None:
        return _resume(existing, progress)

    native = "amd64"  # the mirror runs on the lab machine's own arch
    arches = sorted(set(spec.arches) | {native})
    for arch in arches:
        if arch != native:
            binfmt.ensure(arch)  # also when the image is cached: its containers need it
    progress(f"images {', '.join(arches)}: checking; a missing one is built now, two at a time "
             "(amd64 ~1 min, arm64/armhf ~6 min under emulation), then cached")
    tags: dict[str, str] = {}
    for arch, result in zip(arches, image.ensure_images(arches), strict=True):
        progress(f"image {arch}: {result.tag} ({f'built in {result.seconds:.0f}s' if result.built else 'cached'})")
        tags[arch] = result.tag

    state.mkdir(parents=True, exist_ok=True)
    state.chmod(0o700)
    key = state / "id_ed25519"
    if not key.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"pik3s-lab-{spec.name}",
                        "-f", str(key)], check=True)
    pubkey = (state / "id_ed25519.pub").read_text().strip()

    network = f"pik3s-{spec.name}"
    if docker.exists("network", network):
        raise Pik3sError(f"docker network {network} exists but {state}/lab.json does not: "
                         f"run `pik3s lab down --name {spec.name}` first")
    subnet = _create_network(network, spec.name, internal=spec.airgap)
    addrs = list(subnet.hosts())
    if len(addrs) < 10 + len(spec.hosts):
        raise Pik3sError(f"docker gave network {network} a subnet too small: {subnet}")
    lab = LabRecord(
        name=spec.name, network=network, subnet=str(subnet),
        mirror_container=f"pik3s-{spec.name}-mirror", mirror_ip=str(addrs[1]),
        hosts=[HostRecord(h.name, h.arch, h.model, h.memory, list(h.groups), str(addrs[9 + i]),
                          container_name(spec.name, h.name), f"pik3s-{spec.name}-{h.name}-rancher")
               for i, h in enumerate(spec.hosts)],
        state_dir=str(state), airgap=spec.airgap, vars=dict(spec.vars),
        lb_container=f"pik3s-{spec.name}-lb" if spec.api_lb else "", lb_ip=str(addrs[2]) if spec.api_lb else "",
        etcd_container=f"pik3s-{spec.name}-etcd" if spec.etcd != "none" else "",
        etcd_ip=str(addrs[5]) if spec.etcd != "none" else "",
        etcd_volume=f"pik3s-{spec.name}-etcd-data" if spec.etcd != "none" else "", etcd_tls=spec.etcd == "tls")
    lab.save()  # from here on, `down` can clean up whatever exists
    try:
        _create(lab, spec, tags[native], tags, pubkey, progress)
        return _finish(lab, progress)
    except BaseException:
        progress(f"lab {spec.name} failed to come up: removing what was created")
        down(spec.name, state)
        raise


def _create(lab: LabRecord, spec: LabSpec, mirror_tag: str, tags: dict[str, str], pubkey: str,
            progress: Progress) -> None:
    state = Path(lab.state_dir)
    tree = state / "mirror"
    shutil.rmtree(tree, ignore_errors=True)
    mirror.build_tree(tree)
    if lab.airgap:
        progress(f"air-gapped: no mirror; releases on the controller in {tree}")
    else:
        _start_mirror(lab, mirror_tag, tree, progress)
    for h, rec in zip(spec.hosts, lab.hosts, strict=True):
        docker.run(["volume", "create", "--label", f"{LABEL}={spec.name}", rec.volume])
        docker.run(_host_run_args(lab, h, rec, tags[h.arch], pubkey))
    if lab.lb_container:
        _start_lb(lab, mirror_tag, progress)
    if lab.etcd_container:
        _start_etcd(lab, mirror_tag, progress)


def _start_etcd(lab: LabRecord, tag: str, progress: Progress) -> None:
    """Debian's etcd in its own container (the amd64 host image: Debian's binaries need its libc), its data
    on a volume; with TLS, the lab's PKI mounted read-only."""
    bindir = lab_etcd.binaries()
    if lab.etcd_tls:
        lab_etcd.make_pki(lab.etcd_pki, lab.etcd_ip)
    docker.run(["volume", "create", "--label", f"{LABEL}={lab.name}", lab.etcd_volume])
    docker.run(["run", "-d", "--name", lab.etcd_container, "--hostname", "etcd",
                "--network", lab.network, "--ip", lab.etcd_ip, "--label", f"{LABEL}={lab.name}",
                "--restart", "unless-stopped", "--memory", "256m",
                "-v", f"{lab.etcd_volume}:{lab_etcd.DATA_MOUNT}",
                *[a for b in lab_etcd.BINARIES for a in ("-v", f"{bindir / b}:/usr/local/bin/{b}:ro")],
                *(["-v", f"{lab.etcd_pki}:{lab_etcd.PKI_MOUNT}:ro"] if lab.etcd_tls else []),
                tag, *lab_etcd.command(lab.etcd_ip, lab.etcd_tls)])
    tls = " with TLS and client certificates" if lab.etcd_tls else ""
    progress(f"etcd (external datastore): {lab.etcd_endpoint}{tls}")


def _wait_etcd(lab: LabRecord) -> None:
    deadline = time.monotonic() + ETCD_TIMEOUT
    args = ["exec", lab.etcd_container, *lab_etcd.etcdctl_args(lab.etcd_endpoint, lab.etcd_tls),
            "--command-timeout=2s", "endpoint", "health"]
    while True:
        proc = subprocess.run(["docker", *args], capture_output=True, text=True, check=False)
        if proc.returncode == 0:
            return
        if time.monotonic() > deadline:
            logs = subprocess.run(["docker", "logs", "--tail", "15", lab.etcd_container], capture_output=True,
                                  text=True, check=False)
            raise Pik3sError(f"the lab's etcd ({lab.etcd_container}) is not healthy after {ETCD_TIMEOUT:.0f}s: "
                             f"{(proc.stderr or proc.stdout).strip()[-300:]}\n{(logs.stdout + logs.stderr)[-1500:]}")
        time.sleep(0.5)


def _start_lb(lab: LabRecord, tag: str, progress: Progress) -> None:
    backends = [f"{h.ip}:{API_PORT}" for h in lab.hosts if "server" in h.groups]
    docker.run(["run", "-d", "--name", lab.lb_container, "--hostname", "lb",
                "--network", lab.network, "--ip", lab.lb_ip, "--label", f"{LABEL}={lab.name}",
                "--restart", "unless-stopped", "--memory", "64m",
                "-v", f"{LB_SCRIPT}:/srv/lb.py:ro", tag, "python3", "/srv/lb.py",
                "--listen", f"0.0.0.0:{API_PORT}",  # the container's own netns: lab network only
                *[arg for b in backends for arg in ("--backend", b)]])
    progress(f"API load balancer: {lab.lb_ip}:{API_PORT} -> {', '.join(backends)}")


def _start_mirror(lab: LabRecord, mirror_tag: str, tree: Path, progress: Progress) -> None:
    docker.run(["run", "-d", "--name", lab.mirror_container, "--hostname", "mirror",
                "--network", lab.network, "--ip", lab.mirror_ip, "--label", f"{LABEL}={lab.name}",
                "--restart", "unless-stopped", "--memory", "128m",
                "-v", f"{tree}:/srv/mirror:ro", "-v", f"{mirror.SERVER}:/srv/mirror_server.py:ro",
                mirror_tag, "python3", "/srv/mirror_server.py", "--root", "/srv/mirror",
                "--bind", "0.0.0.0", "--port", str(MIRROR_PORT)])  # noqa: S104 - the container's own netns: lab network only
    progress(f"mirror: {lab.mirror_url}")


def _resume(lab: LabRecord, progress: Progress) -> LabRecord:
    progress(f"lab {lab.name} is already up ({lab.state_dir}); starting anything stopped")
    for c in ([] if lab.airgap else [lab.mirror_container]) + [h.container for h in lab.hosts] \
            + [c for c in (lab.lb_container, lab.etcd_container) if c]:
        info = docker.inspect("container", c)
        if info is None:
            raise Pik3sError(f"container {c} of lab {lab.name} is gone: run `pik3s lab down "
                             f"--name {lab.name}` and `pik3s lab up` again")
        if not info["State"]["Running"]:
            docker.run(["start", c])
    return _finish(lab, progress)


def _finish(lab: LabRecord, progress: Progress) -> LabRecord:
    if lab.etcd_container:
        _wait_etcd(lab)
    with ThreadPoolExecutor(max_workers=len(lab.hosts)) as pool:
        states = list(pool.map(lambda h: _wait_booted(h.container), lab.hosts))
    for h, st in zip(lab.hosts, states, strict=True):
        progress(f"host {h.name}: {h.arch}/{h.model} at {h.ip}, systemd {st}")
    known = []
    for h in lab.hosts:
        key = docker.run(["exec", h.container, "cat", "/etc/ssh/ssh_host_ed25519_key.pub"]).split()
        known.append(f"{h.ip},{h.name} {key[0]} {key[1]}\n")
    (Path(lab.state_dir) / "known_hosts").write_text("".join(known))
    write_inventory(lab)
    with ThreadPoolExecutor(max_workers=len(lab.hosts)) as pool:
        list(pool.map(lambda h: _wait_ssh(lab, h), lab.hosts))
    progress(f"inventory: {lab.inventory}")
    return lab


def down(name: str, state_dir: Path | None = None, progress: Progress = _quiet) -> list[str]:
    """Remove what ``up`` created for lab ``name``; return what was removed."""
    state = state_dir or default_state_dir(name)
    docker.ensure_engine()
    removed: list[str] = []
    lab = LabRecord.load(state)
    containers = set(docker.run(["ps", "-a", "--filter", f"label={LABEL}={name}",
                                 "--format", "{{.Names}}"]).split())
    if lab:
        containers |= {c for c in [lab.mirror_container, lab.lb_container, lab.etcd_container]
                       + [h.container for h in lab.hosts] if c and docker.exists("container", c)}
    for c in sorted(containers):
        docker.run(["rm", "-f", "-v", c])
        removed.append(f"container {c}")
    volumes = set(docker.run(["volume", "ls", "-q", "--filter", f"label={LABEL}={name}"]).split())
    if lab:
        volumes |= {v for v in [h.volume for h in lab.hosts] + [lab.etcd_volume] if v and docker.exists("volume", v)}
    for v in sorted(volumes):
        docker.run(["volume", "rm", v])
        removed.append(f"volume {v}")
    networks = set(docker.run(["network", "ls", "--filter", f"label={LABEL}={name}",
                               "--format", "{{.Name}}"]).split())
    if lab and docker.exists("network", lab.network):
        networks.add(lab.network)
    for n in sorted(networks):
        docker.run(["network", "rm", n])
        removed.append(f"network {n}")
    for f in STATE_FILES:
        (state / f).unlink(missing_ok=True)
    for d in STATE_DIRS:
        shutil.rmtree(state / d, ignore_errors=True)
    if state.is_dir() and not any(state.iterdir()):
        state.rmdir()
    for r in removed:
        progress(f"removed {r}")
    return removed


@dataclass
class HostStatus:
    name: str
    arch: str
    model: str
    ip: str
    container: str
    systemd: str
    memory_used: str


def status(name: str, state_dir: Path | None = None) -> tuple[LabRecord | None, list[HostStatus]]:
    state = state_dir or default_state_dir(name)
    lab = LabRecord.load(state)
    if lab is None:
        return None, []
    docker.ensure_engine()
    mem = {}
    for line in docker.run(["stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}}"]).splitlines():
        parts = line.split(" ", 1)
        if len(parts) == 2:
            mem[parts[0]] = parts[1].split(" / ")[0]
    out = []
    for h in lab.hosts:
        info = docker.inspect("container", h.container)
        cstate = info["State"]["Status"] if info else "missing"
        systemd = _system_state(h.container) if cstate == "running" else "-"
        out.append(HostStatus(h.name, h.arch, h.model, h.ip, cstate, systemd, mem.get(h.container, "-")))
    return lab, out
