"""The replicated datastore and its quorum (what embedded etcd gives K3s)."""

from __future__ import annotations

import copy
import json
import ssl
import threading
import time
from typing import TYPE_CHECKING, Any

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
