"""The pik3s CLI on a 3-host lab (1 server + 2 agents, amd64): deploy --output json, check with zero
changes, a bad inventory refused without any SSH connection, a host made unreachable mid-run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from pik3s.lab import lab as lablib
from pik3s.results import EXIT_HOST_FAILED, EXIT_INVALID, EXIT_OK, EXIT_UNREACHABLE
from tests.conftest import ROOT, ansible_env
from tests.integration.conftest import host, running_lab

pytestmark = pytest.mark.lab

PIK3S = str(Path(sys.executable).with_name("pik3s"))
SCHEMA = json.loads((resources.files("pik3s") / "data" / "result.schema.json").read_text())
VERSION = "v1.30.8+k3s1"  # pinned, not the channel's newest: the report must show what was asked for


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[lablib.LabRecord]:
    with running_lab(tmp_path_factory, "drv", [host("srv", "server"), host("agt1", "agent"),
                                                  host("agt2", "agent", model="generic")]) as record:
        yield record


def _env(lab: lablib.LabRecord) -> dict[str, str]:
    return {**ansible_env(), "PIK3S_LAB_STATE_DIR": lab.state_dir,
            "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}


def pik3s(lab: lablib.LabRecord, *args: str) -> tuple[int, dict[str, Any], str]:
    proc = subprocess.run([PIK3S, *args, "-i", "inventories/lab", "--output", "json"], cwd=ROOT, env=_env(lab),
                          capture_output=True, text=True, timeout=900, check=False)
    doc = json.loads(proc.stdout) if proc.stdout.strip() else {}
    return proc.returncode, doc, proc.stderr


def container(lab: lablib.LabRecord, host: str) -> str:
    return next(h.container for h in lab.hosts if h.name == host)


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
    proc = subprocess.run([PIK3S, "deploy", "-i", str(inv), "--vault-password-file", str(secret), "--output", "json",
                           "-e", f"k3s_version={VERSION}"], cwd=ROOT, env=_env(lab), capture_output=True, text=True,
                          timeout=900, check=False)
    rc, doc, err = proc.returncode, json.loads(proc.stdout) if proc.stdout.strip() else {}, proc.stderr
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


def test_status_reads_the_cluster_from_the_server(lab: lablib.LabRecord) -> None:
    proc = subprocess.run([PIK3S, "status", "-i", "inventories/lab"], cwd=ROOT, env=_env(lab), capture_output=True,
                          text=True, timeout=300, check=False)
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


def test_host_unreachable_mid_run(lab: lablib.LabRecord) -> None:
    """agt2's sshd goes away when the agents' play starts: agt2 is reported unreachable (exit 6), srv and
    agt1 finish the run. (Its config.yaml was edited first, so that the agents' play has work to do on it:
    a converged agent is not contacted after the first play's read.)"""
    subprocess.run(["docker", "exec", container(lab, "agt2"), "sh", "-c",
                    "echo '# edited by hand' >> /etc/rancher/k3s/config.yaml"], check=True)
    proc = subprocess.Popen([PIK3S, "deploy", "-i", "inventories/lab", "--output", "jsonl",
                             "-e", f"k3s_version={VERSION}"], cwd=ROOT, env=_env(lab),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    cut = False
    lines = []
    try:
        for raw in proc.stdout:
            line = json.loads(raw)
            lines.append(line)
            if not cut and line.get("kind") == "play" and line["play"] == "Join the agents":
                subprocess.run(["docker", "exec", container(lab, "agt2"), "sh", "-c",
                                "systemctl stop ssh.socket ssh.service; pkill -KILL sshd || true"], check=True)
                cut = True
        rc = proc.wait(timeout=600)
    finally:
        subprocess.run(["docker", "exec", container(lab, "agt2"), "systemctl", "start", "ssh.service"], check=False)
    result = lines[-1]
    assert cut and result["type"] == "result"
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


def test_day2_verbs(lab: lablib.LabRecord) -> None:
    """upgrade, backup (refused: one server on SQLite), remove, add and reset through the CLI."""
    rc, doc, err = pik3s(lab, "upgrade", "--k3s-version", "v1.31.4+k3s1")
    assert rc == EXIT_OK, (doc.get("failures"), err[-2000:])
    assert {n["name"]: n["version"] for n in doc["cluster"]["nodes"]} == dict.fromkeys(("srv", "agt1", "agt2"),
                                                                                        "v1.31.4+k3s1")
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
