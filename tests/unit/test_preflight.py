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
# A distinctive secret in every inventory: it must appear in no output, at any verbosity.
SECRET = "topsecret-5a1e7c0ffee"
TOKEN = f"K10{HASH}::server:{SECRET}"


def _hosts(names: list[str], first: int, hostvars: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {n: {"ansible_connection": "local", "ansible_host": f"10.99.0.{i + 1}",
                "ansible_python_interpreter": "{{ ansible_playbook_python }}", **hostvars.get(n, {})}
            for i, n in enumerate(names, start=first)}


def _inventory(tmp_path: Path, servers: list[str], agents: list[str], hostvars: dict[str, dict[str, Any]],
               cluster_vars: dict[str, Any], *, parent: bool = True) -> Path:
    """The k3s_cluster/server/agent inventory (``parent=False``: server and agent at the top level, a
    mistake), every host a local-connection stand-in, the secret token unless the case sets one."""
    groups = {"server": {"hosts": _hosts(servers, 0, hostvars)},
              "agent": {"hosts": _hosts(agents, len(servers), hostvars)}}
    cluster_vars = {"k3s_token": TOKEN, **cluster_vars}
    inv: dict[str, Any] = ({"k3s_cluster": {"children": groups, "vars": cluster_vars}} if parent
                           else {**groups, "all": {"vars": cluster_vars}})
    path = tmp_path / "hosts.yml"
    path.write_text(yaml.safe_dump(inv))
    return path


def _offline(inventory: Path) -> tuple[int, list[str]]:
    """`pik3s inventory validate --output json`: exit code and problems, no host contacted."""
    res = subprocess.run([sys.executable, "-m", "pik3s.cli", "inventory", "validate", "-i", str(inventory),
                          "--output", "json"], capture_output=True, text=True, env=ansible_env(), check=False)
    assert SECRET not in res.stdout + res.stderr
    assert "Traceback" not in res.stdout + res.stderr
    return res.returncode, json.loads(res.stdout)["problems"] if res.stdout else [res.stderr]


def _preflight(inventory: Path, *extra: str) -> tuple[int, str]:
    """Run the check; return its exit code and the failure messages (read as data, not as formatted text)."""
    res = run_ansible("ansible-playbook", "-i", str(inventory), "playbooks/preflight.yml", *extra, timeout=120,
                      env={"ANSIBLE_CALLBACK_RESULT_FORMAT": "json", "ANSIBLE_CALLBACK_FORMAT_PRETTY": "false"})
    assert SECRET not in res.stdout + res.stderr
    assert "Traceback" not in res.stdout + res.stderr
    messages = [json.loads(m.group(1)).get("msg", "")
                for m in re.finditer(r"^fatal: \[\S+\]: FAILED! => (\{.*\})$", res.stdout, re.M)]
    return res.returncode, "\n".join(messages) if messages else res.stdout + res.stderr


def test_a_good_inventory_passes(tmp_path: Path) -> None:
    inventory = _inventory(tmp_path, ["s1"], ["a1", "a2"], {}, {})
    rc, out = _preflight(inventory)
    assert rc == 0, out
    assert _offline(inventory) == (0, [])


def test_agents_alone_join_a_running_cluster_given_its_address_and_token(tmp_path: Path) -> None:
    """An inventory of agents only (an AWX job slice of agents, agents added from another controller)."""
    inventory = _inventory(tmp_path, [], ["a1", "a2"], {}, {"k3s_api_endpoint": "192.168.1.10"})
    rc, out = _preflight(inventory)
    assert rc == 0, out
    assert _offline(inventory) == (0, [])


AIRGAP_MISSING = "/nonexistent/pik3s-airgap"

CASES = [
    # (servers, agents, hostvars, cluster vars, message): the classes of mistakes, several cases each.
    # The groups.
    ([], ["a1"], {}, {}, "no hosts in the 'server' group: put at least one server there"),
    # agents alone need both the running cluster's address and its token
    ([], ["a1"], {}, {"k3s_api_endpoint": "192.168.1.10", "k3s_token": ""}, "to join agents to a running "
     "cluster whose servers are not in this inventory, set k3s_api_endpoint and k3s_token"),
    (["s1", "s2"], ["a1"], {}, {},
     "2 servers (s1, s2): embedded etcd needs an odd number (1, 3, 5, ...) to keep quorum"),
    # Types, checked on every host's own values, from the argument specs.
    (["s1"], ["a1"], {}, {"k3s_cluster_config": 5}, "k3s_cluster_config must be a mapping, not the integer 5"),
    (["s1"], ["a1"], {}, {"k3s_server_config": "disable: traefik"},
     "k3s_server_config must be a mapping, not the string 'disable: traefik' (write it as a YAML mapping"),
    (["s1"], ["a1"], {"a1": {"k3s_agent_config": ["node-label=x"]}}, {},
     "a1: k3s_agent_config must be a mapping, not a list"),
    (["s1"], ["a1"], {}, {"k3s_api_port": "https"}, "k3s_api_port must be an integer, not the string 'https'"),
    (["s1"], ["a1"], {}, {"k3s_api_port": 70000}, "k3s_api_port is 70000: it must be between 1 and 65535"),
    (["s1"], ["a1"], {}, {"k3s_ready_timeout": 0}, "k3s_ready_timeout is 0: it must be at least 1"),
    (["s1"], ["a1"], {}, {"k3s_upgrade_drain": "maybe"}, "k3s_upgrade_drain must be true or false, not the string"),
    (["s1"], ["a1"], {}, {"k3s_version": 1.31}, "k3s_version must be a string, not the number 1.31 (quote it in YAML)"),
    (["s1"], ["a1"], {}, {"prepare_modules": ["br_netfilter", 7]}, "prepare_modules: every item must be a string"),
    (["s1"], ["a1"], {}, {"k3s_agent_batch": 0}, "k3s_agent_batch is the integer 0: a batch is a whole number"),
    (["s1"], ["a1"], {}, {"k3s_agent_batch": -2}, "k3s_agent_batch is the integer -2: a batch is a whole number"),
    (["s1"], ["a1"], {}, {"k3s_upgrade_batch": "150%"}, "k3s_upgrade_batch is '150%': a batch is a whole number"),
    (["s1"], ["a1"], {}, {"k3s_agent_batch": 1.5}, "k3s_agent_batch is the number 1.5: a batch is a whole number"),
    (["s1"], ["a1"], {}, {"k3s_token": 1234567890123456789},
     "k3s_token must be a string, not a value of another type"),
    # One value for the whole cluster.
    (["s1"], ["a1", "a2"], {"a2": {"k3s_version": "v1.30.8+k3s1"}}, {"k3s_version": "v1.31.4+k3s1"},
     "k3s_version differs between hosts (s1, a1: 'v1.31.4+k3s1'; a2: 'v1.30.8+k3s1'): it is one setting"),
    (["s1"], ["a1"], {"a1": {"k3s_token": f"K10{HASH}::server:another-secret-value"}}, {},
     "k3s_token differs between hosts (s1 | a1): it is one setting for the whole cluster"),
    # Node names and addresses.
    (["s1"], ["a1", "a2"], {"a2": {"k3s_node_name": "a1"}}, {},
     "node name 'a1' is used by a1 and a2: K3s refuses a second node with a taken name; set k3s_node_name"),
    (["s1"], ["a1"], {"a1": {"k3s_node_name": "Pi4-Worker"}}, {},
     "a1: node name 'Pi4-Worker' has upper-case letters: Kubernetes node names are lower case and K3s would "
     "register it as 'pi4-worker'; set k3s_node_name: pi4-worker"),
    (["s1"], ["a1", "a2"], {"a1": {"k3s_node_name": "pi"}, "a2": {"k3s_node_name": "PI"}}, {},
     "node name 'PI' is used by a1 and a2 ('pi' and 'PI' are one name once K3s lower-cases them)"),
    (["s1"], ["a1"], {"a1": {"k3s_node_name": "pi_worker"}}, {},
     "a1: node name 'pi_worker' is not a valid Kubernetes node name"),
    (["s1"], ["a1"], {"a1": {"k3s_node_name": "a" * 64}}, {}, "is not a valid Kubernetes node name"),
    (["s1"], ["a1"], {"a1": {"k3s_node_name": "näs"}}, {}, "a1: node name 'näs' is not a valid Kubernetes node name"),
    (["s1"], ["a1"], {"a1": {"k3s_node_name": "a1\n"}}, {},
     "a1: k3s_node_name 'a1\\n' has leading or trailing whitespace: remove it"),
    (["s1"], ["a1", "a2"], {"a2": {"ansible_host": "10.99.0.2"}}, {}, "address 10.99.0.2 is used by a1 and a2"),
    (["s1"], ["a1"], {"a1": {"ansible_host": "fd00::2"}}, {},
     "a1: ansible_host fd00::2: IPv6 is not supported by pik3s yet"),
    (["s1"], ["a1"], {"a1": {"k3s_node_ip": "10.99.0.x"}}, {}, "a1: k3s_node_ip '10.99.0.x' is not an IPv4 address"),
    # Versions, channels, endpoints, whitespace.
    (["s1"], ["a1"], {}, {"k3s_version": "1.31.4"}, "k3s_version '1.31.4' is not a release name like v1.31.4+k3s1"),
    (["s1"], ["a1"], {}, {"k3s_version": "v1.31.4-k3s1"}, "is not a release name"),
    (["s1"], ["a1"], {}, {"k3s_version": "v1.31.4+k3s1\n"}, "k3s_version 'v1.31.4+k3s1\\n' is not a release name"),
    (["s1"], ["a1"], {}, {"k3s_channel": "stabel"}, "k3s_channel 'stabel' is not a K3s release channel: stable, "
     "latest, testing or a minor version like v1.31 (or pin k3s_version)"),
    (["s1"], ["a1"], {}, {"k3s_api_endpoint": "https://k3s.example:6443"},
     "k3s_api_endpoint 'https://k3s.example:6443' is not an IP address or DNS name (no scheme, no port"),
    (["s1"], ["a1"], {}, {"k3s_api_endpoint": "k3s.example\n"},
     "k3s_api_endpoint 'k3s.example\\n' has leading or trailing whitespace: remove it"),
    (["s1"], ["a1"], {}, {"k3s_api_endpoint": "2001:db8::10"}, "k3s_api_endpoint 2001:db8::10: IPv6 is not supported"),
    # Tokens: malformed, too short (never quoted).
    (["s1"], ["a1"], {}, {"k3s_token": "K10abc::server:topsecret-5a1e7c0ffee"},
     "k3s_token: malformed secure K3s token: the CA hash after K10 must be 64 lowercase hex digits"),
    (["s1"], ["a1"], {}, {"k3s_token": "user:topsecret-5a1e7c0ffee"},
     "k3s_token: malformed K3s token: a short token cannot contain"),
    (["s1"], ["a1"], {}, {"k3s_token": "abc"}, "k3s_token: too short to be secret (it has 3 characters, 16 at least)"),
    (["s1"], ["a1"], {}, {"k3s_token": f"K10{HASH}::server:abc"},
     "k3s_token: too short to be secret (its password part has 3 characters, 16 at least)"),
    # Keys pik3s owns.
    (["s1"], ["a1"], {}, {"k3s_server_config": {"token": "x"}},
     "k3s_server_config sets 'token', which pik3s manages: use k3s_token instead"),
    (["s1"], ["a1"], {}, {"k3s_agent_config": {"server": "https://x:6443"}},
     "k3s_agent_config sets 'server', which pik3s manages: use k3s_api_endpoint instead"),
    (["s1"], ["a1"], {}, {"k3s_cluster_config": {"node-name": "x"}},
     "k3s_cluster_config sets 'node-name', which pik3s manages: use k3s_node_name instead"),
    (["s1"], ["a1"], {}, {"k3s_server_config": {"cluster-init": True}},
     "k3s_server_config sets 'cluster-init', which pik3s manages"),
    # What would otherwise fail late: after prepare changed the hosts, or at the second server's join.
    (["s1"], ["a1"], {}, {"k3s_airgap_dir": AIRGAP_MISSING, "k3s_version": "v1.31.4+k3s1"},
     f"k3s_airgap_dir {AIRGAP_MISSING}: no such directory on the controller"),
    (["s1"], ["a1"], {}, {"k3s_airgap_dir": "/tmp"},
     "k3s_airgap_dir is set (/tmp) but k3s_version is empty: air-gap mode installs the release in that directory"),
    (["s1", "s2", "s3"], ["a1"], {"s2": {"k3s_server_config": {"cluster-cidr": "10.52.0.0/16"}}}, {},
     "'cluster-cidr' differs between servers (s1, s3: None; s2: '10.52.0.0/16'): K3s refuses a server whose "
     "value differs (critical configuration value mismatch); set it once, in k3s_cluster_config"),
    (["s1", "s2", "s3"], ["a1"], {"s3": {"k3s_server_config": {"disable": ["traefik"]}}}, {},
     "'disable' differs between servers"),
    # Manifests, charts and add-ons (K3s's auto-deploy directory).
    (["s1"], ["a1"], {}, {"k3s_server_manifests": [{"name": "My_App", "content": "x: 1"}]},
     "k3s_server_manifests[0] name 'My_App' is not a valid Kubernetes object name: K3s names the manifest's "
     "Addon after it"),
    (["s1"], ["a1"], {}, {"k3s_server_manifests": [{"name": "traefik", "content": "x: 1"}]},
     "k3s_server_manifests[0] name 'traefik' is the name of one of K3s's packaged components"),
    (["s1"], ["a1"], {}, {"k3s_server_manifests": [{"name": "app", "content": "x: 1", "src": "app.yaml"}]},
     "k3s_server_manifests[0] ('app') needs exactly one of content, src or template (it has content, src)"),
    (["s1"], ["a1"], {}, {"k3s_server_manifests": [{"name": "app", "contents": "x: 1"}]},
     "k3s_server_manifests[0]: unknown key 'contents' (known: name, content, src, template)"),
    (["s1"], ["a1"], {}, {"k3s_server_manifests": [{"name": "headlamp", "content": "x: 1"}],
                          "k3s_addons": ["headlamp"]},
     "k3s_addons[0] and k3s_server_manifests[0] both use the name 'headlamp'"),
    (["s1"], ["a1"], {}, {"k3s_helm_charts": [{"name": "web", "chart": "nginx", "repo": "charts.example.com"}]},
     "k3s_helm_charts[0] repo 'charts.example.com' must be an http(s) URL of a Helm chart repository"),
    (["s1"], ["a1"], {}, {"k3s_helm_charts": [{"name": "web", "repo": "https://charts.example.com"}]},
     "k3s_helm_charts[0] ('web') needs chart: the chart's name in its repository"),
    (["s1"], ["a1"], {}, {"k3s_helm_charts": [{"name": "web", "chart": "nginx", "repo": "https://c.example",
                                               "version": 1.2}]},
     "k3s_helm_charts[0] version must be a string (quote it in YAML"),
    (["s1"], ["a1"], {}, {"k3s_addons": ["grafana"]},
     "k3s_addons[0] 'grafana' is not a pik3s add-on: choose from dashboard, headlamp"),
    (["s1"], ["a1"], {}, {"k3s_addon_overrides": {"headlamp": {"tag": "x"}}},
     "k3s_addon_overrides.headlamp: unknown key 'tag' (known: version, repo, values, namespace)"),
    (["s1"], ["a1"], {}, {"k3s_addon_access": "root"}, "k3s_addon_access 'root' must be read-only"),
    (["s1", "s2", "s3"], ["a1"], {"s2": {"k3s_addons": ["headlamp"]}}, {},
     "k3s_addons differs between servers (s1, s3 | s2): every server must hold the same auto-deploy manifests"),
    # The API's virtual IP (kube-vip).
    (["s1"], ["a1"], {}, {"k3s_addons": ["kube-vip"]},
     "k3s_addons has kube-vip but k3s_api_vip is empty: set the virtual IP the API should answer at"),
    (["s1"], ["a1"], {}, {"k3s_api_vip": "10.99.0.50"},
     "k3s_api_vip is 10.99.0.50 but kube-vip is not in k3s_addons: nothing would answer at that address"),
    (["s1"], ["a1"], {}, {"k3s_api_vip": "k3s.example", "k3s_addons": ["kube-vip"]},
     "k3s_api_vip 'k3s.example' is not an IP address: a virtual IP is an IPv4 address"),
    (["s1"], ["a1"], {}, {"k3s_api_vip": "10.99.0.2", "k3s_addons": ["kube-vip"]},
     "k3s_api_vip 10.99.0.2 is the address of a1: a virtual IP must be an address no host has"),
    (["s1"], ["a1"], {}, {"k3s_addon_overrides": {"kube-vip": {"repo": "https://x.example/"}}},
     "k3s_addon_overrides.kube-vip: unknown key 'repo' (known: version)"),
    # The external datastore.
    (["s1", "s2"], ["a1"], {}, {},
     "2 servers (s1, s2): embedded etcd needs an odd number (1, 3, 5, ...) to keep quorum; add or remove one (or "
     "put the servers on an external datastore, k3s_datastore_endpoint, where any number share it)"),
    (["s1"], ["a1"], {}, {"k3s_cluster_config": {"datastore-endpoint": "https://etcd:2379"}},
     "k3s_cluster_config sets 'datastore-endpoint', which pik3s manages: use k3s_datastore_endpoint instead"),
    (["s1"], ["a1"], {}, {"k3s_datastore_endpoint": "etcd.lab:2379"},
     "k3s_datastore_endpoint 'etcd.lab:2379' is not a datastore K3s takes: an etcd (https://host:2379, several "
     "comma-separated), mysql://user:password@tcp(host:3306)/database or postgres://user:password@host:5432/database"),
    (["s1"], ["a1"], {}, {"k3s_datastore_endpoint": "https://etcd1:2379,https://etcd 2:2379"},
     "k3s_datastore_endpoint: 'https://etcd 2:2379' is not an etcd endpoint like https://etcd1.lab:2379"),
    (["s1"], ["a1"], {}, {"k3s_datastore_endpoint": "mysql://k3s:topsecret-5a1e7c0ffee@db:3306/k3s"},
     "k3s_datastore_endpoint 'mysql://k3s:********@db:3306/k3s': a MySQL endpoint reads "
     "mysql://user:password@tcp(host:3306)/database"),
    (["s1", "s2"], ["a1"], {"s2": {"k3s_datastore_endpoint": "https://etcd2:2379"}},
     {"k3s_datastore_endpoint": "https://etcd1:2379"},
     "k3s_datastore_endpoint differs between hosts (s1, a1: 'https://etcd1:2379'; s2: 'https://etcd2:2379'): "
     "it is one setting for the whole cluster"),
    (["s1"], ["a1"], {}, {"k3s_datastore_endpoint": "https://etcd:2379", "k3s_datastore_cafile": AIRGAP_MISSING},
     f"k3s_datastore_cafile {AIRGAP_MISSING}: no such readable file on the controller (pik3s copies it to the "
     "servers)"),
    (["s1"], ["a1"], {}, {"k3s_datastore_endpoint": "https://etcd:2379", "k3s_datastore_certfile": "/etc/hostname"},
     "k3s_datastore_certfile and k3s_datastore_keyfile go together (a client certificate and its key): set both or "
     "neither"),
    (["s1"], ["a1"], {}, {"k3s_datastore_cafile": "/etc/hostname"},
     "k3s_datastore_cafile set without k3s_datastore_endpoint: the certificate files are for an external "
     "datastore; set its endpoint or leave them empty"),
    (["s1"], ["a1"], {}, {"k3s_datastore_endpoint": "http://etcd:2379", "k3s_datastore_cafile": "/etc/hostname"},
     "k3s_datastore_cafile set but k3s_datastore_endpoint is plain http://: certificates need https://"),
    (["s1"], ["a1"], {"s1": {"k3s_server_ha": True}}, {"k3s_datastore_endpoint": "https://etcd:2379"},
     "k3s_server_ha starts embedded etcd (cluster-init), and k3s_datastore_endpoint puts the cluster on an "
     "external datastore: choose one"),
    # registries.yaml, against K3s's schema (credentials never quoted).
    (["s1"], ["a1"], {}, {"k3s_registries": {"mirror": {"docker.io": {"endpoint": ["https://m.lab"]}}}},
     "k3s_registries: the top level has unknown key(s) mirror (K3s reads mirrors, configs)"),
    (["s1"], ["a1"], {}, {"k3s_registries": {"mirrors": {"docker.io": {"endpoint": "https://m.lab"}}}},
     "k3s_registries: mirrors.docker.io.endpoint must be a list of registry URLs (https://registry.lab:5000)"),
    (["s1"], ["a1"], {}, {"k3s_registries": {"mirrors": {"docker.io": {"endpoint": ["m.lab:5000"]}}}},
     "k3s_registries: mirrors.docker.io.endpoint[0] 'm.lab:5000' is not a registry URL like "
     "https://registry.lab:5000"),
    (["s1"], ["a1"], {}, {"k3s_registries": {"configs": {"m.lab": {"auth": {"username": "pi",
                                                                            "pasword": SECRET}}}}},
     "k3s_registries: configs.m.lab.auth has unknown key(s) pasword (K3s reads username, password, auth, "
     "identitytoken)"),
    (["s1"], ["a1"], {}, {"k3s_registries": {"configs": {"m.lab": {"tls": {"insecure_skip_verify": "yes",
                                                                           "ca_file": "ca.crt"}}}}},
     "k3s_registries: configs.m.lab.tls.ca_file must be an absolute path on the node"),
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


def test_groups_outside_k3s_cluster_are_reported_not_skipped(tmp_path: Path) -> None:
    inventory = _inventory(tmp_path, ["s1"], ["a1"], {}, {}, parent=False)
    rc, out = _preflight(inventory)
    assert rc == 2, out
    assert out == ("s1, a1 in 'server'/'agent' but not in k3s_cluster: make 'server' and 'agent' children of the "
                   "k3s_cluster group (pik3s's plays run on k3s_cluster)")
    assert _offline(inventory) == (4, [out])


def test_a_host_in_both_groups(tmp_path: Path) -> None:
    inventory = _inventory(tmp_path, ["s1"], ["a1"], {}, {})
    inv = yaml.safe_load(inventory.read_text())
    inv["k3s_cluster"]["children"]["agent"]["hosts"]["s1"] = None
    inventory.write_text(yaml.safe_dump(inv))
    rc, out = _preflight(inventory)
    assert rc == 2, out
    assert out == "s1 is in both 'server' and 'agent': a K3s server already runs an agent; list it as a server only"
    assert _offline(inventory) == (4, [out])


def test_airgap_files_checked_for_each_cpu(tmp_path: Path) -> None:
    airgap = tmp_path / "airgap"
    airgap.mkdir()
    for name in ("k3s", "sha256sum-amd64.txt", "k3s-airgap-images-amd64.tar.gz", "k3s-arm64"):
        (airgap / name).write_text("x")
    inventory = _inventory(tmp_path, ["s1"], ["a1"], {"a1": {"ansible_architecture": "aarch64"}},
                           {"k3s_airgap_dir": str(airgap), "k3s_version": "v1.31.4+k3s1"})
    rc, problems = _offline(inventory)
    assert rc == 4
    assert problems == [f"k3s_airgap_dir {airgap} lacks sha256sum-arm64.txt, k3s-airgap-images-arm64.tar.gz for "
                        "the aarch64 hosts: add them from the K3s release"]


def test_a_vaulted_token_is_checked_decrypted(tmp_path: Path) -> None:
    secret = tmp_path / "vault-password"
    secret.write_text("correct horse\n")
    inventory = _inventory(tmp_path, ["s1"], ["a1"], {}, {})
    inv = yaml.safe_load(inventory.read_text())
    del inv["k3s_cluster"]["vars"]["k3s_token"]
    inventory.write_text(yaml.safe_dump(inv))
    (tmp_path / "group_vars").mkdir()
    for token, expected in ((TOKEN, None), ("abc", "k3s_token: too short to be secret (it has 3 characters")):
        vaulted = run_ansible("ansible-vault", "encrypt_string", "--vault-password-file", str(secret),
                              "--name", "k3s_token", token).stdout
        (tmp_path / "group_vars" / "k3s_cluster.yml").write_text(vaulted)
        rc, out = _preflight(inventory, "--vault-password-file", str(secret))
        if expected is None:
            assert rc == 0, out
        else:
            assert rc == 2 and out.startswith(expected), out
        offline = subprocess.run([sys.executable, "-m", "pik3s.cli", "inventory", "validate", "-i", str(inventory),
                                  "--vault-password-file", str(secret), "-o", "json"], capture_output=True, text=True,
                                 env=ansible_env(), check=False)
        assert (offline.returncode == 0) is (expected is None), offline.stdout + offline.stderr


@pytest.mark.parametrize("verbosity", ["-v", "-vv", "-vvv", "-vvvv"])
def test_the_secret_never_shows_at_any_verbosity(tmp_path: Path, verbosity: str) -> None:
    inventory = _inventory(tmp_path, ["s1"], ["a1"], {"a1": {"k3s_token": f"K10{HASH}::server:{SECRET}-2"}},
                           {"k3s_cluster_config": {"token": "x"}})
    rc, out = _preflight(inventory, verbosity)  # asserts the secret is in no output
    assert rc == 2
    assert "k3s_token differs between hosts (s1 | a1)" in out


def test_all_problems_reported_at_once(tmp_path: Path) -> None:
    rc, out = _preflight(_inventory(tmp_path, ["s1", "s2"], ["a1"], {},
                                    {"k3s_version": "latest", "k3s_agent_config": {"token-file": "/x"}}))
    assert rc == 2
    for fragment in ("2 servers (s1, s2)", "k3s_version 'latest'", "k3s_agent_config sets 'token-file'"):
        assert fragment in out
