"""The pik3s K3s simulator on an external datastore: Debian's etcd (the lab's), on loopback.

Real processes: one etcd with TLS and client certificates (the lab's own PKI
code), simulator servers that share it through etcd's v3 JSON gateway. Each
rule is one K3s has with an external datastore.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pik3s_lab import etcd as lab_etcd
from pik3s_lab.simulator import yamlreader
from tests.unit.lab.simharness import Node, free_port

MakeNode = Callable[..., Node]
TOKEN = "external-datastore-token-0123"


@dataclass
class Etcd:
    endpoint: str
    pki: Path
    proc: subprocess.Popen[bytes]
    log: Path

    def ctl_args(self) -> list[str]:
        cmd = lab_etcd.etcdctl_args(self.endpoint, tls=True, pki=str(self.pki))
        cmd[0] = str(lab_etcd.binaries() / "etcdctl")
        return cmd

    def ctl(self, *args: str) -> str:
        return subprocess.run([*self.ctl_args(), *args], capture_output=True, text=True, check=True,
                              timeout=20).stdout

    def flags(self) -> list[str]:
        return ["--datastore-endpoint", self.endpoint, "--datastore-cafile", str(self.pki / "ca.crt"),
                "--datastore-certfile", str(self.pki / "client.crt"),
                "--datastore-keyfile", str(self.pki / "client.key")]


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[Etcd]:
    if shutil.which("apt-get") is None:
        pytest.skip("needs apt-get to fetch Debian's etcd")  # never on the lab machines (Debian)
    bindir = lab_etcd.binaries()
    ip = "127.0.0.1"
    port = free_port(ip)
    pki = tmp_path / "etcd-pki"
    lab_etcd.make_pki(pki, ip)
    log = tmp_path / "etcd.log"
    cmd = lab_etcd.command(ip, tls=True, data=str(tmp_path / "etcd-data"), pki=str(pki), bind=ip, port=port)
    cmd[cmd.index("--listen-peer-urls") + 1] = cmd[cmd.index("--initial-advertise-peer-urls") + 1] = \
        f"http://127.0.0.1:{free_port(ip)}"
    cmd[cmd.index("--initial-cluster") + 1] = f"etcd={cmd[cmd.index('--listen-peer-urls') + 1]}"
    with log.open("wb") as fh:
        proc = subprocess.Popen([str(bindir / "etcd"), *cmd[1:]], stdout=fh, stderr=fh)
    server = Etcd(f"https://{ip}:{port}", pki, proc, log)
    deadline = time.monotonic() + 20
    while True:
        try:
            server.ctl("endpoint", "health")
            break
        except subprocess.CalledProcessError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise AssertionError(f"etcd did not start:\n{log.read_text()[-2000:]}") from None
            time.sleep(0.3)
    yield server
    proc.terminate()
    proc.wait(10)


def _server(make_node: MakeNode, etcd: Etcd, name: str, *extra: str) -> Node:
    return make_node(name).start("--token", TOKEN, *etcd.flags(), *extra)


def test_two_servers_share_the_datastore_and_survive_each_other(make_node: MakeNode, etcd: Etcd) -> None:
    s1 = _server(make_node, etcd, "s1").wait_up()
    s2 = _server(make_node, etcd, "s2").wait_up()
    make_node("a1", "agent").start("--server", s2.url, "--token", s1.token).wait_up()
    s1.wait_nodes({"s1": True, "s2": True, "a1": True})
    # The same cluster: one CA, the token each server writes is the same; no embedded etcd anywhere.
    assert s1.token == s2.token
    assert not (s1.data_dir / "server/db/etcd").exists() and not (s1.data_dir / "server/db/state.db").exists()
    roles = {n: sorted(k.rsplit("/", 1)[1] for k in v["metadata"]["labels"] if k.startswith("node-role"))
             for n, v in s2.nodes().items()}
    assert roles == {"s1": ["control-plane", "master"], "s2": ["control-plane", "master"], "a1": []}
    assert "Using the external etcd datastore at " + etcd.endpoint in s1.logs()
    # The cluster's keys are in etcd, where K3s puts them.
    keys = etcd.ctl("get", "/", "--prefix", "--keys-only").split()
    assert {"/registry/minions/s1", "/registry/minions/s2", "/registry/minions/a1",
            "/registry/secrets/kube-system/a1.node-password.k3s"} <= set(keys)
    assert len([k for k in keys if k.startswith("/bootstrap/")]) == 1
    # A write through one server is read through the other.
    assert s1.kubectl("label", "node", "a1", "tier=edge").returncode == 0
    assert s2.nodes()["a1"]["metadata"]["labels"]["tier"] == "edge"
    # One server stops: the other answers, and the agent stays Ready through it.
    s1.stop()
    s2.wait_nodes({"s1": False, "s2": True, "a1": True}, timeout=20)
    assert s2.kubectl("get", "--raw", "/readyz").stdout == "ok"
    s1.start("--token", TOKEN, *etcd.flags()).wait_up()
    s2.wait_nodes({"s1": True, "s2": True, "a1": True}, timeout=20)
    assert s1.nodes()["a1"]["metadata"]["labels"]["tier"] == "edge"
    # The datastore stops: the API stops answering (readyz fails), as K3s's does.
    etcd.proc.terminate()
    etcd.proc.wait(10)
    time.sleep(1)
    res = s2.kubectl("get", "nodes")
    assert res.returncode != 0
    assert "connection refused" in res.stderr or "datastore" in res.stderr, res.stderr


def test_the_history_is_compacted(make_node: MakeNode, etcd: Etcd, monkeypatch: pytest.MonkeyPatch) -> None:
    """As kube-apiserver compacts etcd (every 5 minutes; 1 s here), so heartbeats do not pile up for good."""
    monkeypatch.setenv("PIK3S_SIM_COMPACT", "1")
    s1 = _server(make_node, etcd, "s1").wait_up()
    s1.wait_nodes({"s1": True})
    time.sleep(3)  # heartbeats persisted, each a write, one of them compacting
    old = subprocess.run([*etcd.ctl_args(), "get", "/registry/minions/s1", "--rev=2"], capture_output=True,
                         text=True, check=False)
    assert old.returncode != 0 and "required revision has been compacted" in old.stderr, old


def test_a_server_with_another_token_is_refused(make_node: MakeNode, etcd: Etcd) -> None:
    _server(make_node, etcd, "s1").wait_up()
    s2 = make_node("s2").start("--token", "another-token-0123456789", *etcd.flags())
    assert s2.wait_exit() == 1
    assert "bootstrap data already found and encrypted with different token" in s2.logs()


def test_wrong_certificates_and_unreachable_endpoints_fail_the_start(make_node: MakeNode, etcd: Etcd,
                                                                    tmp_path: Path) -> None:
    other = tmp_path / "other-pki"
    lab_etcd.make_pki(other, "127.0.0.1")
    # The server's certificate is not signed by the CA given: K3s's words.
    s1 = make_node("s1").start("--token", TOKEN, "--datastore-endpoint", etcd.endpoint,
                               "--datastore-cafile", str(other / "ca.crt"),
                               "--datastore-certfile", str(etcd.pki / "client.crt"),
                               "--datastore-keyfile", str(etcd.pki / "client.key"))
    assert s1.wait_exit() == 1
    assert "x509: certificate signed by unknown authority" in s1.logs()
    # A client certificate etcd does not trust.
    s2 = make_node("s2").start("--token", TOKEN, "--datastore-endpoint", etcd.endpoint,
                               "--datastore-cafile", str(etcd.pki / "ca.crt"),
                               "--datastore-certfile", str(other / "client.crt"),
                               "--datastore-keyfile", str(other / "client.key"))
    assert s2.wait_exit() == 1
    assert "remote error: tls:" in s2.logs()
    # Nobody listens there: retried, then given up with the dial error.
    port = free_port("127.0.0.1")
    s3 = make_node("s3")
    s3.start("--token", TOKEN, "--datastore-endpoint", f"http://127.0.0.1:{port}")
    assert s3.wait_exit(timeout=40) == 1
    assert f"dial tcp 127.0.0.1:{port}: connect: connection refused" in s3.logs()
    assert "failed to get bootstrap data from the datastore" in s3.logs()


@pytest.mark.parametrize("endpoint, kind", [("mysql://k3s:secret@tcp(db:3306)/k3s", "mysql"),
                                            ("postgres://k3s:secret@db:5432/k3s", "postgres")])
def test_sql_datastores_are_refused_as_not_simulated(make_node: MakeNode, endpoint: str, kind: str) -> None:
    s1 = make_node("s1").start("--token", TOKEN, "--datastore-endpoint", endpoint)
    assert s1.wait_exit() == 1
    logs = s1.logs()
    assert f"{kind} datastores are not simulated by the pik3s K3s simulator" in logs
    assert "secret" not in logs


def test_registries_are_read_at_start(make_node: MakeNode) -> None:
    s1 = make_node("s1")
    reg = s1.root / "etc/rancher/k3s/registries.yaml"
    reg.parent.mkdir(parents=True, exist_ok=True)
    reg.write_text(yamlreader.yaml_dump({"mirrors": {"docker.io": {"endpoint": ["http://mirror.lab:5000"]}},
                                         "configs": {"mirror.lab:5000": {"auth": {"username": "u", "password": "p"}}}}))
    s1.start("--token", TOKEN).wait_up()
    logs = s1.logs()
    assert "Using private registry config file at /etc/rancher/k3s/registries.yaml" in logs
    assert "Using registry mirror for docker.io: http://mirror.lab:5000" in logs
    s1.stop()
    reg.write_text("mirrors:\n  docker.io:\n    endpoint: http://not-a-list\n")
    s1.start("--token", TOKEN)
    assert s1.wait_exit() == 1
    assert "yaml: unmarshal errors:\n  mirrors.docker.io.endpoint: cannot unmarshal !!str into []string" \
        in s1.logs().replace("\\n", "\n")
    reg.write_text("mirrors: [docker.io\n")
    s1.start("--token", TOKEN)
    assert s1.wait_exit() == 1
    assert 'level=fatal msg="[pik3s K3s simulator] yaml: ' in s1.logs()


def test_the_state_keys_round_trip() -> None:
    from pik3s_lab.simulator import datastore
    data = {"generation": "g", "created": 1.0, "revision": 7, "members": {"s1": "https://x"},
            "nodes": {"a1": {"name": "a1"}}, "node_passwords": {"a1": "h"}, "bootstrap": {"c": "x"},
            "token_salt": "s", "token_check": "c", "agent_token_check": None, "critical": {}, "etcd": False}
    keys = datastore.state_to_keys(data, "/bootstrap/abc")
    keys[datastore.REVISION_KEY] = "7"
    assert datastore.state_from_keys(keys, "/bootstrap/abc") == data
    assert json.loads(keys["/registry/minions/a1"]) == {"name": "a1"}
