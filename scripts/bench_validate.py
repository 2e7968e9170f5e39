"""scripts/bench-validate: how long the offline inventory check takes for N hosts (see the shell wrapper)."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "K10" + "ab" * 32 + "::server:" + "bench-token-0123456789"


def inventory(path: Path, hosts: int) -> Path:
    """N hosts with addresses, node names and a per-host agent config, cluster settings in group vars."""
    names = [f"pi-{i:03d}" for i in range(hosts)]

    def addr(i: int) -> str:
        return f"10.20.{i // 250}.{i % 250 + 1}"

    inv = {"k3s_cluster": {
        "children": {
            "server": {"hosts": {n: {"ansible_host": addr(i)} for i, n in enumerate(names[:3])}},
            "agent": {"hosts": {n: {"ansible_host": addr(i),
                                    "k3s_agent_config": {"node-label": [f"rack={i % 10}"]}}
                                for i, n in enumerate(names[3:], start=3)}}},
        "vars": {"k3s_version": "v1.31.4+k3s1", "k3s_token": TOKEN, "k3s_api_endpoint": "k3s-api.lab.example",
                 "k3s_cluster_config": {"cluster-cidr": "10.42.0.0/16"}, "ansible_user": "pi"}}}
    path.write_text(yaml.safe_dump(inv))
    return path


def validate(checkout: Path, inv: Path) -> tuple[float, int]:
    env = {**os.environ, "PYTHONPATH": str(checkout / "src"), "PIK3S_COLLECTIONS_PATH": str(checkout / "collections")}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pik3s.cli", "inventory", "validate", "-i", str(inv), "-o", "json"],
                          capture_output=True, text=True, env=env, check=False)
    return time.perf_counter() - start, proc.returncode


def main() -> int:
    ap = argparse.ArgumentParser(prog="scripts/bench-validate")
    ap.add_argument("--hosts", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--compare", metavar="REF")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pik3s-benchval-"))
    inv = inventory(work / "hosts.yml", args.hosts)
    checkouts = {"this": ROOT}
    if args.compare:
        ref = work / "ref"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(ref), args.compare],
                       check=True)
        checkouts = {args.compare: ref, "this": ROOT}
    times: dict[str, list[float]] = {k: [] for k in checkouts}
    codes: dict[str, int] = {}
    try:
        for _ in range(args.rounds):
            for label, checkout in checkouts.items():
                seconds, rc = validate(checkout, inv)
                times[label].append(seconds)
                codes[label] = rc
    finally:
        if args.compare:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(work / "ref")], check=False)
    result = {"hosts": args.hosts, "rounds": args.rounds,
              "runs": {k: {"median_s": round(statistics.median(v), 3), "min_s": round(min(v), 3),
                           "exit_code": codes[k], "seconds": [round(t, 3) for t in v]} for k, v in times.items()}}
    for label, run in result["runs"].items():
        print(f"{label:>10}: {args.hosts} hosts validated in {run['median_s']} s (median of {args.rounds}, "
              f"min {run['min_s']} s), exit {run['exit_code']}")
    reports = Path(os.environ.get("PIK3S_REPORT_DIR") or Path.home() / ".cache/pik3s/reports")
    reports.mkdir(parents=True, exist_ok=True)
    out = reports / "bench-validate.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"figures: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
