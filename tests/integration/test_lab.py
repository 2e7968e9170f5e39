"""The lab on real Pi-shaped hosts: 2 amd64 + 1 arm64 (emulated), reached
over SSH as `pi`, running the K3s simulator installed from the lab mirror; and
the lab's plain etcd (the external datastore) serving simulator servers."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from pik3s_lab import lab as lablib
from tests.conftest import run_ansible
from tests.integration.conftest import host, running_lab

pytestmark = pytest.mark.lab

TOKEN = "integration-lab-token"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[lablib.LabRecord]:
    with running_lab(tmp_path_factory, "it", [host("srv", "server"), host("gen", "agent", model="generic"),
                                                 host("arm", "agent", arch="arm64")], etcd="plain") as record:
        yield record


def sh(lab: lablib.LabRecord, hosts: str, cmd: str, become: bool = True) -> dict[str, tuple[int, str]]:
    """Run a shell command on hosts over SSH; {host: (rc, stdout+stderr)}."""
    args = ["-i", str(lab.inventory), hosts, "-m", "ansible.builtin.shell", "-a", cmd, "-o"]
    res = run_ansible("ansible", *args, *(["-b"] if become else []))
    out: dict[str, tuple[int, str]] = {}
    for line in res.stdout.splitlines():
        m = re.match(r"^(\S+) \| (?:CHANGED|FAILED|SUCCESS) \| rc=(\d+) \| "
                     r"\(stdout\) ?(.*?)(?: \(stderr\) ?(.*))?$", line)
        if m:
            text = (m.group(3) or "") + ("\n" + m.group(4) if m.group(4) else "")
            out[m.group(1)] = (int(m.group(2)), text.replace("\\n", "\n").strip())
        elif re.match(r"^(\S+) \| (?:CHANGED|FAILED|SUCCESS) \| rc=(\d+) \| \(stdout\)$", line):
            m2 = re.match(r"^(\S+) \| \S+ \| rc=(\d+)", line)
            assert m2
            out[m2.group(1)] = (int(m2.group(2)), "")
    assert out, res.stdout + res.stderr
    return out


def test_ssh_as_pi_and_sudo(lab: lablib.LabRecord) -> None:
    assert {h: v[1] for h, v in sh(lab, "all", "id -un", become=False).items()} == \
        {"srv": "pi", "gen": "pi", "arm": "pi"}
    assert {h: v[1] for h, v in sh(lab, "all", "id -un").items()} == {"srv": "root", "gen": "root", "arm": "root"}
    assert sh(lab, "arm", "uname -m")["arm"][1] == "aarch64"
    # Host key checking is on, against the keys each host generated at first boot.
    inventory = yaml.safe_load(lab.inventory.read_text())
    assert "StrictHostKeyChecking=yes" in inventory["all"]["vars"]["ansible_ssh_common_args"]
    keys = (Path(lab.state_dir) / "known_hosts").read_text().splitlines()
    assert len({line.split()[2] for line in keys}) == 3


def test_hosts_are_shaped_like_raspberry_pi_os(lab: lablib.LabRecord) -> None:
    model = sh(lab, "all", "grep -h '^Model' /proc/cpuinfo || echo none")
    assert model["srv"][1].endswith("Raspberry Pi 4 Model B Rev 1.4")
    assert model["gen"][1] == "none"
    cmdline = sh(lab, "srv,arm", "wc -l < /boot/firmware/cmdline.txt; cat /etc/rpi-issue | head -1")
    assert all(v[1].startswith("1\nRaspberry Pi reference") for v in cmdline.values())
    swap = sh(lab, "all", "systemctl is-active dphys-swapfile; test -f /var/swap && echo swapfile")
    assert swap["srv"][1] == "active\nswapfile"
    assert swap["gen"][1].startswith(("inactive", "unknown"))
    assert sh(lab, "gen", "test -e /boot/firmware/cmdline.txt || echo absent")["gen"][1] == "absent"


def test_only_network_sysctls_are_writable(lab: lablib.LabRecord) -> None:
    before = Path("/proc/sys/vm/swappiness").read_text()
    res = sh(lab, "srv", "sysctl -w net.ipv4.ip_forward=1 && sysctl -w vm.swappiness=7 2>&1; "
                         "swapon /var/swap 2>&1; true")["srv"][1]
    assert "net.ipv4.ip_forward = 1" in res
    assert 'permission denied on key "vm.swappiness"' in res
    assert "Operation not permitted" in res  # swapon is refused: it would be this machine's swap
    assert Path("/proc/sys/vm/swappiness").read_text() == before
    assert Path("/proc/swaps").read_text().count("\n") == 1


def test_reboot_is_observable_and_keeps_files(lab: lablib.LabRecord) -> None:
    res = run_ansible("ansible-playbook", "-i", str(lab.inventory), "tests/integration/playbooks/reboot.yml",
                      "-e", "lab_target=gen")
    assert res.returncode == 0, res.stdout + res.stderr
    uuid = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
    found = re.search(rf"before=({uuid}) after=({uuid})", res.stdout)
    assert found, res.stdout
    before, after = found.groups()
    assert before != after
    assert sh(lab, "gen", "cat /var/lib/pik3s-reboot-marker; systemctl is-system-running")["gen"][1] in (
        "before reboot\nrunning", "before reboot\ndegraded")
    # /etc/hosts keeps what was written to it, as on a Pi (Docker writes its own at every start).
    assert sh(lab, "gen", "grep -c reboot-marker.lab /etc/hosts")["gen"][1] == "1"


def test_arch_assets(lab: lablib.LabRecord) -> None:
    url = f"{lab.mirror_url}/k3s-io/k3s/releases/download/v1.30.8%2Bk3s1/k3s-arm64"
    res = sh(lab, "srv,arm", f"curl -fsS -o /tmp/k3s-arm64 {url} && chmod +x /tmp/k3s-arm64 && "
                             "/tmp/k3s-arm64 --version 2>&1; echo rc=$?")
    assert res["arm"][1].startswith("k3s version v1.30.8+k3s1 (pik3s K3s simulator)")
    assert res["arm"][1].endswith("rc=0")
    assert "cannot execute binary file: Exec format error" in res["srv"][1]
    assert res["srv"][1].endswith("rc=126")


def _nodes(lab: lablib.LabRecord) -> dict[str, dict[str, object]]:
    out = sh(lab, "srv", "k3s kubectl get nodes -o json")["srv"]
    assert out[0] == 0, out[1]
    return {n["metadata"]["name"]: n for n in json.loads(out[1])["items"]}


def test_simulated_cluster_from_the_mirror(lab: lablib.LabRecord) -> None:
    res = run_ansible("ansible-playbook", "-i", str(lab.inventory),
                      "tests/integration/playbooks/install-simulator.yml", "-e", f"lab_token={TOKEN}")
    assert res.returncode == 0, res.stdout + res.stderr
    assert TOKEN not in res.stdout  # the config task carries no_log
    deadline = time.monotonic() + 90
    ready: dict[str, bool] = {}
    while time.monotonic() < deadline:
        nodes = _nodes(lab)
        ready = {n: v["status"]["conditions"][0]["status"] == "True" for n, v in nodes.items()}  # type: ignore[index]
        if ready == {"srv": True, "gen": True, "arm": True}:
            break
        time.sleep(2)
    assert ready == {"srv": True, "gen": True, "arm": True}
    archs = {n: v["status"]["nodeInfo"]["architecture"] for n, v in _nodes(lab).items()}  # type: ignore[index]
    assert archs == {"srv": "amd64", "gen": "amd64", "arm": "arm64"}
    token = sh(lab, "srv", "stat -c %a /var/lib/rancher/k3s/server/token; cat /var/lib/rancher/k3s/server/token")
    mode, value = token["srv"][1].split("\n")
    assert mode == "600" and re.fullmatch(rf"K10[0-9a-f]{{64}}::server:{TOKEN}", value)


def test_wrong_token_keeps_an_agent_out(lab: lablib.LabRecord) -> None:
    srv_ip = next(h.ip for h in lab.hosts if h.name == "srv")
    ca_hash = sh(lab, "srv", "cut -c4-67 /var/lib/rancher/k3s/server/token")["srv"][1]
    cmd = (f"systemd-run --unit k3s-intruder /usr/local/bin/k3s agent --server https://{srv_ip}:6443 "
           f"--token K10{ca_hash}::server:wrong-password --node-name intruder "
           "--data-dir /var/lib/rancher/intruder && sleep 8 && journalctl -u k3s-intruder --no-pager; "
           "systemctl stop k3s-intruder")
    journal = sh(lab, "arm", cmd)["arm"][1]
    assert "401 Unauthorized" in journal and "pik3s K3s simulator" in journal
    assert "intruder" not in _nodes(lab)


def test_plain_etcd_serves_servers_on_two_hosts(lab: lablib.LabRecord) -> None:
    """The lab's etcd without TLS: two simulator servers (one on the emulated arm64 host) on it, a second
    cluster beside the one above, sharing its state through the datastore."""
    inv = yaml.safe_load(lab.inventory.read_text())["all"]["vars"]
    endpoint = inv["pik3s_lab_etcd_endpoint"]
    assert endpoint == f"http://{lab.etcd_ip}:2379" and inv["pik3s_lab_etcd_cafile"] == ""
    start = ("systemd-run --unit k3s-ext /usr/local/bin/k3s server --node-name ext-$(hostname) "
             f"--datastore-endpoint {endpoint} --token lab-external-datastore-token --https-listen-port 7443 "
             "--data-dir /var/lib/rancher/ext --write-kubeconfig /var/lib/rancher/ext/k3s.yaml")
    kubectl = "k3s kubectl --kubeconfig /var/lib/rancher/ext/k3s.yaml get nodes -o json"
    try:
        for name in ("gen", "arm"):
            assert sh(lab, name, start)[name][0] == 0
        deadline = time.monotonic() + 120
        names: list[str] = []
        while time.monotonic() < deadline:
            rc, out = sh(lab, "arm", kubectl)["arm"]
            names = sorted(n["metadata"]["name"] for n in json.loads(out)["items"]) if rc == 0 else []
            if names == ["ext-arm", "ext-gen"]:
                break
            time.sleep(2)
        assert names == ["ext-arm", "ext-gen"]
        keys = subprocess.run(["docker", "exec", lab.etcd_container, "etcdctl", f"--endpoints={endpoint}", "get",
                               "/registry/minions/", "--prefix", "--keys-only"],
                              capture_output=True, text=True, check=True).stdout.split()
        assert keys == ["/registry/minions/ext-arm", "/registry/minions/ext-gen"]
        journal = sh(lab, "gen", "journalctl -u k3s-ext --no-pager -o cat")["gen"][1]
        assert f"Using the external etcd datastore at {endpoint}" in journal
    finally:
        sh(lab, "gen,arm", "systemctl stop k3s-ext; rm -rf /var/lib/rancher/ext")
