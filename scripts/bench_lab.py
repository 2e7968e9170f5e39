"""scripts/bench-lab: lab up time and idle memory per host for N-host labs (see the shell wrapper)."""

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

from pik3s.lab import lab as lablib
from pik3s.lab import spec as speclib


def _memory_mb(container: str) -> float:
    """A container's memory use as Docker counts it (cgroup memory without the page cache), in MB."""
    out = subprocess.run(["docker", "stats", "--no-stream", "--format", "{{.MemUsage}}", container],
                         capture_output=True, text=True, check=True).stdout.split("/")[0].strip()
    number, unit = float(out[:-3]), out[-3:]
    return number * {"KiB": 1 / 1024, "MiB": 1.0, "GiB": 1024.0}[unit]


def one(hosts: int, memory: str, settle: float) -> dict[str, object]:
    name = f"bench{hosts}"
    lab_spec = speclib.parse_spec({"name": name, "hosts": [
        {"name": "srv", "groups": ["server"], "memory": "1g"},
        {"name": "pi", "count": hosts - 1, "memory": memory, "groups": ["agent"]}]}, "bench")
    state = Path(tempfile.mkdtemp(prefix=f"pik3s-benchlab-{hosts}-"))
    start = time.perf_counter()
    try:
        record = lablib.up(lab_spec, state)
        up_s = time.perf_counter() - start
        time.sleep(settle)
        per_host = [_memory_mb(h.container) for h in record.hosts]
    finally:
        lablib.down(name, state)
    result: dict[str, object] = {
        "hosts": hosts, "memory_limit": memory, "up_s": round(up_s, 1),
        "idle_mb_median": round(statistics.median(per_host), 1), "idle_mb_max": round(max(per_host), 1),
        "idle_mb_total": round(sum(per_host), 1)}
    print(f"{hosts:>3} hosts: lab up {result['up_s']} s; idle memory per host median {result['idle_mb_median']} MB "
          f"(max {result['idle_mb_max']}), all hosts {result['idle_mb_total']} MB", flush=True)
    return result


def main() -> int:
    ap = argparse.ArgumentParser(prog="scripts/bench-lab")
    ap.add_argument("--hosts", default="10,25,50")
    ap.add_argument("--memory", default="384m", help="each agent host's memory limit (default 384m)")
    ap.add_argument("--settle", type=float, default=30.0, help="seconds idle before memory is read")
    args = ap.parse_args()
    runs = [one(int(n), args.memory, args.settle) for n in args.hosts.split(",")]
    reports = Path(os.environ.get("PIK3S_REPORT_DIR") or Path.home() / ".cache/pik3s/reports")
    reports.mkdir(parents=True, exist_ok=True)
    out = reports / "bench-lab.json"
    out.write_text(json.dumps({"runs": runs}, indent=1) + "\n")
    print(f"figures: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
