"""Ten hosts (1 server + 9 agents, amd64) from one controller through the CLI: deploy, every node
Ready, an idempotent re-run with nothing changed. Writes the times to $PIK3S_REPORT_DIR/scale-10.json
(the 25- and 50-host runs are scripts/bench-lab's and the benchmarks' job, not CI's)."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pik3s.results import EXIT_OK
from pik3s_lab import lab as lablib
from tests.integration.conftest import run_pik3s, running_lab

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
