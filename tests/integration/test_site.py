"""site.yml on a small lab (a Pi 4 server, a plain Debian agent): the token
never shows in Ansible's output (default verbosity and -vvv); check mode works
on fresh and on converged hosts; an idempotent re-run costs each host at most
four module calls (counted by the pik3s_cost callback); drift is repaired
exactly, restarting K3s only where its configuration changed."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from pik3s_lab import lab as lablib
from tests.conftest import ROOT, run_ansible
from tests.integration.conftest import host, lab_inventory, running_lab

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[lablib.LabRecord]:
    with running_lab(tmp_path_factory, "sec", [host("srv", "server"), host("agt", "agent", model="generic")]) as record:
        yield record


def site(lab: lablib.LabRecord, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    res = run_ansible("ansible-playbook", "-i", lab_inventory(lab), "site.yml", *args,
                      env={"PIK3S_LAB_STATE_DIR": lab.state_dir, **(env or {})})
    return res.returncode, res.stdout + res.stderr


def on(lab: lablib.LabRecord, name: str, *cmd: str) -> str:
    """A command run as root in a lab host's container (outside Ansible)."""
    container = next(h.container for h in lab.hosts if h.name == name)
    return subprocess.run(["docker", "exec", container, *cmd], capture_output=True, text=True,
                          check=True).stdout.strip()


def main_pid(lab: lablib.LabRecord, name: str, unit: str) -> str:
    return on(lab, name, "systemctl", "show", "-p", "MainPID", "--value", unit)


def changed_tasks(output: str) -> dict[str, list[str]]:
    """Per host, the names of the tasks that reported a change, in the order they ran."""
    out: dict[str, list[str]] = {}
    task = ""
    for line in output.splitlines():
        if line.startswith("TASK ["):
            task = line[len("TASK ["):].split("] *")[0].split(" : ", 1)[-1]
        m = re.match(r"^changed: \[([^]\s]+)", line)
        if m:
            out.setdefault(m.group(1), []).append(task)
    return out


def changed(output: str) -> dict[str, int]:
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\S+)\s+: ok=\d+\s+changed=(\d+)", output, re.M)}


def test_check_mode_converge_secrets(lab: lablib.LabRecord) -> None:
    rc, fresh_check = site(lab, "--check")
    assert rc == 0, fresh_check

    rc, first = site(lab, "-vvv")
    assert rc == 0, first[-3000:]
    res = run_ansible("ansible", "-i", lab_inventory(lab), "srv", "-b", "-m", "ansible.builtin.command",
                      "-a", "cat /var/lib/rancher/k3s/server/token", env={"PIK3S_LAB_STATE_DIR": lab.state_dir})
    token = re.search(r"K10[0-9a-f]{64}::server:\S+", res.stdout)
    assert token, res.stdout
    password = token.group(0).rsplit(":", 1)[1]
    assert len(password) == 48  # generated on the controller: 48 letters and digits

    rc, second = site(lab)
    assert rc == 0, second[-3000:]
    assert changed(second) == {"srv": 0, "agt": 0}

    rc, converged_check = site(lab, "--check", "-vvv")
    assert rc == 0, converged_check[-3000:]
    assert changed(converged_check) == {"srv": 0, "agt": 0}

    for name, output in (("fresh --check", fresh_check), ("-vvv converge", first), ("re-run", second),
                         ("--check -vvv", converged_check)):
        assert password not in output, f"the token's password leaked in the {name} output"


def test_an_idempotent_rerun_costs_each_host_at_most_four_module_calls(lab: lablib.LabRecord,
                                                                        tmp_path: Path) -> None:
    report = tmp_path / "cost.json"
    rc, out = site(lab, env={"ANSIBLE_CALLBACK_PLUGINS": str(ROOT / "tests/callback_plugins"),
                             "ANSIBLE_CALLBACKS_ENABLED": "pik3s_cost", "PIK3S_COST_REPORT": str(report)})
    assert rc == 0, out[-3000:]
    assert changed(out) == {"srv": 0, "agt": 0}
    cost = json.loads(report.read_text())
    per_host = {h: c["modules"] for h, c in cost.items() if h in ("srv", "agt")}
    assert per_host == {"srv": per_host["srv"], "agt": per_host["agt"]}
    assert all(1 <= n <= 4 for n in per_host.values()), cost
    # the one read of each host; the server also answers the cluster's readiness and status
    assert cost["agt"]["module_tasks"] == ["pik3s.cluster._common : Read the host's state"], cost
    assert cost["srv"]["module_tasks"][0] == "pik3s.cluster._common : Read the host's state", cost
    assert cost.get("localhost", {}).get("modules", 0) == 0, cost  # nothing run on the controller either


def test_drift_is_repaired_exactly_and_k3s_restarts_only_where_its_config_changed(lab: lablib.LabRecord) -> None:
    pids = {"srv": main_pid(lab, "srv", "k3s"), "agt": main_pid(lab, "agt", "k3s-agent")}
    config = on(lab, "agt", "cat", "/etc/rancher/k3s/config.yaml")
    # A managed file edited by hand on the agent; a sysctl and swap turned back on on the server (a Pi 4).
    on(lab, "agt", "sh", "-c", "echo 'node-label: [drifted=yes]' >> /etc/rancher/k3s/config.yaml")
    on(lab, "srv", "sysctl", "-w", "net.ipv4.ip_forward=0")
    on(lab, "srv", "systemctl", "enable", "--now", "dphys-swapfile")
    assert on(lab, "srv", "sh", "-c", "test -e /var/swap && systemctl is-enabled dphys-swapfile") == "enabled"

    rc, out = site(lab, "-v", env={"ANSIBLE_CALLBACK_RESULT_FORMAT": "json", "ANSIBLE_CALLBACK_FORMAT_PRETTY": "0"})
    assert rc == 0, out[-3000:]
    changes = changed_tasks(out)
    assert changes == {
        "srv": ["Stop and disable dphys-swapfile (Raspberry Pi OS)", "Remove the swap file", "Apply the K3s sysctls"],
        "agt": ["Write the files that differ", "Start, restart or enable k3s-agent"],
    }, out[-4000:]
    written = re.search(r"changed: \[agt\] => (\{.*\})$", out.split("Write the files that differ")[-1], re.M)
    assert written and json.loads(written.group(1))["changed_paths"] == ["/etc/rancher/k3s/config.yaml"]

    assert on(lab, "agt", "cat", "/etc/rancher/k3s/config.yaml") == config
    assert main_pid(lab, "agt", "k3s-agent") != pids["agt"]  # restarted: its config changed
    assert main_pid(lab, "srv", "k3s") == pids["srv"]  # untouched: nothing of K3s changed there
    assert on(lab, "srv", "sysctl", "-n", "net.ipv4.ip_forward") == "1"
    assert on(lab, "srv", "sh", "-c", "systemctl is-enabled dphys-swapfile; test -e /var/swap || echo gone") \
        == "disabled\ngone"

    rc, again = site(lab)
    assert rc == 0 and changed(again) == {"srv": 0, "agt": 0}, again[-3000:]


def test_files_pik3s_no_longer_manages_are_removed(lab: lablib.LabRecord) -> None:
    """A registries.yaml on a node whose k3s_registries is empty, and an external datastore's client key on a
    server whose k3s_datastore_keyfile is empty (left from an earlier inventory), are removed - their
    credentials must not stay in force - and K3s restarted there; nothing else changes."""
    pids = {"srv": main_pid(lab, "srv", "k3s"), "agt": main_pid(lab, "agt", "k3s-agent")}
    on(lab, "agt", "sh", "-c", "printf 'mirrors:\\n  docker.io:\\n    endpoint: [\"https://old.lab\"]\\n' "
                               "> /etc/rancher/k3s/registries.yaml")
    on(lab, "srv", "sh", "-c", "mkdir -p /etc/rancher/k3s/datastore && echo old-key > "
                               "/etc/rancher/k3s/datastore/client.key")
    rc, out = site(lab, "-v", env={"ANSIBLE_CALLBACK_RESULT_FORMAT": "json", "ANSIBLE_CALLBACK_FORMAT_PRETTY": "0"})
    assert rc == 0, out[-3000:]
    paths: dict[str, list[str]] = {}
    for m in re.finditer(r"^changed: \[(\w+)\] => (\{.*\})$", out, re.M):
        result = json.loads(m.group(2))
        if "changed_paths" in result:  # the files step's result
            paths[m.group(1)] = result["changed_paths"]
    assert paths == {"srv": ["/etc/rancher/k3s/datastore/client.key"], "agt": ["/etc/rancher/k3s/registries.yaml"]}
    assert on(lab, "agt", "sh", "-c", "test -e /etc/rancher/k3s/registries.yaml || echo gone") == "gone"
    assert on(lab, "srv", "sh", "-c", "test -e /etc/rancher/k3s/datastore/client.key || echo gone") == "gone"
    assert main_pid(lab, "agt", "k3s-agent") != pids["agt"] and main_pid(lab, "srv", "k3s") != pids["srv"]
    rc, again = site(lab)
    assert rc == 0 and changed(again) == {"srv": 0, "agt": 0}, again[-3000:]
