"""Every input the inventory check rejects, with the message the operator sees.

The hosts are local-connection stand-ins and only playbooks/preflight.yml
runs, which changes nothing on any host.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ansible_env, run_ansible

HASH = "ab" * 32


def _inventory(tmp_path: Path, servers: list[str], agents: list[str], hostvars: dict[str, dict[str, Any]],
               cluster_vars: dict[str, Any]) -> Path:
    def hosts(names: list[str]) -> dict[str, Any]:
        return {n: {"ansible_connection": "local", "ansible_host": f"10.99.0.{i + 1}",
                    "ansible_python_interpreter": "{{ ansible_playbook_python }}", **hostvars.get(n, {})}
                for i, n in enumerate(names, start=len(servers) if names is agents else 0)}
    inv = {"k3s_cluster": {"children": {"server": {"hosts": hosts(servers)}, "agent": {"hosts": hosts(agents)}},
                           "vars": cluster_vars}}
    path = tmp_path / "hosts.yml"
    path.write_text(yaml.safe_dump(inv))
    return path


def _offline(inventory: Path) -> tuple[int, list[str]]:
    """`pik3s inventory validate --output json`: exit code and problems, no host contacted."""
    res = subprocess.run([sys.executable, "-m", "pik3s.cli", "inventory", "validate", "-i", str(inventory),
                          "--output", "json"], capture_output=True, text=True, env=ansible_env(), check=False)
    assert "topsecret" not in res.stdout + res.stderr
    return res.returncode, json.loads(res.stdout)["problems"] if res.stdout else [res.stderr]


def _preflight(inventory: Path, *extra: str) -> tuple[int, str]:
    """Run the check; return its exit code and the failure messages (read as data, not as formatted text)."""
    res = run_ansible("ansible-playbook", "-i", str(inventory), "playbooks/preflight.yml", *extra, timeout=120,
                      env={"ANSIBLE_CALLBACK_RESULT_FORMAT": "json", "ANSIBLE_CALLBACK_FORMAT_PRETTY": "false"})
    assert "topsecret" not in res.stdout + res.stderr
    messages = [json.loads(m.group(1)).get("msg", "")
                for m in re.finditer(r"^fatal: \[\S+\]: FAILED! => (\{.*\})$", res.stdout, re.M)]
    return res.returncode, "\n".join(messages) if messages else res.stdout + res.stderr


def test_a_good_inventory_passes(tmp_path: Path) -> None:
    inventory = _inventory(tmp_path, ["s1"], ["a1", "a2"], {}, {"k3s_token": f"K10{HASH}::server:pw"})
    rc, out = _preflight(inventory)
    assert rc == 0, out
    assert _offline(inventory) == (0, [])


CASES = [
    # (servers, agents, hostvars, cluster vars, message)
    ([], ["a1"], {}, {}, "no hosts in the 'server' group: put at least one server there"),
    (["s1", "s2"], ["a1"], {}, {},
     "2 servers (s1, s2): embedded etcd needs an odd number (1, 3, 5, ...) to keep quorum"),
    (["s1"], ["a1", "a2"], {"a2": {"k3s_node_name": "a1"}}, {},
     "node name 'a1' is used by a1 and a2: K3s refuses a second node with a taken name; set k3s_node_name"),
    (["s1"], ["a1", "a2"], {"a2": {"ansible_host": "10.99.0.2"}}, {}, "address 10.99.0.2 is used by a1 and a2"),
    (["s1"], ["a1"], {}, {"k3s_version": "1.31.4"}, "k3s_version '1.31.4' is not a release name like v1.31.4+k3s1"),
    (["s1"], ["a1"], {}, {"k3s_version": "v1.31.4-k3s1"}, "is not a release name"),
    (["s1"], ["a1"], {}, {"k3s_token": "K10abc::server:topsecret"},
     "k3s_token: malformed secure K3s token: the CA hash after K10 must be 64 lowercase hex digits"),
    (["s1"], ["a1"], {}, {"k3s_token": "user:topsecret"},
     "k3s_token: malformed K3s token: a short token cannot contain"),
    (["s1"], ["a1"], {}, {"k3s_server_config": {"token": "x"}},
     "k3s_server_config sets 'token', which pik3s manages: use k3s_token instead"),
    (["s1"], ["a1"], {}, {"k3s_agent_config": {"server": "https://x:6443"}},
     "k3s_agent_config sets 'server', which pik3s manages: use k3s_api_endpoint instead"),
    (["s1"], ["a1"], {}, {"k3s_cluster_config": {"node-name": "x"}},
     "k3s_cluster_config sets 'node-name', which pik3s manages: use k3s_node_name instead"),
    (["s1"], ["a1"], {}, {"k3s_server_config": {"cluster-init": True}},
     "k3s_server_config sets 'cluster-init', which pik3s manages"),
    (["s1"], ["a1"], {}, {"k3s_api_endpoint": "https://k3s.example:6443"},
     "k3s_api_endpoint 'https://k3s.example:6443' is not an IP address or DNS name (no scheme, no port"),
]


@pytest.mark.parametrize(("servers", "agents", "hostvars", "cluster_vars", "message"), CASES)
def test_rejected_inputs(tmp_path: Path, servers: list[str], agents: list[str], hostvars: dict[str, Any],
                         cluster_vars: dict[str, Any], message: str) -> None:
    inventory = _inventory(tmp_path, servers, agents, hostvars, cluster_vars)
    rc, out = _preflight(inventory)
    assert rc == 2, out
    assert message in out
    # The driver's offline validation applies the same rules: the same messages, exit code 4.
    offline_rc, problems = _offline(inventory)
    assert offline_rc == 4
    assert " | ".join(problems) == out


def test_all_problems_reported_at_once(tmp_path: Path) -> None:
    rc, out = _preflight(_inventory(tmp_path, ["s1", "s2"], ["a1"], {},
                                    {"k3s_version": "latest", "k3s_agent_config": {"token-file": "/x"}}))
    assert rc == 2
    for fragment in ("2 servers (s1, s2)", "k3s_version 'latest'", "k3s_agent_config sets 'token-file'"):
        assert fragment in out
