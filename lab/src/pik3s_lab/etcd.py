"""The lab's external datastore: Debian's etcd, its own container on the lab network.

The binaries come from Debian's ``etcd-server`` and ``etcd-client`` packages
(fetched with ``apt-get download`` from the machine's own apt sources,
unpacked into the cache; nothing is installed on the machine and no etcd
runs on it). The lab runs them in a container of its amd64 host image with a
data volume. With TLS (``etcd: tls`` in the lab spec) the lab makes a CA, a
server certificate for the container's address and a client certificate for
K3s, and etcd requires client certificates, as operators run it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from pik3s.errors import Pik3sError
from pik3s_lab.simulator.tokens import make_ca, sign_cert, write_private

PACKAGES = ("etcd-server", "etcd-client")
BINARIES = ("etcd", "etcdctl")
PORT = 2379
MODES = ("none", "plain", "tls")
# Where the lab's PKI is mounted in the etcd container.
PKI_MOUNT = "/etc/etcd/pki"
DATA_MOUNT = "/var/lib/etcd"


def cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "pik3s" / "etcd"


def binaries() -> Path:
    """The directory holding Debian's etcd and etcdctl (fetched and unpacked once)."""
    target = cache_dir()
    if all((target / "bin" / b).is_file() for b in BINARIES):
        return target / "bin"
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run(["apt-get", "download", *PACKAGES], cwd=tmp, capture_output=True, text=True,
                              check=False)
        if proc.returncode != 0 and os.geteuid() == 0:  # package lists missing or stale: refresh them once
            subprocess.run(["apt-get", "update", "-q"], capture_output=True, check=False)
            proc = subprocess.run(["apt-get", "download", *PACKAGES], cwd=tmp, capture_output=True, text=True,
                                  check=False)
        debs = sorted(Path(tmp).glob("*.deb"))
        if proc.returncode != 0 or len(debs) != len(PACKAGES):
            raise Pik3sError(f"cannot fetch Debian's {' and '.join(PACKAGES)} with apt-get download (the lab's "
                             f"external datastore runs them): {proc.stderr.strip()[-400:]} (run apt-get update?)")
        root = Path(tmp) / "root"
        for deb in debs:
            subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
        staging = target / "bin.new"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        for b in BINARIES:
            shutil.copy2(root / "usr" / "bin" / b, staging / b)
        (staging / "VERSION").write_text(" ".join(d.name for d in debs) + "\n")
        shutil.rmtree(target / "bin", ignore_errors=True)
        staging.rename(target / "bin")
    return target / "bin"


def make_pki(directory: Path, ip: str) -> None:
    """A CA, etcd's server certificate for ``ip`` and a client certificate (keys 0600) in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    ca, ca_key = make_ca("pik3s-lab-etcd-ca")
    # etcd's JSON gateway calls etcd's gRPC with the server certificate: it is a client certificate too.
    server, server_key = sign_cert(ca, ca_key, "/CN=etcd", [ip, "etcd", "127.0.0.1", "localhost"], client=False,
                                   usage="serverAuth,clientAuth")
    client, client_key = sign_cert(ca, ca_key, "/CN=k3s", None, client=True)
    for name, data in (("ca.crt", ca), ("ca.key", ca_key), ("server.crt", server), ("server.key", server_key),
                       ("client.crt", client), ("client.key", client_key)):
        write_private(directory / name, data, 0o600 if name.endswith(".key") else 0o644)


def command(ip: str, tls: bool, data: str = DATA_MOUNT, pki: str = PKI_MOUNT, bind: str = "0.0.0.0",  # noqa: S104
            port: int = PORT) -> list[str]:
    """etcd's command line: one member, clients on ``bind``:``port`` (the container's own network
    namespace: the lab network only), TLS with client certificates when ``tls``."""
    scheme = "https" if tls else "http"
    args = ["etcd", "--name", "etcd", "--data-dir", f"{data}/data",  # made 0700 by etcd (the mount is 0755)
            "--listen-client-urls", f"{scheme}://{bind}:{port}", "--advertise-client-urls", f"{scheme}://{ip}:{port}",
            "--listen-peer-urls", f"http://127.0.0.1:{port + 1}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{port + 1}",
            "--initial-cluster", f"etcd=http://127.0.0.1:{port + 1}",
            "--logger", "zap", "--log-level", "warn"]
    if tls:
        args += ["--cert-file", f"{pki}/server.crt", "--key-file", f"{pki}/server.key",
                 "--client-cert-auth", "--trusted-ca-file", f"{pki}/ca.crt"]
    return args


def etcdctl_args(endpoint: str, tls: bool, pki: str = PKI_MOUNT) -> list[str]:
    """etcdctl's options to reach the lab's etcd (v3 API), with the client certificate under TLS."""
    args = ["etcdctl", f"--endpoints={endpoint}"]
    if tls:
        args += [f"--cacert={pki}/ca.crt", f"--cert={pki}/client.crt", f"--key={pki}/client.key"]
    return args
