# Copyright: pik3s developers
# Apache License 2.0 (see LICENSE)
"""On the controller: which of the entries given to pik3s.cluster.k3s_files
already match the host, judged from the state pik3s.cluster.k3s_host_info
read (its ``files`` and ``blocks``), so that only the others go to the host.

An entry matches only when the state proves it: a path the state does not
describe, or a secret compared without a fingerprint key, never matches."""

from __future__ import annotations

from ansible_collections.pik3s.cluster.plugins.module_utils.k3s_digest import (
    fingerprint,
    mode_string,
    sha256_bytes,
    sha256_file,
)

STATES = ("file", "directory", "link", "absent", "block")
_KEYS = {"path", "state", "content", "src", "checksum", "remote_src", "target", "force", "block", "marker",
         "owner", "group", "mode", "secret", "label"}


class EntryError(ValueError):
    """An entry that cannot be written as given. The message never holds its content."""


def normalize(entry):
    """The entry checked and with its defaults; raises EntryError naming the path and the problem."""
    if not isinstance(entry, dict):
        raise EntryError(f"each entry of files must be a dict, not {type(entry).__name__}")
    path = entry.get("path")
    if not isinstance(path, str) or not path:
        raise EntryError("an entry of files has no path")
    unknown = sorted(set(entry) - _KEYS)
    if unknown:
        raise EntryError(f"{path}: unknown keys {', '.join(unknown)}")
    out = {k: entry.get(k) for k in _KEYS}
    out["state"] = out["state"] or "file"
    out["secret"] = bool(out["secret"])
    out["force"] = bool(out["force"])
    if out["state"] not in STATES:
        raise EntryError(f"{path}: state must be one of {', '.join(STATES)}, not {out['state']!r}")
    if out["state"] == "file":
        sources = [k for k in ("content", "src", "remote_src") if out[k] is not None]
        if len(sources) != 1:
            raise EntryError(f"{path}: a file needs exactly one of content, src, remote_src (got "
                             f"{', '.join(sources) or 'none'})")
    if out["state"] == "link" and not out["target"]:
        raise EntryError(f"{path}: a link needs a target")
    if out["state"] == "block" and (out["block"] is None or not out["marker"]):
        raise EntryError(f"{path}: a block needs block and marker")
    try:
        out["mode"] = mode_string(out["mode"]) or None
    except ValueError as exc:
        raise EntryError(f"{path}: {exc}") from None
    for key in ("content", "block"):
        if out[key] is not None:
            out[key] = str(out[key])
    return out


def _attrs_match(entry, known):
    return all(not entry[k] or known.get(k) == entry[k] for k in ("mode", "owner", "group"))


def _digest_match(known, want_sha, want_fp):
    if want_sha is not None:
        return known.get("sha256") == want_sha
    return bool(want_fp) and known.get("fingerprint") == want_fp


def matches(entry, known, blocks=None, key="", src_sha256=None):
    """Whether the normalized ``entry`` is already right according to the host state.

    ``known``: path -> facts (k3s_host_info ``files``); ``blocks``: path -> text between the markers;
    ``key``: the fingerprint key of the state; ``src_sha256``: sha256 of a controller ``src`` file."""
    facts = known.get(entry["path"])
    if not isinstance(facts, dict):
        return False
    kind = entry["state"]
    if kind == "absent":
        return facts.get("exists") is False
    if not facts.get("exists"):
        return False
    if kind == "directory":
        return facts.get("type") == "directory" and _attrs_match(entry, facts)
    if kind == "link":
        if facts.get("type") == "link":
            return facts.get("link") == entry["target"]
        return not entry["force"]  # not a link, and not to be forced: the entry leaves it alone
    if facts.get("type") != "file" or not _attrs_match(entry, facts):
        return False
    if kind == "block":
        current = (blocks or {}).get(entry["path"])
        return current is not None and current == "\n".join(entry["block"].splitlines())
    if entry["content"] is not None:
        if entry["secret"]:
            return _digest_match(facts, None, fingerprint(key, entry["content"]))
        return _digest_match(facts, sha256_bytes(entry["content"]), None)
    if entry["src"] is not None:
        want = (entry["checksum"] or src_sha256 or "").lower()
        return bool(want) and facts.get("sha256") == want
    source = known.get(entry["remote_src"])
    if not isinstance(source, dict) or not source.get("exists"):
        return False
    if source.get("sha256"):
        return facts.get("sha256") == source["sha256"]
    return bool(source.get("fingerprint")) and facts.get("fingerprint") == source["fingerprint"]


def local_sha256(path):
    return sha256_file(path)
