"""Run one of the collection's playbooks through ansible-runner.

The one place where ansible-runner's arguments are built (``runner_kwargs``)
and where its events become pik3s's: masked (``pik3s.masking``) before
anyone sees or stores them, folded into a typed ``Result``
(``pik3s.results``). Each run gets a private data directory (0700) that pik3s
creates and removes when the run ends; the extra variables go there as a
0600 file (``-e @file``), never on a command line that ``ps`` shows; no
``env/`` files are written (``suppress_env_files``), no ``stdout``
artifact (``suppress_output_file``) and no ``job_events/`` (the event
handler keeps what pik3s needs in memory and tells ansible-runner not to).
"""

from __future__ import annotations

import configparser
import datetime as _dt
import json
import os
import queue
import shlex
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pik3s import inventory as inventory_mod
from pik3s.errors import Pik3sError
from pik3s.masking import Masker, secret_values
from pik3s.results import ClusterFacts, Failure, HostStats, Result


@dataclass(frozen=True)
class Operation:
    """A driver operation: which collection playbook it runs, and how."""

    name: str
    playbook: str
    title: str
    check: bool = False


OPERATIONS: dict[str, Operation] = {op.name: op for op in (
    Operation("deploy", "site", "deploy K3s"),
    Operation("check", "site", "check (dry run: what deploy would change)", check=True),
    Operation("add_nodes", "site", "add nodes"),
    Operation("upgrade", "upgrade", "rolling upgrade"),
    Operation("remove_nodes", "remove_node", "remove nodes"),
    Operation("backup", "backup", "back up"),
    Operation("restore", "restore", "restore"),
    Operation("reset", "reset", "reset (remove K3s)"),
    Operation("status", "status", "cluster status"),
    Operation("dashboard", "dashboard", "UI add-on"),
)}


def playbook_path(name: str) -> Path:
    """The collection's playbook ``name`` (an absolute path to a .yml file is taken as it is)."""
    if Path(name).is_absolute():
        return Path(name)
    return inventory_mod.collection_dir() / "playbooks" / f"{name}.yml"


def plays(path: Path) -> list[str]:
    """The names of the plays ``path`` runs, in order, following import_playbook (the phases of
    the progress display)."""
    out: list[str] = []
    for entry in yaml.safe_load(path.read_text()) or []:
        imported = entry.get("ansible.builtin.import_playbook") or entry.get("import_playbook")
        if imported:
            target = path.parent / imported if imported.endswith((".yml", ".yaml")) \
                else playbook_path(imported.rsplit(".", 1)[-1])  # an FQCN
            out += plays(target)
        elif "hosts" in entry:
            out.append(str(entry.get("name", entry["hosts"])))
    return out


@dataclass
class Event:
    """One thing that happened during a run, masked. ``kind``: play, task, ok, changed, failed,
    unreachable, skipped, stats, or output (a line ansible printed outside a task result)."""

    kind: str
    phase: int = 0
    play: str = ""
    task: str = ""
    host: str = ""
    message: str = ""
    created: str = ""
    counter: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"type": "event", **asdict(self)}


def _message(res: dict[str, Any]) -> str:
    """The operator-facing part of a task result."""
    if res.get("censored"):
        return str(res["censored"])
    for key in ("msg", "message", "reason"):
        if res.get(key):
            return str(res[key]).strip()
    parts = [str(res.get(k, "")).strip() for k in ("stderr", "stdout") if res.get(k)]
    if "rc" in res:
        parts.insert(0, f"rc {res['rc']}")
    return "; ".join(parts) or "failed (no message)"


# HostStats field -> the key of Ansible's stats event that counts it
_STATS_KEYS = {"ok": "ok", "changed": "changed", "failed": "failures", "unreachable": "dark",
               "skipped": "skipped", "rescued": "rescued", "ignored": "ignored"}


class _Collector:
    """Folds runner events into the parts of a Result and into Events."""

    def __init__(self) -> None:
        self.phase = 0
        self.play = ""
        self.stats: dict[str, HostStats] = {}
        self.failures: list[Failure] = []
        self.changes: dict[str, list[str]] = {}
        self.artifact_data: dict[str, Any] = {}
        self.errors: list[str] = []

    def feed(self, ev: dict[str, Any]) -> Event | None:
        name = ev.get("event", "")
        data = ev.get("event_data") or {}
        task = str(data.get("task", ""))
        host = str(data.get("host", ""))
        res: dict[str, Any] = data["res"] if isinstance(data.get("res"), dict) else {}

        def mk(kind: str, task: str = "", host: str = "", message: str = "") -> Event:
            return Event(kind, self.phase, self.play, task, host, message, str(ev.get("created", "")),
                         int(ev.get("counter") or 0))

        if name == "playbook_on_play_start":
            self.phase += 1
            self.play = str(data.get("play", data.get("name", "")))
            return mk("play")
        if name == "playbook_on_task_start":
            return mk("task", task)
        if name == "runner_on_start":
            return mk("start", task, host)
        if name == "runner_on_ok":
            kind = "changed" if res.get("changed") else "ok"
            if kind == "changed":
                seen = self.changes.setdefault(host, [])
                if task not in seen:
                    seen.append(task)
            return mk(kind, task, host, str(res.get("msg", "")) if data.get("task_action", "").endswith("debug")
                      else "")
        if name == "runner_on_skipped":
            return mk("skipped", task, host)
        if name == "runner_on_failed":
            msg = _message(res)
            if data.get("ignore_errors"):
                return mk("ok", task, host, f"ignored: {msg}")
            self.failures.append(Failure(host, task, msg))
            return mk("failed", task, host, msg)
        if name == "runner_on_unreachable":
            msg = _message(res)
            self.failures.append(Failure(host, task, msg, unreachable=True))
            return mk("unreachable", task, host, msg)
        if name == "playbook_on_stats":
            counts = {field: data.get(key) or {} for field, key in _STATS_KEYS.items()}
            hosts = set(data.get("processed") or {}).union(*counts.values())
            self.stats = {h: HostStats(**{field: int(c.get(h, 0)) for field, c in counts.items()})
                          for h in sorted(hosts)}
            self.artifact_data = dict(data.get("artifact_data") or {})
            return mk("stats")
        if name in ("verbose", "error", "warning", "deprecated") or not name:
            text = str(ev.get("stdout", "")).strip()
            if not text:
                return None
            if "ERROR!" in text or "error:" in text or name == "error":
                self.errors.append(text)
            return mk("output", message=text)
        return None


EventCallback = Callable[[Event], None]


def _ansible_env(hosts: int = 0) -> dict[str, str]:
    """Environment for ansible-playbook: the ansible-core installed with pik3s first on PATH; the
    collection found where pik3s found it; the caller's
    ansible.cfg (ANSIBLE_CONFIG, else ./ansible.cfg as ansible-playbook would read it here), since the
    run's working directory is the private data directory; the forks for ``hosts`` hosts on this
    controller (``default_forks``) unless ANSIBLE_FORKS or the ansible.cfg's ``forks`` says."""
    tools = str(Path(inventory_mod.ansible_tool("ansible-playbook")).parent)
    env = {"PATH": os.pathsep.join([tools, os.environ.get("PATH", os.defpath)]),
           "ANSIBLE_COLLECTIONS_PATH": str(inventory_mod.collections_root()),
           "ANSIBLE_RETRY_FILES_ENABLED": "false"}
    cfg = os.environ.get("ANSIBLE_CONFIG") or (str(Path("ansible.cfg").resolve())
                                              if Path("ansible.cfg").is_file() else "")
    if cfg:
        env["ANSIBLE_CONFIG"] = cfg
    configured = _cfg_options(cfg)
    if hosts and "ANSIBLE_FORKS" not in os.environ and "forks" not in configured:
        env["ANSIBLE_FORKS"] = str(default_forks(hosts, os.cpu_count() or 1))
    if "ANSIBLE_SSH_RETRIES" not in os.environ and "retries" not in configured:
        env["ANSIBLE_SSH_RETRIES"] = str(SSH_RETRIES)
    if "ANSIBLE_SSH_ARGS" not in os.environ and "ssh_args" not in configured:
        env["ANSIBLE_SSH_ARGS"] = SSH_ARGS
    return env


# A dropped SSH connection (sshd restarted, a flaky link) is tried again this many times (with
# Ansible's growing pause: 1, 3, 7 s) before the host counts as unreachable; the caller's
# ANSIBLE_SSH_RETRIES or ansible.cfg `retries` wins.
SSH_RETRIES = 3
# Ansible's default ssh_args plus keepalives: a connection whose host vanished (power cut, link
# down) is given up after 30 s instead of TCP's ~15 minutes. ANSIBLE_SSH_ARGS or `ssh_args` wins.
SSH_ARGS = "-C -o ControlMaster=auto -o ControlPersist=60s -o ServerAliveInterval=10 -o ServerAliveCountMax=3"


# Ansible's worker processes per controller core. A worker is CPU-bound on the controller for the
# controller-side tasks and waits on its host for the others; 2.5 per core keeps the cores busy
# without idle workers' memory. On 2 cores that is Ansible's own 5, which scripts/bench-scale found as
# fast as 10 or 20 for 50 hosts there (the controller's CPU is the limit, not the workers).
FORKS_PER_CORE = 2.5
FORKS_MIN, FORKS_MAX = 5, 50


def default_forks(hosts: int, cores: int) -> int:
    """The forks pik3s gives ansible-playbook for ``hosts`` hosts on a controller of ``cores`` cores:
    FORKS_PER_CORE per core, at least FORKS_MIN, at most FORKS_MAX, never more than the hosts."""
    per_cores = max(FORKS_MIN, min(FORKS_MAX, int(cores * FORKS_PER_CORE)))
    return max(1, min(hosts, per_cores))


def _cfg_options(cfg: str) -> set[str]:
    """The options the ansible.cfg the run uses sets for SSH connections and, from [defaults], forks
    (read once per run)."""
    if not cfg:
        return set()
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        parser.read(cfg)
    except configparser.Error:
        return set()
    options = {option for section in ("ssh_connection", "connection") if parser.has_section(section)
               for option in parser.options(section)}
    if parser.has_option("defaults", "forks"):
        options.add("forks")
    return options


RUNNER_SETTINGS = {"suppress_output_file": True, "suppress_ansible_output": True}


def runner_kwargs(*, playbook: Path, inventory: Path, private_dir: Path, extravars_file: Path | None,
                  limit: str | None, verbosity: int, check: bool, timeout: int | None,
                  vault_args: list[str] | None = None, hosts: int = 0) -> dict[str, Any]:
    """ansible-runner's arguments for one run (everything but the callbacks)."""
    cmdline = (["--check"] if check else []) + [shlex.quote(a) for a in vault_args or []]
    return {
        "private_data_dir": str(private_dir),
        "playbook": str(playbook),
        "inventory": str(inventory),
        "extravars": str(extravars_file) if extravars_file else None,
        "limit": limit or None,
        "verbosity": verbosity or None,
        "cmdline": " ".join(cmdline) or None,
        "envvars": _ansible_env(hosts),
        "quiet": True,
        "suppress_env_files": True,
        "suppress_output_file": True,
        "rotate_artifacts": 1,
        "timeout": timeout,
        "ident": "run",
    }


@dataclass
class Run:
    """One playbook run: started with ``start()``, followed with ``events()`` or ``on_event``,
    stopped with ``cancel()``, finished with ``wait()`` (the Result)."""

    operation: Operation
    inventory: Path
    extravars: dict[str, Any] = field(default_factory=dict)
    limit: str | None = None
    verbosity: int = 0
    timeout: int | None = None
    on_event: EventCallback | None = None
    masker: Masker = field(default_factory=Masker)
    inventory_label: str = ""
    hosts: list[str] = field(default_factory=list)
    vault_args: list[str] = field(default_factory=list)
    private_dir: Path | None = None

    def __post_init__(self) -> None:
        self._events: queue.Queue[Event | None] = queue.Queue()
        self._cancel = threading.Event()
        self._done = threading.Event()
        self._collector = _Collector()
        self._thread: threading.Thread | None = None
        self._started = time.monotonic()
        self.result = Result(self.operation.name, self.operation.playbook, self.inventory_label or str(self.inventory),
                             check=self.operation.check, limit=self.limit)

    # ---- lifecycle -------------------------------------------------------------------------
    def start(self) -> Run:
        import ansible_runner  # type: ignore[import-untyped]  # imported when a run starts: the CLI stays quick

        self.result.started = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
        self._started = time.monotonic()
        self.private_dir = Path(tempfile.mkdtemp(prefix="pik3s-run-"))  # 0700
        # ansible-runner takes these two from env/settings only (an argument is overwritten, and a
        # settings dict is dropped when the file is missing); the file holds nothing secret.
        (self.private_dir / "env").mkdir(mode=0o700)
        (self.private_dir / "env" / "settings").write_text(json.dumps(RUNNER_SETTINGS))
        extravars_file = None
        if self.extravars:
            extravars_file = self.private_dir / "extravars.json"
            fd = os.open(extravars_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                json.dump(self.extravars, fh)
        kwargs = runner_kwargs(playbook=playbook_path(self.operation.playbook), inventory=self.inventory,
                               private_dir=self.private_dir, extravars_file=extravars_file, limit=self.limit,
                               verbosity=self.verbosity, check=self.operation.check, timeout=self.timeout,
                               vault_args=self.vault_args, hosts=len(self.hosts))
        try:
            runner = ansible_runner.interface.init_runner(
                **kwargs, event_handler=self._on_event, cancel_callback=self._cancel.is_set)
        except Exception as exc:  # noqa: BLE001 (ansible-runner raises plain exceptions on bad config)
            self._cleanup()
            raise Pik3sError(f"cannot start ansible-playbook: {self.masker.text(str(exc))}") from None
        self._thread = threading.Thread(target=self._run, args=(runner,), name=f"pik3s-{self.operation.name}",
                                        daemon=True)
        self._thread.start()
        return self

    def _run(self, runner: Any) -> None:
        try:
            status, rc = runner.run()
        except Exception as exc:  # noqa: BLE001 (reported in the Result, never as a traceback)
            status, rc = "error", None
            self._collector.errors.append(f"ansible-runner failed: {exc}")
        finally:
            self._cleanup()
        self._finish(str(status), rc)
        self._events.put(None)
        self._done.set()

    def _cleanup(self) -> None:
        if self.private_dir is not None:
            shutil.rmtree(self.private_dir, ignore_errors=True)

    def _on_event(self, event: dict[str, Any]) -> bool:
        self.masker.in_place(event)  # before anything sees it
        mine = self._collector.feed(event)
        if mine is not None:
            self._events.put(mine)
            if self.on_event is not None:
                self.on_event(mine)
        return False  # ansible-runner need not write job_events/: pik3s keeps what it needs in memory

    def _finish(self, status: str, rc: int | None) -> None:
        c, r = self._collector, self.result
        r.rc, r.duration = rc, round(time.monotonic() - self._started, 1)
        r.hosts, r.failures, r.changes = c.stats, c.failures, c.changes
        data = self.masker(c.artifact_data)
        if isinstance(data.get("pik3s_cluster"), dict):
            r.cluster = ClusterFacts.from_stats(data.pop("pik3s_cluster"))
        r.data = data
        if status in ("canceled", "timeout"):
            r.status = "canceled"
            r.error = f"timed out after {self.timeout} s" if status == "timeout" else "cancelled"
        elif rc == 0 and status == "successful":
            r.status = "successful"
        elif any(not f.unreachable for f in c.failures):
            r.status = "failed"
        elif c.failures:
            r.status = "unreachable"
        else:
            r.status = "error"
            r.error = self.masker.text("\n".join(c.errors[-3:])) or f"ansible-playbook exited with {rc}"

    # ---- the caller's side -----------------------------------------------------------------
    def cancel(self) -> None:
        """Stop the run (ansible-playbook is terminated); the Result's status becomes canceled."""
        self._cancel.set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def events(self) -> Iterator[Event]:
        """The run's events as they happen, until it ends (one consumer)."""
        while True:
            ev = self._events.get()
            if ev is None:
                return
            yield ev

    def wait(self, timeout: float | None = None) -> Result:
        if not self._done.wait(timeout):
            raise TimeoutError(f"{self.operation.name} still running after {timeout} s")
        return self.result


def prepare(operation: str, inventory: str | Path | dict[str, Any], *, extravars: dict[str, Any] | None = None,
            limit: str | list[str] | None = None, verbosity: int = 0, on_event: EventCallback | None = None,
            timeout: int | None = None, state_dir: Path | None = None,
            require_hosts: list[str] | None = None, vault: inventory_mod.Vault | None = None) -> Run | Result:
    """Validate offline and set up a run of ``operation``; returns the Run to ``start()``, or an
    ``invalid`` Result when the inventory breaks the preflight rules (no host contacted)."""
    op = OPERATIONS[operation]
    extravars = dict(extravars or {})
    if isinstance(inventory, dict):
        name = str(inventory.get("name") or "k3s")
        where = state_dir or inventory_mod.cluster_state_dir(name)
        path = inventory_mod.write(inventory, where)
        label = f"{path} (from a description)"
    else:
        path = Path(inventory).expanduser().resolve()
        label = str(inventory)
        if not path.exists():
            raise Pik3sError(f"inventory {inventory} does not exist")
    vault = vault or inventory_mod.Vault()
    data, vault_problems = vault.decrypt(inventory_mod.read_inventory(str(path), vault))
    masker = Masker(secret_values(data) | secret_values(extravars))
    if isinstance(limit, list):
        limit = ",".join(limit)
    checked = inventory_mod.validate_data(data, extravars, vault_problems)
    missing = [h for h in require_hosts or [] if h not in checked.hosts]
    if missing:
        raise Pik3sError(f"not in the inventory's k3s_cluster group: {', '.join(missing)} "
                         f"(it has {', '.join(checked.hosts) or 'no hosts'})")
    problems = list(checked.problems)
    if operation == "remove_nodes":
        problems += inventory_mod.remove_problems(extravars.get("k3s_remove"), checked)
    if limit:
        problems += inventory_mod.limit_problems(str(path), limit, vault)
    if problems:
        return Result(op.name, op.playbook, label, status="invalid", check=op.check, limit=limit,
                      problems=[masker.text(p) for p in problems])
    return Run(op, path, extravars, limit, verbosity, timeout, on_event, masker, label, checked.hosts,
               vault_args=vault.args())
