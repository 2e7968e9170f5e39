"""The API server: HTTPS with keep-alive on a fixed pool of threads, and its handler."""

from __future__ import annotations

import base64
import http.client
import http.server
import json
import queue
import re
import selectors
import socket
import ssl
import threading
import time
import urllib.parse
from typing import TYPE_CHECKING, Any

from .common import SIM_NAME, WORKERS, Fatal, log
from .config import critical_mismatch
from .datastore import STALE_REPLICA, ServiceUnavailable
from .host import k8s_arch, version
from .httpclient import _url_host_fmt
from .kubectl import KubectlError, parse_selector, selector_matches
from .nodes import SYNTHETIC_TAINTS, iso, node_object
from .objects import (
    NODE_KIND,
    SA_ISSUER,
    SUBRESOURCES,
    WIDE_COLUMNS,
    ApiStatus,
    Kind,
    Objects,
    merge_patch,
    object_columns,
    protobuf_body,
)
from .tokens import password_check

if TYPE_CHECKING:
    from .server import Server


class _Writer:
    """A connection's unbuffered writer (what socketserver gives handlers, without its private class)."""

    def __init__(self, sock: socket.socket):
        self.sock = sock

    def write(self, data: bytes) -> int:
        self.sock.sendall(data)
        return len(data)

    def flush(self) -> None:
        pass


class _Conn:
    """One client connection and what outlives its requests: the TLS socket, its reader and writer."""

    def __init__(self, sock: ssl.SSLSocket, addr: Any):
        self.sock = sock
        self.addr = addr
        self.rfile = sock.makefile("rb")
        self.wfile = _Writer(sock)

    def close(self) -> None:
        for closer in (self.rfile.close, self.sock.close):
            try:
                closer()
            except OSError:
                pass


class ApiServer:
    """HTTPS/1.1 with keep-alive on a fixed pool of threads started once. A connection waiting for its
    next request sits in a selector, not in a thread; a worker takes it for one request (or its TLS
    handshake) and hands it back. No thread starts or ends per connection or request: under qemu-user
    7.2, which runs the lab's arm64 and armhf hosts, every thread that exits leaks about 200 KB, so a
    server that started one per connection grew until the kernel killed it."""

    def __init__(self, address: tuple[str, int], handler: type[ApiHandler], ctx: ssl.SSLContext,
                 server: Server, workers: int = WORKERS):
        self.listener = socket.create_server(address, backlog=128)
        self.handler, self.ctx, self.server_obj = handler, ctx, server
        self.selector = selectors.DefaultSelector()
        self.jobs: queue.SimpleQueue[tuple[str, Any] | None] = queue.SimpleQueue()
        self.returned: queue.SimpleQueue[_Conn] = queue.SimpleQueue()
        self.wake_r, self.wake_w = socket.socketpair()
        self.stopping = threading.Event()
        self.stopped = threading.Event()
        self.workers = [threading.Thread(target=self._work, daemon=True, name=f"api-{i}") for i in range(workers)]
        for t in self.workers:
            t.start()

    def serve_forever(self) -> None:
        self.listener.setblocking(False)
        self.selector.register(self.listener, selectors.EVENT_READ, "accept")
        self.selector.register(self.wake_r, selectors.EVENT_READ, "wake")
        idle: set[_Conn] = set()
        try:
            while not self.stopping.is_set():
                for key, _events in self.selector.select(timeout=1.0):
                    if key.data == "accept":
                        self._accept()
                    elif key.data == "wake":
                        self.wake_r.recv(4096)
                    else:
                        conn = key.data
                        self.selector.unregister(conn.sock)
                        idle.discard(conn)
                        self.jobs.put(("request", conn))
                while True:
                    try:
                        conn = self.returned.get_nowait()
                    except queue.Empty:
                        break
                    self.selector.register(conn.sock, selectors.EVENT_READ, conn)
                    idle.add(conn)
        finally:
            for conn in idle:
                conn.close()
            self.selector.close()
            self.stopped.set()

    def _accept(self) -> None:
        while True:
            try:
                sock, addr = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            self.jobs.put(("handshake", (sock, addr)))

    def _give_back(self, conn: _Conn) -> None:
        if self.stopping.is_set():
            conn.close()
            return
        self.returned.put(conn)
        try:
            self.wake_w.send(b"x")
        except OSError:
            conn.close()

    def _work(self) -> None:
        while True:
            job = self.jobs.get()
            if job is None:
                return
            kind, arg = job
            try:
                if kind == "handshake":
                    self._handshake(*arg)
                else:
                    self._request(arg)
            except Exception as exc:  # one request's failure must never cost a worker
                log("error", f"API request failed: {exc!r}")

    def _handshake(self, raw: socket.socket, addr: Any) -> None:
        raw.setblocking(True)
        raw.settimeout(10)
        try:
            sock = self.ctx.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            # K3s logs one line for a client that is not TLS (a plain TCP probe of the port, say).
            reason = "EOF" if isinstance(exc, (ssl.SSLEOFError, ConnectionResetError)) or not str(exc) else exc
            log("info", f"http: TLS handshake error from {addr[0]}:{addr[1]}: {reason}")
            raw.close()
            return
        sock.settimeout(30)
        self.server_obj.count("connections")
        self._give_back(_Conn(sock, addr))

    def _request(self, conn: _Conn) -> None:
        handler = self.handler(conn, conn.addr, self)  # type: ignore[arg-type]
        if handler.close_connection:
            conn.close()
        else:
            self._give_back(conn)

    def shutdown(self) -> None:
        """Stop serving: the listener closes, idle connections close, the workers end."""
        self.stopping.set()
        try:
            self.wake_w.send(b"x")
        except OSError:
            pass
        self.stopped.wait(5)
        self.listener.close()
        for _ in self.workers:
            self.jobs.put(None)

    def server_close(self) -> None:
        self.listener.close()


class ApiHandler(http.server.BaseHTTPRequestHandler):
    """One API request on a connection ApiServer keeps open (TLS done, reader and writer kept)."""

    server_obj: Server
    _raw: bytes = b""
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt: str, *args: Any) -> None:  # quiet access log
        pass

    def setup(self) -> None:
        conn: _Conn = self.request
        self.connection = conn.sock
        self.rfile, self.wfile = conn.rfile, conn.wfile  # type: ignore[assignment]

    def handle(self) -> None:
        self.close_connection = True
        self.handle_one_request()
        if getattr(self, "raw_requestline", b""):
            self.server_obj.count("requests")

    def finish(self) -> None:
        pass  # the writer is unbuffered; the connection stays open for its next request

    def _send(self, status: int, body: Any, ctype: str = "application/json") -> None:
        data = body if isinstance(body, bytes) else (
            json.dumps(body).encode() if ctype == "application/json" else str(body).encode())
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str) -> None:
        self._send(status, message + "\n", "text/plain")

    def _body(self) -> Any:
        data = self._raw
        ctype = self.headers.get("Content-Type", "").split(";")[0].strip()
        if ctype == "application/vnd.kubernetes.protobuf":
            return protobuf_body(data)
        if ctype in ("application/yaml", "application/apply-patch+yaml"):
            raise ApiStatus(415, "UnsupportedMediaType", f"{SIM_NAME}: YAML request bodies are not simulated")
        if not data:
            return None
        try:
            return json.loads(data)
        except ValueError as exc:
            raise ApiStatus(400, "BadRequest", f"the body of the request could not be decoded: {exc}") from exc

    def _basic(self) -> tuple[str, str] | None:
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Basic "):
            return None
        try:
            user, _, pw = base64.b64decode(auth[6:]).decode().partition(":")
        except ValueError:
            return None
        return user, pw

    def _token_user(self) -> str | None:
        """'server' or 'node' when the request carries a valid token password."""
        creds = self._basic()
        if not creds:
            return None
        user, pw = creds
        data = self.server_obj.state.data
        if password_check(pw, data["token_salt"]) == data["token_check"]:
            return user if user in ("server", "node") else None
        if user == "node" and data.get("agent_token_check") and \
                password_check(pw, data["token_salt"]) == data["agent_token_check"]:
            return "node"
        return None

    def _admin(self) -> bool:
        cert = self.connection.getpeercert() if isinstance(self.connection, ssl.SSLSocket) else None
        if not cert:
            return False
        subject: dict[str, str] = {}
        rdns: Any = cert.get("subject", ())
        for rdn in rdns:
            for key, value in rdn:
                subject[str(key)] = str(value)
        return subject.get("organizationName") == "system:masters"

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        srv = self.server_obj
        path = urllib.parse.urlsplit(self.path).path
        # The whole body is read, used or not (a DELETE carries DeleteOptions): the connection stays in step.
        length = int(self.headers.get("Content-Length") or 0)
        self._raw = self.rfile.read(length) if length else b""
        try:
            if path == "/ping" and method == "GET":
                return self._send(200, "pong", "text/plain")
            if path == "/cacerts" and method == "GET":
                return self._send(200, srv.server_ca, "text/plain")
            if path.startswith("/v1-k3s/"):
                return self._k3s(method, path)
            who = self._identity()
            if who is None:
                return self._send(401, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                        "message": "Unauthorized", "reason": "Unauthorized", "code": 401})
            return self._kube(method, path, who)
        except ApiStatus as exc:
            return self._send(exc.code, exc.status())
        except ServiceUnavailable as exc:
            return self._error(503, str(exc))
        except Fatal as exc:
            return self._error(400, str(exc))
        except (BrokenPipeError, ConnectionResetError):
            return None
        except Exception as exc:  # a bug in the simulator: answer (never leave the client waiting) and log it
            log("error", f"{method} {path}: {type(exc).__name__}: {exc}")
            return self._send(500, ApiStatus(500, "InternalError", f"{SIM_NAME}: {type(exc).__name__}: {exc}")
                              .status())

    def _k3s(self, method: str, path: str) -> None:
        srv = self.server_obj
        user = self._token_user()
        if user is None:
            return self._error(401, "Unauthorized")
        if path == "/v1-k3s/sim/peer/ping":
            return self._send(200, {"name": srv.node_name, "generation": srv.state.data.get("generation"),
                                    "members": sorted(srv.state.members())})
        if path == "/v1-k3s/sim/peer/state" and user == "server":
            return self._send(200, srv.state.data)
        if path == "/v1-k3s/sim/peer/write" and method == "POST" and user == "server":
            try:
                srv.state.commit(self._body())
            except ApiStatus as exc:
                return self._send(exc.code, exc.status())
            except PermissionError as exc:
                return self._error(403, str(exc))
            except KeyError as exc:
                return self._error(404, f"not found: {exc}")
            return self._send(200, {"ok": True})
        if path == "/v1-k3s/sim/peer/heartbeat" and method == "POST" and user == "server":
            try:
                srv.note_heartbeat(self._body())
            except PermissionError as exc:
                return self._error(403, str(exc))
            except KeyError as exc:
                return self._error(404, f"not found: {exc}")
            return self._send(200, {"ok": True})
        if path == "/v1-k3s/sim/peer/replicate" and method == "POST" and user == "server":
            verdict = srv.state.receive(self._body())
            if verdict == "ok":
                return self._send(200, {"ok": True})
            if verdict == STALE_REPLICA:
                return self._error(409, f"{STALE_REPLICA}: this member is at revision "
                                        f"{srv.state.data.get('revision', 0)}")
            return self._error(409, "member of another cluster generation")
        if path == "/v1-k3s/server-bootstrap" and method == "POST" and user == "server":
            return self._server_bootstrap(self._body())
        if path == "/v1-k3s/sim/apiservers":
            return self._send(200, sorted(srv.state.members().values()))
        if path == "/v1-k3s/sim/nodes/register" and method == "POST":
            body = self._body()
            try:
                srv.register(body["node"], body["password"])
            except PermissionError as exc:
                return self._error(403, str(exc))
            return self._send(200, {"ok": True})
        m = re.fullmatch(r"/v1-k3s/sim/nodes/([^/]+)/heartbeat", path)
        if m and method == "POST":
            body = self._body()
            try:
                srv.heartbeat(m.group(1), body["password"], body["version"], body.get("running", True))
            except KeyError:
                return self._error(404, f"node {m.group(1)} not found")
            except PermissionError as exc:
                return self._error(403, str(exc))
            # The servers to fall back on, in the reply: no separate request for them.
            return self._send(200, {"ok": True, "apiservers": sorted(srv.state.members().values())})
        return self._error(404, "not found")

    # Kubernetes API: discovery, objects, tokens -----------------------------
    def _identity(self) -> tuple[str, list[str]] | None:
        if self._admin():
            return "system:admin", ["system:masters", "system:authenticated"]
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            return Objects(self.server_obj).token_identity(auth[7:].strip())
        return None

    def _authorize(self, who: tuple[str, list[str]], verb: str, group: str, resource: str,
                   namespace: str | None, name: str | None, path: str) -> None:
        user, groups = who
        if "system:masters" in groups or Objects(self.server_obj).allowed(user, groups, verb, group, resource,
                                                                           namespace, name, path):
            return
        if not resource:
            raise ApiStatus(403, "Forbidden", f'forbidden: User "{user}" cannot {verb} path "{path}"')
        what = f'{resource.partition("/")[0]}{"." + group if group else ""}' + (f' "{name}"' if name else "")
        scope = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
        raise ApiStatus(403, "Forbidden", f'{what} is forbidden: User "{user}" cannot {verb} resource '
                        f'"{resource}" in API group "{group}" {scope}',
                        {"name": name or "", "group": group, "kind": resource.partition("/")[0]})

    def _discovery(self, path: str) -> Any:
        """/api, /apis, /api/v1, /apis/<group>[/<version>]: what clients read to map kinds to paths."""
        srv = self.server_obj
        kinds = Objects(srv).kinds()
        versions: dict[str, list[str]] = {}
        for k in kinds:
            if k.version not in versions.setdefault(k.group, []):
                versions[k.group].append(k.version)

        def group_doc(g: str) -> dict[str, Any]:
            vs = [{"groupVersion": f"{g}/{v}", "version": v} for v in versions[g]]
            return {"name": g, "versions": vs, "preferredVersion": vs[0]}

        def resources(g: str, v: str) -> dict[str, Any]:
            res = []
            for k in kinds:
                if (k.group, k.version) != (g, v):
                    continue
                res.append({"name": k.plural, "singularName": k.kind.lower(), "namespaced": k.namespaced,
                            "kind": k.kind, "verbs": list(k.verbs),
                            **({"shortNames": list(k.short)} if k.short else {})})
                for sub, sub_kind, verbs in SUBRESOURCES.get((g, k.plural), []):
                    res.append({"name": f"{k.plural}/{sub}", "singularName": "", "namespaced": k.namespaced,
                                "group": "authentication.k8s.io" if sub == "token" else g,
                                "version": "v1", "kind": sub_kind, "verbs": list(verbs)})
            return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": f"{g}/{v}" if g else v,
                    "resources": res}

        if path == "/api":
            return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": f"{_url_host_fmt(srv.node_ip)}:{srv.port}"}]}
        if path == "/api/v1":
            return resources("", "v1")
        if path == "/apis":
            return {"kind": "APIGroupList", "apiVersion": "v1",
                    "groups": [group_doc(g) for g in sorted(versions) if g]}
        parts = path.split("/")[2:]
        if len(parts) == 1 and parts[0] in versions and parts[0]:
            return dict(group_doc(parts[0]), kind="APIGroup", apiVersion="v1")
        if len(parts) == 2 and parts[1] in versions.get(parts[0], []) and parts[0]:
            return resources(parts[0], parts[1])
        raise ApiStatus(404, "NotFound", "the server could not find the requested resource")

    def _objects(self, method: str, who: tuple[str, list[str]], m: re.Match[str], query: dict[str, list[str]]) -> None:
        srv = self.server_obj
        objs = Objects(srv)
        group = m.group("g") or ""
        version = m.group("v") or m.group("gv")
        ns, plural, name, sub = m.group("ns"), m.group("plural"), m.group("name"), m.group("sub")
        if ns and not plural:  # /api/v1/namespaces/<name>
            plural, name, ns = "namespaces", ns, None
        kind = objs.by_path(group, version, plural or "")
        if not kind.namespaced and ns:
            raise ApiStatus(404, "NotFound", "the server could not find the requested resource")
        if "watch" in query and query["watch"][0] in ("1", "true"):
            raise ApiStatus(405, "MethodNotAllowed", f"{SIM_NAME}: watch is not simulated")
        verb = {"GET": "get" if name else "list", "POST": "create", "PUT": "update", "PATCH": "patch",
                "DELETE": "delete"}[method]
        resource = f"{kind.plural}/{sub}" if sub else kind.plural
        self._authorize(who, verb, kind.group, resource, ns, name, self.path)
        if kind is NODE_KIND:
            return self._nodes(method, name, sub)
        if sub:
            if (kind.group, kind.plural, sub) == ("", "serviceaccounts", "token") and method == "POST" and name:
                body = self._body() or {}
                spec = body.get("spec") or {}
                status = objs.issue_token(ns or "default", name, spec.get("expirationSeconds") or 3600,
                                          spec.get("audiences") or [])
                return self._send(201, {"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
                                        "metadata": {"name": name, "namespace": ns,
                                                     "creationTimestamp": iso(time.time())},
                                        "spec": {"audiences": spec.get("audiences") or [SA_ISSUER, "k3s"],
                                                 "expirationSeconds": spec.get("expirationSeconds") or 3600,
                                                 "boundObjectRef": None},
                                        "status": status})
            raise ApiStatus(404, "NotFound", "the server could not find the requested resource")
        if method == "GET" and not name:
            items = objs.items(kind, ns)
            if "labelSelector" in query:
                try:
                    reqs = parse_selector(query["labelSelector"][0])
                except KubectlError as exc:
                    raise ApiStatus(400, "BadRequest", str(exc).removeprefix("error: ")) from exc
                items = [o for o in items if selector_matches(reqs, o["metadata"].get("labels") or {})]
            for field in query.get("fieldSelector", [""])[0].split(","):
                key, _sep, value = field.partition("=")
                if key in ("metadata.name", "metadata.namespace"):
                    items = [o for o in items if o["metadata"].get(key.partition(".")[2]) == value.lstrip("=")]
                elif key:
                    raise ApiStatus(400, "BadRequest", f'"{key}" is not a known field selector: only '
                                    '"metadata.name", "metadata.namespace"')
            return self._send_list(kind, items)
        if method == "GET":
            return self._send_objects(kind, [objs.get(kind, ns, name)], single=True)
        if method == "POST" and not name:
            obj = objs.validate(kind, ns, self._body())
            return self._send(201, objs.write(kind, obj, "create"))
        if method == "PUT" and name:
            obj = objs.validate(kind, ns, self._body(), name)
            return self._send(200, objs.write(kind, obj, "update"))
        if method == "PATCH" and name:
            ctype = self.headers.get("Content-Type", "").split(";")[0]
            if ctype not in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
                raise ApiStatus(415, "UnsupportedMediaType", f"{SIM_NAME}: patch type {ctype!r} is not "
                                "simulated (merge and strategic merge patches are)")
            current = objs.get(kind, ns, name)
            patched = merge_patch(current, self._body() or {})
            patched["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            obj = objs.validate(kind, ns, patched, name)
            return self._send(200, objs.write(kind, obj, "update"))
        if method == "DELETE" and name:
            gone = objs.delete(kind, ns, name)
            return self._send(200, gone)
        raise ApiStatus(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")

    def _wants_table(self) -> bool:
        return "as=Table" in self.headers.get("Accept", "")

    def _send_list(self, kind: Kind, items: list[dict[str, Any]]) -> None:
        if self._wants_table():
            return self._send_objects(kind, items, single=False)
        rv = str(self.server_obj.state.data.get("revision", 0))
        return self._send(200, {"apiVersion": kind.api_version, "kind": f"{kind.kind}List",
                                "metadata": {"resourceVersion": rv}, "items": items})

    def _send_objects(self, kind: Kind, items: list[dict[str, Any]], single: bool) -> None:
        if not self._wants_table():
            return self._send(200, items[0])
        cols = object_columns(kind)
        return self._send(200, {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {
            "resourceVersion": str(self.server_obj.state.data.get("revision", 0))},
            "columnDefinitions": [{"name": c, "type": "string", "format": "name" if c == "Name" else "",
                                   "description": "", "priority": 1 if c in WIDE_COLUMNS else 0}
                                  for c, _fn in cols],
            "rows": [{"cells": [fn(o) for _c, fn in cols], "object": {
                "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]}}
                for o in items]})

    def _server_bootstrap(self, body: dict[str, Any]) -> None:
        srv = self.server_obj
        if not srv.state.data.get("etcd"):
            return self._error(400, "this server uses the embedded SQLite datastore and cannot be joined by "
                                    "other servers: start the first server with --cluster-init")
        mismatch = critical_mismatch(srv.state.data["critical"], body["critical"])
        if mismatch:
            return self._error(400, mismatch)
        name = body["name"]
        if name in srv.state.members() and name in srv.state.data["nodes"]:
            # A member that started once (its node registered) and a joiner of that name without a
            # datastore: a rebuilt machine, or a join that died after starting. K3s refuses; deleting
            # the node removes the member. (A member added but never started is taken over, as K3s does.)
            return self._error(409, "duplicate node name found, please use a unique name for this node")
        srv.state.write({"op": "add_member", "name": name, "url": body["url"]})
        srv.state.forget_alive()
        return self._send(200, {"state": srv.state.data})

    def _kube(self, method: str, path: str, who: tuple[str, list[str]]) -> None:
        srv = self.server_obj
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        if path in ("/readyz", "/livez", "/healthz"):
            if srv.state.has_quorum():
                return self._send(200, "ok", "text/plain")
            return self._error(500, "[-]etcd failed: reason withheld\nreadyz check failed")
        if path == "/version":
            return self._send(200, {"gitVersion": version(), "platform": f"linux/{k8s_arch()}",
                                    "simulator": SIM_NAME})
        if path == "/pik3s-sim/stats":  # test equipment's own counters (the soak test reads them)
            self._authorize(who, "get", "", "", None, None, path)
            with srv.stats_lock:
                return self._send(200, dict(srv.stats, threads=threading.active_count()))
        if path == "/openapi/v2":
            # An empty OpenAPI document (protobuf): the simulator has no schemas, so clients skip validation.
            return self._send(200, b"", "application/com.github.proto-openapi.spec.v2.v1.0+protobuf")
        srv.state.require_quorum()
        if path == "/pik3s-sim/snapshot" and method == "GET":
            self._authorize(who, "get", "", "", None, None, path)
            return self._send(200, srv.state.data)
        if path in ("/api", "/apis") or re.fullmatch(r"/api/v1|/apis/[^/]+(/[^/]+)?", path):
            self._authorize(who, "get", "", "", None, None, path)
            return self._send(200, self._discovery(path))
        m = _API_PATH.fullmatch(path)
        if m:
            return self._objects(method, who, m, query)
        raise ApiStatus(404, "NotFound", "the server could not find the requested resource")

    def _nodes(self, method: str, name: str | None, sub: str | None) -> None:
        srv = self.server_obj
        if sub:
            raise ApiStatus(404, "NotFound", "the server could not find the requested resource")
        if name is None:
            if method != "GET":
                raise ApiStatus(405, "MethodNotAllowed", "the server does not allow this method on the requested "
                                "resource")
            items = [node_object(r) for _, r in sorted(srv.node_records().items())]
            if self._wants_table():
                return self._send_objects(NODE_KIND, items, single=False)
            return self._send(200, {"apiVersion": "v1", "kind": "NodeList", "items": items})
        if name not in srv.state.data["nodes"]:
            raise ApiStatus(404, "NotFound", f'nodes "{name}" not found', {"name": name, "kind": "nodes"})
        if method == "GET":
            return self._send_objects(NODE_KIND, [node_object(srv.node_records()[name])], single=True)
        if method == "PATCH":
            body = self._body() or {}
            unsched = body.get("spec", {}).get("unschedulable")
            if unsched is not None:
                srv.state.write({"op": "cordon", "name": name, "unschedulable": bool(unsched)})
            labels = (body.get("metadata") or {}).get("labels")
            taints = (body.get("spec") or {}).get("taints")
            if labels or taints is not None:
                # The taints the node controller adds (cordoned, unreachable) are not stored.
                stored = [t for t in taints or [] if t.get("key") not in SYNTHETIC_TAINTS]
                srv.state.write({"op": "node_meta", "name": name, "labels": labels or {},
                                 "taints": stored if taints is not None else None})
            return self._send(200, node_object(srv.node_records()[name]))
        if method == "DELETE":
            srv.state.write({"op": "delete_node", "name": name})
            return self._send(200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                                    "details": {"name": name, "kind": "nodes"}})
        raise ApiStatus(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")


_API_PATH = re.compile(r"/(?:api/(?P<v>v1)|apis/(?P<g>[^/]+)/(?P<gv>[^/]+))(?:/namespaces/(?P<ns>[^/]+))?"
                       r"(?:/(?P<plural>[^/]+)(?:/(?P<name>[^/]+)(?:/(?P<sub>[^/]+))?)?)?")
