"""Labs for the integration tests: each module brings up its own, named after the test run."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from pik3s.lab import lab as lablib
from pik3s.lab import spec as speclib


def host(name: str, group: str, arch: str = "amd64", model: str = "rpi4") -> dict[str, Any]:
    return {"name": name, "arch": arch, "model": model, "memory": "512m", "groups": [group]}


@contextmanager
def running_lab(tmp_path_factory: pytest.TempPathFactory, prefix: str,
                hosts: list[dict[str, Any]]) -> Iterator[lablib.LabRecord]:
    """A lab of ``hosts`` for the duration of the block; removed afterwards, network included."""
    spec = speclib.parse_spec({"name": f"{prefix}{os.getpid()}", "hosts": hosts})
    state = tmp_path_factory.mktemp("lab")
    record = lablib.up(spec, state, progress=print)
    try:
        yield record
    finally:
        removed = lablib.down(spec.name, state)
        assert f"network pik3s-{spec.name}" in removed
