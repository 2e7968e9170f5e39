"""upgrade: a rolling upgrade of 3 servers + 1 agent with the API probed
through the endpoint (the lab's load balancer) once a second throughout."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared" / "tests"))
pytest.register_assert_rewrite("verify_cluster")

from verify_cluster import (  # noqa: E402,F401 - the shared checks, collected here
    INVENTORY,
    api_get,
    failure_messages,
    recap,
    run_playbook,
    test_all_nodes_ready_from_the_server,
    test_binary_is_the_release_asset_for_this_cpu,
    test_config_and_token_files,
    test_fetched_kubeconfig_reaches_the_api_with_its_own_credentials,
    test_unit_enabled_and_active,
)

FIRST, OLD, NEW = "v1.29.12+k3s1", "v1.30.8+k3s1", "v1.31.4+k3s1"
BROKEN = "/etc/rancher/k3s/config.yaml.d/99-broken.yaml"
NODES = ["agt1", "srv1", "srv2", "srv3"]
REPORT = Path(os.environ.get("PIK3S_REPORT_DIR", Path.home() / ".cache" / "pik3s" / "reports"))


class Probe(threading.Thread):
    """GET /api/v1/nodes through the API endpoint once a second."""

    def __init__(self, kubeconfig: dict) -> None:
        super().__init__(daemon=True)
        self.kubeconfig, self.stop, self.ok, self.failures = kubeconfig, threading.Event(), 0, []

    def run(self) -> None:
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                api_get(self.kubeconfig, "/api/v1/nodes")
                self.ok += 1
            except Exception as exc:  # noqa: BLE001 - every kind of failure counts
                self.failures.append(f"{time.strftime('%H:%M:%S')} {exc!r}")
            self.stop.wait(max(0.0, 1.0 - (time.monotonic() - started)))


def _versions(kubeconfig: dict) -> dict[str, str]:
    nodes = api_get(kubeconfig, "/api/v1/nodes")["items"]
    return {n["metadata"]["name"]: n["status"]["nodeInfo"]["kubeletVersion"] for n in nodes}


def test_an_upgrade_does_not_start_with_a_server_down(host) -> None:
    """srv3 is powered off (its container killed): the upgrade refuses to start, naming srv3, and
    changes nothing (every node still on the first release); powered on, srv3 comes back Ready."""
    if host.backend.get_hostname() != "srv1":
        return
    kubeconfig = yaml.safe_load((INVENTORY / ".kube" / "k3s.yaml").read_text())
    srv3 = "pik3s-mol-upgrade-srv3"
    subprocess.run(["docker", "kill", srv3], check=True, capture_output=True)
    try:
        refused = run_playbook("playbooks/upgrade.yml", "-e", f"k3s_version={OLD}")
        assert refused.returncode != 0
        messages = failure_messages(refused.stdout)
        assert any(m.startswith("the upgrade did not start: srv3 is down (srv3 could not be reached). Each server "
                                "restarts once for its upgrade; with 1 of 3 servers down, the next restart can "
                                "leave etcd without quorum") for m in messages), refused.stdout[-3000:]
        assert "-e k3s_upgrade_force=true rolls anyway" in " ".join(messages)
        versions = _versions(kubeconfig)
        assert {n: versions[n] for n in ("srv1", "srv2", "agt1")} == dict.fromkeys(("srv1", "srv2", "agt1"), FIRST)
    finally:
        subprocess.run(["docker", "start", srv3], check=True, capture_output=True)
    deadline, ready = time.monotonic() + 180, {}
    while time.monotonic() < deadline:
        try:
            ready = {n["metadata"]["name"]: n["status"]["conditions"][0]["status"]
                     for n in api_get(kubeconfig, "/api/v1/nodes")["items"]}
        except (AssertionError, OSError):
            ready = {}
        if ready and set(ready.values()) == {"True"}:
            break
        time.sleep(2)
    assert set(ready.values()) == {"True"} and len(ready) == 4, ready


def test_a_roll_stops_at_the_first_failing_node(host) -> None:
    """srv2 cannot start on the new release (a bad setting in a drop-in): the roll
    stops there, srv3 and agt1 are untouched, the API keeps answering; once
    fixed, a re-run finishes srv2's upgrade (uncordons it) and the rest."""
    if host.backend.get_hostname() != "srv1":
        return
    kubeconfig = yaml.safe_load((INVENTORY / ".kube" / "k3s.yaml").read_text())
    assert _versions(kubeconfig) == dict.fromkeys(NODES, FIRST)
    srv2 = host.get_host("ansible://srv2", ansible_inventory=host.backend.ansible_inventory)
    srv2.run_expect([0], f"sudo sh -c 'mkdir -p {Path(BROKEN).parent} && "
                         f"echo \"write-kubeconfig-mode: not-a-mode\" > {BROKEN}'")

    probe = Probe(kubeconfig)
    probe.start()
    stopped = run_playbook("playbooks/upgrade.yml", "-e", f"k3s_version={OLD}", "-e", "k3s_ready_timeout=30")
    probe.stop.set()
    probe.join()
    REPORT.mkdir(parents=True, exist_ok=True)
    (REPORT / "upgrade-stopped-roll.log").write_text(stopped.stdout + stopped.stderr)
    assert stopped.returncode != 0
    assert failure_messages(stopped.stdout, "srv2"), stopped.stdout[-3000:]
    assert not failure_messages(stopped.stdout, "srv3") and not failure_messages(stopped.stdout, "agt1")
    versions = _versions(kubeconfig)
    assert (versions["srv1"], versions["srv3"], versions["agt1"]) == (OLD, FIRST, FIRST)
    assert probe.failures == [], probe.failures  # srv1 and srv3 kept answering

    srv2.run_expect([0], f"sudo rm {BROKEN}")
    srv2.run_expect([0], "sudo systemctl restart k3s")
    resumed = run_playbook("playbooks/upgrade.yml", "-e", f"k3s_version={OLD}")
    assert resumed.returncode == 0, resumed.stdout[-4000:]
    assert _versions(kubeconfig) == dict.fromkeys(NODES, OLD)
    assert not srv2.file("/etc/rancher/k3s/pik3s-upgrade-unfinished").exists
    assert srv2.check_output("sudo k3s kubectl get node srv2 -o jsonpath={.spec.unschedulable}") in ("", "false")


def test_rolling_upgrade_keeps_the_api_answering(host) -> None:
    if host.backend.get_hostname() != "srv1":
        return
    kubeconfig = yaml.safe_load((INVENTORY / ".kube" / "k3s.yaml").read_text())
    assert _versions(kubeconfig) == dict.fromkeys(NODES, OLD)

    probe = Probe(kubeconfig)
    probe.start()
    started = time.monotonic()
    run = run_playbook("playbooks/upgrade.yml", "-e", f"k3s_version={NEW}")
    wall = time.monotonic() - started
    probe.stop.set()
    probe.join()
    assert run.returncode == 0, run.stdout[-5000:]
    per_node = {m.group(1): float(m.group(2))
                for m in re.finditer(rf"(\w+): {re.escape(OLD)} -> {re.escape(NEW)} in\s+([0-9.]+) s", run.stdout)}
    REPORT.mkdir(parents=True, exist_ok=True)
    (REPORT / "upgrade.json").write_text(json.dumps({
        "from": OLD, "to": NEW, "wall_seconds": round(wall, 1), "per_node_seconds": per_node,
        "probe_requests": probe.ok + len(probe.failures), "probe_failures": probe.failures}, indent=1) + "\n")
    assert probe.failures == [], probe.failures
    assert probe.ok >= wall * 0.8  # about one request a second, all answered
    assert sorted(per_node) == NODES
    assert _versions(kubeconfig) == dict.fromkeys(NODES, NEW)
    assert "Ready" in host.check_output("sudo k3s kubectl get nodes")

    again = run_playbook("playbooks/upgrade.yml", "-e", f"k3s_version={NEW}")
    assert again.returncode == 0, again.stdout[-3000:]
    assert {h: c["changed"] for h, c in recap(again.stdout).items()} == dict.fromkeys(NODES, 0)

    down = run_playbook("playbooks/upgrade.yml", "-e", f"k3s_version={OLD}")
    assert down.returncode != 0
    expected = (f"srv1: {NEW} -> {OLD} is a downgrade: K3s does not support going back (the datastore may "
                "already be migrated); restore a backup taken on the older release instead, or set "
                "k3s_upgrade_force=true if you know it is safe")
    assert expected in failure_messages(down.stdout, "srv1"), down.stdout[-3000:]
    assert _versions(kubeconfig) == dict.fromkeys(NODES, NEW)  # nothing moved


# ---------------------------------------------------------------- add-ons and auto-deploy manifests

MANIFESTS = "/var/lib/rancher/k3s/server/manifests/pik3s"
REMOVED = "/var/lib/rancher/k3s/server/pik3s-removed-manifests"
LAB_VARS = yaml.safe_load((Path(__file__).resolve().parents[1] / "lab.yml").read_text())["vars"]
SERVERS = ["srv1", "srv2", "srv3"]


def _server_files(name: str) -> dict[str, str]:
    """sha256, mode and owner of every file in pik3s's manifests directory of a server."""
    import testinfra
    other = testinfra.get_host(f"ansible://{name}?ansible_inventory={INVENTORY}")
    out = other.check_output(f"sudo sh -c 'cd {MANIFESTS} && for f in *; do [ -f \"$f\" ] && "
                             "echo \"$f $(stat -c %a:%U \"$f\") $(sha256sum < \"$f\" | cut -c1-64)\"; done'")
    return {line.split()[0]: " ".join(line.split()[1:]) for line in out.splitlines()}


def _bearer_get(kubeconfig: dict, path: str, token: str) -> tuple[int, dict]:
    import base64
    import http.client
    import ssl
    cluster = kubeconfig["clusters"][0]["cluster"]
    name, port = cluster["server"].removeprefix("https://").rsplit(":", 1)
    tls = ssl.create_default_context(cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())
    conn = http.client.HTTPSConnection(name, int(port), context=tls, timeout=10)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"{}")
    finally:
        conn.close()


def _pik3s(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    return subprocess.run([sys.executable, "-m", "pik3s.cli", *args], capture_output=True, text=True, env=env,
                          timeout=900, check=False)


def test_manifests_charts_and_addons_are_on_every_server_alike(host) -> None:
    if host.backend.get_hostname() != "srv1":
        return
    files = {srv: _server_files(srv) for srv in SERVERS}
    assert sorted(files["srv1"]) == ["dashboard.yaml", "headlamp.yaml", "hello.yaml", "team-reader.yaml",
                                     "team-settings.yaml"]
    assert files["srv2"] == files["srv1"] and files["srv3"] == files["srv1"]
    assert {v.split()[0] for v in files["srv1"].values()} == {"600:root"}
    kubeconfig = yaml.safe_load((INVENTORY / ".kube" / "k3s.yaml").read_text())
    cm = api_get(kubeconfig, "/api/v1/namespaces/team/configmaps/settings")
    assert cm["data"] == {"greeting": "hello\nfrom pik3s\n"}
    assert cm["metadata"]["annotations"]["objectset.rio.cattle.io/owner-name"] == "team-settings"
    api_get(kubeconfig, "/api/v1/namespaces/team/serviceaccounts/reader")
    chart = api_get(kubeconfig, "/apis/helm.cattle.io/v1/namespaces/kube-system/helmcharts/hello")
    assert (chart["spec"]["chart"], chart["spec"]["version"], chart["spec"]["targetNamespace"]) == (
        "hello", "1.0.0", "team")
    assert yaml.safe_load(chart["spec"]["valuesContent"]) == {"greeting": "two\nlines", "replicaCount": 2}
    for name in ("hello", "headlamp", "dashboard"):
        job = api_get(kubeconfig, f"/apis/batch/v1/namespaces/kube-system/jobs/helm-install-{name}")
        assert job["status"].get("succeeded") == 1, job["status"]
    release = api_get(kubeconfig, "/api/v1/namespaces/team/secrets/sh.helm.release.v1.hello.v1")
    assert release["metadata"]["labels"]["status"] == "deployed"
    addon = api_get(kubeconfig, "/apis/k3s.cattle.io/v1/namespaces/kube-system/addons/headlamp")
    assert addon["spec"]["source"] == f"{MANIFESTS}/headlamp.yaml"


def test_dashboard_gives_a_short_lived_token_that_reads_the_cluster(host) -> None:
    if host.backend.get_hostname() != "srv1":
        return
    kubeconfig = yaml.safe_load((INVENTORY / ".kube" / "k3s.yaml").read_text())
    for addon, namespace, service in (("headlamp", "headlamp", "svc/headlamp 8080:80"),
                                      ("dashboard", "kubernetes-dashboard", "svc/kubernetes-dashboard-kong-proxy "
                                                                            "8443:443")):
        run = _pik3s("dashboard", "-i", str(INVENTORY), "--addon", addon, "--duration", "15m", "--output", "json",
                     "-e", f"k3s_version={NEW}")
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        out = json.loads(run.stdout)
        access = out["dashboard"]
        assert (access["addon"], access["namespace"], access["account"]) == (addon, namespace, "read-only-user")
        assert service in access["port_forward"]
        assert access["token"] not in json.dumps(out["result"])  # the token is in the dashboard part only
        status, nodes = _bearer_get(kubeconfig, "/api/v1/nodes", access["token"])
        assert status == 200 and len(nodes["items"]) == 4
        status, _ = _bearer_get(kubeconfig, "/api/v1/namespaces/kube-system/secrets", access["token"])
        assert status == 403  # read-only: no Secrets
    # An account of the add-on's namespace without the binding: refused.
    token = host.check_output("sudo k3s kubectl -n headlamp create token default").strip()
    status, body = _bearer_get(kubeconfig, "/api/v1/nodes", token)
    assert status == 403, body
    assert body["message"] == ('nodes is forbidden: User "system:serviceaccount:headlamp:default" cannot list '
                               'resource "nodes" in API group "" at the cluster scope')


def test_removed_manifests_and_addons_are_deleted_with_their_objects(host) -> None:
    if host.backend.get_hostname() != "srv1":
        return
    kept = [m for m in LAB_VARS["k3s_server_manifests"] if m["name"] != "team-reader"]
    extra = json.dumps({"k3s_version": NEW, "k3s_addons": ["headlamp"], "k3s_server_manifests": kept})
    run = run_playbook("playbooks/site.yml", "-e", extra)
    assert run.returncode == 0, run.stdout[-5000:]
    for srv in SERVERS:
        assert sorted(_server_files(srv)) == ["headlamp.yaml", "hello.yaml", "team-settings.yaml"], srv
    kubeconfig = yaml.safe_load((INVENTORY / ".kube" / "k3s.yaml").read_text())
    gone = ["/api/v1/namespaces/team/serviceaccounts/reader", "/api/v1/namespaces/kubernetes-dashboard",
            "/apis/helm.cattle.io/v1/namespaces/kube-system/helmcharts/dashboard",
            "/apis/k3s.cattle.io/v1/namespaces/kube-system/addons/dashboard",
            "/apis/k3s.cattle.io/v1/namespaces/kube-system/addons/team-reader"]
    for path in gone:
        with pytest.raises(AssertionError, match="not found"):
            api_get(kubeconfig, path)
    api_get(kubeconfig, "/api/v1/namespaces/team/configmaps/settings")  # the others stay
    api_get(kubeconfig, "/apis/helm.cattle.io/v1/namespaces/kube-system/helmcharts/headlamp")
    assert host.check_output(f"sudo ls -A {REMOVED}") == ""
    again = run_playbook("playbooks/site.yml", "-e", extra)
    assert again.returncode == 0, again.stdout[-3000:]
    assert {h: c["changed"] for h, c in recap(again.stdout).items()} == dict.fromkeys(NODES, 0)
    # pik3s dashboard deploys only what the inventory lists: an add-on left out is refused, with the fix.
    run = _pik3s("dashboard", "-i", str(INVENTORY), "--addon", "dashboard", "--output", "json", "-e", extra)
    assert run.returncode == 5, run.stdout[-3000:] + run.stderr[-2000:]
    (failure,) = json.loads(run.stdout)["failures"]
    assert failure["host"] == "srv1" and failure["message"].startswith(
        "the add-on 'dashboard' is not in k3s_addons: add it (k3s_addons: [dashboard]) in group_vars of the "
        "servers and run pik3s deploy")
