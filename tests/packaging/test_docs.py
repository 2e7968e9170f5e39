"""The docs match the code: the role variable tables are the argument specs' (scripts/role-docs)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

ROLE_DOCS = [sys.executable, str(ROOT / "scripts/role_docs.py")]


def test_the_variable_tables_are_the_argument_specs() -> None:
    res = subprocess.run([*ROLE_DOCS, "--check"], capture_output=True, text=True, check=False)
    assert (res.returncode, res.stderr) == (0, "")


def test_a_table_that_drifts_from_its_spec_fails_the_check(tmp_path: Path) -> None:
    for part in ("roles", "docs"):
        shutil.copytree(ROOT / part, tmp_path / part)
    spec = tmp_path / "roles/k3s_agent/meta/argument_specs.yml"
    spec.write_text(spec.read_text().replace("Wait until the agent's node is Ready", "Wait for the node"))
    res = subprocess.run([*ROLE_DOCS, "--check", "--root", str(tmp_path)], capture_output=True, text=True, check=False)
    assert res.returncode == 1
    assert res.stderr.splitlines() == [
        f"role-docs: {p} differs from the roles' meta/argument_specs.yml: run scripts/role-docs"
        for p in ("roles/k3s_agent/README.md", "docs/variables.md")]
    subprocess.run([*ROLE_DOCS, "--root", str(tmp_path)], capture_output=True, check=True)  # rewrites them
    assert "| `k3s_agent_wait_ready` | bool | `true` | Wait for the node" in (
        tmp_path / "roles/k3s_agent/README.md").read_text()
    assert subprocess.run([*ROLE_DOCS, "--check", "--root", str(tmp_path)], check=False).returncode == 0
