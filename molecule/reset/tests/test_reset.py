"""reset: reset.yml refuses without confirmation, leaves nothing of K3s when
confirmed (and undoes prepare when asked), and site.yml deploys again."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared" / "tests"))
pytest.register_assert_rewrite("verify_cluster")

from verify_cluster import (  # noqa: E402,F401 - the shared checks, collected here
    failure_messages,
    recap,
    run_playbook,
    test_all_nodes_ready_from_the_server,
    test_config_and_token_files,
    test_unit_enabled_and_active,
)

REPORT = Path(os.environ.get("PIK3S_REPORT_DIR", Path.home() / ".cache" / "pik3s" / "reports"))
GONE = ["/usr/local/bin/k3s", "/usr/local/bin/kubectl", "/usr/local/bin/crictl", "/usr/local/bin/ctr",
        "/usr/local/bin/k3s-killall.sh", "/usr/local/bin/k3s-uninstall.sh", "/usr/local/bin/k3s-agent-uninstall.sh",
        "/etc/systemd/system/k3s.service", "/etc/systemd/system/k3s-agent.service",
        "/etc/systemd/system/k3s.service.env", "/etc/systemd/system/k3s-agent.service.env",
        "/etc/rancher", "/var/lib/rancher/k3s", "/var/lib/kubelet", "/run/k3s", "/var/lib/cni",
        "/etc/modules-load.d/k3s.conf", "/etc/sysctl.d/90-k3s.conf"]


def test_reset_then_deploy_again(host) -> None:
    if host.backend.get_hostname() != "srv":
        return
    refused = run_playbook("playbooks/reset.yml")
    assert refused.returncode != 0
    assert ("Reset not confirmed: nothing was changed. Answer 'yes' at the prompt, or set k3s_reset_confirm=true "
            "(for example -e k3s_reset_confirm=true) to run without one.") in failure_messages(refused.stdout)
    assert host.service("k3s").is_running

    started = time.monotonic()
    reset = run_playbook("playbooks/reset.yml", "-e", "k3s_reset_confirm=true", "-e", "k3s_reset_revert_prepare=true")
    seconds = time.monotonic() - started
    assert reset.returncode == 0, reset.stdout[-4000:]
    REPORT.mkdir(parents=True, exist_ok=True)
    (REPORT / "reset.json").write_text(json.dumps({"hosts": 2, "wall_seconds": round(seconds, 1)}) + "\n")
    for name in ("srv", "agt1"):
        node = host.get_host(f"ansible://{name}", ansible_inventory=host.backend.ansible_inventory)
        assert node.run("pgrep -x k3s").rc == 1, name
        assert [p for p in GONE if node.file(p).exists] == [], name
        # The lab mounts a volume at /var/lib/rancher: it stays, empty.
        assert node.run("ls -A /var/lib/rancher").stdout == "", name
        for unit in ("k3s", "k3s-agent"):
            assert not node.service(unit).is_enabled
        for link in ("cni0", "flannel.1"):
            assert node.run(f"ip link show {link}").rc != 0
        cmdline = node.file("/boot/firmware/cmdline.txt").content_string
        assert "cgroup_memory=1" not in cmdline and "cgroup_enable=memory" not in cmdline
        assert cmdline.count("\n") == 1
        assert node.service("dphys-swapfile").is_enabled

    again = run_playbook("playbooks/reset.yml", "-e", "k3s_reset_confirm=true")
    assert again.returncode == 0 and {h: c["changed"] for h, c in recap(again.stdout).items()} == \
        {"srv": 0, "agt1": 0}, again.stdout[-3000:]

    deploy = run_playbook("site.yml")
    assert deploy.returncode == 0, deploy.stdout[-4000:]
    assert "Ready" in host.check_output("sudo k3s kubectl get node agt1")
