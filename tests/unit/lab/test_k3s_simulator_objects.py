"""The pik3s K3s simulator's objects: apply and delete, service-account tokens and RBAC, the deploy
controller on the manifests directory and the helm controller, with real processes on loopback.

Each rule is one the real API server or K3s's controllers enforce; a deployer tested against a
simulator that let it slide would fail on a real cluster.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import io
import json
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pik3s_lab.simulator import httpclient as sim_httpclient
from pik3s_lab.simulator import objects as sim_objects
from tests.unit.lab.simharness import Node

MakeNode = Callable[..., Node]

ACCESS = """\
apiVersion: v1
kind: Namespace
metadata:
  name: ui
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: admin-user
  namespace: ui
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: ui-admin-user
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: cluster-admin
subjects:
  - kind: ServiceAccount
    name: admin-user
    namespace: ui
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: nobody
  namespace: ui
"""


def _server(make_node: MakeNode, name: str = "s1", *extra: str) -> Node:
    return make_node(name).start("--token", "lab-token-password", *extra).wait_up()


def _ok(res: object) -> str:
    assert getattr(res, "returncode") == 0, getattr(res, "stderr")  # noqa: B009
    return str(getattr(res, "stdout"))  # noqa: B009


def _wait(check: Callable[[], bool], what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _api(node: Node, path: str, token: str, method: str = "GET", body: object = None) -> object:
    ca = (node.data_dir / "server/tls/server-ca.crt").read_text()
    return json.loads(sim_httpclient.https_request(node.url + path, method, body, cadata=ca, bearer=token))


def test_apply_get_delete_with_kubectl(make_node: MakeNode, tmp_path: Path) -> None:
    s1 = _server(make_node)
    f = tmp_path / "access.yaml"
    f.write_text(ACCESS)
    assert _ok(s1.kubectl("apply", "-f", str(f))).splitlines() == [
        "namespace/ui created", "serviceaccount/admin-user created",
        "clusterrolebinding.rbac.authorization.k8s.io/ui-admin-user created", "serviceaccount/nobody created"]
    assert _ok(s1.kubectl("apply", "-f", str(f))).splitlines()[1] == "serviceaccount/admin-user unchanged"
    f.write_text(ACCESS.replace("  name: nobody\n", "  name: nobody\n  labels: {tier: ui}\n"))
    assert _ok(s1.kubectl("apply", "-f", str(f))).splitlines()[3] == "serviceaccount/nobody configured"
    assert _ok(s1.kubectl("get", "sa", "-n", "ui", "-l", "tier=ui", "-o", "name")) == "serviceaccount/nobody\n"
    table = _ok(s1.kubectl("get", "serviceaccounts", "-A")).splitlines()
    assert table[0].split() == ["NAMESPACE", "NAME", "SECRETS", "AGE"]
    assert [r.split()[:2] for r in table[1:]] == [["ui", "admin-user"], ["ui", "default"], ["ui", "nobody"]]
    crb = json.loads(_ok(s1.kubectl("get", "clusterrolebinding", "ui-admin-user", "-o", "json")))
    assert crb["roleRef"]["name"] == "cluster-admin" and crb["metadata"]["uid"]
    res = s1.kubectl("get", "sa", "ghost", "-n", "ui")
    assert res.returncode == 1 and res.stderr == 'Error from server (NotFound): serviceaccounts "ghost" not found\n'
    assert s1.kubectl("get", "sa").stderr == "No resources found in default namespace.\n"
    # A kind the server does not serve, in a file: kubectl's mapping error; in a namespace that does not exist: 404.
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n")
    res = s1.kubectl("apply", "-f", str(bad))
    assert res.returncode == 1 and 'no matches for kind "Widget" in version "example.com/v1"' in res.stderr
    bad.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  namespace: nowhere\n")
    res = s1.kubectl("apply", "-f", str(bad))
    assert res.returncode == 1 and res.stderr == 'Error from server (NotFound): namespaces "nowhere" not found\n'
    bad.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: Bad_Name\n")
    res = s1.kubectl("apply", "-f", str(bad))
    assert res.returncode == 1 and 'ConfigMap "Bad_Name" is invalid: metadata.name: Invalid value' in res.stderr
    # Several -f files in one call, in order.
    extra = tmp_path / "extra.yaml"
    extra.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra\n  namespace: ui\n")
    assert _ok(s1.kubectl("apply", "-f", str(f), f"--filename={extra}")).splitlines()[-1] == \
        "configmap/extra created"
    assert _ok(s1.kubectl("delete", "-f", str(extra), "-f", str(extra), "--ignore-not-found")) == \
        'configmap "extra" deleted\n'
    # delete -f: every object, then --ignore-not-found quiet, without it NotFound per object.
    assert _ok(s1.kubectl("delete", "-f", str(f))).splitlines()[0] == 'namespace "ui" deleted'
    assert _ok(s1.kubectl("delete", "-f", str(f), "--ignore-not-found")) == ""
    res = s1.kubectl("delete", "-f", str(f))
    assert res.returncode == 1 and f'error when deleting "{f}": namespaces "ui" not found' in res.stderr


def test_service_account_tokens_and_rbac(make_node: MakeNode, tmp_path: Path) -> None:
    s1 = _server(make_node)
    f = tmp_path / "access.yaml"
    f.write_text(ACCESS)
    _ok(s1.kubectl("apply", "-f", str(f)))
    admin = _ok(s1.kubectl("create", "token", "admin-user", "-n", "ui", "--duration", "1h")).strip()
    nodes = _api(s1, "/api/v1/nodes", admin)
    assert [n["metadata"]["name"] for n in nodes["items"]] == ["s1"]  # type: ignore[index]
    nobody = _ok(s1.kubectl("create", "token", "nobody", "-n", "ui")).strip()
    with pytest.raises(sim_httpclient.HttpError) as exc:
        _api(s1, "/api/v1/nodes", nobody)
    assert exc.value.status == 403
    assert json.loads(exc.value.body)["message"] == (
        'nodes is forbidden: User "system:serviceaccount:ui:nobody" cannot list resource "nodes" in API group "" '
        "at the cluster scope")
    # Discovery is open to any authenticated user; a namespaced read is refused with its namespace named.
    assert _api(s1, "/api", nobody)["versions"] == ["v1"]  # type: ignore[index]
    with pytest.raises(sim_httpclient.HttpError) as exc:
        _api(s1, "/api/v1/namespaces/ui/serviceaccounts/admin-user", nobody)
    assert json.loads(exc.value.body)["message"] == (
        'serviceaccounts "admin-user" is forbidden: User "system:serviceaccount:ui:nobody" cannot get resource '
        '"serviceaccounts" in API group "" in the namespace "ui"')
    # Bound to the built-in view role: reads in its namespace, no nodes, no writes.
    s1_view = tmp_path / "view.yaml"
    s1_view.write_text("apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n  name: v\n"
                       "  namespace: ui\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: ClusterRole\n"
                       "  name: view\nsubjects:\n- kind: ServiceAccount\n  name: nobody\n  namespace: ui\n")
    _ok(s1.kubectl("apply", "-f", str(s1_view)))
    assert len(_api(s1, "/api/v1/namespaces/ui/serviceaccounts", nobody)["items"]) == 3  # type: ignore[index]
    with pytest.raises(sim_httpclient.HttpError) as exc:
        _api(s1, "/api/v1/namespaces/ui/configmaps", nobody, "POST",
             {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}})
    assert exc.value.status == 403
    # A kubeconfig with the token works for the simulator's kubectl too.
    cfg = tmp_path / "token.kubeconfig"
    ca = base64.b64encode((s1.data_dir / "server/tls/server-ca.crt").read_bytes()).decode()
    cfg.write_text(f"apiVersion: v1\nkind: Config\ncurrent-context: t\nclusters:\n- name: c\n  cluster:\n"
                   f"    server: {s1.url}\n    certificate-authority-data: {ca}\ncontexts:\n- name: t\n  context:\n"
                   f"    cluster: c\n    user: u\nusers:\n- name: u\n  user:\n    token: {admin}\n")
    assert _ok(s1.run("kubectl", "--kubeconfig", str(cfg), "get", "nodes", "-o", "name")) == "node/s1\n"
    # A forged signature, and the token of an account deleted and made again: 401.
    with pytest.raises(sim_httpclient.HttpError) as exc:
        _api(s1, "/api/v1/nodes", admin[:-2] + ("AA" if not admin.endswith("AA") else "BB"))
    assert exc.value.status == 401
    _ok(s1.kubectl("delete", "sa", "admin-user", "-n", "ui"))
    _ok(s1.kubectl("apply", "-f", str(f)))
    with pytest.raises(sim_httpclient.HttpError) as exc:
        _api(s1, "/api/v1/nodes", admin)
    assert exc.value.status == 401
    res = s1.kubectl("create", "token", "ghost", "-n", "ui")
    assert res.returncode == 1 and res.stderr == 'error: failed to create token: serviceaccounts "ghost" not found\n'


def _chart(name: str, version: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = f"apiVersion: v2\nname: {name}\nversion: {version}\n".encode()
        info = tarfile.TarInfo(f"{name}/Chart.yaml")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture
def chart_repo(tmp_path: Path) -> Iterator[str]:
    """A Helm repository on loopback: index.yaml and one chart archive."""
    root = tmp_path / "repo"
    (root / "charts").mkdir(parents=True)
    archive = _chart("demo", "1.2.0")
    (root / "charts" / "demo-1.2.0.tgz").write_bytes(archive)
    (root / "charts" / "index.yaml").write_text(
        "apiVersion: v1\nentries:\n  demo:\n  - name: demo\n    version: 1.2.0\n"
        f"    digest: {hashlib.sha256(archive).hexdigest()}\n    urls:\n    - demo-1.2.0.tgz\n")

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a: object, **kw: object) -> None:
            super().__init__(*a, directory=str(root), **kw)  # type: ignore[arg-type]

        def log_message(self, *_a: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/charts"
    httpd.shutdown()


def test_deploy_controller_and_helm_charts(make_node: MakeNode, chart_repo: str) -> None:
    repo = chart_repo.removesuffix("/charts")
    s1 = _server(make_node)
    manifests = s1.data_dir / "server/manifests"
    (manifests / "pik3s").mkdir(parents=True, exist_ok=True)
    demo = manifests / "pik3s" / "demo.yaml"
    demo.write_text(ACCESS + "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: ui\n"
                    "data:\n  app.conf: |\n    a = 1\n    b = 2\n")

    def get(*args: str) -> object:
        res = s1.kubectl("get", *args, "-o", "json")
        return json.loads(res.stdout) if res.returncode == 0 else None

    _wait(lambda: get("configmap", "settings", "-n", "ui") is not None, "the manifest's objects")
    assert get("configmap", "settings", "-n", "ui")["data"] == {"app.conf": "a = 1\nb = 2\n"}  # type: ignore[index]
    addon = get("addon", "demo", "-n", "kube-system")
    assert addon["spec"]["source"] == str(demo)  # type: ignore[index]
    assert addon["spec"]["checksum"] == hashlib.sha256(demo.read_bytes()).hexdigest()  # type: ignore[index]
    sa = get("sa", "admin-user", "-n", "ui")
    assert sa["metadata"]["annotations"]["objectset.rio.cattle.io/owner-name"] == "demo"  # type: ignore[index]
    # An object dropped from a changed file is deleted; a deleted file's objects stay (as K3s).
    demo.write_text(ACCESS)
    _wait(lambda: get("configmap", "settings", "-n", "ui") is None, "the dropped object to go")
    demo.unlink()
    time.sleep(1)
    assert get("sa", "nobody", "-n", "ui") is not None
    # A file name that is no valid object name: K3s's message, nothing applied.
    (manifests / "bad_name.yaml").write_text("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: other\n")
    s1.wait_log(f'failed to process {manifests / "bad_name.yaml"}: Addon.k3s.cattle.io \\"bad_name\\" is invalid')
    # A file whose namespace another file makes (applied after it, by name): tried again until it applies.
    (manifests / "a-uses.yaml").write_text("apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: late\n"
                                           "  namespace: later\n")
    (manifests / "b-makes.yaml").write_text("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: later\n")
    _wait(lambda: get("sa", "late", "-n", "later") is not None, "the retried file's object")
    assert 'namespaces \\"later\\" not found' in s1.logs()
    # HelmCharts: from a repository, from chartContent, a version the repository lacks.
    (manifests / "charts.yaml").write_text(
        "apiVersion: helm.cattle.io/v1\nkind: HelmChart\nmetadata:\n  name: demo\n  namespace: kube-system\n"
        f"spec:\n  repo: {repo}/charts\n  chart: demo\n  version: 1.2.0\n  targetNamespace: apps\n"
        "  createNamespace: true\n  valuesContent: |-\n    replicas: 2\n---\n"
        "apiVersion: helm.cattle.io/v1\nkind: HelmChart\nmetadata:\n  name: packed\n  namespace: kube-system\n"
        f"spec:\n  chart: packed\n  version: 0.3.0\n  targetNamespace: ui\n"
        f"  chartContent: {base64.b64encode(_chart('packed', '0.3.0')).decode()}\n---\n"
        "apiVersion: helm.cattle.io/v1\nkind: HelmChart\nmetadata:\n  name: missing\n  namespace: kube-system\n"
        f"spec:\n  repo: {repo}/charts\n  chart: demo\n  version: 9.9.9\n")

    def job(name: str) -> dict[str, object] | None:
        return get("job", f"helm-install-{name}", "-n", "kube-system")  # type: ignore[return-value]

    _wait(lambda: all(job(n) for n in ("demo", "packed", "missing")), "the helm-install jobs")
    assert sim_objects.job_status(job("demo")) == "Complete"  # type: ignore[arg-type]
    assert sim_objects.job_status(job("packed")) == "Complete"  # type: ignore[arg-type]
    failed = job("missing")
    assert sim_objects.job_status(failed) == "Failed"  # type: ignore[arg-type]
    assert failed["status"]["conditions"][0]["message"] == (  # type: ignore[index]
        f'Error: chart "demo" version "9.9.9" not found in {repo}/charts repository')
    release = get("secret", "sh.helm.release.v1.demo.v1", "-n", "apps")
    assert release["metadata"]["labels"]["status"] == "deployed"  # type: ignore[index]
    table = _ok(s1.kubectl("get", "helmcharts", "-n", "kube-system")).splitlines()
    assert table[0].split()[:4] == ["NAME", "JOB", "CHART", "TARGETNAMESPACE"]
    # Deleting the HelmChart (kubectl delete -f of the file) leaves no install job behind to re-run.
    _ok(s1.kubectl("delete", "helmchart", "missing", "-n", "kube-system"))
    assert get("helmchart", "missing", "-n", "kube-system") is None


def test_objects_are_replicated_and_served_by_every_server(make_node: MakeNode, tmp_path: Path) -> None:
    s1 = _server(make_node, "s1", "--cluster-init")
    s2 = make_node("s2").start("--server", s1.url, "--token", s1.token).wait_up()
    f = tmp_path / "access.yaml"
    f.write_text(ACCESS)
    _ok(s2.kubectl("apply", "-f", str(f)))  # written through the leader, read on the other server
    assert "admin-user" in _ok(s1.kubectl("get", "sa", "-n", "ui", "-o", "name"))
    token = _ok(s1.kubectl("create", "token", "admin-user", "-n", "ui")).strip()
    assert _api(s2, "/api/v1/nodes", token)["kind"] == "NodeList"  # type: ignore[index]


def test_kube_vip_is_held_by_one_server_and_moves_when_it_stops(make_node: MakeNode) -> None:
    """The kube-vip DaemonSet pik3s renders, from the manifests directory: the leading server holds the
    address, another takes it when that one stops (PIK3S_SIM_NETWORK=0 here: logged, interfaces untouched)."""
    from ansible_collections.pik3s.cluster.plugins.plugin_utils import k3s_addons
    manifest = k3s_addons.kube_vip_file("10.9.8.7", "eth0", 6443)[0]["content"]
    s1 = _server(make_node, "s1", "--cluster-init")
    s2 = make_node("s2").start("--server", s1.url, "--token", s1.token).wait_up()
    s3 = make_node("s3").start("--server", s1.url, "--token", s1.token).wait_up()
    for node in (s1, s2, s3):
        (node.data_dir / "server/manifests/pik3s").mkdir(parents=True, exist_ok=True)
        (node.data_dir / "server/manifests/pik3s/kube-vip.yaml").write_text(manifest)
    def holders() -> list[str]:
        return [n.name for n in (s1, s2, s3) if f"{n.name} holds the lease" in n.logs()]

    _wait(lambda: holders() != [], "a server to take the lease")
    time.sleep(2)
    (first,) = holders()  # one server at a time: the Lease is taken through the datastore
    lease = json.loads(_ok(s2.kubectl("get", "lease", "plndr-cp-lock", "-n", "kube-system", "-o", "json")))
    assert lease["spec"]["holderIdentity"] == first and lease["spec"]["leaseDurationSeconds"] == 6
    holder = next(n for n in (s1, s2, s3) if n.name == first)
    holder.stop()
    assert f"{first} lets 10.9.8.7 go" in holder.logs()
    _wait(lambda: len(holders()) == 2, "another server to take the lease")
    time.sleep(2)
    assert len(holders()) == 2  # the one that stopped, and exactly one other
