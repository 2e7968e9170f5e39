"""ha: 3 servers (embedded etcd) + 1 agent, the API reached by a DNS name."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared" / "tests"))
pytest.register_assert_rewrite("verify_cluster")

from verify_cluster import (  # noqa: E402,F401 - the shared checks, collected here
    EPHEMERAL,
    api_get,
    lab_hostvars,
    test_all_nodes_ready_from_the_server,
    test_binary_is_the_release_asset_for_this_cpu,
    test_config_and_token_files,
    test_fetched_kubeconfig_reaches_the_api_with_its_own_credentials,
    test_login_user_has_kubectl_on_servers,
    test_no_swap_and_cgroup_flags_on_pis,
    test_unit_enabled_and_active,
)

ENDPOINT = "k3s-api.mol-ha.lab"


def _config(host) -> dict:
    return yaml.safe_load(host.check_output("sudo cat /etc/rancher/k3s/config.yaml"))


def test_first_server_inits_etcd_others_join_through_the_endpoint(host) -> None:
    name = host.backend.get_hostname()
    data = _config(host)
    if name == "srv1":
        assert data["cluster-init"] is True
        assert "server" not in data
    else:
        assert "cluster-init" not in data
        assert data["server"] == f"https://{ENDPOINT}:6443"
    if name.startswith("srv"):
        assert ENDPOINT in data["tls-san"]


def test_every_server_is_an_etcd_member(host) -> None:
    if host.backend.get_hostname() != "srv2":
        return
    nodes = json.loads(host.check_output("sudo k3s kubectl get nodes -o json"))["items"]
    roles = {n["metadata"]["name"]: sorted(k.split("/", 1)[1] for k in n["metadata"]["labels"]
                                           if k.startswith("node-role.kubernetes.io/")) for n in nodes}
    for srv in ("srv1", "srv2", "srv3"):
        assert {"control-plane", "etcd"} <= set(roles[srv]), roles
    assert not {"control-plane", "etcd"} & set(roles["agt1"]), roles


def test_the_endpoint_name_is_in_every_server_certificate(host) -> None:
    """Each server answers for the endpoint name, so the name can move to any of them."""
    if host.backend.get_hostname() != "srv1":
        return
    kubeconfig = yaml.safe_load((EPHEMERAL / "inventory" / ".kube" / "k3s.yaml").read_text())
    inv = lab_hostvars()
    for srv in ("srv1", "srv2", "srv3"):
        nodes = api_get(kubeconfig, "/api/v1/nodes", connect_to=inv[srv]["ansible_host"])["items"]
        assert len(nodes) == 4


def test_merged_into_the_operator_kubeconfig_keeping_the_other_cluster(host) -> None:
    if host.backend.get_hostname() != "srv1":
        return
    path = EPHEMERAL / "operator" / ".kube" / "config"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    doc = yaml.safe_load(path.read_text())
    assert [c["name"] for c in doc["clusters"]] == ["work", "k3s"]
    assert [c["name"] for c in doc["contexts"]] == ["work", "k3s"]
    assert doc["current-context"] == "work"  # the operator's choice is kept
    assert doc["users"][0]["user"] == {"token": "not-a-secret"}
    k3s = next(c["cluster"] for c in doc["clusters"] if c["name"] == "k3s")
    assert k3s["server"] == f"https://{ENDPOINT}:6443"
    nodes = api_get({**doc, "current-context": "k3s"}, "/api/v1/nodes",
                    connect_to=lab_hostvars()["srv1"]["ansible_host"])["items"]
    assert len(nodes) == 4


# ------------------------------------------------ the virtual IP (kube-vip), kept last: it stops a server

SERVERS = ["srv1", "srv2", "srv3"]


def _other(name: str):  # a testinfra host
    import testinfra
    return testinfra.get_host(f"ansible://{name}?ansible_inventory={EPHEMERAL / 'inventory'}")


def _holders(vip: str) -> list[str]:
    return [s for s in SERVERS if f"inet {vip}/32" in _other(s).check_output("ip -4 addr show dev eth0")]


def _kubeconfig() -> dict:
    return yaml.safe_load((EPHEMERAL / "inventory" / ".kube" / "k3s.yaml").read_text())


def test_the_virtual_ip_is_held_by_one_server_and_named_by_every_certificate(host) -> None:
    if host.backend.get_hostname() != "srv1":
        return
    import base64
    import socket
    import ssl
    vip = host.ansible.get_variables()["pik3s_lab_vip"]  # k3s_api_vip is "{{ pik3s_lab_vip }}"
    ca = base64.b64decode(_kubeconfig()["clusters"][0]["cluster"]["certificate-authority-data"]).decode()
    inv = lab_hostvars()
    for srv in SERVERS:  # each server's certificate is valid for the VIP (an IP SAN), so any can hold it
        tls = ssl.create_default_context(cadata=ca)
        with socket.create_connection((inv[srv]["ansible_host"], 6443), timeout=10) as raw, \
                tls.wrap_socket(raw, server_hostname=vip) as conn:
            assert conn.version()
        assert vip in _config(_other(srv))["tls-san"]
    assert len(_holders(vip)) == 1
    assert len(api_get(_kubeconfig(), "/api/v1/nodes", connect_to=vip)["items"]) == 4


def test_the_virtual_ip_moves_when_its_server_stops(host) -> None:
    if host.backend.get_hostname() != "srv1":
        return
    import time
    vip = host.ansible.get_variables()["pik3s_lab_vip"]  # k3s_api_vip is "{{ pik3s_lab_vip }}"
    (holder,) = _holders(vip)
    _other(holder).check_output("sudo systemctl stop k3s")
    try:
        deadline, answered, others = time.monotonic() + 60, False, []
        while time.monotonic() < deadline and not answered:
            time.sleep(2)
            others = _holders(vip)
            try:
                answered = others not in ([], [holder]) and len(
                    api_get(_kubeconfig(), "/api/v1/nodes", connect_to=vip)["items"]) == 4
            except (AssertionError, OSError):
                answered = False
        assert answered, f"the API did not answer at {vip} after {holder} stopped (holders: {others})"
        assert len(others) == 1 and holder not in others
    finally:
        _other(holder).check_output("sudo systemctl start k3s")
    deadline, ready = time.monotonic() + 120, {}
    while time.monotonic() < deadline:
        ready = {n["metadata"]["name"]: n["status"]["conditions"][0]["status"]
                 for n in api_get(_kubeconfig(), "/api/v1/nodes", connect_to=vip)["items"]}
        if set(ready.values()) == {"True"}:
            break
        time.sleep(2)
    assert set(ready.values()) == {"True"}, ready
    assert _holders(vip) == others  # the server that came back does not take the address back
