"""The inventory rules as tables (plugins/plugin_utils/k3s_rules.py). Every rule also runs through the
playbook preflight and `pik3s inventory validate` in tests/unit/test_preflight.py."""

from __future__ import annotations

import random
import time
from typing import Any

import pytest

from ansible_collections.pik3s.cluster.plugins.plugin_utils import k3s_rules

TOKEN = "K10" + "ab" * 32 + "::server:" + "s3cr3t-value-0123456789"


def _problems(hostvars: dict[str, dict[str, Any]], servers: list[str], agents: list[str],
              archs: dict[str, str] | None = None) -> list[str]:
    groups = {"k3s_cluster": servers + agents, "server": servers, "agent": agents}
    return k3s_rules.inventory_problems(k3s_rules.describe(hostvars, groups, archs))


def test_the_variables_come_from_the_argument_specs() -> None:
    spec = k3s_rules.variables()
    assert spec["k3s_cluster_config"]["type"] == "dict"
    assert spec["k3s_api_port"]["type"] == "int"
    assert spec["prepare_modules"] == {"type": "list", "elements": "str", "default": spec["prepare_modules"]["default"],
                                       "role": "prepare", "no_log": False}
    assert spec["k3s_token"]["no_log"] is True
    # Every rule's variable is one the roles declare.
    for name in (*k3s_rules.CLUSTER_WIDE, *k3s_rules.RANGES, *k3s_rules.BATCH_VARS, *k3s_rules.CONFIG_VARS):
        assert name in spec or name in k3s_rules.INVENTORY_VARIABLES, name


@pytest.mark.parametrize(("name", "value", "problem"), [
    ("k3s_cluster_config", {}, ""),
    ("k3s_cluster_config", 5, "k3s_cluster_config must be a mapping, not the integer 5"),
    ("k3s_api_port", "6443", ""),  # -e k=v gives strings, as Ansible's own spec check takes them
    ("k3s_api_port", True, "k3s_api_port must be an integer, not the boolean true"),
    ("k3s_upgrade_force", "yes", ""),
    ("k3s_upgrade_force", "sure", "k3s_upgrade_force must be true or false, not the string 'sure'"),
    ("k3s_version", 1.3, "k3s_version must be a string, not the number 1.3 (quote it in YAML)"),
    ("k3s_token", ["x"], "k3s_token must be a string, not a value of another type"),
    ("prepare_modules", ["a", None], "prepare_modules: every item must be a string, not null (empty)"),
    ("not_a_pik3s_variable", object(), ""),
])
def test_types(name: str, value: Any, problem: str) -> None:
    assert k3s_rules.type_problem(name, value) == problem


@pytest.mark.parametrize(("value", "ok"), [
    (1, True), (5, True), ("3", True), ("25%", True), ("100%", True),
    (0, False), (-1, False), ("0%", False), ("101%", False), (1.5, False), (True, False), ("five", False),
    (" 3", False), (None, False),
])
def test_batches(value: Any, ok: bool) -> None:
    assert (k3s_rules.batch_problems("k3s_agent_batch", value) == []) is ok


@pytest.mark.parametrize(("name", "problem"), [
    ("pi4-1", ""),
    ("node.lab.example", ""),
    ("Pi4-1", "upper-case letters"),
    ("pi_4", "not a valid Kubernetes node name"),
    ("-pi", "not a valid Kubernetes node name"),
    ("a" * 63, ""),
    ("a" * 64, "not a valid Kubernetes node name"),
    ("ñandú", "not a valid Kubernetes node name"),
    ("pi4 ", "leading or trailing whitespace"),
    ("", "is empty"),
])
def test_node_names(name: str, problem: str) -> None:
    found = k3s_rules.node_name_problems(name)
    assert (problem in found[0]) if problem else found == []


@pytest.mark.parametrize(("name", "value", "problem"), [
    ("ansible_host", "10.0.0.5", ""),
    ("ansible_host", "pi4-1.lan", ""),
    ("ansible_host", "fe80::1", "IPv6 is not supported by pik3s yet"),
    ("ansible_host", "[2001:db8::1]", "IPv6 is not supported by pik3s yet"),
    ("ansible_host", "10.0.0.5\n", "leading or trailing whitespace"),
    ("k3s_node_ip", "", ""),
    ("k3s_node_ip", "pi4-1.lan", "is not an IPv4 address"),
    ("k3s_node_ip", "2001:db8::1", "IPv6 is not supported"),
])
def test_addresses(name: str, value: str, problem: str) -> None:
    found = k3s_rules.address_problems(name, value, allow_name=name == "ansible_host")
    assert (problem in found[0]) if problem else found == []


def test_tokens_are_never_quoted_and_must_be_long_enough() -> None:
    assert k3s_rules.token_problems(TOKEN) == []
    assert k3s_rules.token_problems("0123456789abcdef") == []
    for weak in ("pw", "0123456789abcde", "K10" + "ab" * 32 + "::server:short"):
        (problem,) = k3s_rules.token_problems(weak)
        assert "too short to be secret" in problem
        assert weak not in problem and "short" not in problem.split("(")[0].replace("too short", "")


def test_every_host_is_checked_not_only_the_first() -> None:
    hv = {"s1": {}, "a1": {}, "a2": {"k3s_agent_config": "node-label: x"}}
    assert _problems(hv, ["s1"], ["a1", "a2"]) == [
        "a2: k3s_agent_config must be a mapping, not the string 'node-label: x' (write it as a YAML mapping, "
        "key: value on each line, or -e '{\"name\": {...}}' as JSON)"]


def test_a_secret_in_a_value_of_another_variable_is_masked() -> None:
    hv = {"s1": {"k3s_agent_config": "token: hunter2-not-in-a-secret-variable"}, "a1": {}}
    (problem,) = _problems(hv, ["s1"], ["a1"])
    assert problem.startswith("s1: k3s_agent_config must be a mapping, not the string 'token: ********'")
    assert "hunter2" not in problem


def test_a_secret_that_differs_is_named_by_host_only() -> None:
    hv = {"s1": {"k3s_token": TOKEN}, "a1": {"k3s_token": TOKEN + "x"}}
    (problem,) = _problems(hv, ["s1"], ["a1"])
    assert problem.startswith("k3s_token differs between hosts (s1 | a1)")
    assert "s3cr3t" not in problem


def test_cpus_and_airgap_files(tmp_path: Any) -> None:
    for name in ("k3s-armhf", "sha256sum-arm.txt", "k3s-airgap-images-arm.tar.gz"):
        (tmp_path / name).write_text("")
    hv = {h: {"k3s_airgap_dir": str(tmp_path), "k3s_version": "v1.31.4+k3s1"} for h in ("s1", "a1", "a2", "a3")}
    assert _problems(hv, ["s1"], ["a1", "a2", "a3"],
                     {"s1": "armv7l", "a1": "armhf", "a2": "armv6l", "a3": "riscv64"}) == [
        "a2: armv6l is ARMv6 (Raspberry Pi Zero / Pi 1); K3s needs ARMv7 or newer; leave this host out",
        "a3: CPU architecture 'riscv64' has no K3s binary (x86_64, aarch64, armv7l only)"]


def test_servers_must_agree_on_what_k3s_compares_at_join() -> None:
    hv = {"s1": {"k3s_cluster_config": {"cluster-cidr": "10.42.0.0/16"}},
          "s2": {"k3s_cluster_config": {"cluster-cidr": "10.42.0.0/16"}, "k3s_server_config": {"disable+": ["x"]}},
          "s3": {"k3s_cluster_config": {"cluster-cidr": "10.42.0.0/16"}}}
    assert _problems(hv, ["s1", "s2", "s3"], []) == [
        "'disable' differs between servers (s1, s3: None; s2: ['x']): K3s refuses a server whose value differs "
        "(critical configuration value mismatch); set it once, in k3s_cluster_config"]


def test_remove_and_restore_rules(tmp_path: Any) -> None:
    description = k3s_rules.describe({}, {"k3s_cluster": ["s1", "s2", "s3", "a1"], "server": ["s1", "s2", "s3"],
                                          "agent": ["a1"]})
    assert k3s_rules.remove_problems("a1, s2", description) == []
    assert k3s_rules.remove_problems(["a9"], description) == ["a9 is not in k3s_cluster"]
    assert k3s_rules.remove_problems(" , ", description)[0].startswith("set k3s_remove to the inventory name(s)")
    # The names remove_node.yml's forced removal loops over (filter pik3s.cluster.k3s_remove_names).
    assert k3s_rules.remove_names(" a1, ,s2 ") == ["a1", "s2"] == k3s_rules.remove_names(["a1", " ", "s2"])
    assert k3s_rules.remove_problems("s1", description) == [
        "s1 is the first server (pik3s runs kubectl there): put another server first in the 'server' group before "
        "removing it"]
    (tmp_path / "snapshot").write_text("")
    assert k3s_rules.restore_problems(tmp_path)[0].endswith(
        "lacks token, nodes.json (for example -e k3s_restore=inventories/prod/.backups/pik3s-srv1-1700000000)")
    for name in ("token", "nodes.json"):
        (tmp_path / name).write_text("")
    assert k3s_rules.restore_problems(str(tmp_path)) == []
    assert k3s_rules.restore_problems("")[0].startswith("set k3s_restore to a directory written by backup.yml")


# ------------------------------------------------------------------------ randomly broken inventories

_VALUES: list[Any] = [None, 0, -3, 7, 1.5, True, "", " ", "x\n", "Ü", "a" * 300, "{{ x }}", [], [1, "a"], {},
                      {"token": 1}, {"a": {"b": None}}, "10.0.0.1", "fe80::1", "K10::x:", TOKEN, "v1.31.4+k3s1", "25%"]


def _random_inventory(rng: random.Random) -> tuple[dict[str, dict[str, Any]], dict[str, list[Any]]]:
    names = [*k3s_rules.checked_variables(), "k3s_server_group", "k3s_agent_group", "unrelated"]
    hosts = [rng.choice(["s1", "S1", "a_1", "a" * 70, "ü", "h" + str(i)]) + str(i) for i in range(rng.randint(0, 6))]
    hostvars = {h: {rng.choice(names): rng.choice(_VALUES) for _draw in range(rng.randint(0, 8))} for h in hosts}
    known = [*hosts, "ghost"]  # a group may name a host without variables of its own
    groups: dict[str, list[Any]] = {g: rng.sample(known, rng.randint(0, len(known)))
                                    for g in ("k3s_cluster", "server", "agent", "other")}
    if rng.random() < 0.2:
        groups.pop(rng.choice(list(groups)))
    return hostvars, groups


def test_randomly_broken_inventories_never_raise() -> None:
    rng = random.Random(20261130)  # noqa: S311 - reproducible test data, not cryptography
    for _round in range(3000):
        hostvars, groups = _random_inventory(rng)
        archs = {h: rng.choice(["x86_64", "armv6l", "mips", "", None]) for h in hostvars}
        problems = k3s_rules.inventory_problems(k3s_rules.describe(hostvars, groups, archs))
        assert all(isinstance(p, str) and p for p in problems)
        assert not any("s3cr3t" in p for p in problems)


def test_300_hosts_are_checked_quickly() -> None:
    hv = {f"pi{i}": {"ansible_host": f"10.1.{i // 250}.{i % 250 + 1}", "k3s_token": TOKEN,
                     "k3s_cluster_config": {"cluster-cidr": "10.42.0.0/16"}} for i in range(300)}
    servers, agents = ["pi0", "pi1", "pi2"], [f"pi{i}" for i in range(3, 300)]
    start = time.perf_counter()
    assert _problems(hv, servers, agents) == []
    assert time.perf_counter() - start < 2.0
