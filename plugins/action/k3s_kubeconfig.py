# Copyright: pik3s developers
# Apache License 2.0 (see LICENSE)
"""Action of pik3s.cluster.k3s_kubeconfig (docs in plugins/modules/k3s_kubeconfig.py):
the admin kubeconfig of a server, shaped for the controller, written there
(and merged into the operator's kubeconfig), read from the server only when
it changed since the controller's copy was written."""

from __future__ import annotations

import base64
import os
import re
import shutil
import tempfile
import time

import yaml
from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

from ansible_collections.pik3s.cluster.plugins.module_utils import k3s_kubeconfig
from ansible_collections.pik3s.cluster.plugins.module_utils.k3s_digest import sha256_bytes

_STAMP = re.compile(r"^# pik3s: from (?P<src>\S+) sha256 (?P<sha>[0-9a-f]{64})$")


def stamp_line(host, src, sha):
    return f"# pik3s: from {host}:{src} sha256 {sha}"


def read_text(path):
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        return None


def stamped_source(text):
    """The sha256 of the server file a kubeconfig pik3s wrote was made from (None if not stamped)."""
    m = _STAMP.match(text.splitlines()[0]) if text else None
    return m.group("sha") if m else None


def points_at(text, name, server):
    """Whether a kubeconfig's current context is ``name`` and its first cluster's server ``server``."""
    try:
        doc = yaml.safe_load(text)
        return doc.get("current-context") == name and doc["clusters"][0]["cluster"]["server"] == server
    except (yaml.YAMLError, AttributeError, LookupError, TypeError):
        return False


def write_private(path, text):
    """Write ``text`` to ``path`` atomically, mode 0600, its directory created 0700."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, mode=0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".pik3s-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.rename(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def dump(doc):
    return yaml.safe_dump(doc, default_flow_style=False, sort_keys=False, indent=2)


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("src", "source_sha256", "dest", "cluster_name", "server", "merge", "merge_path"))

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        args = self._task.args
        src, dest = str(args.get("src") or ""), str(args.get("dest") or "")
        name, server = str(args.get("cluster_name") or ""), str(args.get("server") or "")
        if not src or not dest or not name or not server:
            raise AnsibleActionFail("src, dest, cluster_name and server are required")
        merge = bool(args.get("merge", False))
        merge_path = str(args.get("merge_path") or "")
        if merge and not merge_path:
            raise AnsibleActionFail("merge_path is required with merge")
        host = task_vars.get("inventory_hostname", "")
        check = self._task.check_mode

        current = read_text(dest)
        source_sha = str(args.get("source_sha256") or "")
        if source_sha and current and stamped_source(current) == source_sha and points_at(current, name, server):
            text, host_calls = current, 0
        else:
            host_calls = 1
            slurped = self._execute_module(module_name="ansible.legacy.slurp", module_args={"src": src},
                                           task_vars=task_vars)
            if slurped.get("failed"):
                raise AnsibleActionFail(f"could not read {src} on {host}: {slurped.get('msg', '')}")
            raw = base64.b64decode(slurped["content"])
            try:
                doc = k3s_kubeconfig.rename(yaml.safe_load(raw), name, server)
            except (ValueError, yaml.YAMLError) as exc:
                raise AnsibleActionFail(f"{host}:{src} is not the kubeconfig K3s writes: {exc}") from None
            text = stamp_line(host, src, sha256_bytes(raw)) + "\n" + dump(doc)
        changed = text != current
        if changed and not check:
            write_private(dest, text)
        merged = False
        if merge:
            existing_text = read_text(merge_path)
            try:
                existing = yaml.safe_load(existing_text) if existing_text else None
                new = k3s_kubeconfig.merge(existing, yaml.safe_load(text))
            except (ValueError, yaml.YAMLError) as exc:
                raise AnsibleActionFail(f"cannot merge into {merge_path}: {exc}") from None
            if new != existing:
                merged = True
                if not check:
                    if existing_text is not None:
                        backup = f"{merge_path}.{time.strftime('%Y%m%dT%H%M%S')}.bak"
                        shutil.copy2(merge_path, backup)
                        os.chmod(backup, 0o600)
                    write_private(merge_path, dump(new))
        result.update(changed=changed or merged, dest=dest, merged=merged, host_calls=host_calls)
        return result
