"""Ten hosts (1 server + 9 agents, amd64) from one controller through the CLI: deploy, every node
Ready, an idempotent re-run with nothing changed; an agent of a batch that does not become Ready
fails alone, saying why; agents join from an inventory without the servers (an AWX job slice).
Writes the times to $PIK3S_REPORT_DIR/scale-10.json
(the 25- and 50-host runs are scripts/bench-lab's and the benchmarks' job, not CI's)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from pik3s.results import EXIT_HOST_FAILED, EXIT_OK
from pik3s_lab import lab as lablib
from tests.conftest import ROOT
from tests.integration.conftest import lab_inventory, pik3s_env, run_pik3s, running_lab, sh

pytestmark = pytest.mark.lab

PIK3S = str(Path(sys.executable).with_name("pik3s"))
REPORT = Path(os.environ.get("PIK3S_REPORT_DIR", Path.home() / ".cache" / "pik3s" / "reports"))
AGENTS = 9


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[lablib.LabRecord]:
    hosts = [{"name": "srv", "model": "rpi4", "memory": "768m", "groups": ["server"]},
             {"name": "agt", "count": AGENTS, "model": "rpi4", "memory": "384m", "groups": ["agent"]}]
    with running_lab(tmp_path_factory, "ten", hosts) as record:
        yield record


def _pik3s(lab: lablib.LabRecord, *args: str) -> tuple[int, dict[str, Any], str, float]:
    start = time.monotonic()
    rc, doc, err = run_pik3s(lab, *args, timeout=1200)
    return rc, doc, err, time.monotonic() - start


def test_ten_hosts_deploy_then_rerun_with_nothing_changed(lab: lablib.LabRecord) -> None:
    names = {h.name for h in lab.hosts}
    assert len(names) == 10
    rc, doc, err, deploy_s = _pik3s(lab, "deploy")
    assert rc == EXIT_OK, (doc.get("failures"), err[-2000:])
    nodes = {n["name"]: n for n in doc["cluster"]["nodes"]}
    assert set(nodes) == names and all(n["ready"] for n in nodes.values())
    rc, doc, err, rerun_s = _pik3s(lab, "deploy")
    assert rc == EXIT_OK, (doc.get("failures"), err[-2000:])
    assert {h: s["changed"] for h, s in doc["hosts"].items()} == dict.fromkeys(names, 0)
    assert len(doc["cluster"]["nodes"]) == 10 and all(n["ready"] for n in doc["cluster"]["nodes"])
    REPORT.mkdir(parents=True, exist_ok=True)
    (REPORT / "scale-10.json").write_text(json.dumps({"hosts": 10, "deploy_s": round(deploy_s, 1),
                                                      "rerun_s": round(rerun_s, 1)}, indent=1) + "\n")
    print(f"10 hosts: deploy {deploy_s:.1f} s, idempotent re-run {rerun_s:.1f} s")


def test_an_agent_late_in_its_batch_fails_alone_with_the_nodes_and_its_journal(lab: lablib.LabRecord) -> None:
    """The batch's one wait (on the first server) never sees agt-3's node: renamed late-3, it is
    registered by K3s as late-3-<id> (with-node-id). agt-3 fails, with what the cluster and its journal
    say; no other host fails or changes. Back to its name, it joins again."""
    host_vars = Path(lab_inventory(lab)) / "host_vars"
    host_vars.mkdir(exist_ok=True)
    (host_vars / "agt-3.yml").write_text("k3s_node_name: late-3\nk3s_agent_config: {with-node-id: true}\n")
    try:
        rc, doc, err, _ = _pik3s(lab, "deploy", "-e", "k3s_ready_timeout=6")
    finally:
        (host_vars / "agt-3.yml").unlink()
    assert rc == EXIT_HOST_FAILED, (rc, doc.get("failures"), err[-2000:])
    assert [f["host"] for f in doc["failures"]] == ["agt-3"]
    message = doc["failures"][0]["message"]
    assert "late-3 not Ready after 6s." in message and "Nodes as srv sees them" in message, message
    assert re.search(r"late-3-[0-9a-f]{8}: Ready", message), message
    assert "Last lines of k3s-agent on agt-3" in message, message
    assert {h: s["changed"] for h, s in doc["hosts"].items() if h != "agt-3"} == dict.fromkeys(
        {h.name for h in lab.hosts} - {"agt-3"}, 0)
    rc, doc, err, _ = _pik3s(lab, "deploy")
    assert rc == EXIT_OK, (doc.get("failures"), err[-2000:])
    assert {n["name"]: n["ready"] for n in doc["cluster"]["nodes"]}["agt-3"] is True


def _agents_only_inventory(lab: lablib.LabRecord, agents: list[str], path: Path) -> None:
    """A static inventory of ``agents`` only, the server group empty, with the running cluster's
    address and token, as an AWX job slice of agents would be (the lab's connection settings and
    mirror URLs taken from its dynamic inventory)."""
    listing = json.loads(subprocess.run([str(ROOT / "inventories" / "lab" / "hosts"), "--list"], env=pik3s_env(lab),
                                        capture_output=True, text=True, check=True).stdout)
    hostvars = listing["_meta"]["hostvars"]
    cluster_vars: dict[str, Any] = {}
    for group in ("all", "k3s_cluster"):
        cluster_vars.update((listing.get(group) or {}).get("vars") or {})
    cluster_vars.update(yaml.safe_load((ROOT / "inventories" / "lab" / "group_vars" / "all.yml").read_text()))
    srv = next(h for h in lab.hosts if h.name == "srv")
    cluster_vars["k3s_api_endpoint"] = srv.ip
    cluster_vars["k3s_token"] = sh(lab, "srv", "cat /var/lib/rancher/k3s/server/token").strip()
    path.write_text(yaml.safe_dump({"k3s_cluster": {"children": {
        "server": {"hosts": {}}, "agent": {"hosts": {a: hostvars[a] for a in agents}}}, "vars": cluster_vars}}))
    path.chmod(0o600)


def test_agents_join_from_an_inventory_without_the_servers(lab: lablib.LabRecord, tmp_path: Path) -> None:
    """An AWX job slice of agents: agt-8 and agt-9, removed from the cluster, join it again from an
    inventory that holds only them, with k3s_api_endpoint and k3s_token; no server is contacted. The
    whole inventory then sees them Ready and changes nothing."""
    rc, doc, err, _ = _pik3s(lab, "remove", "agt-8", "agt-9")
    assert rc == EXIT_OK, (doc.get("failures"), err[-2000:])
    slice_inventory = tmp_path / "agents.yml"
    _agents_only_inventory(lab, ["agt-8", "agt-9"], slice_inventory)
    srv_logins = sh(lab, "srv", "journalctl -u ssh --no-pager -o cat | grep -c 'Accepted publickey' || true")
    rc, doc, err = run_pik3s(lab, "deploy", inventory=str(slice_inventory))
    assert rc == EXIT_OK, (doc.get("failures"), err[-2000:])
    assert set(doc["hosts"]) == {"agt-8", "agt-9"} and all(s["changed"] > 0 for s in doc["hosts"].values())
    assert doc["cluster"]["nodes"] == [] and "no server in this inventory" in doc["cluster"]["error"]
    assert sh(lab, "srv", "journalctl -u ssh --no-pager -o cat | grep -c 'Accepted publickey' || true") == \
        srv_logins, "the agents' run logged in to the server"
    rc, doc, err, _ = _pik3s(lab, "deploy")
    assert rc == EXIT_OK, (doc.get("failures"), err[-2000:])
    nodes = {n["name"]: n["ready"] for n in doc["cluster"]["nodes"]}
    assert nodes["agt-8"] is True and nodes["agt-9"] is True
    assert {h: s["changed"] for h, s in doc["hosts"].items()} == dict.fromkeys({h.name for h in lab.hosts}, 0)
