"""kubectl as K3s bundles it: argument parsing, selectors, output formats, verbs."""

from __future__ import annotations

import base64
import copy
import json
import os
import re
import ssl
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

from .common import SIM_NAME, Fatal, p
from .config import UsageError
from .host import k8s_arch, version
from .httpclient import HttpError, https_request
from .nodes import SYNTHETIC_TAINTS, _age, node_roles, node_status, parse_label, parse_taint
from .objects import BUILTIN_KINDS, NODE_KIND, WIDE_COLUMNS, Kind, object_columns
from .yamlreader import YamlError, _yaml_plain, yaml_load, yaml_load_all


# kubectl: the verbs deployers use on nodes, parsed as kubectl parses
# (pflag: --flag value, --flag=value, -f value, -fvalue, -f=value; bool flags
# take no value unless given as --flag=false), printed as kubectl prints and
# failing as kubectl fails. What the simulator does not serve (other resource
# types, other verbs, other output formats, other flags) fails with kubectl's
# own error for an unknown resource type, command, format or flag, plus one
# line that names the simulator: never with some other output.
class KubectlError(Exception):
    """An error kubectl prints as it is (no log prefix); exit status 1."""


def _label_or_taint(verb: str, args: list[str], flags: dict[str, Any], api: Any, out: Any) -> int:
    """kubectl label|taint node NAME k=v|k- ... (nodes only: what operators set on nodes)."""
    if args and args[0] in ("node", "nodes"):
        args = args[1:]
    elif args and args[0].startswith(("node/", "nodes/")):
        args = [args[0].partition("/")[2], *args[1:]]
    else:
        raise KubectlError(f"error: the simulator's kubectl {verb}s nodes only: kubectl {verb} node NAME ...")
    if len(args) < 2:
        raise KubectlError(f"error: at least one {verb} update is required")
    name, specs = args[0], args[1:]
    try:
        node = api("GET", f"/api/v1/nodes/{name}")
    except _NotFound as exc:
        raise KubectlError(str(exc)) from None
    if verb == "label":
        current = node["metadata"].get("labels") or {}
        patch: dict[str, str | None] = {}
        for spec in specs:
            if spec.endswith("-"):
                patch[spec[:-1]] = None
                continue
            key, value = parse_label(spec)
            if key in current and current[key] != value and not flags.get("overwrite"):
                raise KubectlError(f"error: '{key}' already has a value ({current[key]}), and --overwrite is false")
            patch[key] = value
        api("PATCH", f"/api/v1/nodes/{name}", {"metadata": {"labels": patch}})
        out.write(f"node/{name} {'unlabeled' if all(v is None for v in patch.values()) else 'labeled'}\n")
        return 0
    taints = [t for t in node["spec"].get("taints") or [] if t.get("key") not in SYNTHETIC_TAINTS]
    removed = False
    for spec in specs:
        if spec.endswith("-"):
            key, _, effect = spec[:-1].partition(":")
            kept = [t for t in taints if not (t["key"] == key and (not effect or t["effect"] == effect))]
            if len(kept) == len(taints):
                raise KubectlError(f"error: taint {spec[:-1]!r} not found")
            taints, removed = kept, True
            continue
        new = parse_taint(spec)
        same = [t for t in taints if t["key"] == new["key"] and t["effect"] == new["effect"]]
        if same and not flags.get("overwrite"):
            raise KubectlError(f"error: node {name} already has {new['key']} taint(s) with same effect(s) and "
                               "--overwrite is false")
        taints = [t for t in taints if t not in same] + [new]
    api("PATCH", f"/api/v1/nodes/{name}", {"spec": {"taints": taints}})
    out.write(f"node/{name} {'untainted' if removed else 'tainted'}\n")
    return 0


KUBECTL_GLOBAL_FLAGS = {"kubeconfig": "str", "namespace": "str", "context": "str", "request-timeout": "str",
                        "v": "str", "help": "bool"}
KUBECTL_FLAGS: dict[str, dict[str, str]] = {
    "get": {"output": "str", "selector": "str", "show-labels": "bool", "no-headers": "bool", "raw": "str",
            "ignore-not-found": "bool", "all-namespaces": "bool"},
    "cordon": {"selector": "str"},
    "label": {"overwrite": "bool"},
    "taint": {"overwrite": "bool"},
    "uncordon": {"selector": "str"},
    "drain": {"selector": "str", "ignore-daemonsets": "bool", "delete-emptydir-data": "bool",
              "delete-local-data": "bool", "force": "bool", "timeout": "str", "grace-period": "str",
              "disable-eviction": "bool", "skip-wait-for-delete-timeout": "str"},
    "delete": {"selector": "str", "ignore-not-found": "bool", "wait": "bool", "timeout": "str",
               "grace-period": "str", "force": "bool", "now": "bool", "all": "bool", "filename": "strs"},
    "apply": {"filename": "strs"},
    "create": {"duration": "str", "audience": "str"},
    "wait": {"for": "str", "timeout": "str", "selector": "str", "all": "bool"},
    "version": {"output": "str", "client": "bool"},
    "completion": {},
}
KUBECTL_SHORTHANDS = {"o": "output", "l": "selector", "n": "namespace", "A": "all-namespaces", "h": "help",
                      "v": "v", "f": "filename"}
KUBECTL_FORMATS = ("custom-columns", "custom-columns-file", "go-template", "go-template-file", "json",
                   "jsonpath", "jsonpath-as-json", "jsonpath-file", "name", "template", "templatefile",
                   "wide", "yaml")
NODE_TYPES = ("nodes", "node", "no")


def _flag_kind(name: str) -> str | None:
    for table in (KUBECTL_GLOBAL_FLAGS, *KUBECTL_FLAGS.values()):
        if name in table:
            return table[name]
    return None


def _unknown_command(verb: str) -> KubectlError:
    return KubectlError(f'error: unknown command "{verb}" for "kubectl"\n({SIM_NAME}: kubectl {verb} is not simulated)')


def _see_help(verb: str) -> str:
    return f"\nSee 'kubectl {verb} --help' for usage." if verb else "\nSee 'kubectl --help' for usage."


def parse_kubectl_args(argv: list[str]) -> tuple[str, list[str], dict[str, str]]:
    """(verb, positional arguments, flags by long name) as kubectl's flag parser reads them."""
    flags: dict[str, str] = {}
    repeated: dict[str, list[str]] = {}
    spelled: dict[str, str] = {}  # how each flag was written, for an "unknown flag" error
    positional: list[str] = []
    problem = ""
    i = 0
    while i < len(argv) and not problem:
        arg = argv[i]
        if arg == "--":
            positional += argv[i + 1:]
            break
        if arg.startswith("--") and len(arg) > 2:
            name, eq, value = arg[2:].partition("=")
            kind = _flag_kind(name)
            spelled[name] = f"unknown flag: --{name}"
            if kind is None:
                problem = spelled[name]
            elif kind == "bool":
                if eq and value not in ("true", "false", "1", "0", "t", "f", "T", "F", "True", "False"):
                    raise KubectlError(f'error: invalid argument "{value}" for "--{name}" flag: '
                                       f'strconv.ParseBool: parsing "{value}": invalid syntax')
                flags[name] = value if eq else "true"
            elif eq:
                flags[name] = value
                if kind == "strs":
                    repeated.setdefault(name, []).append(value)
            elif i + 1 < len(argv):
                i += 1
                flags[name] = argv[i]
                if kind == "strs":
                    repeated.setdefault(name, []).append(argv[i])
            else:
                raise KubectlError(f"error: flag needs an argument: --{name}")
        elif arg.startswith("-") and len(arg) > 1:
            shorts = arg[1:]
            while shorts:
                c, shorts = shorts[0], shorts[1:]
                name = KUBECTL_SHORTHANDS.get(c, "")
                spelled[name] = f"unknown shorthand flag: '{c}' in {arg}"
                if not name:
                    problem = spelled[name]
                    break
                if _flag_kind(name) == "bool":
                    flags[name] = "true"
                    continue
                if shorts:
                    flags[name] = shorts[1:] if shorts.startswith("=") else shorts
                elif i + 1 < len(argv):
                    i += 1
                    flags[name] = argv[i]
                else:
                    raise KubectlError(f"error: flag needs an argument: '{c}' in -{c}")
                if _flag_kind(name) == "strs":
                    repeated.setdefault(name, []).append(flags[name])
                break
        else:
            positional.append(arg)
        i += 1
    if problem:
        verb = positional[0] if positional else next((a for a in argv[i:] if not a.startswith("-")), "")
        if verb and verb not in KUBECTL_FLAGS:
            raise _unknown_command(verb)
        raise KubectlError(f"error: {problem}{_see_help(verb)}")
    verb = positional.pop(0) if positional else ""
    for name, values in repeated.items():
        flags[name] = "\0".join(values)  # a repeatable flag (-f a -f b): every value, in order
    if verb in KUBECTL_FLAGS:
        allowed = {**KUBECTL_GLOBAL_FLAGS, **KUBECTL_FLAGS[verb]}
        for name in flags:
            if name not in allowed:
                raise KubectlError(f"error: {spelled[name]}{_see_help(verb)}")
    return verb, positional, flags


# Label selectors (k8s.io/apimachinery labels.Parse): key, !key, key=v, key==v, key!=v,
# key in (a,b), key notin (a,b); requirements separated by commas.
_SELECTOR_TERM = re.compile(
    r"\s*(?:(?P<not>!)\s*(?P<nkey>[A-Za-z0-9./_-]+)"
    r"|(?P<key>[A-Za-z0-9./_-]+)\s*(?:(?P<op>==|!=|=)\s*(?P<value>[A-Za-z0-9._-]*)"
    r"|\s+(?P<setop>in|notin)\s*\((?P<values>[^)]*)\))?)\s*(?:,|$)")


def parse_selector(text: str) -> list[tuple[str, str, list[str]]]:
    """[(key, operator, values)], operator one of exists, !, =, !=, in, notin."""
    reqs: list[tuple[str, str, list[str]]] = []
    pos = 0
    while pos < len(text):
        m = _SELECTOR_TERM.match(text, pos)
        if not m or m.end() == pos:
            raise KubectlError(f"error: unable to parse requirement: found '{text[pos:]}', "
                               "expected: identifier")
        if m.group("not"):
            reqs.append((m.group("nkey"), "!", []))
        elif m.group("op"):
            reqs.append((m.group("key"), "!=" if m.group("op") == "!=" else "=", [m.group("value")]))
        elif m.group("setop"):
            values = [v.strip() for v in m.group("values").split(",") if v.strip()]
            reqs.append((m.group("key"), m.group("setop"), values))
        else:
            reqs.append((m.group("key"), "exists", []))
        pos = m.end()
    return reqs


def selector_matches(reqs: list[tuple[str, str, list[str]]], labels: dict[str, str]) -> bool:
    for key, op, values in reqs:
        value = labels.get(key)
        if op == "exists":
            ok = value is not None
        elif op == "!":
            ok = value is None
        elif op in ("=", "in"):
            ok = value is not None and value in values
        else:  # != and notin: a node without the label matches
            ok = value is None or value not in values
        if not ok:
            return False
    return True


def go_json(value: Any, indent: int | None = None) -> str:
    """JSON as Go's encoding/json writes it for kubectl: keys sorted, <, > and & escaped."""
    text = json.dumps(value, indent=indent, sort_keys=True, separators=None if indent else (",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def kube_yaml(value: Any, indent: int = 0) -> str:
    """YAML as kubectl -o yaml writes it: keys sorted, list items at their key's indentation."""
    pad = " " * indent
    out = []
    if isinstance(value, dict):
        for k in sorted(value):
            v = value[k]
            if isinstance(v, dict) and v:
                out.append(f"{pad}{_yaml_plain(k)}:\n{kube_yaml(v, indent + 2)}")
            elif isinstance(v, list) and v:
                out.append(f"{pad}{_yaml_plain(k)}:\n{kube_yaml(v, indent)}")
            else:
                out.append(f"{pad}{_yaml_plain(k)}: {_yaml_plain(v)}\n")
    elif isinstance(value, list):
        for v in value:
            if isinstance(v, (dict, list)) and v:
                body = kube_yaml(v, indent + 2)
                out.append(f"{pad}- {body[indent + 2:]}")
            else:
                out.append(f"{pad}- {_yaml_plain(v)}\n")
    return "".join(out)


# jsonpath as kubectl evaluates it (k8s.io/client-go/util/jsonpath, missing keys allowed): text
# outside braces is printed as it is; {"..."} is a string literal; {range EXPR}...{end} repeats its
# body for each result; EXPR is a path: @ or $, .name (dots in a name escaped as \.), .*, ..name,
# [n], [-n], [a:b], [*], ['name'], [?(@.path OP value)] with ==, !=, <, <=, >, >= or [?(@.path)].
# The results of one action are joined by spaces; maps and lists print as compact JSON; nothing is
# added at the end (no newline).
class JsonPathError(KubectlError):
    pass


def _jp_actions(template: str) -> list[tuple[str, str]]:
    """[("text", literal) | ("action", inside-braces)]."""
    parts: list[tuple[str, str]] = []
    i, text = 0, ""
    while i < len(template):
        c = template[i]
        if c != "{":
            text += c
            i += 1
            continue
        if text:
            parts.append(("text", text))
            text = ""
        j = _jp_closing(template, i, "{", "}")
        if j < 0:
            raise JsonPathError(f"error: error parsing jsonpath {template}, unclosed action")
        parts.append(("action", template[i + 1:j].strip()))
        i = j + 1
    if text:
        parts.append(("text", text))
    return parts


def _jp_closing(text: str, start: int, opening: str, closing: str) -> int:
    """The index of the bracket that closes the one at ``start`` (nesting and quotes skipped), or -1."""
    depth, quote, j = 0, "", start
    while j < len(text):
        c = text[j]
        if quote:
            if c == "\\":
                j += 1
            elif c == quote:
                quote = ""
        elif c in "\"'":
            quote = c
        elif c == opening:
            depth += 1
        elif c == closing:
            depth -= 1
            if depth == 0:
                return j
        j += 1
    return -1


# A name in a path: up to the next unescaped dot or bracket (\. is a dot inside the name).
_JP_NAME = re.compile(r"((?:\\.|[^.\[\\])+)")


def _jp_tokens(expr: str, template: str) -> list[tuple[str, Any]]:
    toks: list[tuple[str, Any]] = []
    i = 0
    if expr[:1] in ("@", "$"):
        i = 1
    while i < len(expr):
        if expr[i] == ".":
            recursive = expr.startswith("..", i)
            i += 2 if recursive else 1
            m = _JP_NAME.match(expr, i)
            if not m:
                raise JsonPathError(f"error: error parsing jsonpath {template}, unrecognized identifier")
            name = m.group(1).replace("\\.", ".")
            toks.append(("recursive", name) if recursive else ("all", None) if name == "*" else ("field", name))
            i = m.end()
        elif expr[i] == "[":
            j = _jp_closing(expr, i, "[", "]")
            if j < 0:
                raise JsonPathError(f"error: error parsing jsonpath {template}, unterminated array")
            toks.append(_jp_bracket(expr[i + 1:j].strip(), template))
            i = j + 1
        else:
            raise JsonPathError(f"error: error parsing jsonpath {template}, "
                                f"unrecognized character in action: {expr[i]!r}")
    return toks


def _jp_bracket(inner: str, template: str) -> tuple[str, Any]:
    if inner == "*":
        return ("all", None)
    if inner[:1] in "\"'" and inner[-1:] == inner[:1] and len(inner) >= 2:
        return ("field", inner[1:-1])
    m = re.fullmatch(r"\?\((.*)\)", inner, re.S)
    if m:
        cond = m.group(1).strip()
        fm = re.fullmatch(r"(@[^=!<>\s]*)\s*(==|!=|<=|>=|<|>)\s*(.+)", cond)
        if fm:
            return ("filter", (_jp_tokens(fm.group(1), template), fm.group(2), _jp_literal(fm.group(3).strip())))
        if cond.startswith("@"):
            return ("filter", (_jp_tokens(cond, template), "exists", None))
        raise JsonPathError(f"error: error parsing jsonpath {template}, unrecognized filter {cond}")
    sm = re.fullmatch(r"(-?\d*)\s*:\s*(-?\d*)(?:\s*:\s*(-?\d+))?", inner)
    if sm:
        return ("slice", tuple(int(x) if x else None for x in sm.groups()))
    if re.fullmatch(r"-?\d+", inner):
        return ("index", int(inner))
    raise JsonPathError(f"error: error parsing jsonpath {template}, invalid array index {inner}")


def _jp_literal(text: str) -> Any:
    if text[:1] in "\"'" and text[-1:] == text[:1]:
        return text[1:-1]
    try:
        return json.loads(text)
    except ValueError:
        return text


def _jp_eval(values: list[Any], toks: list[tuple[str, Any]]) -> list[Any]:
    for kind, arg in toks:
        nxt: list[Any] = []
        for v in values:
            if kind == "field":
                if isinstance(v, dict) and arg in v:
                    nxt.append(v[arg])
            elif kind == "all":
                nxt.extend(v if isinstance(v, list) else list(v.values()) if isinstance(v, dict) else [])
            elif kind == "index":
                if isinstance(v, list) and -len(v) <= arg < len(v):
                    nxt.append(v[arg])
            elif kind == "slice":
                if isinstance(v, list):
                    nxt.extend(v[slice(*arg)])
            elif kind == "recursive":
                nxt.extend(_jp_recursive(v, arg))
            elif kind == "filter" and isinstance(v, list):
                path, op, want = arg
                for item in v:
                    got = _jp_eval([item], path)
                    if op == "exists":
                        if got:
                            nxt.append(item)
                    elif got and _jp_compare(got[0], op, want):
                        nxt.append(item)
        values = nxt
    return values


def _jp_recursive(v: Any, name: str) -> list[Any]:
    found: list[Any] = []
    if isinstance(v, dict):
        if name in v:
            found.append(v[name])
        for child in v.values():
            found += _jp_recursive(child, name)
    elif isinstance(v, list):
        for child in v:
            found += _jp_recursive(child, name)
    return found


def _jp_compare(got: Any, op: str, want: Any) -> bool:
    if op in ("==", "!="):
        same = got == want or (not isinstance(got, (dict, list)) and _jp_text(got) == _jp_text(want))
        return same if op == "==" else not same
    try:
        a, b = float(got), float(want)
    except (TypeError, ValueError):
        return False
    return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]


def _jp_text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (dict, list)):
        return go_json(v)
    if v is None:
        return ""
    return str(v)


def jsonpath_results(doc: Any, template: str) -> list[list[Any]]:
    """Each action's results, in order (text parts and literals as one-string results)."""
    parts = _jp_actions(template)
    out: list[list[Any]] = []

    def run(seq: list[tuple[str, str]], current: Any) -> None:
        i = 0
        while i < len(seq):
            kind, body = seq[i]
            if kind == "text":
                out.append([body])
            elif body.startswith("range ") or body == "range":
                depth, j = 1, i + 1
                while j < len(seq):
                    if seq[j][0] == "action" and (seq[j][1].startswith("range ") or seq[j][1] == "range"):
                        depth += 1
                    elif seq[j] == ("action", "end"):
                        depth -= 1
                        if depth == 0:
                            break
                    j += 1
                if j >= len(seq):
                    raise JsonPathError(f"error: error parsing jsonpath {template}, not in range, nothing to end")
                items = _jp_eval([current], _jp_tokens(body[len("range"):].strip(), template))
                for item in items:
                    for each in (item if isinstance(item, list) else [item]):
                        run(seq[i + 1:j], each)
                i = j
            elif body == "end":
                raise JsonPathError(f"error: error parsing jsonpath {template}, not in range, nothing to end")
            elif body[:1] == '"':
                try:
                    out.append([json.loads(body)])
                except ValueError as exc:
                    raise JsonPathError(f"error: error parsing jsonpath {template}, "
                                        f"unterminated string {body}") from exc
            elif body == "":
                pass
            else:
                out.append(_jp_eval([current], _jp_tokens(body, template)))
            i += 1

    run(parts, doc)
    return out


def jsonpath(doc: Any, template: str) -> str:
    return "".join(" ".join(_jp_text(v) for v in results) for results in jsonpath_results(doc, template))


def _relaxed_jsonpath(expr: str) -> str:
    """A custom-columns path as kubectl relaxes it: {.a.b}, .a.b and a.b all mean {.a.b}.
    (-o jsonpath is not relaxed: text outside braces prints as it is.)"""
    inner = expr[1:-1] if expr.startswith("{") and expr.endswith("}") else expr
    return "{" + (inner if inner.startswith(".") else "." + inner) + "}"


# -- printing
def node_table(items: list[dict[str, Any]], wide: bool = False, show_labels: bool = False,
               headers: bool = True, now: float | None = None) -> str:
    cols = ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    if wide:
        cols += ["INTERNAL-IP", "EXTERNAL-IP", "OS-IMAGE", "KERNEL-VERSION", "CONTAINER-RUNTIME"]
    if show_labels:
        cols.append("LABELS")
    rows = [cols] if headers else []
    for n in items:
        info = n["status"]["nodeInfo"]
        row = [n["metadata"]["name"], node_status(n), node_roles(n),
               _age(n["metadata"]["creationTimestamp"], now), info["kubeletVersion"]]
        if wide:
            addr = {a["type"]: a["address"] for a in n["status"]["addresses"]}
            row += [addr.get("InternalIP", "<none>"), addr.get("ExternalIP", "<none>"),
                    info["osImage"] or "<unknown>", info["kernelVersion"] or "<unknown>",
                    info["containerRuntimeVersion"]]
        if show_labels:
            labels = n["metadata"].get("labels") or {}
            row.append(",".join(f"{k}={labels[k]}" for k in sorted(labels)) or "<none>")
        rows.append(row)
    return _columns(rows)


def _columns(rows: list[list[str]]) -> str:
    """Columns as kubectl's tabwriter sets them: three spaces between, the last one not padded."""
    if not rows:
        return ""
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    return "".join("   ".join(v.ljust(widths[c]) if c < len(r) - 1 else v for c, v in enumerate(r)) + "\n"
                   for r in rows)


def custom_columns(items: list[dict[str, Any]], spec: str, headers: bool = True) -> str:
    cols = []
    for part in spec.split(","):
        head, sep, path = part.partition(":")
        if not sep or not head or not path:
            raise KubectlError(f'error: expected <header>:<json-path-expr>, got "{part}"')
        cols.append((head, _relaxed_jsonpath(path)))
    rows = [[h for h, _ in cols]] if headers else []
    for item in items:
        row = []
        for _h, path in cols:
            values = [v for results in jsonpath_results(item, path) for v in results]
            row.append(",".join(_jp_text(v) for v in values) if values else "<none>")
        rows.append(row)
    return _columns(rows)


def node_list(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"apiVersion": "v1", "items": items, "kind": "List", "metadata": {"resourceVersion": ""}}


def render_nodes(items: list[dict[str, Any]], output: str | None, *, single: bool, show_labels: bool = False,
                 headers: bool = True, now: float | None = None) -> str:
    """What `kubectl get nodes` prints on stdout for these nodes (single: one node was named)."""
    return render_objects(items, output, NODE_KIND, single=single, show_labels=show_labels, headers=headers,
                          now=now)


def object_table(items: list[dict[str, Any]], kind: Kind, *, all_namespaces: bool = False,
                 show_labels: bool = False, headers: bool = True) -> str:
    cols = [c for c in object_columns(kind) if c[0] not in WIDE_COLUMNS]
    names = (["NAMESPACE"] if all_namespaces and kind.namespaced else []) + [c.upper() for c, _fn in cols]
    rows = [names + (["LABELS"] if show_labels else [])] if headers else []
    for o in items:
        row = ([o["metadata"].get("namespace", "")] if all_namespaces and kind.namespaced else []) + \
            [fn(o) for _c, fn in cols]
        if show_labels:
            labels = o["metadata"].get("labels") or {}
            row.append(",".join(f"{k}={labels[k]}" for k in sorted(labels)) or "<none>")
        rows.append(row)
    return _columns(rows)


def render_objects(items: list[dict[str, Any]], output: str | None, kind: Kind, *, single: bool,
                   show_labels: bool = False, headers: bool = True, now: float | None = None,
                   all_namespaces: bool = False) -> str:
    """What `kubectl get <kind>` prints on stdout for these objects (single: one object was named)."""
    fmt, _sep, arg = (output or "").partition("=")
    doc: Any = items[0] if single and items else node_list(items)
    if output is None or output == "" or fmt == "wide":
        if arg:
            raise KubectlError(_unknown_format(output))
        if not items:
            return ""
        if kind is NODE_KIND:
            return node_table(items, wide=fmt == "wide", show_labels=show_labels, headers=headers, now=now)
        return object_table(items, kind, all_namespaces=all_namespaces, show_labels=show_labels, headers=headers)
    if fmt == "json" and not arg:
        return go_json(doc, indent=4) + "\n"
    if fmt == "yaml" and not arg:
        return kube_yaml(doc)
    if fmt == "name" and not arg:
        return "".join(f"{kind.qualified}/{n['metadata']['name']}\n" for n in items)
    if fmt in ("jsonpath", "jsonpath-as-json"):
        if not arg:
            raise KubectlError("error: template format specified but no template given")
        if fmt == "jsonpath":
            return jsonpath(doc, arg)
        values = [v for results in jsonpath_results(doc, arg) for v in results]
        return go_json(values, indent=4) + "\n"
    if fmt == "custom-columns":
        if not arg:
            raise KubectlError("error: custom-columns format specified but no custom columns given")
        return custom_columns(items, arg, headers) if items else ""
    raise KubectlError(_unknown_format(output))


def _unknown_format(output: str | None) -> str:
    fmt = (output or "").partition("=")[0]
    msg = (f'error: unable to match a printer suitable for the output format "{output}", '
           f"allowed formats are: {','.join(KUBECTL_FORMATS)}")
    if fmt in KUBECTL_FORMATS:
        msg += f"\n({SIM_NAME}: the {fmt} output format is not simulated)"
    return msg


KUBECTL_BASH_COMPLETION = """\
# bash completion for kubectl ({sim}: its verbs and flags only)
__kubectl_sim_complete() {{
    local cur=${{COMP_WORDS[COMP_CWORD]}}
    local verb=""
    local i
    for ((i = 1; i < COMP_CWORD; i++)); do
        case ${{COMP_WORDS[i]}} in -*) ;; *) verb=${{COMP_WORDS[i]}}; break ;; esac
    done
    case $verb in
{cases}
        *) COMPREPLY=($(compgen -W "{verbs}" -- "$cur")) ;;
    esac
}}
complete -o default -F __kubectl_sim_complete kubectl
"""
KUBECTL_ZSH_COMPLETION = """\
#compdef kubectl
# zsh completion for kubectl ({sim}: its verbs only)
_kubectl_sim() {{ compadd -- {verbs} }}
compdef _kubectl_sim kubectl
"""


def kubectl_completion(shell: str) -> str:
    verbs = " ".join(sorted(KUBECTL_FLAGS))
    if shell == "bash":
        cases = "\n".join(
            f'        {verb}) COMPREPLY=($(compgen -W "'
            + " ".join(f"--{f}" for f in sorted({**KUBECTL_GLOBAL_FLAGS, **flags}))
            + (" nodes" if verb in ("get", "delete", "wait") else "")
            + '" -- "$cur")) ;;'
            for verb, flags in sorted(KUBECTL_FLAGS.items()))
        return KUBECTL_BASH_COMPLETION.format(sim=SIM_NAME, cases=cases, verbs=verbs)
    if shell == "zsh":
        return KUBECTL_ZSH_COMPLETION.format(sim=SIM_NAME, verbs=verbs)
    if shell in ("fish", "powershell"):
        raise KubectlError(f'error: Unsupported shell type "{shell}".\n({SIM_NAME}: only bash and zsh '
                           "completion are simulated)")
    raise KubectlError(f'error: Unsupported shell type "{shell}".')


class Credentials:
    """How kubectl authenticates: a client certificate or a bearer token from the kubeconfig."""

    def __init__(self, cert: tuple[bytes, bytes] | None = None, token: str | None = None):
        self.cert, self.token = cert, token


def load_kubeconfig(path: str | None) -> tuple[str, str, Credentials]:
    candidates = [path] if path else []
    if not path:
        if os.environ.get("KUBECONFIG"):
            candidates = os.environ["KUBECONFIG"].split(":")
        else:
            candidates = [str(p("/etc/rancher/k3s/k3s.yaml")), str(Path.home() / ".kube" / "config")]
    for cand in candidates:
        try:
            text = Path(cand).read_text()
        except PermissionError as exc:
            raise KubectlError(f'error: error loading config file "{cand}": open {cand}: permission denied') from exc
        except OSError:
            if path:
                raise KubectlError(f"error: stat {cand}: no such file or directory") from None
            continue
        cfg = yaml_load(text)
        ctx_name = cfg.get("current-context")
        ctx = next((c["context"] for c in cfg.get("contexts", []) if c["name"] == ctx_name), None)
        if ctx is None:
            raise KubectlError(f'error: current-context "{ctx_name}" not found in {cand}')
        cluster = next(c["cluster"] for c in cfg["clusters"] if c["name"] == ctx["cluster"])
        user = next(u["user"] for u in cfg["users"] if u["name"] == ctx["user"])
        ca = base64.b64decode(cluster["certificate-authority-data"]).decode()
        cert = None
        if "client-certificate-data" in user:
            cert = (base64.b64decode(user["client-certificate-data"]),
                    base64.b64decode(user["client-key-data"]))
        return cluster["server"], ca, Credentials(cert, user.get("token"))
    raise KubectlError("The connection to the server localhost:8080 was refused - "
                       "did you specify the right host or port?")


class _NotFound(KubectlError):
    pass


def _node_args(args: list[str]) -> list[str]:
    """Node names from kubectl's resource arguments: nodes a b | node/a nodes/b."""
    if not args:
        return []
    first = args[0]
    if "/" not in first:
        kind = first.split(",")[0]
        if kind not in NODE_TYPES:
            raise KubectlError(f'error: the server doesn\'t have a resource type "{kind}"\n'
                               f"({SIM_NAME}: it serves nodes only)")
        if "," in first:
            raise KubectlError(f"error: {SIM_NAME}: several resource types at once are not simulated")
        return args[1:]
    names = []
    for a in args:
        kind, _sep, name = a.partition("/")
        if kind not in NODE_TYPES:
            raise KubectlError(f'error: the server doesn\'t have a resource type "{kind}"\n'
                               f"({SIM_NAME}: it serves nodes only)")
        if not name:
            raise KubectlError("error: arguments in resource/name form must have a single resource and name")
        names.append(name)
    return names


def kubectl(argv: list[str], out: Any = None, err: Any = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        return _kubectl(argv, out, err)
    except KubectlError as exc:
        err.write(f"{exc}\n")
        return 1


def _kubectl(argv: list[str], out: Any, err: Any) -> int:
    verb, args, flags = parse_kubectl_args(argv)
    if flags.get("help") == "true" or verb in ("", "help"):
        out.write(f"kubectl ({SIM_NAME}, test equipment, not kubectl): "
                  f"{', '.join(sorted(KUBECTL_FLAGS))}; resource types: {', '.join(k.plural for k in BUILTIN_KINDS)} "
                  "and those of CustomResourceDefinitions\n")
        return 0
    if verb not in KUBECTL_FLAGS:
        raise _unknown_command(verb)
    if verb == "completion":
        if len(args) != 1:
            raise KubectlError("error: Shell not specified.\nSee 'kubectl completion -h' for help and examples"
                               if not args else "error: Too many arguments. Expected only the shell type.\n"
                               "See 'kubectl completion -h' for help and examples")
        out.write(kubectl_completion(args[0]))
        return 0
    if verb == "version" and flags.get("client") == "true":
        return _print_version(out, flags.get("output"), None)
    server, ca, creds = load_kubeconfig(flags.get("kubeconfig"))
    cert = creds.cert

    def api(method: str, path: str, body: Any = None) -> Any:
        try:
            return json.loads(https_request(server + path, method, body, cadata=ca, client_cert=cert,
                                            bearer=creds.token, timeout=10))
        except HttpError as exc:
            try:
                status = json.loads(exc.body)
                msg, reason = status.get("message", exc.body), status.get("reason", "")
            except ValueError:
                msg, reason = exc.body, ""
            cls = _NotFound if reason == "NotFound" else KubectlError
            raise cls(f"Error from server ({reason}): {msg}" if reason else f"Error from server: {msg}") from exc
        except ssl.SSLCertVerificationError as exc:
            raise KubectlError("Unable to connect to the server: tls: failed to verify certificate: "
                               f"{exc.verify_message}") from exc
        except OSError as exc:
            raise KubectlError(f"Unable to connect to the server: {exc}") from exc

    selector = parse_selector(flags["selector"]) if "selector" in flags else None

    def targets(names: list[str], ignore_missing: bool = False) -> tuple[list[dict[str, Any]], list[str]]:
        """The nodes named (or all, or those the selector picks) and the errors for missing names."""
        if names and selector is not None:
            raise KubectlError("error: name cannot be provided when a selector is specified")
        if not names:
            items = api("GET", "/api/v1/nodes")["items"]
            return [n for n in items if selector is None
                    or selector_matches(selector, n["metadata"].get("labels") or {})], []
        found, errors = [], []
        for name in names:
            try:
                found.append(api("GET", f"/api/v1/nodes/{name}"))
            except _NotFound as exc:
                if not ignore_missing:
                    errors.append(str(exc))
        return found, errors

    if verb == "version":
        return _print_version(out, flags.get("output"), api("GET", "/version"))
    if verb == "get":
        if "raw" in flags:
            if args:
                raise KubectlError("error: arguments may not be passed when --raw is specified")
            try:
                out.write(https_request(server + flags["raw"], cadata=ca, client_cert=cert,
                                        bearer=creds.token).decode())
            except HttpError as exc:
                raise KubectlError(f"Error from server: {exc.body}") from exc
            except OSError as exc:
                raise KubectlError(f"Unable to connect to the server: {exc}") from exc
            return 0
        if not args:
            raise KubectlError(
                'You must specify the type of resource to get. Use "kubectl api-resources" for a complete list '
                "of supported resources.\n\nerror: Required resource not specified.\n"
                'Use "kubectl explain <resource>" for a detailed description of that resource '
                "(e.g. kubectl explain pods).\nSee 'kubectl get -h' for help and examples")
        output = flags.get("output")
        if output is not None and output.partition("=")[0] not in KUBECTL_FORMATS:
            raise KubectlError(_unknown_format(output))  # as kubectl: the printer before the request
        if args[0].partition("/")[0].split(",")[0] not in NODE_TYPES:
            return _get_objects(args, flags, api, out, err)
        names = _node_args(args)
        items, errors = targets(names, flags.get("ignore-not-found") == "true")
        if items or not errors:  # kubectl prints nothing but the error when every name is missing
            out.write(render_nodes(items, output, single=len(names) == 1,
                                   show_labels=flags.get("show-labels") == "true",
                                   headers=flags.get("no-headers") != "true"))
        if not items and not errors and not names and (output is None or output.startswith("wide")):
            err.write("No resources found\n")
        for e in errors:
            err.write(e + "\n")
        return 1 if errors else 0
    if verb in ("label", "taint"):
        return _label_or_taint(verb, args, flags, api, out)
    if verb in ("cordon", "uncordon", "drain"):
        names = [a.partition("/")[2] if a.startswith(("node/", "nodes/")) else a for a in args]
        if not names and selector is None:
            raise KubectlError(f"error: USAGE: {verb} NODE [flags]\nSee 'kubectl {verb} -h' for help and examples")
        items, errors = targets(names)
        if errors:  # kubectl stops at the first node it cannot find
            raise KubectlError(errors[0])
        want = verb != "uncordon"
        for obj in items:
            name = obj["metadata"]["name"]
            if obj["spec"].get("unschedulable", False) == want:
                out.write(f"node/{name} already {'cordoned' if want else 'uncordoned'}\n")
            else:
                api("PATCH", f"/api/v1/nodes/{name}", {"spec": {"unschedulable": want}})
                out.write(f"node/{name} {'cordoned' if want else 'uncordoned'}\n")
            if verb == "drain":
                out.write(f"node/{name} drained\n")
        return 0
    if verb == "apply":
        return _apply(flags, api, out)
    if verb == "create":
        return _create(args, flags, api, out)
    if verb == "delete" and "filename" in flags:
        if args:
            raise KubectlError("error: resource(s) were provided, but no name was specified")
        return _delete_files(flags, api, out, err)
    if verb == "delete" and args and args[0].partition("/")[0].split(",")[0] not in NODE_TYPES:
        return _delete_objects(args, flags, api, out, err)
    if verb == "delete":
        if not args:
            raise KubectlError("error: You must provide one or more resources by argument or filename.")
        names = _node_args(args)
        if not names and selector is None and flags.get("all") != "true":
            raise KubectlError("error: resource(s) were provided, but no name was specified")
        items, errors = targets(names, flags.get("ignore-not-found") == "true")
        for obj in items:
            name = obj["metadata"]["name"]
            api("DELETE", f"/api/v1/nodes/{name}")
            out.write(f'node "{name}" deleted\n')
        if not items and not errors and not names:
            err.write("No resources found\n")
        for e in errors:
            err.write(e + "\n")
        return 1 if errors else 0
    if verb == "wait":
        return _wait(args, flags, targets, out, err)
    raise KubectlError(f'error: unknown command "{verb}" for "kubectl"')  # pragma: no cover - table and code agree


def _discover(api: Any) -> list[Kind]:
    """The resource types the server serves, read from its discovery documents as kubectl reads them."""
    kinds: list[Kind] = []

    def add(group_version: str, doc: dict[str, Any]) -> None:
        group, _sep, version_ = group_version.rpartition("/")
        for r in doc.get("resources") or []:
            if "/" not in r["name"]:
                kinds.append(Kind(r["kind"], group, version_, r["name"], r["namespaced"],
                                  tuple(r.get("shortNames") or ()), tuple(r.get("verbs") or ())))

    add("v1", api("GET", "/api/v1"))
    for g in api("GET", "/apis").get("groups") or []:
        gv = g["preferredVersion"]["groupVersion"]
        add(gv, api("GET", f"/apis/{gv}"))
    return kinds


def _kind_named(kinds: list[Kind], text: str) -> Kind:
    for k in kinds:
        if text.lower() in k.names():
            return k
    raise KubectlError(f'error: the server doesn\'t have a resource type "{text}"')


def _kind_of(kinds: list[Kind], doc: dict[str, Any], source: str) -> Kind:
    for k in kinds:
        if (k.api_version, k.kind) == (doc.get("apiVersion"), doc.get("kind")):
            return k
    meta = doc.get("metadata") or {}
    raise KubectlError(f'error: resource mapping not found for name: "{meta.get("name", "")}" namespace: '
                       f'"{meta.get("namespace", "")}" from "{source}": no matches for kind "{doc.get("kind")}" in '
                       f'version "{doc.get("apiVersion")}"\nensure CRDs are installed first')


def _resource_names(args: list[str], kinds: list[Kind]) -> list[tuple[Kind, str | None]]:
    """kind [name...] | kind/name...: (kind, name) pairs; name None lists the kind."""
    if "/" not in args[0]:
        if "," in args[0]:
            raise KubectlError(f"error: {SIM_NAME}: several resource types at once are not simulated")
        kind = _kind_named(kinds, args[0])
        return [(kind, n) for n in args[1:]] or [(kind, None)]
    out: list[tuple[Kind, str | None]] = []
    for a in args:
        kind_text, _sep, name = a.partition("/")
        if not name:
            raise KubectlError("error: arguments in resource/name form must have a single resource and name")
        out.append((_kind_named(kinds, kind_text), name))
    return out


def _object_path(kind: Kind, namespace: str | None, name: str | None = None) -> str:
    return kind.prefix(namespace if kind.namespaced else None) + (f"/{name}" if name else "")


def _get_objects(args: list[str], flags: dict[str, str], api: Any, out: Any, err: Any) -> int:
    kinds = _discover(api)
    pairs = _resource_names(args, kinds)
    all_ns = flags.get("all-namespaces") == "true"
    namespace = flags.get("namespace") or "default"
    items: list[dict[str, Any]] = []
    errors: list[str] = []
    kind = pairs[0][0]
    named = pairs[0][1] is not None
    if named and "selector" in flags:
        raise KubectlError("error: name cannot be provided when a selector is specified")
    for k, name in pairs:
        if name is None:
            query = ("?labelSelector=" + urllib.parse.quote(flags["selector"])) if "selector" in flags else ""
            items = api("GET", _object_path(k, None if all_ns else namespace) + query)["items"]
        else:
            try:
                items.append(api("GET", _object_path(k, namespace, name)))
            except _NotFound as exc:
                if flags.get("ignore-not-found") != "true":
                    errors.append(str(exc))
    if items or not errors:
        out.write(render_objects(items, flags.get("output"), kind, single=len(pairs) == 1 and named,
                                 show_labels=flags.get("show-labels") == "true",
                                 headers=flags.get("no-headers") != "true", all_namespaces=all_ns))
    output = flags.get("output")
    if not items and not errors and not named and (output is None or output.startswith("wide")):
        err.write(f"No resources found in {namespace} namespace.\n" if kind.namespaced and not all_ns
                  else "No resources found\n")
    for e in errors:
        err.write(e + "\n")
    return 1 if errors else 0


def _manifests(flags: dict[str, str]) -> tuple[str, list[dict[str, Any]]]:
    """The objects of the -f files (- for standard input; -f may be repeated), List items expanded."""
    sources = flags["filename"].split("\0")
    source = sources[0] if len(sources) == 1 else ", ".join(sources)
    docs: list[Any] = []
    for one in sources:
        try:
            text = sys.stdin.read() if one == "-" else Path(one).read_text()
        except OSError:
            raise KubectlError(f'error: the path "{one}" does not exist') from None
        try:
            docs += yaml_load_all(text)
        except YamlError as exc:
            raise KubectlError(f'error: error parsing {one}: error converting YAML to JSON: {exc}') from exc
    objects: list[dict[str, Any]] = []
    for doc in docs:
        if isinstance(doc, dict) and str(doc.get("kind", "")).endswith("List") and "items" in doc:
            objects.extend(doc.get("items") or [])
        elif isinstance(doc, dict):
            objects.append(doc)
        else:
            raise KubectlError(f"error: error validating \"{source}\": error validating data: invalid object")
    for obj in objects:
        if not obj.get("kind"):
            raise KubectlError(f'error: error validating "{source}": error validating data: kind not set')
        if not obj.get("apiVersion"):
            raise KubectlError(f'error: error validating "{source}": error validating data: apiVersion not set')
    return source, objects


LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def _merge_diff(old: Any, new: Any) -> Any:
    """The merge patch that turns the last applied configuration into the new one (removed keys: null)."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return copy.deepcopy(new)
    patch: dict[str, Any] = {k: None for k in old if k not in new}
    for k, v in new.items():
        if k not in old:
            patch[k] = copy.deepcopy(v)
        elif old[k] != v:
            patch[k] = _merge_diff(old[k], v)
    return patch


def _apply(flags: dict[str, str], api: Any, out: Any) -> int:
    if "filename" not in flags:
        raise KubectlError("error: must specify one of -f and -k\nSee 'kubectl apply -h' for help and examples")
    source, objects = _manifests(flags)
    kinds = _discover(api)
    for obj in objects:
        kind = _kind_of(kinds, obj, source)
        meta = obj.setdefault("metadata", {})
        ns = (meta.get("namespace") or flags.get("namespace") or "default") if kind.namespaced else None
        if kind.namespaced:
            meta["namespace"] = ns
        applied = copy.deepcopy(obj)
        applied.get("metadata", {}).get("annotations", {}).pop(LAST_APPLIED, None)
        meta.setdefault("annotations", {})[LAST_APPLIED] = go_json(applied) + "\n"
        name = meta.get("name", "")
        try:
            current = api("GET", _object_path(kind, ns, name))
        except _NotFound:
            api("POST", _object_path(kind, ns), obj)
            out.write(f"{kind.qualified}/{name} created\n")
            continue
        last_text = ((current.get("metadata") or {}).get("annotations") or {}).get(LAST_APPLIED)
        last = json.loads(last_text) if last_text else {}
        if last == applied:
            out.write(f"{kind.qualified}/{name} unchanged\n")
            continue
        patch = _merge_diff(last, applied)
        patch.setdefault("metadata", {}).setdefault("annotations", {})[LAST_APPLIED] = go_json(applied) + "\n"
        api("PATCH", _object_path(kind, ns, name), patch)
        out.write(f"{kind.qualified}/{name} configured\n")
    return 0


def _wait_gone(paths: list[str], flags: dict[str, str], api: Any) -> None:
    """kubectl delete waits (--wait, the default) until what it deleted is gone (a namespace terminates)."""
    if flags.get("wait") == "false":
        return
    deadline = time.monotonic() + (_duration(flags["timeout"]) if flags.get("timeout") else 60)
    for path in paths:
        while True:
            try:
                api("GET", path)
            except _NotFound:
                break
            if time.monotonic() > deadline:
                raise KubectlError("error: timed out waiting for the condition")
            time.sleep(0.3)


def _delete_files(flags: dict[str, str], api: Any, out: Any, err: Any) -> int:
    source, objects = _manifests(flags)
    kinds = _discover(api)
    failed = 0
    deleted = []
    for obj in objects:
        kind = _kind_of(kinds, obj, source)
        meta = obj.get("metadata") or {}
        ns = (meta.get("namespace") or flags.get("namespace") or "default") if kind.namespaced else None
        try:
            api("DELETE", _object_path(kind, ns, meta.get("name", "")))
            deleted.append(_object_path(kind, ns, meta.get("name", "")))
            out.write(f'{kind.qualified} "{meta.get("name", "")}" deleted\n')
        except _NotFound as exc:
            if flags.get("ignore-not-found") != "true":
                err.write(str(exc).replace("Error from server (NotFound): ",
                                           f'Error from server (NotFound): error when deleting "{source}": ') + "\n")
                failed = 1
    _wait_gone(deleted, flags, api)
    return failed


def _delete_objects(args: list[str], flags: dict[str, str], api: Any, out: Any, err: Any) -> int:
    kinds = _discover(api)
    namespace = flags.get("namespace") or "default"
    failed = 0
    pairs = _resource_names(args, kinds)
    if pairs[0][1] is None:
        raise KubectlError("error: resource(s) were provided, but no name was specified")
    deleted = []
    for kind, name in pairs:
        try:
            api("DELETE", _object_path(kind, namespace, name))
            deleted.append(_object_path(kind, namespace, name))
            out.write(f'{kind.qualified} "{name}" deleted\n')
        except _NotFound as exc:
            if flags.get("ignore-not-found") != "true":
                err.write(f"{exc}\n")
                failed = 1
    _wait_gone(deleted, flags, api)
    return failed


def _create(args: list[str], flags: dict[str, str], api: Any, out: Any) -> int:
    if not args or args[0] != "token":
        what = f"kubectl create {args[0]}" if args else "kubectl create without a subcommand"
        raise KubectlError(f"error: {SIM_NAME}: {what} is not simulated (kubectl create token is)")
    if len(args) != 2:
        raise KubectlError("error: exactly one SA name is required\nSee 'kubectl create token -h' for help and "
                           "examples")
    spec: dict[str, Any] = {}
    if "duration" in flags:
        seconds = int(_duration(flags["duration"]))
        if seconds <= 0:
            raise KubectlError("error: --duration must be greater than or equal to 0")
        spec["expirationSeconds"] = seconds
    if "audience" in flags:
        spec["audiences"] = [flags["audience"]]
    ns = flags.get("namespace") or "default"
    try:
        reply = api("POST", f"/api/v1/namespaces/{ns}/serviceaccounts/{args[1]}/token",
                    {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec})
    except KubectlError as exc:
        raise KubectlError(f"error: failed to create token: {str(exc).partition('): ')[2] or exc}") from exc
    out.write(reply["status"]["token"] + "\n")
    return 0


def _print_version(out: Any, output: str | None, server: dict[str, Any] | None) -> int:
    client = {"gitVersion": version(), "platform": f"linux/{k8s_arch()}"}
    if output in ("json", "yaml"):
        doc: dict[str, Any] = {"clientVersion": client}
        if server is not None:
            doc["serverVersion"] = server
        out.write(go_json(doc, indent=2) + "\n" if output == "json" else kube_yaml(doc))
        return 0
    if output:
        raise KubectlError("error: --output must be 'yaml' or 'json'")
    out.write(f"Client Version: {client['gitVersion']}\n")
    if server is not None:
        out.write(f"Server Version: {server['gitVersion']}\n")
    return 0


def _wait(args: list[str], flags: dict[str, str], targets: Any, out: Any, err: Any) -> int:
    cond = flags.get("for", "")
    kind, _sep, rest = cond.partition("=")
    if kind == "condition":
        name, _sep2, value = rest.partition("=")
        if name.lower() != "ready":
            raise KubectlError(f"error: {SIM_NAME}: waiting for condition {name!r} is not simulated "
                               "(nodes have the Ready condition only)")
        want = (value or "true").lower() == "true"
    elif cond != "delete":
        raise KubectlError(f"error: unrecognized condition: {cond!r}" if cond else
                           "error: --for must be specified")
    names = _node_args(args) if args else []
    if not names and "selector" not in flags and flags.get("all") != "true":
        raise KubectlError("error: resource(s) were provided, but no name was specified")
    deadline = time.time() + _duration(flags.get("timeout", "30s"))
    while True:
        items, errors = targets(names, ignore_missing=cond == "delete")
        if errors:
            for e in errors:
                err.write(e + "\n")
            return 1
        if cond == "delete":
            pending = [n["metadata"]["name"] for n in items]
            if not pending:
                for n in names:
                    out.write(f"node/{n} condition met\n")
                return 0
        else:
            pending = [n["metadata"]["name"] for n in items
                       if (node_status(n).split(",")[0] == "Ready") != want]
            if not pending:
                for n in items:
                    out.write(f"node/{n['metadata']['name']} condition met\n")
                return 0
        if time.time() >= deadline:
            for name in pending:
                err.write(f"error: timed out waiting for the condition on nodes/{name}\n")
            return 1
        time.sleep(1)


def _duration(text: str) -> float:
    """A Go duration (1h2m3s, 30s, 500ms; 0 alone needs no unit), as kubectl reads --timeout."""
    bad = f'error: invalid argument "{text}" for "--timeout" flag: time: '
    if text == "0":
        return 0.0
    if re.fullmatch(r"\d+", text):
        raise KubectlError(bad + f'missing unit in duration "{text}"')
    m = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+)s)?(?:(\d+)ms)?", text)
    if not text or not m:
        raise KubectlError(bad + f'invalid duration "{text}"')
    h, mi, sec, ms = (int(x) if x else 0 for x in m.groups())
    return h * 3600 + mi * 60 + sec + ms / 1000


K3S_BASH_COMPLETION = """\
#! /bin/bash
# bash completion for k3s ({sim}: its commands only)
_k3s_sim_complete() {{
    if [ "$COMP_CWORD" -eq 1 ]; then
        COMPREPLY=($(compgen -W "{commands}" -- "${{COMP_WORDS[COMP_CWORD]}}"))
    fi
}}
complete -o bashdefault -o default -F _k3s_sim_complete k3s
"""
K3S_ZSH_COMPLETION = """\
#compdef k3s
# zsh completion for k3s ({sim}: its commands only)
_k3s_sim() {{ compadd -- {commands} }}
compdef _k3s_sim k3s
"""
K3S_COMMANDS = ("server", "agent", "kubectl", "etcd-snapshot", "check-config", "completion", "crictl", "ctr")


def k3s_completion(argv: list[str]) -> int:
    """`k3s completion [-i] bash|zsh`: print the script, or with -i add its source line to the shell's rc file."""
    install = any(a in ("-i", "--i") for a in argv)
    shells = [a for a in argv if not a.startswith("-")]
    unknown = [a for a in argv if a.startswith("-") and a not in ("-i", "--i")]
    if unknown:
        raise UsageError(f"flag provided but not defined: {unknown[0]}")
    if not shells:
        raise Fatal("must provide a valid SHELL argument")
    shell = shells[0]
    templates = {"bash": K3S_BASH_COMPLETION, "zsh": K3S_ZSH_COMPLETION}
    if shell not in templates:
        raise Fatal(f"unknown shell: {shell}")
    script = templates[shell].format(sim=SIM_NAME, commands=" ".join(K3S_COMMANDS))
    if not install:
        sys.stdout.write(script)
        return 0
    rc = Path.home() / (".bashrc" if shell == "bash" else ".zshrc")
    line = f"source <(k3s completion {shell})"
    existing = rc.read_text() if rc.exists() else ""
    if line not in existing.splitlines():
        with rc.open("a") as fh:
            fh.write(("" if not existing or existing.endswith("\n") else "\n") + line + "\n")
    print(f"Autocomplete for {shell} added to: {rc}")
    return 0
