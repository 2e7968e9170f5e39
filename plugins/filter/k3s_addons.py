# Copyright: pik3s developers
# Apache License 2.0 (see LICENSE)
"""Filters k3s_addon_files (the files pik3s writes in K3s's auto-deploy directory) and k3s_ui_access
(where a UI add-on answers and who signs in); documented in k3s_addon_files.yml and k3s_ui_access.yml."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.pik3s.cluster.plugins.plugin_utils import k3s_addons


def k3s_addon_files(manifests, charts=(), addons=(), overrides=None, access="read-only", airgap_dir="",
                    rendered=None, vip=None):
    try:
        out, images = k3s_addons.files(charts, addons, overrides or {}, access, airgap_dir, vip)
        rendered = rendered or {}
        user = [{"name": m["name"], "content": k3s_addons.manifest_content(m, rendered.get(m["name"]))}
                for m in manifests or []]
    except (k3s_addons.AddonError, KeyError, TypeError, ValueError) as exc:
        raise AnsibleFilterError(f"k3s_addon_files: {exc}") from None
    return {"files": user + out, "images": images}


def k3s_ui_access(addon, overrides=None, access="read-only"):
    try:
        return k3s_addons.ui_access(addon, overrides or {}, access)
    except KeyError:
        raise AnsibleFilterError(f"k3s_ui_access: {addon!r} is not a UI add-on "
                                 f"({', '.join(k3s_addons.UI_ADDONS)})") from None


class FilterModule:
    def filters(self):
        return {"k3s_addon_files": k3s_addon_files, "k3s_ui_access": k3s_ui_access}
