from __future__ import annotations

import re

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.pik3s.cluster.plugins.filter.k3s_version import (
    FilterModule,
    k3s_release_in_text,
    k3s_upgrade_problem,
)


@pytest.mark.parametrize(("current", "target"), [
    ("v1.30.8+k3s1", "v1.30.8+k3s1"),   # already there
    ("v1.30.8+k3s1", "v1.30.8+k3s2"),   # new K3s revision
    ("v1.30.8+k3s1", "v1.30.10+k3s1"),  # patch (numeric, not text, order)
    ("v1.30.8+k3s1", "v1.31.4+k3s1"),   # next minor
    ("v1.29.12+k3s1", "v1.30.8+k3s1"),
])
def test_allowed(current: str, target: str) -> None:
    assert k3s_upgrade_problem(current, target) == ""


@pytest.mark.parametrize(("current", "target", "message"), [
    ("v1.31.4+k3s1", "v1.30.8+k3s1",
     "v1.31.4+k3s1 -> v1.30.8+k3s1 is a downgrade: K3s does not support going back (the datastore may "
     "already be migrated); restore a backup taken on the older release instead, or set "
     "k3s_upgrade_force=true if you know it is safe"),
    ("v1.30.8+k3s2", "v1.30.8+k3s1", "v1.30.8+k3s2 -> v1.30.8+k3s1 is a downgrade"),
    ("v1.30.10+k3s1", "v1.30.8+k3s1", "is a downgrade"),
    ("v1.29.12+k3s1", "v1.31.4+k3s1",
     "v1.29.12+k3s1 -> v1.31.4+k3s1 skips v1.30: Kubernetes upgrades one minor version at a time; "
     "upgrade to v1.30 first (or set k3s_upgrade_force=true)"),
    ("v1.28.1+k3s1", "v1.31.4+k3s1", "skips v1.29, v1.30:"),
    ("v1.31.4+k3s1", "v2.0.0+k3s1", "skips a major version"),
])
def test_refused(current: str, target: str, message: str) -> None:
    assert message in k3s_upgrade_problem(current, target)
    assert k3s_upgrade_problem(current, target, True) == ""  # forced


@pytest.mark.parametrize(("current", "target", "message"), [
    ("1.31.4", "v1.31.4+k3s1", "'1.31.4' is not a K3s release name like v1.31.4+k3s1"),
    ("v1.31.4+k3s1", "latest", "'latest' is not a K3s release name"),
    (None, "v1.31.4+k3s1", "None is not a K3s release name"),
])
def test_malformed(current: object, target: object, message: str) -> None:
    with pytest.raises(AnsibleFilterError, match=re.escape(message)):
        k3s_upgrade_problem(current, target)


@pytest.mark.parametrize(("text", "release"), [
    ("k3s version v1.31.4+k3s1 (a1b2c3d4)\ngo version go1.22.9", "v1.31.4+k3s1"),
    ("v1.30.10+k3s2", "v1.30.10+k3s2"),
    ("k3s version v1.31.4-rc1+k3s1", ""),
    ("", ""),
    (None, ""),
])
def test_release_in_text(text: str | None, release: str) -> None:
    assert k3s_release_in_text(text) == release


@pytest.mark.parametrize("value", ["v1.31.4+k3s1\n", " v1.31.4+k3s1", "v1.31.4+k3s1 "])
def test_whitespace_is_not_part_of_a_release_name(value: str) -> None:
    with pytest.raises(AnsibleFilterError, match="is not a K3s release name"):
        k3s_upgrade_problem(value, "v1.31.4+k3s1")


def test_registered() -> None:
    assert FilterModule().filters() == {"k3s_upgrade_problem": k3s_upgrade_problem,
                                        "k3s_release_in_text": k3s_release_in_text}
