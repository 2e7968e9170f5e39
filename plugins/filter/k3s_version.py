# Copyright: pik3s developers
# Apache License 2.0 (see LICENSE)
"""Filter: why an upgrade between two K3s releases is refused (docs in k3s_upgrade_problem.yml)."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.pik3s.cluster.plugins.module_utils.k3s_version import upgrade_problem


def k3s_upgrade_problem(current, target, force=False):
    try:
        return upgrade_problem(current, target, force)
    except ValueError as exc:
        raise AnsibleFilterError(str(exc)) from None


class FilterModule:
    def filters(self):
        return {"k3s_upgrade_problem": k3s_upgrade_problem}
