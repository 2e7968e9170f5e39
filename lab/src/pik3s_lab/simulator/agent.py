"""`k3s agent`: join through a server, heartbeats, the server list."""

from __future__ import annotations

import http.client
import http.server
import json
import ssl
import threading
from pathlib import Path
from typing import Any

from .common import HEARTBEAT_SECONDS, RETRY_SECONDS, SIM_NAME, Fatal, log, p
from .config import _as_list
from .host import memory_cgroup_state, primary_ip, sd_notify, version
from .httpclient import HttpClient, HttpError, _url_host, https_request
from .registries import load_registries
from .server import import_images, node_name_from, node_password, node_payload
from .tokens import ca_hash, configured_token, parse_token


# The agent.
class Agent:
    def __init__(self, cfg: dict[str, Any]):
        self.cfg = cfg
        if not cfg.get("server"):
            raise Fatal("--server is required")
        self.token = configured_token(cfg)
        if not self.token:
            raise Fatal("--token is required")
        self.hash, _user, self.password = parse_token(self.token)
        self.servers = [str(cfg["server"]).rstrip("/")]
        self.data_dir = Path(cfg.get("data-dir") or p("/var/lib/rancher/k3s"))
        self.node_name = node_name_from(cfg)
        ips = _as_list(cfg.get("node-ip"))
        self.node_ip = ips[0] if ips else primary_ip(_url_host(cfg["server"]))
        self.ca: bytes | None = None
        self.client: HttpClient | None = None  # one TLS context and kept-open connections, once the CA is known
        self.stop = threading.Event()

    def call(self, path: str, body: Any, method: str = "POST") -> bytes:
        if self.client is None:
            assert self.ca is not None
            self.client = HttpClient(self.ca.decode(), ("node", self.password), timeout=5)
        last: Exception | None = None
        for url in list(self.servers):
            try:
                return self.client.request(url + path, method, body)
            except HttpError:
                raise
            except (OSError, ssl.SSLError, http.client.HTTPException) as exc:
                last = exc
        raise OSError(f"no server answered: {last}")

    def start(self) -> None:
        ok, why = memory_cgroup_state()
        if not ok:
            raise Fatal(f"{why}: enable the memory cgroup on the kernel command line "
                        "(cgroup_memory=1 cgroup_enable=memory)")
        log("info", f"Starting k3s agent {version()} ({SIM_NAME}, not K3s)")
        load_registries()
        pw = node_password()
        payload = node_payload(self.cfg, self.node_name, self.node_ip, [])
        while not self.stop.is_set():
            try:
                if self.ca is None:
                    cacerts = https_request(self.servers[0] + "/cacerts", verify=False, timeout=5)
                    if self.hash and ca_hash(cacerts) != self.hash:
                        log("error", f"Failed to validate connection to cluster at {self.servers[0]}: "
                                     "token CA hash does not match the Cluster CA certificate hash")
                        self.stop.wait(RETRY_SECONDS)
                        continue
                    self.ca = cacerts
                self.call("/v1-k3s/sim/nodes/register", {"node": payload, "password": pw})
                break
            except HttpError as exc:
                if exc.status == 401:
                    log("error", f"Failed to validate connection to cluster at {self.servers[0]}: "
                                 "401 Unauthorized: the token's password is wrong")
                elif exc.status == 403:
                    log("error", exc.body)
                else:
                    log("info", f"Waiting to retrieve agent configuration; server is not ready: {exc}")
            except (OSError, ssl.SSLError) as exc:
                log("info", f"Waiting to retrieve agent configuration; server is not ready: {exc}")
            self.stop.wait(RETRY_SECONDS)
        if self.stop.is_set():
            return
        log("info", f"Node {self.node_name} registered with the cluster")
        self._refresh_servers()
        sd_notify("READY=1\n")
        import_images(self.data_dir)
        while not self.stop.wait(HEARTBEAT_SECONDS):
            try:
                reply = json.loads(self.call(f"/v1-k3s/sim/nodes/{self.node_name}/heartbeat",
                                             {"password": pw, "version": version()}))
                self._use_servers(reply.get("apiservers") or [])
            except HttpError as exc:
                if exc.status == 404:
                    log("info", "This node was deleted from the cluster: registering it again")
                    try:
                        self.call("/v1-k3s/sim/nodes/register", {"node": payload, "password": pw})
                    except Exception as exc2:
                        log("error", f"re-registration failed: {exc2}")
                else:
                    log("warning", f"Node heartbeat failed: {exc}")
            except (OSError, ssl.SSLError, ValueError) as exc:
                log("warning", f"Node heartbeat failed: {exc}")

    def _refresh_servers(self) -> None:
        try:
            urls = json.loads(self.call("/v1-k3s/sim/apiservers", None, "GET"))
        except Exception:
            return
        self._use_servers(urls)

    def _use_servers(self, urls: list[str]) -> None:
        """The configured server first, then the others the cluster knows, to fall back on."""
        first = self.servers[0]
        self.servers = [first] + [u for u in urls if u != first]
