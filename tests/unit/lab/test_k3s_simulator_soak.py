"""A simulated server with agents heartbeating, left running: its threads and memory stay flat.

Under qemu-user 7.2 (Debian 12's, which runs the lab's arm64 and armhf hosts)
every guest thread that exits leaks about 200 KB, so a server that starts a
thread per connection grows without bound on an emulated Pi. Natively that
leak does not show; what causes it does: new thread ids. So this soak test,
run natively on loopback with fast heartbeats, asserts that once the cluster
is up the server starts and ends no thread at all while agents heartbeat and
kubectl asks, that agents reuse one connection each, that heartbeats are not
each a datastore write, and that its resident memory stays flat.
"""

from __future__ import annotations

import json
import os
import re
import socket
import ssl
import time
from collections.abc import Callable
from pathlib import Path

from pik3s_lab.simulator import common as sim_common
from pik3s_lab.simulator import httpclient as sim_httpclient
from tests.unit.lab.simharness import FAST, Node

MakeNode = Callable[..., Node]
AGENTS = 5
SOAK_SECONDS = 12.0


def tids(pid: int) -> set[int]:
    return {int(t) for t in os.listdir(f"/proc/{pid}/task")}


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def stats(server: Node) -> dict[str, int]:
    res = server.kubectl("get", "--raw", "/pik3s-sim/stats")
    assert res.returncode == 0, res.stderr
    data: dict[str, int] = json.loads(res.stdout)
    return data


def test_threads_and_memory_stay_flat_while_agents_heartbeat(make_node: MakeNode) -> None:
    s1 = make_node("s1").start("--token", "soak-token").wait_up()
    agents = [make_node(f"a{i}", "agent").start("--server", s1.url, "--token", s1.token)
              for i in range(AGENTS)]
    for agent in agents:
        agent.wait_up()
    s1.wait_nodes({"s1": True, **{a.name: True for a in agents}})
    assert s1.proc is not None
    pid = s1.proc.pid
    time.sleep(3 * float(FAST["PIK3S_SIM_HEARTBEAT"]))  # every agent on its steady connection

    before_tids, before_rss, before = tids(pid), rss_kb(pid), stats(s1)
    seen = set(before_tids)
    kubectl_calls = 0
    rss = [before_rss]
    start = time.monotonic()
    next_kubectl = start + 1
    while time.monotonic() < start + SOAK_SECONDS:
        time.sleep(0.05)  # often enough to catch short-lived threads too
        seen |= tids(pid)
        if time.monotonic() >= next_kubectl:
            rss.append(rss_kb(pid))
            assert s1.kubectl("get", "nodes").returncode == 0
            kubectl_calls += 1
            next_kubectl += 1
    after = stats(s1)
    kubectl_calls += 2  # the two stats reads

    heartbeats = after["heartbeats"] - before["heartbeats"]
    expected = (AGENTS + 1) * SOAK_SECONDS / float(FAST["PIK3S_SIM_HEARTBEAT"])
    assert heartbeats >= 0.6 * expected, (heartbeats, expected)
    # No thread started or ended: connections wait in the event loop, requests run on the pool.
    assert seen == before_tids == tids(pid), (sorted(before_tids), sorted(seen))
    # Agents kept their connection: new ones are kubectl's, one per call.
    assert after["connections"] - before["connections"] <= kubectl_calls, (before, after)
    # Heartbeats are kept in memory and persisted in batches, not one datastore write each.
    max_writes = SOAK_SECONDS / float(FAST["PIK3S_SIM_PERSIST"]) + 2
    assert after["writes"] - before["writes"] <= max_writes, (before, after)
    # Resident memory: flat, give or take what Python's allocator keeps.
    assert max(rss) - before_rss < 4 * 1024, rss


def test_idle_connections_hold_no_worker_and_a_tcp_probe_logs_one_line(make_node: MakeNode) -> None:
    """More idle keep-alive connections than worker threads do not block the API (they wait in the
    event loop, not on a worker); a plain TCP probe of the port (what wait_for does) is one log line,
    as K3s's "http: TLS handshake error", not a traceback."""
    s1 = make_node("s1").start("--token", "probe-token").wait_up()
    ca = (s1.data_dir / "server/tls/server-ca.crt").read_text()
    ctx = ssl.create_default_context(cadata=ca)
    idle = []
    for _ in range(sim_common.WORKERS + 4):
        raw = socket.create_connection((s1.ip, s1.port), timeout=5)
        idle.append(ctx.wrap_socket(raw, server_hostname=s1.ip))
    try:
        assert sim_httpclient.https_request(s1.url + "/ping", cadata=ca, timeout=5) == b"pong"
        assert s1.kubectl("get", "nodes").returncode == 0
    finally:
        for conn in idle:
            conn.close()
    with socket.create_connection((s1.ip, s1.port), timeout=5):
        pass  # connect and close, no TLS
    logs = s1.wait_log("http: TLS handshake error from")
    line = next(x for x in logs.splitlines() if "http: TLS handshake error from" in x)
    assert re.search(r'msg="\[pik3s K3s simulator\] http: TLS handshake error from [0-9.]+:\d+: EOF"$', line), line
    assert "Traceback" not in logs
