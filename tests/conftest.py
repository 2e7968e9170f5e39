"""Shared test helpers: running Ansible from the checkout against a lab."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def ansible_env() -> dict[str, str]:
    """The environment of an operator in this checkout: its ansible.cfg, nothing inherited."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env["ANSIBLE_CONFIG"] = str(ROOT / "ansible.cfg")
    env["ANSIBLE_FORCE_COLOR"] = "0"
    return env


def run_ansible(tool: str, *args: str, timeout: float = 600,
                env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**ansible_env(), "PATH": f"{BIN}:{os.environ.get('PATH', '')}", **(env or {})}
    return subprocess.run([str(BIN / tool), *args], cwd=ROOT, env=full_env, capture_output=True,
                          text=True, timeout=timeout, check=False)
