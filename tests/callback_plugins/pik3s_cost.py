# Copyright: pik3s developers
# Apache License 2.0 (see LICENSE)
"""Test and benchmark equipment (not part of the collection): count what a
playbook run costs each host.

Per host it counts tasks run (results that were not skipped) and, exactly,
module invocations (every ``ActionBase._execute_module`` call: a module
shipped to and started on the host, or on the controller for delegated and
local tasks), remote commands (``_low_level_execute_command``: SSH round
trips) and file transfers. A task delegated to another host is counted for
the host it ran on.

Ansible runs each task of each host in a forked worker process, so the counts
are taken there (the module hooks below are installed when this callback is
loaded, before any worker forks) and appended as lines to a log file that
this callback reads at the end of the run. (Under Mitogen for Ansible's
strategy, which runs modules its own way, only the tasks are counted.)
Enable with
``ANSIBLE_CALLBACK_PLUGINS=tests/callback_plugins ANSIBLE_CALLBACKS_ENABLED=pik3s_cost``;
``PIK3S_COST_REPORT=<file>`` writes the figures there as JSON.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import defaultdict

from ansible.executor.task_executor import TaskExecutor
from ansible.plugins.action import ActionBase
from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
    name: pik3s_cost
    type: aggregate
    short_description: count tasks, module invocations and round trips per host
    description: Test equipment of pik3s; see the module docstring.
    requirements: [enabled in ansible.cfg or ANSIBLE_CALLBACKS_ENABLED]
"""

_LOG = {"path": ""}  # set in the controller before workers fork
_WORKER = {"host": ""}  # the inventory host of this worker process's task


def _record(action, kind):
    if not _LOG["path"]:
        return
    target = getattr(action._task, "delegate_to", None) or _WORKER["host"]
    if action._connection.transport in ("local", "ansible.builtin.local") and not getattr(
            action._task, "delegate_to", None):
        target = _WORKER["host"]
    task = (action._task.get_name() or action._task.action).replace("\t", " ").replace("\n", " ")
    line = f"{target}\t{kind}\t{task}\n".encode()
    fd = os.open(_LOG["path"], os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, line)  # one write of a short line with O_APPEND: atomic between workers
    finally:
        os.close(fd)


def _wrap(cls, name, kind):
    original = getattr(cls, name)
    if getattr(original, "_pik3s_cost", False):
        return

    def counted(self, *args, **kwargs):
        _record(self, kind)
        return original(self, *args, **kwargs)

    counted._pik3s_cost = True
    setattr(cls, name, counted)


def _wrap_executor():
    original = TaskExecutor.run
    if getattr(original, "_pik3s_cost", False):
        return

    def run(self, *args, **kwargs):
        _WORKER["host"] = self._host.name
        return original(self, *args, **kwargs)

    run._pik3s_cost = True
    TaskExecutor.run = run


def _wrap_actions(cls):
    _wrap(cls, "_execute_module", "module")
    _wrap(cls, "_low_level_execute_command", "command")
    _wrap(cls, "_transfer_file", "transfer")
    _wrap(cls, "_transfer_data", "transfer")


_wrap_actions(ActionBase)
_wrap_executor()


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "pik3s_cost"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        fd, _LOG["path"] = tempfile.mkstemp(prefix="pik3s-cost-", suffix=".log")
        os.close(fd)
        self._tasks = defaultdict(int)

    def _task_result(self, result, *args, **kwargs):
        self._tasks[result._host.get_name()] += 1

    v2_runner_on_ok = v2_runner_on_failed = v2_runner_on_unreachable = _task_result

    def v2_playbook_on_stats(self, stats):
        counts = defaultdict(lambda: {"tasks": 0, "modules": 0, "commands": 0, "transfers": 0, "module_tasks": []})
        for host, n in self._tasks.items():
            counts[host]["tasks"] = n
        with open(_LOG["path"], encoding="utf-8") as log:
            for line in log:
                host, kind, task = line.rstrip("\n").split("\t", 2)
                counts[host][{"module": "modules", "command": "commands", "transfer": "transfers"}[kind]] += 1
                if kind == "module":
                    counts[host]["module_tasks"].append(task)
        os.unlink(_LOG["path"])
        report = dict(sorted(counts.items()))
        path = os.environ.get("PIK3S_COST_REPORT")
        if path:
            with open(path, "w", encoding="utf-8") as out:
                json.dump(report, out, indent=1, sort_keys=True)
                out.write("\n")
        self._display.display("pik3s cost per host (tasks run, module invocations, remote commands, transfers):")
        for host, c in report.items():
            self._display.display(f"  {host:<16} tasks={c['tasks']:<4} modules={c['modules']:<4} "
                                  f"commands={c['commands']:<4} transfers={c['transfers']}")
            if self._display.verbosity or os.environ.get("PIK3S_COST_TASKS"):
                for task in c["module_tasks"]:
                    self._display.display(f"      module: {task}")
