"""airgap: no mirror, no route out; the pinned release comes from a directory
on the controller, checksums still verified."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared" / "tests"))
pytest.register_assert_rewrite("verify_cluster")

from verify_cluster import (  # noqa: E402,F401 - the shared checks, collected here
    LAB,
    failure_messages,
    release_sums,
    run_playbook,
    test_all_nodes_ready_from_the_server,
    test_binary_is_the_release_asset_for_this_cpu,
    test_config_and_token_files,
    test_fetched_kubeconfig_reaches_the_api_with_its_own_credentials,
    test_login_user_has_kubectl_on_servers,
    test_no_swap_and_cgroup_flags_on_pis,
    test_unit_enabled_and_active,
)

VERSION = "v1.30.8+k3s1"
BUNDLE = LAB / "mirror/k3s-io/k3s/releases/download" / VERSION


def test_the_lab_network_has_no_way_out_and_no_mirror(host) -> None:
    network = json.loads(subprocess.run(["docker", "network", "inspect", "pik3s-mol-airgap"], capture_output=True,
                                        text=True, check=True).stdout)[0]
    assert network["Internal"] is True  # Docker routes nothing from it to the outside
    assert not [c for c in network["Containers"].values() if c["Name"].endswith("-mirror")]
    mirror = host.ansible.get_variables()["pik3s_lab_release_url"].split("/")[2]
    ip, port = mirror.split(":")
    probe = host.run(f"timeout 5 python3 -c 'import socket; socket.create_connection((\"{ip}\", {port}), 3)'")
    assert probe.rc != 0


def test_pinned_version_and_verified_image_tarball(host) -> None:
    assert host.check_output("/usr/local/bin/k3s --version").split()[2] == VERSION
    tarball = host.file("/var/lib/rancher/k3s/agent/images/k3s-airgap-images-amd64.tar.gz")
    assert tarball.exists and tarball.mode == 0o644
    assert tarball.sha256sum == release_sums(VERSION, "sha256sum-amd64.txt")["k3s-airgap-images-amd64.tar.gz"]


def test_a_checksum_mismatch_stops_the_host_and_keeps_its_binary(host, tmp_path_factory) -> None:
    if host.backend.get_hostname() != "srv":
        return
    sha_before = host.file("/usr/local/bin/k3s").sha256sum
    started = host.check_output("systemctl show -p ActiveEnterTimestamp k3s")
    bad = tmp_path_factory.mktemp("bundle") / VERSION
    shutil.copytree(BUNDLE, bad)
    (bad / "k3s").write_bytes((bad / "k3s").read_bytes() + b"\n# tampered\n")

    run = run_playbook("site.yml", "-e", f"k3s_airgap_dir={bad}")
    assert run.returncode != 0
    expected = (f"k3s {VERSION} did not match the release checksum (sha256sum-amd64.txt says "
                f"{release_sums(VERSION, 'sha256sum-amd64.txt')['k3s']}). Nothing was installed on srv; "
                f"its previous K3s binary, if any, is untouched. Check k3s_airgap_dir {bad}.")
    assert expected in failure_messages(run.stdout, "srv"), run.stdout[-4000:]
    assert host.file("/usr/local/bin/k3s").sha256sum == sha_before
    assert host.check_output("systemctl show -p ActiveEnterTimestamp k3s") == started  # not restarted
    assert host.service("k3s").is_running


def test_charts_come_from_the_controller_as_chart_content(host) -> None:
    """No chart repository is reachable: the add-on's and the user's charts went in as chartContent (the
    archives in the air-gap directory), and K3s's helm controller installed them from it."""
    if not host.ansible.get_variables()["inventory_hostname"] == "srv":
        return
    import base64
    for name, chart in (("headlamp", "headlamp-0.43.0.tgz"), ("hello", "hello-1.0.0.tgz")):
        doc = json.loads(host.check_output(f"sudo k3s kubectl -n kube-system get helmchart {name} -o json"))
        assert "repo" not in doc["spec"]
        assert base64.b64decode(doc["spec"]["chartContent"]) == (BUNDLE / "charts" / chart).read_bytes()
        job = json.loads(host.check_output(f"sudo k3s kubectl -n kube-system get job helm-install-{name} -o json"))
        assert job["status"].get("succeeded") == 1, job["status"]
