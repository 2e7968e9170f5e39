# Copyright: pik3s developers
# Apache License 2.0 (see LICENSE)
"""Filters: the inventory as the rules see it, and its problems (rules in
plugin_utils/k3s_rules.py; docs in k3s_inventory_description.yml,
k3s_inventory_problems.yml, k3s_remove_problems.yml, k3s_remove_names.yml
and k3s_restore_problems.yml)."""

from __future__ import annotations

from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

from ansible_collections.pik3s.cluster.plugins.plugin_utils import k3s_rules


def _plain(value):
    """A variable's value as data: vault-encrypted strings decrypted (the playbook has the vault
    secrets; without them Ansible has already refused to run), containers copied."""
    if isinstance(value, Mapping):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if type(value).__name__ == "AnsibleVaultEncryptedUnicode":  # ansible-core before 2.19
        return str(value)
    return value


def k3s_inventory_description(hostvars, groups, archs=None, networks=None):
    if not isinstance(groups, Mapping):
        raise AnsibleFilterError("k3s_inventory_description expects hostvars and the groups mapping")
    try:
        description = k3s_rules.describe(hostvars, groups, dict(archs or {}), dict(networks or {}))
    except (KeyError, TypeError) as exc:
        raise AnsibleFilterError(f"k3s_inventory_description: {exc}") from None
    return _plain(description)


def k3s_inventory_problems(description):
    if not isinstance(description, Mapping):
        raise AnsibleFilterError("k3s_inventory_problems expects an inventory description "
                                 "(from pik3s.cluster.k3s_inventory_description)")
    return k3s_rules.inventory_problems(_plain(description))


def k3s_remove_problems(value, description):
    if not isinstance(description, Mapping):
        raise AnsibleFilterError("k3s_remove_problems expects k3s_remove and the inventory description")
    return k3s_rules.remove_problems(_plain(value), _plain(description))


def k3s_remove_names(value):
    return k3s_rules.remove_names(_plain(value))


def k3s_restore_problems(path):
    return k3s_rules.restore_problems(path)


class FilterModule:
    def filters(self):
        return {"k3s_inventory_description": k3s_inventory_description,
                "k3s_inventory_problems": k3s_inventory_problems,
                "k3s_remove_problems": k3s_remove_problems,
                "k3s_remove_names": k3s_remove_names,
                "k3s_restore_problems": k3s_restore_problems}
