"""nodes: add an agent with --limit without restarting the others, remove it
(gone from the cluster and the host), add it back under the same name."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared" / "tests"))
pytest.register_assert_rewrite("verify_cluster")

from verify_cluster import (  # noqa: E402,F401 - the shared checks, collected here
    EPHEMERAL,
    INVENTORY,
    api_get,
    failure_messages,
    run_playbook,
    test_all_nodes_ready_from_the_server,
    test_config_and_token_files,
    test_unit_enabled_and_active,
)


def _service_start(node, unit: str) -> str:
    return node.check_output(f"systemctl show -p MainPID -p ActiveEnterTimestamp {unit}")


def _nodes(host) -> dict[str, str]:
    items = json.loads(host.check_output("sudo k3s kubectl get nodes -o json"))["items"]
    return {n["metadata"]["name"]: n["status"]["conditions"][0]["status"] for n in items}


def test_the_api_is_reached_at_the_virtual_ip(host) -> None:
    """kube-vip holds k3s_api_vip on the server: the agents' config and the fetched kubeconfig use it, the
    server's certificate names it, and the API answers there."""
    import yaml
    vip = host.ansible.get_variables()["pik3s_lab_vip"]  # k3s_api_vip is "{{ pik3s_lab_vip }}"
    name = host.backend.get_hostname()
    if name not in ("srv", "agt1"):
        return  # agt2 is outside the cluster at this point
    config = yaml.safe_load(host.check_output("sudo cat /etc/rancher/k3s/config.yaml"))
    if name == "srv":
        assert vip in config["tls-san"]
        assert f"inet {vip}/32" in host.check_output("ip -4 addr show dev eth0")
        kubeconfig = yaml.safe_load((INVENTORY / ".kube" / "k3s.yaml").read_text())
        assert kubeconfig["clusters"][0]["cluster"]["server"] == f"https://{vip}:6443"
        assert len(api_get(kubeconfig, "/api/v1/nodes")["items"]) >= 2  # the certificate names the VIP
    elif name == "agt1":
        assert config["server"] == f"https://{vip}:6443"


def test_add_remove_and_add_again(host) -> None:
    if host.backend.get_hostname() != "srv":
        return
    inventory = host.backend.ansible_inventory
    agt1 = host.get_host("ansible://agt1", ansible_inventory=inventory)
    agt2 = host.get_host("ansible://agt2", ansible_inventory=inventory)
    extra = EPHEMERAL / "add-agt2.yml"
    extra.write_text("all:\n  children:\n    k3s_cluster:\n      children:\n        agent:\n"
                     "          hosts:\n            agt2: {}\n")
    assert set(_nodes(host)) == {"srv", "agt1"}
    before = (_service_start(host, "k3s"), _service_start(agt1, "k3s-agent"))

    added = run_playbook("site.yml", "-i", str(extra), "--limit", "agt2")
    assert added.returncode == 0, added.stdout[-4000:]
    assert _nodes(host) == {"srv": "True", "agt1": "True", "agt2": "True"}
    assert (_service_start(host, "k3s"), _service_start(agt1, "k3s-agent")) == before  # nothing restarted

    unnamed = run_playbook("playbooks/remove_node.yml", "-i", str(extra))
    assert unnamed.returncode != 0
    assert ("set k3s_remove to the inventory name(s) of the node(s) to remove, for example "
            "-e k3s_remove=pi3-2") in failure_messages(unnamed.stdout)
    first = run_playbook("playbooks/remove_node.yml", "-i", str(extra), "-e", "k3s_remove=srv")
    assert first.returncode != 0
    assert any(m.startswith("srv is the first server (pik3s runs kubectl there)")
               for m in failure_messages(first.stdout)), first.stdout[-3000:]

    removed = run_playbook("playbooks/remove_node.yml", "-i", str(extra), "-e", "k3s_remove=agt2")
    assert removed.returncode == 0, removed.stdout[-4000:]
    assert set(_nodes(host)) == {"srv", "agt1"}
    assert not agt2.file("/usr/local/bin/k3s").exists
    assert not agt2.file("/etc/rancher/node/password").exists
    assert not agt2.service("k3s-agent").is_enabled
    assert agt2.run("pgrep -x k3s").rc == 1
    assert (_service_start(host, "k3s"), _service_start(agt1, "k3s-agent")) == before

    again = run_playbook("site.yml", "-i", str(extra), "--limit", "agt2")
    assert again.returncode == 0, again.stdout[-4000:]
    assert _nodes(host) == {"srv": "True", "agt1": "True", "agt2": "True"}


def test_backup_refuses_a_sqlite_cluster(host) -> None:
    if host.backend.get_hostname() != "srv":
        return
    run = run_playbook("playbooks/backup.yml", "-e", f"k3s_backup_dir={EPHEMERAL / 'backups'}")
    assert run.returncode != 0
    assert ("srv has no embedded etcd (a single server on SQLite, or an external datastore): etcd snapshots "
            "need it. Deploy with k3s_server_ha=true (or 3 servers), or back up the datastore itself."
            ) in failure_messages(run.stdout, "srv")
