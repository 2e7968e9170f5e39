"""Real Kubernetes clients against the pik3s K3s simulator: the operator's own kubectl and the Python
`kubernetes` client, with the admin kubeconfig the server writes. If the simulator's API were only
shaped for its own kubectl, a deploy that passes in the lab would leave an operator whose tools
cannot even list nodes.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import kubernetes
import pytest

from tests.unit.lab.simharness import Node
from tests.unit.lab.test_k3s_simulator_objects import ACCESS

MakeNode = Callable[..., Node]


def _kubectl() -> str:
    found = shutil.which("kubectl")
    assert found, "no kubectl on PATH: .ci/run installs Debian's kubernetes-client where none is present"
    return found


def test_real_kubectl(make_node: MakeNode, tmp_path: Path) -> None:
    s1 = make_node("s1").start("--token", "lab-token-password").wait_up()
    cfg = str(s1.root / "etc/rancher/k3s/k3s.yaml")
    manifest = tmp_path / "access.yaml"
    manifest.write_text(ACCESS)

    def kubectl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([_kubectl(), "--kubeconfig", cfg, *args], capture_output=True, text=True, timeout=60,
                              check=False)

    res = kubectl("get", "nodes")
    assert res.returncode == 0, res.stderr
    assert res.stdout.split()[:5] == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    assert res.stdout.splitlines()[1].split()[:2] == ["s1", "Ready"]
    res = kubectl("apply", "-f", str(manifest))
    assert res.returncode == 0, res.stderr
    assert "clusterrolebinding.rbac.authorization.k8s.io/ui-admin-user created" in res.stdout
    res = kubectl("get", "serviceaccounts", "-A", "-o", "name")
    assert res.returncode == 0 and res.stdout.split() == ["serviceaccount/admin-user", "serviceaccount/default",
                                                          "serviceaccount/nobody"]
    version = kubectl("version", "--client", "-o", "json")
    if '"minor": "2' in version.stdout or '"minor": "3' in version.stdout:  # create token: kubectl 1.24 and later
        res = kubectl("-n", "ui", "create", "token", "admin-user", "--duration", "10m")
        assert res.returncode == 0 and res.stdout.count(".") == 2, res.stderr
        token = res.stdout.strip()
        res = kubectl("--token", token, "get", "nodes", "-o", "name")
        assert res.returncode == 0 and res.stdout == "node/s1\n", res.stderr
    res = kubectl("delete", "-f", str(manifest), "--wait=false")
    assert res.returncode == 0, res.stderr
    assert 'serviceaccount "nobody" deleted' in res.stdout


def test_python_kubernetes_client(make_node: MakeNode, tmp_path: Path) -> None:
    s1 = make_node("s1").start("--token", "lab-token-password").wait_up()
    api_client = kubernetes.config.new_client_from_config(str(s1.root / "etc/rancher/k3s/k3s.yaml"))
    core = kubernetes.client.CoreV1Api(api_client)
    assert [n.metadata.name for n in core.list_node().items] == ["s1"]
    manifest = tmp_path / "access.yaml"
    manifest.write_text(ACCESS)
    kubernetes.utils.create_from_yaml(api_client, str(manifest))
    assert sorted(sa.metadata.name for sa in core.list_service_account_for_all_namespaces().items) == [
        "admin-user", "default", "nobody"]  # default: made with its namespace, as the API server does
    request = kubernetes.client.AuthenticationV1TokenRequest(
        spec=kubernetes.client.V1TokenRequestSpec(audiences=[], expiration_seconds=600))
    token = core.create_namespaced_service_account_token("admin-user", "ui", request).status.token
    cfg = kubernetes.client.Configuration()
    cfg.host = api_client.configuration.host
    cfg.ssl_ca_cert = api_client.configuration.ssl_ca_cert
    cfg.api_key = {"authorization": f"Bearer {token}"}
    with_token = kubernetes.client.CoreV1Api(kubernetes.client.ApiClient(cfg))
    assert [n.metadata.name for n in with_token.list_node().items] == ["s1"]
    nobody = core.create_namespaced_service_account_token("nobody", "ui", request).status.token
    cfg.api_key = {"authorization": f"Bearer {nobody}"}
    with pytest.raises(kubernetes.client.ApiException) as exc:
        kubernetes.client.CoreV1Api(kubernetes.client.ApiClient(cfg)).list_node()
    assert exc.value.status == 403
    rbac = kubernetes.client.RbacAuthorizationV1Api(api_client)
    rbac.delete_cluster_role_binding("ui-admin-user")
    core.delete_namespace("ui")
    assert [n.metadata.name for n in core.list_namespace().items if n.metadata.name == "ui"] in ([], ["ui"])
