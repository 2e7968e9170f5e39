"""Checks every scenario's deployed cluster must pass (testinfra, over the
same SSH as Ansible). A scenario's test module imports them by name; the
cluster's shape (servers, agents, arches, API endpoint) is read from the
scenario's inventory, so the checks hold for any topology."""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
EPHEMERAL = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
LAB = EPHEMERAL / "lab"
INVENTORY = EPHEMERAL / "inventory"
ASSETS = {"x86_64": ("k3s", "sha256sum-amd64.txt", "amd64"),
          "aarch64": ("k3s-arm64", "sha256sum-arm64.txt", "arm64"),
          "armv7l": ("k3s-armhf", "sha256sum-arm.txt", "arm")}
K8S_ARCH = {"amd64": "amd64", "arm64": "arm64", "armhf": "arm"}


def hostvars(host) -> dict[str, Any]:
    """The host's variables; testinfra may list a host twice in a group
    (Molecule's platforms and the lab inventory both place it)."""
    return host.ansible.get_variables()


def in_cluster(host) -> bool:
    """Whether the host is in k3s_cluster (a scenario may hold spare hosts); the checks skip others."""
    v = hostvars(host)
    if v["inventory_hostname"] not in v["groups"].get("k3s_cluster", []):
        pytest.skip(f"{v['inventory_hostname']} is not in k3s_cluster")
    return True


def is_server(host) -> bool:
    v = hostvars(host)
    return v["inventory_hostname"] in v["groups"]["server"]


def is_first_server(host) -> bool:
    v = hostvars(host)
    return v["inventory_hostname"] == v["groups"]["server"][0]


def release_sums(version: str, sumfile: str) -> dict[str, str]:
    text = (LAB / "mirror/k3s-io/k3s/releases/download" / version / sumfile).read_text()
    return {line.split()[1]: line.split()[0] for line in text.splitlines() if line.strip()}


def lab_hostvars() -> dict[str, dict[str, Any]]:
    """Every lab host's inventory variables, from the scenario's dynamic inventory."""
    out = subprocess.run([str(INVENTORY / "hosts"), "--list"], capture_output=True, text=True, check=True).stdout
    return json.loads(out)["_meta"]["hostvars"]


def api_get(kubeconfig: dict[str, Any], path: str, connect_to: str | None = None) -> Any:
    """GET ``path`` as the kubeconfig's user, verifying the server certificate
    with the kubeconfig's CA for the host name in its server URL. ``connect_to``
    is the address to dial when that name is not in the controller's DNS."""
    ctx_name = kubeconfig["current-context"]
    ctx = next(c["context"] for c in kubeconfig["contexts"] if c["name"] == ctx_name)
    cluster = next(c["cluster"] for c in kubeconfig["clusters"] if c["name"] == ctx["cluster"])
    user = next(u["user"] for u in kubeconfig["users"] if u["name"] == ctx["user"])
    url = cluster["server"]
    name, port = url.removeprefix("https://").rsplit(":", 1)
    tls = ssl.create_default_context(cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = Path(tmp, "c.pem"), Path(tmp, "k.pem")
        cert.write_bytes(base64.b64decode(user["client-certificate-data"]))
        key.write_bytes(base64.b64decode(user["client-key-data"]))
        tls.load_cert_chain(cert, key)
    conn = http.client.HTTPSConnection(name, int(port), context=tls, timeout=10)
    conn.sock = tls.wrap_socket(socket.create_connection((connect_to or name, int(port)), timeout=10),
                                server_hostname=name)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    assert resp.status == 200, body.decode(errors="replace")
    return json.loads(body)


def run_playbook(playbook: str, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    """Run a playbook of the checkout on this scenario's inventory, as an
    operator would (the checkout's ansible.cfg), results as one-line JSON."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_CALLBACK_RESULT_FORMAT="json",
               ANSIBLE_CALLBACK_FORMAT_PRETTY="false", ANSIBLE_FORCE_COLOR="0",
               PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}")
    return subprocess.run(["ansible-playbook", "-i", str(INVENTORY), playbook, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


def failure_messages(stdout: str, host: str = "") -> list[str]:
    """The msg of every failed/fatal result of ``host`` (any host when empty) in a run_playbook output."""
    out = []
    for line in stdout.splitlines():
        if re.match(rf"(failed|fatal): \[{re.escape(host) if host else '[^]]+'}[] ]", line) and "=> " in line:
            out.append(json.loads(line.split("=> ", 1)[1]).get("msg", ""))
    return out


def recap(stdout: str) -> dict[str, dict[str, int]]:
    """PLAY RECAP counters per host."""
    out = {}
    for m in re.finditer(r"^(\S+)\s+: ((?:\w+=\d+\s*)+)$", stdout, re.M):
        out[m.group(1)] = {k: int(v) for k, v in (kv.split("=") for kv in m.group(2).split())}
    return out


# ---------------------------------------------------------------- the checks

def test_binary_is_the_release_asset_for_this_cpu(host) -> None:
    in_cluster(host)
    asset, sumfile = ASSETS[host.system_info.arch][:2]
    version = host.check_output("/usr/local/bin/k3s --version").split()[2]
    assert version.startswith("v1.") and "+k3s" in version
    assert host.file("/usr/local/bin/k3s").sha256sum == release_sums(version, sumfile)[asset]
    assert host.file("/usr/local/bin/k3s").mode == 0o755
    assert host.file("/usr/local/bin/kubectl").linked_to == "/usr/local/bin/k3s"


def test_config_and_token_files(host) -> None:
    in_cluster(host)
    config = host.file("/etc/rancher/k3s/config.yaml")
    assert (config.user, config.mode) == ("root", 0o600)
    data = yaml.safe_load(host.check_output("sudo cat /etc/rancher/k3s/config.yaml"))
    assert data["token-file"] == "/etc/rancher/k3s/cluster-token"
    assert data["node-name"] == host.backend.get_hostname()
    assert "token" not in data  # the token lives only in the 0600 token file
    if not is_server(host):
        assert data["server"].startswith("https://") and data["server"].endswith(":6443")
    token = host.file("/etc/rancher/k3s/cluster-token")
    assert (token.user, token.mode) == ("root", 0o600)
    unit = "k3s" if is_server(host) else "k3s-agent"
    assert host.file(f"/etc/systemd/system/{unit}.service.env").mode == 0o600


def test_unit_enabled_and_active(host) -> None:
    in_cluster(host)
    unit = host.service("k3s" if is_server(host) else "k3s-agent")
    assert unit.is_enabled and unit.is_running
    # Its modprobe lines find br_netfilter and overlay (built in, in the lab): no FATAL lines in its log.
    journal = host.run(f"sudo journalctl -u {unit.name} --no-pager -o cat")
    assert journal.rc == 0 and "FATAL" not in journal.stdout
    script = "k3s-uninstall.sh" if is_server(host) else "k3s-agent-uninstall.sh"
    assert host.file(f"/usr/local/bin/{script}").mode == 0o755
    assert host.file("/usr/local/bin/k3s-killall.sh").mode == 0o755


def test_all_nodes_ready_from_the_server(host) -> None:
    in_cluster(host)
    if not is_server(host):
        return
    v = hostvars(host)
    nodes = json.loads(host.check_output("sudo k3s kubectl get nodes -o json"))["items"]
    ready = {n["metadata"]["name"]: n["status"]["conditions"][0]["status"] for n in nodes}
    assert ready == {h: "True" for h in v["groups"]["k3s_cluster"]}
    inv = lab_hostvars()
    archs = {n["metadata"]["name"]: n["status"]["nodeInfo"]["architecture"] for n in nodes}
    assert archs == {h: K8S_ARCH[inv[h]["pik3s_lab_arch"]] for h in set(v["groups"]["k3s_cluster"])}


def test_login_user_has_kubectl_on_servers(host) -> None:
    in_cluster(host)
    if not is_server(host):
        return
    kubeconfig = host.file("/home/pi/.kube/config")
    assert (kubeconfig.user, kubeconfig.mode) == ("pi", 0o600)
    # A plain SSH command as pi (Debian's bash reads ~/.bashrc for it), no sudo.
    out = host.check_output("kubectl get nodes -o name")
    assert f"node/{host.backend.get_hostname()}" in out.split()


def test_fetched_kubeconfig_reaches_the_api_with_its_own_credentials(host) -> None:
    in_cluster(host)
    if not is_first_server(host):
        return
    v = hostvars(host)
    kubeconfig = INVENTORY / ".kube" / f"{v.get('k3s_server_cluster_name', 'k3s')}.yaml"
    assert oct(kubeconfig.stat().st_mode & 0o777) == "0o600"
    assert oct(kubeconfig.parent.stat().st_mode & 0o777) == "0o700"
    doc = yaml.safe_load(kubeconfig.read_text())
    # testinfra hands back variables untemplated: resolve "{{ var }}" references.
    endpoint = re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: str(v[m.group(1)]), v.get("k3s_api_endpoint") or "")
    endpoint = endpoint or v["ansible_host"]
    assert doc["current-context"] == v.get("k3s_server_cluster_name", "k3s")
    assert doc["clusters"][0]["cluster"]["server"] == f"https://{endpoint}:6443"
    # Dial the first server (the lab's DNS for the endpoint name is its hosts'
    # /etc/hosts), verify the certificate for the endpoint name, authenticate
    # with the kubeconfig's client certificate.
    nodes = api_get(doc, "/api/v1/nodes", connect_to=v["ansible_host"])["items"]
    assert sorted(n["metadata"]["name"] for n in nodes) == sorted(set(v["groups"]["k3s_cluster"]))


def test_no_swap_and_cgroup_flags_on_pis(host) -> None:
    in_cluster(host)
    assert host.file("/proc/swaps").content_string.count("\n") == 1
    if host.file("/etc/rpi-issue").exists:
        assert not host.service("dphys-swapfile").is_enabled
        assert not host.file("/var/swap").exists
        cmdline = host.file("/boot/firmware/cmdline.txt").content_string
        assert cmdline.count("\n") == 1
        assert {"cgroup_memory=1", "cgroup_enable=memory"} <= set(cmdline.split())
        # Written, rebooted, active: the running kernel was booted with the flags and has the memory cgroup.
        assert {"cgroup_memory=1", "cgroup_enable=memory"} <= set(host.file("/proc/cmdline").content_string.split())
    controllers = host.file("/sys/fs/cgroup/cgroup.controllers")
    if controllers.exists:
        assert "memory" in controllers.content_string.split()
    else:
        cgroups = host.file("/proc/cgroups").content_string.splitlines()
        memory = [ln.split() for ln in cgroups if ln.startswith("memory")]
        assert memory and memory[0][3] == "1"
