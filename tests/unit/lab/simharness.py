"""Run pik3s K3s simulator instances as real processes on loopback addresses.

Each node gets its own root directory (PIK3S_SIM_ROOT), its own 127.0.0.x
address and a free port, so several nodes and several tests can run at once.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from pik3s_lab import mirror

_ADDRS = itertools.count(2)
FAST = {"PIK3S_SIM_HEARTBEAT": "0.4", "PIK3S_SIM_GRACE": "2.5", "PIK3S_SIM_RETRY": "0.4", "PIK3S_SIM_API_START": "0",
        "PIK3S_SIM_PERSIST": "0.8", "PIK3S_SIM_DEPLOY_SECONDS": "0.3", "PIK3S_SIM_HELM_RETRY": "1",
        "PIK3S_SIM_ADDON_RETRY": "1", "PIK3S_SIM_NETWORK": "0"}


def free_port(ip: str) -> int:
    with socket.socket() as s:
        s.bind((ip, 0))
        return int(s.getsockname()[1])


def fake_cgroups(root: Path, memory: bool = True) -> None:
    (root / "proc").mkdir(parents=True, exist_ok=True)
    (root / "proc" / "cgroups").write_text(
        "#subsys_name\thierarchy\tnum_cgroups\tenabled\n"
        f"cpu\t2\t40\t1\nmemory\t4\t42\t{1 if memory else 0}\n")


class Node:
    def __init__(self, tmp: Path, name: str, binary: Path, role: str = "server") -> None:
        self.name = name
        self.role = role
        self.root = tmp / name
        self.binary = binary
        self.ip = f"127.0.{os.getpid() % 200 + 20}.{next(_ADDRS) % 250 + 2}"
        self.port = free_port(self.ip) if role == "server" else 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = tmp / f"{name}.log"
        fake_cgroups(self.root)

    @property
    def url(self) -> str:
        return f"https://{self.ip}:{self.port}"

    @property
    def data_dir(self) -> Path:
        return self.root / "var/lib/rancher/k3s"

    @property
    def config_path(self) -> Path:
        return self.root / "etc/rancher/k3s/config.yaml"

    def write_config(self, text: str, dropins: dict[str, str] | None = None) -> None:
        self.config_path.parent.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(text)
        for fname, body in (dropins or {}).items():
            d = Path(str(self.config_path) + ".d")
            d.mkdir(exist_ok=True)
            (d / fname).write_text(body)

    def base_args(self) -> list[str]:
        args = ["--node-name", self.name, "--node-ip", self.ip, "--data-dir", str(self.data_dir)]
        if self.role == "server":
            args += ["--bind-address", self.ip, "--https-listen-port", str(self.port)]
        return args

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("K3S_", "NOTIFY_SOCKET", "KUBECONFIG"))}
        return {**env, **FAST, "PIK3S_SIM_ROOT": str(self.root)}

    def start(self, *extra: str) -> Node:
        self.log.write_bytes(b"")
        fh = self.log.open("ab")
        self.proc = subprocess.Popen([sys.executable, str(self.binary), self.role, *self.base_args(), *extra],
                                     stdout=fh, stderr=fh, env=self.env())
        return self

    def run(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run a one-shot simulator command (kubectl, etcd-snapshot, ...) as this node."""
        return subprocess.run([sys.executable, str(self.binary), *args], capture_output=True, text=True,
                              env=self.env(), timeout=timeout, check=False)

    def wait_exit(self, timeout: float = 20) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def logs(self) -> str:
        return self.log.read_text()

    def wait_log(self, text: str, timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            logs = self.logs()
            if text in logs:
                return logs
            if self.proc and self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"{self.name}: {text!r} not in log:\n{self.logs()}")

    def wait_up(self, timeout: float = 30) -> Node:
        self.wait_log("k3s is up and running" if self.role == "server" else "registered with the cluster",
                      timeout)
        return self

    @property
    def token(self) -> str:
        return (self.data_dir / "server" / "token").read_text().strip()

    def kubectl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run("kubectl", "--kubeconfig", str(self.root / "etc/rancher/k3s/k3s.yaml"), *args)

    def nodes(self) -> dict[str, dict[str, Any]]:
        res = self.kubectl("get", "nodes", "-o", "json")
        assert res.returncode == 0, res.stderr
        doc = json.loads(res.stdout)
        items = doc["items"] if "items" in doc else [doc]
        return {n["metadata"]["name"]: n for n in items}

    def ready(self) -> dict[str, bool]:
        return {k: v["status"]["conditions"][0]["status"] == "True" for k, v in self.nodes().items()}

    def wait_nodes(self, expected: dict[str, bool], timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        seen: dict[str, bool] = {}
        while time.monotonic() < deadline:
            seen = self.ready()
            if seen == expected:
                return
            time.sleep(0.2)
        raise AssertionError(f"nodes {seen} != expected {expected}")


def publish(tmp: Path, version: str = "v1.31.4+k3s1", arch: str | None = None) -> Path:
    """The simulator as the mirror publishes it (for this machine's arch by default)."""
    arch = arch or {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, "armhf")
    path = tmp / f"k3s-{arch}-{version}"
    path.write_bytes(mirror.simulator_asset(version, arch))
    path.chmod(0o755)
    return path
