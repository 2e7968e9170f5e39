"""`k3s server`: start, join, bootstrap, supervision of its node and peers."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import platform
import re
import secrets
import socket
import ssl
import threading
import time
from pathlib import Path
from typing import Any

from .apiserver import ApiHandler, ApiServer
from .common import (
    API_START_SECONDS,
    EXTERNAL_CONNECT_SECONDS,
    HEARTBEAT_SECONDS,
    NODE_PASSWORD_MSG,
    PERSIST_SECONDS,
    RETRY_SECONDS,
    SIM_NAME,
    Fatal,
    log,
    p,
)
from .config import CRITICAL_DEFAULTS, CRITICAL_KEYS, _as_list, critical_mismatch
from .controllers import DEPLOY_SECONDS, DeployController, HelmController, KubeVip
from .datastore import ExternalState, ServerState, ServiceUnavailable, bootstrap_key
from .etcdclient import DatastoreError, EtcdClient, endpoint_kind, shown
from .host import k8s_arch, memory_cgroup_state, os_image, primary_ip, sd_notify, version
from .httpclient import HttpClient, HttpError, _url_host, _url_host_fmt, https_request
from .nodes import parse_label, parse_taint
from .objects import ApiStatus, Objects, apply_lease_op, apply_object_op
from .registries import load_registries
from .tokens import (
    ca_hash,
    configured_token,
    decrypt_bootstrap,
    encrypt_bootstrap,
    format_token,
    make_ca,
    parse_token,
    password_check,
    sign_cert,
    write_private,
)
from .yamlreader import yaml_dump


class Server:
    def __init__(self, cfg: dict[str, Any]):
        self.cfg = cfg
        self.data_dir = Path(cfg.get("data-dir") or p("/var/lib/rancher/k3s"))
        self.server_dir = self.data_dir / "server"
        self.tls = self.server_dir / "tls"
        self.port = int(cfg.get("https-listen-port") or 6443)
        self.node_name = node_name_from(cfg)
        ips = _as_list(cfg.get("node-ip"))
        self.node_ip = cfg.get("advertise-address") or (ips[0] if ips else primary_ip(_url_host(cfg.get("server"))))
        self.url = f"https://{_url_host_fmt(self.node_ip)}:{self.port}"
        # An external datastore (datastore-endpoint), shared by every server; else embedded: once etcd data
        # exists, it decides (cluster-init and server are ignored), else SQLite.
        self.external = str(cfg.get("datastore-endpoint") or "")
        self.state: ServerState = ServerState(self)
        self.etcd = not self.external and bool(cfg.get("cluster-init") or cfg.get("server")
                                               or (self.server_dir / "db" / "etcd").is_dir())
        self.stop = threading.Event()
        self.password = ""
        self.server_ca = b""
        self.httpd: ApiServer | None = None
        self.kube_vip: KubeVip | None = None
        self._peers: HttpClient | None = None
        # Heartbeats the leader has not written to the datastore yet (name -> last_seen, running, version).
        self.pending: dict[str, dict[str, Any]] = {}
        self.stats_lock = threading.Lock()
        self.stats = {"connections": 0, "requests": 0, "heartbeats": 0, "writes": 0}

    # paths ------------------------------------------------------------------
    @property
    def db_file(self) -> Path:
        if self.etcd:
            return self.server_dir / "db" / "etcd" / "state.json"
        return self.server_dir / "db" / "state.db"

    def critical(self) -> dict[str, Any]:
        out = {}
        for key in CRITICAL_KEYS:
            val = self.cfg.get(key, CRITICAL_DEFAULTS.get(key, False))
            out[key] = sorted(val) if isinstance(val, list) else val
        return out

    def creds(self) -> tuple[str, str]:
        return ("server", self.password)

    def count(self, what: str, n: int = 1) -> None:
        with self.stats_lock:
            self.stats[what] += n

    def peer_call(self, url: str, method: str, path: str, body: Any = None, timeout: float = 3) -> bytes:
        peers = self._peers
        if peers is None or peers.basic != self.creds():
            peers = self._peers = HttpClient(self.server_ca.decode(), self.creds())
        return peers.request(url + path, method, body, timeout=timeout)

    # start-up ---------------------------------------------------------------
    def start(self) -> None:
        ok, why = memory_cgroup_state()
        if not ok:
            raise Fatal(f"{why}: enable the memory cgroup on the kernel command line "
                        "(cgroup_memory=1 cgroup_enable=memory)")
        log("info", f"Starting k3s {version()} ({SIM_NAME}, not K3s)")
        load_registries()
        token = configured_token(self.cfg)
        if self.external:
            self._start_external(token)
        else:
            self._start_embedded(token)
            if self.cfg.get("cluster-reset"):
                return
        self._write_files()
        self._serve()
        # Where local tools (etcd-snapshot) reach this running server.
        write_private(self.server_dir / "db" / "sim-endpoint", f"https://{_url_host_fmt(self._local_address())}:{self.port}\n")
        self._register_self()
        (self.server_dir / "manifests").mkdir(mode=0o700, parents=True, exist_ok=True)
        threading.Thread(target=self._controllers_loop, daemon=True, name="controllers").start()
        log("info", f"k3s is up and running ({SIM_NAME})")
        sd_notify("READY=1\n")
        import_images(self.data_dir)
        self._heartbeat_loop()

    def _start_embedded(self, token: str | None) -> None:
        self._migrate_sqlite_if_asked()
        existing = self.db_file.exists()
        if self.cfg.get("cluster-reset"):
            self.cluster_reset()
            return
        if existing:
            self._resume(token)
        elif self.cfg.get("server"):
            self._join(token)
        elif not self.etcd and (self.server_dir / "db" / "reset-flag").exists():
            raise Fatal(f"etcd database not found in {self.server_dir}")
        else:
            self._bootstrap(token)

    def _start_external(self, token: str | None) -> None:
        """Servers on an external datastore: the first to start writes the cluster's bootstrap data there
        (encrypted with the token); every other one, with the same endpoint and token, reads it. No server
        joins another (K3s ignores --server on servers with an external datastore)."""
        endpoint = self.external
        kind = endpoint_kind(endpoint)
        if kind in ("mysql", "postgres"):
            raise Fatal(f"{kind} datastores are not simulated by the {SIM_NAME}: only etcd endpoints "
                        "(https://host:2379) are; real K3s would use this one")
        if kind != "etcd":
            raise Fatal(f"preparing server: creating storage endpoint: invalid datastore endpoint "
                        f"{shown(endpoint)!r}: want https://, http://, mysql:// or postgres://")
        if self.cfg.get("cluster-init"):
            raise Fatal("invalid flag use: --cluster-init starts embedded etcd and cannot be used with "
                        "--datastore-endpoint")
        if self.cfg.get("cluster-reset"):
            raise Fatal("--cluster-reset is only for embedded etcd: this server uses the external datastore "
                        f"{shown(endpoint)}; restore it with the datastore's own tools")
        try:
            client = EtcdClient(endpoint, str(self.cfg.get("datastore-cafile") or ""),
                                str(self.cfg.get("datastore-certfile") or ""),
                                str(self.cfg.get("datastore-keyfile") or ""))
        except DatastoreError as exc:
            raise Fatal(f"preparing server: creating storage endpoint: {exc}") from exc
        state = ExternalState(self, client)
        self.state = state
        log("info", f"Using the external etcd datastore at {shown(endpoint)}")
        password = parse_token(token)[2] if token else secrets.token_hex(16)
        state.boot_key = bootstrap_key(password)
        deadline = time.monotonic() + EXTERNAL_CONNECT_SECONDS
        while True:
            try:
                state.refresh(force=True)
                found = state.bootstrap_keys()
                break
            except DatastoreError as exc:
                if exc.fatal or time.monotonic() > deadline or self.stop.is_set():
                    raise Fatal(f"starting kubernetes: preparing server: failed to get bootstrap data from the "
                                f"datastore {shown(endpoint)}: {exc}") from exc
                log("info", f"Waiting for the datastore {shown(endpoint)}: {exc}")
                self.stop.wait(1.0)
        if found and state.boot_key not in found:
            raise Fatal("bootstrap data already found and encrypted with different token")
        if not found:
            self._bootstrap(token, password)
            new, state.data = state.data, {}
            if state.create(new):
                log("info", "Wrote the cluster's bootstrap data to the datastore")
                state.write({"op": "add_member", "name": self.node_name, "url": self.url})
                return
            log("info", "Another server wrote the bootstrap data first: using it")
            state.refresh(force=True)
        if not token:
            raise Fatal("--token is required: the datastore already holds a cluster's bootstrap data")
        bootstrap = self._unlock_bootstrap(state.data, token)
        mismatch = critical_mismatch(state.data.get("critical") or {}, self.critical())
        if mismatch:
            raise Fatal(f"failed to validate server configuration: {mismatch}")
        self._install_bootstrap(bootstrap)
        try:
            state.write({"op": "add_member", "name": self.node_name, "url": self.url})
        except ServiceUnavailable as exc:
            raise Fatal(f"starting kubernetes: {exc}") from exc
        log("info", f"Joined the cluster in the datastore: {len(state.members())} servers")

    def _migrate_sqlite_if_asked(self) -> None:
        sqlite = self.server_dir / "db" / "state.db"
        if self.etcd and sqlite.exists() and not self.db_file.exists():
            log("info", "Migrating content from sqlite to etcd")
            self.db_file.parent.mkdir(parents=True, exist_ok=True)
            data = json.loads(sqlite.read_text())
            data["members"] = {self.node_name: self.url}
            write_private(self.db_file, json.dumps(data))
            sqlite.unlink()

    def _bootstrap(self, token: str | None, password: str = "") -> None:
        if token:
            hash_, _user, password = parse_token(token)
            if hash_:
                raise Fatal("token CA hash does not match the Cluster CA certificate hash: "
                            "a secure (K10...) token cannot start a new cluster; use a short token")
        else:
            password = password or secrets.token_hex(16)
        log("info", "Creating a new cluster: generating certificate authorities")
        server_ca, server_ca_key = make_ca("k3s-server-ca")
        client_ca, client_ca_key = make_ca("k3s-client-ca")
        salt = secrets.token_hex(8)
        bootstrap = {"server-ca.crt": server_ca.decode(), "server-ca.key": server_ca_key.decode(),
                     "client-ca.crt": client_ca.decode(), "client-ca.key": client_ca_key.decode()}
        agent_pw = None
        agent_token = configured_token(self.cfg, "agent-token")
        if agent_token:
            agent_pw = parse_token(agent_token)[2]
        self.password = password
        self.state.data = {
            "generation": secrets.token_hex(4), "revision": 1, "created": time.time(),
            "members": {} if self.external else {self.node_name: self.url},
            "etcd": self.etcd, "critical": self.critical(), "nodes": {}, "node_passwords": {},
            "token_salt": salt, "token_check": password_check(password, salt),
            "agent_token_check": password_check(agent_pw, salt) if agent_pw else None,
            "bootstrap": encrypt_bootstrap(password, bootstrap),
        }
        self._install_bootstrap(bootstrap)
        if not self.external:
            self.state.save()

    def _resume(self, token: str | None) -> None:
        self.state.load()
        data = self.state.data
        stored = self.server_dir / "token"
        current = token or (stored.read_text().strip() if stored.exists() else None)
        if not current:
            raise Fatal("--token is required: no token configured and none found in the data directory")
        self._install_bootstrap(self._unlock_bootstrap(data, current))
        if self.etcd:
            self._check_membership()
            data.setdefault("members", {})[self.node_name] = self.url
        self._pull_latest()

    def _unlock_bootstrap(self, data: dict[str, Any], token: str) -> dict[str, str]:
        """The cluster's bootstrap data in ``data``, decrypted with ``token`` after K3s's checks (the token's
        password, then its CA hash); sets this server's password."""
        hash_, _user, password = parse_token(token)
        if password_check(password, data["token_salt"]) != data["token_check"]:
            raise Fatal("bootstrap data already found and encrypted with different token")
        self.password = password
        bootstrap: dict[str, str] = decrypt_bootstrap(password, data["bootstrap"])
        if hash_ and hash_ != ca_hash(bootstrap["server-ca.crt"].encode()):
            raise Fatal("token CA hash does not match the Cluster CA certificate hash")
        return bootstrap

    def _check_membership(self) -> None:
        others = {n: u for n, u in self.state.members().items() if n != self.node_name}
        for name, url in others.items():
            try:
                info = json.loads(self.peer_call(url, "GET", "/v1-k3s/sim/peer/ping", timeout=1.5))
            except (OSError, ssl.SSLError, HttpError, ValueError) as exc:
                log("info", f"etcd peer {name} ({url}) did not answer: {exc}")
                continue
            if info.get("generation") != self.state.data.get("generation"):
                raise Fatal(
                    f"this server is not a member of the etcd cluster served by {name} "
                    "(the cluster was reset or restored): remove "
                    f"{self.server_dir / 'db'} and restart to rejoin")
            if self.node_name not in info.get("members", [self.node_name]):
                # Its node was deleted (kubectl delete node): K3s's member controller removed the member.
                raise Fatal(
                    "etcdserver: the member has been permanently removed from the cluster (its node was "
                    f"deleted; {name} serves the cluster without it): remove {self.server_dir / 'db'} and "
                    "restart to join again")

    def _pull_latest(self) -> None:
        for name, url in self.state.members().items():
            if name == self.node_name:
                continue
            try:
                remote = json.loads(self.peer_call(url, "GET", "/v1-k3s/sim/peer/state", timeout=2))
            except (OSError, ssl.SSLError, HttpError, ValueError) as exc:
                log("info", f"etcd peer {name} ({url}) did not answer: {exc}")
                continue
            self.state.receive(remote)  # taken when newer than this member's

    def _join(self, token: str | None) -> None:
        if not token:
            raise Fatal("--token is required when joining a server (--server)")
        url = str(self.cfg["server"]).rstrip("/")
        hash_, _user, password = parse_token(token)
        log("info", f"Joining an existing cluster at {url}")
        while not self.stop.is_set():
            try:
                cacerts = https_request(url + "/cacerts", verify=False, timeout=5)
                if hash_ and ca_hash(cacerts) != hash_:
                    raise Fatal(f"failed to validate token: token CA hash does not match the Cluster CA "
                                f"certificate hash: {hash_[:12]}... != {ca_hash(cacerts)[:12]}...")
                self.server_ca = cacerts
                self.password = password
                reply = json.loads(https_request(
                    url + "/v1-k3s/server-bootstrap", "POST",
                    {"name": self.node_name, "url": self.url, "critical": self.critical()},
                    cadata=cacerts.decode(), basic=("server", password), timeout=15))
                break
            except HttpError as exc:
                if exc.status == 401:
                    raise Fatal(f"failed to validate token: failed to get bootstrap data from {url}: "
                                "401 Unauthorized (wrong token password)") from exc
                if exc.status == 400:
                    raise Fatal(f"failed to validate server configuration: {exc.body}") from exc
                if exc.status == 409:
                    raise Fatal("starting kubernetes: preparing server: start managed database: joining etcd "
                                f"cluster: {str(exc.body).strip()}") from exc
                log("info", f"Waiting to join the cluster: {url}: {exc}")
            except (OSError, ssl.SSLError) as exc:
                log("info", f"Waiting for the server at {url} to answer: {exc}")
            self.stop.wait(RETRY_SECONDS)
        else:
            raise Fatal("stopped before joining")
        bootstrap = decrypt_bootstrap(password, reply["state"]["bootstrap"])
        self.state.data = reply["state"]
        self._install_bootstrap(bootstrap)
        self.state.save()
        log("info", f"Joined the etcd cluster with {len(self.state.members())} members")

    def _install_bootstrap(self, b: dict[str, str]) -> None:
        self.server_ca = b["server-ca.crt"].encode()
        for name, content in b.items():
            write_private(self.tls / name, content)
        token = format_token(self.server_ca, "server", self.password)
        write_private(self.server_dir / "token", token + "\n")
        node_token = self.server_dir / "node-token"
        if not node_token.is_symlink():
            node_token.unlink(missing_ok=True)
            node_token.symlink_to("token")
        agent_token = configured_token(self.cfg, "agent-token")
        if agent_token:
            write_private(self.server_dir / "agent-token",
                          format_token(self.server_ca, "node", parse_token(agent_token)[2]) + "\n")
        write_private(self.server_dir / "cred" / "passwd",
                      f"{self.password},server,server,k3s:server\n")

    def _local_address(self) -> str:
        """Where local clients reach this server: the bind address, else loopback."""
        bind = self.cfg.get("bind-address")
        return bind if bind and bind not in ("0.0.0.0", "::") else "127.0.0.1"  # noqa: S104 - comparing, not binding

    def _sans(self) -> list[str]:
        sans = [self._local_address(), "127.0.0.1", "::1", "localhost", "kubernetes", "kubernetes.default",
                "kubernetes.default.svc", "kubernetes.default.svc.cluster.local",
                self.node_name, socket.gethostname(), self.node_ip]
        sans += _as_list(self.cfg.get("node-ip")) + _as_list(self.cfg.get("node-external-ip"))
        sans += _as_list(self.cfg.get("tls-san"))
        seen: list[str] = []
        for s in sans:
            if s and s not in seen:
                seen.append(s)
        return seen

    def _write_files(self) -> None:
        ca = self.tls / "server-ca.crt"
        cak = self.tls / "server-ca.key"
        sans = self._sans()
        stamp = self.tls / "serving-kube-apiserver.sans"
        if not stamp.exists() or stamp.read_text() != json.dumps(sans):
            cert, key = sign_cert(ca.read_bytes(), cak.read_bytes(), "/CN=kube-apiserver", sans, client=False)
            write_private(self.tls / "serving-kube-apiserver.crt", cert + ca.read_bytes())
            write_private(self.tls / "serving-kube-apiserver.key", key)
            write_private(stamp, json.dumps(sans))
        admin_crt = self.tls / "client-admin.crt"
        if not admin_crt.exists():
            cert, key = sign_cert((self.tls / "client-ca.crt").read_bytes(),
                                  (self.tls / "client-ca.key").read_bytes(),
                                  "/O=system:masters/CN=system:admin", None, client=True)
            write_private(admin_crt, cert)
            write_private(self.tls / "client-admin.key", key)
        kubeconfig = {
            "apiVersion": "v1",
            "clusters": [{"cluster": {
                "certificate-authority-data": base64.b64encode(ca.read_bytes()).decode(),
                "server": f"https://{_url_host_fmt(self._local_address())}:{self.port}"}, "name": "default"}],
            "contexts": [{"context": {"cluster": "default", "user": "default"}, "name": "default"}],
            "current-context": "default", "kind": "Config", "preferences": {},
            "users": [{"name": "default", "user": {
                "client-certificate-data": base64.b64encode(admin_crt.read_bytes()).decode(),
                "client-key-data": base64.b64encode((self.tls / "client-admin.key").read_bytes()).decode()}}],
        }
        mode_text = str(self.cfg.get("write-kubeconfig-mode") or "0600")
        try:
            mode = int(mode_text, 8)
        except ValueError as exc:
            raise Fatal(f"invalid write-kubeconfig-mode {mode_text!r}") from exc
        path = Path(self.cfg.get("write-kubeconfig") or p("/etc/rancher/k3s/k3s.yaml"))
        write_private(path, yaml_dump(kubeconfig), mode)
        if self.cfg.get("write-kubeconfig-group"):
            import grp
            os.chown(path, -1, grp.getgrnam(self.cfg["write-kubeconfig-group"]).gr_gid)
        log("info", f"Wrote kubeconfig {path}")

    def _serve(self) -> None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(self.tls / "serving-kube-apiserver.crt"), str(self.tls / "serving-kube-apiserver.key"))
        ctx.load_verify_locations(cafile=str(self.tls / "client-ca.crt"))
        ctx.verify_mode = ssl.CERT_OPTIONAL
        bind = self.cfg.get("bind-address") or "0.0.0.0"  # noqa: S104 - K3s listens on all addresses by default
        handler = type("Handler", (ApiHandler,), {"server_obj": self})
        time.sleep(API_START_SECONDS)
        try:
            self.httpd = ApiServer((bind, self.port), handler, ctx, self)
        except OSError as exc:
            raise Fatal(f"failed to listen on {bind}:{self.port}: {exc.strerror}") from exc
        threading.Thread(target=self.httpd.serve_forever, daemon=True, name="api-loop").start()
        threading.Thread(target=self._persist_loop, daemon=True, name="persist").start()
        log("info", f"Serving the Kubernetes API on https://{bind}:{self.port}")

    def node_record(self, payload: dict[str, Any], existing: dict[str, Any] | None) -> dict[str, Any]:
        now = time.time()
        rec: dict[str, Any] = dict(existing) if existing else {"created": now}
        labels = dict(existing["labels"]) if existing else {}
        if not existing:  # node-label and node-taint only apply at first registration
            for spec in payload.get("node_labels", []):
                k, v = parse_label(spec)
                labels[k] = v
            rec["taints"] = [parse_taint(t) for t in payload.get("node_taints", [])]
        labels.update({
            "kubernetes.io/arch": payload["arch"], "beta.kubernetes.io/arch": payload["arch"],
            "kubernetes.io/os": "linux", "beta.kubernetes.io/os": "linux",
            "kubernetes.io/hostname": payload["name"], "k3s.io/hostname": payload["hostname"],
            "k3s.io/internal-ip": payload["ip"], "node.kubernetes.io/instance-type": "k3s",
        })
        for role in payload.get("roles", []):
            labels[f"node-role.kubernetes.io/{role}"] = "true"
        rec.update({"name": payload["name"], "ip": payload["ip"], "arch": payload["arch"],
                    "version": payload["version"], "labels": labels, "last_seen": now,
                    "running": True, "os_image": payload.get("os_image", ""),
                    "kernel": payload.get("kernel", ""), "args": payload.get("args", []),
                    "external_ips": payload.get("external_ips", []),
                    **{k: payload.get(k, "") for k in ("machine_id", "boot_id", "system_uuid")}})
        return rec

    def register(self, payload: dict[str, Any], password: str) -> None:
        """Register (or re-register) a node, enforcing its node password."""
        self.state.write({"op": "register", "node": payload, "password": password})

    def heartbeat(self, name: str, password: str, version_: str, running: bool = True) -> None:
        """A node's heartbeat. The leader keeps it in memory (PERSIST_SECONDS at most, then one write for
        all of them); another server hands it to the leader."""
        self.count("heartbeats")
        self.state.require_quorum()
        leader = self.state.leader()
        beat = {"name": name, "password": password, "version": version_, "running": running}
        if leader == self.node_name:
            self.note_heartbeat(beat)
            return
        try:
            self.peer_call(self.state.members()[leader], "POST", "/v1-k3s/sim/peer/heartbeat", beat, timeout=5)
        except HttpError as exc:
            if exc.status == 403:
                raise PermissionError(exc.body) from exc
            if exc.status == 404:
                raise KeyError(name) from exc
            raise ServiceUnavailable(f"etcdserver: leader {leader} refused the heartbeat: {exc.body}") from exc
        except (OSError, ssl.SSLError) as exc:
            self.state.forget_alive()
            raise ServiceUnavailable(f"etcdserver: leader changed ({leader} unreachable)") from exc

    def note_heartbeat(self, beat: dict[str, Any]) -> None:
        """On the leader: check the node and its password as a write would, and keep the beat in memory."""
        name = beat["name"]
        with self.state.lock:
            if name not in self.state.data["nodes"]:
                raise KeyError(name)
            self._check_node_password(self.state.data, name, beat["password"])
            self.pending[name] = {"last_seen": time.time(), "running": beat["running"], "version": beat["version"]}

    def _persist_loop(self) -> None:
        """Write the heartbeats kept in memory to the datastore, at most every PERSIST_SECONDS."""
        while not self.stop.wait(PERSIST_SECONDS):
            with self.state.lock:
                batch = dict(self.pending)
            if not batch:
                continue
            try:
                self.state.write({"op": "heartbeats", "seen": batch})
            except (ServiceUnavailable, KeyError, PermissionError) as exc:
                log("warning", f"Node heartbeats not persisted yet: {exc}")
                continue
            with self.state.lock:
                for name, seen in batch.items():
                    if self.pending.get(name) is seen:
                        del self.pending[name]

    def node_records(self) -> dict[str, dict[str, Any]]:
        """The nodes as the datastore has them, with the heartbeats the leader holds in memory."""
        with self.state.lock:
            nodes = self.state.data["nodes"]
            return {n: (dict(r, **self.pending[n]) if n in self.pending else r) for n, r in nodes.items()}

    @staticmethod
    def _check_node_password(state: dict[str, Any], name: str, password: str) -> None:
        stored = state["node_passwords"].get(name)
        if stored is not None and stored != hashlib.sha256(f"{name}:{password}".encode()).hexdigest():
            raise PermissionError(NODE_PASSWORD_MSG)

    def apply_op(self, state: dict[str, Any], op: dict[str, Any]) -> None:
        """Apply one datastore operation (on the leader)."""
        kind = op["op"]
        if kind == "register":
            name = op["node"]["name"]
            self._check_node_password(state, name, op["password"])
            state["node_passwords"][name] = hashlib.sha256(f"{name}:{op['password']}".encode()).hexdigest()
            state["nodes"][name] = self.node_record(op["node"], state["nodes"].get(name))
            self.pending.pop(name, None)
        elif kind == "heartbeats":  # a batch the leader kept in memory; nodes deleted since are skipped
            for name, seen in op["seen"].items():
                if name in state["nodes"]:
                    state["nodes"][name].update(seen)
        elif kind == "add_member":
            state["members"][op["name"]] = op["url"]
        elif kind == "cordon":
            if op["name"] not in state["nodes"]:
                raise KeyError(op["name"])
            state["nodes"][op["name"]]["unschedulable"] = op["unschedulable"]
        elif kind == "node_meta":  # kubectl label / taint: kept in the datastore like any node field
            if op["name"] not in state["nodes"]:
                raise KeyError(op["name"])
            rec = state["nodes"][op["name"]]
            labels = dict(rec.get("labels", {}))
            for key, value in (op.get("labels") or {}).items():
                if value is None:
                    labels.pop(key, None)
                else:
                    labels[key] = str(value)
            rec["labels"] = labels
            if op.get("taints") is not None:
                rec["taints"] = op["taints"]
        elif kind in ("object_put", "object_delete"):
            apply_object_op(state, op)
        elif kind == "lease":
            apply_lease_op(state, op)
        elif kind == "delete_node":
            if op["name"] not in state["nodes"]:
                raise KeyError(op["name"])
            state["nodes"].pop(op["name"])
            state["node_passwords"].pop(op["name"], None)  # the <name>.node-password.k3s secret
            # K3s's etcd member controller (a finalizer on server nodes) removes a deleted server's member.
            if state.get("members", {}).pop(op["name"], None) is not None:
                log("info", f"Removed etcd member {op['name']} (its node was deleted)")
        else:
            raise ValueError(f"unknown operation {kind!r}")

    def own_payload(self) -> dict[str, Any]:
        roles = ["control-plane", "master"] + (["etcd"] if self.etcd else [])
        return node_payload(self.cfg, self.node_name, self.node_ip, roles)

    def _register_self(self) -> None:
        pw = node_password()
        while not self.stop.is_set():
            try:
                self.register(self.own_payload(), pw)
                return
            except PermissionError as exc:
                raise Fatal(str(exc)) from exc
            except ServiceUnavailable as exc:
                log("info", f"Waiting for etcd quorum before registering this node: {exc}")
            self.stop.wait(RETRY_SECONDS)

    def _controllers_loop(self) -> None:
        """The deploy controller on every server; the helm controller on the datastore's leader; what
        kube-vip would do on this server."""
        deploy, helm = DeployController(self), HelmController(self)
        self.kube_vip = KubeVip(self)
        while True:
            try:
                if self.state.has_quorum():
                    deploy.scan()
                    if self.state.leader() == self.node_name:
                        helm.scan()
                        Objects(self).purge_terminating()
                self.kube_vip.scan()
            except (ServiceUnavailable, ApiStatus) as exc:
                log("warning", f"controllers: {exc}")
            except Exception as exc:  # a controller's bug must not stop the server
                log("error", f"controllers: {type(exc).__name__}: {exc}")
            if self.stop.wait(DEPLOY_SECONDS):
                return

    def _heartbeat_loop(self) -> None:
        pw = node_password()
        while not self.stop.wait(HEARTBEAT_SECONDS):
            try:
                self.heartbeat(self.node_name, pw, version())
            except KeyError:
                log("info", "This node was deleted from the cluster: registering it again")
                try:
                    self.register(self.own_payload(), pw)
                except Exception as exc:
                    log("error", f"re-registration failed: {exc}")
            except ServiceUnavailable as exc:
                log("warning", f"Node heartbeat failed: {exc}")
            except PermissionError as exc:
                log("error", str(exc))

    def shutdown(self) -> None:
        self.stop.set()
        if self.kube_vip is not None:
            self.kube_vip.release(give_up_lease=True)  # as kube-vip when its node stops
        if self.httpd:
            self.httpd.shutdown()
            # Stop listening now (new connections are refused), not at exit:
            # the kernel would otherwise accept connections nobody serves.
            self.httpd.server_close()

    # cluster reset ----------------------------------------------------------
    def cluster_reset(self) -> None:
        restore = self.cfg.get("cluster-reset-restore-path")
        token = configured_token(self.cfg)
        if restore:
            path = Path(restore)
            if not path.is_file():
                raise Fatal(f"cluster-reset-restore-path {path}: no such file")
            snap = json.loads(path.read_text())
            if snap.get("kind") != "pik3s-sim-etcd-snapshot":
                raise Fatal(f"{path} is not an etcd snapshot")
            state = snap["state"]
            stored = self.server_dir / "token"
            current = token or (stored.read_text().strip() if stored.exists() else None)
            if not current:
                raise Fatal("--token is required to restore a snapshot onto a server that has no token")
            _h, _u, password = parse_token(current)
            if password_check(password, state["token_salt"]) != state["token_check"]:
                raise Fatal("bootstrap data already found and encrypted with different token")
            bootstrap = decrypt_bootstrap(password, state["bootstrap"])
            log("info", f"Restoring etcd snapshot {path}")
        else:
            if not self.db_file.exists():
                raise Fatal(f"etcd database not found in {self.server_dir}")
            state = json.loads(self.db_file.read_text())
            stored_token = (self.server_dir / "token").read_text().strip()
            password = parse_token(token or stored_token)[2]
            bootstrap = decrypt_bootstrap(password, state["bootstrap"])
        self.etcd = True
        self.password = password
        state["members"] = {self.node_name: self.url}
        state["generation"] = secrets.token_hex(4)
        state["etcd"] = True
        db = self.server_dir / "db"
        old_etcd = db / "etcd"
        if old_etcd.exists():  # kept aside as K3s does; snapshots stay where they are
            old_etcd.rename(db / f"etcd-old-{int(time.time())}")
        (db / "state.db").unlink(missing_ok=True)
        self.state.data = state
        self._install_bootstrap(bootstrap)
        self.state.save()
        write_private(self.server_dir / "db" / "reset-flag", "")
        log("info", "Managed etcd cluster membership has been reset, restart without --cluster-reset "
                    f"flag now. Backup and delete {self.server_dir / 'db'} on each peer etcd server "
                    "and rejoin the nodes")


def node_name_from(cfg: dict[str, Any]) -> str:
    name = cfg.get("node-name") or socket.gethostname()
    if cfg.get("with-node-id"):
        id_file = p("/etc/rancher/node/node-id")
        if not id_file.exists():
            write_private(id_file, secrets.token_hex(4) + "\n")
        name = f"{name}-{id_file.read_text().strip()}"
    name = str(name).lower()
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", name):
        raise Fatal(f"invalid node name {name!r}: must be a lowercase RFC 1123 name")
    return name


def node_password() -> str:
    path = p("/etc/rancher/node/password")
    if not path.exists():
        write_private(path, secrets.token_hex(16) + "\n")
    return path.read_text().strip()


def node_payload(cfg: dict[str, Any], name: str, ip: str, roles: list[str]) -> dict[str, Any]:
    return {
        "name": name, "hostname": socket.gethostname(), "ip": ip, "arch": k8s_arch(),
        "version": version(), "roles": roles, "node_labels": _as_list(cfg.get("node-label")),
        "node_taints": _as_list(cfg.get("node-taint")), "os_image": os_image(),
        "kernel": platform.release(), "external_ips": _as_list(cfg.get("node-external-ip")),
        "args": sorted(k for k in cfg if k not in ("token", "agent-token")), **machine_ids(),
    }


def machine_ids() -> dict[str, str]:
    """What the kubelet reports as machineID, systemUUID and bootID (the Node's nodeInfo)."""
    def read(path: str) -> str:
        try:
            return Path(p(path)).read_text().strip()
        except OSError:
            return ""
    machine = read("/etc/machine-id")
    return {"machine_id": machine, "boot_id": read("/proc/sys/kernel/random/boot_id"),
            "system_uuid": read("/sys/class/dmi/id/product_uuid") or machine}


def import_images(data_dir: Path) -> None:
    images = data_dir / "agent" / "images"
    if not images.is_dir():
        return
    import tarfile
    for tarball in sorted(images.iterdir()):
        if not tarball.name.endswith((".tar", ".tar.gz", ".tar.zst", ".tgz")):
            continue
        try:
            with tarfile.open(tarball) as tf:
                member = tf.extractfile("manifest.json")
                manifest = json.loads(member.read()) if member else {}
        except (tarfile.TarError, KeyError, ValueError) as exc:
            log("error", f"Failed to import images from {tarball}: {exc}")
            continue
        arch = manifest.get("arch")
        if arch and arch != k8s_arch():
            log("error", f"Images in {tarball} are for {arch}, this node is {k8s_arch()}: not imported")
            continue
        log("info", f"Imported images from {tarball} ({len(manifest.get('images', []))} images)")
