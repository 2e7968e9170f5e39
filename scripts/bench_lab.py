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

from pik3s_lab import lab as lablib
from pik3s_lab import spec as speclib


def _memory_mb(container: str) -> float:
    """A container's memory use as Docker counts it (its cgroup, without the page cache), in MB; the
    resident memory of its processes when Docker has no figure for it."""
    out = subprocess.run(["docker", "stats", "--no-stream", "--format", "{{.MemUsage}}", container],
                         capture_output=True, text=True, check=False).stdout.split("/")[0].strip()
    units = {"KiB": 1 / 1024, "MiB": 1.0, "GiB": 1024.0}
    if out[-3:] in units and out[:-3].replace(".", "", 1).isdigit() and float(out[:-3]) > 0:
        return float(out[:-3]) * units[out[-3:]]
    rows = subprocess.run(["docker", "top", container, "-o", "pid,rss"], capture_output=True, text=True,
                          check=True).stdout.splitlines()[1:]
    return sum(int(row.split()[1]) for row in rows if len(row.split()) == 2) / 1024


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
