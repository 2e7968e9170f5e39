"""Every playbook parses and is runnable by its FQCN from the checkout."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ROOT, run_ansible

PLAYBOOKS = sorted(p.stem for p in (ROOT / "playbooks").glob("*.yml"))


def test_the_day2_playbooks_exist() -> None:
    assert {"site", "preflight", "upgrade", "remove_node", "backup", "restore", "reset"} <= set(PLAYBOOKS)


@pytest.mark.parametrize("name", PLAYBOOKS)
def test_syntax_by_fqcn(name: str, tmp_path: Path) -> None:
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("k3s_cluster:\n  children:\n    server:\n      hosts: {s1: {ansible_connection: local}}\n"
                         "    agent:\n      hosts: {a1: {ansible_connection: local}}\n")
    res = run_ansible("ansible-playbook", "-i", str(inventory), f"pik3s.cluster.{name}", "--syntax-check",
                      timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
