# Copyright: pik3s developers
# Apache License 2.0 (see LICENSE)
"""Filters: why an upgrade between two K3s releases is refused, and the release named in a text (docs in
k3s_upgrade_problem.yml and k3s_release_in_text.yml)."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.pik3s.cluster.plugins.module_utils.k3s_version import release_in_text, upgrade_problem


def k3s_upgrade_problem(current, target, force=False):
    try:
        return upgrade_problem(current, target, force)
    except ValueError as exc:
        raise AnsibleFilterError(str(exc)) from None


def k3s_release_in_text(text):
    return release_in_text(str(text or ""))


class FilterModule:
    def filters(self):
        return {"k3s_upgrade_problem": k3s_upgrade_problem, "k3s_release_in_text": k3s_release_in_text}
