"""Run a collection module's main() in-process, as Ansible would, and return its result."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Callable
from typing import Any
from unittest import mock

import pytest
from ansible.module_utils import basic


@contextlib.contextmanager
def _module_args(args: dict[str, Any]) -> Any:
    try:  # ansible-core 2.19 and later
        from ansible.module_utils.testing import patch_module_args
    except ImportError:  # 2.17, 2.18: the args the module reads at start
        with mock.patch.object(basic, "_ANSIBLE_ARGS", json.dumps({"ANSIBLE_MODULE_ARGS": args}).encode()):
            yield
        return
    with patch_module_args(args):
        yield


def run_module(main: Callable[[], None], args: dict[str, Any], check: bool = False,
               diff: bool = False) -> dict[str, Any]:
    full = dict(args, _ansible_check_mode=check, _ansible_diff=diff, _ansible_remote_tmp="/tmp",
                _ansible_keep_remote_files=False)
    out = io.StringIO()
    with _module_args(full), contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        main()
    return json.loads(out.getvalue())


@pytest.fixture
def small_disk(tmp_path: Any) -> Any:
    """A real 256 KiB filesystem (tmpfs) at tmp_path/disk, for what a full disk does; unmounted afterwards.
    Needs root and CAP_SYS_ADMIN, as the module tests run (skipped otherwise)."""
    import os
    import subprocess

    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)],
                                           capture_output=True, check=False).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN)")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(directory: Any) -> None:
    """Fill the filesystem of ``directory`` to its last byte (unbuffered writes, big then single bytes)."""
    import os

    fd = os.open(directory / ".filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (65536, 4096, 1):
            try:
                while os.write(fd, b"\0" * size):
                    pass
            except OSError:
                pass
    finally:
        os.close(fd)
