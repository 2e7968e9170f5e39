"""Faults of an HA cluster (3 servers on embedded etcd + 1 agent, amd64), really injected: a joining
server powered off mid-join and its datastore lost, a restore on three servers, and the first server
lost for good (another one becomes first, the dead one is removed, a fresh machine takes its name).
No data lost: node labels and the backup's objects are checked after each."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from pik3s.results import EXIT_OK, EXIT_UNREACHABLE
from pik3s_lab import lab as lablib
from tests.conftest import ROOT
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

SERVERS = ("srv1", "srv2", "srv3")
BACKUPS: list[Path] = []  # the backups taken, checked still whole after the later faults


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[lablib.LabRecord]:
    with running_lab(tmp_path_factory, "fha", [host("srv1", "server"), host("srv2", "server"),
                                                  host("srv3", "server"), host("agt1", "agent")]) as record:
        yield record


def kubectl(lab: lablib.LabRecord, on: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return docker("exec", container(lab, on), "k3s", "kubectl", *args, check=check)


def nodes(lab: lablib.LabRecord, on: str) -> dict[str, dict[str, Any]]:
    items = json.loads(kubectl(lab, on, "get", "nodes", "-o", "json").stdout)["items"]
    return {n["metadata"]["name"]: n for n in items}


def ready(node: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"]["conditions"])


def members(lab: lablib.LabRecord, on: str) -> set[str]:
    """The etcd members as the simulator's datastore on ``on`` has them (test equipment's own file)."""
    state = json.loads(sh(lab, on, "cat /var/lib/rancher/k3s/server/db/etcd/state.json"))
    return set(state["members"])


def wait_all_ready(lab: lablib.LabRecord, on: str, names: set[str], timeout: float = 180) -> dict[str, Any]:
    deadline, seen = time.monotonic() + timeout, {}
    while time.monotonic() < deadline:
        try:
            seen = nodes(lab, on)
        except subprocess.CalledProcessError:
            seen = {}
        if set(seen) == names and all(ready(n) for n in seen.values()):
            return seen
        time.sleep(2)
    raise AssertionError(f"not all Ready on {on}: { {k: ready(v) for k, v in seen.items()} }")


def test_deploy_without_srv3(lab: lablib.LabRecord) -> None:
    rc, doc, err = pik3s(lab, "deploy", "--limit", "srv1,srv2,agt1")
    assert rc == EXIT_OK, (doc.get("failures"), err[-2000:])
    wait_all_ready(lab, "srv1", {"srv1", "srv2", "agt1"})
    kubectl(lab, "srv1", "label", "node", "agt1", "pik3s.test/kept=yes")


def test_a_server_powered_off_mid_join_then_joined_by_a_rerun(lab: lablib.LabRecord) -> None:
    """srv3 is powered off once its node has registered (its join half done): the run reports it
    unreachable, the cluster keeps quorum and answers. Powered on with its datastore lost (the SD card
    kept nothing), a re-run finds the cluster still counting it as an etcd member, deletes its node
    (which removes the member), says so, and joins it: three members, no stale one, every node Ready."""
    killed = threading.Event()

    def watch() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not killed.is_set():
            if kubectl(lab, "srv1", "get", "node", "srv3", "-o", "name", check=False).returncode == 0:
                docker("kill", container(lab, "srv3"))
                killed.set()
                return
            time.sleep(0.3)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    rc, doc, err = pik3s(lab, "add", "srv3")
    watcher.join(timeout=10)
    assert killed.is_set(), "srv3's node never registered"
    assert rc == EXIT_UNREACHABLE, (rc, doc.get("failures"), err[-2000:])
    assert [f["host"] for f in doc["failures"]] == ["srv3"]
    assert kubectl(lab, "srv1", "get", "--raw", "/readyz").stdout == "ok"  # quorum: 2 of 3 members
    assert members(lab, "srv1") == set(SERVERS)  # srv3 was added before it died
    docker("start", container(lab, "srv3"))
    wait_ssh(lab, "srv3")
    sh(lab, "srv3", "systemctl stop k3s; rm -rf /var/lib/rancher/k3s/server/db")
    started = time.monotonic()
    proc = subprocess.run([PIK3S, "add", "srv3", "-i", lab_inventory(lab), "--output", "jsonl"], cwd=ROOT,
                          env=pik3s_env(lab), capture_output=True, text=True, timeout=900, check=False)
    recovered = time.monotonic() - started
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    assert proc.returncode == EXIT_OK, (events[-1].get("failures"), proc.stderr[-2000:])
    said = [e["message"] for e in events if e.get("host") == "srv3" and "has no datastore" in e.get("message", "")]
    assert said and said[0].startswith("srv3 has no datastore, yet the cluster still had its node as an etcd "
                                       "server"), said
    seen = wait_all_ready(lab, "srv1", {"srv1", "srv2", "srv3", "agt1"})
    assert members(lab, "srv1") == set(SERVERS)
    assert seen["agt1"]["metadata"]["labels"]["pik3s.test/kept"] == "yes"
    record_fault("ha", "a joining server powered off mid-join, its datastore lost",
                 "quorum kept, API answered; the re-run deleted its stale node (member), said so, joined it",
                 recovered)


def test_restore_on_three_servers(lab: lablib.LabRecord, tmp_path: Path) -> None:
    """backup, then a label removed and an object created after it; restore: the snapshot on srv1, the
    other two servers' datastores moved aside and rejoined, every node back and Ready, the label back,
    the later object gone, three members."""
    kubectl(lab, "srv1", "label", "node", "srv2", "pik3s.test/before-backup=yes")
    rc, doc, err = pik3s(lab, "backup", "-e", f"k3s_backup_dir={tmp_path / 'backups'}")  # not into the checkout
    assert rc == EXIT_OK, (doc.get("failures"), err[-2000:])
    backup = doc["data"]["pik3s_backup"]["path"]
    BACKUPS.append(Path(backup))
    kubectl(lab, "srv1", "label", "node", "srv2", "pik3s.test/before-backup-")
    sh(lab, "srv1", "printf 'apiVersion: v1\\nkind: Namespace\\nmetadata:\\n  name: after-backup\\n' > /root/ns.yaml"
                    " && k3s kubectl apply -f /root/ns.yaml")
    assert kubectl(lab, "srv1", "get", "namespace", "after-backup", "-o", "name").stdout.strip() == \
        "namespace/after-backup"
    started = time.monotonic()
    rc, doc, err = pik3s(lab, "restore", backup)
    assert rc == EXIT_OK, (doc.get("failures"), err[-2000:])
    record_fault("ha", "restore with three servers", "every node back, three members, the later object gone",
                 time.monotonic() - started, "pik3s restore BACKUP", "what changed after the backup (by design)")
    seen = wait_all_ready(lab, "srv1", {"srv1", "srv2", "srv3", "agt1"})
    assert seen["srv2"]["metadata"]["labels"].get("pik3s.test/before-backup") == "yes"
    assert seen["agt1"]["metadata"]["labels"]["pik3s.test/kept"] == "yes"
    assert members(lab, "srv1") == set(SERVERS)
    for name in ("srv2", "srv3"):
        moved = sh(lab, name, "ls /var/lib/rancher/k3s/server").split()
        assert any(m.startswith("db.before-restore-") for m in moved), (name, moved)
    assert kubectl(lab, "srv3", "get", "--raw", "/readyz").stdout == "ok"
    gone = kubectl(lab, "srv1", "get", "namespace", "after-backup", check=False)
    assert gone.returncode == 1 and "NotFound" in gone.stderr  # made after the backup: not in the snapshot


def reordered_inventory(lab: lablib.LabRecord, tmp_path: Path, servers: list[str]) -> str:
    """The lab's inventory with the server group in ``servers`` order (the first is the one the
    playbooks treat as first), as an operator would edit it."""
    inv = yaml.safe_load((Path(lab.state_dir) / "inventory.yml").read_text())
    group = inv["all"]["children"]["k3s_cluster"]["children"]["server"]
    group["hosts"] = {name: None for name in servers}
    d = tmp_path / "inventory"
    (d / "group_vars").mkdir(parents=True)
    (d / "hosts.yml").write_text(yaml.safe_dump(inv, sort_keys=False))
    (d / "group_vars" / "all.yml").symlink_to(ROOT / "inventories/lab/group_vars/all.yml")
    return str(d)


def test_losing_the_first_server_for_good(lab: lablib.LabRecord, tmp_path: Path) -> None:
    """srv1, the first server, dies for good. The operator puts srv2 first in the inventory, removes srv1
    by force (its node and etcd member go; the API keeps answering on srv2 and srv3), then a fresh
    machine takes the name srv1 (here: the old one, powered on and reset) and a deploy joins it as the
    third server. Every node Ready, three members, the labels kept."""
    docker("kill", container(lab, "srv1"))
    started = time.monotonic()
    inv = reordered_inventory(lab, tmp_path, ["srv2", "srv3", "srv1"])
    rc, doc, err = pik3s(lab, "remove", "srv1", "--force", inventory=inv)
    assert rc == EXIT_OK, (doc.get("failures"), err[-2000:])
    assert "K3s was NOT uninstalled" in doc["data"]["pik3s_removed"]["srv1"]
    assert {n["name"] for n in doc["cluster"]["nodes"]} == {"srv2", "srv3", "agt1"}
    assert members(lab, "srv2") == {"srv2", "srv3"}
    assert kubectl(lab, "srv2", "get", "--raw", "/readyz").stdout == "ok"
    docker("start", container(lab, "srv1"))
    wait_ssh(lab, "srv1")
    rc, doc, err = pik3s(lab, "reset", "--yes", "--limit", "srv1", inventory=inv)  # the fresh machine
    assert rc == EXIT_OK, (doc.get("failures"), err[-2000:])
    rc, doc, err = pik3s(lab, "deploy", inventory=inv)
    assert rc == EXIT_OK, (doc.get("failures"), err[-2000:])
    seen = wait_all_ready(lab, "srv2", {"srv1", "srv2", "srv3", "agt1"})
    assert members(lab, "srv2") == set(SERVERS)
    assert doc["cluster"]["read_from"] == "srv2"
    assert seen["agt1"]["metadata"]["labels"]["pik3s.test/kept"] == "yes"
    assert seen["srv2"]["metadata"]["labels"].get("pik3s.test/before-backup") == "yes"
    recovered = time.monotonic() - started
    for backup in BACKUPS:  # no backup lost to the faults
        assert sorted(f.name for f in backup.iterdir()) == ["config.yaml", "nodes.json", "snapshot", "token"]
    rc, doc, err = pik3s(lab, "check", inventory=inv)
    assert rc == EXIT_OK and doc["changes"] == {}, (doc.get("changes"), err[-2000:])
    record_fault("ha", "the first server lost for good", "another put first, the dead one removed by force, a "
                 "fresh machine of its name joined as a server", recovered,
                 "reorder the server group; pik3s remove --force; reset the new machine; pik3s deploy")
