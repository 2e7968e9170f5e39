"""pik3s dashboard's last step, against a simulated server on loopback: a token for the add-on's
sign-in account asked of the API with the admin kubeconfig, and how to reach the add-on (a
port-forward, or the node port of a NodePort Service)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from pik3s import ui
from pik3s.errors import Pik3sError
from pik3s_lab.simulator import httpclient as sim_httpclient
from tests.unit.lab.simharness import Node

MakeNode = Callable[..., Node]
INFO = {"addon": "headlamp", "namespace": "headlamp", "service": "headlamp", "port": 80, "scheme": "http",
        "account": "read-only-user", "note": ""}


@pytest.mark.parametrize(("text", "seconds"), [("1h", 3600), ("90m", 5400), ("1h30m", 5400), ("600s", 600),
                                               ("48h", 172800)])
def test_durations(text: str, seconds: int) -> None:
    assert ui.parse_duration(text) == seconds


@pytest.mark.parametrize(("text", "message"), [
    ("5m", "--duration 5m: a token lives between 10m and 48h"),
    ("3d", "--duration '3d': write a duration like 30m, 1h or 1h30m"),
    ("", "--duration '': write a duration like 30m, 1h or 1h30m")])
def test_bad_durations(text: str, message: str) -> None:
    with pytest.raises(Pik3sError) as exc:
        ui.parse_duration(text)
    assert str(exc.value) == message


def _apply(node: Node, tmp: Path, text: str) -> None:
    f = tmp / "m.yaml"
    f.write_text(text)
    res = node.kubectl("apply", "-f", str(f))
    assert res.returncode == 0, res.stderr


def test_token_port_forward_and_node_port(make_node: MakeNode, tmp_path: Path) -> None:
    s1 = make_node("s1").start("--token", "lab-token-password").wait_up()
    kubeconfig = s1.root / "etc/rancher/k3s/k3s.yaml"
    _apply(s1, tmp_path, "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: headlamp\n---\n"
                         "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: read-only-user\n"
                         "  namespace: headlamp\n")
    got = ui.access({**INFO, "kubeconfig": str(kubeconfig)}, "15m")
    assert got.port_forward == f"kubectl --kubeconfig {kubeconfig} -n headlamp port-forward svc/headlamp 8080:80"
    assert got.url == "http://localhost:8080/"
    assert "the Service headlamp/headlamp does not exist (yet)" in got.note
    assert got.token.count(".") == 2 and got.expires.endswith("Z")
    # The token is the account's: the API knows it as system:serviceaccount:headlamp:read-only-user.
    ca = (s1.data_dir / "server/tls/server-ca.crt").read_text()
    with pytest.raises(sim_httpclient.HttpError) as exc:  # no binding in this test: refused, and named
        sim_httpclient.https_request(s1.url + "/api/v1/nodes", cadata=ca, bearer=got.token)
    assert exc.value.status == 403 and 'User \\"system:serviceaccount:headlamp:read-only-user\\"' in exc.value.body
    assert got.token not in ui.text(got).replace(got.token, "", 1)  # printed once
    _apply(s1, tmp_path, "apiVersion: v1\nkind: Service\nmetadata:\n  name: headlamp\n  namespace: headlamp\n"
                         "spec:\n  type: NodePort\n  ports:\n  - port: 80\n    nodePort: 30080\n")
    got = ui.access({**INFO, "kubeconfig": str(kubeconfig)})
    assert (got.url, got.port_forward, got.note) == (f"http://{s1.ip}:30080/", "", "")
    with pytest.raises(Pik3sError, match=r"refused a token for headlamp/admin-user \(404\)"):
        ui.access({**INFO, "account": "admin-user", "kubeconfig": str(kubeconfig)})
    assert json.dumps(got.to_dict())
