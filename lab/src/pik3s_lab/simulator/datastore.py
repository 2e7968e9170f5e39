"""The replicated datastore and its quorum (what embedded etcd gives K3s), and the external one
(``datastore-endpoint``: an etcd the servers share)."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import ssl
import threading
import time
from typing import TYPE_CHECKING, Any

from .common import log
from .etcdclient import DatastoreError, EtcdClient, shown
from .httpclient import HttpError
from .objects import ApiStatus
from .tokens import write_private

if TYPE_CHECKING:
    from .server import Server


# The server.
class ServiceUnavailable(Exception):
    pass


# A replicated state a member refuses because it already has that revision (other content) or a later one.
STALE_REPLICA = "stale replica"


class ServerState:
    """One server's copy of the cluster datastore.

    As in etcd, one member leads: every write is an operation sent to the
    leader (the first reachable member by name), which applies it and pushes
    the new state to the others; it counts only when a quorum of the members
    has it. A server without quorum answers nothing but /ping and /cacerts.
    """

    def __init__(self, server: Server):
        self.server = server
        self.lock = threading.RLock()
        self.data: dict[str, Any] = {}
        self._alive_cache: tuple[float, list[str]] = (0.0, [])
        # Members that stopped answering (name -> when), as etcd marks a peer inactive: skipped by the
        # calls that serve requests and writes, and probed again by one background thread, so that a
        # peer that is gone costs one timeout, not one per request.
        self._down: dict[str, float] = {}
        self._prober: threading.Thread | None = None

    # persistence ------------------------------------------------------------
    def load(self) -> None:
        self.data = json.loads(self.server.db_file.read_text())

    def save(self) -> None:
        write_private(self.server.db_file, json.dumps(self.data, indent=1, sort_keys=True))

    # membership and quorum --------------------------------------------------
    def members(self) -> dict[str, str]:
        return dict(self.data.get("members", {}))

    def forget_alive(self) -> None:
        self._alive_cache = (0.0, [])

    def _ping(self, url: str) -> dict[str, Any] | None:
        try:
            info = json.loads(self.server.peer_call(url, "GET", "/v1-k3s/sim/peer/ping", timeout=1.5))
        except Exception:
            return None
        return info if isinstance(info, dict) else None

    def mark_down(self, name: str) -> None:
        """``name`` did not answer: skip it until the prober hears from it again."""
        self._down.setdefault(name, time.monotonic())
        if self._prober is None:
            self._prober = threading.Thread(target=self._probe_loop, daemon=True, name="etcd-prober")
            self._prober.start()

    def _probe_loop(self) -> None:
        """One long-lived thread (threads that exit leak under qemu-user 7.2): ping the members marked
        down, once a second, and bring back those that answer."""
        while not self.server.stop.wait(1.0):
            members = self.members()
            for name in list(self._down):
                if name not in members:
                    self._down.pop(name, None)
                elif self._ping(members[name]) is not None:
                    self._down.pop(name, None)
                    self.forget_alive()

    def alive(self) -> list[str]:
        """Members that answer (this one included), sorted by name."""
        now = time.monotonic()
        if now - self._alive_cache[0] < 1.0:
            return self._alive_cache[1]
        alive = [self.server.node_name]
        for name, url in self.members().items():
            if name == self.server.node_name or name in self._down:
                continue
            info = self._ping(url)
            if info is None:
                self.mark_down(name)
            elif info.get("generation") == self.data.get("generation"):
                alive.append(name)
        self._alive_cache = (now, sorted(alive))
        return self._alive_cache[1]

    def quorum(self) -> int:
        return len(self.members()) // 2 + 1

    def has_quorum(self) -> bool:
        return len(self.alive()) >= self.quorum()

    def require_quorum(self) -> None:
        if not self.has_quorum():
            raise ServiceUnavailable("etcdserver: request timed out (no quorum: "
                                     f"{len(self.alive())} of {len(self.members())} etcd members reachable)")

    def leader(self) -> str:
        return self.alive()[0]

    # writes -----------------------------------------------------------------
    def write(self, op: dict[str, Any]) -> None:
        """Commit one operation through the leader, on a quorum of members."""
        self.require_quorum()
        leader = self.leader()
        if leader != self.server.node_name:
            try:
                self.server.peer_call(self.members()[leader], "POST", "/v1-k3s/sim/peer/write", op, timeout=10)
                return
            except HttpError as exc:
                status = ApiStatus.from_body(exc.body)
                if status is not None:
                    raise status from exc
                if exc.status == 403:
                    raise PermissionError(exc.body) from exc
                if exc.status == 404:
                    raise KeyError(exc.body) from exc
                raise ServiceUnavailable(f"etcdserver: leader {leader} refused the write: {exc.body}") from exc
            except (OSError, ssl.SSLError) as exc:
                self.forget_alive()
                raise ServiceUnavailable(f"etcdserver: leader changed ({leader} unreachable)") from exc
        self.commit(op)

    def commit(self, op: dict[str, Any]) -> None:
        """Apply ``op`` as the leader and replicate it."""
        with self.lock:
            self.require_quorum()
            new = copy.deepcopy(self.data)
            self.server.apply_op(new, op)
            new["revision"] = new.get("revision", 0) + 1
            acks, behind = 1, False
            for name, url in self.members().items():
                if name == self.server.node_name or name in self._down:
                    continue  # a member that stopped answering catches up when it is back
                try:
                    self.server.peer_call(url, "POST", "/v1-k3s/sim/peer/replicate", new, timeout=2)
                    acks += 1
                except HttpError as exc:
                    # The member has this revision or a later one from another leader (members saw each
                    # other differently for a moment): this one is behind, as a deposed etcd leader is.
                    behind = behind or STALE_REPLICA in exc.body
                except Exception:
                    self.mark_down(name)
            # A quorum of the current members must acknowledge (a member being
            # added is not serving yet; it receives the state in its join reply).
            if acks < self.quorum():
                self.forget_alive()
                if behind:
                    self.server._pull_latest()  # catch up; the caller's retry writes on the latest state
                    raise ServiceUnavailable("etcdserver: leader changed (this member was behind; caught up)")
                raise ServiceUnavailable("etcdserver: request timed out (write not acknowledged by a quorum)")
            self.data = new
            self.save()
            self.server.count("writes")

    def receive(self, incoming: dict[str, Any]) -> str:
        """A peer's state (replicated by a leader, or pulled at start): "ok" (taken, or already this one),
        STALE_REPLICA (this member has that revision with other content, or a later one: the sender is
        behind), or "generation"."""
        with self.lock:
            if incoming.get("generation") != self.data.get("generation"):
                return "generation"
            mine, theirs = self.data.get("revision", 0), incoming.get("revision", 0)
            if theirs > mine:
                self.data = incoming
                self.save()
                return "ok"
            if theirs == mine and incoming == self.data:
                return "ok"
            return STALE_REPLICA


# Where the cluster state lives in an external etcd, key by key, as K3s lays
# it out there: the bootstrap data (CAs, encrypted with the token) under
# /bootstrap/<hash of the token's password>, each node under
# /registry/minions/, each node password under /registry/secrets/kube-system/,
# the rest of the simulator's state under /registry/k3s-sim/ (its objects, the
# servers, the revision every write compares).
BOOTSTRAP_PREFIX = "/bootstrap/"
NODES_PREFIX = "/registry/minions/"
PASSWORDS_PREFIX = "/registry/secrets/kube-system/"
PASSWORD_SUFFIX = ".node-password.k3s"
SIM_PREFIX = "/registry/k3s-sim/"
REVISION_KEY = SIM_PREFIX + "revision"
BOOTSTRAP_FIELDS = ("bootstrap", "token_salt", "token_check", "agent_token_check", "generation", "created")
# How often a server compacts the datastore's history (kube-apiserver's --etcd-compaction-interval): without
# it, every heartbeat batch would stay in etcd for good.
EXTERNAL_COMPACT_SECONDS = float(os.environ.get("PIK3S_SIM_COMPACT", "300"))
# A server reads the datastore's revision before each request it serves (so a read through one server
# sees a write made through another, as reads through K3s's datastore client do); checks closer together
# than this share one read.
EXTERNAL_REFRESH_SECONDS = 0.02


def bootstrap_key(password: str) -> str:
    return BOOTSTRAP_PREFIX + hashlib.sha256(password.encode()).hexdigest()[:12]


def state_to_keys(data: dict[str, Any], boot_key: str) -> dict[str, str]:
    """The etcd keys (and JSON values) of a cluster state."""
    out: dict[str, str] = {}
    boot: dict[str, Any] = {}
    for key, value in data.items():
        if key == "nodes":
            out.update({NODES_PREFIX + n: json.dumps(r, sort_keys=True) for n, r in value.items()})
        elif key == "node_passwords":
            out.update({PASSWORDS_PREFIX + n + PASSWORD_SUFFIX: json.dumps(h) for n, h in value.items()})
        elif key in BOOTSTRAP_FIELDS:
            boot[key] = value
        elif key != "revision":
            out[SIM_PREFIX + key] = json.dumps(value, sort_keys=True)
    out[boot_key] = json.dumps(boot, sort_keys=True)
    return out


def state_from_keys(kvs: dict[str, str], boot_key: str) -> dict[str, Any]:
    """The cluster state held in ``kvs`` (its bootstrap data from ``boot_key``)."""
    data: dict[str, Any] = {"nodes": {}, "node_passwords": {}}
    for key, raw in kvs.items():
        if key == REVISION_KEY:
            data["revision"] = int(raw)
        elif key.startswith(NODES_PREFIX):
            data["nodes"][key[len(NODES_PREFIX):]] = json.loads(raw)
        elif key.startswith(PASSWORDS_PREFIX) and key.endswith(PASSWORD_SUFFIX):
            data["node_passwords"][key[len(PASSWORDS_PREFIX):-len(PASSWORD_SUFFIX)]] = json.loads(raw)
        elif key == boot_key:
            data.update(json.loads(raw))
        elif key.startswith(SIM_PREFIX):
            data[key[len(SIM_PREFIX):]] = json.loads(raw)
    return data


class ExternalState(ServerState):
    """The cluster state in an external datastore (``datastore-endpoint``: etcd here).

    Every server reads and writes the datastore itself; a write is one etcd
    transaction that applies only if nobody wrote since this server read (the
    revision key compared), else it is done again on the newer state. There is
    no quorum among servers: the API answers while the datastore does. The
    servers still ping each other to pick the one that runs the cluster-wide
    controllers and gathers heartbeats (Kubernetes does it with a Lease).
    """

    def __init__(self, server: Server, client: EtcdClient):
        super().__init__(server)
        self.client = client
        self.boot_key = ""
        self._seen = -1  # mod_revision of the revision key last read (0: the datastore is empty)
        self._checked = 0.0
        self._error = ""
        self._compacted = time.monotonic()

    # persistence: the datastore itself ----------------------------------------
    def load(self) -> None:
        self.refresh(force=True)

    def save(self) -> None:
        pass  # every write went to the datastore in its transaction

    def bootstrap_keys(self) -> list[str]:
        return sorted(self.client.range(BOOTSTRAP_PREFIX, BOOTSTRAP_PREFIX[:-1] + "0"))

    def refresh(self, force: bool = False) -> None:
        """Read the state again if the datastore has a newer one (raises DatastoreError)."""
        now = time.monotonic()
        if not force and now - self._checked < EXTERNAL_REFRESH_SECONDS:
            if self._error:
                raise DatastoreError(self._error)
            return
        try:
            current = self.client.get(REVISION_KEY)
            mod = current[1] if current else 0
            if mod != self._seen:
                kvs = self.client.range("/", "0")  # /bootstrap/ and /registry/
                with self.lock:
                    self.data = state_from_keys(kvs, self.boot_key) if mod else {}
                    self._seen = mod
        except DatastoreError as exc:
            self._checked, self._error = now, str(exc)
            raise
        self._checked, self._error = now, ""

    # availability: the datastore's -------------------------------------------
    def has_quorum(self) -> bool:
        try:
            self.refresh()
        except DatastoreError:
            return False
        return True

    def require_quorum(self) -> None:
        try:
            self.refresh()
        except DatastoreError as exc:
            raise ServiceUnavailable(f"datastore {shown(self.client.endpoint)}: {exc}") from exc

    # writes: one transaction each, from any server ------------------------------
    def write(self, op: dict[str, Any]) -> None:
        self.commit(op)

    def commit(self, op: dict[str, Any]) -> None:
        with self.lock:
            for _attempt in range(20):
                try:
                    self.refresh(force=True)
                except DatastoreError as exc:
                    raise ServiceUnavailable(f"datastore {shown(self.client.endpoint)}: {exc}") from exc
                new = copy.deepcopy(self.data)
                self.server.apply_op(new, op)
                if self.create(new):
                    self.server.count("writes")
                    return
            raise ServiceUnavailable("etcdserver: too many concurrent writes to the datastore; try again")

    def create(self, new: dict[str, Any]) -> bool:
        """Write ``new`` (the state after one operation, or a new cluster's) over the state last read: False
        when another server wrote in between."""
        with self.lock:
            new["revision"] = self.data.get("revision", 0) + 1
            old = state_to_keys(self.data, self.boot_key) if self.data else {}
            keys = state_to_keys(new, self.boot_key)
            puts = {k: v for k, v in keys.items() if old.get(k) != v}
            puts[REVISION_KEY] = str(new["revision"])
            try:
                written = self.client.txn(REVISION_KEY, max(self._seen, 0), puts, [k for k in old if k not in keys])
            except DatastoreError as exc:
                self._checked, self._error = time.monotonic(), str(exc)
                raise ServiceUnavailable(f"datastore {shown(self.client.endpoint)}: {exc}") from exc
            if not written:
                return False
            self.data, self._seen = new, written
            self._compact(written)
            return True

    def _compact(self, revision: int) -> None:
        now = time.monotonic()
        if now - self._compacted < EXTERNAL_COMPACT_SECONDS:
            return
        self._compacted = now
        try:
            self.client.compact(revision)
        except DatastoreError as exc:  # another server compacted further already, or a passing error
            if "compacted" not in str(exc):
                log("warning", f"compacting the datastore failed: {exc}")

    def receive(self, incoming: dict[str, Any]) -> str:
        return "ok"  # nothing is replicated between servers: each reads the datastore
