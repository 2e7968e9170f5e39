"""Benchmark of what add-ons cost site.yml (run by scripts/bench-addons; see its usage).

On a fresh lab of 3 servers (behind the lab's API load balancer) and 1 agent, deployed without
add-ons, it runs cycles of: a re-run without add-ons, the run that adds them (the headlamp and
dashboard add-ons, a user chart and two manifests: what site.yml adds on a converged cluster), a
re-run with them, the run that removes them again (files moved aside, objects deleted). Cycles
alternate, so both re-runs see the same machine load. Every re-run must change nothing. Prints a
table and writes the figures as JSON to $PIK3S_REPORT_DIR (default
~/.cache/pik3s/reports)/bench-addons.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_deploy import BIN, ROOT, env_for, recap, timed

NAME = "bench-addons"
SPEC = {"name": NAME, "api_lb": True, "vars": {"k3s_api_endpoint": "{{ pik3s_lab_api_lb }}"},
        "hosts": [{"name": f"srv{i}", "arch": "amd64", "model": "rpi4", "memory": "512m", "groups": ["server"]}
                  for i in (1, 2, 3)] + [{"name": "agt1", "arch": "amd64", "model": "rpi3", "memory": "512m",
                                          "groups": ["agent"]}]}
ADDONS = {
    "k3s_addons": ["headlamp", "dashboard"],
    "k3s_addon_overrides": {"headlamp": {"repo": "{{ pik3s_lab_chart_url }}"},
                            "dashboard": {"repo": "{{ pik3s_lab_chart_url }}"}},
    "k3s_helm_charts": [{"name": "hello", "chart": "hello", "repo": "{{ pik3s_lab_chart_url }}", "version": "1.0.0",
                         "namespace": "team", "values": {"replicaCount": 2}}],
    "k3s_server_manifests": [
        {"name": "team", "content": {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}}},
        {"name": "team-settings", "content": {"apiVersion": "v1", "kind": "ConfigMap",
                                              "metadata": {"name": "settings", "namespace": "team"},
                                              "data": {"greeting": "hello"}}}],
}
NONE = {"k3s_addons": [], "k3s_addon_overrides": {}, "k3s_helm_charts": [], "k3s_server_manifests": []}


def run(label: str, extra: dict[str, Any], state: Path, work: Path) -> dict[str, Any]:
    vars_file = work / f"{label}.vars.json"
    vars_file.write_text(json.dumps(extra))
    log, report = work / f"{label}.log", work / f"{label}.cost.json"
    took = timed([str(BIN / "ansible-playbook"), "-i", "inventories/lab", "site.yml", "-e", f"@{vars_file}"], ROOT,
                 env_for(ROOT, state, report), log)
    return {"wall_s": round(took, 1), "recap": recap(log)}


def changed(r: dict[str, Any]) -> int:
    return sum(h["changed"] for h in r["recap"].values())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cycles", type=int, default=3, help="rerun/add/rerun/remove cycles (default 3)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pik3s-bench-addons-"))
    state = work / "lab"
    spec = work / "lab.yml"
    spec.write_text(yaml.safe_dump(SPEC))
    pik3s = str(BIN / "pik3s")
    subprocess.run([pik3s, "lab", "up", "--spec", str(spec), "--state-dir", str(state)], check=True,
                   stdout=subprocess.DEVNULL)
    cycles = []
    try:
        deploy = run("deploy", NONE, state, work)
        for i in range(args.cycles):
            cycle = {"rerun_without": run(f"c{i}-rerun-without", NONE, state, work),
                     "add": run(f"c{i}-add", ADDONS, state, work),
                     "rerun_with": run(f"c{i}-rerun-with", ADDONS, state, work),
                     "remove": run(f"c{i}-remove", NONE, state, work)}
            for key in ("rerun_without", "rerun_with"):
                if changed(cycle[key]):
                    sys.exit(f"{key} of cycle {i} changed something: {cycle[key]['recap']} (see {work})")
            cycles.append(cycle)
    finally:
        subprocess.run([pik3s, "lab", "down", "--name", NAME, "--state-dir", str(state)], check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def median(key: str) -> float:
        return statistics.median(c[key]["wall_s"] for c in cycles)

    doc = {"lab": NAME, "hosts": len(SPEC["hosts"]), "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
           "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                    text=True, check=False).stdout.strip(),
           "deploy_wall_s": deploy["wall_s"], "cycles": cycles,
           "median_s": {k: median(k) for k in ("rerun_without", "add", "rerun_with", "remove")}}
    m = doc["median_s"]
    print(f"fresh deploy (no add-ons): {deploy['wall_s']} s")
    print(f"re-run without add-ons:    {[c['rerun_without']['wall_s'] for c in cycles]} s "
          f"(median {m['rerun_without']})")
    print(f"run adding them:           {[c['add']['wall_s'] for c in cycles]} s (median {m['add']}, "
          f"+{round(m['add'] - m['rerun_without'], 1)} s over a re-run)")
    print(f"re-run with add-ons:       {[c['rerun_with']['wall_s'] for c in cycles]} s (median {m['rerun_with']}, "
          f"+{round(m['rerun_with'] - m['rerun_without'], 1)} s)")
    print(f"run removing them:         {[c['remove']['wall_s'] for c in cycles]} s (median {m['remove']})")
    reports = Path(os.environ.get("PIK3S_REPORT_DIR") or Path.home() / ".cache/pik3s/reports")
    reports.mkdir(parents=True, exist_ok=True)
    (reports / "bench-addons.json").write_text(json.dumps(doc, indent=1) + "\n")
    print(f"figures: {reports / 'bench-addons.json'}")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
