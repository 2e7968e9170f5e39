# Copyright: pik3s developers
# Apache License 2.0 (see LICENSE)
"""Filter: the problems of a pik3s inventory (docs in k3s_inventory_problems.yml)."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.pik3s.cluster.plugins.module_utils.k3s_inventory import inventory_problems


def k3s_inventory_problems(inventory, owned_keys):
    if not isinstance(inventory, dict) or not isinstance(owned_keys, dict):
        raise AnsibleFilterError("k3s_inventory_problems expects an inventory description and the owned-keys map")
    try:
        return inventory_problems(inventory, owned_keys)
    except (KeyError, TypeError) as exc:
        raise AnsibleFilterError(f"malformed inventory description: {exc}") from None


class FilterModule:
    def filters(self):
        return {"k3s_inventory_problems": k3s_inventory_problems}
