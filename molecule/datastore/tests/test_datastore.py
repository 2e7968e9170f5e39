"""datastore: 2 servers on the lab's external etcd (TLS, client certificates) + 1 agent, and
registries.yaml set, changed and removed."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared" / "tests"))
pytest.register_assert_rewrite("verify_cluster")

from verify_cluster import (  # noqa: E402,F401 - the shared checks, collected here
    failure_messages,
    recap,
    run_playbook,
    test_all_nodes_ready_from_the_server,
    test_binary_is_the_release_asset_for_this_cpu,
    test_config_and_token_files,
    test_fetched_kubeconfig_reaches_the_api_with_its_own_credentials,
    test_unit_enabled_and_active,
)

DATASTORE_DIR = "/etc/rancher/k3s/datastore"
REGISTRIES = "/etc/rancher/k3s/registries.yaml"
NEW = "v1.31.4+k3s1"


def _lab(host) -> dict:
    """The host's inventory variables (the lab's pik3s_lab_etcd_* among them)."""
    return host.ansible.get_variables()


def _etcdctl(host, *args: str) -> str:
    """etcdctl in the lab's etcd container, with the lab's client certificate."""
    lab = _lab(host)
    pki = "/etc/etcd/pki"
    res = subprocess.run(["docker", "exec", lab["pik3s_lab_etcd_container"], "etcdctl",
                          f"--endpoints={lab['pik3s_lab_etcd_endpoint']}", f"--cacert={pki}/ca.crt",
                          f"--cert={pki}/client.crt", f"--key={pki}/client.key", *args],
                         capture_output=True, text=True, timeout=30, check=True)
    return res.stdout


def _unit_of(name: str) -> str:
    return "k3s-agent" if name.startswith("agt") else "k3s"


def _started(node, unit: str) -> str:
    return node.check_output(f"systemctl show -p MainPID -p ActiveEnterTimestamp {unit}")


def _nodes(host) -> dict[str, str]:
    items = json.loads(host.check_output("sudo k3s kubectl get nodes -o json"))["items"]
    return {n["metadata"]["name"]: n["status"]["conditions"][0]["status"] for n in items}


def _wait_nodes(host, want: dict[str, str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    seen: dict[str, str] = {}
    while time.monotonic() < deadline:
        res = host.run("sudo k3s kubectl get nodes -o json")
        if res.rc == 0:
            items = json.loads(res.stdout)["items"]
            seen = {n["metadata"]["name"]: n["status"]["conditions"][0]["status"] for n in items}
            if seen == want:
                return
        time.sleep(1)
    raise AssertionError(f"nodes {seen}, wanted {want}")


def test_servers_use_the_external_datastore_with_its_certificates(host) -> None:
    name = host.backend.get_hostname()
    lab = _lab(host)
    if name.startswith("agt"):
        assert not host.file(DATASTORE_DIR).exists  # agents never get the datastore's key
        return
    config = yaml.safe_load(host.check_output("sudo cat /etc/rancher/k3s/config.yaml"))
    # No embedded etcd: no cluster-init, no server to join; the certificates where pik3s put them.
    assert "cluster-init" not in config and "server" not in config
    assert config["datastore-cafile"] == f"{DATASTORE_DIR}/ca.crt"
    assert config["datastore-certfile"] == f"{DATASTORE_DIR}/client.crt"
    assert config["datastore-keyfile"] == f"{DATASTORE_DIR}/client.key"
    assert "datastore-endpoint" not in config  # in the unit's env file (it may hold a password)
    env = host.file("/etc/systemd/system/k3s.service.env")
    assert env.mode == 0o600
    assert f'K3S_DATASTORE_ENDPOINT="{lab["pik3s_lab_etcd_endpoint"]}"' in host.check_output(
        "sudo cat /etc/systemd/system/k3s.service.env")
    for dest, var in (("ca.crt", "cafile"), ("client.crt", "certfile"), ("client.key", "keyfile")):
        # (the directory is 0700: read as root)
        assert host.check_output(f"sudo stat -c '%U %G %a' {DATASTORE_DIR}/{dest}") == "root root 600"
        assert host.check_output(f"sudo cat {DATASTORE_DIR}/{dest}") == \
            Path(lab[f"pik3s_lab_etcd_{var}"]).read_text().rstrip("\n")
    assert host.check_output(f"sudo stat -c '%U %G %a' {DATASTORE_DIR}") == "root root 700"
    assert not host.file("/var/lib/rancher/k3s/server/db/etcd").exists
    assert "Using the external etcd datastore at " + lab["pik3s_lab_etcd_endpoint"] in host.check_output(
        "sudo journalctl -u k3s --no-pager -o cat")


def test_etcd_holds_the_cluster(host) -> None:
    if host.backend.get_hostname() != "srv1":
        return
    roles = {n["metadata"]["name"]: sorted(k.rsplit("/", 1)[1] for k in n["metadata"]["labels"]
                                           if k.startswith("node-role.kubernetes.io/"))
             for n in json.loads(host.check_output("sudo k3s kubectl get nodes -o json"))["items"]}
    assert roles == {"srv1": ["control-plane", "master"], "srv2": ["control-plane", "master"], "agt1": []}
    keys = _etcdctl(host, "get", "/", "--prefix", "--keys-only").split()
    assert {"/registry/minions/srv1", "/registry/minions/srv2", "/registry/minions/agt1",
            "/registry/secrets/kube-system/agt1.node-password.k3s"} <= set(keys), keys
    assert len([k for k in keys if k.startswith("/bootstrap/")]) == 1


def test_registries_file_and_the_mirror_k3s_loaded(host) -> None:
    name = host.backend.get_hostname()
    f = host.file(REGISTRIES)
    assert (f.user, f.group, f.mode) == ("root", "root", 0o600)
    assert yaml.safe_load(host.check_output(f"sudo cat {REGISTRIES}")) == _lab(host)["k3s_registries"]
    logs = host.check_output(f"sudo journalctl -u {_unit_of(name)} --no-pager -o cat")
    assert "Using registry mirror for docker.io: http://registry.mol-datastore.lab:5000" in logs


def test_backup_is_refused_with_the_etcdctl_command(host) -> None:
    if host.backend.get_hostname() != "srv1":
        return
    lab = _lab(host)
    run = run_playbook("playbooks/backup.yml")
    assert run.returncode != 0
    (msg,) = failure_messages(run.stdout, "srv1")
    assert msg.startswith(f"The servers use the external datastore {lab['pik3s_lab_etcd_endpoint']}: K3s takes "
                          "etcd snapshots of its embedded etcd only"), msg
    assert (f"ETCDCTL_API=3 etcdctl --endpoints={lab['pik3s_lab_etcd_endpoint']} "
            f"--cacert={lab['pik3s_lab_etcd_cafile']} --cert={lab['pik3s_lab_etcd_certfile']} "
            f"--key={lab['pik3s_lab_etcd_keyfile']} snapshot save pik3s-etcd-") in msg, msg


def test_restore_is_refused(host) -> None:
    if host.backend.get_hostname() != "srv1":
        return
    lab = _lab(host)
    run = run_playbook("playbooks/restore.yml", "-e", "k3s_restore=/nonexistent")
    assert run.returncode != 0
    assert failure_messages(run.stdout) == [
        f"The servers use the external datastore {lab['pik3s_lab_etcd_endpoint']}: restore.yml restores the "
        "embedded-etcd snapshots backup.yml takes, and K3s cannot reset a cluster from one onto an external "
        "datastore. Restore the datastore with its own tools (an etcd - etcdctl snapshot restore, then restart "
        "it), then start K3s on the servers (pik3s deploy)."], run.stdout[-3000:]
    assert "Stop K3s" not in run.stdout  # refused before any host was touched


def test_the_api_answers_through_the_other_server(host) -> None:
    """srv1 stops: srv2 still serves the API from the datastore, the agent stays Ready through it, and a
    write through srv2 is there when srv1 is back."""
    if host.backend.get_hostname() != "srv2":
        return
    srv1 = host.get_host("ansible://srv1", ansible_inventory=host.backend.ansible_inventory)
    srv1.run_expect([0], "sudo systemctl stop k3s")
    try:
        _wait_nodes(host, {"srv1": "Unknown", "srv2": "True", "agt1": "True"})
        host.run_expect([0], "sudo k3s kubectl label node agt1 pik3s.test/written-through=srv2")
    finally:
        srv1.run_expect([0], "sudo systemctl start k3s")
    _wait_nodes(srv1, {"srv1": "True", "srv2": "True", "agt1": "True"})
    labels = json.loads(srv1.check_output("sudo k3s kubectl get node agt1 -o json"))["metadata"]["labels"]
    assert labels["pik3s.test/written-through"] == "srv2"


def test_registries_changed_then_removed(host) -> None:
    """A changed mirror rewrites the file and restarts K3s on every node; the same again changes nothing;
    emptied, the file is removed (its credentials no longer in force) and K3s restarted."""
    if host.backend.get_hostname() != "srv1":
        return
    inventory = host.backend.ansible_inventory
    nodes = {n: host.get_host(f"ansible://{n}", ansible_inventory=inventory) for n in ("srv1", "srv2", "agt1")}

    def starts() -> dict[str, str]:
        return {n: _started(node, _unit_of(n)) for n, node in nodes.items()}

    changed = {"mirrors": {"docker.io": {"endpoint": ["https://mirror2.mol-datastore.lab"]}}}
    before = starts()
    run = run_playbook("site.yml", "-e", json.dumps({"k3s_registries": changed}))
    assert run.returncode == 0, run.stdout[-4000:]
    after = starts()
    for n, node in nodes.items():
        assert yaml.safe_load(node.check_output(f"sudo cat {REGISTRIES}")) == changed
        assert node.file(REGISTRIES).mode == 0o600
        assert after[n] != before[n], f"{n} was not restarted"
        assert "Using registry mirror for docker.io: https://mirror2.mol-datastore.lab" in node.check_output(
            f"sudo journalctl -u {_unit_of(n)} --no-pager -o cat")

    again = run_playbook("site.yml", "-e", json.dumps({"k3s_registries": changed}))
    assert again.returncode == 0, again.stdout[-4000:]
    assert {n: c["changed"] for n, c in recap(again.stdout).items()} == {"srv1": 0, "srv2": 0, "agt1": 0}
    assert starts() == after

    removed = run_playbook("site.yml", "-e", json.dumps({"k3s_registries": {}}))
    assert removed.returncode == 0, removed.stdout[-4000:]
    final = starts()
    for n, node in nodes.items():
        assert not node.file(REGISTRIES).exists
        assert final[n] != after[n], f"{n} was not restarted"
        since_restart = node.check_output(f"sudo journalctl -u {_unit_of(n)} --no-pager -o cat").rsplit(
            "Starting k3s", 1)[1]
        assert "Using private registry config file" not in since_restart

    # Back to the inventory's registries (the other checks, on any host, in any order, expect them).
    restored = run_playbook("site.yml")
    assert restored.returncode == 0, restored.stdout[-4000:]
    for node in nodes.values():
        assert yaml.safe_load(node.check_output(f"sudo cat {REGISTRIES}")) == _lab(host)["k3s_registries"]
    _wait_nodes(host, {"srv1": "True", "srv2": "True", "agt1": "True"})


def test_upgrade_works_on_the_external_datastore(host) -> None:
    """upgrade.yml as on any cluster: one server at a time, the cluster kept in the datastore."""
    if host.backend.get_hostname() != "srv1":
        return
    host.run_expect([0], "sudo k3s kubectl label --overwrite node agt1 pik3s.test/before-upgrade=yes")
    run = run_playbook("playbooks/upgrade.yml", "-e", f"k3s_version={NEW}")
    assert run.returncode == 0, run.stdout[-4000:]
    versions = {n["metadata"]["name"]: n["status"]["nodeInfo"]["kubeletVersion"]
                for n in json.loads(host.check_output("sudo k3s kubectl get nodes -o json"))["items"]}
    assert versions == {"srv1": NEW, "srv2": NEW, "agt1": NEW}
    assert "pik3s.test/before-upgrade" in json.loads(
        host.check_output("sudo k3s kubectl get node agt1 -o json"))["metadata"]["labels"]
