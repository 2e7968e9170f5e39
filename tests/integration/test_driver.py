"""The pik3s CLI on a 3-host lab (1 server + 2 agents, amd64): deploy --output json, check with zero
changes, a bad inventory refused without any SSH connection, and faults really injected: an agent
powered off mid-deploy, SSH connections dropped mid-run, a full disk, a dead agent removed by force."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from pik3s.results import EXIT_HOST_FAILED, EXIT_INVALID, EXIT_OK, EXIT_UNREACHABLE
from pik3s_lab import lab as lablib
from tests.conftest import ROOT, ansible_env, build_wheel, fresh_venv, outside_env
from tests.integration.conftest import (
    PIK3S,
    container,
    docker,
    host,
    lab_inventory,
    pik3s_env,
    record_fault,
    running_lab,
    sh,
    wait_ssh,
)
from tests.integration.conftest import run_pik3s as pik3s

pytestmark = pytest.mark.lab

SCHEMA = json.loads((resources.files("pik3s") / "data" / "result.schema.json").read_text())
VERSION = "v1.30.8+k3s1"  # pinned, not the channel's newest: the report must show what was asked for


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[lablib.LabRecord]:
    with running_lab(tmp_path_factory, "drv", [host("srv", "server"), host("agt1", "agent"),
                                                  host("agt2", "agent", model="generic")]) as record:
        yield record


def ssh_logins(lab: lablib.LabRecord, host: str) -> int:
    out = subprocess.run(["docker", "exec", container(lab, host), "journalctl", "-u", "ssh", "--no-pager", "-o", "cat"],
                         capture_output=True, text=True, check=True).stdout
    return out.count("Accepted publickey")


def vaulted_inventory(tmp_path: Path, token: str, password: str) -> tuple[Path, Path]:
    """The lab's inventory plus a vault-encrypted k3s_token in group_vars (as the role docs recommend),
    and its vault password file."""
    inv = tmp_path / "inventory"
    (inv / "group_vars" / "all").mkdir(parents=True)
    (inv / "hosts").symlink_to(ROOT / "inventories/lab/hosts")
    (inv / "group_vars" / "all" / "lab.yml").symlink_to(ROOT / "inventories/lab/group_vars/all.yml")
    secret = tmp_path / "vault-password"
    secret.write_text(password + "\n")
    secret.chmod(0o600)
    out = subprocess.run([str(Path(sys.executable).with_name("ansible-vault")), "encrypt_string",
                          "--vault-password-file", str(secret), "--name", "k3s_token", token],
                         capture_output=True, text=True, check=True, env=ansible_env()).stdout
    (inv / "group_vars" / "all" / "vault.yml").write_text(out)
    return inv, secret


def test_deploy_json_reports_nodes_and_versions(lab: lablib.LabRecord, tmp_path: Path) -> None:
    # The first deploy takes its token from the vault: checked offline with the password file, then used.
    password = "vaulted-token-" + os.urandom(8).hex()
    inv, secret = vaulted_inventory(tmp_path, password, "lab-vault-pw")
    rc, doc, err = pik3s(lab, "deploy", "--vault-password-file", str(secret), "-e", f"k3s_version={VERSION}",
                         inventory=str(inv))
    assert rc == EXIT_OK, (doc.get("failures"), err[-2000:])
    jsonschema.validate(doc, SCHEMA)
    assert doc["status"] == "successful" and doc["operation"] == "deploy"
    assert set(doc["hosts"]) == {"srv", "agt1", "agt2"} and all(s["failed"] == 0 for s in doc["hosts"].values())
    nodes = {n["name"]: n for n in doc["cluster"]["nodes"]}
    assert set(nodes) == {"srv", "agt1", "agt2"}
    assert all(n["ready"] and n["version"] == VERSION and n["arch"] == "amd64" for n in nodes.values())
    assert "control-plane" in nodes["srv"]["roles"] and nodes["agt1"]["roles"] == []
    assert nodes["agt2"]["address"] == next(h.ip for h in lab.hosts if h.name == "agt2")
    assert doc["cluster"]["api_endpoint"] == f"https://{nodes['srv']['address']}:6443"
    assert doc["cluster"]["kubeconfig_exists"] and Path(doc["cluster"]["kubeconfig"]).is_file()
    token = subprocess.run(["docker", "exec", container(lab, "srv"), "cat", "/var/lib/rancher/k3s/server/token"],
                           capture_output=True, text=True, check=True).stdout.strip()
    assert token.rsplit(":", 1)[1] == password  # the vaulted token is the cluster's
    assert password not in json.dumps(doc) + err


def test_check_on_the_converged_cluster_changes_nothing(lab: lablib.LabRecord) -> None:
    rc, doc, err = pik3s(lab, "check", "-e", f"k3s_version={VERSION}")
    assert rc == EXIT_OK, (doc.get("failures"), err[-2000:])
    assert doc["check"] is True and doc["changes"] == {}
    assert {h: s["changed"] for h, s in doc["hosts"].items()} == {"srv": 0, "agt1": 0, "agt2": 0}
    assert len(doc["cluster"]["nodes"]) == 3


def test_the_wheel_alone_validates_and_checks_the_lab_from_elsewhere(lab: lablib.LabRecord, tmp_path: Path) -> None:
    """`pip install pik3s-*.whl` into a fresh venv, run outside the checkout with no pik3s or Ansible
    variable and no ansible.cfg: the collection the wheel carries validates the lab's inventory and
    checks the converged cluster (nothing to change), as an operator's own inventory directory would."""
    bindir = fresh_venv(tmp_path / "venv", build_wheel(tmp_path / "dist"))
    inventory = tmp_path / "ops" / "inventory"
    (inventory / "group_vars").mkdir(parents=True)
    shutil.copy(Path(lab.state_dir) / "inventory.yml", inventory / "hosts.yml")  # what `lab up` wrote
    shutil.copy(ROOT / "inventories/lab/group_vars/all.yml", inventory / "group_vars/all.yml")
    kube = Path(lab_inventory(lab)) / ".kube"
    if kube.is_dir():  # the kubeconfig the deploy fetched, beside the inventory as site.yml keeps it
        shutil.copytree(kube, inventory / ".kube")
    env = outside_env(bindir, Path.home())
    run = functools.partial(subprocess.run, cwd=inventory.parent, env=env, capture_output=True, text=True,
                            check=False, timeout=900)
    valid = run(["pik3s", "inventory", "validate", "-i", "inventory"])
    assert valid.returncode == EXIT_OK, valid.stdout + valid.stderr
    res = run(["pik3s", "check", "-i", "inventory", "-e", f"k3s_version={VERSION}", "--output", "json"])
    doc = json.loads(res.stdout)
    assert res.returncode == EXIT_OK, (doc.get("failures"), res.stderr[-2000:])
    assert doc["changes"] == {} and sorted(doc["hosts"]) == ["agt1", "agt2", "srv"]
    assert "pik3s_lab" not in res.stderr and not (inventory.parent / "collections").exists()


def test_status_reads_the_cluster_from_the_server(lab: lablib.LabRecord) -> None:
    # A converged deploy with the lab's own inventory: nothing changes on the hosts, and the kubeconfig
    # is fetched beside that inventory (the first deploy used the vaulted one).
    rc, doc, err = pik3s(lab, "deploy", "-e", f"k3s_version={VERSION}")
    assert rc == EXIT_OK and all(s["changed"] == 0 for h, s in doc["hosts"].items() if h != "srv"), err[-2000:]
    proc = subprocess.run([PIK3S, "status", "-i", lab_inventory(lab)], cwd=ROOT, env=pik3s_env(lab),
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == EXIT_OK, proc.stderr
    rows = [line.split() for line in proc.stdout.splitlines()[1:4]]
    assert proc.stdout.startswith("NODE  ROLES")
    assert sorted((r[0], r[2], r[4]) for r in rows) == [("agt1", "Ready", VERSION), ("agt2", "Ready", VERSION),
                                                        ("srv", "Ready", VERSION)]
    assert "kubeconfig: " in proc.stdout and "(not on this machine)" not in proc.stdout
    rc, doc, _ = pik3s(lab, "status")
    assert rc == EXIT_OK and doc["operation"] == "status" and doc["changes"] == {}
    assert {n["name"] for n in doc["cluster"]["nodes"]} == {"srv", "agt1", "agt2"}


def test_invalid_inventory_refused_without_contacting_a_host(lab: lablib.LabRecord) -> None:
    before = {h: ssh_logins(lab, h) for h in ("srv", "agt1", "agt2")}
    rc, doc, _ = pik3s(lab, "deploy", "-e", "k3s_version=1.31")
    assert rc == EXIT_INVALID and doc["status"] == "invalid" and doc["rc"] is None
    assert doc["problems"] == ["k3s_version '1.31' is not a release name like v1.31.4+k3s1"]
    assert {h: ssh_logins(lab, h) for h in before} == before


def kubectl(lab: lablib.LabRecord, *args: str) -> str:
    return docker("exec", container(lab, "srv"), "k3s", "kubectl", *args).stdout


def deploy_jsonl(lab: lablib.LabRecord, at_play: str, fault: Any) -> tuple[int, list[dict[str, Any]]]:
    """`pik3s deploy --output jsonl`, calling ``fault()`` once when the play ``at_play`` starts."""
    proc = subprocess.Popen([PIK3S, "deploy", "-i", lab_inventory(lab), "--output", "jsonl",
                             "-e", f"k3s_version={VERSION}"], cwd=ROOT, env=pik3s_env(lab),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    lines, done = [], False
    for raw in proc.stdout:
        line = json.loads(raw)
        lines.append(line)
        if not done and line.get("kind") == "play" and line["play"] == at_play:
            fault()
            done = True
    assert done, f"the play {at_play!r} never started"
    return proc.wait(timeout=600), lines


def test_agent_loses_power_mid_deploy_and_a_rerun_finishes_it(lab: lablib.LabRecord) -> None:
    """agt2 is powered off (its container killed) when the agents' play starts: agt2 is reported
    unreachable (exit 6), srv and agt1 finish the run. Powered on again, a plain re-run finishes it; the
    label set on a node before the fault is still there. (agt2's config.yaml was edited first, so that
    the agents' play has work to do on it: a converged agent is not contacted after the first read.)"""
    kubectl(lab, "label", "node", "agt1", "pik3s.test/before-fault=kept")
    kubectl(lab, "taint", "node", "agt2", "pik3s.test/before-fault=kept:PreferNoSchedule")
    sh(lab, "agt2", "echo '# edited by hand' >> /etc/rancher/k3s/config.yaml")
    try:
        rc, lines = deploy_jsonl(lab, "Join the agents", lambda: docker("kill", container(lab, "agt2")))
    finally:
        docker("start", container(lab, "agt2"))
    result = lines[-1]
    assert result["type"] == "result"
    assert rc == EXIT_UNREACHABLE == result["exit_code"], result
    assert result["status"] == "unreachable"
    assert [f["host"] for f in result["failures"]] == ["agt2"] and result["failures"][0]["unreachable"]
    assert result["hosts"]["agt2"]["unreachable"] == 1
    assert all(result["hosts"][h]["failed"] == 0 and result["hosts"][h]["unreachable"] == 0 for h in ("srv", "agt1"))
    gone = next(ev["counter"] for ev in lines if ev.get("kind") == "unreachable")
    agents = next(ev["phase"] for ev in lines if ev.get("kind") == "play" and ev["play"] == "Join the agents")
    later = [ev for ev in lines if ev.get("host") == "agt1" and ev.get("kind") in ("ok", "changed")
             and ev["phase"] == agents and ev["counter"] > gone]
    assert later, "agt1 went on with the agents' play after agt2 was gone"
    assert len(result["cluster"]["nodes"]) == 3  # the report still ran (on srv)
    # Back on: a plain re-run finishes agt2, nothing else to do.
    wait_ssh(lab, "agt2")
    started = time.monotonic()
    rc, doc, err = pik3s(lab, "deploy", "-e", f"k3s_version={VERSION}")
    assert rc == EXIT_OK, (doc.get("failures"), err[-2000:])
    recovered = time.monotonic() - started
    assert doc["hosts"]["agt2"]["changed"] > 0 and doc["hosts"]["srv"]["changed"] == 0
    assert "# edited by hand" not in sh(lab, "agt2", "cat /etc/rancher/k3s/config.yaml")
    assert {n["name"]: n["ready"] for n in doc["cluster"]["nodes"]} == {"srv": True, "agt1": True, "agt2": True}
    # No data lost: the label and the taint set before the fault (in the datastore) are still there.
    nodes = {n["metadata"]["name"]: n for n in json.loads(kubectl(lab, "get", "nodes", "-o", "json"))["items"]}
    assert nodes["agt1"]["metadata"]["labels"]["pik3s.test/before-fault"] == "kept"
    taint = {"key": "pik3s.test/before-fault", "value": "kept", "effect": "PreferNoSchedule"}
    assert taint in nodes["agt2"]["spec"]["taints"]
    record_fault("driver", "an agent loses power mid-deploy", "exit 6, agt2 unreachable, the others converged; "
                 "powered on, a plain re-run finished it", recovered)


def test_ssh_connections_dropped_mid_run_are_retried(lab: lablib.LabRecord) -> None:
    """Every sshd process of agt1 is killed (its sessions and Ansible's persistent connection with it)
    when the agents' play starts, and sshd comes back 3 s later: the run retries the connection and
    succeeds (sshd's new main PID shows the drop happened during the run)."""
    sh(lab, "agt1", "echo '# edited by hand' >> /etc/rancher/k3s/config.yaml")
    sshd_before = sh(lab, "agt1", "systemctl show -p MainPID --value ssh.service").strip()
    rc, lines = deploy_jsonl(lab, "Join the agents", lambda: docker(
        "exec", "-d", container(lab, "agt1"), "sh", "-c",
        "systemctl stop ssh.socket ssh.service; pkill -KILL sshd; sleep 3; systemctl start ssh.service"))
    result = lines[-1]
    assert rc == EXIT_OK, result.get("failures")
    assert result["hosts"]["agt1"]["unreachable"] == 0 and result["hosts"]["agt1"]["changed"] > 0
    assert "# edited by hand" not in sh(lab, "agt1", "cat /etc/rancher/k3s/config.yaml")
    assert sh(lab, "agt1", "systemctl show -p MainPID --value ssh.service").strip() not in ("0", sshd_before)
    record_fault("driver", "every sshd of a host killed mid-run", "retried, exit 0", 0.0)


def test_a_full_disk_stops_that_node_only_and_changes_nothing_there(lab: lablib.LabRecord) -> None:
    """agt2's /var/lib/rancher is a real filesystem filled to the last byte (a 32 MiB tmpfs holding a
    copy of its data): the run fails on agt2 saying the disk is full and where, changes nothing there
    (its hand-edited config.yaml and its binary stay as they were), and converges srv and agt1."""
    sh(lab, "agt2", "echo '# edited by hand' >> /etc/rancher/k3s/config.yaml")
    before = sh(lab, "agt2", "sha256sum /usr/local/bin/k3s /etc/rancher/k3s/config.yaml")
    sh(lab, "agt1", "echo '# edited by hand' >> /etc/rancher/k3s/config.yaml")
    sh(lab, "agt2", "cp -a /var/lib/rancher /run/rancher-copy && mount -t tmpfs -o size=32m tmpfs /var/lib/rancher"
                    " && cp -a /run/rancher-copy/. /var/lib/rancher/ && rm -rf /run/rancher-copy"
                    " && (dd if=/dev/zero of=/var/lib/rancher/filler bs=1M 2>/dev/null;"
                    "     dd if=/dev/zero of=/var/lib/rancher/filler2 bs=1k 2>/dev/null; true)")
    try:
        assert sh(lab, "agt2", "df --output=avail -k /var/lib/rancher | tail -1").strip() == "0"
        rc, doc, err = pik3s(lab, "deploy", "-e", f"k3s_version={VERSION}")
    finally:
        sh(lab, "agt2", "umount -l /var/lib/rancher")
    assert rc == EXIT_HOST_FAILED, (doc.get("failures"), err[-2000:])
    assert [f["host"] for f in doc["failures"]] == ["agt2"]
    assert doc["failures"][0]["message"] == (
        "the disk is full on agt2: /var/lib/rancher/k3s (on the filesystem of /var/lib/rancher) has 0 MiB free of "
        "32 MiB; K3s needs at least 512 MiB there (k3s_min_free_mb). Nothing was changed on this host. Free space "
        "there, then re-run.")
    assert sh(lab, "agt2", "sha256sum /usr/local/bin/k3s /etc/rancher/k3s/config.yaml") == before
    assert doc["hosts"]["agt1"]["failed"] == 0 and doc["hosts"]["agt1"]["changed"] > 0
    assert "# edited by hand" not in sh(lab, "agt1", "cat /etc/rancher/k3s/config.yaml")
    # Space freed (the tmpfs gone): the re-run finishes agt2.
    started = time.monotonic()
    rc, doc, err = pik3s(lab, "deploy", "-e", f"k3s_version={VERSION}")
    assert rc == EXIT_OK, (doc.get("failures"), err[-2000:])
    assert "# edited by hand" not in sh(lab, "agt2", "cat /etc/rancher/k3s/config.yaml")
    record_fault("driver", "/var/lib/rancher full on an agent", "exit 5 on that agent only (\"the disk is full\"), "
                 "nothing changed there, the others converged", time.monotonic() - started, "free space")


def kill_ansible_playbook(root_pid: int) -> list[int]:
    """SIGKILL every ansible-playbook process under ``root_pid`` (the pik3s run), as a controller that
    loses power would stop; returns their pids."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    family, grew = {root_pid}, True
    while grew:
        kids = {pid for pid, ppid in parents.items() if ppid in family} - family
        family |= kids
        grew = bool(kids)
    killed = []
    for pid in sorted(family - {root_pid}):
        try:
            if b"ansible-playbook" in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, 9)
                killed.append(pid)
        except OSError:
            continue
    return killed


def run_and_kill(lab: lablib.LabRecord, args: list[str], host: str) -> None:
    """Run ``pik3s ARGS`` and SIGKILL its ansible-playbook when ``host``'s file write starts."""
    proc = subprocess.Popen([PIK3S, *args, "-i", lab_inventory(lab), "--output", "jsonl"], cwd=ROOT, env=pik3s_env(lab),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    killed: list[int] = []
    for raw in proc.stdout:
        ev = json.loads(raw)
        if (not killed and ev.get("kind") == "start" and ev.get("host") == host
                and "Write the files that differ" in ev.get("task", "")):
            killed = kill_ansible_playbook(proc.pid)
    proc.wait(timeout=300)
    assert killed, f"{host}'s file write never started"
    assert proc.returncode != EXIT_OK


def test_controller_killed_mid_write_leaves_whole_files_and_a_rerun_finishes(lab: lablib.LabRecord) -> None:
    """ansible-playbook is SIGKILLed when agt1's config write starts (a deploy repairing a hand edit):
    its config.yaml is the old one or the new one, whole, and a re-run converges it and leaves no
    temporary file. Then SIGKILLed when srv's binary swap starts (an upgrade to v1.31.4): srv's binary is
    one whole release or the other (it runs), its config.yaml whole; the re-run (test_day2_verbs'
    upgrade) finishes the roll, and no temporary file is left anywhere (checked there)."""
    sh(lab, "agt1", "echo '# edited by hand' >> /etc/rancher/k3s/config.yaml")
    run_and_kill(lab, ["deploy", "-e", f"k3s_version={VERSION}"], "agt1")
    assert yaml.safe_load(sh(lab, "agt1", "cat /etc/rancher/k3s/config.yaml"))["server"].startswith("https://")
    started = time.monotonic()
    rc, doc, err = pik3s(lab, "deploy", "-e", f"k3s_version={VERSION}")
    assert rc == EXIT_OK, (doc.get("failures"), err[-2000:])
    record_fault("driver", "ansible-playbook SIGKILLed at an agent's config write",
                 "config.yaml whole; the re-run converged it, no temporary file left", time.monotonic() - started)
    assert "# edited by hand" not in sh(lab, "agt1", "cat /etc/rancher/k3s/config.yaml")
    listing = sh(lab, "agt1", "ls -a /etc/rancher/k3s")
    assert [n for n in listing.split() if n.startswith(".pik3s-")] == []
    run_and_kill(lab, ["upgrade", "--k3s-version", "v1.31.4+k3s1"], "srv")
    version = sh(lab, "srv", "/usr/local/bin/k3s --version | head -1")
    assert VERSION in version or "v1.31.4+k3s1" in version, version
    config = sh(lab, "srv", "cat /etc/rancher/k3s/config.yaml")
    assert yaml.safe_load(config)["node-name"] == "srv"  # whole: it parses and has its keys


def test_agent_cut_off_during_a_rolling_upgrade_stops_the_roll(lab: lablib.LabRecord) -> None:
    """agt2's network is cut (disconnected from the lab network) when the agents' upgrade starts: the
    roll stops there (exit 6, agt2 unreachable), the API keeps answering (the report reads the cluster
    from srv); with the link back, test_day2_verbs' upgrade finishes the roll."""
    agt2 = next(h for h in lab.hosts if h.name == "agt2")
    proc = subprocess.Popen([PIK3S, "upgrade", "-i", lab_inventory(lab), "--output", "jsonl", "--k3s-version",
                             "v1.31.4+k3s1"], cwd=ROOT, env=pik3s_env(lab), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    cut, lines = False, []
    try:
        for raw in proc.stdout:
            ev = json.loads(raw)
            lines.append(ev)
            if not cut and ev.get("kind") == "play" and ev["play"].startswith("Upgrade the agents"):
                docker("network", "disconnect", lab.network, agt2.container)
                cut = True
        rc = proc.wait(timeout=600)
        result = lines[-1]
        assert cut and rc == EXIT_UNREACHABLE == result["exit_code"], result.get("failures")
        assert [f["host"] for f in result["failures"]] == ["agt2"]
        versions = {n["name"]: n["version"] for n in result["cluster"]["nodes"]}
        assert versions["srv"] == "v1.31.4+k3s1" and versions["agt2"] == VERSION  # the roll stopped at agt2
        assert kubectl(lab, "get", "--raw", "/readyz") == "ok"
    finally:
        if cut:
            docker("network", "connect", "--ip", agt2.ip, lab.network, agt2.container)


def test_day2_verbs(lab: lablib.LabRecord) -> None:
    """upgrade, backup (refused: one server on SQLite), remove, add and reset through the CLI."""
    started = time.monotonic()
    rc, doc, err = pik3s(lab, "upgrade", "--k3s-version", "v1.31.4+k3s1")
    assert rc == EXIT_OK, (doc.get("failures"), err[-2000:])
    assert {n["name"]: n["version"] for n in doc["cluster"]["nodes"]} == dict.fromkeys(("srv", "agt1", "agt2"),
                                                                                        "v1.31.4+k3s1")
    record_fault("driver", "ansible-playbook SIGKILLed at a server's binary swap, then an agent's link cut mid-roll",
                 "binary whole (it runs); the roll stopped at the agent (exit 6), the API answered; one re-run of "
                 "the upgrade finished both and left no temporary file",
                 time.monotonic() - started, "restore the link")
    # After the killed run (test_controller_killed_mid_write_...): no temporary file left anywhere pik3s writes.
    for name in ("srv", "agt1", "agt2"):
        listing = sh(lab, name, "ls -a /usr/local/bin /etc/rancher/k3s /etc/systemd/system")
        assert [n for n in listing.split() if n.startswith(".pik3s-")] == [], name
    rc, doc, _ = pik3s(lab, "backup")
    assert rc == EXIT_HOST_FAILED and doc["failures"][0]["host"] == "srv"
    assert doc["failures"][0]["message"].startswith("srv has no embedded etcd")
    rc, doc, err = pik3s(lab, "remove", "agt2")
    assert rc == EXIT_OK, (doc.get("failures"), err[-2000:])
    assert {n["name"] for n in doc["cluster"]["nodes"]} == {"srv", "agt1"}
    rc, doc, err = pik3s(lab, "add", "agt2", "-e", "k3s_version=v1.31.4+k3s1")
    assert rc == EXIT_OK, (doc.get("failures"), err[-2000:])
    assert doc["limit"] == "agt2" and set(doc["hosts"]) == {"agt2"}
    assert {n["name"]: n["ready"] for n in doc["cluster"]["nodes"]} == {"srv": True, "agt1": True, "agt2": True}
    rc, doc, err = pik3s(lab, "reset", "--yes", "--limit", "agt2")
    assert rc == EXIT_OK and doc["status"] == "successful", (doc.get("failures"), err[-2000:])
    gone = subprocess.run(["docker", "exec", container(lab, "agt2"), "test", "-e", "/usr/local/bin/k3s"], check=False)
    assert gone.returncode == 1


def test_a_dead_agent_is_removed_by_force(lab: lablib.LabRecord, tmp_path: Path) -> None:
    """agt1 dies for good (its container killed): `pik3s remove agt1 --force` deletes its node through
    srv without contacting it and says the host was not cleaned. Its node password went with the node:
    the machine, powered on again with a new node password (as a re-flashed Pi), joins again."""
    docker("kill", container(lab, "agt1"))
    try:
        started = time.monotonic()
        rc, doc, err = pik3s(lab, "remove", "agt1", "--force")
        assert rc == EXIT_OK, (doc.get("failures"), err[-2000:])
        record_fault("driver", "a dead agent that will not return", "removed with --force, not contacted, the "
                     "host named as not cleaned", time.monotonic() - started, "pik3s remove --force")
        assert "agt1" not in {n["name"] for n in doc["cluster"]["nodes"]}
        # Never contacted: its container is dead, so any task on it would have made it unreachable. No task
        # runs for it at all (the controller-side checks and the report run once, on other hosts), so it
        # has no line in the per-host stats, or one of zeros.
        dead = doc["hosts"].get("agt1", {"unreachable": 0, "failed": 0, "changed": 0})
        assert dead["unreachable"] == 0 and dead["failed"] == 0 and dead["changed"] == 0
        assert doc["data"]["pik3s_removed"]["agt1"].startswith(
            "deleted from the cluster without contacting the host (forced); K3s was NOT uninstalled from it")
        rc, doc, _ = pik3s(lab, "remove", "agt1", "--force")  # again: nothing left to delete
        assert rc == EXIT_OK and doc["data"]["pik3s_removed"]["agt1"].startswith("was not in the cluster")
        password = tmp_path / "password"
        password.write_text(os.urandom(16).hex() + "\n")
        docker("cp", str(password), f"{container(lab, 'agt1')}:/etc/rancher/node/password")
    finally:
        docker("start", container(lab, "agt1"))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and "agt1" not in kubectl(lab, "get", "nodes", "-o", "name"):
        time.sleep(2)
    assert "node/agt1" in kubectl(lab, "get", "nodes", "-o", "name")
