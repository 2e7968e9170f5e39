from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.pik3s.cluster.plugins.filter import k3s_token as f

HASH = "0123456789abcdef" * 4
SECURE = f"K10{HASH}::server:Sup3r-s3cret.pw"


@pytest.mark.parametrize(("token", "parsed"), [
    (SECURE, {"format": "secure", "ca_hash": HASH, "username": "server", "password": "Sup3r-s3cret.pw"}),
    (f"K10{HASH}::node:abc", {"format": "secure", "ca_hash": HASH, "username": "node", "password": "abc"}),
    ("plainpassword", {"format": "short", "ca_hash": None, "username": None, "password": "plainpassword"}),
    ("k10-lowercase-is-short", {"format": "short", "ca_hash": None, "username": None,
                                "password": "k10-lowercase-is-short"}),
])
def test_parse(token: str, parsed: dict[str, object]) -> None:
    assert f.k3s_token_parse(token) == parsed
    assert f.k3s_token_password(token) == parsed["password"]
    assert f.k3s_token_ca_hash(token) == parsed["ca_hash"]


SECRET = "hunter2hunter2"


@pytest.mark.parametrize(("token", "message"), [
    ("", "the K3s token is empty"),
    (f" {SECRET}", "leading or trailing whitespace"),
    (f"{SECRET}\n", "leading or trailing whitespace"),
    (f"K10{HASH[:-1]}::server:{SECRET}", "the CA hash after K10 must be 64 lowercase hex digits (found 63 characters)"),
    (f"K10{HASH.upper()}::server:{SECRET}", "the CA hash after K10 must be 64 lowercase hex digits"),
    (f"K10{HASH}::Server:{SECRET}", "the username must be lowercase letters, digits or '-'"),
    (f"K10{HASH}::server:", "the password is empty or has spaces"),
    (f"K10{HASH}::server:{SECRET} x", "the password is empty or has spaces"),
    (f"K10{HASH}:::{SECRET}", "the username must be lowercase"),
    (f"K10{HASH}::{SECRET}", "malformed secure K3s token: expected K10<ca-hash>::<username>:<password>"),
    (f"K10{SECRET}", "malformed secure K3s token: expected K10<ca-hash>::<username>:<password>"),
    (f"pass word{SECRET}", "a short token must be printable ASCII without spaces"),
    (f"user:{SECRET}", "a short token cannot contain ':'"),
    (12345, "a K3s token must be a string, not int"),
])
def test_malformed_tokens_name_the_problem_not_the_secret(token: object, message: str) -> None:
    for flt in (f.k3s_token_parse, f.k3s_token_password, f.k3s_token_ca_hash, f.k3s_token_mask):
        with pytest.raises(AnsibleFilterError) as err:
            flt(token)
        assert message in str(err.value)
        assert SECRET not in str(err.value)


@pytest.mark.parametrize(("token", "masked"), [
    (SECURE, "K1001234567...::server:********"),
    ("plainpassword", "********"),
])
def test_mask(token: str, masked: str) -> None:
    assert f.k3s_token_mask(token) == masked
    assert f.k3s_token_password(token) not in masked


def test_registered() -> None:
    assert set(f.FilterModule().filters()) == {
        "k3s_token_parse", "k3s_token_password", "k3s_token_ca_hash", "k3s_token_mask", "k3s_token_error",
        "k3s_token_fingerprint"}


@pytest.mark.parametrize(("token", "problem"), [
    (SECURE, ""),
    ("plainpassword", ""),
    (f"user:{SECRET}", "malformed K3s token: a short token cannot contain ':'"),
    ("", "the K3s token is empty"),
])
def test_error_reports_without_raising(token: str, problem: str) -> None:
    assert f.k3s_token_error(token).startswith(problem)
    assert SECRET not in f.k3s_token_error(token)


def test_simulator_tokens_parse() -> None:
    """What the lab's K3s simulator writes is what the filters read."""
    from pik3s_lab.simulator import tokens as sim_tokens
    token = sim_tokens.format_token(b"CA PEM", "server", "pw-from-sim")
    assert f.k3s_token_parse(token) == {"format": "secure", "ca_hash": sim_tokens.ca_hash(b"CA PEM"),
                                        "username": "server", "password": "pw-from-sim"}
