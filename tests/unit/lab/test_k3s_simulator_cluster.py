"""The pik3s K3s simulator's cluster rules, with real processes on loopback.

Each rule here is one real K3s enforces; if the simulator let it slide, the
deploy roles' tests would pass against a cluster real K3s would refuse.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import stat
import time
from collections.abc import Callable

import pytest

from pik3s_lab.simulator import common as sim_common
from pik3s_lab.simulator import httpclient as sim_httpclient
from pik3s_lab.simulator import yamlreader as sim_yamlreader
from tests.unit.lab.simharness import Node

MakeNode = Callable[..., Node]


def _server(make_node: MakeNode, name: str = "s1", *extra: str) -> Node:
    return make_node(name).start("--token", "lab-token-password", *extra).wait_up()


def test_first_server_writes_secure_token_kubeconfig_and_serves(make_node: MakeNode) -> None:
    s1 = _server(make_node)
    ca = (s1.data_dir / "server/tls/server-ca.crt").read_bytes()
    assert s1.token == f"K10{hashlib.sha256(ca).hexdigest()}::server:lab-token-password"
    token_file = s1.data_dir / "server/token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert (s1.data_dir / "server/node-token").resolve() == token_file.resolve()
    kubeconfig = s1.root / "etc/rancher/k3s/k3s.yaml"
    assert stat.S_IMODE(kubeconfig.stat().st_mode) == 0o600
    assert sim_yamlreader.yaml_load(kubeconfig.read_text())["clusters"][0]["cluster"]["server"] == s1.url
    # /cacerts and /ping need no credentials; /readyz and the API do.
    assert sim_httpclient.https_request(s1.url + "/cacerts", verify=False) == ca
    assert sim_httpclient.https_request(s1.url + "/ping", verify=False) == b"pong"
    try:
        sim_httpclient.https_request(s1.url + "/readyz", cadata=ca.decode())
        raise AssertionError("anonymous /readyz must be refused")
    except sim_httpclient.HttpError as exc:
        assert exc.status == 401
    assert s1.kubectl("get", "--raw", "/readyz").stdout == "ok"
    node = s1.nodes()["s1"]
    assert node["metadata"]["labels"]["node-role.kubernetes.io/control-plane"] == "true"
    assert node["status"]["nodeInfo"]["kubeletVersion"] == "v1.31.4+k3s1"


def test_write_kubeconfig_mode(make_node: MakeNode) -> None:
    s1 = _server(make_node, "s1", "--write-kubeconfig-mode", "0644")
    assert stat.S_IMODE((s1.root / "etc/rancher/k3s/k3s.yaml").stat().st_mode) == 0o644


def test_config_file_and_dropins_drive_the_server(make_node: MakeNode) -> None:
    s1 = make_node("s1")
    s1.write_config("token: from-file\nnode-label: [tier=base]\n",
                    {"50-labels.yaml": "node-label+: [pik3s.io/model=rpi4]\nnode-taint: [dedicated=edge:NoSchedule]\n"})
    s1.start().wait_up()
    assert s1.token.endswith("::server:from-file")
    node = s1.nodes()["s1"]
    assert node["metadata"]["labels"]["tier"] == "base"
    assert node["metadata"]["labels"]["pik3s.io/model"] == "rpi4"
    assert {"key": "dedicated", "value": "edge", "effect": "NoSchedule"} in node["spec"]["taints"]


def test_unknown_cli_flag_stops_the_server(make_node: MakeNode) -> None:
    s1 = make_node("s1").start("--no-such-flag")
    assert s1.wait_exit() == 1
    assert "flag provided but not defined: -no-such-flag" in s1.logs()


def test_missing_memory_cgroup_stops_the_server(make_node: MakeNode) -> None:
    from tests.unit.lab.simharness import fake_cgroups
    s1 = make_node("s1")
    fake_cgroups(s1.root, memory=False)
    s1.start("--token", "x")
    assert s1.wait_exit() == 1
    assert "failed to find memory cgroup (v1)" in s1.logs()


def test_secure_token_cannot_seed_a_new_cluster(make_node: MakeNode) -> None:
    s1 = make_node("s1").start("--token", "K10" + "a" * 64 + "::server:pw")
    assert s1.wait_exit() == 1
    assert "token CA hash does not match the Cluster CA certificate hash" in s1.logs()


def test_restart_with_another_token_is_refused(make_node: MakeNode) -> None:
    s1 = _server(make_node)
    s1.stop()
    s1.start("--token", "another-password")
    assert s1.wait_exit() == 1
    assert "bootstrap data already found and encrypted with different token" in s1.logs()
    s1.start().wait_up()  # no token configured: the one in the data dir is used


def test_agents_join_and_go_not_ready_when_stopped(make_node: MakeNode) -> None:
    s1 = _server(make_node)
    a1 = make_node("a1", "agent").start("--server", s1.url, "--token", s1.token).wait_up()
    a2 = make_node("a2", "agent").start("--server", s1.url, "--token", "lab-token-password").wait_up()
    s1.wait_nodes({"s1": True, "a1": True, "a2": True})
    table = s1.kubectl("get", "nodes", "-o", "wide").stdout.splitlines()
    assert table[0].split()[:5] == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    assert any(r.split()[0] == "a1" and r.split()[2] == "<none>" and a1.ip in r for r in table)
    a2.stop()
    s1.wait_nodes({"s1": True, "a1": True, "a2": False}, timeout=15)
    assert "NotReady" in s1.kubectl("get", "nodes", "a2").stdout
    a2.start("--server", s1.url, "--token", s1.token).wait_up()
    s1.wait_nodes({"s1": True, "a1": True, "a2": True})
    assert s1.kubectl("wait", "--for=condition=Ready", "node/a2", "--timeout=10s").returncode == 0


def test_agent_started_before_its_server_keeps_retrying(make_node: MakeNode) -> None:
    s1 = make_node("s1")
    a1 = make_node("a1", "agent").start("--server", s1.url, "--token", "lab-token-password")
    a1.wait_log("Waiting to retrieve agent configuration")
    time.sleep(1.5)
    assert a1.proc is not None and a1.proc.poll() is None
    s1.start("--token", "lab-token-password").wait_up()
    a1.wait_up(timeout=20)
    s1.wait_nodes({"s1": True, "a1": True})


def test_wrong_token_password_keeps_agent_out(make_node: MakeNode) -> None:
    s1 = _server(make_node)
    ca_hash = s1.token[3:67]
    bad = make_node("bad", "agent").start("--server", s1.url, "--token", f"K10{ca_hash}::server:wrong")
    bad.wait_log("401 Unauthorized")
    assert bad.proc is not None and bad.proc.poll() is None  # retries, loudly
    assert "bad" not in s1.nodes()


def test_wrong_ca_hash_keeps_agent_out(make_node: MakeNode) -> None:
    s1 = _server(make_node)
    forged = "K10" + "0" * 64 + "::server:lab-token-password"
    bad = make_node("bad", "agent").start("--server", s1.url, "--token", forged)
    bad.wait_log("token CA hash does not match the Cluster CA certificate hash")
    time.sleep(1)
    assert "bad" not in s1.nodes()


def test_duplicate_hostname_is_rejected_with_k3s_message(make_node: MakeNode) -> None:
    s1 = _server(make_node)
    first = make_node("twin", "agent").start("--server", s1.url, "--token", s1.token).wait_up()
    # A second machine (its own root, so its own /etc/rancher/node/password) with the same name.
    second = make_node("twin-again", "agent")
    second.name = "twin"
    second.start("--server", s1.url, "--token", s1.token)
    second.wait_log(sim_common.NODE_PASSWORD_MSG)
    assert s1.nodes()["twin"]["status"]["addresses"][0]["address"] == first.ip
    # Deleting the node (and with it the node-password secret) lets the new machine in.
    first.stop()
    assert s1.kubectl("delete", "node", "twin").returncode == 0
    second.wait_up(timeout=20)
    s1.wait_nodes({"s1": True, "twin": True})
    assert s1.nodes()["twin"]["status"]["addresses"][0]["address"] == second.ip


def test_node_labels_apply_only_at_first_registration(make_node: MakeNode) -> None:
    s1 = _server(make_node)
    a1 = make_node("a1", "agent").start("--server", s1.url, "--token", s1.token, "--node-label", "v=1").wait_up()
    a1.stop()
    a1.start("--server", s1.url, "--token", s1.token, "--node-label", "v=2").wait_up()
    assert s1.nodes()["a1"]["metadata"]["labels"]["v"] == "1"


def test_cordon_uncordon_drain_delete(make_node: MakeNode) -> None:
    s1 = _server(make_node)
    make_node("a1", "agent").start("--server", s1.url, "--token", s1.token).wait_up()
    assert s1.kubectl("cordon", "a1").stdout.strip() == "node/a1 cordoned"
    assert "SchedulingDisabled" in s1.kubectl("get", "nodes", "a1").stdout
    assert s1.kubectl("uncordon", "node/a1").stdout.strip() == "node/a1 uncordoned"
    out = s1.kubectl("drain", "a1", "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=30s").stdout
    assert "node/a1 drained" in out
    assert s1.nodes()["a1"]["spec"]["unschedulable"] is True
    missing = s1.kubectl("get", "node", "nope")
    assert missing.returncode == 1
    assert missing.stderr == 'Error from server (NotFound): nodes "nope" not found\n'  # kubectl's own line


def test_joining_server_with_different_critical_config_fails(make_node: MakeNode) -> None:
    s1 = _server(make_node, "s1", "--cluster-init")
    s2 = make_node("s2").start("--server", s1.url, "--token", s1.token, "--cluster-cidr", "10.99.0.0/16")
    assert s2.wait_exit() == 1
    assert "critical configuration value mismatch" in s2.logs()
    assert "s2" not in s1.nodes()


def test_sqlite_server_cannot_be_joined(make_node: MakeNode) -> None:
    s1 = _server(make_node)
    s2 = make_node("s2").start("--server", s1.url, "--token", s1.token)
    assert s2.wait_exit() == 1
    assert "--cluster-init" in s2.logs()


def _ha(make_node: MakeNode) -> tuple[Node, Node, Node]:
    s1 = _server(make_node, "s1", "--cluster-init", "--disable", "traefik")
    s2 = make_node("s2").start("--server", s1.url, "--token", s1.token, "--disable", "traefik").wait_up()
    s3 = make_node("s3").start("--server", s1.url, "--token", s1.token, "--disable", "traefik").wait_up()
    s1.wait_nodes({"s1": True, "s2": True, "s3": True})
    return s1, s2, s3


def test_three_servers_keep_quorum_with_one_down_and_lose_it_with_two(make_node: MakeNode) -> None:
    s1, s2, s3 = _ha(make_node)
    assert s3.token == s1.token
    assert set(s2.nodes()["s2"]["metadata"]["labels"]) >= {"node-role.kubernetes.io/etcd"}
    s1.stop()
    time.sleep(1.2)
    assert s2.kubectl("get", "--raw", "/readyz").stdout == "ok"
    assert "s1" in s3.nodes()  # any server answers for the whole cluster
    s3.stop()
    time.sleep(1.2)
    res = s2.kubectl("get", "nodes")
    assert res.returncode == 1 and "etcdserver: request timed out" in res.stderr
    assert s2.kubectl("get", "--raw", "/readyz").returncode == 1
    s3.start().wait_up()  # quorum back: the restarted member resumes from its own data
    time.sleep(1.2)
    assert s2.kubectl("get", "--raw", "/readyz").stdout == "ok"


def test_snapshot_save_ls_restore_and_token_needed(make_node: MakeNode) -> None:
    s1 = _server(make_node, "s1", "--cluster-init")
    make_node("a1", "agent").start("--server", s1.url, "--token", s1.token).wait_up()
    a2 = make_node("a2", "agent").start("--server", s1.url, "--token", s1.token).wait_up()
    s1.wait_nodes({"s1": True, "a1": True, "a2": True})
    dd = ["--data-dir", str(s1.data_dir), "--node-name", "s1"]
    saved = s1.run("etcd-snapshot", "save", "--name", "pre", *dd)
    assert saved.returncode == 0, saved.stderr
    snaps = sorted((s1.data_dir / "server/db/snapshots").iterdir())
    assert len(snaps) == 1 and snaps[0].name.startswith("pre-s1-")
    assert stat.S_IMODE(snaps[0].stat().st_mode) == 0o600
    assert json.loads(snaps[0].read_text())["state"]["nodes"].keys() == {"s1", "a1", "a2"}
    assert snaps[0].name in s1.run("etcd-snapshot", "ls", *dd).stdout
    # Lose a node, then restore the snapshot taken before.
    a2.stop()
    assert s1.kubectl("delete", "node", "a2").returncode == 0
    s1.stop()
    wrong = s1.run("server", *s1.base_args(), "--cluster-reset",
                   f"--cluster-reset-restore-path={snaps[0]}", "--token", "not-the-token")
    assert wrong.returncode == 1
    assert "bootstrap data already found and encrypted with different token" in wrong.stderr
    reset = s1.run("server", *s1.base_args(), "--cluster-reset", f"--cluster-reset-restore-path={snaps[0]}")
    assert reset.returncode == 0, reset.stderr
    assert "Managed etcd cluster membership has been reset" in reset.stderr
    s1.start().wait_up()
    assert set(s1.nodes()) == {"s1", "a1", "a2"}
    deleted = s1.run("etcd-snapshot", "delete", snaps[0].name, *dd)
    assert deleted.returncode == 0 and not snaps[0].exists()


def test_snapshot_needs_etcd(make_node: MakeNode) -> None:
    s1 = _server(make_node)
    res = s1.run("etcd-snapshot", "save", "--data-dir", str(s1.data_dir))
    assert res.returncode == 1 and "etcd database not found" in res.stderr


def test_restored_cluster_refuses_stale_peer_until_wiped(make_node: MakeNode) -> None:
    s1, s2, s3 = _ha(make_node)
    assert s1.run("etcd-snapshot", "save", "--data-dir", str(s1.data_dir)).returncode == 0
    snap = next((s1.data_dir / "server/db/snapshots").iterdir())
    for s in (s1, s2, s3):
        s.stop()
    assert s1.run("server", *s1.base_args(), "--cluster-reset", f"--cluster-reset-restore-path={snap}").returncode == 0
    s1.start().wait_up()
    s2.start("--server", s1.url)
    assert s2.wait_exit() == 1
    assert "not a member of the etcd cluster" in s2.logs()
    import shutil
    shutil.rmtree(s2.data_dir / "server/db")
    s2.start("--server", s1.url, "--token", s1.token, "--disable", "traefik").wait_up()
    s1.wait_nodes({"s1": True, "s2": True, "s3": False}, timeout=15)


def test_kubectl_forms_deployers_use_against_a_running_cluster(make_node: MakeNode) -> None:
    """The forms another deployer's HA check failed on, end to end (expected values from kubectl's docs)."""
    s1 = _server(make_node)
    make_node("a1", "agent").start("--server", s1.url, "--token", s1.token, "--node-label", "tier=edge").wait_up()
    s1.wait_nodes({"s1": True, "a1": True})
    # -o=jsonpath= (the = form) is jsonpath, and nothing is added after the result.
    res = s1.kubectl("get", "nodes", "-o=jsonpath={.items[*].metadata.name}")
    assert (res.returncode, res.stdout) == (0, "a1 s1")
    ready = ('{range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status}{"\\n"}{end}')
    assert s1.kubectl("get", "nodes", "-o", f"jsonpath={ready}").stdout == "a1=True\ns1=True\n"
    # -l selects; a selector nothing matches prints "No resources found" on stderr and succeeds.
    assert s1.kubectl("get", "nodes", "-l", "node-role.kubernetes.io/control-plane", "-o", "name").stdout == "node/s1\n"
    assert s1.kubectl("get", "nodes", "--selector=tier=edge", "-o", "name").stdout == "node/a1\n"
    none = s1.kubectl("get", "nodes", "-l", "tier=core")
    assert (none.returncode, none.stdout, none.stderr) == (0, "", "No resources found\n")
    # --show-labels adds a LABELS column.
    header, *rows = s1.kubectl("get", "nodes", "--show-labels").stdout.splitlines()
    assert header.split()[-1] == "LABELS"
    assert "tier=edge" in rows[0].split()[-1] and "kubernetes.io/hostname=a1" in rows[0].split()[-1]
    # A missing name among several: the others print, the error goes to stderr, exit 1.
    res = s1.kubectl("get", "nodes", "s1", "nope", "a1", "-o", "name")
    assert (res.returncode, res.stdout) == (1, "node/s1\nnode/a1\n")
    assert res.stderr == 'Error from server (NotFound): nodes "nope" not found\n'
    # Unknown flags and resource types fail as kubectl fails.
    res = s1.kubectl("get", "nodes", "--sort-by=.metadata.name")
    assert (res.returncode, res.stdout) == (1, "")
    assert res.stderr == "error: unknown flag: --sort-by\nSee 'kubectl get --help' for usage.\n"
    res = s1.kubectl("get", "pods", "-A")
    assert res.returncode == 1 and res.stderr.startswith('error: the server doesn\'t have a resource type "pods"')
    assert s1.kubectl("wait", "--for=condition=Ready", "nodes", "--all", "--timeout=10s").stdout == (
        "node/a1 condition met\nnode/s1 condition met\n")


def test_deleting_a_dead_servers_node_removes_its_etcd_member(make_node: MakeNode) -> None:
    """As K3s's etcd member controller does: `kubectl delete node` of a server removes its member. The
    server coming back with its old datastore is refused the way etcd refuses a removed member; with its
    datastore moved aside it joins again."""
    s1, s2, s3 = _ha(make_node)
    s3.stop()
    deleted = s1.kubectl("delete", "node", "s3")
    assert deleted.returncode == 0, deleted.stderr
    assert "Removed etcd member s3 (its node was deleted)" in s1.logs() + s2.logs()
    assert set(s2.nodes()) == {"s1", "s2"}
    s3.start()
    assert s3.wait_exit() == 1
    assert "etcdserver: the member has been permanently removed from the cluster" in s3.logs()
    shutil.rmtree(s3.data_dir / "server" / "db")
    s3.start("--server", s1.url, "--token", s1.token, "--disable", "traefik").wait_up()
    s1.wait_nodes({"s1": True, "s2": True, "s3": True})


def test_labels_and_taints_set_with_kubectl_are_kept_across_restarts(make_node: MakeNode) -> None:
    """Node labels and taints an operator sets live in the datastore: they survive the agent's restart
    (re-registration) and the server's."""
    s1 = _server(make_node)
    a1 = make_node("a1", "agent").start("--server", s1.url, "--token", s1.token).wait_up()
    s1.wait_nodes({"s1": True, "a1": True})
    assert s1.kubectl("label", "node", "a1", "team=blue").stdout == "node/a1 labeled\n"
    refused = s1.kubectl("label", "node", "a1", "team=red")
    assert refused.returncode == 1 and "'team' already has a value (blue), and --overwrite is false" in refused.stderr
    assert s1.kubectl("taint", "nodes", "a1", "dedicated=ml:NoSchedule").stdout == "node/a1 tainted\n"
    a1.stop()
    a1.start("--server", s1.url, "--token", s1.token).wait_up()
    s1.stop()
    s1.start().wait_up()
    s1.wait_nodes({"s1": True, "a1": True})
    node = s1.nodes()["a1"]
    assert node["metadata"]["labels"]["team"] == "blue"
    assert {"key": "dedicated", "value": "ml", "effect": "NoSchedule"} in node["spec"]["taints"]
    assert s1.kubectl("taint", "node", "a1", "dedicated-").stdout == "node/a1 untainted\n"
    assert s1.kubectl("label", "node", "a1", "team-").stdout == "node/a1 unlabeled\n"
    node = s1.nodes()["a1"]
    assert "team" not in node["metadata"]["labels"] and node["spec"]["taints"] == []


def test_a_server_that_stops_answering_does_not_slow_the_others(make_node: MakeNode) -> None:
    """s3 freezes (SIGSTOP: its sockets still accept, nothing answers, as a powered-off or partitioned
    peer costs timeouts): s1 and s2 keep quorum, answer promptly and keep their own nodes Ready; s3's node
    turns NotReady."""
    import os
    import signal
    s1, _s2, s3 = _ha(make_node)
    assert s3.proc is not None
    os.kill(s3.proc.pid, signal.SIGSTOP)
    try:
        slowest, ready = 0.0, {}
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            started = time.monotonic()
            res = s1.kubectl("get", "nodes", "-o", "json")
            slowest = max(slowest, time.monotonic() - started)
            assert res.returncode == 0, res.stderr
            ready = {n["metadata"]["name"]: n["status"]["conditions"][0]["status"]
                     for n in json.loads(res.stdout)["items"]}
            assert ready["s1"] == ready["s2"] == "True", ready
            time.sleep(1)
        assert ready["s3"] != "True"
        assert slowest < 4.0, f"kubectl took {slowest:.1f} s with a frozen peer"
    finally:
        os.kill(s3.proc.pid, signal.SIGCONT)


def test_a_rebuilt_server_is_refused_while_its_old_member_remains(make_node: MakeNode) -> None:
    """s3 loses its datastore (a re-flashed SD card) while the cluster still has its etcd member: its join
    is refused with K3s's message; once its node is deleted (which removes the member) it joins."""
    s1, _s2, s3 = _ha(make_node)
    s3.stop()
    shutil.rmtree(s3.data_dir / "server" / "db")
    join = ("--server", s1.url, "--token", s1.token, "--disable", "traefik")
    s3.start(*join)
    assert s3.wait_exit() == 1
    assert ("joining etcd cluster: duplicate node name found, please use a unique name for this node"
            in s3.logs())
    assert s1.kubectl("delete", "node", "s3").returncode == 0
    s3.start(*join).wait_up()
    s1.wait_nodes({"s1": True, "s2": True, "s3": True})


def test_a_server_whose_data_dir_is_full_refuses_to_start(make_node: MakeNode) -> None:
    """Its data directory on a real filesystem filled to the last byte: the server exits 1 with the
    file it could not write and "no space left on device", as K3s's fatal line names them."""
    import os
    import subprocess
    s1 = make_node("s1")
    s1.data_dir.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(s1.data_dir)],
                                           capture_output=True, check=False).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN)")
    try:
        fd = os.open(s1.data_dir / ".filler", os.O_WRONLY | os.O_CREAT, 0o600)
        for size in (4096, 1):
            try:
                while os.write(fd, b"\0" * size):
                    pass
            except OSError:
                pass
        os.close(fd)
        s1.start("--cluster-init")
        assert s1.wait_exit() == 1
        fatal = [line for line in s1.logs().splitlines() if "level=fatal" in line]
        assert fatal and "preparing server: open " in fatal[0] and fatal[0].endswith(
            'no space left on device"'), fatal
    finally:
        subprocess.run(["umount", "-l", str(s1.data_dir)], check=False)
