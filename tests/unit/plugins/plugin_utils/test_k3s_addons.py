"""The manifests pik3s renders for K3s's auto-deploy directory: what K3s (and the simulator's YAML
reader, which stands in for it in the lab) reads back, the add-ons' access, air-gapped charts."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import yaml

from ansible_collections.pik3s.cluster.plugins.plugin_utils import k3s_addons
from pik3s_lab import mirror
from pik3s_lab.simulator import controllers as sim_controllers
from pik3s_lab.simulator import yamlreader as sim_yamlreader

VALUES = {"replicas": 2, "ingress": {"enabled": True, "hosts": ["ui.lab"]}, "note": "two\nlines"}


def _docs(text: str) -> list[dict[str, object]]:
    docs = [d for d in yaml.safe_load_all(text) if d]
    assert sim_yamlreader.yaml_load_all(text) == docs  # the simulator reads exactly what a YAML library reads
    return docs


def test_chart_becomes_a_helmchart_in_kube_system() -> None:
    chart = {"name": "web", "chart": "nginx", "repo": "https://c.example/", "version": "1.2.0", "namespace": "apps",
             "values": VALUES}
    files, images = k3s_addons.files([chart], [], {}, "read-only")
    assert images == {}
    (doc,) = _docs(files[0]["content"])
    assert doc["kind"] == "HelmChart" and doc["metadata"] == {  # type: ignore[comparison-overlap]
        "name": "web", "namespace": "kube-system", "labels": {"app.kubernetes.io/managed-by": "pik3s"}}
    spec = doc["spec"]
    assert {k: spec[k] for k in ("chart", "repo", "version", "targetNamespace", "createNamespace")} == {  # type: ignore[index]
        "chart": "nginx", "repo": "https://c.example/", "version": "1.2.0", "targetNamespace": "apps",
        "createNamespace": True}
    assert yaml.safe_load(spec["valuesContent"]) == VALUES  # type: ignore[index]
    assert "valuesContent: |" in files[0]["content"]  # a block, as K3s's docs write it


def test_helmchartconfig_carries_values_only() -> None:
    config = {"name": "traefik", "kind": "HelmChartConfig", "values": {"ports": {"web": 8000}}}
    files = k3s_addons.files([config], [], {}, "read-only")[0]
    (doc,) = _docs(files[0]["content"])
    assert doc["kind"] == "HelmChartConfig" and list(doc["spec"]) == ["valuesContent"]  # type: ignore[call-overload]


ACCESS_CASES = [("read-only", "pik3s-read-only", "read-only-user"), ("admin", "cluster-admin", "admin-user")]


@pytest.mark.parametrize(("access", "role", "account"), ACCESS_CASES)
def test_ui_addon_has_namespace_chart_and_access(access: str, role: str, account: str) -> None:
    files = k3s_addons.files([], ["headlamp"], {"headlamp": {"repo": "http://mirror/charts"}}, access)[0]
    docs = _docs(files[0]["content"])
    kinds = [d["kind"] for d in docs]
    assert kinds[:3] == ["Namespace", "HelmChart", "ServiceAccount"] and kinds[-1] == "ClusterRoleBinding"
    chart = docs[1]["spec"]
    assert (chart["chart"], chart["version"], chart["repo"]) == ("headlamp", "0.43.0", "http://mirror/charts")  # type: ignore[index]
    assert docs[-1]["roleRef"]["name"] == role and docs[-1]["subjects"][0]["name"] == account  # type: ignore[index]
    if access == "read-only":
        rules = next(d for d in docs if d["kind"] == "ClusterRole")["rules"]
        assert not any("secrets" in r.get("resources", []) or (r.get("resources") == ["*"] and "" in r["apiGroups"])
                       for r in rules)  # type: ignore[union-attr]


def test_airgapped_chart_goes_in_as_chart_content_and_names_its_images(tmp_path: Path) -> None:
    mirror.chart_repository(tmp_path / "charts")
    files, images = k3s_addons.files([], ["dashboard"], {}, "read-only", str(tmp_path))
    chart = _docs(files[0]["content"])[1]["spec"]
    assert "repo" not in chart  # type: ignore[operator]
    data = base64.b64decode(chart["chartContent"])  # type: ignore[index]
    assert data == (tmp_path / "charts" / "kubernetes-dashboard-7.14.0.tgz").read_bytes()
    assert sim_controllers.chart_yaml(data)["version"] == "7.14.0"
    assert images == {"dashboard": ["docker.io/kubernetesui/dashboard-web:1.7.0"]}


def test_missing_or_broken_archive_is_named(tmp_path: Path) -> None:
    (tmp_path / "charts").mkdir()
    (tmp_path / "charts" / "headlamp-0.43.0.tgz").write_bytes(b"not a tarball")
    with pytest.raises(k3s_addons.AddonError, match=r"headlamp-0\.43\.0\.tgz: not a readable Helm chart archive"):
        k3s_addons.files([], ["headlamp"], {}, "read-only", str(tmp_path))
    problems = k3s_addons.problems([], [{"name": "x", "chart": "x", "version": "1.0.0"}], [], {}, "read-only",
                                   str(tmp_path))
    assert problems == [f"k3s_helm_charts[0] ('x'): air-gap mode needs the chart archive {tmp_path}/charts/x-1.0.0.tgz "
                        "on the controller (helm pull <repo>/<chart> --version <version>)"]


def test_manifest_content_forms() -> None:
    assert k3s_addons.manifest_content({"content": "a: 1"}) == "a: 1\n"
    two = k3s_addons.manifest_content({"content": [{"kind": "A"}, {"kind": "B"}]})
    assert _docs(two) == [{"kind": "A"}, {"kind": "B"}]
    assert k3s_addons.manifest_content({"src": "x"}, "kind: C") == "kind: C\n"


def test_ansible_data_types_render() -> None:
    """Ansible gives filters its own str/dict/list subclasses; they render as plain YAML."""
    class Text(str):
        pass

    class Mapping(dict):  # type: ignore[type-arg]
        pass

    chart = Mapping(name=Text("web"), chart=Text("nginx"), repo=Text("https://c.example/"), version=Text("1.0.0"),
                    values=Mapping(greeting=Text("two\nlines"), list=[Text("a")]))
    files = k3s_addons.files([chart], [], {}, "read-only")[0]
    (doc,) = _docs(files[0]["content"])
    assert yaml.safe_load(doc["spec"]["valuesContent"]) == {"greeting": "two\nlines", "list": ["a"]}  # type: ignore[index]
    assert _docs(k3s_addons.manifest_content({"content": Mapping(kind=Text("A"))})) == [{"kind": "A"}]


NETS = {"srv1": [{"ifname": "eth0", "address": "192.168.1.21", "prefix": 24},
                 {"ifname": "wlan0", "address": "10.0.0.5", "prefix": 24}],
        "srv2": [{"ifname": "eth0", "address": "192.168.1.22", "prefix": 24}]}
HOSTS = {"srv1": ["192.168.1.21"], "srv2": ["192.168.1.22"], "agt": ["192.168.1.30"]}


@pytest.mark.parametrize(("vip", "interface", "networks", "problems"), [
    ("192.168.1.50", "eth0", NETS, []),
    ("192.168.1.50", "eth0", {"srv1": None, "srv2": None}, []),  # offline: only what the inventory says
    ("192.168.2.50", "eth0", NETS, [
        "k3s_api_vip 192.168.2.50 is outside srv1's network on eth0 (192.168.1.0/24): kube-vip answers ARP for it "
        "only inside that network",
        "k3s_api_vip 192.168.2.50 is outside srv2's network on eth0 (192.168.1.0/24): kube-vip answers ARP for it "
        "only inside that network"]),
    ("10.0.0.5", "eth0", NETS, [
        "k3s_api_vip 10.0.0.5 is already an address of srv1 (wlan0): a virtual IP must be an address no host has",
        "k3s_api_vip 10.0.0.5 is outside srv1's network on eth0 (192.168.1.0/24): kube-vip answers ARP for it only "
        "inside that network",
        "k3s_api_vip 10.0.0.5 is outside srv2's network on eth0 (192.168.1.0/24): kube-vip answers ARP for it only "
        "inside that network"]),
    ("192.168.1.50", "wlan0", NETS, [
        "k3s_api_vip 192.168.1.50 is outside srv1's network on wlan0 (10.0.0.0/24): kube-vip answers ARP for it "
        "only inside that network",
        "srv2 has no IPv4 address on wlan0 (k3s_api_vip_interface); it has eth0"]),
    ("192.168.1.30", "eth0", NETS, [
        "k3s_api_vip 192.168.1.30 is the address of agt: a virtual IP must be an address no host has"]),
    ("fd00::5", "eth0", NETS, ["k3s_api_vip fd00::5: kube-vip's ARP mode takes an IPv4 address"]),
])
def test_vip_rules(vip: str, interface: str, networks: dict[str, object], problems: list[str]) -> None:
    assert k3s_addons.vip_problems(vip, interface, ["kube-vip"], HOSTS, networks) == problems


def test_kube_vip_manifest() -> None:
    files, images = k3s_addons.files([], ["kube-vip"], {"kube-vip": {"version": "v1.2.2"}}, "read-only", "",
                                     {"address": "192.168.1.50", "interface": "eth0", "port": 6443})
    assert images == {}
    (entry,) = files
    docs = _docs(entry["content"])
    assert entry["name"] == "kube-vip" and [d["kind"] for d in docs] == [
        "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "DaemonSet"]
    container = docs[-1]["spec"]["template"]["spec"]["containers"][0]  # type: ignore[index]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert container["image"] == "ghcr.io/kube-vip/kube-vip:v1.2.2"
    assert (env["address"], env["vip_interface"], env["vip_arp"], env["cp_enable"], env["port"]) == (
        "192.168.1.50", "eth0", "true", "true", "6443")
    assert docs[-1]["spec"]["template"]["spec"]["hostNetwork"] is True  # type: ignore[index]


def test_the_vip_held_by_kube_vip_is_no_conflict() -> None:
    """On a re-run kube-vip holds the address on a server, as a /32: the rule must not refuse it."""
    held = {**NETS, "srv2": [*NETS["srv2"], {"ifname": "eth0", "address": "192.168.1.50", "prefix": 32}]}
    assert k3s_addons.vip_problems("192.168.1.50", "eth0", ["kube-vip"], HOSTS, held) == []
    static = {**NETS, "srv2": [*NETS["srv2"], {"ifname": "eth0", "address": "192.168.1.50", "prefix": 24}]}
    assert k3s_addons.vip_problems("192.168.1.50", "eth0", ["kube-vip"], HOSTS, static) == [
        "k3s_api_vip 192.168.1.50 is already an address of srv2 (eth0): a virtual IP must be an address no host has"]
