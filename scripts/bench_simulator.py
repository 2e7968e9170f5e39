"""Benchmark of the K3s simulator's server under a steady load of agents (run by scripts/bench-simulator).

One server and N agents run as processes on loopback with the simulator's
normal timings (a heartbeat every 2 s), and the server's resident memory,
threads and CPU time are sampled while the cluster idles. Natively it gives
the server's cost at 5 and at 50 agents; with --emulated ARCH everything runs
inside a lab host image of that CPU, under qemu-user (as on the lab's Pis),
where a server that starts a thread per connection leaks memory. --compare
REF runs the simulator of that git ref too, alternately. Figures go to stdout
and, as JSON, to $PIK3S_REPORT_DIR (default ~/.cache/pik3s/reports).

The --inner mode is what runs next to the processes (natively, or in the
container); it uses nothing but Python's standard library.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TICKS = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- inner: next to the processes

def _fake_root(root: Path) -> None:
    (root / "proc").mkdir(parents=True, exist_ok=True)
    (root / "proc" / "cgroups").write_text(
        "#subsys_name\thierarchy\tnum_cgroups\tenabled\ncpu\t2\t40\t1\nmemory\t4\t42\t1\n")


def _proc(pid: int) -> tuple[int, int, float]:
    """(resident kB, threads, CPU seconds) of a process."""
    rss = threads = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
        elif line.startswith("Threads:"):
            threads = int(line.split()[1])
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return rss, threads, (int(fields[11]) + int(fields[12])) / TICKS


def _wait(path: Path, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text(errors="replace"):
            return
        time.sleep(1)
    raise SystemExit(f"{text!r} not in {path} after {timeout:.0f} s:\n{path.read_text(errors='replace')[-2000:]}")


def _slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of y over x."""
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    den = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / den if den else 0.0


def inner(sim: str, agents: int, seconds: float, interval: float, work: Path) -> dict[str, Any]:
    py = sys.executable
    procs: list[subprocess.Popen[bytes]] = []

    def start(name: str, *args: str) -> subprocess.Popen[bytes]:
        root = work / name
        _fake_root(root)
        env = {**os.environ, "PIK3S_SIM_ROOT": str(root), "PIK3S_SIM_API_START": "0"}
        log = (work / f"{name}.log").open("wb")
        proc = subprocess.Popen([py, sim, *args, "--node-name", name, "--data-dir", str(root / "data")],
                                stdout=log, stderr=log, env=env)
        procs.append(proc)
        return proc

    try:
        server = start("s1", "server", "--token", "bench-token", "--node-ip", "127.0.0.1",
                       "--bind-address", "127.0.0.1", "--https-listen-port", "16443")
        _wait(work / "s1.log", "k3s is up and running", 600)
        token = (work / "s1/data/server/token").read_text().strip()
        for i in range(agents):
            start(f"a{i}", "agent", "--server", "https://127.0.0.1:16443", "--token", token,
                  "--node-ip", f"127.0.{1 + i // 250}.{1 + i % 250}")
        for i in range(agents):
            _wait(work / f"a{i}.log", "registered with the cluster", 900)
        time.sleep(2 * interval)  # steady state
        samples = []
        t0 = time.monotonic()
        while True:
            t = time.monotonic() - t0
            rss, threads, cpu = _proc(server.pid)
            samples.append({"t": round(t, 1), "rss_kb": rss, "threads": threads, "cpu_s": round(cpu, 2)})
            if t >= seconds:
                break
            time.sleep(interval)
        alive = sum(p.poll() is None for p in procs)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
    span = samples[-1]["t"] - samples[0]["t"]
    return {
        "agents": agents, "seconds": round(span, 1), "processes_alive_at_end": alive,
        "rss_mb_start": round(samples[0]["rss_kb"] / 1024, 1), "rss_mb_end": round(samples[-1]["rss_kb"] / 1024, 1),
        "rss_mb_per_min": round(_slope([(s["t"] / 60, s["rss_kb"] / 1024) for s in samples]), 2),
        "threads": sorted({s["threads"] for s in samples}),
        "cpu_percent": round(100 * (samples[-1]["cpu_s"] - samples[0]["cpu_s"]) / span, 1) if span else 0.0,
        "samples": samples,
    }


# ---------------------------------------------------------------- outer: drives runs

def simulator_file(ref: str | None, dest: Path, arch: str) -> Path:
    """The simulator as the lab mirror publishes it for ``arch`` (this checkout's, or a git ref's source:
    one file before the simulator became a package, the package after)."""
    old = f"{ref}:src/pik3s/lab/k3s_simulator.py"
    if ref and subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", old], capture_output=True).returncode == 0:
        src = subprocess.run(["git", "-C", str(ROOT), "show", old], capture_output=True, text=True, check=True).stdout
        for marker, value in (("@PIK3S_SIM_VERSION@", "v1.31.4+k3s1"), ("@PIK3S_SIM_ARCH@", arch)):
            src = src.replace(f'"{marker}"', json.dumps(value), 1)
        dest.write_text(src)
        return dest
    from pik3s_lab import mirror  # the outer run only: the inner one runs where pik3s_lab is not

    with tempfile.TemporaryDirectory() as tmp:
        source = mirror.SIMULATOR
        if ref:
            archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "lab/src/pik3s_lab/simulator"],
                                     capture_output=True, check=True).stdout
            subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
            source = Path(tmp) / "lab/src/pik3s_lab/simulator"
        dest.write_bytes(mirror.simulator_asset("v1.31.4+k3s1", arch, source))
    return dest


def run(label: str, sim: Path, agents: int, seconds: float, interval: float, emulated: str) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="pik3s-benchsim-"))
    try:
        if not emulated:
            result = inner(str(sim), agents, seconds, interval, work)
        else:
            images = subprocess.run(["docker", "images", "--format", "{{.Repository}}:{{.Tag}}",
                                     f"pik3s-lab:{emulated}-*"], capture_output=True, text=True, check=True)
            image = images.stdout.split()[0] if images.stdout.split() else ""
            if not image:
                raise SystemExit(f"no lab image for {emulated}: run `pik3s lab image --arch {emulated}` first")
            shutil.copy(sim, work / "k3s")
            shutil.copy(__file__, work / "bench.py")
            out = subprocess.run(
                ["docker", "run", "--rm", "--network", "none", "-v", f"{work}:/bench", "--entrypoint", "python3",
                 image, "/bench/bench.py", "--inner", "/bench/k3s", "--agents", str(agents), "--seconds",
                 str(seconds), "--interval", str(interval), "--work", "/bench/run"],
                capture_output=True, text=True, check=False)
            if out.returncode != 0:
                raise SystemExit(f"emulated run failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
            result = json.loads(out.stdout)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result.update(label=label, emulated=emulated or "no")
    print(f"{label:>12} {emulated or 'native':>7} {agents:>4} agents {result['seconds']:>6.0f} s: server RSS "
          f"{result['rss_mb_start']} -> {result['rss_mb_end']} MB ({result['rss_mb_per_min']:+.2f} MB/min), "
          f"threads {result['threads']}, CPU {result['cpu_percent']} % of a core", flush=True)
    return result


def main() -> int:
    ap = argparse.ArgumentParser(prog="scripts/bench-simulator", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agents", default="5,50", help="agent counts, comma-separated (default 5,50)")
    ap.add_argument("--minutes", type=float, default=2.0, help="how long each run samples (default 2)")
    ap.add_argument("--interval", type=float, default=5.0, help="seconds between samples (default 5)")
    ap.add_argument("--emulated", choices=["arm64", "armhf"], help="run inside a lab image of this CPU (qemu-user)")
    ap.add_argument("--compare", metavar="REF", help="also run the simulator of this git ref, alternately")
    ap.add_argument("--inner", metavar="SIM", help=argparse.SUPPRESS)
    ap.add_argument("--seconds", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.inner:
        work = Path(args.work)
        work.mkdir(parents=True, exist_ok=True)
        print(json.dumps(inner(args.inner, int(args.agents), args.seconds, args.interval, work)))
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="pik3s-benchsim-src-"))
    arch = args.emulated or {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, "armhf")
    sims = [("this", simulator_file(None, tmp / "this.py", arch))]
    if args.compare:
        sims.insert(0, (args.compare, simulator_file(args.compare, tmp / "ref.py", arch)))
    results = []
    try:
        for agents in (int(a) for a in args.agents.split(",")):
            for label, sim in sims:
                results.append(run(label, sim, agents, args.minutes * 60, args.interval, args.emulated or ""))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    reports = Path(os.environ.get("PIK3S_REPORT_DIR") or Path.home() / ".cache/pik3s/reports")
    reports.mkdir(parents=True, exist_ok=True)
    out = reports / f"bench-simulator-{args.emulated or 'native'}.json"
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, check=False).stdout.strip()
    out.write_text(json.dumps({"commit": commit, "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                               "runs": results}, indent=1) + "\n")
    print(f"figures: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
