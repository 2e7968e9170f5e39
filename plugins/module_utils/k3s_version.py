# Copyright: pik3s developers
# Apache License 2.0 (see LICENSE)
"""The one grammar of K3s release names (vX.Y.Z+k3sN) and the upgrade rules:
no downgrade, no skipped minor version (Kubernetes upgrades one minor at a
time), unless forced."""

from __future__ import annotations

import re

_RELEASE = re.compile(r"v(?P<major>\d+)\.(?P<minor>\d+)\.(?P<patch>\d+)\+k3s(?P<rev>\d+)")


def is_release(value):
    """Whether ``value`` is a K3s release name (vX.Y.Z+k3sN), exactly: no whitespace around it."""
    return isinstance(value, str) and _RELEASE.fullmatch(value) is not None


def release_in_text(text):
    """The first release name in a text (such as ``k3s --version`` output); '' when there is none."""
    match = _RELEASE.search(text) if isinstance(text, str) else None
    return match.group(0) if match else ""


def parse_version(value):
    """(major, minor, patch, k3s revision) of a release name such as v1.31.4+k3s1."""
    match = _RELEASE.fullmatch(value) if isinstance(value, str) else None
    if not match:
        raise ValueError(f"{value!r} is not a K3s release name like v1.31.4+k3s1")
    return tuple(int(match.group(k)) for k in ("major", "minor", "patch", "rev"))


def upgrade_problem(current, target, force=False):
    """Why going from ``current`` to ``target`` is refused; '' when it is fine
    (including when they are the same release)."""
    cur, tgt = parse_version(current), parse_version(target)
    if force or tgt == cur:
        return ""
    if tgt < cur:
        return (f"{current} -> {target} is a downgrade: K3s does not support going back (the datastore may "
                "already be migrated); restore a backup taken on the older release instead, or set "
                "k3s_upgrade_force=true if you know it is safe")
    if tgt[:2] == cur[:2] or (tgt[0] == cur[0] and tgt[1] == cur[1] + 1):
        return ""
    skipped = ", ".join(f"v{cur[0]}.{m}" for m in range(cur[1] + 1, tgt[1])) if tgt[0] == cur[0] else "a major version"
    return (f"{current} -> {target} skips {skipped}: Kubernetes upgrades one minor version at a time; "
            f"upgrade to v{cur[0]}.{cur[1] + 1} first (or set k3s_upgrade_force=true)")
