"""Ten hosts (1 server + 9 agents, amd64) from one controller through the CLI: deploy, every node
Ready, an idempotent re-run with nothing changed; an agent of a batch that does not become Ready
fails alone, saying why. Writes the times to $PIK3S_REPORT_DIR/scale-10.json
(the 25- and 50-host runs are scripts/bench-lab's and the benchmarks' job, not CI's)."""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pik3s.results import EXIT_HOST_FAILED, EXIT_OK
from pik3s_lab import lab as lablib
from tests.integration.conftest import lab_inventory, run_pik3s, running_lab

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
