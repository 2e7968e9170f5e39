"""`pik3s inventory validate`: offline, the preflight rules, exit codes and output.
(Every catalogued rejection is compared with the playbook's in test_preflight.py.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pik3s import cli
from pik3s.results import EXIT_INVALID


def _write(tmp_path: Path, inv: dict) -> str:
    path = tmp_path / "hosts.yml"
    path.write_text(yaml.safe_dump(inv))
    return str(path)


def _inv(**cluster_vars: object) -> dict:
    return {"k3s_cluster": {"children": {
        "server": {"hosts": {"s1": {"ansible_host": "10.9.0.1"}}},
        "agent": {"hosts": {"a1": {"ansible_host": "10.9.0.2", "ansible_architecture": "armv6l"}}}},
        "vars": cluster_vars}}


def test_arch_is_checked_when_the_inventory_says_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = cli.main(["inventory", "validate", "-i", _write(tmp_path, _inv())])
    out = capsys.readouterr().out
    assert rc == EXIT_INVALID
    assert ("problem: a1: armv6l is ARMv6 (Raspberry Pi Zero / Pi 1); K3s needs ARMv7 or newer; "
            "leave this host out") in out
    assert out.rstrip().endswith("invalid (1 problem(s)); 2 host(s) in k3s_cluster; no host was contacted")


def test_templates_are_listed_as_unchecked_not_guessed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inv = _inv(k3s_api_endpoint="{{ my_vip }}", k3s_version="v1.31.4+k3s1")
    inv["k3s_cluster"]["children"]["agent"]["hosts"]["a1"].pop("ansible_architecture")
    rc = cli.main(["inventory", "validate", "-i", _write(tmp_path, inv), "--output", "json"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert doc["valid"] is True and doc["problems"] == [] and sorted(doc["hosts"]) == ["a1", "s1"]
    assert doc["unchecked"] == ["k3s_api_endpoint (a template; resolved only when a playbook runs)"]


def test_an_unreadable_inventory_is_an_error_not_a_verdict(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "hosts.yml"
    bad.write_text("k3s_cluster: [unclosed\n")
    rc = cli.main(["inventory", "validate", "-i", str(bad)])
    err = capsys.readouterr().err
    assert rc == 1
    assert err.startswith(f"pik3s: error: cannot read inventory {bad}:\n")
    assert "did not find expected ',' or ']'" in err  # the cause, not only Ansible's last line


def test_a_parser_quoting_a_secret_line_is_masked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "hosts.yml"
    # ansible-core quotes the lines around the error, the token's among them
    bad.write_text("k3s_cluster:\n  hosts:\n    s1:\n      k3s_token: hunter2-do-not-print\n     bad: 1\n")
    rc = cli.main(["inventory", "validate", "-i", str(bad)])
    err = capsys.readouterr().err
    assert rc == 1 and "cannot read inventory" in err
    assert "hunter2" not in err
    if "k3s_token" in err:  # ansible-core 2.19 quotes the source lines; older releases do not
        assert "k3s_token: ********" in err


def test_secret_assignments_are_masked_in_quoted_source() -> None:
    from pik3s.masking import mask_secret_assignments

    quoted = ("3     s1:\n4       k3s_token: hunter2-do-not-print\n5      bad: 1\n"
              "k3s_cluster:vars] db_password=hunter2 port=5432\n  \"ansible_become_pass\": \"hunter2\"")
    masked = mask_secret_assignments(quoted)
    assert "hunter2" not in masked
    assert "4       k3s_token: ********" in masked and "5      bad: 1" in masked and "3     s1:" in masked


def test_the_shipped_inventories_are_valid(capsys: pytest.CaptureFixture[str]) -> None:
    for inventory in ("inventories/sample/hosts.yml", "inventories/ha"):
        assert cli.main(["inventory", "validate", "-i", inventory]) == 0, capsys.readouterr()


def _vaulted(tmp_path: Path, token: str) -> tuple[str, Path]:
    secret = tmp_path / "vault-password"
    secret.write_text("correct horse\n")
    vault_yaml = subprocess.run([str(Path(sys.executable).with_name("ansible-vault")), "encrypt_string",
                                 "--vault-password-file", str(secret), "--name", "k3s_token", token],
                                capture_output=True, text=True, check=True).stdout
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "k3s_cluster.yml").write_text(vault_yaml)
    inv = _inv()
    inv["k3s_cluster"]["children"]["agent"]["hosts"]["a1"].pop("ansible_architecture")
    return _write(tmp_path, inv), secret


def test_a_vaulted_token_is_decrypted_with_the_vault_options(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    inv, secret = _vaulted(tmp_path, "K10" + "ab" * 32 + "::server:vaulted-and-long-enough")
    assert cli.main(["inventory", "validate", "-i", inv, "--vault-password-file", str(secret)]) == 0
    assert "valid; 2 host(s)" in capsys.readouterr().out
    # Without the password: exactly that, exit 4, nothing contacted.
    assert cli.main(["inventory", "validate", "-i", inv, "-o", "json"]) == EXIT_INVALID
    assert json.loads(capsys.readouterr().out)["problems"] == [
        "k3s_token is vault-encrypted and no vault password was given: pass it as to ansible-playbook "
        "(--vault-password-file FILE, --vault-id ID@FILE, --ask-vault-pass, or ANSIBLE_VAULT_PASSWORD_FILE)"]
    wrong = tmp_path / "wrong"
    wrong.write_text("battery staple\n")
    assert cli.main(["inventory", "validate", "-i", inv, "-o", "json", "--vault-password-file", str(wrong)]) == 4
    assert json.loads(capsys.readouterr().out)["problems"] == [
        "k3s_token is vault-encrypted and the vault password did not decrypt it"]


def test_a_vaulted_token_is_checked_like_any_other(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inv, secret = _vaulted(tmp_path, "abc")
    assert cli.main(["inventory", "validate", "-i", inv, "--vault-password-file", str(secret), "-o", "json"]) == 4
    out = capsys.readouterr().out
    assert json.loads(out)["problems"][0].startswith("k3s_token: too short to be secret (it has 3 characters")
