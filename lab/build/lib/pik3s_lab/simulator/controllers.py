"""K3s's deploy and helm controllers and the kube-vip emulation."""

from __future__ import annotations

import base64
import copy
import hashlib
import http.client
import http.server
import io
import json
import os
import socket
import ssl
import subprocess
import tarfile
import time
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .common import SIM_NAME, log
from .datastore import ServiceUnavailable
from .httpclient import HttpError, _exchange, https_request
from .nodes import iso
from .objects import K3S_OWNER_ANNOTATIONS, KINDS, ApiStatus, Kind, Objects, _content, name_problem, object_key
from .yamlreader import YamlError, yaml_load, yaml_load_all

if TYPE_CHECKING:
    from .server import Server


# K3s's controllers for auto-deployed manifests and HelmCharts.
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
DEPLOY_SECONDS = float(os.environ.get("PIK3S_SIM_DEPLOY_SECONDS", "2"))
HELM_RETRY_SECONDS = float(os.environ.get("PIK3S_SIM_HELM_RETRY", "10"))
ADDON_RETRY_SECONDS = float(os.environ.get("PIK3S_SIM_ADDON_RETRY", "5"))
ADDON_KIND, HELMCHART_KIND, JOB_KIND, SECRET_KIND = (KINDS[k] for k in ("Addon", "HelmChart", "Job", "Secret"))


class DeployController:
    """K3s's deploy controller on one server: every file under server/manifests is applied when it is new
    or its modification time changes (and at start), its objects tracked by an Addon of the file's base
    name in kube-system; objects dropped from a changed file are deleted; a deleted file's objects stay;
    a file that fails is tried again after a pause."""

    def __init__(self, srv: Server):
        self.srv = srv
        self.dir = srv.server_dir / "manifests"
        self.seen: dict[str, float] = {}
        self.retry_at: dict[str, tuple[float, float]] = {}

    def files(self) -> list[Path]:
        if not self.dir.is_dir():
            return []
        out = []
        for path in sorted(self.dir.rglob("*")):
            if path.is_file() and path.suffix in MANIFEST_SUFFIXES and not Path(str(path) + ".skip").exists():
                out.append(path)
        return out

    def scan(self) -> None:
        for path in self.files():
            try:
                mtime = path.stat().st_mtime
            except OSError:
                continue
            if self.seen.get(str(path)) == mtime:
                continue
            retry = self.retry_at.get(str(path))
            if retry and retry[0] == mtime and time.monotonic() < retry[1]:
                continue
            try:
                self.process(path)
                self.seen[str(path)] = mtime
                self.retry_at.pop(str(path), None)
            except ServiceUnavailable:
                return  # no quorum: try again on the next scan
            except (ApiStatus, YamlError, OSError, ValueError) as exc:
                # As K3s's controller: requeued, tried again after a pause (an object of another file,
                # its namespace say, may be missing yet).
                self.retry_at[str(path)] = (mtime, time.monotonic() + ADDON_RETRY_SECONDS)
                msg = exc.message if isinstance(exc, ApiStatus) else str(exc)
                log("error", f"Failed to process config: failed to process {path}: {msg}")

    def process(self, path: Path) -> None:
        objs = Objects(self.srv)
        content = path.read_bytes()
        name = path.name.rsplit(".", 1)[0]
        why = name_problem(name)
        if why:
            raise ApiStatus(422, "Invalid", f'Addon.k3s.cattle.io "{name}" is invalid: metadata.name: Invalid value: '
                            f'"{name}": {why}')
        docs: list[Any] = []
        for doc in yaml_load_all(content.decode()):
            is_list = isinstance(doc, dict) and str(doc.get("kind", "")).endswith("List") and "items" in doc
            docs.extend((doc.get("items") or []) if is_list else [doc])
        checksum = hashlib.sha256(content).hexdigest()
        wanted: list[tuple[Kind, dict[str, Any]]] = []
        for doc in docs:
            if not isinstance(doc, dict) or not doc.get("kind") or not doc.get("apiVersion"):
                raise ApiStatus(400, "BadRequest", "Object 'Kind' is missing in the document")
            kind = objs.by_gvk(doc["apiVersion"], doc["kind"])
            obj = objs.validate(kind, None, copy.deepcopy(doc))
            ann = obj["metadata"].setdefault("annotations", {})
            ann.update(dict(zip(K3S_OWNER_ANNOTATIONS, ("k3s.cattle.io/v1, Kind=Addon", name, "kube-system"),
                                strict=True)))
            wanted.append((kind, obj))
        try:
            previous = objs.get(ADDON_KIND, "kube-system", name)
        except ApiStatus:
            previous = None
        for kind, obj in wanted:
            objs.apply(kind, obj)
        keep = {(k.res, object_key(k, o["metadata"].get("namespace"), o["metadata"]["name"])) for k, o in wanted}
        for ref in ((previous or {}).get("status") or {}).get("objects") or []:
            if (ref["res"], ref["key"]) not in keep:
                gone_kind = next((k for k in objs.kinds() if k.res == ref["res"]), None)
                if gone_kind is not None:
                    try:
                        objs.delete(gone_kind, ref.get("namespace"), ref["name"])
                    except ApiStatus:
                        pass
        addon = {"apiVersion": ADDON_KIND.api_version, "kind": "Addon",
                 "metadata": {"name": name, "namespace": "kube-system"},
                 "spec": {"source": str(path), "checksum": checksum},
                 "status": {"objects": [{"res": k.res, "key": object_key(k, o["metadata"].get("namespace"),
                                                                            o["metadata"]["name"]),
                                         "namespace": o["metadata"].get("namespace"), "name": o["metadata"]["name"],
                                         "kind": k.kind, "apiVersion": k.api_version} for k, o in wanted]}}
        if previous is None or _content(previous) != _content(addon) or previous.get("status") != addon["status"]:
            objs.apply(ADDON_KIND, addon) if previous is None else objs.write(ADDON_KIND, addon, "put")
        log("info", f"Applied {len(wanted)} object(s) from {path} (Addon kube-system/{name})")


class HelmController:
    """K3s's helm-controller, run by the datastore's leader: a HelmChart (new or changed) gets a
    helm-install-<name> Job that completes when the chart resolves (from chartContent, or the repo's
    index.yaml and archive, fetched by this server as the Job's pod would) and fails with Helm's message
    when it does not; a completed install is recorded as Helm records a release (a Secret in the target
    namespace). Nothing in the chart is rendered or run."""

    def __init__(self, srv: Server):
        self.srv = srv
        self.failed_at: dict[str, float] = {}

    def scan(self) -> None:
        objs = Objects(self.srv)
        for chart in objs.items(HELMCHART_KIND):
            meta, spec = chart["metadata"], chart.get("spec") or {}
            digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
            status = chart.get("status") or {}
            key = f"{meta['namespace']}/{meta['name']}"
            if status.get("specHash") == digest and (status.get("phase") == "Complete"
                                                      or time.time() - self.failed_at.get(key, 0) < HELM_RETRY_SECONDS):
                continue
            self.install(objs, chart, digest)
            if (objs.get(HELMCHART_KIND, meta["namespace"], meta["name"]).get("status") or {}).get("phase") == "Failed":
                self.failed_at[key] = time.time()

    def install(self, objs: Objects, chart: dict[str, Any], digest: str) -> None:
        meta, spec = chart["metadata"], chart.get("spec") or {}
        target = spec.get("targetNamespace") or meta["namespace"]
        job_name = f"helm-install-{meta['name']}"
        error, version = "", ""
        try:
            if not spec.get("chart") and not spec.get("chartContent"):
                raise ValueError("Error: chart name or chartContent is required")
            chart_yaml = self.resolve(spec)
            version = str(chart_yaml.get("version", ""))
            if not objs.namespace_exists(target):
                if not spec.get("createNamespace"):
                    raise ValueError(f'Error: INSTALLATION FAILED: create: failed to create: namespaces "{target}" '
                                     "not found")
                objs.apply(KINDS["Namespace"], {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": target}})
        except (ValueError, KeyError, OSError, YamlError, HttpError, tarfile.TarError, ssl.SSLError) as exc:
            error = str(exc) if str(exc).startswith("Error:") else f"Error: {exc}"
        now = iso(time.time())
        cond = {"type": "Failed" if error else "Complete", "status": "True", "lastProbeTime": now,
                "lastTransitionTime": now, **({"reason": "BackoffLimitExceeded", "message": error} if error else {})}
        job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {
            "name": job_name, "namespace": meta["namespace"],
            "labels": {"helmcharts.helm.cattle.io/chart": meta["name"]},
            "annotations": {"helmcharts.helm.cattle.io/configHash": f"SHA256={digest}",
                            "pik3s-sim/note": f"{SIM_NAME}: no pod ran; the chart was resolved by the server"}},
            "spec": {"backoffLimit": 1000, "completions": 1},
            "status": {"conditions": [cond], **({"failed": 1} if error else {"succeeded": 1})}}
        objs.write(JOB_KIND, objs.validate(JOB_KIND, None, job), "put")
        if error:
            log("error", f"helm-install-{meta['name']}: {error}")
        else:
            rel = {"apiVersion": "v1", "kind": "Secret", "type": "helm.sh/release.v1", "metadata": {
                "name": f"sh.helm.release.v1.{meta['name']}.v1", "namespace": target,
                "labels": {"owner": "helm", "name": meta["name"], "status": "deployed", "version": "1"}},
                "stringData": {"release": json.dumps({"name": meta["name"], "chart": spec.get("chart", ""),
                                                      "version": version, "values": spec.get("valuesContent", "")})}}
            objs.write(SECRET_KIND, objs.validate(SECRET_KIND, None, rel), "put")
            log("info", f"helm-install-{meta['name']}: installed {spec.get('chart') or 'chartContent'} {version} "
                        f"in {target} (recorded, not run: {SIM_NAME})")
        updated = objs.get(HELMCHART_KIND, meta["namespace"], meta["name"])
        updated["status"] = {"jobName": job_name, "phase": "Failed" if error else "Complete", "specHash": digest,
                             **({"message": error} if error else {"version": version})}
        objs.write(HELMCHART_KIND, updated, "update")

    def resolve(self, spec: dict[str, Any]) -> dict[str, Any]:
        """The Chart.yaml of the chart the HelmChart names, as Helm would find it."""
        if spec.get("chartContent"):
            try:
                data = base64.b64decode(spec["chartContent"], validate=True)
            except ValueError as exc:
                raise ValueError("Error: illegal base64 data in chartContent") from exc
            chart = chart_yaml(data)
            if spec.get("version") and str(chart.get("version")) != str(spec["version"]):
                raise ValueError(f'Error: chart "{chart.get("name")}" version "{spec["version"]}" not found: '
                                 f'chartContent holds version {chart.get("version")}')
            return chart
        repo, name, want = str(spec.get("repo") or ""), str(spec["chart"]), str(spec.get("version") or "")
        if not repo:
            raise ValueError(f'Error: repo "" for chart "{name}": {SIM_NAME}: charts from an OCI registry or a '
                             "repo name are not simulated; give repo as an http(s) URL")
        base = repo.rstrip("/") + "/"
        try:
            index = yaml_load(_fetch(base + "index.yaml").decode())
        except (OSError, HttpError, ValueError) as exc:
            raise ValueError(f'Error: looks like "{repo}" is not a valid chart repository or cannot be reached: '
                             f"{exc}") from exc
        entries = ((index or {}).get("entries") or {}).get(name)
        if not entries:
            raise ValueError(f'Error: chart "{name}" not found in {repo} repository')
        found = [e for e in entries if not want or str(e.get("version")) == want]
        if not found:
            raise ValueError(f'Error: chart "{name}" version "{want}" not found in {repo} repository')
        entry = found[0] if want else max(found, key=lambda e: _semver_key(str(e.get("version"))))
        url = urllib.parse.urljoin(base, (entry.get("urls") or [""])[0])
        data = _fetch(url)
        if entry.get("digest") and hashlib.sha256(data).hexdigest() != entry["digest"]:
            raise ValueError(f"Error: {url}: digest does not match the repository index")
        return chart_yaml(data)


class KubeVip:
    """What kube-vip's DaemonSet (from the auto-deploy directory; ARP mode, control plane, leader
    election) would do on this server, since the simulator runs no pods: while the DaemonSet exists
    and this server holds the Lease kube-system/plndr-cp-lock (taken and renewed through the
    datastore, so one server at a time), the virtual IP is on its interface, announced with
    gratuitous ARP; otherwise it is not. PIK3S_SIM_NETWORK=0 (the unit tests on loopback) leaves the
    machine's interfaces alone and only logs."""

    def __init__(self, srv: Server):
        self.srv = srv
        self.held: tuple[str, str] | None = None
        self.act = os.environ.get("PIK3S_SIM_NETWORK", "1") != "0"

    def wanted(self) -> tuple[str, str] | None:
        """(address, interface) of the kube-vip DaemonSet in kube-system, when there is one in ARP mode."""
        for ds in Objects(self.srv).items(KINDS["DaemonSet"], "kube-system"):
            for c in (((ds.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers") or []:
                env = {e.get("name"): str(e.get("value", "")) for e in c.get("env") or []}
                address = env.get("address") or env.get("vip_address")
                if "kube-vip" in str(c.get("image", "")) and address and env.get("vip_arp") == "true" \
                        and env.get("cp_enable") == "true":
                    return address, env.get("vip_interface") or "eth0"
        return None

    LEASE, DURATION = "plndr-cp-lock", 6

    def scan(self) -> None:
        try:
            want = self.wanted()
            if want is not None:
                # Take or renew the Lease through the datastore: one holder at a time, cluster-wide.
                self.srv.state.write({"op": "lease", "namespace": "kube-system", "name": self.LEASE,
                                      "holder": self.srv.node_name, "duration": self.DURATION, "now": time.time()})
        except ApiStatus:
            want = None  # another server holds the Lease
        except ServiceUnavailable:
            want = None  # no quorum: the Lease cannot be renewed, kube-vip lets the address go
        if want == self.held:
            return
        self.release()
        if want is not None:
            address, iface = want
            log("info", f"kube-vip (not run: {SIM_NAME}): {self.srv.node_name} holds the lease, "
                        f"{address}/32 on {iface}")
            if self.act:
                self._ip("addr", "replace", f"{address}/32", "dev", iface)
                gratuitous_arp(iface, address)
            self.held = want

    def release(self, give_up_lease: bool = False) -> None:
        if self.held is None:
            return
        address, iface = self.held
        log("info", f"kube-vip (not run: {SIM_NAME}): {self.srv.node_name} lets {address} go")
        if self.act:
            self._ip("addr", "del", f"{address}/32", "dev", iface)
        self.held = None
        if give_up_lease:  # as kube-vip releasing its Lease on shutdown: another takes over at once
            try:
                self.srv.state.write({"op": "lease", "namespace": "kube-system", "name": self.LEASE,
                                      "holder": self.srv.node_name, "duration": self.DURATION, "now": time.time(),
                                      "release": True})
            except (ServiceUnavailable, ApiStatus, OSError):
                pass

    @staticmethod
    def _ip(*args: str) -> None:
        res = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
        if res.returncode != 0 and "Cannot assign" not in res.stderr:
            log("error", f"kube-vip: ip {' '.join(args)}: {res.stderr.strip()}")


def gratuitous_arp(iface: str, address: str, count: int = 3) -> None:
    """Announce that ``address`` is at this interface's MAC (an ARP request for itself, broadcast), as
    kube-vip does when it takes the address, so the neighbours' caches move to it."""
    try:
        mac = bytes.fromhex(Path(f"/sys/class/net/{iface}/address").read_text().strip().replace(":", ""))
        ip = socket.inet_aton(address)
        frame = b"\xff" * 6 + mac + b"\x08\x06" + b"\x00\x01\x08\x00\x06\x04\x00\x01" + mac + ip + b"\x00" * 6 + ip
        with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as sock:
            sock.bind((iface, 0))
            for _ in range(count):
                sock.send(frame)
    except OSError as exc:
        log("warning", f"kube-vip: gratuitous ARP for {address} on {iface} failed: {exc}")


def _semver_key(v: str) -> tuple[Any, ...]:
    core, _sep, pre = v.lstrip("v").partition("-")
    nums = [int(x) if x.isdigit() else 0 for x in core.split(".")]
    return (*nums, pre == "", pre)


def _fetch(url: str) -> bytes:
    if url.startswith("https://"):
        return https_request(url, timeout=30)
    if not url.startswith("http://"):
        raise ValueError(f"unsupported protocol scheme in {url!r}")
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname or "", u.port or 80, timeout=30)
    try:
        status, payload = _exchange(conn, "GET", u.path + (f"?{u.query}" if u.query else ""), None, None)
    finally:
        conn.close()
    if status >= 400:
        raise ValueError(f"failed to fetch {url} : {status} {http.client.responses.get(status, '')}")
    return payload


def chart_yaml(archive: bytes) -> dict[str, Any]:
    """The Chart.yaml of a chart archive (a gzipped tar with <name>/Chart.yaml), as Helm's loader reads it."""
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
            member = next((m for m in tar.getmembers() if m.name.count("/") == 1
                           and m.name.endswith("/Chart.yaml")), None)
            if member is None:
                raise ValueError("Error: Chart.yaml file is missing")
            data = tar.extractfile(member)
            doc = yaml_load((data.read() if data else b"").decode())
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ValueError("Error: file does not appear to be a gzipped archive; got 'application/octet-stream'") from exc
    if not isinstance(doc, dict) or not doc.get("name") or not doc.get("version"):
        raise ValueError("Error: validation: chart.metadata.name and version are required")
    return doc
