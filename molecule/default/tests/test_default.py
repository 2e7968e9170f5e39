"""default: 1 server + 3 agents, one of them an emulated arm64 Pi 4."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared" / "tests"))
pytest.register_assert_rewrite("verify_cluster")

from verify_cluster import (  # noqa: E402,F401 - the shared checks, collected here
    test_all_nodes_ready_from_the_server,
    test_binary_is_the_release_asset_for_this_cpu,
    test_config_and_token_files,
    test_fetched_kubeconfig_reaches_the_api_with_its_own_credentials,
    test_login_user_has_kubectl_on_servers,
    test_no_swap_and_cgroup_flags_on_pis,
    test_unit_enabled_and_active,
)


def test_the_mixed_arch_topology(host) -> None:
    v = host.ansible.get_variables()
    assert v["groups"]["server"] == ["srv"]
    assert sorted(v["groups"]["agent"]) == ["agt1", "agt2", "pi4"]
    if v["inventory_hostname"] == "pi4":
        assert host.system_info.arch == "aarch64"
