# Copyright: pik3s developers
# Apache License 2.0 (see LICENSE)
"""The one grammar of K3s join tokens.

Secure: ``K10<sha256 hex of the cluster CA bundle>::<username>:<password>``.
Short: the password alone. Errors name the problem, never the secret.
"""

from __future__ import annotations

import re

SECURE_PREFIX = "K10"
_SECURE = re.compile(r"^K10(?P<hash>[^:]*)::(?P<user>[^:]*):(?P<password>.*)$", re.S)
_HASH = re.compile(r"^[0-9a-f]{64}$")
_USER = re.compile(r"^[a-z][a-z0-9-]*$")
_PASSWORD = re.compile(r"^[\x21-\x7e]+$")  # printable ASCII, no spaces


class TokenError(ValueError):
    """A malformed token. The message never contains the token."""


def parse_token(token):
    """Split a token into its parts: format, ca_hash, username, password."""
    if not isinstance(token, str):
        raise TokenError(f"a K3s token must be a string, not {type(token).__name__}")
    if token == "":
        raise TokenError("the K3s token is empty")
    if token != token.strip():
        raise TokenError("the K3s token has leading or trailing whitespace")
    if token.startswith(SECURE_PREFIX):  # K3s reads every K10... token as a secure one
        m = _SECURE.fullmatch(token)
        if m is None:
            raise TokenError("malformed secure K3s token: expected K10<ca-hash>::<username>:<password>")
        if not _HASH.fullmatch(m.group("hash")):
            raise TokenError(
                "malformed secure K3s token: the CA hash after K10 must be 64 lowercase hex digits "
                f"(found {len(m.group('hash'))} characters)")
        if not _USER.fullmatch(m.group("user")):
            raise TokenError("malformed secure K3s token: the username must be lowercase letters, digits or '-'")
        if not _PASSWORD.fullmatch(m.group("password")):
            raise TokenError("malformed secure K3s token: the password is empty or has spaces or "
                             "non-ASCII characters")
        return {"format": "secure", "ca_hash": m.group("hash"), "username": m.group("user"),
                "password": m.group("password")}
    if not _PASSWORD.fullmatch(token):
        raise TokenError("malformed K3s token: a short token must be printable ASCII without spaces")
    if ":" in token:
        raise TokenError("malformed K3s token: a short token cannot contain ':' "
                         "(a secure token looks like K10<ca-hash>::<username>:<password>)")
    return {"format": "short", "ca_hash": None, "username": None, "password": token}


def mask_token(token):
    """A form of the token safe to show: the CA hash prefix and username, never the password."""
    parts = parse_token(token)
    if parts["format"] == "secure":
        return f"K10{parts['ca_hash'][:8]}...::{parts['username']}:********"
    return "********"


# A secure token inside any text (logs, command output): the password runs to
# the next blank, quote, backslash or JSON/YAML delimiter.
_SECURE_IN_TEXT = re.compile(r"K10[0-9a-f]{64}::[a-z][a-z0-9-]*:[\x21-\x7e]+?(?=[\s\"'\\,;}\]]|$)")


def mask_tokens_in_text(text):
    """``text`` with every secure K3s token in it replaced by its masked form."""
    if not isinstance(text, str) or "K10" not in text:
        return text
    return _SECURE_IN_TEXT.sub(lambda m: mask_token(m.group(0)), text)
