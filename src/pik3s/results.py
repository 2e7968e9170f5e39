"""What a driver operation returns: typed, JSON-ready, never holding a secret.

Exit codes (the CLI's, also ``Result.exit_code``) are defined here, once.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

EXIT_OK = 0
EXIT_ERROR = 1            # pik3s could not run the operation (message says why)
EXIT_USAGE = 2            # bad command line
EXIT_LAB_NOT_UP = 3
EXIT_INVALID = 4          # the inventory breaks the preflight rules; no host was contacted
EXIT_HOST_FAILED = 5      # a task failed on at least one host
EXIT_UNREACHABLE = 6      # no task failed, but at least one host could not be reached
EXIT_CANCELLED = 130      # cancelled (Ctrl-C, cancel(), timeout)

SCHEMA_VERSION = 1


@dataclass
class HostStats:
    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0
    rescued: int = 0
    ignored: int = 0


@dataclass
class Failure:
    host: str
    task: str
    message: str
    unreachable: bool = False


@dataclass
class Node:
    name: str
    roles: list[str]
    ready: bool
    schedulable: bool
    version: str
    arch: str
    address: str


@dataclass
class ClusterFacts:
    name: str
    api_endpoint: str
    kubeconfig: str
    kubeconfig_exists: bool
    nodes: list[Node]
    read_from: str
    error: str = ""

    @classmethod
    def from_stats(cls, data: dict[str, Any]) -> ClusterFacts:
        nodes = [Node(**{k: n.get(k, d) for k, d in (("name", ""), ("roles", []), ("ready", False),
                                                      ("schedulable", True), ("version", ""), ("arch", ""),
                                                      ("address", ""))})
                 for n in data.get("nodes") or []]
        kubeconfig = str(data.get("kubeconfig", ""))
        return cls(name=str(data.get("name", "")), api_endpoint=str(data.get("api_endpoint", "")),
                   kubeconfig=kubeconfig, kubeconfig_exists=bool(kubeconfig) and Path(kubeconfig).is_file(),
                   nodes=nodes, read_from=str(data.get("read_from", "")), error=str(data.get("error", "")))


@dataclass
class Result:
    operation: str
    playbook: str
    inventory: str
    status: str = "error"     # successful | failed | unreachable | canceled | invalid | error
    rc: int | None = None     # ansible-playbook's exit status (None: it did not run)
    check: bool = False
    limit: str | None = None
    started: str = ""
    duration: float = 0.0
    hosts: dict[str, HostStats] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)
    changes: dict[str, list[str]] = field(default_factory=dict)
    cluster: ClusterFacts | None = None
    data: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "successful"

    @property
    def exit_code(self) -> int:
        return {"successful": EXIT_OK, "invalid": EXIT_INVALID, "failed": EXIT_HOST_FAILED,
                "unreachable": EXIT_UNREACHABLE, "canceled": EXIT_CANCELLED}.get(self.status, EXIT_ERROR)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["schema_version"] = SCHEMA_VERSION
        out["exit_code"] = self.exit_code
        return out
