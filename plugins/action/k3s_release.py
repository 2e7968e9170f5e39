# Copyright: pik3s developers
# Apache License 2.0 (see LICENSE)
"""Action of pik3s.cluster.k3s_release (docs in plugins/modules/k3s_release.py):
runs on the controller only; the rules are in plugin_utils/k3s_release.py."""

from __future__ import annotations

from ansible.errors import AnsibleActionFail
from ansible.module_utils.urls import open_url
from ansible.plugins.action import ActionBase

from ansible_collections.pik3s.cluster.plugins.plugin_utils.k3s_release import ReleaseError, prepare, resolve_version


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("version", "channel", "channel_url", "release_url", "airgap_dir", "cache_dir",
                             "architectures", "validate_certs", "timeout"))

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        args = self._task.args
        validate_certs = bool(args.get("validate_certs", True))
        timeout = int(args.get("timeout", 30))

        def opener(url, follow_redirects="safe"):
            return open_url(url, follow_redirects=follow_redirects, validate_certs=validate_certs, timeout=timeout,
                            http_agent="pik3s")

        airgap_dir = str(args.get("airgap_dir") or "")
        cache_dir = str(args.get("cache_dir") or "")
        if not airgap_dir and not cache_dir:
            raise AnsibleActionFail("cache_dir is required unless airgap_dir is set")
        architectures = args.get("architectures") or []
        if not isinstance(architectures, list):
            raise AnsibleActionFail("architectures must be a list of CPU names (uname -m)")
        try:
            version = resolve_version(str(args.get("version") or ""), str(args.get("channel") or "stable"),
                                      str(args.get("channel_url") or ""), airgap_dir, opener)
            release = prepare(version, [str(a) for a in architectures], str(args.get("release_url") or ""),
                              cache_dir, airgap_dir, opener)
        except ReleaseError as exc:
            raise AnsibleActionFail(str(exc)) from None
        result.update(changed=False, **release)
        return result
