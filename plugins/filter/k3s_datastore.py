# Copyright: pik3s developers
# Apache License 2.0 (see LICENSE)
"""Filters on K3s's external datastore (docs in k3s_datastore_*.yml). Never show a password."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.pik3s.cluster.plugins.plugin_utils import k3s_datastore


def _endpoint(value):
    if not isinstance(value, str):
        raise AnsibleFilterError(f"a datastore endpoint must be a string, not {type(value).__name__}")
    return value


def k3s_datastore_shown(value):
    return k3s_datastore.shown(_endpoint(value))


def k3s_datastore_backup_hint(value, cafile="", certfile="", keyfile=""):
    return k3s_datastore.shown(k3s_datastore.backup_hint(_endpoint(value), cafile, certfile, keyfile))


class FilterModule:
    def filters(self):
        return {
            "k3s_datastore_shown": k3s_datastore_shown,
            "k3s_datastore_backup_hint": k3s_datastore_backup_hint,
        }
