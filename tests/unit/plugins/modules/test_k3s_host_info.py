"""k3s_host_info: the one read of a host, on a fake root shaped like Raspberry Pi OS."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.pik3s.cluster.plugins.module_utils.k3s_digest import sha256_bytes, token_fingerprint
from ansible_collections.pik3s.cluster.plugins.modules import k3s_host_info as m
from tests.unit.plugins.modules.conftest import fill

KEY = "k" * 43
HASH = "0123456789abcdef" * 4


def write(root: Path, path: str, text: str | bytes, mode: int = 0o644) -> None:
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(text.encode() if isinstance(text, str) else text)
    target.chmod(mode)


@pytest.fixture
def pi(tmp_path: Path) -> Path:
    """A Raspberry Pi 4 on Raspberry Pi OS (bookworm, 32-bit id 'raspbian'), cgroup v1, swap on."""
    write(tmp_path, "/etc/os-release", 'PRETTY_NAME="Raspbian GNU/Linux 12 (bookworm)"\nID=raspbian\n'
                                       'VERSION_ID="12"\nVERSION_CODENAME=bookworm\nID_LIKE=debian\n')
    write(tmp_path, "/etc/rpi-issue", "Raspberry Pi reference 2024-11-19\n")
    write(tmp_path, "/proc/device-tree/model", b"Raspberry Pi 4 Model B Rev 1.4\0")
    write(tmp_path, "/proc/meminfo", "MemTotal:        3884332 kB\n")
    write(tmp_path, "/proc/cgroups", "#subsys_name\thierarchy\tnum_cgroups\tenabled\ncpu\t3\t1\t1\n"
                                     "memory\t0\t1\t0\n")
    write(tmp_path, "/proc/swaps", "Filename\tType\tSize\tUsed\tPriority\n/var/swap file 102396 0 -2\n")
    write(tmp_path, "/proc/modules", "br_netfilter 32768 0 - Live 0x0\nbridge 204800 1 br_netfilter, Live 0x0\n")
    write(tmp_path, "/lib/modules/6.6.51-v8+/modules.builtin", "kernel/fs/overlayfs/overlay.ko\n")
    (tmp_path / "sys/module/br_netfilter").mkdir(parents=True)
    write(tmp_path, "/proc/filesystems", "nodev\tsysfs\n\text4\nnodev\toverlay\n")
    write(tmp_path, "/proc/sys/net/ipv4/ip_forward", "0\n")
    write(tmp_path, "/proc/sys/net/bridge/bridge-nf-call-iptables", "1\n")
    write(tmp_path, "/etc/sysctl.d/90-k3s.conf",
          "# pik3s\nnet.ipv4.ip_forward = 1\n-net.bridge.bridge-nf-call-iptables=1\n")
    write(tmp_path, "/etc/modules-load.d/k3s.conf", "# pik3s\noverlay\nbr-netfilter  # comment\n")
    write(tmp_path, "/boot/firmware/cmdline.txt", "console=tty1 root=PARTUUID=abc-02 rootwait\n", 0o755)
    write(tmp_path, "/etc/rancher/k3s/config.yaml", "node-name: pi4-1\n", 0o600)
    write(tmp_path, "/etc/rancher/k3s/registries.yaml", "mirrors: {}\n", 0o600)
    write(tmp_path, "/etc/rancher/k3s/cluster-token", "s3cret-password\n", 0o600)
    write(tmp_path, "/var/lib/rancher/k3s/server/token", f"K10{HASH}::server:s3cret-password\n", 0o600)
    os.symlink("/usr/local/bin/k3s", tmp_path / "kubectl")
    return tmp_path


PARAMS: dict[str, Any] = {
    "paths": ["/etc/rancher/k3s/config.yaml", "/etc/rancher/k3s", "/kubectl", "/usr/local/bin/k3s",
              "/boot/firmware/cmdline.txt"],
    "secret_paths": ["/etc/rancher/k3s/registries.yaml"],
    "token_files": ["/etc/rancher/k3s/cluster-token", "/var/lib/rancher/k3s/server/token"],
    "fingerprint_key": KEY, "contents": ["/boot/firmware/cmdline.txt", "/boot/cmdline.txt"],
    "sysctls": ["net.ipv6.conf.all.forwarding"], "sysctl_files": ["/etc/sysctl.d/90-k3s.conf"],
    "user_paths": [], "user_secret_paths": [], "user_blocks": [], "listings": [],
}


def read(root: Path, **over: Any) -> dict[str, Any]:
    return m.read_state(m.Host(str(root), machine="aarch64", release="6.6.51-v8+"), dict(PARAMS, **over), {})


def test_os_pi_cpu_cgroup_swap(pi: Path) -> None:
    s = read(pi)
    assert s["os"] == {"distribution": "Debian", "version": "12", "codename": "bookworm", "id": "raspbian",
                       "id_like": "debian", "pretty_name": "Raspbian GNU/Linux 12 (bookworm)", "raspios": True}
    assert s["pi_model"] == "Raspberry Pi 4 Model B Rev 1.4"
    assert s["cpu"]["architecture"] == "aarch64" and s["cpu"]["memory_mb"] == 3793
    assert s["memory_cgroup"] == {"active": False, "source": "/proc/cgroups"}
    assert s["swap"] == {"active": [{"name": "/var/swap", "type": "file", "size_kb": 102396}]}


def test_cgroup_v2_and_the_model_line_of_cpuinfo(pi: Path) -> None:
    write(pi, "/sys/fs/cgroup/cgroup.controllers", "cpuset cpu io memory pids\n")
    (pi / "proc/device-tree/model").unlink()
    write(pi, "/proc/cpuinfo", "processor\t: 0\nHardware\t: BCM2835\nModel\t\t: Raspberry Pi 3 Model B Rev 1.2\n")
    s = read(pi)
    assert s["memory_cgroup"] == {"active": True, "source": "/sys/fs/cgroup/cgroup.controllers"}
    assert s["pi_model"] == "Raspberry Pi 3 Model B Rev 1.2"


def test_the_model_where_the_kernel_shows_the_device_tree(pi: Path) -> None:
    """/sys/firmware/devicetree/base is the kernel's own place (/proc/device-tree links to it on a Pi)."""
    (pi / "proc/device-tree/model").unlink()
    write(pi, "/sys/firmware/devicetree/base/model", b"Raspberry Pi 3 Model B Plus Rev 1.3\0")
    write(pi, "/proc/cpuinfo", "processor\t: 0\nModel\t\t: Raspberry Pi 3 Model B Rev 1.2\n")
    assert read(pi)["pi_model"] == "Raspberry Pi 3 Model B Plus Rev 1.3"


def test_not_a_pi(pi: Path) -> None:
    write(pi, "/proc/device-tree/model", b"QEMU Virtual Machine\0")
    write(pi, "/etc/os-release", "ID=ubuntu\nVERSION_ID=\"24.04\"\nNAME=Ubuntu\n")
    (pi / "etc/rpi-issue").unlink()
    s = read(pi)
    assert s["pi_model"] == ""
    assert (s["os"]["distribution"], s["os"]["version"], s["os"]["raspios"]) == ("Ubuntu", "24.04", False)


def test_kernel_modules_and_sysctls(pi: Path) -> None:
    s = read(pi)
    km = s["kernel_modules"]
    assert km["loaded"] == ["br_netfilter", "bridge"] and km["builtin"] == ["overlay"]
    assert km["sys"] == ["br_netfilter"] and "overlay" in km["filesystems"] and km["bridge_netfilter"] is True
    assert km["persisted"] == {"overlay": ["/etc/modules-load.d/k3s.conf"],
                               "br_netfilter": ["/etc/modules-load.d/k3s.conf"]}
    # the keys the managed file sets are read too, besides those asked for; a missing one is null
    assert s["sysctls"] == {"net.ipv6.conf.all.forwarding": None, "net.ipv4.ip_forward": "0",
                            "net.bridge.bridge-nf-call-iptables": "1"}


def test_files_links_directories_and_missing(pi: Path) -> None:
    files = read(pi)["files"]
    config = files["/etc/rancher/k3s/config.yaml"]
    assert (config["type"], config["mode"], config["sha256"]) == ("file", "0600", sha256_bytes("node-name: pi4-1\n"))
    assert files["/etc/rancher/k3s"]["type"] == "directory"
    assert files["/kubectl"] == {**files["/kubectl"], "type": "link", "link": "/usr/local/bin/k3s"}
    assert files["/usr/local/bin/k3s"]["exists"] is False
    assert files["/boot/firmware/cmdline.txt"]["mode"] == "0755"


def test_secrets_are_fingerprints_never_plain_digests(pi: Path) -> None:
    files = read(pi)["files"]
    registries = files["/etc/rancher/k3s/registries.yaml"]
    assert "sha256" not in registries and len(registries["fingerprint"]) == 64
    token, server = files["/etc/rancher/k3s/cluster-token"], files["/var/lib/rancher/k3s/server/token"]
    # one token in its short and its secure form: the same fingerprint, the same as the controller computes
    assert token["fingerprint"] == server["fingerprint"] == token_fingerprint(KEY, "s3cret-password")
    assert (token["format"], server["format"]) == ("short", "secure")
    assert "sha256" not in token
    assert read(pi, fingerprint_key="")["files"]["/etc/rancher/k3s/cluster-token"]["fingerprint"] == ""
    assert read(pi, fingerprint_key="other")["files"]["/etc/rancher/k3s/cluster-token"]["fingerprint"] != \
        token["fingerprint"]


def test_contents_of_small_text_files(pi: Path) -> None:
    contents = read(pi)["contents"]
    assert contents == {"/boot/firmware/cmdline.txt": "console=tty1 root=PARTUUID=abc-02 rootwait\n",
                        "/boot/cmdline.txt": None}


def test_blocks_of_login_users(pi: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = pi / "home/pi"
    write(pi, "/home/pi/.bashrc", "# BEGIN pik3s: x\nexport KUBECONFIG=a\n# END pik3s: x\n# rest\n")
    host = m.Host(str(pi), machine="aarch64", release="6.6.51-v8+")
    monkeypatch.setattr(host, "path", lambda p: str(home / p.split("/", 1)[1]) if p.startswith("~pi/")
                        else os.path.join(str(pi), p.lstrip("/")))
    state = m.read_state(host, dict(PARAMS, user_paths=[".bashrc"],
                                    user_blocks=[{"path": ".bashrc", "marker": "# {mark} pik3s: x"}]),
                         {"pi": {"home": str(home), "uid": 1000, "gid": 1000}})
    assert state["blocks"] == {"~pi/.bashrc": "export KUBECONFIG=a"}
    assert state["files"]["~pi/.bashrc"]["type"] == "file"


def test_the_module_runs_read_only_in_check_mode(tmp_path: Path) -> None:
    from tests.unit.plugins.modules.conftest import run_module

    result = run_module(m.main, {"paths": [str(tmp_path)], "fingerprint_key": KEY, "units": []}, check=True)
    assert result["changed"] is False
    assert result["files"][str(tmp_path)]["type"] == "directory"
    assert KEY not in str(result)


def test_listings_name_and_describe_the_files_of_a_directory(pi: Path) -> None:
    write(pi, "/var/lib/rancher/k3s/server/manifests/pik3s/headlamp.yaml", "kind: A\n", 0o600)
    write(pi, "/var/lib/rancher/k3s/server/manifests/pik3s/team.yaml", "kind: B\n", 0o600)
    (pi / "var/lib/rancher/k3s/server/manifests/pik3s/sub").mkdir()
    state = read(pi, listings=["/var/lib/rancher/k3s/server/manifests/pik3s", "/nowhere"])
    assert state["listings"] == {"/var/lib/rancher/k3s/server/manifests/pik3s": ["headlamp.yaml", "team.yaml"],
                                 "/nowhere": []}
    info = state["files"]["/var/lib/rancher/k3s/server/manifests/pik3s/team.yaml"]
    assert (info["mode"], info["sha256"]) == ("0600", sha256_bytes(b"kind: B\n"))


def test_ip_addresses_from_ip_json() -> None:
    text = ('[{"ifindex":1,"ifname":"lo","addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8}]},'
            '{"ifindex":2,"ifname":"eth0","addr_info":[{"family":"inet","local":"192.168.1.21","prefixlen":24},'
            '{"family":"inet","local":"192.168.1.50","prefixlen":32}]},{"ifindex":3,"ifname":"wlan0","addr_info":[]}]')
    assert m.parse_ip_addresses(text) == [{"ifname": "eth0", "address": "192.168.1.21", "prefix": 24},
                                          {"ifname": "eth0", "address": "192.168.1.50", "prefix": 32}]
    assert m.parse_ip_addresses("not json") == []


def test_space_is_measured_where_the_path_is_or_will_be(pi: Path, small_disk: Path) -> None:
    root = pi  # the disk is mounted at /disk of the fake root
    assert small_disk == pi / "disk"
    (small_disk / "k3s").mkdir()
    state = read(root, space=["/disk/k3s", "/disk/k3s/not/yet", "/etc/rancher/k3s"])["space"]
    assert state["/disk/k3s"]["measured_on"] == "/disk/k3s"
    assert state["/disk/k3s/not/yet"]["measured_on"] == "/disk/k3s"
    assert state["/disk/k3s"]["size_bytes"] == 256 * 1024
    assert 0 < state["/disk/k3s"]["free_bytes"] <= 256 * 1024
    fill(small_disk)
    assert read(root, space=["/disk/k3s/not/yet"])["space"]["/disk/k3s/not/yet"]["free_bytes"] == 0
    assert state["/etc/rancher/k3s"]["measured_on"] == "/etc/rancher/k3s"  # the fake root's own filesystem
