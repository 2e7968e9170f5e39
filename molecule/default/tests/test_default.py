"""Verify a deployed cluster on the lab hosts (testinfra, over the same SSH as Ansible)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

EPHEMERAL = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
LAB = EPHEMERAL / "lab"
ASSETS = {"x86_64": ("k3s", "sha256sum-amd64.txt"), "aarch64": ("k3s-arm64", "sha256sum-arm64.txt"),
          "armv7l": ("k3s-armhf", "sha256sum-arm.txt")}
SERVERS = {"srv"}


def _role(host) -> str:
    return "server" if host.backend.get_hostname() in SERVERS else "agent"


def test_binary_is_the_release_asset_for_this_cpu(host) -> None:
    machine = host.system_info.arch
    asset, sumfile = ASSETS[machine]
    version = host.check_output("/usr/local/bin/k3s --version").split()[2]
    sums = (LAB / "mirror/k3s-io/k3s/releases/download" / version / sumfile).read_text()
    expected = next(line.split()[0] for line in sums.splitlines() if line.split()[1] == asset)
    assert host.file("/usr/local/bin/k3s").sha256sum == expected
    assert host.file("/usr/local/bin/k3s").mode == 0o755
    assert host.file("/usr/local/bin/kubectl").linked_to == "/usr/local/bin/k3s"


def test_config_and_token_files(host) -> None:
    config = host.file("/etc/rancher/k3s/config.yaml")
    assert (config.user, config.mode) == ("root", 0o600)
    data = yaml.safe_load(host.check_output("sudo cat /etc/rancher/k3s/config.yaml"))
    assert data["token-file"] == "/etc/rancher/k3s/cluster-token"
    assert data["node-name"] == host.backend.get_hostname()
    assert "token" not in data  # the token lives only in the 0600 token file
    if _role(host) == "agent":
        assert data["server"].startswith("https://") and data["server"].endswith(":6443")
    token = host.file("/etc/rancher/k3s/cluster-token")
    assert (token.user, token.mode) == ("root", 0o600)
    unit = "k3s" if _role(host) == "server" else "k3s-agent"
    assert host.file(f"/etc/systemd/system/{unit}.service.env").mode == 0o600


def test_unit_enabled_and_active(host) -> None:
    unit = host.service("k3s" if _role(host) == "server" else "k3s-agent")
    assert unit.is_enabled and unit.is_running
    script = "k3s-uninstall.sh" if _role(host) == "server" else "k3s-agent-uninstall.sh"
    assert host.file(f"/usr/local/bin/{script}").mode == 0o755
    assert host.file("/usr/local/bin/k3s-killall.sh").mode == 0o755


def test_all_nodes_ready_from_the_server(host) -> None:
    if _role(host) != "server":
        return
    nodes = json.loads(host.check_output("sudo k3s kubectl get nodes -o json"))["items"]
    ready = {n["metadata"]["name"]: n["status"]["conditions"][0]["status"] for n in nodes}
    assert ready == {"srv": "True", "agt1": "True", "agt2": "True", "pi4": "True"}
    archs = {n["metadata"]["name"]: n["status"]["nodeInfo"]["architecture"] for n in nodes}
    assert archs["pi4"] == "arm64" and archs["srv"] == "amd64"


def test_fetched_kubeconfig_reaches_the_api_with_its_own_credentials(host) -> None:
    if _role(host) != "server":
        return
    kubeconfig = EPHEMERAL / "inventory" / ".kube" / "k3s.yaml"
    assert oct(kubeconfig.stat().st_mode & 0o777) == "0o600"
    assert oct(kubeconfig.parent.stat().st_mode & 0o777) == "0o700"
    doc = yaml.safe_load(kubeconfig.read_text())
    assert doc["current-context"] == "k3s"
    assert doc["clusters"][0]["cluster"]["server"] == f"https://{host.ansible.get_variables()['ansible_host']}:6443"
    # The simulator's kubectl verifies the server certificate against the CA in
    # the kubeconfig and authenticates with its client certificate.
    kubectl = Path(__file__).resolve().parents[3] / "src/pik3s/lab/k3s_simulator.py"
    out = subprocess.run([sys.executable, str(kubectl), "kubectl", "--kubeconfig", str(kubeconfig),
                          "get", "nodes", "-o", "name"], capture_output=True, text=True, check=True).stdout
    assert sorted(out.split()) == ["node/agt1", "node/agt2", "node/pi4", "node/srv"]


def test_no_swap_and_cgroup_flags_on_pis(host) -> None:
    assert host.file("/proc/swaps").content_string.count("\n") == 1
    if host.file("/etc/rpi-issue").exists:
        assert not host.service("dphys-swapfile").is_enabled
        assert not host.file("/var/swap").exists
        cmdline = host.file("/boot/firmware/cmdline.txt").content_string
        assert cmdline.count("\n") == 1
        assert {"cgroup_memory=1", "cgroup_enable=memory"} <= set(cmdline.split())
