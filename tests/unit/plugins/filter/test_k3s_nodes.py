from __future__ import annotations

import json

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.pik3s.cluster.plugins.filter.k3s_nodes import FilterModule, k3s_nodes_summary
from ansible_collections.pik3s.cluster.plugins.module_utils.k3s_token import mask_tokens_in_text

NODES = {"items": [
    {"metadata": {"name": "pi4-2", "labels": {"kubernetes.io/arch": "arm64"}},
     "spec": {"unschedulable": True},
     "status": {"conditions": [{"type": "MemoryPressure", "status": "False"},
                               {"type": "Ready", "status": "Unknown"}],
                "addresses": [{"type": "Hostname", "address": "pi4-2"}, {"type": "InternalIP", "address": "10.0.0.12"}],
                "nodeInfo": {"kubeletVersion": "v1.30.8+k3s1", "architecture": "arm64"}}},
    {"metadata": {"name": "pi4-1", "labels": {"node-role.kubernetes.io/master": "true",
                                              "node-role.kubernetes.io/control-plane": "true",
                                              "node-role.kubernetes.io/etcd": "true"}},
     "spec": {},
     "status": {"conditions": [{"type": "Ready", "status": "True"}],
                "addresses": [{"type": "InternalIP", "address": "10.0.0.11"}],
                "nodeInfo": {"kubeletVersion": "v1.31.4+k3s1", "architecture": "arm64"}}},
]}


def test_summary_sorted_with_roles_ready_and_cordon() -> None:
    assert k3s_nodes_summary(json.dumps(NODES)) == [
        {"name": "pi4-1", "roles": ["control-plane", "etcd", "master"], "ready": True, "schedulable": True,
         "version": "v1.31.4+k3s1", "arch": "arm64", "address": "10.0.0.11"},
        {"name": "pi4-2", "roles": [], "ready": False, "schedulable": False,
         "version": "v1.30.8+k3s1", "arch": "arm64", "address": "10.0.0.12"},
    ]
    assert k3s_nodes_summary(NODES) == k3s_nodes_summary(json.dumps(NODES))
    assert FilterModule().filters()["k3s_nodes_summary"] is k3s_nodes_summary


@pytest.mark.parametrize("bad", [{"kind": "Node"}, "[]", {"items": "x"}])
def test_not_a_node_list(bad: object) -> None:
    with pytest.raises(AnsibleFilterError, match=r"expected a Kubernetes NodeList \(kubectl get nodes -o json\)"):
        k3s_nodes_summary(bad)


TOKEN = "K10" + "0f" * 32 + "::server:" + "a1b2" * 8


@pytest.mark.parametrize(("text", "expected"), [
    (f"join with {TOKEN} now", "join with K100f0f0f0f...::server:******** now"),
    (f'{{"token": "{TOKEN}"}}', '{"token": "K100f0f0f0f...::server:********"}'),
    (f"token: {TOKEN}\n", "token: K100f0f0f0f...::server:********\n"),
    (f"a={TOKEN},b={TOKEN}", "a=K100f0f0f0f...::server:********,b=K100f0f0f0f...::server:********"),
    ("K10 is not a token", "K10 is not a token"),
    ("K10" + "0f" * 31 + "::server:short-hash", "K10" + "0f" * 31 + "::server:short-hash"),
])
def test_tokens_masked_in_text(text: str, expected: str) -> None:
    assert mask_tokens_in_text(text) == expected
