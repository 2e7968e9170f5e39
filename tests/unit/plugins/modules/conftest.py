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
