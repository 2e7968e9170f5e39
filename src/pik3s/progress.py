"""What a person watches while a run goes: events -> progress state -> text.

``Progress`` is the state (phase of the playbook, each host's phase, current
task and counts); it knows nothing of terminals. ``TtyView`` redraws one line
per host with a bar of the playbook's phases, or, when the hosts do not fit
the terminal, a bar per phase, the hosts still working grouped by task with
their names compressed (``pi-001..pi-012``), and each failure as it happens;
``LineView`` prints plain lines (play starts, changes, failures) for logs;
``summary`` is the table at the end. ``--output json`` uses none of them.
"""

from __future__ import annotations

import re
import shutil
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
    seen: set[int] = field(default_factory=set)  # the phases the host took part in


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
        line.seen.add(ev.phase)
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

    def phase_counts(self, phase: int) -> tuple[int, int, int]:
        """Hosts of ``phase``: (done with it, still in it, failed in it)."""
        done = working = failed = 0
        for h in self.hosts.values():
            if phase not in h.seen:
                continue
            if h.state in ("failed", "unreachable") and h.phase == phase:
                failed += 1
            elif h.phase > phase or self.phase > phase:
                done += 1
            else:
                working += 1
        return done, working, failed


def compress(names: Sequence[str]) -> str:
    """Host names, runs of numbered names shortened: pi-001, pi-002, pi-003, srv -> pi-001..pi-003, srv."""
    parsed = []
    for name in names:
        m = re.fullmatch(r"(.*?)(\d+)", name)
        parsed.append((m.group(1), len(m.group(2)), int(m.group(2)), name) if m else (name, 0, -1, name))
    parsed.sort()
    out: list[str] = []
    i = 0
    while i < len(parsed):
        j = i
        while (j + 1 < len(parsed) and parsed[j + 1][:2] == parsed[i][:2] and parsed[i][2] >= 0
               and parsed[j + 1][2] == parsed[j][2] + 1):
            j += 1
        out.append(parsed[i][3] if j == i else f"{parsed[i][3]}..{parsed[j][3]}" if j > i + 1
                   else f"{parsed[i][3]}, {parsed[j][3]}")
        i = j + 1
    return ", ".join(out)


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
    the phases it has reached and its current task. When the hosts do not fit the terminal's
    height: a bar per phase (hosts done of those in it), the hosts still working grouped by
    task, their names compressed, and the failures, so that it fits on a 24-line terminal."""

    def __init__(self, progress: Progress, title: str, stream: TextIO | None = None, width: int | None = None,
                 height: int | None = None) -> None:
        size = shutil.get_terminal_size((100, 24))
        self.p, self.title, self.out = progress, title, stream or sys.stderr
        self.width, self.height = width or size.columns, height or size.lines
        self._drawn = 0
        self._lock = threading.Lock()
        self._last = 0.0

    def lines(self) -> list[str]:
        p = self.p
        head = (f"pik3s {self.title} · {p.elapsed()} · phase {p.phase}/{p.total} "
                f"{bar(p.phase, p.total)} {p.play}")
        out = [_fit(head, self.width)]
        if len(p.order) + 2 > self.height:  # one line per host would scroll: the compressed view
            return out + self._compressed(self.height - 2)
        name_w = max([len(h) for h in p.order] + [4])
        for name in p.order:
            h = p.hosts[name]
            mark = {"failed": "FAILED ", "unreachable": "UNREACHABLE "}.get(h.state, "")
            counts = f"ok {h.ok} changed {h.changed}"
            line = f"  {name:<{name_w}} {bar(h.phase, p.total)} {h.phase}/{p.total} {counts:<22} {mark}{h.task}"
            out.append(_fit(line, self.width))
        return out

    def _compressed(self, room: int) -> list[str]:
        p = self.p
        phases = []
        for i, name in enumerate(p.phases, start=1):
            done, busy, failed = p.phase_counts(i)
            total = done + busy + failed
            if not total:
                counts = "-" if i >= p.phase else "no host"
            else:
                counts = f"{done}/{total} done" + (f", {busy} working" if busy else "") + (
                    f", {failed} FAILED" if failed else "")
            phases.append(_fit(f"  {i}/{p.total} {bar(done, total or 1, 10)} {counts:<32} {name}", self.width))
        failures = [_fit(f"  {h.state.upper()} {n}: {h.task}", self.width)
                    for n, h in p.hosts.items() if h.state in ("failed", "unreachable")]
        by_task: dict[str, list[str]] = {}
        for n, h in p.hosts.items():
            if h.state == "running" and h.phase == p.phase:
                by_task.setdefault(h.task, []).append(n)
        working = [_fit(f"  working ({len(names)}) {task}: {compress(names)}", self.width)
                   for task, names in sorted(by_task.items(), key=lambda kv: -len(kv[1]))]
        # Failures first to go in, then the phases, then as many working lines as fit.
        failures_shown = failures[: max(room - len(phases) - 1, 3)]
        if len(failures) > len(failures_shown):
            failures_shown[-1] = _fit(f"  ... {len(failures) - len(failures_shown) + 1} more failed "
                                      "(listed when the run ends)", self.width)
        space = room - len(phases) - len(failures_shown)
        if len(working) > space > 0:
            working = [*working[: space - 1], f"  ... {len(working) - space + 1} more tasks in progress"]
        lines = phases + working[: max(space, 0)] + failures_shown
        return lines[:room]

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
