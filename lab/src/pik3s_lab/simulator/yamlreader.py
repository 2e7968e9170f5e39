"""A small YAML reader and writer for what K3s reads (config files, kubeconfigs, manifests)."""

from __future__ import annotations

import json
import re
from typing import Any


# A small YAML reader for what K3s reads: config files (flat mappings of
# scalars and lists), kubeconfigs (nested mappings and lists) and manifests
# (several documents, block scalars). It rejects what it does not understand
# (anchors, tags, multi-line flow collections) instead of guessing.
class YamlError(ValueError):
    pass


def _yaml_scalar(text: str) -> Any:
    text = text.strip()
    if text == "" or text in ("~", "null", "Null", "NULL"):
        return None
    if text[0] in "&*!%@`|>":
        raise YamlError(f"anchors, aliases, tags and reserved indicators are not read: {text}")
    if text[0] == '"':
        if not text.endswith('"') or len(text) < 2:
            raise YamlError(f"unterminated string: {text}")
        return json.loads(text)
    if text[0] == "'":
        if not text.endswith("'") or len(text) < 2:
            raise YamlError(f"unterminated string: {text}")
        return text[1:-1].replace("''", "'")
    if text[0] == "[":
        if not text.endswith("]"):
            raise YamlError(f"unterminated list: {text}")
        inner = text[1:-1].strip()
        return [_yaml_scalar(x) for x in _split_flow(inner)] if inner else []
    if text[0] == "{":
        if not text.endswith("}"):
            raise YamlError(f"unterminated mapping: {text}")
        inner = text[1:-1].strip()
        out: dict[str, Any] = {}
        for item in _split_flow(inner) if inner else []:
            k, sep, v = item.partition(":")
            if not sep:
                raise YamlError(f"bad flow mapping item: {item}")
            out[str(_yaml_scalar(k))] = _yaml_scalar(v)
        return out
    if text in ("true", "True", "TRUE"):
        return True
    if text in ("false", "False", "FALSE"):
        return False
    if re.fullmatch(r"[-+]?[0-9]+", text):
        return int(text)
    if re.fullmatch(r"[-+]?([0-9]*\.[0-9]+|[0-9]+\.[0-9]*)([eE][-+]?[0-9]+)?", text):
        return float(text)
    return text


def _split_flow(text: str) -> list[str]:
    parts, depth, quote, cur = [], 0, "", ""
    for ch in text:
        if quote:
            cur += ch
            if ch == quote:
                quote = ""
            continue
        if ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
            continue
        cur += ch
    if cur.strip():
        parts.append(cur.strip())
    return parts


def _strip_comment(line: str) -> str:
    quote = ""
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1] in " \t"):
            return line[:i].rstrip()
    return line.rstrip()


_BLOCK_HEADER = re.compile(r"^(?P<head>.*?(?:^|:|-))[ ]+(?P<style>[|>])(?P<a>[-+1-9]?)(?P<b>[-+1-9]?)$")


def _block_scalars(raw_lines: list[str]) -> list[str]:
    """Replace every block scalar (| or >, with chomping and indentation indicators) by the
    same string written as a JSON (double-quoted YAML) scalar on its key's line."""
    out: list[str] = []
    i = 0
    while i < len(raw_lines):
        line = _strip_comment(raw_lines[i])
        m = _BLOCK_HEADER.match(line)
        if not m or not (m.group("head").rstrip().endswith(":") or m.group("head").strip().endswith("-")):
            out.append(raw_lines[i])
            i += 1
            continue
        indicators = m.group("a") + m.group("b")
        chomp = next((c for c in indicators if c in "+-"), "")
        explicit = next((int(c) for c in indicators if c.isdigit()), 0)
        parent = len(line) - len(line.lstrip())
        body: list[str] = []
        j = i + 1
        while j < len(raw_lines) and (not raw_lines[j].strip()
                                      or len(raw_lines[j]) - len(raw_lines[j].lstrip(" ")) > parent):
            body.append(raw_lines[j])
            j += 1
        while body and not body[-1].strip() and chomp != "+":
            body.pop()  # trailing blank lines: kept only with +
        first = next((b for b in body if b.strip()), "")
        indent = parent + explicit if explicit else len(first) - len(first.lstrip(" "))
        texts = [b[indent:] if b.strip() else "" for b in body]
        if m.group("style") == "|":
            value = "\n".join(texts)
        else:  # folded: lines of a paragraph joined by spaces; blank and more-indented lines break
            value, prev = "", None
            for t in texts:
                if prev is None:
                    value = t
                elif not t:
                    value += "\n"
                elif not prev:
                    value += t
                elif t.startswith((" ", "\t")) or prev.startswith((" ", "\t")):
                    value += "\n" + t
                else:
                    value += " " + t
                prev = t
        if texts and chomp != "-":
            value += "\n"
        out.append(m.group("head") + " " + json.dumps(value))
        i = j
    return out


def yaml_load_all(text: str) -> list[Any]:
    """The documents of a multi-document stream (--- between them), empty ones left out;
    a JSON document is read as JSON."""
    docs: list[list[str]] = []
    cur: list[str] = []
    for raw in text.splitlines():
        if raw.rstrip() == "---" or raw.startswith("--- "):
            docs.append(cur)
            cur = [raw[4:]] if raw.startswith("--- ") and raw[4:].strip() else []
        elif raw.rstrip() == "...":
            continue
        else:
            cur.append(raw)
    docs.append(cur)
    out = []
    for lines in docs:
        doc = "\n".join(lines)
        if doc.lstrip().startswith(("{", "[")):
            try:
                out.append(json.loads(doc))
                continue
            except ValueError:
                pass
        value = yaml_load(doc)
        if value is not None:
            out.append(value)
    return out


def yaml_load(text: str) -> Any:
    lines: list[tuple[int, str]] = []
    for raw in _block_scalars(text.splitlines()):
        if raw.strip() in ("---", "..."):
            continue
        if "\t" in raw[: len(raw) - len(raw.lstrip())]:
            raise YamlError("tabs are not allowed for indentation")
        line = _strip_comment(raw)
        if line.strip():
            lines.append((len(line) - len(line.lstrip()), line.strip()))
    if not lines:
        return None
    value, pos = _yaml_block(lines, 0, lines[0][0])
    if pos != len(lines):
        raise YamlError(f"unexpected content: {lines[pos][1]}")
    return value


# A plain key may hold ':' not followed by a space (registry names: mirror.lab:5000).
_KEY_RE = re.compile(r"""^("(?:[^"\\]|\\.)*"|'[^']*'|[^'"\s](?:[^:]|:(?=\S))*?)\s*:(\s+(.*))?$""")


def _yaml_block(lines: list[tuple[int, str]], pos: int, indent: int) -> tuple[Any, int]:
    if lines[pos][1].startswith("- ") or lines[pos][1] == "-":
        seq: list[Any] = []
        while pos < len(lines) and lines[pos][0] == indent and (
            lines[pos][1].startswith("- ") or lines[pos][1] == "-"
        ):
            text = lines[pos][1]
            rest = text[1:].strip()
            if not rest:
                if pos + 1 < len(lines) and lines[pos + 1][0] > indent:
                    item, pos = _yaml_block(lines, pos + 1, lines[pos + 1][0])
                else:
                    item, pos = None, pos + 1
            elif _KEY_RE.match(rest) and not rest.startswith(("[", "{", '"', "'")):
                # "- key: value" starts a mapping indented at the key's column
                sub_indent = indent + len(text) - len(text[1:].lstrip())
                sub = [(sub_indent, rest)]
                j = pos + 1
                while j < len(lines) and lines[j][0] > indent:
                    sub.append(lines[j])
                    j += 1
                item, used = _yaml_block(sub, 0, sub_indent)
                if used != len(sub):
                    raise YamlError(f"bad indentation near: {sub[used][1]}")
                pos = j
            else:
                item, pos = _yaml_scalar(rest), pos + 1
            seq.append(item)
        return seq, pos
    mapping: dict[str, Any] = {}
    while pos < len(lines) and lines[pos][0] == indent:
        text = lines[pos][1]
        if text.startswith("- "):
            raise YamlError(f"a list item where a key was expected: {text}")
        m = _KEY_RE.match(text)
        if not m:
            raise YamlError(f"expected 'key: value', found: {text}")
        key = str(_yaml_scalar(m.group(1)))
        rest = m.group(3)
        if rest is not None and rest.strip() != "":
            mapping[key] = _yaml_scalar(rest)
            pos += 1
        elif pos + 1 < len(lines) and (
            lines[pos + 1][0] > indent
            or (lines[pos + 1][0] == indent and lines[pos + 1][1].startswith("- "))
        ):
            value, pos = _yaml_block(lines, pos + 1, lines[pos + 1][0])
            mapping[key] = value
        else:
            mapping[key] = None
            pos += 1
    if pos < len(lines) and lines[pos][0] > indent:
        raise YamlError(f"bad indentation near: {lines[pos][1]}")
    return mapping, pos


def yaml_dump(value: Any, indent: int = 0) -> str:
    """Block-style YAML for the files the simulator writes (kubeconfig)."""
    pad = " " * indent
    out = []
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(v, (dict, list)) and v:
                out.append(f"{pad}{k}:\n{yaml_dump(v, indent + 2)}")
            else:
                out.append(f"{pad}{k}: {_yaml_plain(v)}\n")
    elif isinstance(value, list):
        for v in value:
            if isinstance(v, dict) and v:
                body = yaml_dump(v, indent + 2)
                out.append(f"{pad}- {body.lstrip()}")
            else:
                out.append(f"{pad}- {_yaml_plain(v)}\n")
    return "".join(out)


def _yaml_plain(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, (dict, list)):
        return "{}" if isinstance(v, dict) else "[]"
    s = str(v)
    if _YAML_PLAIN.fullmatch(s) and s.lower() not in _YAML_WORDS and _yaml_scalar(s) == s:
        return s
    return json.dumps(s)  # a JSON string is a YAML string: quoted, so no reader takes it for another type


# Strings written plain: they start with a letter, _ or / (never a digit, so no reader
# takes them for a number or a timestamp) and are not one of YAML 1.1's words.
_YAML_PLAIN = re.compile(r"[A-Za-z_/][A-Za-z0-9_./:@-]*")
_YAML_WORDS = {"y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"}
