"""A thin wrapper over the ``docker`` command line client."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Sequence
from typing import Any

from pik3s.errors import Pik3sError


def _docker() -> str:
    path = shutil.which("docker")
    if path is None:
        raise Pik3sError("the docker client is not installed (apt-get install docker.io)")
    return path


def run(args: Sequence[str], *, check: bool = True, input_bytes: bytes | None = None) -> str:
    """Run ``docker ARGS`` and return its standard output."""
    proc = subprocess.run(
        [_docker(), *args], input=input_bytes, capture_output=True, check=False
    )
    if check and proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip()
        raise Pik3sError(f"docker {' '.join(args[:2])} failed: {err}")
    return proc.stdout.decode(errors="replace")


def ensure_engine() -> None:
    """Fail with a clear message when no Docker engine answers."""
    proc = subprocess.run([_docker(), "info", "--format", "{{.ServerVersion}}"],
                          capture_output=True, check=False)
    if proc.returncode != 0:
        raise Pik3sError(
            "no Docker engine answers (start it: `dockerd &` or `systemctl start docker`)"
        )


def inspect(kind: str, name: str) -> dict[str, Any] | None:
    """``docker KIND inspect NAME`` as a dict, or None when it does not exist."""
    proc = subprocess.run([_docker(), kind, "inspect", name], capture_output=True, check=False)
    if proc.returncode != 0:
        return None
    data = json.loads(proc.stdout)
    return data[0] if data else None


def exists(kind: str, name: str) -> bool:
    return inspect(kind, name) is not None
