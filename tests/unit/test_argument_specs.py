"""Every role's meta/argument_specs.yml matches its defaults/main.yml key for key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROLES = Path(__file__).resolve().parents[2] / "roles"
ROLE_NAMES = sorted(p.name for p in ROLES.iterdir() if (p / "defaults" / "main.yml").exists())


def test_every_role_is_checked() -> None:
    assert ROLE_NAMES == ["_common", "k3s_agent", "k3s_server", "prepare"]


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_specs_match_defaults(role: str) -> None:
    defaults = yaml.safe_load((ROLES / role / "defaults" / "main.yml").read_text()) or {}
    spec = yaml.safe_load((ROLES / role / "meta" / "argument_specs.yml").read_text())
    options = spec["argument_specs"]["main"]["options"]
    assert set(options) == set(defaults)
    for name, value in defaults.items():
        opt = options[name]
        assert opt["default"] == value, name
        assert opt.get("description"), name
        kind = {str: "str", bool: "bool", int: "int", dict: "dict", list: "list"}[type(value)]
        assert opt["type"] == kind, name


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_public_variables_carry_the_role_prefix(role: str) -> None:
    defaults = yaml.safe_load((ROLES / role / "defaults" / "main.yml").read_text()) or {}
    prefix = "k3s_" if role == "_common" else f"{role}_"
    assert [k for k in defaults if not k.startswith(prefix)] == []
