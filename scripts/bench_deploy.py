"""Benchmark of site.yml on a lab (run by scripts/bench-deploy; see its usage).

For each checkout benchmarked (this one, and with --compare REF also a git
worktree of REF, run alternately so that both see the same machine load):
bring up a fresh lab from the spec, deploy with site.yml (wall time), re-run
it --reruns times (idempotent: must change nothing), and measure three
`ansible k3s_cluster -b -m ansible.builtin.ping` rounds right before the
re-runs, back to back, to state the re-run as a ratio to a ping round. Every
run counts tasks, module invocations, remote commands and file transfers per
host with the pik3s_cost callback (tests/callback_plugins). Prints a table and
writes everything as JSON to $PIK3S_REPORT_DIR (default
~/.cache/pik3s/reports)/bench-deploy-<lab>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SPECS = {"default": ROOT / "molecule/default/lab.yml", "seed": ROOT / "lab/src/pik3s_lab/data/seed-lab.yml"}


def env_for(checkout: Path, state: Path, report: Path | None = None, mitogen: str = "") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    if mitogen:  # Mitogen for Ansible's strategy (optional, never required by pik3s)
        env.update(ANSIBLE_STRATEGY_PLUGINS=str(Path(mitogen) / "ansible_mitogen/plugins/strategy"),
                   ANSIBLE_STRATEGY="mitogen_linear")
    env.update(ANSIBLE_CONFIG=str(checkout / "ansible.cfg"), ANSIBLE_FORCE_COLOR="0", PIK3S_LAB_STATE_DIR=str(state),
               PATH=f"{BIN}:{env.get('PATH', '')}",
               ANSIBLE_CALLBACK_PLUGINS=str(ROOT / "tests/callback_plugins"), ANSIBLE_CALLBACKS_ENABLED="pik3s_cost")
    if report:
        env["PIK3S_COST_REPORT"] = str(report)
    return env


def timed(argv: list[str], cwd: Path, env: dict[str, str], log: Path) -> float:
    start = time.monotonic()
    with log.open("w") as out:
        proc = subprocess.run(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, check=False)
    took = time.monotonic() - start
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(argv)} in {cwd}; see {log}\n" + log.read_text()[-3000:])
    return took


def recap(log: Path) -> dict[str, dict[str, int]]:
    out = {}
    for m in re.finditer(r"^(\S+)\s+: ((?:\w+=\d+\s*)+)$", log.read_text(), re.M):
        out[m.group(1)] = {k: int(v) for k, v in (kv.split("=") for kv in m.group(2).split())}
    return out


def playbook_run(name: str, checkout: Path, state: Path, work: Path, mitogen: str = "") -> dict[str, Any]:
    report = work / f"{name}.cost.json"
    log = work / f"{name}.log"
    took = timed([str(BIN / "ansible-playbook"), "-i", "inventories/lab", "site.yml"], checkout,
                 env_for(checkout, state, report, mitogen), log)
    cost = json.loads(report.read_text())
    return {"wall_s": round(took, 1), "recap": recap(log), "per_host": cost}


def ping_round(checkout: Path, state: Path, work: Path) -> float:
    return timed([str(BIN / "ansible"), "-i", "inventories/lab", "k3s_cluster", "-b", "-m", "ansible.builtin.ping"],
                 checkout, env_for(checkout, state), work / "ping.log")


def bench_one(label: str, checkout: Path, spec: Path, reruns: int, work: Path, mitogen: str = "") -> dict[str, Any]:
    name = yaml.safe_load(spec.read_text())["name"]
    state = work / f"lab-{label}"
    shutil.rmtree(state, ignore_errors=True)
    pik3s = str(BIN / "pik3s")
    subprocess.run([pik3s, "lab", "up", "--spec", str(spec), "--state-dir", str(state)], check=True,
                   stdout=subprocess.DEVNULL)
    try:
        deploy = playbook_run(f"{label}-deploy", checkout, state, work, mitogen)
        pings = [round(ping_round(checkout, state, work), 2) for _round in range(3)]
        runs = [playbook_run(f"{label}-rerun{i}", checkout, state, work, mitogen) for i in range(reruns)]
    finally:
        subprocess.run([pik3s, "lab", "down", "--name", name, "--state-dir", str(state)], check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    changed = {h: r["changed"] for run in runs for h, r in run["recap"].items() if r["changed"]}
    rerun_wall = statistics.median(r["wall_s"] for r in runs)
    ping = statistics.median(pings)
    return {"label": label, "checkout": str(checkout), "deploy": deploy, "ping_rounds_s": pings, "reruns": runs,
            "rerun_wall_s": rerun_wall, "rerun_to_ping": round(rerun_wall / ping, 1),
            "rerun_changed": changed,
            "rerun_modules_max": max((c["modules"] for r in runs for h, c in r["per_host"].items()
                                      if h != "localhost"), default=0)}


def show(result: dict[str, Any]) -> None:
    d = result["deploy"]
    print(f"== {result['label']} ({result['checkout']})")
    print(f"  fresh deploy: {d['wall_s']} s; re-runs: {[r['wall_s'] for r in result['reruns']]} s "
          f"(median {result['rerun_wall_s']} s); ping rounds {result['ping_rounds_s']} s; "
          f"re-run / ping = {result['rerun_to_ping']}; re-run changes: {result['rerun_changed'] or 'none'}")
    last = result["reruns"][-1]["per_host"] if result["reruns"] else {}
    if result["label"].endswith("+mitogen"):
        print("  (module invocations are not counted under Mitogen, which runs modules its own way)")
    print(f"  {'host':<12} {'deploy tasks':>12} {'modules':>8} | {'re-run tasks':>12} {'modules':>8} "
          f"{'commands':>8} {'transfers':>9}")
    for host in sorted(set(d["per_host"]) | set(last)):
        a, b = d["per_host"].get(host, {}), last.get(host, {})
        print(f"  {host:<12} {a.get('tasks', 0):>12} {a.get('modules', 0):>8} | {b.get('tasks', 0):>12} "
              f"{b.get('modules', 0):>8} {b.get('commands', 0):>8} {b.get('transfers', 0):>9}")


def main() -> int:
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    ap = argparse.ArgumentParser(prog="scripts/bench-deploy", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spec", default="default", help="lab spec file, or 'default' (Molecule default topology, "
                    "the default) or 'seed' (the seed lab: 3 x Pi 4 arm64 + 2 x Pi 3 armhf, all emulated)")
    ap.add_argument("--reruns", type=int, default=3, help="idempotent re-runs after each deploy (default 3)")
    ap.add_argument("--rounds", type=int, default=1, help="fresh labs per checkout (default 1)")
    ap.add_argument("--compare", metavar="REF", help="also benchmark this git ref (a temporary worktree), "
                    "alternating with this checkout: REF first in each round")
    ap.add_argument("--mitogen", metavar="DIR", help="also benchmark this checkout with Mitogen for Ansible's "
                    "mitogen_linear strategy, from DIR (holding ansible_mitogen/, e.g. an unpacked mitogen wheel), "
                    "alternating with the plain runs")
    args = ap.parse_args()
    spec = SPECS.get(args.spec, Path(args.spec)).resolve()
    name = yaml.safe_load(spec.read_text())["name"]
    reports = Path(os.environ.get("PIK3S_REPORT_DIR") or Path.home() / ".cache/pik3s/reports")
    reports.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="pik3s-bench-"))
    checkouts = [("this", ROOT, "")]
    if args.mitogen:
        checkouts.append(("this+mitogen", ROOT, str(Path(args.mitogen).resolve())))
    worktree = None
    if args.compare:
        worktree = work / "compare"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(worktree), args.compare],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        checkouts.insert(0, (args.compare, worktree, ""))
    results = []
    try:
        for rnd in range(args.rounds):
            for label, checkout, mitogen in checkouts:
                result = bench_one(label, checkout, spec, args.reruns, work, mitogen)
                result["round"] = rnd + 1
                show(result)
                results.append(result)
    finally:
        if worktree:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(worktree)], check=False)
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, check=False).stdout.strip()
    summary = {}
    for label, _checkout, _mitogen in checkouts:
        mine = [r for r in results if r["label"] == label]
        summary[label] = {"deploy_wall_s_median": round(statistics.median(r["deploy"]["wall_s"] for r in mine), 1),
                          "rerun_wall_s_median": round(statistics.median(r["rerun_wall_s"] for r in mine), 1),
                          "rerun_to_ping_median": round(statistics.median(r["rerun_to_ping"] for r in mine), 1),
                          "rerun_modules_per_host_max": max(r["rerun_modules_max"] for r in mine)}
    doc = {"lab": name, "spec": str(spec), "commit": commit, "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
           "machine": {"cpus": os.cpu_count(), "load_avg_at_end": os.getloadavg()},
           "summary": summary, "runs": results}
    out = reports / f"bench-deploy-{name}.json"
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print("summary:", json.dumps(summary))
    print(f"figures: {out}")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
