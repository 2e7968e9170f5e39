from __future__ import annotations

import copy

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.pik3s.cluster.plugins.filter.k3s_kubeconfig import (
    FilterModule,
    k3s_kubeconfig_merge,
    k3s_kubeconfig_rename,
)

# The shape K3s writes to /etc/rancher/k3s/k3s.yaml.
K3S_YAML = {
    "apiVersion": "v1", "kind": "Config", "preferences": {},
    "clusters": [{"name": "default",
                  "cluster": {"certificate-authority-data": "Q0E=", "server": "https://127.0.0.1:6443"}}],
    "contexts": [{"name": "default", "context": {"cluster": "default", "user": "default"}}],
    "users": [{"name": "default", "user": {"client-certificate-data": "Q0VSVA==", "client-key-data": "S0VZ"}}],
    "current-context": "default",
}


def test_rename_points_at_the_endpoint_and_keeps_credentials() -> None:
    before = copy.deepcopy(K3S_YAML)
    out = k3s_kubeconfig_rename(K3S_YAML, "lab", "https://k3s-api.lan:6443")
    assert K3S_YAML == before  # input untouched
    assert out["clusters"] == [{"name": "lab", "cluster": {"certificate-authority-data": "Q0E=",
                                                           "server": "https://k3s-api.lan:6443"}}]
    assert out["contexts"] == [{"name": "lab", "context": {"cluster": "lab", "user": "lab"}}]
    assert out["users"] == [{"name": "lab", "user": K3S_YAML["users"][0]["user"]}]
    assert out["current-context"] == "lab"
    assert out["preferences"] == {} and out["kind"] == "Config"


@pytest.mark.parametrize(("kubeconfig", "name", "server", "message"), [
    ({}, "lab", "https://a:6443", "exactly one entry in 'clusters'"),
    ({**K3S_YAML, "users": []}, "lab", "https://a:6443", "exactly one entry in 'users'"),
    ({**K3S_YAML, "contexts": [{}, {}]}, "lab", "https://a:6443", "exactly one entry in 'contexts'"),
    ("not yaml", "lab", "https://a:6443", "exactly one entry in 'clusters'"),
    (K3S_YAML, "", "https://a:6443", "the cluster name must be a non-empty string"),
    (K3S_YAML, "lab", "http://a:6443", "must start with https://, got 'http://a:6443'"),
])
def test_rename_rejects(kubeconfig: object, name: str, server: str, message: str) -> None:
    with pytest.raises(AnsibleFilterError, match=message):
        k3s_kubeconfig_rename(kubeconfig, name, server)


def test_merge_into_nothing_is_the_new_config() -> None:
    new = k3s_kubeconfig_rename(K3S_YAML, "lab", "https://10.0.0.1:6443")
    for empty in (None, "", {}):
        out = k3s_kubeconfig_merge(empty, new)
        assert out["current-context"] == "lab"
        assert [c["name"] for c in out["clusters"]] == ["lab"]


def test_merge_replaces_by_name_keeps_others_and_the_current_context() -> None:
    other = k3s_kubeconfig_rename(K3S_YAML, "work", "https://work:6443")
    old_lab = k3s_kubeconfig_rename(K3S_YAML, "lab", "https://old:6443")
    existing = k3s_kubeconfig_merge(k3s_kubeconfig_merge(None, other), old_lab)
    assert existing["current-context"] == "work"
    new_lab = k3s_kubeconfig_rename(K3S_YAML, "lab", "https://new:6443")
    out = k3s_kubeconfig_merge(existing, new_lab)
    assert [c["name"] for c in out["clusters"]] == ["work", "lab"]
    assert out["clusters"][1]["cluster"]["server"] == "https://new:6443"
    assert out["clusters"][0] == other["clusters"][0]
    assert out["current-context"] == "work"
    assert k3s_kubeconfig_merge(out, new_lab) == out  # idempotent


@pytest.mark.parametrize(("existing", "new", "message"), [
    (["a"], {}, "the kubeconfig to merge into is not a mapping"),
    ({}, "x", "the kubeconfig to merge is not a mapping"),
])
def test_merge_rejects(existing: object, new: object, message: str) -> None:
    with pytest.raises(AnsibleFilterError, match=message):
        k3s_kubeconfig_merge(existing, new)


def test_registered() -> None:
    assert set(FilterModule().filters()) == {"k3s_kubeconfig_rename", "k3s_kubeconfig_merge"}
