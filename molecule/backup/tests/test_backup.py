"""backup: backup.yml, remove a node, restore.yml: the removed node's entry is
back; the backup's files are private; retention keeps the newest."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared" / "tests"))
pytest.register_assert_rewrite("verify_cluster")

from verify_cluster import (  # noqa: E402,F401 - the shared checks, collected here
    EPHEMERAL,
    run_playbook,
    test_all_nodes_ready_from_the_server,
    test_config_and_token_files,
    test_unit_enabled_and_active,
)

BACKUPS = EPHEMERAL / "backups"


def _names(host) -> list[str]:
    items = json.loads(host.check_output("sudo k3s kubectl get nodes -o json"))["items"]
    return sorted(n["metadata"]["name"] for n in items)


def _mode(path: Path) -> str:
    return oct(path.stat().st_mode & 0o777)


def test_backup_remove_restore(host) -> None:
    if host.backend.get_hostname() != "srv":
        return
    run = run_playbook("playbooks/backup.yml", "-e", f"k3s_backup_dir={BACKUPS}")
    assert run.returncode == 0, run.stdout[-4000:]
    (backup,) = sorted(BACKUPS.iterdir())
    assert backup.name.startswith("pik3s-srv-")
    assert _mode(backup) == "0o700"
    assert {p.name: _mode(p) for p in backup.iterdir()} == dict.fromkeys(
        ["snapshot", "token", "config.yaml", "nodes.json"], "0o600")
    assert json.loads((backup / "nodes.json").read_text()) == ["agt1", "agt2", "srv"]
    assert (backup / "token").read_text().startswith("K10")
    assert backup.name in host.check_output("sudo k3s etcd-snapshot ls")

    removed = run_playbook("playbooks/remove_node.yml", "-e", "k3s_remove=agt2")
    assert removed.returncode == 0, removed.stdout[-4000:]
    assert _names(host) == ["agt1", "srv"]

    restored = run_playbook("playbooks/restore.yml", "-e", f"k3s_restore={backup}")
    assert restored.returncode == 0, restored.stdout[-4000:]
    assert _names(host) == ["agt1", "agt2", "srv"]  # the removed node's entry is back
    assert host.service("k3s").is_running


def test_retention_keeps_the_newest(host) -> None:
    if host.backend.get_hostname() != "srv":
        return
    for _ in range(2):
        run = run_playbook("playbooks/backup.yml", "-e", f"k3s_backup_dir={BACKUPS}", "-e", "k3s_backup_keep=2")
        assert run.returncode == 0, run.stdout[-3000:]
    kept = sorted(BACKUPS.iterdir())
    assert len(kept) == 2
