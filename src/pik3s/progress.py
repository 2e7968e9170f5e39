"""What a person watches while a run goes: events -> progress state -> text.

``Progress`` is the state (phase of the playbook, each host's phase, current
task and counts); it knows nothing of terminals. ``TtyView`` redraws one line
per host with a bar of the playbook's phases; ``LineView`` prints plain lines
(play starts, changes, failures) for logs; ``summary`` is the table at the
end. ``--output json`` uses none of them.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TextIO

from pik3s.results import Result
from pik3s.runner import Event


@dataclass
class HostLine:
    phase: int = 0
    task: str = ""
    ok: int = 0
    changed: int = 0
    failed: int = 0
    state: str = "waiting"      # waiting | running | failed | unreachable


@dataclass
class Progress:
    phases: list[str]
    order: list[str] = field(default_factory=list)
    phase: int = 0
    play: str = ""
    task: str = ""
    hosts: dict[str, HostLine] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        for h in self.order:
            self.hosts.setdefault(h, HostLine())

    def host(self, name: str) -> HostLine:
        if name not in self.hosts:
            self.hosts[name] = HostLine()
            self.order.append(name)
        return self.hosts[name]

    def feed(self, ev: Event) -> None:
        if ev.kind == "play":
            self.phase, self.play, self.task = ev.phase, ev.play, ""
            return
        if ev.kind == "task":
            self.task = ev.task
            return
        if not ev.host:
            return
        line = self.host(ev.host)
        if line.state in ("failed", "unreachable"):
            return
        line.phase, line.task = ev.phase, ev.task
        if ev.kind == "start":
            line.state = "running"
        elif ev.kind in ("ok", "skipped"):
            line.ok += ev.kind == "ok"
        elif ev.kind == "changed":
            line.ok += 1
            line.changed += 1
        elif ev.kind in ("failed", "unreachable"):
            line.failed += 1
            line.state = ev.kind

    @property
    def total(self) -> int:
        return max(len(self.phases), self.phase, 1)

    def elapsed(self) -> str:
        return _clock(time.monotonic() - self.started)


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"


def bar(done: int, total: int, width: int = 12) -> str:
    filled = round(width * min(done, total) / total) if total else width
    return "█" * filled + "░" * (width - filled)


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


class LineView:
    """Line-oriented progress for logs and pipes: one line per play, change, failure; with
    ``verbose`` also what Ansible prints at -v and up, and debug messages."""

    def __init__(self, progress: Progress, stream: TextIO | None = None, verbose: bool = False) -> None:
        self.p, self.out, self.verbose = progress, stream or sys.stderr, verbose

    def feed(self, ev: Event) -> None:
        self.p.feed(ev)
        stamp = f"[{self.p.elapsed():>6}]"
        if self.verbose and ev.kind == "output":
            print(ev.message, file=self.out, flush=True)
        elif self.verbose and ev.kind == "ok" and ev.message:
            print(f"{stamp} {ev.host}: {ev.task}: {ev.message}", file=self.out, flush=True)
        if ev.kind == "play":
            print(f"{stamp} phase {ev.phase}/{self.p.total}: {ev.play}", file=self.out, flush=True)
        elif ev.kind == "changed":
            print(f"{stamp} {ev.host}: changed: {ev.task}", file=self.out, flush=True)
        elif ev.kind in ("failed", "unreachable"):
            print(f"{stamp} {ev.host}: {ev.kind.upper()}: {ev.task}: {ev.message}", file=self.out, flush=True)

    def close(self) -> None:
        pass


class TtyView:
    """Redrawn in place: a header with the playbook's phase, then one line per host with a bar of
    the phases it has reached and its current task."""

    def __init__(self, progress: Progress, title: str, stream: TextIO | None = None, width: int = 100) -> None:
        self.p, self.title, self.out, self.width = progress, title, stream or sys.stderr, width
        self._drawn = 0
        self._lock = threading.Lock()
        self._last = 0.0

    def lines(self) -> list[str]:
        p = self.p
        head = (f"pik3s {self.title} · {p.elapsed()} · phase {p.phase}/{p.total} "
                f"{bar(p.phase, p.total)} {p.play}")
        out = [_fit(head, self.width)]
        name_w = max([len(h) for h in p.order] + [4])
        for name in p.order:
            h = p.hosts[name]
            mark = {"failed": "FAILED ", "unreachable": "UNREACHABLE "}.get(h.state, "")
            counts = f"ok {h.ok} changed {h.changed}"
            line = f"  {name:<{name_w}} {bar(h.phase, p.total)} {h.phase}/{p.total} {counts:<22} {mark}{h.task}"
            out.append(_fit(line, self.width))
        return out

    def feed(self, ev: Event) -> None:
        with self._lock:
            self.p.feed(ev)
            now = time.monotonic()
            if ev.kind in ("play", "failed", "unreachable") or now - self._last > 0.2:
                self._draw()
                self._last = now

    def _draw(self) -> None:
        text = self.lines()
        if self._drawn:
            self.out.write(f"\x1b[{self._drawn}F")  # back to the first line drawn
        for line in text:
            self.out.write("\x1b[2K" + line + "\n")
        self.out.flush()
        self._drawn = len(text)

    def close(self) -> None:
        with self._lock:
            self._draw()
            self.out.write("\n")
            self.out.flush()


def summary(result: Result) -> str:
    """The table shown when a run ends (text output)."""
    rows = [("HOST", "OK", "CHANGED", "FAILED", "UNREACHABLE", "SKIPPED")]
    rows += [(h, str(s.ok), str(s.changed), str(s.failed), str(s.unreachable), str(s.skipped))
             for h, s in result.hosts.items()]
    out = [_table(rows)] if result.hosts else []
    if result.check and result.changes:
        out.append("\nwould change:")
        out += [f"  {h}: {', '.join(tasks)}" for h, tasks in result.changes.items()]
    elif result.check:
        out.append("\nwould change: nothing")
    for f in result.failures:
        kind = "unreachable" if f.unreachable else "failed"
        out.append(f"\n{f.host} {kind}: {f.task}\n  " + f.message.replace("\n", "\n  "))
    for problem in result.problems:
        out.append(f"problem: {problem}")
    if result.cluster is not None:
        out.append("\n" + cluster_table(result))
    for key, value in result.data.items():
        out.append(f"{key}: {value}")
    verdict = {"successful": "done", "invalid": "inventory invalid, no host contacted",
               "failed": "FAILED", "unreachable": "host(s) UNREACHABLE", "canceled": "CANCELLED",
               "error": "ERROR"}[result.status]
    detail = f": {result.error}" if result.error else ""
    out.append(f"\npik3s {result.operation}: {verdict}{detail} ({_clock(result.duration)}, exit {result.exit_code})")
    return "\n".join(out).lstrip("\n")


def cluster_table(result: Result) -> str:
    c = result.cluster
    assert c is not None
    if not c.nodes:
        return f"cluster {c.name}: no nodes answered on {c.read_from}" + (f" ({c.error})" if c.error else "")
    rows = [("NODE", "ROLES", "READY", "SCHEDULING", "VERSION", "ARCH", "ADDRESS")]
    rows += [(n.name, ",".join(n.roles) or "<none>", "Ready" if n.ready else "NotReady",
              "yes" if n.schedulable else "cordoned", n.version, n.arch, n.address) for n in c.nodes]
    where = c.kubeconfig if c.kubeconfig_exists else f"{c.kubeconfig} (not on this machine)"
    return f"{_table(rows)}\nAPI: {c.api_endpoint}\nkubeconfig: {where}"


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(v.ljust(widths[i]) for i, v in enumerate(r)).rstrip() for r in rows)
