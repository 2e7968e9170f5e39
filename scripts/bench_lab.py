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


# Emulated hosts (qemu-user): Pi 4s on arm64 and Pi 3s on armhf, half each, as agents.
EMULATED_MEMORY = "512m"


def one(hosts: int, memory: str, settle: float, emulated: int = 0) -> dict[str, object]:
    """A lab of ``hosts`` amd64 hosts (1 server, the rest agents) plus ``emulated`` emulated Pis."""
    name = f"bench{hosts}"
    entries = [{"name": "srv", "groups": ["server"], "memory": "1g"},
               {"name": "pi", "count": hosts - 1, "memory": memory, "groups": ["agent"]}]
    for prefix, arch, model, count in (("pi4e", "arm64", "rpi4", emulated - emulated // 2),
                                       ("pi3e", "armhf", "rpi3", emulated // 2)):
        if count:
            entries.append({"name": prefix, "count": count, "arch": arch, "model": model,
                            "memory": EMULATED_MEMORY, "groups": ["agent"]})
    lab_spec = speclib.parse_spec({"name": name, "hosts": entries}, "bench")
    state = Path(tempfile.mkdtemp(prefix=f"pik3s-benchlab-{hosts}-"))
    start = time.perf_counter()
    try:
        record = lablib.up(lab_spec, state)
        up_s = time.perf_counter() - start
        time.sleep(settle)
        per_host = [(h.arch, _memory_mb(h.container)) for h in record.hosts]
    finally:
        lablib.down(name, state)
    native = [mb for arch, mb in per_host if arch == "amd64"]
    emu = [mb for arch, mb in per_host if arch != "amd64"]
    result: dict[str, object] = {
        "hosts": hosts, "emulated": emulated, "memory_limit": memory, "up_s": round(up_s, 1),
        "idle_mb_median": round(statistics.median(native), 1), "idle_mb_max": round(max(native), 1),
        "idle_mb_total": round(sum(native) + sum(emu), 1)}
    if emu:
        result.update(emulated_idle_mb_median=round(statistics.median(emu), 1), emulated_idle_mb_max=round(max(emu), 1))
    print(f"{hosts:>3} hosts{f' + {emulated} emulated' if emulated else ''}: lab up {result['up_s']} s; idle memory "
          f"per host median {result['idle_mb_median']} MB (max {result['idle_mb_max']})"
          + (f", emulated {result['emulated_idle_mb_median']} MB (max {result['emulated_idle_mb_max']})" if emu else "")
          + f", all hosts {result['idle_mb_total']} MB", flush=True)
    return result


def main() -> int:
    ap = argparse.ArgumentParser(prog="scripts/bench-lab")
    ap.add_argument("--hosts", default="10,25,50")
    ap.add_argument("--memory", default="384m", help="each agent host's memory limit (default 384m)")
    ap.add_argument("--settle", type=float, default=30.0, help="seconds idle before memory is read")
    ap.add_argument("--emulated", type=int, default=0,
                    help="emulated Pis added to each lab (arm64 Pi 4s and armhf Pi 3s, half each; default 0)")
    args = ap.parse_args()
    if args.emulated < 0:
        raise SystemExit("--emulated is a number of hosts, 0 or more")
    runs = [one(int(n), args.memory, args.settle, args.emulated) for n in args.hosts.split(",")]
    reports = Path(os.environ.get("PIK3S_REPORT_DIR") or Path.home() / ".cache/pik3s/reports")
    reports.mkdir(parents=True, exist_ok=True)
    out = reports / "bench-lab.json"
    out.write_text(json.dumps({"runs": runs}, indent=1) + "\n")
    print(f"figures: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
