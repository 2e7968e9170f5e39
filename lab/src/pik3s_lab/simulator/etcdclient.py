"""A client of an external etcd through its v3 JSON gateway (what ``datastore-endpoint`` names).

etcd serves its v3 API as JSON over HTTP next to gRPC (``POST /v3/kv/range``,
``/v3/kv/txn``; keys and values base64, 64-bit numbers as strings), so the
standard library is enough. Errors are worded as K3s's Go etcd client words
them (``x509: certificate signed by unknown authority``, ``remote error: tls:
bad certificate``, ``connect: connection refused``, ``context deadline
exceeded``), since that is what an operator of real K3s reads in its journal.
"""

from __future__ import annotations

import base64
import http.client
import json
import ssl
import threading
import urllib.parse
from typing import Any

# One request's time budget (K3s's etcd client dials with a few seconds).
TIMEOUT = 3.0


class DatastoreError(Exception):
    """The datastore cannot be used. ``fatal``: retrying cannot help (a certificate or a file)."""

    def __init__(self, message: str, fatal: bool = False):
        super().__init__(message)
        self.fatal = fatal


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _unb64(text: str) -> str:
    return base64.b64decode(text).decode()


def endpoint_kind(endpoint: str) -> str:
    """What a datastore-endpoint names: "etcd", "mysql", "postgres", "sqlite" or "" (not one K3s takes)."""
    scheme = endpoint.split("://", 1)[0].lower() if "://" in endpoint else ""
    return {"http": "etcd", "https": "etcd", "mysql": "mysql", "postgres": "postgres",
            "postgresql": "postgres", "sqlite": "sqlite"}.get(scheme, "")


def shown(endpoint: str) -> str:
    """An endpoint for a log line or a message: any user:password in it hidden."""
    out = []
    for url in endpoint.split(","):
        parts = urllib.parse.urlsplit(url.strip())
        if parts.username or parts.password:
            host = parts.hostname or ""
            netloc = f"***@{host}" + (f":{parts.port}" if parts.port else "")
            url = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
        out.append(url.strip())
    return ",".join(out)


class EtcdClient:
    """Requests to the first endpoint that answers (a comma-separated list, as K3s takes it)."""

    def __init__(self, endpoint: str, cafile: str = "", certfile: str = "", keyfile: str = "",
                 timeout: float = TIMEOUT):
        self.endpoint = endpoint
        self.urls = [urllib.parse.urlsplit(u.strip()) for u in endpoint.split(",") if u.strip()]
        for u in self.urls:
            if u.scheme not in ("http", "https") or not u.hostname:
                raise DatastoreError(f"invalid etcd endpoint {shown(u.geturl())!r}: want http(s)://host:port",
                                     fatal=True)
        if bool(certfile) != bool(keyfile):
            raise DatastoreError("datastore-certfile and datastore-keyfile go together: set both or neither",
                                 fatal=True)
        self.timeout = timeout
        self.ctx: ssl.SSLContext | None = None
        if any(u.scheme == "https" for u in self.urls):
            try:
                self.ctx = ssl.create_default_context(cafile=cafile or None)
                if certfile:
                    self.ctx.load_cert_chain(certfile, keyfile)
            except FileNotFoundError as exc:
                raise DatastoreError(f"open {exc.filename}: no such file or directory", fatal=True) from exc
            except (OSError, ssl.SSLError) as exc:
                raise DatastoreError(f"loading the datastore TLS files: {exc}", fatal=True) from exc
        self._lock = threading.Lock()
        self._conn: http.client.HTTPConnection | None = None
        self._conn_url: urllib.parse.SplitResult | None = None

    # transport ---------------------------------------------------------------
    def _connect(self, url: urllib.parse.SplitResult) -> http.client.HTTPConnection:
        port = url.port or 2379
        if url.scheme == "https":
            return http.client.HTTPSConnection(url.hostname or "", port, timeout=self.timeout, context=self.ctx)
        return http.client.HTTPConnection(url.hostname or "", port, timeout=self.timeout)

    def call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST ``body`` to ``path`` on the first endpoint that answers; its JSON reply."""
        errors: list[DatastoreError] = []
        with self._lock:
            order = ([self._conn_url] if self._conn_url else []) + [u for u in self.urls if u != self._conn_url]
            for url in order:
                for attempt in (1, 2):  # a kept-open connection the server closed: once more, on a new one
                    try:
                        if self._conn is None or self._conn_url != url:
                            self._close()
                            self._conn, self._conn_url = self._connect(url), url
                        self._conn.request("POST", path, json.dumps(body).encode(),
                                           {"Content-Type": "application/json"})
                        resp = self._conn.getresponse()
                        raw = resp.read()
                    except (OSError, http.client.HTTPException) as exc:
                        self._close()
                        reused = attempt == 1 and isinstance(exc, (http.client.RemoteDisconnected, BrokenPipeError,
                                                                   ConnectionResetError))
                        if reused and not isinstance(exc, ssl.SSLError):
                            continue
                        errors.append(self._translate(url, exc))
                        break
                    if resp.status != 200:
                        try:
                            info = json.loads(raw)
                        except ValueError:
                            info = {"message": raw.decode(errors="replace")}
                        raise DatastoreError(f"etcdserver: {info.get('message') or info.get('error') or resp.status}")
                    reply: dict[str, Any] = json.loads(raw)
                    return reply
        fatal = bool(errors) and all(e.fatal for e in errors)
        raise DatastoreError("; ".join(str(e) for e in errors) or "no etcd endpoint", fatal=fatal)

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn, self._conn_url = None, None

    @staticmethod
    def _translate(url: urllib.parse.SplitResult, exc: BaseException) -> DatastoreError:
        """``exc`` as Go's etcd client would have put it."""
        addr = f"{url.hostname}:{url.port or 2379}"
        if isinstance(exc, ssl.SSLCertVerificationError):
            why = ("x509: certificate signed by unknown authority" if exc.verify_code in (19, 20, 21)
                   else f"x509: {exc.verify_message}")
            return DatastoreError(f"connection error: desc = \"transport: authentication handshake failed: {why}\"",
                                  fatal=True)
        if isinstance(exc, ssl.SSLError):
            reason = (exc.reason or str(exc)).lower()
            if "certificate" in reason or "alert" in reason:  # the server refused the client certificate
                return DatastoreError("connection error: desc = \"transport: authentication handshake failed: "
                                      "remote error: tls: bad certificate\"", fatal=True)
            return DatastoreError(f"connection error: desc = \"transport: {exc}\"")
        if isinstance(exc, ConnectionRefusedError):
            return DatastoreError(f"connection error: desc = \"transport: Error while dialing dial tcp {addr}: "
                                  "connect: connection refused\"")
        if isinstance(exc, ConnectionResetError) and url.scheme == "https":
            # A TLS server that wants a client certificate drops the connection of one that sends none.
            return DatastoreError("connection error: desc = \"transport: authentication handshake failed: "
                                  "remote error: tls: bad certificate\"", fatal=True)
        if isinstance(exc, TimeoutError):
            return DatastoreError("context deadline exceeded")
        return DatastoreError(f"connection error: desc = \"transport: Error while dialing dial tcp {addr}: {exc}\"")

    # the KV API --------------------------------------------------------------
    def get(self, key: str) -> tuple[str, int] | None:
        """The value and mod_revision of ``key``; None when it does not exist."""
        kvs = self.call("/v3/kv/range", {"key": _b64(key)}).get("kvs") or []
        if not kvs:
            return None
        return _unb64(kvs[0].get("value", "")), int(kvs[0].get("mod_revision", 0))

    def range(self, start: str, end: str) -> dict[str, str]:
        """Every key from ``start`` (included) to ``end`` (excluded) and its value."""
        kvs = self.call("/v3/kv/range", {"key": _b64(start), "range_end": _b64(end)}).get("kvs") or []
        return {_unb64(kv["key"]): _unb64(kv.get("value", "")) for kv in kvs}

    def txn(self, key: str, mod_revision: int, puts: dict[str, str], deletes: list[str]) -> int:
        """Apply ``puts`` and ``deletes`` at once if ``key``'s mod_revision is still ``mod_revision`` (0: the
        key does not exist): the etcd revision written, or 0 when another writer came first."""
        success: list[dict[str, Any]] = [{"request_put": {"key": _b64(k), "value": _b64(v)}} for k, v in puts.items()]
        success += [{"request_delete_range": {"key": _b64(k)}} for k in deletes]
        reply = self.call("/v3/kv/txn", {
            "compare": [{"key": _b64(key), "result": "EQUAL", "target": "MOD", "mod_revision": str(mod_revision)}],
            "success": success})
        if not reply.get("succeeded"):
            return 0
        return int(reply.get("header", {}).get("revision", 0))

    def compact(self, revision: int) -> None:
        """Drop the history before ``revision`` (what Kubernetes's apiserver does every 5 minutes)."""
        self.call("/v3/kv/compaction", {"revision": str(revision)})
