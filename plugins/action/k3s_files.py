# Copyright: pik3s developers
# Apache License 2.0 (see LICENSE)
"""Action of pik3s.cluster.k3s_files (docs in plugins/modules/k3s_files.py):
leave out what the host state shows is right, transfer controller files,
then one module call for the rest."""

from __future__ import annotations

import os

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

from ansible_collections.pik3s.cluster.plugins.plugin_utils.k3s_files_plan import (
    EntryError,
    local_sha256,
    matches,
    normalize,
)

_MODULE_KEYS = ("path", "state", "content", "checksum", "remote_src", "target", "force", "block", "marker",
                "owner", "group", "mode", "label")


class ActionModule(ActionBase):
    # It does transfer files, but only when an entry needs it: the remote temporary directory is made then,
    # not before every run (ActionBase makes one up front for actions that set TRANSFERS_FILES).
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("files", "known", "known_blocks", "fingerprint_key"))

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        args = self._task.args
        known = args.get("known") or {}
        blocks = args.get("known_blocks") or {}
        key = args.get("fingerprint_key") or ""
        if not isinstance(known, dict) or not isinstance(blocks, dict):
            raise AnsibleActionFail("known and known_blocks must be the files and blocks results of k3s_host_info")
        raw = args.get("files")
        if not isinstance(raw, list):
            raise AnsibleActionFail("files must be a list of entries")
        try:
            entries = [normalize(e) for e in raw]
        except EntryError as exc:
            raise AnsibleActionFail(str(exc)) from None

        to_send = []
        for entry in entries:
            src_sha = None
            if entry["src"] is not None:
                if not os.path.isfile(entry["src"]):
                    raise AnsibleActionFail(f"{entry['path']}: the controller file {entry['src']} does not exist")
                src_sha = (entry["checksum"] or local_sha256(entry["src"])).lower()
                entry["checksum"] = src_sha
            entry["_match"] = matches(entry, known, blocks, key, src_sha)
            if not entry["_match"]:
                to_send.append(entry)

        outcome = {e["path"]: "unchanged" for e in entries if e["_match"]}
        module_result = {}
        if to_send:
            module_result = self._write(to_send, task_vars)
            if module_result.get("failed"):
                module_result["host_calls"] = 1
                return dict(result, **module_result)
            for item in module_result.get("files", []):
                outcome[item["path"]] = item["action"]
        changed_paths = [e["path"] for e in entries if outcome.get(e["path"], "unchanged") not in ("unchanged", "kept")]
        leftovers = module_result.get("leftovers_removed") or []
        result.update(
            changed=bool(changed_paths or leftovers), changed_paths=changed_paths, leftovers_removed=leftovers,
            host_calls=1 if to_send else 0,
            files=[{"path": e["path"], "label": e["label"] or e["path"], "action": outcome.get(e["path"], "unchanged")}
                   for e in entries])
        if module_result.get("diff"):
            result["diff"] = module_result["diff"]
        return result

    def _write(self, entries, task_vars):
        transfers = [e for e in entries if e["src"] is not None]
        try:
            if transfers and not self._task.check_mode:
                tmpdir = self._connection._shell.tmpdir or self._make_tmp_path()
                for i, entry in enumerate(transfers):
                    remote = self._connection._shell.join_path(tmpdir, f"k3s_files.{i}")
                    self._transfer_file(entry["src"], remote)
                    entry["tmp_src"] = remote
                self._fixup_perms2([tmpdir] + [e["tmp_src"] for e in transfers])
            files, secrets = [], []
            for entry in entries:
                item = {k: entry[k] for k in _MODULE_KEYS if entry[k] is not None}
                if entry.get("tmp_src"):
                    item["tmp_src"] = entry["tmp_src"]
                (secrets if entry["secret"] else files).append(item)
            return self._execute_module(module_name="pik3s.cluster.k3s_files",
                                        module_args={"files": files, "secrets": secrets}, task_vars=task_vars)
        finally:
            if self._connection._shell.tmpdir:
                self._remove_tmp_path(self._connection._shell.tmpdir)
