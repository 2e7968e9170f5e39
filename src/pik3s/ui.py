"""`pik3s dashboard`: how to open a UI add-on, and a short-lived token to sign in with.

The token is asked of the cluster's API directly, with the admin kubeconfig the deploy fetched,
after the playbook has run: it never passes through Ansible's events, logs or results, and only
the dashboard verb prints it.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import shutil
import ssl
import tempfile
import urllib.parse
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from pik3s.errors import Pik3sError

DEFAULT_DURATION = "1h"
# The API server's bounds for a requested token's lifetime.
MIN_SECONDS, MAX_SECONDS = 600, 48 * 3600
LOCAL_PORTS = {"http": 8080, "https": 8443}


def parse_duration(text: str) -> int:
    """Seconds in 90m, 1h, 1h30m, 3600s (kubectl create token's --duration)."""
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", text.strip())
    if not text.strip() or parts is None:
        raise Pik3sError(f"--duration {text!r}: write a duration like 30m, 1h or 1h30m")
    hours, minutes, seconds = (int(g or 0) for g in parts.groups())
    total = hours * 3600 + minutes * 60 + seconds
    if not MIN_SECONDS <= total <= MAX_SECONDS:
        raise Pik3sError(f"--duration {text}: a token lives between 10m and 48h")
    return total


@dataclass
class DashboardAccess:
    addon: str
    namespace: str
    service: str
    account: str
    kubeconfig: str
    port_forward: str
    url: str
    token: str
    expires: str
    note: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Api:
    """Requests to the cluster's API with the fetched kubeconfig's admin client certificate."""

    def __init__(self, kubeconfig: Path):
        try:
            cfg = yaml.safe_load(kubeconfig.read_text())
            ctx_name = cfg["current-context"]
            ctx = next(c["context"] for c in cfg["contexts"] if c["name"] == ctx_name)
            cluster = next(c["cluster"] for c in cfg["clusters"] if c["name"] == ctx["cluster"])
            user = next(u["user"] for u in cfg["users"] if u["name"] == ctx["user"])
            self.server = urllib.parse.urlsplit(cluster["server"])
            ca = base64.b64decode(cluster["certificate-authority-data"]).decode()
            cert = base64.b64decode(user["client-certificate-data"])
            key = base64.b64decode(user["client-key-data"])
        except (OSError, KeyError, StopIteration, TypeError, ValueError, yaml.YAMLError) as exc:
            raise Pik3sError(f"cannot use the kubeconfig {kubeconfig}: {exc}") from None
        self.ctx = ssl.create_default_context(cadata=ca)
        tmp = tempfile.mkdtemp(prefix="pik3s-kc-")
        try:
            os.chmod(tmp, 0o700)
            for name, data in (("c.pem", cert), ("k.pem", key)):
                fd = os.open(os.path.join(tmp, name), os.O_WRONLY | os.O_CREAT, 0o600)
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
            self.ctx.load_cert_chain(os.path.join(tmp, "c.pem"), os.path.join(tmp, "k.pem"))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        conn = http.client.HTTPSConnection(self.server.hostname or "", self.server.port or 443, context=self.ctx,
                                           timeout=30)
        try:
            conn.request(method, path, body=None if body is None else json.dumps(body),
                         headers={"Content-Type": "application/json", "Accept": "application/json"})
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, ssl.SSLError) as exc:
            raise Pik3sError(f"cannot reach the cluster's API at {self.server.geturl()}: {exc}") from None
        finally:
            conn.close()
        try:
            return resp.status, json.loads(data) if data else {}
        except ValueError:
            return resp.status, {"message": data.decode(errors="replace").strip()}


def access(info: dict[str, Any], duration: str = DEFAULT_DURATION) -> DashboardAccess:
    """From the playbook's report (``pik3s_dashboard``): a fresh token and how to open the add-on."""
    seconds = parse_duration(duration)
    kubeconfig = Path(str(info["kubeconfig"]))
    api = _Api(kubeconfig)
    ns, account, service = str(info["namespace"]), str(info["account"]), str(info["service"])
    status, reply = api.call("POST", f"/api/v1/namespaces/{ns}/serviceaccounts/{account}/token",
                             {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                              "spec": {"expirationSeconds": seconds}})
    if status != 201 or not (reply.get("status") or {}).get("token"):
        raise Pik3sError(f"the API refused a token for {ns}/{account} ({status}): {reply.get('message', reply)}")
    scheme, port = str(info["scheme"]), int(info["port"])
    local = LOCAL_PORTS.get(scheme, 8080)
    port_forward = f"kubectl --kubeconfig {kubeconfig} -n {ns} port-forward svc/{service} {local}:{port}"
    url, note = f"{scheme}://localhost:{local}/", str(info.get("note") or "")
    status, svc = api.call("GET", f"/api/v1/namespaces/{ns}/services/{service}")
    if status == 200 and (svc.get("spec") or {}).get("type") == "NodePort":
        node_port = next((p.get("nodePort") for p in svc["spec"].get("ports") or [] if p.get("port") == port), None)
        if node_port:
            url, port_forward = f"{scheme}://{api.server.hostname}:{node_port}/", ""
    elif status == 404:
        extra = (f"the Service {ns}/{service} does not exist (yet): the chart's install job completed, its "
                 "objects may still be starting")
        note = f"{note}; {extra}" if note else extra
    return DashboardAccess(addon=str(info["addon"]), namespace=ns, service=service, account=account,
                           kubeconfig=str(kubeconfig), port_forward=port_forward, url=url,
                           token=reply["status"]["token"], expires=str(reply["status"].get("expirationTimestamp", "")),
                           note=note)


def text(a: DashboardAccess) -> str:
    lines = [f"{a.addon}: signed in as {a.namespace}/{a.account}"]
    if a.note:
        lines.append(f"note: {a.note}")
    if a.port_forward:
        lines += ["open it through the API (leave this running):", f"  {a.port_forward}"]
    lines += [f"then browse to {a.url}", f"token (valid until {a.expires}):", f"  {a.token}"]
    return "\n".join(lines)
