"""Keep secrets out of everything the driver returns, prints or stores.

Three nets, applied to every string of every event before the event is
handed on or written (ansible-runner calls the event handler before it
writes ``job_events/``):

* values the caller or the inventory gave for secret-looking variables
  (``k3s_token``, ``*password*``, ``*secret*``, ``*_pass``, ...), replaced
  wherever they appear, whatever their length (a short secret masks
  ordinary text too: better garbled than leaked);
* any secure K3s token (``K10<ca-hash>::<user>:<password>``), whoever
  produced it (the first server's generated token read back, a log line),
  masked by the collection's one token grammar;
* private keys and kubeconfig client keys.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from pik3s.inventory import collection_module

MASK = "********"
_KEY_BLOCK = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S)
_KEY_DATA = re.compile(r"(client-key-data[\"']?\s*[:=]\s*[\"']?)[A-Za-z0-9+/=]+")


def mask_secret_assignments(text: str) -> str:
    """``text`` with the value of every assignment to a secret-named variable masked (a source line a
    parser quotes before pik3s knows any value), and any secure K3s token in it: the collection's rule."""
    return str(collection_module("k3s_rules", "plugin_utils").mask_secret_assignments(text))


def secret_values(variables: Mapping[str, Any]) -> set[str]:
    """Values of secret-looking variables in ``variables`` (nested dicts and lists searched too), by the
    collection's one rule of secret names."""
    found: set[str] = set()
    is_secret = collection_module("k3s_rules", "plugin_utils").is_secret_name

    def walk(name: str, value: Any, secret: bool) -> None:
        secret = secret or bool(is_secret(name))
        if isinstance(value, Mapping):
            for k, v in value.items():
                walk(str(k), v, secret)
        elif isinstance(value, list | tuple):
            for v in value:
                walk(name, v, secret)
        elif secret and isinstance(value, str) and value and "{{" not in value:
            found.add(value)
            if value.startswith("K10") and "::" in value:  # also the password part on its own
                password = value.split("::", 1)[1].partition(":")[2]
                if password:
                    found.add(password)

    for key, val in variables.items():
        walk(str(key), val, False)
    return found


class Masker:
    """Replaces known secret values and anything shaped like a secret."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        self._values = sorted({v for v in values if v}, key=len, reverse=True)
        self._mask_tokens = collection_module("k3s_token").mask_tokens_in_text

    def text(self, value: str) -> str:
        for secret in self._values:
            if secret in value:
                value = value.replace(secret, MASK)
        value = self._mask_tokens(value)
        value = _KEY_BLOCK.sub(f"-----BEGIN PRIVATE KEY-----{MASK}-----END PRIVATE KEY-----", value)
        return _KEY_DATA.sub(lambda m: m.group(1) + MASK, value)

    def __call__(self, obj: Any) -> Any:
        """A copy of ``obj`` (str, dict, list, ...) with every string masked."""
        if isinstance(obj, str):
            return self.text(obj)
        if isinstance(obj, Mapping):
            return {self.text(k) if isinstance(k, str) else k: self(v) for k, v in obj.items()}
        if isinstance(obj, list | tuple):
            return [self(v) for v in obj]
        return obj

    def in_place(self, event: dict[str, Any]) -> None:
        """Mask ``event`` itself (the dict ansible-runner is about to write)."""
        for key in list(event):
            event[key] = self(event[key])
