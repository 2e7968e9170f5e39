# Copyright: pik3s developers
# Apache License 2.0 (see LICENSE)
"""How pik3s compares a file on a host with the file it wants there, without
moving the content: one definition, used on the host (k3s_host_info,
k3s_files) and on the controller (the k3s_files action, the filters).

- Plain files: the sha256 of their bytes.
- Secret files (the token file, registries.yaml, env files): never a plain
  sha256, which would let anyone who sees the run's output test guesses of a
  short password. Their content is compared through an HMAC-SHA256 keyed
  with a random key the controller makes for the run and passes as a no_log
  module argument, so a fingerprint seen in any output says nothing about the
  content. A token file is fingerprinted by the token's password only: the
  short and the secure form of one token are the same token.
"""

from __future__ import annotations

import hashlib
import hmac
import pwd

from ansible_collections.pik3s.cluster.plugins.module_utils.k3s_token import TokenError, parse_token

_CHUNK = 1024 * 1024


def to_bytes(data):
    return data.encode("utf-8") if isinstance(data, str) else bytes(data)


def sha256_bytes(data):
    return hashlib.sha256(to_bytes(data)).hexdigest()


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fingerprint(key, data):
    """HMAC-SHA256 of ``data`` under ``key``; '' without a key (nothing to compare with)."""
    if not key:
        return ""
    return hmac.new(to_bytes(key), to_bytes(data), hashlib.sha256).hexdigest()


def token_fingerprint(key, text):
    """Fingerprint of a token file's content: its password when it parses as a
    token, else the whole stripped content (which then matches no good token)."""
    text = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    value = text.strip()
    try:
        value = parse_token(value)["password"]
    except TokenError:
        value = "malformed:" + value
    return fingerprint(key, value)


def mode_string(mode):
    """'0644' for 0o644, '0644' or 644 given as text or number of octal digits."""
    if mode is None or mode == "":
        return ""
    if isinstance(mode, int):
        return f"{mode:04o}"
    text = str(mode).strip()
    if not text.isdigit():
        raise ValueError(f"file mode {mode!r} is not octal digits like '0644'")
    return f"{int(text, 8):04o}"


def user_path(path):
    """``~user/rest`` with that user's home (from the password database, not the environment); other paths
    as they are. Raises KeyError naming the user when there is no such user."""
    if not path.startswith("~"):
        return path
    user, _sep, rest = path[1:].partition("/")
    try:
        home = pwd.getpwnam(user).pw_dir
    except KeyError:
        raise KeyError(f"no such user: {user}") from None
    return home.rstrip("/") + "/" + rest if rest else home
