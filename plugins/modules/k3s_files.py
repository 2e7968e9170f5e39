#!/usr/bin/python
# Copyright: pik3s developers
# Apache License 2.0 (see LICENSE)
"""Write the files pik3s manages on a host in one call, each atomically."""

from __future__ import annotations

DOCUMENTATION = r"""
module: k3s_files
author: pik3s developers (@pik3s)
version_added: 0.1.0
short_description: Put every file pik3s manages on a host in place in one call, each atomically
description:
  - Takes the files, links, directories and marked blocks a role manages and changes only those that
    differ from what is asked, in one module call.
  - Every file is written to a temporary file in its own directory, with its final owner and mode,
    flushed to disk, and renamed over the old one, so a power cut or a killed run leaves either the
    old or the new file, never half of one. A file that did not exist starts no more readable than
    mode 0600 until its final mode is set.
  - The action plugin of the same name runs on the controller first. Given the host's state read by
    M(pik3s.cluster.k3s_host_info) in O(known), it leaves out every entry that already matches, and
    skips the round trip to the host when all do. It transfers controller files (O(files[].src)) to
    the host for this module.
  - Secret entries (O(files[].secret)) are passed to the module as no_log values and never shown in a
    diff.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
attributes:
  action:
    support: full
  async:
    support: none
  bypass_host_loop:
    support: none
  check_mode:
    support: full
  diff_mode:
    support: full
    details: Text files and blocks show their change; secret and binary files only that they changed.
  platform:
    platforms: posix
options:
  files:
    description: What to put in place, in order (a directory before the files in it).
    type: list
    elements: dict
    required: true
    suboptions: &entry
      path:
        description: The path on the host. A leading C(~user/) is expanded to that user's home.
        type: str
        required: true
      state:
        description:
          - C(file) a file with O(files[].content), the controller file O(files[].src), or a copy of the
            host file O(files[].remote_src); C(directory); C(link) to O(files[].target); C(absent) (a
            file or link removed); C(block) the marked block O(files[].block) in a text file.
        type: str
        choices: [file, directory, link, absent, block]
        default: file
      content:
        description: The file's text.
        type: str
      src:
        description: A file on the controller (a binary, an image tarball); the action transfers it.
        type: path
      tmp_src:
        description: Internal, set by the action plugin - where on the host the transferred O(files[].src) is.
        type: str
      checksum:
        description: The sha256 of O(files[].src), when known (the verified release checksum).
        type: str
      remote_src:
        description: A file on the host to copy (the admin kubeconfig for the login user).
        type: str
      target:
        description: The target of a link.
        type: str
      force:
        description: For a link, replace a file that is not a link. Without it such a file is kept.
        type: bool
        default: false
      block:
        description: The text between the markers, for O(files[].state=block).
        type: str
      marker:
        description: The marker line, C({mark}) standing for C(BEGIN) and C(END).
        type: str
      owner:
        description: Owner; default root for new files and directories.
        type: str
      group:
        description: Group; default the owner's group for new files and directories.
        type: str
      mode:
        description: Mode as octal digits (C('0600')); default 0644 for new files, 0755 for directories.
        type: str
      secret:
        description: The content is secret; passed as a no_log value, never shown in a diff.
        type: bool
        default: false
      label:
        description: A short name for the entry in the result (the path when not given).
        type: str
  secrets:
    description:
      - Internal, set by the action plugin - the entries marked O(files[].secret), their content and block
        passed as no_log values.
    type: list
    elements: dict
    default: []
    suboptions: *entry
  known:
    description:
      - The C(files) result of M(pik3s.cluster.k3s_host_info) for this host. Entries it shows as already
        right are not sent to the host. Used by the action plugin only.
    type: dict
    default: {}
  known_blocks:
    description: The C(blocks) result of M(pik3s.cluster.k3s_host_info), for O(files[].state=block) entries.
    type: dict
    default: {}
  fingerprint_key:
    description:
      - The key M(pik3s.cluster.k3s_host_info) fingerprinted secret files with, to compare them on the
        controller.
    type: str
    default: ""
notes:
  - The action plugin passes the module the entries left to write, the secret ones apart in O(secrets);
    O(known), O(known_blocks) and O(fingerprint_key) are used by the action only.
seealso:
  - module: pik3s.cluster.k3s_host_info
"""

EXAMPLES = r"""
- name: Write the K3s files that differ
  pik3s.cluster.k3s_files:
    files:
      - {path: /etc/rancher/k3s, state: directory, mode: "0755"}
      - {path: /etc/rancher/k3s/config.yaml, content: "{{ config_text }}", mode: "0600"}
      - {path: /etc/rancher/k3s/cluster-token, content: "{{ token }}\n", mode: "0600", secret: true}
      - {path: /usr/local/bin/k3s, src: "{{ cache }}/k3s", checksum: "{{ sha }}", mode: "0755"}
      - {path: /usr/local/bin/kubectl, state: link, target: /usr/local/bin/k3s}
    known: "{{ host_state.files }}"
    fingerprint_key: "{{ run_key }}"
  register: written
"""

RETURN = r"""
leftovers_removed:
  description:
    - Temporary files of earlier writers that died mid-write (a killed run, a power cut), removed from the
      directories of this call's files; the files they were replacing had stayed intact.
  returned: always
  type: list
  elements: str
changed_paths:
  description: The paths that changed (or would change in check mode), in order.
  returned: always
  type: list
  elements: str
files:
  description:
    - Per entry, its path, label and what was done (created, updated, attributes, linked, removed, unchanged,
      kept).
  returned: always
  type: list
  elements: dict
host_calls:
  description: Module calls made on the host (0 when every entry already matched). Returned by the action plugin.
  returned: always
  type: int
"""

import errno
import grp
import inspect
import os
import pwd
import tempfile

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.pik3s.cluster.plugins.module_utils.k3s_digest import (
    mode_string,
    sha256_file,
    to_bytes,
    user_path,
)

_ENTRY = {
    "path": {"type": "str", "required": True},
    "state": {"type": "str", "default": "file", "choices": ["file", "directory", "link", "absent", "block"]},
    "content": {"type": "str"},
    "src": {"type": "path"},
    "tmp_src": {"type": "str"},
    "checksum": {"type": "str"},
    "remote_src": {"type": "str"},
    "target": {"type": "str"},
    "force": {"type": "bool", "default": False},
    "block": {"type": "str"},
    "marker": {"type": "str"},
    "owner": {"type": "str"},
    "group": {"type": "str"},
    "mode": {"type": "str"},
    "secret": {"type": "bool", "default": False},
    "label": {"type": "str"},
}
ARGUMENT_SPEC = {
    "files": {"type": "list", "elements": "dict", "required": True, "options": _ENTRY},
    # Secret entries, as the action passes them: their content is no_log, so it is in no log, journal line
    # or result (AnsibleModule masks it wherever it would appear).
    "secrets": {"type": "list", "elements": "dict", "default": [], "no_log": False,
                "options": dict(_ENTRY, content={"type": "str", "no_log": True},
                                block={"type": "str", "no_log": True})},
    "known": {"type": "dict", "default": {}},
    "known_blocks": {"type": "dict", "default": {}},
    "fingerprint_key": {"type": "str", "default": "", "no_log": True},
}


def _move_args(module):
    """ansible-core 2.17 has no keep_dest_attrs: its atomic_move copies the old file's attributes, which the
    final attributes then replace; later releases can leave them out."""
    params = inspect.signature(module.atomic_move).parameters
    return {"keep_dest_attrs": False} if "keep_dest_attrs" in params else {}


def _expand(path):
    try:
        return user_path(path)
    except KeyError as exc:
        raise OSError(errno.ENOENT, exc.args[0]) from None


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.EISDIR):
            return None
        raise


def _fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _user(uid):
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group(gid):
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def _primary_group(owner):
    try:
        return _group(pwd.getpwnam(owner).pw_gid)
    except KeyError:
        return None


class Writer:
    def __init__(self, module):
        self.module = module
        self.check = module.check_mode
        self.want_diff = module._diff
        self.results = []
        self.diffs = []

    # -- attributes -------------------------------------------------------------

    def _final_attrs(self, entry, path, default_mode):
        """The attributes a path must end with: the entry's, else the current file's, else the defaults
        (root, the owner's group, default_mode)."""
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            st = None
        owner = entry["owner"] or (_user(st.st_uid) if st else "root")
        return {"mode": mode_string(entry["mode"] or (st.st_mode & 0o7777 if st else default_mode)),
                "owner": owner, "group": entry["group"] or (_group(st.st_gid) if st else _primary_group(owner))}

    def _apply(self, attrs, path, changed):
        args = self.module.load_file_common_arguments(dict(attrs, path=path))
        return self.module.set_fs_attributes_if_different(args, changed)

    def _attrs_only(self, entry, path, default_mode):
        """The path's content is right: fix its owner and mode if needed (or say they would change)."""
        return "attributes" if self._apply(self._final_attrs(entry, path, default_mode), path, False) else "unchanged"

    # -- writes -----------------------------------------------------------------

    def _write_atomic(self, entry, path, data, default_mode):
        attrs = self._final_attrs(entry, path, default_mode)
        directory = os.path.dirname(path) or "."
        self._ensure_parents(directory)
        if os.path.isfile(path) and not os.path.islink(path):
            # First make the old file no more readable than the new one will be, so the new content is
            # never exposed more than its final mode allows, even for an instant.
            current = os.stat(path).st_mode & 0o7777
            final = int(attrs["mode"], 8)
            if current & ~final:
                os.chmod(path, current & final)
        old_umask = os.umask(0o077)
        try:
            fd, tmp = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{os.getpid()}-", dir=directory)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                self._apply(attrs, tmp, True)
                self.module.atomic_move(tmp, path, unsafe_writes=False, **_move_args(self.module))
            except BaseException:
                if os.path.exists(tmp):
                    os.unlink(tmp)
                raise
        finally:
            os.umask(old_umask)
        self._apply(attrs, path, True)
        _fsync_dir(directory)

    def _ensure_parents(self, directory):
        missing = []
        while directory and not os.path.isdir(directory):
            missing.append(directory)
            directory = os.path.dirname(directory)
        for d in reversed(missing):
            os.mkdir(d, 0o755)

    def _diff(self, entry, before, after, secret):
        if not self.want_diff:
            return
        header = {"before_header": entry["path"], "after_header": entry["path"]}
        if secret:
            self.diffs.append(dict(header, before="(secret content not shown)\n" if before is not None else "",
                                   after="(secret content not shown, changed)\n"))
            return
        try:
            self.diffs.append(dict(header, before="" if before is None else before.decode("utf-8"),
                                   after=after.decode("utf-8")))
        except UnicodeDecodeError:
            self.diffs.append(dict(header, before="(binary file)\n" if before is not None else "",
                                   after="(binary file, changed)\n"))

    def _record(self, entry, path, action):
        self.results.append({"path": entry["path"], "real_path": path, "label": entry["label"] or entry["path"],
                             "action": action})
        return action

    @staticmethod
    def _current_file(path):
        return _read(path) if os.path.isfile(path) and not os.path.islink(path) else None

    # -- entry kinds ------------------------------------------------------------

    def file(self, entry, path, secret):
        if entry["tmp_src"] is not None or (entry["checksum"] and entry["content"] is None
                                            and entry["remote_src"] is None):
            return self._file_from_transfer(entry, path)
        if entry["remote_src"] is not None:
            data = _read(_expand(entry["remote_src"]))
            if data is None:
                self.module.fail_json(msg=f"{entry['remote_src']} does not exist on the host: nothing to copy to "
                                          f"{entry['path']}", files=self.results)
            secret = True  # a copy of a host file: its content stays on the host
        elif entry["content"] is not None:
            data = to_bytes(entry["content"])
        else:
            self.module.fail_json(msg=f"{entry['path']}: a file needs content, src or remote_src")
        before = self._current_file(path)
        if before == data:
            return self._record(entry, path, self._attrs_only(entry, path, "0644"))
        self._diff(entry, before, data, secret)
        if not self.check:
            self._write_atomic(entry, path, data, "0644")
        return self._record(entry, path, "updated" if before is not None else "created")

    def _file_from_transfer(self, entry, path):
        want = (entry["checksum"] or "").lower()
        if self._current_file(path) is not None and want and sha256_file(path) == want:
            return self._record(entry, path, self._attrs_only(entry, path, "0755"))
        existed = os.path.lexists(path)
        self._diff(entry, b"\0" if existed else None, b"\0", False)
        if self.check:
            return self._record(entry, path, "updated" if existed else "created")
        tmp_src = entry["tmp_src"]
        if tmp_src is None:
            self.module.fail_json(msg=f"{entry['path']}: no transferred file to put in place")
        if want and sha256_file(tmp_src) != want:
            self.module.fail_json(msg=f"{entry['path']}: the file transferred from the controller does not match "
                                      f"its sha256 {want}; nothing was replaced")
        with open(tmp_src, "rb") as f:
            data = f.read()
        self._write_atomic(entry, path, data, "0755")
        return self._record(entry, path, "updated" if existed else "created")

    def directory(self, entry, path):
        if os.path.isdir(path) and not os.path.islink(path):
            return self._record(entry, path, self._attrs_only(entry, path, "0755"))
        if os.path.lexists(path):
            self.module.fail_json(msg=f"{path} exists and is not a directory; move it away", files=self.results)
        if not self.check:
            attrs = self._final_attrs(entry, path, "0755")
            self._ensure_parents(os.path.dirname(path))
            os.mkdir(path, 0o700)
            self._apply(attrs, path, True)
        return self._record(entry, path, "created")

    def link(self, entry, path):
        target = entry["target"]
        if os.path.islink(path):
            if os.readlink(path) == target:
                return self._record(entry, path, "unchanged")
        elif os.path.lexists(path) and not entry["force"]:
            return self._record(entry, path, "kept")
        if not self.check:
            self._ensure_parents(os.path.dirname(path))
            tmp = os.path.join(os.path.dirname(path), f".pik3s-{os.getpid()}-{os.path.basename(path)}")
            if os.path.lexists(tmp):
                os.unlink(tmp)
            os.symlink(target, tmp)
            os.rename(tmp, path)  # atomic: the old link or file until the new link is there
            _fsync_dir(os.path.dirname(path))
        return self._record(entry, path, "linked")

    def absent(self, entry, path):
        if not os.path.lexists(path):
            return self._record(entry, path, "unchanged")
        if os.path.isdir(path) and not os.path.islink(path):
            self.module.fail_json(msg=f"{path} is a directory; pik3s removes files and links only")
        if not self.check:
            os.unlink(path)
            _fsync_dir(os.path.dirname(path) or ".")
        return self._record(entry, path, "removed")

    def block(self, entry, path, secret):
        marker = entry["marker"] or "# {mark} pik3s"
        begin, end = marker.replace("{mark}", "BEGIN"), marker.replace("{mark}", "END")
        before = self._current_file(path)
        lines = [] if before is None else before.decode("utf-8").splitlines()
        wanted = [begin, *(entry["block"] or "").splitlines(), end]
        if begin in lines and end in lines[lines.index(begin):]:
            start = lines.index(begin)
            stop = lines.index(end, start)
            new_lines = lines[:start] + wanted + lines[stop + 1:]
        else:
            new_lines = wanted + lines  # at the beginning: before the early return of a shell rc file
        data = ("\n".join(new_lines) + "\n").encode("utf-8")
        if before == data:
            return self._record(entry, path, self._attrs_only(entry, path, "0644"))
        self._diff(entry, before, data, secret)
        if not self.check:
            self._write_atomic(entry, path, data, "0644")
        return self._record(entry, path, "updated" if before is not None else "created")


# Temporary files are named .pik3s-<pid of the writer>-<random>: one whose writer is gone was left by a
# run killed mid-write (the file it was replacing is intact), and is removed by the next write there.
TMP_PREFIX = ".pik3s-"


def remove_leftovers(directories):
    """Remove the temporary files of writers that died (killed run, power cut) from ``directories``."""
    removed = []
    for directory in sorted(set(directories)):
        try:
            names = os.listdir(directory)
        except OSError:
            continue
        for name in names:
            if not name.startswith(TMP_PREFIX):
                continue
            pid = name[len(TMP_PREFIX):].partition("-")[0]
            if pid.isdigit() and _alive(int(pid)):
                continue  # another run is writing there now
            try:
                os.unlink(os.path.join(directory, name))
                removed.append(os.path.join(directory, name))
            except OSError:
                pass
    return removed


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    writer = Writer(module)
    entries = [(e, e["secret"]) for e in module.params["files"]] + [(e, True) for e in module.params["secrets"]]
    directories = []
    for entry, _secret in entries:
        if entry["state"] in ("file", "block"):
            try:
                directories.append(os.path.dirname(_expand(entry["path"])))
            except OSError:
                pass  # reported below, with the entry
    leftovers = [] if module.check_mode else remove_leftovers(directories)
    entries.sort(key=lambda pair: pair[0]["path"].count("/"))  # directories before what is in them
    for entry, secret in entries:
        try:
            path = _expand(entry["path"])
            kind = entry["state"]
            if kind == "file":
                writer.file(entry, path, secret)
            elif kind == "directory":
                writer.directory(entry, path)
            elif kind == "link":
                writer.link(entry, path)
            elif kind == "absent":
                writer.absent(entry, path)
            else:
                writer.block(entry, path, secret)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                module.fail_json(msg=f"the disk is full: writing {entry['path']} failed ({exc.strerror}) on the "
                                     f"filesystem of {os.path.dirname(path) or '/'}; {entry['path']} was left as it "
                                     "was (each file is replaced whole or not at all). Free space there, then re-run.",
                                 files=writer.results)
            module.fail_json(msg=f"{entry['path']}: {exc.strerror or exc}", files=writer.results)
    changed_paths = [r["path"] for r in writer.results if r["action"] not in ("unchanged", "kept")]
    result = {"changed": bool(changed_paths or leftovers), "changed_paths": changed_paths, "files": writer.results,
              "leftovers_removed": leftovers}
    if writer.diffs:
        result["diff"] = writer.diffs
    module.exit_json(**result)


if __name__ == "__main__":
    main()
