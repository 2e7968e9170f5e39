"""/etc/rancher/k3s/registries.yaml: read at start, as K3s reads it (servers and agents).

K3s logs "Using private registry config file at <path>" and unmarshals the
file into its registry structure; a file it cannot read that way stops the
start with the YAML library's error (``yaml: ...``, ``yaml: unmarshal
errors: ... cannot unmarshal ...``). The simulator checks the same shape and
logs each mirror it loaded (it pulls no images, so nothing else uses them).
"""

from __future__ import annotations

from typing import Any

from .common import Fatal, log, p
from .yamlreader import YamlError, yaml_load

REGISTRIES_FILE = "/etc/rancher/k3s/registries.yaml"
# The fields K3s's registry structure has, and their YAML kinds.
_MIRROR_FIELDS: dict[str, type] = {"endpoint": list, "rewrite": dict}
_AUTH_FIELDS: dict[str, type] = {"username": str, "password": str, "auth": str, "identitytoken": str}
_TLS_FIELDS: dict[str, type] = {"cert_file": str, "key_file": str, "ca_file": str, "insecure_skip_verify": bool}
_GO_KIND = {list: "[]string", dict: "map[string]string", str: "string", bool: "bool"}


def _tag(value: Any) -> str:
    if isinstance(value, bool):
        return "!!bool"
    if isinstance(value, (int, float)):
        return "!!int" if isinstance(value, int) else "!!float"
    if isinstance(value, str):
        return "!!str"
    return "!!seq" if isinstance(value, list) else "!!map"


def _unmarshal_error(where: str, value: Any, want: type) -> str:
    return f"yaml: unmarshal errors:\n  {where}: cannot unmarshal {_tag(value)} into {_GO_KIND[want]}"


def _fields(where: str, block: Any, fields: dict[str, type]) -> list[str]:
    if block is None:
        return []
    if not isinstance(block, dict):
        return [f"yaml: unmarshal errors:\n  {where}: cannot unmarshal {_tag(block)} into a mapping"]
    out = []
    for key, value in block.items():
        want = fields.get(str(key))
        if want is None or value is None:
            continue  # Go's YAML ignores fields the structure does not have
        ok = isinstance(value, bool) if want is bool else (isinstance(value, want) and not isinstance(value, bool))
        if ok:
            if want is list and not all(isinstance(v, str) for v in value):
                out.append(_unmarshal_error(f"{where}.{key}", next(v for v in value if not isinstance(v, str)), str))
            continue
        if want is str and isinstance(value, (int, float)) and not isinstance(value, bool):
            continue  # a YAML number reads into a Go string
        out.append(_unmarshal_error(f"{where}.{key}", value, want))
    return out


def registry_problems(data: Any) -> list[str]:
    """Why K3s could not load ``data`` (a parsed registries.yaml) into its registry structure."""
    if data is None:
        return []
    if not isinstance(data, dict):
        return [f"yaml: unmarshal errors:\n  line 1: cannot unmarshal {_tag(data)} into registries.Registry"]
    out = []
    for section in ("mirrors", "configs"):
        block = data.get(section)
        if block is None:
            continue
        if not isinstance(block, dict):
            out.append(f"yaml: unmarshal errors:\n  {section}: cannot unmarshal {_tag(block)} into a mapping")
            continue
        for name, entry in block.items():
            if section == "mirrors":
                out += _fields(f"{section}.{name}", entry, _MIRROR_FIELDS)
            elif entry is not None and not isinstance(entry, dict):
                out.append(f"yaml: unmarshal errors:\n  {section}.{name}: cannot unmarshal {_tag(entry)} "
                           "into registries.RegistryConfig")
            elif entry is not None:
                out += _fields(f"{section}.{name}.auth", entry.get("auth"), _AUTH_FIELDS)
                out += _fields(f"{section}.{name}.tls", entry.get("tls"), _TLS_FIELDS)
    return out


def load_registries() -> dict[str, Any]:
    """The registries configuration, as K3s loads it at start ({} when there is no file)."""
    path = p(REGISTRIES_FILE)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise Fatal(f"open {REGISTRIES_FILE}: {(exc.strerror or str(exc)).lower()}") from exc
    log("info", f"Using private registry config file at {REGISTRIES_FILE}")
    try:
        data = yaml_load(text)
    except YamlError as exc:
        raise Fatal(f"yaml: {exc}") from exc
    problems = registry_problems(data)
    if problems:
        raise Fatal(problems[0])
    data = data or {}
    for name, entry in sorted((data.get("mirrors") or {}).items()):
        endpoints = (entry or {}).get("endpoint") or []
        log("info", f"Using registry mirror for {name}: {', '.join(endpoints) or '(default endpoint only)'}")
    for name in sorted(data.get("configs") or {}):
        entry = (data.get("configs") or {}).get(name) or {}
        what = [w for w in ("auth", "tls") if entry.get(w)]
        log("info", f"Using registry config for {name}: {', '.join(what) or 'none'}")
    return dict(data)
