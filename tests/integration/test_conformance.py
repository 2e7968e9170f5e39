"""Lab hosts against Raspberry Pi OS, through plain Ansible modules and no pik3s role.

One run of tests/integration/playbooks/conformance.yml on an emulated Pi 4
(arm64) and an emulated Pi 3 (armhf); each test below is one conformance check
and says what a Raspberry Pi OS Lite host answers. Where the lab cannot answer
as a Pi does, the test asserts the lab's answer and the reason is in its
docstring (and the README's "What stays the lab machine's"): a fixed gap fails
its test, so the list stays true.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pik3s_lab import lab as lablib
from tests.conftest import run_ansible
from tests.integration.conftest import conformance_collections, host, running_lab

pytestmark = pytest.mark.lab

Results = dict[str, dict[str, dict[str, Any]]]  # task name -> host -> result
PIS = {"pi4": "Raspberry Pi 4 Model B Rev 1.4", "pi3": "Raspberry Pi 3 Model B Rev 1.2"}


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[lablib.LabRecord]:
    with running_lab(tmp_path_factory, "cf", [host("pi4", "server", arch="arm64"),
                                                 host("pi3", "agent", arch="armhf", model="rpi3")]) as record:
        yield record


@pytest.fixture(scope="module")
def results(lab: lablib.LabRecord) -> Results:
    env = {"ANSIBLE_COLLECTIONS_PATH": str(conformance_collections()),
           "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json", "ANSIBLE_CALLBACK_RESULT_FORMAT": "json"}
    res = run_ansible("ansible-playbook", "-i", str(lab.inventory), "tests/integration/playbooks/conformance.yml",
                      env=env, timeout=900)
    doc = json.loads(res.stdout[res.stdout.index("{"):])
    tasks: Results = {}
    for play in doc["plays"]:
        for task in play["tasks"]:
            tasks[task["task"]["name"]] = task["hosts"]
    assert set(doc["stats"]) == set(PIS), res.stdout[-3000:]
    return tasks


def ok(results: Results, task: str) -> dict[str, dict[str, Any]]:
    """The task's result on each Pi, which must have succeeded."""
    hosts = results.get(task, {})
    assert set(hosts) == set(PIS), f"{task!r} did not run on every host: {sorted(hosts)}"
    for name, res in hosts.items():
        assert not res.get("failed") and not res.get("unreachable"), f"{task} on {name}: {res.get('msg')}"
    return hosts


def lines(res: dict[str, Any]) -> list[str]:
    return str(res["stdout"]).splitlines()


def test_package_facts_finds_the_package_manager(results: Results) -> None:
    for res in ok(results, "Package facts").values():
        packages = res["ansible_facts"]["packages"]
        assert {"python3-apt", "openssh-server", "dphys-swapfile", "sudo"} <= set(packages)


def test_the_image_has_every_package_pi_os_lite_has_that_the_lab_keeps(results: Results) -> None:
    reference = Path(__file__).parents[2] / "lab/src/pik3s_lab/data/raspios-lite-bookworm.txt"
    kept = {ln.split()[0] for ln in reference.read_text().splitlines() if ln.strip() and not ln.startswith("#")
            and ln.split()[1] == "yes"}
    for name, res in ok(results, "Package facts").items():
        missing = kept - set(res["ansible_facts"]["packages"])
        assert not missing, f"{name} lacks {sorted(missing)}"


def test_service_facts(results: Results) -> None:
    for res in ok(results, "Service facts").values():
        services = res["ansible_facts"]["services"]
        assert services["ssh.service"]["state"] == "running"
        assert services["dphys-swapfile.service"]["status"] == "enabled"
        assert services["cron.service"]["state"] == "running"


def test_setup_hardware_subset(results: Results) -> None:
    """CPU facts come from the Pi's /proc/cpuinfo. Gap: the memory facts are the lab machine's
    (/proc/meminfo is not per container; the container's limit is enforced all the same)."""
    facts = {h: r["ansible_facts"] for h, r in ok(results, "Setup (hardware subset)").items()}
    assert facts["pi4"]["ansible_architecture"] == "aarch64"
    assert facts["pi3"]["ansible_architecture"] == "armv7l"
    assert "ARMv7 Processor rev 4 (v7l)" in facts["pi3"]["ansible_processor"]
    machine_mb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1)) // 1024  # type: ignore[union-attr]
    for f in facts.values():
        assert f["ansible_distribution"] == "Debian" and f["ansible_distribution_major_version"] == "12"
        assert f["ansible_product_name"] == "NA"  # no DMI on a Pi, none in the lab
        assert abs(f["ansible_memtotal_mb"] - machine_mb) <= 1  # the gap
        assert f["ansible_mounts"]


def test_apt_in_check_mode(results: Results) -> None:
    for res in ok(results, "Apt present, check mode").values():
        assert res["changed"] is False
    for res in ok(results, "Apt absent, check mode").values():
        assert res["changed"] is True  # it would remove nano ...
    for res in ok(results, "Nano after the check-mode removal").values():
        assert res["stdout"] == "install ok installed"  # ... and did not


def test_modprobe_finds_the_modules_k3s_loads_built_in(results: Results) -> None:
    for res in ok(results, "Modprobe command").values():
        assert (res["rc"], res["stderr"]) == (0, "")  # built in: nothing to load, nothing printed
    for res in ok(results, "Modprobe of a module the kernel has not got").values():
        assert res["rc"] == 1 and "FATAL: Module no_such_module not found" in res["stderr"]


def test_community_general_modprobe_gap(results: Results) -> None:
    """Gap: community.general.modprobe reads /proc/modules, which the lab machine's kernel (built
    without loadable modules) has not got, and no container can add a file to /proc."""
    hosts = results["Modprobe module of community.general"]
    assert set(hosts) == set(PIS)
    for res in hosts.values():
        assert "No such file or directory: '/proc/modules'" in res["msg"]


def test_sysctl(results: Results) -> None:
    """Network settings are per host. Gap, on purpose: vm.* and kernel.* are the lab machine's own
    and stay read-only, so no test host can change the machine it runs on."""
    for res in ok(results, "Sysctl module of ansible.posix, a network setting").values():
        assert res["changed"] is True
    for res in results["Sysctl module of ansible.posix, a vm setting"].values():
        assert "permission denied" in res["msg"].lower()


def test_device_tree(results: Results) -> None:
    """The device tree is where the kernel shows it (/sys/firmware/devicetree/base). Gap:
    /proc/device-tree, the kernel's link to it, exists only on a kernel with a device tree."""
    for name, res in ok(results, "Device tree and detection files").items():
        model, compatible, proc, cpuinfo = lines(res)
        assert model == PIS[name] + ";"
        assert compatible == {"pi4": "raspberrypi,4-model-b;brcm,bcm2711;",
                              "pi3": "raspberrypi,3-model-b;brcm,bcm2837;"}[name]
        assert proc == "no-proc-device-tree"
        assert cpuinfo.endswith(PIS[name])


def test_cmdline_is_the_hosts_and_changes_only_with_a_reboot(results: Results) -> None:
    before = ok(results, "Before the reboot")
    written = ok(results, "After writing, before the reboot")
    after = ok(results, "After the reboot")
    for name in PIS:
        boot_before, cmdline_before, memory_before = lines(before[name])
        boot_after, cmdline_after, memory_after, system = lines(after[name])
        # The firmware's part first, then cmdline.txt's line with serial0 resolved.
        assert cmdline_before.startswith("coherent_pool=1M ")
        assert "console=ttyS0,115200 console=tty1 root=PARTUUID=" in cmdline_before
        assert "cgroup_enable=memory" not in cmdline_before and memory_before == "memory-enabled=0"
        assert lines(written[name]) == [cmdline_before]  # written, not yet booted with
        assert cmdline_after == cmdline_before + " cgroup_memory=1 cgroup_enable=memory"
        assert memory_after == "memory-enabled=1"
        assert boot_after != boot_before
        assert system in ("running", "degraded")


def test_reboot_with_the_modules_defaults(results: Results) -> None:
    for res in ok(results, "Reboot (the module's defaults)").values():
        assert res["rebooted"] is True
