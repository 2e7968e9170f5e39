"""scripts/bench-datastore: deploy on the lab's external etcd next to embedded etcd (see the shell wrapper)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_scale import OLD, step

from pik3s_lab import etcd as lab_etcd
from pik3s_lab import lab as lablib
from pik3s_lab import spec as speclib


def _container_memory(container: str) -> dict[str, float]:
    """The container's memory from its cgroup (all its processes: anonymous and page cache, MiB) and its main
    process's resident set (VmRSS, MiB; counts the binary's shared pages too). `docker stats` is not used: it
    reports 0B for some containers on this engine."""
    info = json.loads(subprocess.run(["docker", "inspect", container], capture_output=True, text=True,
                                     check=True).stdout)[0]
    cid, pid = info["Id"], info["State"]["Pid"]
    usage = 0
    for path in (f"/sys/fs/cgroup/memory/docker/{cid}/memory.usage_in_bytes",  # cgroup v1
                 f"/sys/fs/cgroup/system.slice/docker-{cid}.scope/memory.current"):  # cgroup v2
        if Path(path).exists():
            usage = int(Path(path).read_text())
            break
    rss_kb = next((int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                   if line.startswith("VmRSS:")), 0)
    return {"cgroup_mib": round(usage / 2**20, 1), "process_rss_mib": round(rss_kb / 1024, 1)}


def etcd_figures(lab: lablib.LabRecord) -> dict[str, float]:
    """The etcd container's memory and the datastore's size (etcdctl endpoint status) and key count."""
    ctl = ["docker", "exec", lab.etcd_container, *lab_etcd.etcdctl_args(lab.etcd_endpoint, lab.etcd_tls)]
    status = json.loads(subprocess.run([*ctl, "endpoint", "status", "-w", "json"], capture_output=True, text=True,
                                       check=True).stdout)
    keys = subprocess.run([*ctl, "get", "/", "--prefix", "--keys-only"], capture_output=True, text=True,
                          check=True).stdout.split()
    return {**_container_memory(lab.etcd_container), "db_kb": round(status[0]["Status"]["dbSize"] / 1024, 1),
            "keys": len(keys)}


def wipe_etcd(lab: lablib.LabRecord) -> None:
    """Delete every key (a reset leaves an external datastore's content, as K3s's uninstall does)."""
    subprocess.run(["docker", "exec", lab.etcd_container, *lab_etcd.etcdctl_args(lab.etcd_endpoint, lab.etcd_tls),
                    "del", "", "--from-key=true"], capture_output=True, text=True, check=True)


def main() -> int:
    ap = argparse.ArgumentParser(prog="scripts/bench-datastore")
    ap.add_argument("--agents", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    name = "benchds"
    spec = speclib.parse_spec({"name": name, "etcd": "tls", "hosts": [
        {"name": "srv", "count": 3, "memory": "1g", "groups": ["server"]},
        {"name": "agt", "count": args.agents, "memory": "384m", "groups": ["agent"]}]}, "bench")
    state = Path(tempfile.mkdtemp(prefix="pik3s-benchds-"))
    runs: list[dict[str, Any]] = []
    try:
        lab = lablib.up(spec, state)
        idle = etcd_figures(lab)
        print(f"etcd idle: {idle['cgroup_mib']} MiB (cgroup), {idle['process_rss_mib']} MiB (RSS), {idle['db_kb']} kB, "
              f"{idle['keys']} keys", flush=True)
        inv = lablib.inventory_json(state)["all"]["vars"]
        external = ["-e", f"k3s_datastore_endpoint={inv['pik3s_lab_etcd_endpoint']}",
                    "-e", f"k3s_datastore_cafile={inv['pik3s_lab_etcd_cafile']}",
                    "-e", f"k3s_datastore_certfile={inv['pik3s_lab_etcd_certfile']}",
                    "-e", f"k3s_datastore_keyfile={inv['pik3s_lab_etcd_keyfile']}"]
        for rnd in range(1, args.rounds + 1):
            for topology in ("embedded", "external"):  # alternating, same lab, same hosts
                extra = ["-e", f"k3s_version={OLD}", *(external if topology == "external" else [])]
                run: dict[str, Any] = {"round": rnd, "topology": topology}
                run["deploy"] = step(lab, ["deploy", *extra])
                run["rerun"] = step(lab, ["deploy", *extra])
                if topology == "external":
                    time.sleep(5)  # a few heartbeats' writes
                    run["etcd"] = etcd_figures(lab)
                step(lab, ["reset", "--yes"])
                wipe_etcd(lab)
                runs.append(run)
                etcd = run.get("etcd")
                print(f"round {rnd} {topology:>8}: deploy {run['deploy']['wall_s']:>6} s, re-run "
                      f"{run['rerun']['wall_s']:>6} s ({run['rerun']['changed']} changed)"
                      + (f", etcd {etcd['cgroup_mib']} MiB (cgroup), {etcd['process_rss_mib']} MiB (RSS), "
                         f"{etcd['db_kb']} kB, {etcd['keys']} keys" if etcd else ""),
                      flush=True)
    finally:
        lablib.down(name, state)
    reports = Path(os.environ.get("PIK3S_REPORT_DIR") or Path.home() / ".cache/pik3s/reports")
    reports.mkdir(parents=True, exist_ok=True)
    out = reports / "bench-datastore.json"
    out.write_text(json.dumps({"servers": 3, "agents": args.agents, "etcd_idle": idle, "runs": runs}, indent=1)
                   + "\n")
    print(f"figures: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
