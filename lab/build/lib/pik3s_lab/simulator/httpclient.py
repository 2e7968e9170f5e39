"""The HTTPS client agents, servers and kubectl use (one TLS context and connection each)."""

from __future__ import annotations

import base64
import http.client
import http.server
import json
import os
import socket
import ssl
import tempfile
import threading
import urllib.parse
from pathlib import Path
from typing import Any

from .common import SIM_NAME
from .host import version
from .tokens import write_private


# HTTP client for joining, peers and kubectl.
class HttpError(Exception):
    def __init__(self, status: int, body: str):
        super().__init__(f"{status} {body}")
        self.status = status
        self.body = body


def https_request(url: str, method: str = "GET", body: Any = None, *,
                  cadata: str | None = None, verify: bool = True,
                  basic: tuple[str, str] | None = None,
                  client_cert: tuple[bytes, bytes] | None = None, bearer: str | None = None,
                  timeout: float = 5.0) -> bytes:
    u = urllib.parse.urlsplit(url)
    ctx = ssl.create_default_context(cadata=cadata) if verify else ssl._create_unverified_context()
    if not verify:
        ctx.check_hostname = False
    tmpdir = None
    try:
        if client_cert:
            tmpdir = tempfile.mkdtemp(prefix="k3s-sim-")
            cf, kf = Path(tmpdir, "c.pem"), Path(tmpdir, "k.pem")
            write_private(cf, client_cert[0])
            write_private(kf, client_cert[1])
            ctx.load_cert_chain(str(cf), str(kf))
        conn = http.client.HTTPSConnection(u.hostname or "", u.port or 443, context=ctx, timeout=timeout)
        try:
            status, payload = _exchange(conn, method, u.path + (f"?{u.query}" if u.query else ""), body, basic,
                                        bearer)
        finally:
            conn.close()
        if status >= 400:
            raise HttpError(status, payload.decode(errors="replace").strip())
        return payload
    finally:
        if tmpdir:
            for f in Path(tmpdir).iterdir():
                f.unlink()
            os.rmdir(tmpdir)


class HttpClient:
    """HTTPS with keep-alive for long-running clients (agents, server peers): one TLS context, and per
    server URL a small pool of open connections reused request after request, so a heartbeat is one
    request on a connection already open, not a new connection and TLS handshake (nor a new thread on
    the server's side)."""

    def __init__(self, cadata: str, basic: tuple[str, str], timeout: float = 5.0):
        self.ctx = ssl.create_default_context(cadata=cadata)
        self.basic = basic
        self.timeout = timeout
        self.lock = threading.Lock()
        self.idle: dict[tuple[str, int], list[http.client.HTTPSConnection]] = {}

    def _take(self, key: tuple[str, int], timeout: float) -> tuple[http.client.HTTPSConnection, bool]:
        with self.lock:
            pool = self.idle.get(key) or []
            if pool:
                conn = pool.pop()
                if conn.sock is not None:
                    conn.sock.settimeout(timeout)
                conn.timeout = timeout
                return conn, True
        return http.client.HTTPSConnection(key[0], key[1], context=self.ctx, timeout=timeout), False

    def _give_back(self, key: tuple[str, int], conn: http.client.HTTPSConnection) -> None:
        with self.lock:
            self.idle.setdefault(key, []).append(conn)

    def request(self, url: str, method: str = "GET", body: Any = None, timeout: float | None = None) -> bytes:
        u = urllib.parse.urlsplit(url)
        key = (u.hostname or "", u.port or 443)
        path = u.path + (f"?{u.query}" if u.query else "")
        for _attempt in range(2):
            conn, reused = self._take(key, timeout or self.timeout)
            try:
                status, payload = _exchange(conn, method, path, body, self.basic)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError, ssl.SSLEOFError):
                conn.close()
                if reused:  # the server closed it while idle: the request never reached it
                    continue
                raise
            except BaseException:
                conn.close()
                raise
            self._give_back(key, conn)
            if status >= 400:
                raise HttpError(status, payload.decode(errors="replace").strip())
            return payload
        raise OSError(f"{url}: connection closed by the server")

    def close(self) -> None:
        with self.lock:
            for pool in self.idle.values():
                for conn in pool:
                    conn.close()
            self.idle.clear()


def _exchange(conn: http.client.HTTPConnection, method: str, path: str, body: Any,
              basic: tuple[str, str] | None, bearer: str | None = None) -> tuple[int, bytes]:
    headers = {"User-Agent": f"k3s/{version()} ({SIM_NAME})"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/merge-patch+json" if method == "PATCH" else "application/json"
    if bearer:
        headers["Authorization"] = f"Bearer {bearer}"
    elif basic:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{basic[0]}:{basic[1]}".encode()).decode()
    conn.request(method, path, body=data, headers=headers)
    resp = conn.getresponse()
    return resp.status, resp.read()


def _url_host(url: Any) -> str | None:
    if not url:
        return None
    host = urllib.parse.urlsplit(str(url)).hostname
    if not host:
        return None
    try:
        return socket.gethostbyname(host)
    except OSError:
        return None


def _url_host_fmt(ip: str) -> str:
    return f"[{ip}]" if ":" in ip else ip
