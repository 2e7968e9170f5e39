"""scripts/bench-scale: deploy, re-run, upgrade and reset at growing node counts (see the shell wrapper)."""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from pik3s_lab import lab as lablib
from pik3s_lab import spec as speclib

ROOT = Path(__file__).resolve().parents[1]
PIK3S = str(Path(sys.executable).with_name("pik3s"))
OLD, NEW = "v1.30.8+k3s1", "v1.31.4+k3s1"  # releases the lab mirror serves
STEPS = {
    "deploy": ["deploy", "-e", f"k3s_version={OLD}"],
    "rerun": ["deploy", "-e", f"k3s_version={OLD}"],
    "upgrade": ["upgrade", "--k3s-version", NEW],
    "reset": ["reset", "--yes"],
}


def _tree_rss_kb(root: int) -> int:
    """Resident memory of ``root`` and all its descendants, in KiB (from /proc)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            status = (entry / "status").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
        rss[int(entry.name)] = next((int(line.split()[1]) for line in status.splitlines()
                                     if line.startswith("VmRSS:")), 0)
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo += children.get(pid, [])
    return total


def step(lab: lablib.LabRecord, args: list[str]) -> dict[str, Any]:
    env = {**os.environ, "PIK3S_LAB_STATE_DIR": lab.state_dir, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")}
    before = os.times()
    start = time.monotonic()
    proc = subprocess.Popen([PIK3S, *args, "-i", "inventories/lab", "--output", "jsonl"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.5):
            peak[0] = max(peak[0], _tree_rss_kb(proc.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    phases: list[tuple[str, float]] = []
    result: dict[str, Any] = {}
    assert proc.stdout is not None
    for line in proc.stdout:
        doc = json.loads(line)
        if doc.get("type") == "event" and doc.get("kind") == "play":
            phases.append((doc["play"], time.monotonic() - start))
        elif doc.get("type") == "result":
            result = doc
    proc.wait()
    done.set()
    sampler.join()
    wall = time.monotonic() - start
    after = os.times()
    marks = [*phases, ("end", wall)]
    per_phase: dict[str, float] = {}
    for (name, t0), (_next, t1) in itertools.pairwise(marks):
        per_phase[name] = round(per_phase.get(name, 0) + t1 - t0, 1)
    if proc.returncode != 0:
        why = result.get("failures") or (proc.stderr.read()[-2000:] if proc.stderr else "")
        raise SystemExit(f"pik3s {' '.join(args)} failed (exit {proc.returncode}): {why}")
    return {"wall_s": round(wall, 1),
            "controller_cpu_s": round((after.children_user - before.children_user)
                                      + (after.children_system - before.children_system), 1),
            "peak_rss_mb": round(peak[0] / 1024, 1),
            "changed": sum(h["changed"] for h in result.get("hosts", {}).values()),
            "phases_s": per_phase}


def one_size(hosts: int, steps: list[str]) -> dict[str, Any]:
    name = f"scale{hosts}"
    lab_spec = speclib.parse_spec({"name": name, "hosts": [
        {"name": "srv", "memory": "1g", "groups": ["server"]},
        {"name": "agt", "count": hosts - 1, "memory": "384m", "groups": ["agent"]}]}, "bench")
    state = Path(tempfile.mkdtemp(prefix=f"pik3s-benchscale-{hosts}-"))
    out: dict[str, Any] = {"hosts": hosts}
    try:
        record = lablib.up(lab_spec, state)
        for s in steps:
            out[s] = step(record, STEPS[s])
            print(f"{hosts:>3} hosts {s:>8}: {out[s]['wall_s']:>6} s wall, {out[s]['controller_cpu_s']:>6} s CPU, "
                  f"peak {out[s]['peak_rss_mb']:>7} MB, {out[s]['changed']} changed", flush=True)
    finally:
        lablib.down(name, state)
    return out


def plot(runs: list[dict[str, Any]], steps: list[str], path: Path) -> bool:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(7, 4.5))
    xs = [r["hosts"] for r in runs]
    for s in steps:
        ax.plot(xs, [r[s]["wall_s"] for r in runs], marker="o", label=s)
    ax.set_xlabel("nodes (amd64 lab hosts)")
    ax.set_ylabel("wall time (s)")
    ax.set_title("pik3s: time against node count")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def main() -> int:
    ap = argparse.ArgumentParser(prog="scripts/bench-scale")
    ap.add_argument("--hosts", default="5,10,25,50")
    ap.add_argument("--steps", default="deploy,rerun,upgrade,reset")
    args = ap.parse_args()
    steps = args.steps.split(",")
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        raise SystemExit(f"unknown step(s) {', '.join(unknown)} (of {', '.join(STEPS)})")
    runs = [one_size(int(n), steps) for n in args.hosts.split(",")]
    print(f"\n{'nodes':>5} " + " ".join(f"{s + ' s':>10} {'CPU s':>6} {'MB':>6}" for s in steps))
    for r in runs:
        print(f"{r['hosts']:>5} " + " ".join(f"{r[s]['wall_s']:>10} {r[s]['controller_cpu_s']:>6} "
                                              f"{r[s]['peak_rss_mb']:>6.0f}" for s in steps))
    reports = Path(os.environ.get("PIK3S_REPORT_DIR") or Path.home() / ".cache/pik3s/reports")
    reports.mkdir(parents=True, exist_ok=True)
    out = reports / "bench-scale.json"
    out.write_text(json.dumps({"runs": runs}, indent=1) + "\n")
    print(f"figures: {out}")
    if plot(runs, steps, reports / "bench-scale.png"):
        print(f"plot: {reports / 'bench-scale.png'}")
    else:
        print("plot: skipped (pip install 'pik3s[bench]' for matplotlib)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
