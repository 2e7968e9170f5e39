# Copyright: pik3s developers
# Apache License 2.0 (see LICENSE)
"""Filters on K3s join tokens (docs in k3s_token_*.yml). Errors never show the token."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.pik3s.cluster.plugins.module_utils.k3s_digest import token_fingerprint
from ansible_collections.pik3s.cluster.plugins.module_utils.k3s_token import TokenError, mask_token, parse_token


def _parse(value):
    try:
        return parse_token(value)
    except TokenError as exc:
        raise AnsibleFilterError(str(exc)) from None


def k3s_token_parse(value):
    return _parse(value)


def k3s_token_password(value):
    return _parse(value)["password"]


def k3s_token_ca_hash(value):
    return _parse(value)["ca_hash"]


def k3s_token_error(value):
    """The problem with a token, or an empty string when it is well formed. Never raises."""
    try:
        parse_token(value)
    except TokenError as exc:
        return str(exc)
    return ""


def k3s_token_mask(value):
    try:
        return mask_token(value)
    except TokenError as exc:
        raise AnsibleFilterError(str(exc)) from None


def k3s_token_fingerprint(value, key):
    """The fingerprint k3s_host_info reports for a token file holding this token ('' without a key)."""
    if not isinstance(value, str):
        raise AnsibleFilterError(f"a K3s token must be a string, not {type(value).__name__}")
    return token_fingerprint(key, value)


class FilterModule:
    def filters(self):
        return {
            "k3s_token_parse": k3s_token_parse,
            "k3s_token_password": k3s_token_password,
            "k3s_token_ca_hash": k3s_token_ca_hash,
            "k3s_token_mask": k3s_token_mask,
            "k3s_token_error": k3s_token_error,
            "k3s_token_fingerprint": k3s_token_fingerprint,
        }
