"""Rules of the pik3s K3s simulator that need no running process."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pik3s_lab import mirror
from pik3s_lab.simulator import common as sim_common
from pik3s_lab.simulator import config as sim_config
from pik3s_lab.simulator import host as sim_host
from pik3s_lab.simulator import nodes as sim_nodes
from pik3s_lab.simulator import tokens as sim_tokens
from pik3s_lab.simulator import yamlreader as sim_yamlreader

# --- config files: alphabetical drop-ins, last wins, key+ appends, CLI overrides


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_dropins_load_alphabetically_after_main_file(tmp_path: Path) -> None:
    main = _write(tmp_path / "config.yaml", "node-name: main\ncluster-cidr: 10.42.0.0/16\n")
    _write(tmp_path / "config.yaml.d/20-b.yaml", "node-name: from-b\n")
    _write(tmp_path / "config.yaml.d/10-a.yaml", "node-name: from-a\nflannel-backend: wireguard-native\n")
    _write(tmp_path / "config.yaml.d/notes.txt", "node-name: ignored\n")
    files = sim_config.config_files(main)
    assert [f.name for f in files] == ["config.yaml", "10-a.yaml", "20-b.yaml"]
    merged = sim_config.load_config_files("server", files)
    assert merged["node-name"] == "from-b"
    assert merged["flannel-backend"] == "wireguard-native"
    assert merged["cluster-cidr"] == ["10.42.0.0/16"]


def test_plus_suffix_appends_and_plain_key_replaces(tmp_path: Path) -> None:
    main = _write(tmp_path / "config.yaml", "tls-san: [a.example]\nnode-label:\n  - x=1\n")
    _write(tmp_path / "config.yaml.d/1.yaml", "tls-san+:\n  - b.example\nnode-label: [y=2]\n")
    merged = sim_config.load_config_files("server", sim_config.config_files(main))
    assert merged["tls-san"] == ["a.example", "b.example"]
    assert merged["node-label"] == ["y=2"]


def test_unknown_config_key_is_skipped_with_k3s_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main = _write(tmp_path / "config.yaml", "not-a-flag: true\nnode-name: n1\n")
    merged = sim_config.load_config_files("server", [main])
    assert merged == {"node-name": "n1"}
    assert "Unknown flag --not-a-flag found in config.yaml, skipping" in capsys.readouterr().err


def test_server_only_key_is_unknown_to_the_agent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main = _write(tmp_path / "config.yaml", "cluster-init: true\nserver: https://s:6443\n")
    merged = sim_config.load_config_files("agent", [main])
    assert merged == {"server": "https://s:6443"}
    assert "Unknown flag --cluster-init" in capsys.readouterr().err


def test_cli_overrides_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(tmp_path / "etc/rancher/k3s/config.yaml", "node-name: file\nwrite-kubeconfig-mode: '0644'\n")
    monkeypatch.setattr(sim_common, "ROOT", str(tmp_path))
    for var in ("K3S_CONFIG_FILE", "K3S_TOKEN", "K3S_URL", "K3S_NODE_NAME"):
        monkeypatch.delenv(var, raising=False)
    cfg = sim_config.resolve_config("server", ["--node-name", "cli", "--tls-san=x.example"])
    assert cfg["node-name"] == "cli"
    assert cfg["write-kubeconfig-mode"] == "0644"
    assert cfg["tls-san"] == ["x.example"]


@pytest.mark.parametrize(("command", "argv", "message"), [
    ("server", ["--no-such-flag"], "flag provided but not defined: -no-such-flag"),
    ("agent", ["--cluster-init"], "flag provided but not defined: -cluster-init"),
    ("server", ["--token"], "flag needs an argument: -token"),
    ("server", ["stray"], "unexpected argument 'stray'"),
])
def test_bad_command_line_is_rejected(command: str, argv: list[str], message: str) -> None:
    with pytest.raises(sim_config.UsageError, match=message):
        sim_config.parse_cli(command, argv)


def test_repeatable_and_boolean_flags() -> None:
    cfg = sim_config.parse_cli("server", ["--node-label", "a=1", "--node-label=b=2", "--cluster-init",
                                   "--secrets-encryption=false", "-t", "tok"])
    assert cfg == {"node-label": ["a=1", "b=2"], "cluster-init": True, "secrets-encryption": False,
                   "token": "tok"}


# --- YAML reader: what K3s and Ansible write


def test_yaml_reader_matches_pyyaml_on_kubeconfig_shapes() -> None:
    doc = {
        "apiVersion": "v1",
        "clusters": [{"cluster": {"certificate-authority-data": "QUJD", "server": "https://10.0.0.1:6443"},
                      "name": "lab"}],
        "contexts": [{"context": {"cluster": "lab", "user": "lab"}, "name": "lab"}],
        "current-context": "lab", "kind": "Config", "preferences": {},
        "users": [{"name": "lab", "user": {"client-certificate-data": "REVG", "client-key-data": "R0hJ"}}],
    }
    for text in (yaml.safe_dump(doc), yaml.safe_dump(doc, default_flow_style=False, indent=4),
                 sim_yamlreader.yaml_dump(doc)):
        assert sim_yamlreader.yaml_load(text) == doc
    assert yaml.safe_load(sim_yamlreader.yaml_dump(doc)) == doc


@pytest.mark.parametrize(("text", "value"), [
    ("a: 'quoted # not comment'  # comment\n", {"a": "quoted # not comment"}),
    ('a: "x\\ty"\n', {"a": "x\ty"}),
    ("a: [1, two, 'three']\n", {"a": [1, "two", "three"]}),
    ("a:\n- x\n- y\n", {"a": ["x", "y"]}),
    ("a: true\nb: False\nc: 0644\nd: ~\n", {"a": True, "b": False, "c": 644, "d": None}),
    ("---\nwrite-kubeconfig-mode: \"0644\"\n", {"write-kubeconfig-mode": "0644"}),
])
def test_yaml_scalars(text: str, value: object) -> None:
    assert sim_yamlreader.yaml_load(text) == value


@pytest.mark.parametrize("text", ["a: &anchor 1\n", "a: *alias\n", "a: !!str 1\n", "a: 'unterminated\n",
                                  "- a\nb: 1\n", "a:\n\t- x\n"])
def test_yaml_reader_rejects_what_it_does_not_understand(text: str) -> None:
    with pytest.raises(sim_yamlreader.YamlError):
        sim_yamlreader.yaml_load(text)


@pytest.mark.parametrize(("text", "value"), [
    ("a: |\n  one\n  # kept\n\n  three\nb: 1\n", {"a": "one\n# kept\n\nthree\n", "b": 1}),
    ("a: |-\n  x\n\n", {"a": "x"}),
    ("a: |+\n  x\n\nb: 2\n", {"a": "x\n\n", "b": 2}),
    ("a: >\n  one\n  two\n\n  three\n    kept\n", {"a": "one two\nthree\n  kept\n"}),
    ("a: |2\n    indented\n", {"a": "  indented\n"}),
    ("- |\n  item\n- b\n", ["item\n", "b"]),
    ("spec:\n  valuesContent: |-\n    replicas: 2\n    image:\n      tag: v1\n  after: x\n",
     {"spec": {"valuesContent": "replicas: 2\nimage:\n  tag: v1", "after": "x"}}),
])
def test_yaml_block_scalars(text: str, value: object) -> None:
    assert sim_yamlreader.yaml_load(text) == value


def test_yaml_documents_in_one_stream() -> None:
    stream = ("# leading comment\n---\napiVersion: v1\nkind: A\n---\n# only a comment\n---\n"
              "kind: B\n...\n--- {\"kind\": \"C\"}\n")
    assert sim_yamlreader.yaml_load_all(stream) == [{"apiVersion": "v1", "kind": "A"}, {"kind": "B"}, {"kind": "C"}]
    assert sim_yamlreader.yaml_load_all('{\n  "kind": "D",\n  "items": [1,\n 2]\n}\n') == [
        {"kind": "D", "items": [1, 2]}]


# --- tokens


CA = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def test_secure_token_is_k10_sha256_of_ca_user_password() -> None:
    token = sim_tokens.format_token(CA, "server", "s3cret")
    assert token == f"K10{hashlib.sha256(CA).hexdigest()}::server:s3cret"
    assert sim_tokens.parse_token(token) == (hashlib.sha256(CA).hexdigest(), "server", "s3cret")


@pytest.mark.parametrize(("token", "parsed"), [
    ("s3cret", (None, None, "s3cret")),
    ("  s3cret\n", (None, None, "s3cret")),
    ("node:pw", (None, "node", "pw")),
])
def test_short_tokens(token: str, parsed: tuple[None, str | None, str]) -> None:
    assert sim_tokens.parse_token(token) == parsed


@pytest.mark.parametrize("token", [
    "K10abc::server:pw", "K10" + "0" * 64 + ":server:pw", "K10" + "g" * 64 + "::s:pw", "",
])
def test_malformed_tokens_are_fatal(token: str) -> None:
    with pytest.raises(sim_common.Fatal):
        sim_tokens.parse_token(token)


def test_bootstrap_data_needs_the_same_token_password() -> None:
    blob = sim_tokens.encrypt_bootstrap("right", {"server-ca.key": "KEY"})
    assert sim_tokens.decrypt_bootstrap("right", blob) == {"server-ca.key": "KEY"}
    with pytest.raises(sim_common.Fatal, match="message authentication failed"):
        sim_tokens.decrypt_bootstrap("wrong", blob)


# --- host facts


@pytest.mark.parametrize(("v2", "v1", "ok", "why"), [
    ("cpuset cpu io memory pids", None, True, "V2"),
    ("cpuset cpu io pids", None, False, "failed to find memory cgroup (v2)"),
    (None, "#subsys_name\thierarchy\tnum_cgroups\tenabled\nmemory\t4\t42\t1\n", True, "V1"),
    (None, "#subsys_name\thierarchy\tnum_cgroups\tenabled\nmemory\t0\t1\t0\n", False, "memory is disabled"),
    (None, "#subsys_name\thierarchy\tnum_cgroups\tenabled\ncpu\t2\t1\t1\n", False, "failed to find memory cgroup (v1)"),
])
def test_memory_cgroup_detection(tmp_path: Path, v2: str | None, v1: str | None, ok: bool, why: str) -> None:
    v2p, v1p = tmp_path / "cgroup.controllers", tmp_path / "cgroups"
    if v2 is not None:
        v2p.write_text(v2 + "\n")
    if v1 is not None:
        v1p.write_text(v1)
    state, reason = sim_host.memory_cgroup_state(v2p, v1p)
    assert state is ok
    assert why in reason


def _run_asset(path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(path), *args], capture_output=True, text=True, check=False, env=env)


def test_published_version_is_what_version_prints(tmp_path: Path) -> None:
    asset = tmp_path / "k3s"
    asset.write_bytes(mirror.simulator_asset("v1.30.8+k3s1", "amd64"))
    res = _run_asset(asset, "--version")
    assert res.returncode == 0
    first, second = res.stdout.splitlines()
    assert first.startswith("k3s version v1.30.8+k3s1 ")
    assert "simulator" in first and "not K3s" in second


@pytest.mark.parametrize("arch", ["arm64", "armhf"])
def test_arm_assets_refuse_this_x86_64_cpu(tmp_path: Path, arch: str) -> None:
    if sim_host.platform.machine() != "x86_64":
        pytest.skip("checks the x86_64 refusal")
    asset = tmp_path / f"k3s-{arch}"
    asset.write_bytes(mirror.simulator_asset("v1.31.4+k3s1", arch))
    res = _run_asset(asset, "--version")
    assert res.returncode == 126
    assert "cannot execute binary file: Exec format error" in res.stderr
    assert res.stdout == ""


def test_check_config_reports_memory_cgroup(tmp_path: Path) -> None:
    from tests.unit.lab.simharness import fake_cgroups
    asset = tmp_path / "k3s"
    asset.write_bytes(mirror.simulator_asset("v1.31.4+k3s1", "amd64"))
    for memory, rc, status in ((True, 0, "STATUS: pass"), (False, 1, "STATUS: 1 (fail)")):
        root = tmp_path / f"root-{memory}"
        fake_cgroups(root, memory=memory)
        res = _run_asset(asset, "check-config", env={"PIK3S_SIM_ROOT": str(root), "PATH": "/usr/bin:/bin"})
        assert res.returncode == rc, res.stdout + res.stderr
        assert status in res.stdout
        assert ("memory cgroup: enabled" if memory else "memory cgroup: missing") in res.stdout


def test_taint_and_label_grammar() -> None:
    assert sim_nodes.parse_taint("dedicated=edge:NoSchedule") == {
        "key": "dedicated", "value": "edge", "effect": "NoSchedule"}
    assert sim_nodes.parse_taint("node-role.kubernetes.io/control-plane:NoExecute") == {
        "key": "node-role.kubernetes.io/control-plane", "effect": "NoExecute"}
    with pytest.raises(sim_common.Fatal, match="invalid taint"):
        sim_nodes.parse_taint("dedicated=edge")
    assert sim_nodes.parse_label("pik3s.io/model=rpi4") == ("pik3s.io/model", "rpi4")
    with pytest.raises(sim_common.Fatal, match="invalid node label"):
        sim_nodes.parse_label("no-equals-sign")


@pytest.mark.parametrize(("asset", "machine", "code"), [
    ("amd64", "x86_64", None), ("arm64", "aarch64", None), ("armhf", "armv7l", None),
    ("armhf", "aarch64", None),  # 32-bit userland on a 64-bit Pi kernel runs, as on real Pis
    ("arm64", "armv7l", 126), ("amd64", "aarch64", 126), ("arm64", "x86_64", 126),
    ("armhf", "armv6l", 132),  # Pi Zero / Pi 1: K3s's armhf binary dies with SIGILL
])
def test_cpu_table(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                   asset: str, machine: str, code: int | None) -> None:
    monkeypatch.setattr(sim_host, "PUBLISHED_ARCH", asset)
    monkeypatch.setattr(sim_host.platform, "machine", lambda: machine)
    if code is None:
        sim_host.check_cpu()
        return
    with pytest.raises(SystemExit) as exc:
        sim_host.check_cpu()
    assert exc.value.code == code
    err = capsys.readouterr().err
    assert ("Illegal instruction" if code == 132 else "Exec format error") in err
