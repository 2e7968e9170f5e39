"""The controller-side decisions from a host's state, as tables."""

from __future__ import annotations

from typing import Any

import pytest

from ansible_collections.pik3s.cluster.plugins.plugin_utils import k3s_plan as p

SETTINGS = {
    "pi_model": "Raspberry Pi 4 Model B Rev 1.4", "swap_off": True, "modules": ["overlay", "br_netfilter"],
    "sysctls": {"net.ipv4.ip_forward": 1, "net.bridge.bridge-nf-call-iptables": 1}, "iptables": "auto",
    "cgroup_tokens": ["cgroup_memory=1", "cgroup_enable=memory"],
    "cmdline_candidates": ["/boot/firmware/cmdline.txt", "/boot/cmdline.txt"],
    "modules_file": "/etc/modules-load.d/k3s.conf", "modules_content": "overlay\nbr_netfilter\n",
    "sysctl_file": "/etc/sysctl.d/90-k3s.conf", "sysctl_content": "net.ipv4.ip_forward = 1\n",
    "fstab": "/etc/fstab", "dphys_binary": "/sbin/dphys-swapfile", "dphys_unit": "dphys-swapfile",
    "swapfile": "/var/swap",
}
LINE = "console=serial0,115200 console=tty1 root=PARTUUID=abc-02 rootfstype=ext4 fsck.repair=yes rootwait"


def state(**over: Any) -> dict[str, Any]:
    """A freshly flashed Pi 4 (Raspberry Pi OS, dphys-swapfile on, cmdline without the cgroup flags)."""
    base: dict[str, Any] = {
        "files": {"/sbin/dphys-swapfile": {"exists": True}, "/var/swap": {"exists": True},
                  "/boot/firmware/cmdline.txt": {"exists": True, "mode": "0755"}},
        "contents": {"/boot/firmware/cmdline.txt": LINE + "\n", "/boot/cmdline.txt": None,
                     "/etc/fstab": "proc /proc proc defaults 0 0\n"},
        "units": {"dphys-swapfile": {"load": "loaded", "active": "active", "enabled": "enabled"}},
        "memory_cgroup": {"active": False},
        "kernel_modules": {"loaded": ["br_netfilter"], "builtin": [], "sys": [], "filesystems": ["ext4"],
                           "bridge_netfilter": True},
        "sysctls": {"net.ipv4.ip_forward": "0", "net.bridge.bridge-nf-call-iptables": "1"},
        "swap": {"active": [{"name": "/var/swap", "type": "file", "size_kb": 102396}]},
        "iptables": {"version": "1.8.9", "mode": "nf_tables"},
    }
    base.update(over)
    return base


def files_of(plan: dict[str, Any]) -> dict[str, str]:
    return {e["path"]: e["content"] for phase in plan["files"].values() for e in phase}


def test_a_fresh_pi_gets_everything() -> None:
    plan = p.prepare_plan(state(), SETTINGS)
    assert plan["cmdline"] == {"path": "/boot/firmware/cmdline.txt",
                               "missing": ["cgroup_memory=1", "cgroup_enable=memory"]}
    assert files_of(plan)["/boot/firmware/cmdline.txt"] == LINE + " cgroup_memory=1 cgroup_enable=memory\n"
    assert plan["reboot"] is True
    assert plan["load_modules"] == ["overlay"]
    assert plan["sysctls_differ"] == ["net.ipv4.ip_forward"]
    assert plan["swap"] == {"stop": True, "disable": True, "uninstall": True, "swapoff": True}
    assert plan["iptables_legacy"] is False
    assert plan["act"] is True
    assert set(files_of(plan)) == {"/boot/firmware/cmdline.txt", "/etc/modules-load.d/k3s.conf",
                                   "/etc/sysctl.d/90-k3s.conf"}


def test_a_prepared_pi_needs_nothing_but_its_files_compared() -> None:
    prepared = state(
        contents={"/boot/firmware/cmdline.txt": LINE + " cgroup_memory=1 cgroup_enable=memory\n",
                  "/etc/fstab": "proc /proc proc defaults 0 0\n"},
        units={"dphys-swapfile": {"load": "loaded", "active": "inactive", "enabled": "disabled"}},
        files={"/sbin/dphys-swapfile": {"exists": True}, "/var/swap": {"exists": False}},
        memory_cgroup={"active": True},
        kernel_modules={"loaded": [], "builtin": ["br_netfilter"], "sys": [], "filesystems": ["overlay"],
                        "bridge_netfilter": True},
        sysctls={"net.ipv4.ip_forward": "1", "net.bridge.bridge-nf-call-iptables": "1"},
        swap={"active": []})
    plan = p.prepare_plan(prepared, SETTINGS)
    assert plan["files"]["cgroup"] == [] and plan["files"]["swap"] == []
    assert plan["reboot"] is False and plan["load_modules"] == [] and plan["sysctls_differ"] == []
    assert plan["swap"] == {"stop": False, "disable": False, "uninstall": False, "swapoff": False}
    # nothing for the steps after the files step: the role does not even include them
    assert plan["act"] is False
    # each of them alone makes the steps run
    for changed in ({"memory_cgroup": {"active": False}}, {"swap": {"active": ["/swapfile"]}},
                    {"sysctls": {"net.ipv4.ip_forward": "0", "net.bridge.bridge-nf-call-iptables": "1"}},
                    {"kernel_modules": {"loaded": [], "builtin": [], "sys": [], "filesystems": ["overlay"],
                                        "bridge_netfilter": False}},
                    {"iptables": {"version": "1.8.3", "mode": "nf_tables"}}):
        assert p.prepare_plan({**prepared, **changed}, SETTINGS)["act"] is True, changed


@pytest.mark.parametrize(("line", "active", "content", "reboot"), [
    # only the missing flag is appended, to the one line
    (LINE + " cgroup_memory=1", False, LINE + " cgroup_memory=1 cgroup_enable=memory\n", True),
    # the flags are in the file but the kernel has no memory cgroup yet: written earlier, no new reboot here
    (LINE + " cgroup_memory=1 cgroup_enable=memory", False, None, False),
    # the kernel has it already (another bootloader path): the file is completed, no reboot
    (LINE, True, LINE + " cgroup_memory=1 cgroup_enable=memory\n", False),
    # a second line (a mistake) is dropped: cmdline.txt is one line
    (LINE + "\nsecond line", False, LINE + " cgroup_memory=1 cgroup_enable=memory\n", True),
])
def test_cmdline(line: str, active: bool, content: str | None, reboot: bool) -> None:
    plan = p.prepare_plan(state(contents={"/boot/firmware/cmdline.txt": line + "\n", "/etc/fstab": ""},
                                memory_cgroup={"active": active}), SETTINGS)
    assert files_of(plan).get("/boot/firmware/cmdline.txt") == content
    assert plan["reboot"] is reboot


def test_old_boot_layout_and_non_pi() -> None:
    old = state(contents={"/boot/firmware/cmdline.txt": None, "/boot/cmdline.txt": LINE + "\n", "/etc/fstab": ""})
    assert p.prepare_plan(old, SETTINGS)["cmdline"]["path"] == "/boot/cmdline.txt"
    plan = p.prepare_plan(state(), dict(SETTINGS, pi_model=""))
    assert plan["cmdline"] == {"path": "", "missing": []} and plan["reboot"] is False


def test_swap_left_alone_when_asked() -> None:
    plan = p.prepare_plan(state(contents={"/etc/fstab": "/swapfile none swap sw 0 0\n"}),
                          dict(SETTINGS, swap_off=False))
    assert plan["swap"] == {"stop": False, "disable": False, "uninstall": False, "swapoff": False}
    assert plan["files"]["swap"] == []


@pytest.mark.parametrize(("fstab", "out"), [
    ("/swapfile none swap sw 0 0\n", "# /swapfile none swap sw 0 0  # disabled by pik3s\n"),
    ("UUID=1 / ext4 defaults 0 1\n/dev/sda2 none swap sw 0 0\n",
     "UUID=1 / ext4 defaults 0 1\n# /dev/sda2 none swap sw 0 0  # disabled by pik3s\n"),
    ("# /swapfile none swap sw 0 0  # disabled by pik3s\n", None),  # already done
    ("UUID=1 / ext4 defaults 0 1\n", None),
    (None, None),
])
def test_fstab_swap_entries(fstab: str | None, out: str | None) -> None:
    assert p.fstab_without_swap(fstab) == out


@pytest.mark.parametrize(("name", "modules", "present"), [
    ("overlay", {"loaded": ["overlay"]}, True),
    ("overlay", {"builtin": ["overlay"]}, True),
    ("overlay", {"filesystems": ["overlay"]}, True),  # built in without parameters: only the feature shows
    ("br_netfilter", {"bridge_netfilter": True}, True),
    ("br-netfilter", {"sys": ["br_netfilter"]}, True),
    ("vxlan", {"filesystems": ["overlay"], "bridge_netfilter": True}, False),
    ("overlay", {}, False),
])
def test_module_present(name: str, modules: dict[str, Any], present: bool) -> None:
    assert p.module_present(name, modules) is present


@pytest.mark.parametrize(("iptables", "setting", "legacy"), [
    ({"version": "1.8.4", "mode": "nf_tables"}, "auto", True),
    ({"version": "1.8.0", "mode": "nf_tables"}, "auto", True),
    ({"version": "1.6.1", "mode": "nf_tables"}, "auto", True),
    ({"version": "1.8.5", "mode": "nf_tables"}, "auto", False),
    ({"version": "1.8.9", "mode": "nf_tables"}, "auto", False),
    ({"version": "1.8.4", "mode": "legacy"}, "auto", False),
    ({"version": "1.8.4", "mode": "nf_tables"}, "keep", False),
    ({"version": "", "mode": ""}, "auto", False),
    (None, "auto", False),
])
def test_iptables(iptables: dict[str, str] | None, setting: str, legacy: bool) -> None:
    assert p.iptables_needs_legacy(iptables, setting) is legacy


@pytest.mark.parametrize(("wanted", "current", "differ"), [
    ({"a": 1, "b": "x  y"}, {"a": "1", "b": "x y"}, []),
    ({"a": 1}, {"a": "0"}, ["a"]),
    ({"a": 1}, {}, ["a"]),
    ({"a": 1}, {"a": None}, ["a"]),
])
def test_sysctls_differ(wanted: dict[str, Any], current: dict[str, Any], differ: list[str]) -> None:
    assert p.sysctls_differ(wanted, current) == differ


RUNNING = {"load": "loaded", "active": "active", "enabled": "enabled"}
UNIT = "/etc/systemd/system/k3s.service"
RESTART = ["/usr/local/bin/k3s", "/etc/rancher/k3s/config.yaml", UNIT]


@pytest.mark.parametrize(("unit", "changed", "check", "expected"), [
    # converged: nothing at all
    (RUNNING, [], False, {"run": False, "state": None, "daemon_reload": False, "wait": False}),
    # a script changed: K3s does not read it, no restart
    (RUNNING, ["/usr/local/bin/k3s-killall.sh"], False,
     {"run": False, "state": None, "daemon_reload": False, "wait": False}),
    (RUNNING, ["/etc/rancher/k3s/config.yaml"], False,
     {"run": True, "state": "restarted", "daemon_reload": False, "wait": True}),
    (RUNNING, [UNIT], False, {"run": True, "state": "restarted", "daemon_reload": True, "wait": True}),
    # a new node: the first start is the only start
    ({"load": "not-found", "active": "inactive", "enabled": ""}, [UNIT, "/usr/local/bin/k3s"], False,
     {"run": True, "state": "started", "daemon_reload": True, "wait": True}),
    # stopped by hand: started again, no restart
    (dict(RUNNING, active="failed"), [], False,
     {"run": True, "state": "started", "daemon_reload": False, "wait": True}),
    (dict(RUNNING, enabled="disabled"), [], False,
     {"run": True, "state": None, "daemon_reload": False, "wait": False}),
    (dict(RUNNING, need_daemon_reload=True), [], False,
     {"run": True, "state": None, "daemon_reload": True, "wait": False}),
    # a check run on a new host: the unit was not really written, nothing to start
    ({"load": "not-found", "active": "inactive", "enabled": ""}, [UNIT], True,
     {"run": False, "state": "started", "daemon_reload": True, "wait": True}),
])
def test_service_plan(unit: dict[str, Any], changed: list[str], check: bool, expected: dict[str, Any]) -> None:
    plan = p.service_plan(unit, changed, RESTART, [UNIT], check)
    assert {k: plan[k] for k in expected} == expected
    assert plan["enabled"] is True


BIN = "/usr/local/bin"
K3S = "/usr/local/bin/k3s"


@pytest.mark.parametrize(("files", "linked"), [
    ({}, ["kubectl", "crictl", "ctr"]),
    ({f"{BIN}/kubectl": {"exists": True, "type": "link", "link": K3S}}, ["kubectl", "crictl", "ctr"]),
    ({"/usr/bin/kubectl": {"exists": True, "type": "file"}}, ["crictl", "ctr"]),  # kubernetes-client's kubectl
    ({f"{BIN}/ctr": {"exists": True, "type": "file"}}, ["kubectl", "crictl"]),  # another package's ctr
    ({f"{BIN}/crictl": {"exists": True, "type": "link", "link": "/opt/crictl"}}, ["kubectl", "ctr"]),
])
def test_tool_links(files: dict[str, Any], linked: list[str]) -> None:
    out = p.tool_links(files, ["kubectl", "crictl", "ctr"], BIN, K3S)
    assert [e["label"] for e in out] == linked
    assert all(e == {"path": f"{BIN}/{e['label']}", "state": "link", "target": K3S, "label": e["label"]}
               for e in out)


@pytest.mark.parametrize(("run", "skip", "selected"), [
    (["all"], [], ["install", "configure"]),
    (["k3s_server_configure"], [], ["configure"]),
    (["all"], ["k3s_server_install"], ["configure"]),
    (["tagged"], [], ["install", "configure"]),
    (["prepare_swap"], [], []),
    (["all"], ["tagged"], []),
])
def test_selected_phases(run: list[str], skip: list[str], selected: list[str]) -> None:
    assert p.selected_phases(["install", "configure"], "k3s_server_", run, skip) == selected


def test_a_missing_state_is_named() -> None:
    with pytest.raises(p.PlanError, match="k3s_host_info is missing"):
        p.prepare_plan(None, SETTINGS)


@pytest.mark.parametrize(("agents", "batch"), [
    (0, 5), (1, 5), (4, 5), (20, 5), (21, 6), (24, 6), (49, 13), (100, 25), (1000, 250)])
def test_agent_batch_makes_at_most_four_batches_of_at_least_five(agents: int, batch: int) -> None:
    assert p.agent_batch(agents) == batch
    assert -(-agents // batch) <= 4


@pytest.mark.parametrize("bad", [-1, 2.5, "10", True, None])
def test_agent_batch_refuses_what_is_not_a_count(bad: Any) -> None:
    with pytest.raises(p.PlanError, match="an agent count is a whole number"):
        p.agent_batch(bad)
