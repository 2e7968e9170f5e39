#!/usr/bin/env python3
# pik3s K3s simulator: TEST EQUIPMENT, NOT K3s.
#
# The pik3s lab cannot download real K3s, so its release mirror publishes this
# program under K3s's asset names. It honours the parts of K3s's interface a
# deployer touches (files, flags, config merging, token format and CA-hash
# check, node passwords, critical-config checks between servers, quorum,
# kubectl, etcd snapshots) and is strict wherever K3s is strict. It runs no
# containers and no Kubernetes. Every log line and `--version` say so.
#
# Python standard library only: it runs on the hosts' own python3.
"""pik3s K3s simulator (test equipment, not K3s)."""

from __future__ import annotations

import base64
import copy
import datetime as _dt
import functools
import hashlib
import hmac
import http.client
import http.server
import io
import json
import os
import platform
import queue
import re
import secrets
import selectors
import signal
import socket
import ssl
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

# Replaced when the mirror publishes an asset (see pik3s.lab.mirror).
PUBLISHED_VERSION = "@PIK3S_SIM_VERSION@"
PUBLISHED_ARCH = "@PIK3S_SIM_ARCH@"

SIM_NAME = "pik3s K3s simulator"
GO_VERSION = "go1.22.9"
CONTAINERD_VERSION = "containerd://1.7.23-k3s2"

# Node heartbeats and how long a node may stay silent before it is NotReady.
# Real Kubernetes waits 40 s; the simulator is faster so tests stay short.
HEARTBEAT_SECONDS = float(os.environ.get("PIK3S_SIM_HEARTBEAT", "2"))
NODE_GRACE_SECONDS = float(os.environ.get("PIK3S_SIM_GRACE", "8"))
RETRY_SECONDS = float(os.environ.get("PIK3S_SIM_RETRY", "3"))
# A real K3s server takes seconds from process start to a serving apiserver;
# the simulator waits this long before it listens, so that a restart is an
# API outage clients can observe (tests of rolling upgrades rely on it).
API_START_SECONDS = float(os.environ.get("PIK3S_SIM_API_START", "4"))
# The leader keeps node heartbeats in memory and writes them to the datastore
# (replicated, saved) at most this often, well within the grace period.
PERSIST_SECONDS = float(os.environ.get("PIK3S_SIM_PERSIST", str(min(3.0, NODE_GRACE_SECONDS / 3))))
# Threads that serve API requests: a fixed pool, started once (see ApiServer).
WORKERS = 16

# Unit tests of the simulator run several instances on one machine; they put
# each instance's absolute paths under its own root. The lab never sets this.
ROOT = os.environ.get("PIK3S_SIM_ROOT", "")

NODE_PASSWORD_MSG = (
    "Node password rejected, duplicate hostname or contents of "
    "'/etc/rancher/node/password' may not match server node-passwd entry, "
    "try enabling a unique node name with the --with-node-id flag"
)

# asset arch -> (machines it runs on, Kubernetes arch)
ARCH_RUNS_ON = {
    "amd64": ({"x86_64", "amd64"}, "amd64"),
    "arm64": ({"aarch64", "arm64"}, "arm64"),
    "armhf": ({"armv7l", "armv8l", "aarch64", "arm64"}, "arm"),
}


def p(path: str) -> Path:
    """An absolute path of the real system, under ROOT when tests set one."""
    return Path(ROOT + path) if ROOT else Path(path)


# --------------------------------------------------------------------------
# Logging, in K3s's logrus format, every line naming the simulator.

def log(level: str, msg: str) -> None:
    now = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    msg = msg.replace('"', '\\"')
    sys.stderr.write(f'time="{now}" level={level} msg="[{SIM_NAME}] {msg}"\n')
    sys.stderr.flush()


class Fatal(Exception):
    """Ends the program with level=fatal, as K3s does."""


# --------------------------------------------------------------------------
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


_KEY_RE = re.compile(r"""^("(?:[^"\\]|\\.)*"|'[^']*'|[^'"\s][^:]*?)\s*:(\s+(.*))?$""")


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


# --------------------------------------------------------------------------
# Flags: K3s's real names. kind is "str", "bool" or "list" (repeatable).

_COMMON = {
    "config": "str", "c": "str", "debug": "bool", "v": "str", "vmodule": "str",
    "log": "str", "l": "str", "alsologtostderr": "bool", "data-dir": "str", "d": "str",
    "token": "str", "t": "str", "token-file": "str", "server": "str", "s": "str",
    "node-name": "str", "with-node-id": "bool", "node-label": "list", "node-taint": "list",
    "node-ip": "list", "i": "list", "node-external-ip": "list", "node-internal-dns": "list",
    "node-external-dns": "list", "image-credential-provider-bin-dir": "str",
    "image-credential-provider-config": "str", "docker": "bool",
    "container-runtime-endpoint": "str", "default-runtime": "str", "disable-default-registry-endpoint": "bool",
    "nonroot-devices": "bool", "image-service-endpoint": "str", "pause-image": "str",
    "snapshotter": "str", "private-registry": "str", "system-default-registry": "str",
    "airgap-extra-registry": "list", "resolv-conf": "str", "flannel-iface": "str",
    "flannel-conf": "str", "flannel-cni-conf": "str", "kubelet-arg": "list",
    "kube-proxy-arg": "list", "protect-kernel-defaults": "bool", "selinux": "bool",
    "lb-server-port": "str", "prefer-bundled-bin": "bool", "rootless": "bool",
    "vpn-auth": "str", "vpn-auth-file": "str", "enable-pprof": "bool",
    "bind-address": "str", "disable-apiserver-lb": "bool",
}
_SERVER_ONLY = {
    "cluster-init": "bool", "cluster-reset": "bool", "cluster-reset-restore-path": "str",
    "agent-token": "str", "agent-token-file": "str", "tls-san": "list",
    "tls-san-security": "bool", "advertise-address": "str", "advertise-port": "str",
    "https-listen-port": "str", "supervisor-port": "str", "apiserver-port": "str",
    "apiserver-bind-address": "str", "cluster-cidr": "list", "service-cidr": "list",
    "service-node-port-range": "str", "cluster-dns": "list", "cluster-domain": "str",
    "flannel-backend": "str", "flannel-ipv6-masq": "bool", "flannel-external-ip": "bool",
    "egress-selector-mode": "str", "servicelb-namespace": "str",
    "write-kubeconfig": "str", "o": "str", "write-kubeconfig-mode": "str",
    "write-kubeconfig-group": "str", "helm-job-image": "str",
    "datastore-endpoint": "str", "datastore-cafile": "str", "datastore-certfile": "str",
    "datastore-keyfile": "str", "etcd-expose-metrics": "bool", "etcd-disable-snapshots": "bool",
    "etcd-snapshot-name": "str", "etcd-snapshot-schedule-cron": "str",
    "etcd-snapshot-retention": "str", "etcd-snapshot-dir": "str", "etcd-snapshot-compress": "bool",
    "etcd-s3": "bool", "etcd-s3-endpoint": "str", "etcd-s3-bucket": "str",
    "etcd-s3-region": "str", "etcd-s3-folder": "str", "etcd-s3-access-key": "str",
    "etcd-s3-secret-key": "str", "etcd-s3-insecure": "bool", "etcd-s3-timeout": "str",
    "default-local-storage-path": "str", "disable": "list", "disable-scheduler": "bool",
    "disable-cloud-controller": "bool", "disable-kube-proxy": "bool",
    "disable-network-policy": "bool", "disable-helm-controller": "bool",
    "kube-apiserver-arg": "list", "etcd-arg": "list", "kube-controller-manager-arg": "list",
    "kube-scheduler-arg": "list", "kube-cloud-controller-manager-arg": "list",
    "secrets-encryption": "bool", "secrets-encryption-provider": "str",
    "embedded-registry": "bool", "supervisor-metrics": "bool", "cluster-cidr-ipv6": "list",
    "disable-agent": "bool", "node-cidr-mask-size": "str",
}
FLAGS = {
    "server": {**_COMMON, **_SERVER_ONLY},
    "agent": dict(_COMMON),
    "etcd-snapshot": {
        "config": "str", "c": "str", "debug": "bool", "data-dir": "str", "d": "str",
        "node-name": "str", "dir": "str", "etcd-snapshot-dir": "str", "name": "str",
        "etcd-snapshot-name": "str", "snapshot-retention": "str",
        "etcd-snapshot-retention": "str", "token": "str", "t": "str", "server": "str",
        "s": "str", "etcd-snapshot-compress": "bool", "o": "str", "output": "str",
    },
}
ALIASES = {"c": "config", "d": "data-dir", "t": "token", "s": "server", "i": "node-ip",
           "o": "write-kubeconfig", "l": "log"}

# Settings every server of one cluster must share (K3s's critical config).
CRITICAL_KEYS = ("cluster-cidr", "service-cidr", "cluster-dns", "cluster-domain",
                 "disable", "disable-scheduler", "disable-cloud-controller",
                 "disable-kube-proxy", "disable-network-policy", "disable-helm-controller",
                 "flannel-backend", "secrets-encryption", "egress-selector-mode",
                 "servicelb-namespace")
CRITICAL_DEFAULTS = {
    "cluster-cidr": ["10.42.0.0/16"], "service-cidr": ["10.43.0.0/16"],
    "cluster-dns": ["10.43.0.10"], "cluster-domain": "cluster.local", "disable": [],
    "flannel-backend": "vxlan", "egress-selector-mode": "agent",
    "servicelb-namespace": "kube-system",
}


class UsageError(Exception):
    pass


def parse_cli(command: str, argv: list[str]) -> dict[str, Any]:
    """Parse command-line flags like urfave/cli: unknown flags are fatal."""
    table = FLAGS[command]
    out: dict[str, Any] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("-") or arg == "-":
            raise UsageError(f"unexpected argument {arg!r}")
        name, eq, value = arg.lstrip("-").partition("=")
        if name not in table:
            raise UsageError(f"flag provided but not defined: -{name}")
        kind = table[name]
        name = ALIASES.get(name, name)
        if kind == "bool":
            out[name] = value.lower() not in ("false", "0") if eq else True
        else:
            if not eq:
                i += 1
                if i >= len(argv):
                    raise UsageError(f"flag needs an argument: -{name}")
                value = argv[i]
            if kind == "list":
                out.setdefault(name, []).append(value)
            else:
                out[name] = value
        i += 1
    return out


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [_flag_str(v) for v in value]
    return [x.strip() for x in _flag_str(value).split(",")] if "," in str(value) else [_flag_str(value)]


def _flag_str(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def config_files(config_path: Path) -> list[Path]:
    """config.yaml, then config.yaml.d/*.yaml in alphabetical order."""
    files = [config_path] if config_path.is_file() else []
    dropins = Path(str(config_path) + ".d")
    if dropins.is_dir():
        files += sorted(f for f in dropins.iterdir() if f.suffix in (".yaml", ".yml") and f.is_file())
    return files


def load_config_files(command: str, files: list[Path]) -> dict[str, Any]:
    """Merge config files: last value wins, ``key+:`` appends to a list.

    Unknown keys are skipped with a warning, as K3s does.
    """
    table = FLAGS[command]
    merged: dict[str, Any] = {}
    for path in files:
        try:
            data = yaml_load(path.read_text())
        except (YamlError, json.JSONDecodeError) as exc:
            raise Fatal(f"failed to parse {path}: {exc}") from exc
        if data is None:
            continue
        if not isinstance(data, dict):
            raise Fatal(f"failed to parse {path}: the top level must be a mapping of flags")
        for raw_key, value in data.items():
            append = raw_key.endswith("+")
            key = raw_key[:-1] if append else raw_key
            if key not in table or key in ALIASES:
                log("warning", f"Unknown flag --{key} found in config.yaml, skipping")
                continue
            kind = table[key]
            if kind == "list":
                items = _as_list(value)
                merged[key] = (merged.get(key, []) + items) if append else items
            elif kind == "bool":
                merged[key] = value if isinstance(value, bool) else str(value).lower() == "true"
            else:
                if isinstance(value, (list, dict)):
                    raise Fatal(f"invalid value for --{key} in {path}: expected a single value")
                merged[key] = _flag_str(value)
    return merged


def resolve_config(command: str, argv: list[str]) -> dict[str, Any]:
    """Command-line flags override the config files; environment fills in K3S_*."""
    cli = parse_cli(command, argv)
    config_path = Path(cli.get("config") or os.environ.get("K3S_CONFIG_FILE") or str(p("/etc/rancher/k3s/config.yaml")))
    if "config" in cli and not config_path.is_file():
        raise Fatal(f"open {config_path}: no such file or directory")
    merged = load_config_files(command, config_files(config_path))
    merged.update({k: v for k, v in cli.items() if k != "config"})
    env_map = {"K3S_TOKEN": "token", "K3S_TOKEN_FILE": "token-file", "K3S_URL": "server",
               "K3S_NODE_NAME": "node-name", "K3S_DATA_DIR": "data-dir",
               "K3S_AGENT_TOKEN": "agent-token", "K3S_CLUSTER_INIT": "cluster-init",
               "K3S_KUBECONFIG_MODE": "write-kubeconfig-mode"}
    for env, key in env_map.items():
        if env in os.environ and key not in merged and key in FLAGS[command]:
            val = os.environ[env]
            merged[key] = val.lower() == "true" if FLAGS[command][key] == "bool" else val
    return merged


# --------------------------------------------------------------------------
# Tokens.

TOKEN_RE = re.compile(r"^K10([0-9a-f]{64})::([a-z][a-z0-9-]*):(.+)$")


def parse_token(token: str) -> tuple[str | None, str | None, str]:
    """(CA hash, username, password) of a secure token; (None, None, pw) of a short one."""
    token = token.strip()
    if token.startswith("K10"):
        m = TOKEN_RE.match(token)
        if not m:
            raise Fatal("invalid token format: a secure token is K10<sha256 of the CA>::<user>:<password>")
        return m.group(1), m.group(2), m.group(3)
    if not token:
        raise Fatal("token is empty")
    if ":" in token or token.startswith("K1"):
        # K3s reads "user:password" short tokens as such; keep the password part.
        user, _, pw = token.partition(":")
        return None, user or None, pw
    return None, None, token


def ca_hash(ca_pem: bytes) -> str:
    return hashlib.sha256(ca_pem).hexdigest()


def format_token(ca_pem: bytes, user: str, password: str) -> str:
    return f"K10{ca_hash(ca_pem)}::{user}:{password}"


def configured_token(cfg: dict[str, Any], key: str = "token") -> str | None:
    if cfg.get(key):
        return str(cfg[key]).strip()
    fkey = f"{key}-file"
    if cfg.get(fkey):
        path = Path(cfg[fkey])
        try:
            return path.read_text().strip()
        except OSError as exc:
            raise Fatal(f"failed to read token file {path}: {exc.strerror}") from exc
    return None


@functools.lru_cache(maxsize=32)
def password_check(password: str, salt: str) -> str:
    """The stored check of a token password (PBKDF2, deliberately slow): computed once per password and
    salt, not on every request that presents it."""
    return hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), 20000).hex()


# --------------------------------------------------------------------------
# Bootstrap encryption: K3s encrypts its bootstrap data (the CAs) with the
# token, which is why a snapshot cannot be restored without the token.

def _keystream(key: bytes, nonce: bytes, length: int) -> bytes:
    out = bytearray()
    counter = 0
    while len(out) < length:
        out += hashlib.sha256(key + nonce + counter.to_bytes(8, "big")).digest()
        counter += 1
    return bytes(out[:length])


def encrypt_bootstrap(password: str, data: dict[str, Any]) -> dict[str, str]:
    salt = secrets.token_bytes(16)
    nonce = secrets.token_bytes(16)
    key = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, 20000)
    plain = json.dumps(data).encode()
    cipher = bytes(a ^ b for a, b in zip(plain, _keystream(key, nonce, len(plain)), strict=True))
    mac = hmac.new(key, nonce + cipher, "sha256").hexdigest()
    return {"salt": salt.hex(), "nonce": nonce.hex(),
            "data": base64.b64encode(cipher).decode(), "mac": mac}


def decrypt_bootstrap(password: str, blob: dict[str, str]) -> dict[str, Any]:
    key = hashlib.pbkdf2_hmac("sha256", password.encode(), bytes.fromhex(blob["salt"]), 20000)
    nonce = bytes.fromhex(blob["nonce"])
    cipher = base64.b64decode(blob["data"])
    mac = hmac.new(key, nonce + cipher, "sha256").hexdigest()
    if not hmac.compare_digest(mac, blob["mac"]):
        raise Fatal("failed to decrypt bootstrap data: cipher: message authentication failed "
                    "(was this snapshot taken with a different token?)")
    plain = bytes(a ^ b for a, b in zip(cipher, _keystream(key, nonce, len(cipher)), strict=True))
    data: dict[str, Any] = json.loads(plain)
    return data


# --------------------------------------------------------------------------
# Certificates, made with the openssl command line (stdlib has no X.509).

def _openssl(*args: str, stdin: bytes | None = None) -> bytes:
    proc = subprocess.run(["openssl", *args], input=stdin, capture_output=True, check=False)
    if proc.returncode != 0:
        raise Fatal(f"openssl {args[0]} failed: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout


def make_ca(cn: str) -> tuple[bytes, bytes]:
    key = _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout")
    with tempfile.TemporaryDirectory() as tmp:
        kf = Path(tmp, "k.pem")
        kf.write_bytes(key)
        cert = _openssl("req", "-x509", "-new", "-key", str(kf), "-days", "3650",
                        "-subj", f"/CN={cn}@{int(time.time())}",
                        "-addext", "basicConstraints=critical,CA:TRUE",
                        "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature")
    return cert, key


def sign_cert(ca_cert: bytes, ca_key: bytes, subject: str, sans: list[str] | None,
              client: bool) -> tuple[bytes, bytes]:
    key = _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout")
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        (t / "k.pem").write_bytes(key)
        (t / "ca.pem").write_bytes(ca_cert)
        (t / "cak.pem").write_bytes(ca_key)
        csr = _openssl("req", "-new", "-key", str(t / "k.pem"), "-subj", subject)
        ext = ["basicConstraints=CA:FALSE", "keyUsage=critical,digitalSignature,keyEncipherment",
               f"extendedKeyUsage={'clientAuth' if client else 'serverAuth'}"]
        if sans:
            alt = ",".join(("IP:" if _is_ip(s) else "DNS:") + s for s in sans)
            ext.append(f"subjectAltName={alt}")
        (t / "ext.cnf").write_text("\n".join(ext) + "\n")
        cert = _openssl("x509", "-req", "-CA", str(t / "ca.pem"), "-CAkey", str(t / "cak.pem"),
                        "-CAcreateserial", "-days", "3650", "-extfile", str(t / "ext.cnf"),
                        stdin=csr)
    return cert, key


def _is_ip(value: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in value else socket.AF_INET, value)
        return True
    except OSError:
        return False


def write_private(path: Path, data: bytes | str, mode: int = 0o600) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode() if isinstance(data, str) else data)
    except OSError as exc:  # name the file, as Go's errors do (a full disk fails the write or the close)
        tmp.unlink(missing_ok=True)
        raise OSError(exc.errno, exc.strerror, str(path)) from exc
    os.chmod(tmp, mode)
    os.replace(tmp, path)


# --------------------------------------------------------------------------
# Host facts.

def check_cpu() -> None:
    """Refuse to run on a CPU this asset was not built for, as a binary would."""
    arch = PUBLISHED_ARCH
    if arch.startswith("@"):
        return  # unpublished source, as in the simulator's own tests
    machine = platform.machine().lower()
    if arch == "armhf" and machine in ("armv6l", "armv6"):
        sys.stderr.write("Illegal instruction\n")
        sys.exit(132)
    if machine not in ARCH_RUNS_ON[arch][0]:
        sys.stderr.write(f"{sys.argv[0]}: cannot execute binary file: Exec format error "
                         f"({SIM_NAME}: {arch} asset on a {machine} CPU)\n")
        sys.exit(126)


def k8s_arch() -> str:
    arch = PUBLISHED_ARCH
    if arch.startswith("@"):
        machine = platform.machine().lower()
        return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}.get(machine, machine)
    return ARCH_RUNS_ON[arch][1]


def version() -> str:
    return "v0.0.0+sim" if PUBLISHED_VERSION.startswith("@") else PUBLISHED_VERSION


def memory_cgroup_state(v2_controllers: Path | None = None, v1_cgroups: Path | None = None) -> tuple[bool, str]:
    """Whether the running kernel has the memory cgroup controller enabled."""
    v2 = v2_controllers or p("/sys/fs/cgroup/cgroup.controllers")
    v1 = v1_cgroups or p("/proc/cgroups")
    if v2.is_file():
        if "memory" in v2.read_text().split():
            return True, "cgroups V2 mounted, memory controller enabled"
        return False, "failed to find memory cgroup (v2)"
    if v1.is_file():
        for line in v1.read_text().splitlines():
            fields = line.split()
            if fields and fields[0] == "memory":
                if len(fields) >= 4 and fields[3] == "1":
                    return True, "cgroups V1 mounted, memory controller enabled"
                return False, "failed to find memory cgroup (v1): memory is disabled"
        return False, "failed to find memory cgroup (v1)"
    return False, "no cgroup hierarchy found"


def primary_ip(towards: str | None = None) -> str:
    """The address this host uses to reach ``towards`` (no packet is sent)."""
    target = towards or "192.0.2.1"
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((target, 9))
            return str(s.getsockname()[0])
    except OSError:
        return "127.0.0.1"


def os_image() -> str:
    try:
        for line in p("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return "Linux"


def sd_notify(message: str) -> None:
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.connect(addr)
            s.sendall(message.encode())
    except OSError as exc:
        log("warning", f"sd_notify failed: {exc}")


# --------------------------------------------------------------------------
# HTTP client for joining, peers and kubectl.

class HttpError(Exception):
    def __init__(self, status: int, body: str):
        super().__init__(f"{status} {body}")
        self.status = status
        self.body = body


def https_request(url: str, method: str = "GET", body: Any = None, *,
                  cadata: str | None = None, verify: bool = True,
                  basic: tuple[str, str] | None = None,
                  client_cert: tuple[bytes, bytes] | None = None, bearer: str | None = None,
                  timeout: float = 5.0) -> bytes:
    u = urllib.parse.urlsplit(url)
    ctx = ssl.create_default_context(cadata=cadata) if verify else ssl._create_unverified_context()
    if not verify:
        ctx.check_hostname = False
    tmpdir = None
    try:
        if client_cert:
            tmpdir = tempfile.mkdtemp(prefix="k3s-sim-")
            cf, kf = Path(tmpdir, "c.pem"), Path(tmpdir, "k.pem")
            write_private(cf, client_cert[0])
            write_private(kf, client_cert[1])
            ctx.load_cert_chain(str(cf), str(kf))
        conn = http.client.HTTPSConnection(u.hostname or "", u.port or 443, context=ctx, timeout=timeout)
        try:
            status, payload = _exchange(conn, method, u.path + (f"?{u.query}" if u.query else ""), body, basic,
                                        bearer)
        finally:
            conn.close()
        if status >= 400:
            raise HttpError(status, payload.decode(errors="replace").strip())
        return payload
    finally:
        if tmpdir:
            for f in Path(tmpdir).iterdir():
                f.unlink()
            os.rmdir(tmpdir)


class HttpClient:
    """HTTPS with keep-alive for long-running clients (agents, server peers): one TLS context, and per
    server URL a small pool of open connections reused request after request, so a heartbeat is one
    request on a connection already open, not a new connection and TLS handshake (nor a new thread on
    the server's side)."""

    def __init__(self, cadata: str, basic: tuple[str, str], timeout: float = 5.0):
        self.ctx = ssl.create_default_context(cadata=cadata)
        self.basic = basic
        self.timeout = timeout
        self.lock = threading.Lock()
        self.idle: dict[tuple[str, int], list[http.client.HTTPSConnection]] = {}

    def _take(self, key: tuple[str, int], timeout: float) -> tuple[http.client.HTTPSConnection, bool]:
        with self.lock:
            pool = self.idle.get(key) or []
            if pool:
                conn = pool.pop()
                if conn.sock is not None:
                    conn.sock.settimeout(timeout)
                conn.timeout = timeout
                return conn, True
        return http.client.HTTPSConnection(key[0], key[1], context=self.ctx, timeout=timeout), False

    def _give_back(self, key: tuple[str, int], conn: http.client.HTTPSConnection) -> None:
        with self.lock:
            self.idle.setdefault(key, []).append(conn)

    def request(self, url: str, method: str = "GET", body: Any = None, timeout: float | None = None) -> bytes:
        u = urllib.parse.urlsplit(url)
        key = (u.hostname or "", u.port or 443)
        path = u.path + (f"?{u.query}" if u.query else "")
        for _attempt in range(2):
            conn, reused = self._take(key, timeout or self.timeout)
            try:
                status, payload = _exchange(conn, method, path, body, self.basic)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError, ssl.SSLEOFError):
                conn.close()
                if reused:  # the server closed it while idle: the request never reached it
                    continue
                raise
            except BaseException:
                conn.close()
                raise
            self._give_back(key, conn)
            if status >= 400:
                raise HttpError(status, payload.decode(errors="replace").strip())
            return payload
        raise OSError(f"{url}: connection closed by the server")

    def close(self) -> None:
        with self.lock:
            for pool in self.idle.values():
                for conn in pool:
                    conn.close()
            self.idle.clear()


def _exchange(conn: http.client.HTTPConnection, method: str, path: str, body: Any,
              basic: tuple[str, str] | None, bearer: str | None = None) -> tuple[int, bytes]:
    headers = {"User-Agent": f"k3s/{version()} ({SIM_NAME})"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/merge-patch+json" if method == "PATCH" else "application/json"
    if bearer:
        headers["Authorization"] = f"Bearer {bearer}"
    elif basic:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{basic[0]}:{basic[1]}".encode()).decode()
    conn.request(method, path, body=data, headers=headers)
    resp = conn.getresponse()
    return resp.status, resp.read()


# --------------------------------------------------------------------------
# Nodes as Kubernetes shows them.

def iso(t: float) -> str:
    return _dt.datetime.fromtimestamp(t, _dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# Taints the node lifecycle controller sets from the node's state, never stored.
SYNTHETIC_TAINTS = ("node.kubernetes.io/unschedulable", "node.kubernetes.io/unreachable")


def node_object(rec: dict[str, Any], now: float | None = None) -> dict[str, Any]:
    now = now or time.time()
    ready = now - rec["last_seen"] <= NODE_GRACE_SECONDS and rec.get("running", True)
    taints = list(rec.get("taints", []))
    if rec.get("unschedulable"):
        taints.append({"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"})
    if not ready:
        taints.append({"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule"})
    addresses = [{"type": "InternalIP", "address": rec["ip"]}]
    addresses += [{"type": "ExternalIP", "address": a} for a in rec.get("external_ips", [])]
    addresses.append({"type": "Hostname", "address": rec["name"]})
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {
            "name": rec["name"], "labels": dict(rec["labels"]),
            "annotations": {"k3s.io/node-args": json.dumps(rec.get("args", [])),
                            "pik3s.io/simulated-by": SIM_NAME},
            "creationTimestamp": iso(rec["created"]), "uid": uuid_for(f"node/{rec['name']}/{rec['created']}"),
        },
        "spec": {"unschedulable": bool(rec.get("unschedulable")), "taints": taints,
                 "podCIDR": rec.get("pod_cidr", "")},
        "status": {
            "conditions": [{
                "type": "Ready", "status": "True" if ready else "Unknown",
                "reason": "KubeletReady" if ready else "NodeStatusUnknown",
                "message": "kubelet is posting ready status" if ready else "Kubelet stopped posting node status.",
                "lastHeartbeatTime": iso(rec["last_seen"]),
            }],
            "addresses": addresses,
            "nodeInfo": {
                "kubeletVersion": rec["version"], "kubeProxyVersion": rec["version"],
                "architecture": rec["arch"], "operatingSystem": "linux",
                "osImage": rec.get("os_image", "Linux"), "kernelVersion": rec.get("kernel", ""),
                "containerRuntimeVersion": CONTAINERD_VERSION, "machineID": rec.get("machine_id", ""),
                "systemUUID": rec.get("system_uuid", ""), "bootID": rec.get("boot_id", ""),
            },
        },
    }


def node_roles(obj: dict[str, Any]) -> str:
    roles = sorted(k.split("/", 1)[1] for k, v in obj["metadata"]["labels"].items()
                   if k.startswith("node-role.kubernetes.io/"))
    return ",".join(roles) or "<none>"


def node_status(obj: dict[str, Any]) -> str:
    cond = obj["status"]["conditions"][0]
    status = "Ready" if cond["status"] == "True" else "NotReady"
    if obj["spec"]["unschedulable"]:
        status += ",SchedulingDisabled"
    return status


def parse_taint(spec: str) -> dict[str, str]:
    m = re.fullmatch(r"([A-Za-z0-9./_-]+)(?:=([A-Za-z0-9._-]*))?:(NoSchedule|PreferNoSchedule|NoExecute)", spec)
    if not m:
        raise Fatal(f"invalid taint spec: {spec}")
    taint = {"key": m.group(1), "effect": m.group(3)}
    if m.group(2) is not None:
        taint["value"] = m.group(2)
    return taint


def parse_label(spec: str) -> tuple[str, str]:
    key, eq, value = spec.partition("=")
    if not eq or not re.fullmatch(r"[A-Za-z0-9./_-]+", key):
        raise Fatal(f"invalid node label: {spec}")
    return key, value


# --------------------------------------------------------------------------
# The server.

class ServiceUnavailable(Exception):
    pass


# A replicated state a member refuses because it already has that revision (other content) or a later one.
STALE_REPLICA = "stale replica"


class ServerState:
    """One server's copy of the cluster datastore.

    As in etcd, one member leads: every write is an operation sent to the
    leader (the first reachable member by name), which applies it and pushes
    the new state to the others; it counts only when a quorum of the members
    has it. A server without quorum answers nothing but /ping and /cacerts.
    """

    def __init__(self, server: Server):
        self.server = server
        self.lock = threading.RLock()
        self.data: dict[str, Any] = {}
        self._alive_cache: tuple[float, list[str]] = (0.0, [])
        # Members that stopped answering (name -> when), as etcd marks a peer inactive: skipped by the
        # calls that serve requests and writes, and probed again by one background thread, so that a
        # peer that is gone costs one timeout, not one per request.
        self._down: dict[str, float] = {}
        self._prober: threading.Thread | None = None

    # persistence ------------------------------------------------------------
    def load(self) -> None:
        self.data = json.loads(self.server.db_file.read_text())

    def save(self) -> None:
        write_private(self.server.db_file, json.dumps(self.data, indent=1, sort_keys=True))

    # membership and quorum --------------------------------------------------
    def members(self) -> dict[str, str]:
        return dict(self.data.get("members", {}))

    def forget_alive(self) -> None:
        self._alive_cache = (0.0, [])

    def _ping(self, url: str) -> dict[str, Any] | None:
        try:
            info = json.loads(self.server.peer_call(url, "GET", "/v1-k3s/sim/peer/ping", timeout=1.5))
        except Exception:
            return None
        return info if isinstance(info, dict) else None

    def mark_down(self, name: str) -> None:
        """``name`` did not answer: skip it until the prober hears from it again."""
        self._down.setdefault(name, time.monotonic())
        if self._prober is None:
            self._prober = threading.Thread(target=self._probe_loop, daemon=True, name="etcd-prober")
            self._prober.start()

    def _probe_loop(self) -> None:
        """One long-lived thread (threads that exit leak under qemu-user 7.2): ping the members marked
        down, once a second, and bring back those that answer."""
        while not self.server.stop.wait(1.0):
            members = self.members()
            for name in list(self._down):
                if name not in members:
                    self._down.pop(name, None)
                elif self._ping(members[name]) is not None:
                    self._down.pop(name, None)
                    self.forget_alive()

    def alive(self) -> list[str]:
        """Members that answer (this one included), sorted by name."""
        now = time.monotonic()
        if now - self._alive_cache[0] < 1.0:
            return self._alive_cache[1]
        alive = [self.server.node_name]
        for name, url in self.members().items():
            if name == self.server.node_name or name in self._down:
                continue
            info = self._ping(url)
            if info is None:
                self.mark_down(name)
            elif info.get("generation") == self.data.get("generation"):
                alive.append(name)
        self._alive_cache = (now, sorted(alive))
        return self._alive_cache[1]

    def quorum(self) -> int:
        return len(self.members()) // 2 + 1

    def has_quorum(self) -> bool:
        return len(self.alive()) >= self.quorum()

    def require_quorum(self) -> None:
        if not self.has_quorum():
            raise ServiceUnavailable("etcdserver: request timed out (no quorum: "
                                     f"{len(self.alive())} of {len(self.members())} etcd members reachable)")

    def leader(self) -> str:
        return self.alive()[0]

    # writes -----------------------------------------------------------------
    def write(self, op: dict[str, Any]) -> None:
        """Commit one operation through the leader, on a quorum of members."""
        self.require_quorum()
        leader = self.leader()
        if leader != self.server.node_name:
            try:
                self.server.peer_call(self.members()[leader], "POST", "/v1-k3s/sim/peer/write", op, timeout=10)
                return
            except HttpError as exc:
                status = ApiStatus.from_body(exc.body)
                if status is not None:
                    raise status from exc
                if exc.status == 403:
                    raise PermissionError(exc.body) from exc
                if exc.status == 404:
                    raise KeyError(exc.body) from exc
                raise ServiceUnavailable(f"etcdserver: leader {leader} refused the write: {exc.body}") from exc
            except (OSError, ssl.SSLError) as exc:
                self.forget_alive()
                raise ServiceUnavailable(f"etcdserver: leader changed ({leader} unreachable)") from exc
        self.commit(op)

    def commit(self, op: dict[str, Any]) -> None:
        """Apply ``op`` as the leader and replicate it."""
        with self.lock:
            self.require_quorum()
            new = copy.deepcopy(self.data)
            self.server.apply_op(new, op)
            new["revision"] = new.get("revision", 0) + 1
            acks, behind = 1, False
            for name, url in self.members().items():
                if name == self.server.node_name or name in self._down:
                    continue  # a member that stopped answering catches up when it is back
                try:
                    self.server.peer_call(url, "POST", "/v1-k3s/sim/peer/replicate", new, timeout=2)
                    acks += 1
                except HttpError as exc:
                    # The member has this revision or a later one from another leader (members saw each
                    # other differently for a moment): this one is behind, as a deposed etcd leader is.
                    behind = behind or STALE_REPLICA in exc.body
                except Exception:
                    self.mark_down(name)
            # A quorum of the current members must acknowledge (a member being
            # added is not serving yet; it receives the state in its join reply).
            if acks < self.quorum():
                self.forget_alive()
                if behind:
                    self.server._pull_latest()  # catch up; the caller's retry writes on the latest state
                    raise ServiceUnavailable("etcdserver: leader changed (this member was behind; caught up)")
                raise ServiceUnavailable("etcdserver: request timed out (write not acknowledged by a quorum)")
            self.data = new
            self.save()
            self.server.count("writes")

    def receive(self, incoming: dict[str, Any]) -> str:
        """A peer's state (replicated by a leader, or pulled at start): "ok" (taken, or already this one),
        STALE_REPLICA (this member has that revision with other content, or a later one: the sender is
        behind), or "generation"."""
        with self.lock:
            if incoming.get("generation") != self.data.get("generation"):
                return "generation"
            mine, theirs = self.data.get("revision", 0), incoming.get("revision", 0)
            if theirs > mine:
                self.data = incoming
                self.save()
                return "ok"
            if theirs == mine and incoming == self.data:
                return "ok"
            return STALE_REPLICA


class Server:
    def __init__(self, cfg: dict[str, Any]):
        self.cfg = cfg
        self.data_dir = Path(cfg.get("data-dir") or p("/var/lib/rancher/k3s"))
        self.server_dir = self.data_dir / "server"
        self.tls = self.server_dir / "tls"
        self.port = int(cfg.get("https-listen-port") or 6443)
        self.node_name = node_name_from(cfg)
        ips = _as_list(cfg.get("node-ip"))
        self.node_ip = cfg.get("advertise-address") or (ips[0] if ips else primary_ip(_url_host(cfg.get("server"))))
        self.url = f"https://{_url_host_fmt(self.node_ip)}:{self.port}"
        self.state = ServerState(self)
        # Once etcd data exists, it decides: cluster-init and server are ignored.
        self.etcd = bool(cfg.get("cluster-init") or cfg.get("server")
                         or (self.server_dir / "db" / "etcd").is_dir())
        self.stop = threading.Event()
        self.password = ""
        self.server_ca = b""
        self.httpd: ApiServer | None = None
        self.kube_vip: KubeVip | None = None
        self._peers: HttpClient | None = None
        # Heartbeats the leader has not written to the datastore yet (name -> last_seen, running, version).
        self.pending: dict[str, dict[str, Any]] = {}
        self.stats_lock = threading.Lock()
        self.stats = {"connections": 0, "requests": 0, "heartbeats": 0, "writes": 0}

    # paths ------------------------------------------------------------------
    @property
    def db_file(self) -> Path:
        if self.etcd:
            return self.server_dir / "db" / "etcd" / "state.json"
        return self.server_dir / "db" / "state.db"

    def critical(self) -> dict[str, Any]:
        out = {}
        for key in CRITICAL_KEYS:
            val = self.cfg.get(key, CRITICAL_DEFAULTS.get(key, False))
            out[key] = sorted(val) if isinstance(val, list) else val
        return out

    def creds(self) -> tuple[str, str]:
        return ("server", self.password)

    def count(self, what: str, n: int = 1) -> None:
        with self.stats_lock:
            self.stats[what] += n

    def peer_call(self, url: str, method: str, path: str, body: Any = None, timeout: float = 3) -> bytes:
        peers = self._peers
        if peers is None or peers.basic != self.creds():
            peers = self._peers = HttpClient(self.server_ca.decode(), self.creds())
        return peers.request(url + path, method, body, timeout=timeout)

    # start-up ---------------------------------------------------------------
    def start(self) -> None:
        ok, why = memory_cgroup_state()
        if not ok:
            raise Fatal(f"{why}: enable the memory cgroup on the kernel command line "
                        "(cgroup_memory=1 cgroup_enable=memory)")
        if self.cfg.get("datastore-endpoint"):
            raise Fatal("external datastores (datastore-endpoint) are not simulated by the pik3s K3s simulator")
        log("info", f"Starting k3s {version()} ({SIM_NAME}, not K3s)")
        self._migrate_sqlite_if_asked()
        existing = self.db_file.exists()
        if self.cfg.get("cluster-reset"):
            self.cluster_reset()
            return
        token = configured_token(self.cfg)
        if existing:
            self._resume(token)
        elif self.cfg.get("server"):
            self._join(token)
        elif not self.etcd and (self.server_dir / "db" / "reset-flag").exists():
            raise Fatal(f"etcd database not found in {self.server_dir}")
        else:
            self._bootstrap(token)
        self._write_files()
        self._serve()
        # Where local tools (etcd-snapshot) reach this running server.
        write_private(self.server_dir / "db" / "sim-endpoint", f"https://{_url_host_fmt(self._local_address())}:{self.port}\n")
        self._register_self()
        (self.server_dir / "manifests").mkdir(mode=0o700, parents=True, exist_ok=True)
        threading.Thread(target=self._controllers_loop, daemon=True, name="controllers").start()
        log("info", f"k3s is up and running ({SIM_NAME})")
        sd_notify("READY=1\n")
        import_images(self.data_dir)
        self._heartbeat_loop()

    def _migrate_sqlite_if_asked(self) -> None:
        sqlite = self.server_dir / "db" / "state.db"
        if self.etcd and sqlite.exists() and not self.db_file.exists():
            log("info", "Migrating content from sqlite to etcd")
            self.db_file.parent.mkdir(parents=True, exist_ok=True)
            data = json.loads(sqlite.read_text())
            data["members"] = {self.node_name: self.url}
            write_private(self.db_file, json.dumps(data))
            sqlite.unlink()

    def _bootstrap(self, token: str | None) -> None:
        if token:
            hash_, _user, password = parse_token(token)
            if hash_:
                raise Fatal("token CA hash does not match the Cluster CA certificate hash: "
                            "a secure (K10...) token cannot start a new cluster; use a short token")
        else:
            password = secrets.token_hex(16)
        log("info", "Creating a new cluster: generating certificate authorities")
        server_ca, server_ca_key = make_ca("k3s-server-ca")
        client_ca, client_ca_key = make_ca("k3s-client-ca")
        salt = secrets.token_hex(8)
        bootstrap = {"server-ca.crt": server_ca.decode(), "server-ca.key": server_ca_key.decode(),
                     "client-ca.crt": client_ca.decode(), "client-ca.key": client_ca_key.decode()}
        agent_pw = None
        agent_token = configured_token(self.cfg, "agent-token")
        if agent_token:
            agent_pw = parse_token(agent_token)[2]
        self.password = password
        self.state.data = {
            "generation": secrets.token_hex(4), "revision": 1, "created": time.time(),
            "members": {self.node_name: self.url},
            "etcd": self.etcd, "critical": self.critical(), "nodes": {}, "node_passwords": {},
            "token_salt": salt, "token_check": password_check(password, salt),
            "agent_token_check": password_check(agent_pw, salt) if agent_pw else None,
            "bootstrap": encrypt_bootstrap(password, bootstrap),
        }
        self._install_bootstrap(bootstrap)
        self.state.save()

    def _resume(self, token: str | None) -> None:
        self.state.load()
        data = self.state.data
        stored = self.server_dir / "token"
        current = token or (stored.read_text().strip() if stored.exists() else None)
        if not current:
            raise Fatal("--token is required: no token configured and none found in the data directory")
        hash_, _user, password = parse_token(current)
        if password_check(password, data["token_salt"]) != data["token_check"]:
            raise Fatal("bootstrap data already found and encrypted with different token")
        self.password = password
        bootstrap = decrypt_bootstrap(password, data["bootstrap"])
        if hash_ and hash_ != ca_hash(bootstrap["server-ca.crt"].encode()):
            raise Fatal("token CA hash does not match the Cluster CA certificate hash")
        self._install_bootstrap(bootstrap)
        if self.etcd:
            self._check_membership()
            data.setdefault("members", {})[self.node_name] = self.url
        self._pull_latest()

    def _check_membership(self) -> None:
        others = {n: u for n, u in self.state.members().items() if n != self.node_name}
        for name, url in others.items():
            try:
                info = json.loads(self.peer_call(url, "GET", "/v1-k3s/sim/peer/ping", timeout=1.5))
            except (OSError, ssl.SSLError, HttpError, ValueError) as exc:
                log("info", f"etcd peer {name} ({url}) did not answer: {exc}")
                continue
            if info.get("generation") != self.state.data.get("generation"):
                raise Fatal(
                    f"this server is not a member of the etcd cluster served by {name} "
                    "(the cluster was reset or restored): remove "
                    f"{self.server_dir / 'db'} and restart to rejoin")
            if self.node_name not in info.get("members", [self.node_name]):
                # Its node was deleted (kubectl delete node): K3s's member controller removed the member.
                raise Fatal(
                    "etcdserver: the member has been permanently removed from the cluster (its node was "
                    f"deleted; {name} serves the cluster without it): remove {self.server_dir / 'db'} and "
                    "restart to join again")

    def _pull_latest(self) -> None:
        for name, url in self.state.members().items():
            if name == self.node_name:
                continue
            try:
                remote = json.loads(self.peer_call(url, "GET", "/v1-k3s/sim/peer/state", timeout=2))
            except (OSError, ssl.SSLError, HttpError, ValueError) as exc:
                log("info", f"etcd peer {name} ({url}) did not answer: {exc}")
                continue
            self.state.receive(remote)  # taken when newer than this member's

    def _join(self, token: str | None) -> None:
        if not token:
            raise Fatal("--token is required when joining a server (--server)")
        url = str(self.cfg["server"]).rstrip("/")
        hash_, _user, password = parse_token(token)
        log("info", f"Joining an existing cluster at {url}")
        while not self.stop.is_set():
            try:
                cacerts = https_request(url + "/cacerts", verify=False, timeout=5)
                if hash_ and ca_hash(cacerts) != hash_:
                    raise Fatal(f"failed to validate token: token CA hash does not match the Cluster CA "
                                f"certificate hash: {hash_[:12]}... != {ca_hash(cacerts)[:12]}...")
                self.server_ca = cacerts
                self.password = password
                reply = json.loads(https_request(
                    url + "/v1-k3s/server-bootstrap", "POST",
                    {"name": self.node_name, "url": self.url, "critical": self.critical()},
                    cadata=cacerts.decode(), basic=("server", password), timeout=15))
                break
            except HttpError as exc:
                if exc.status == 401:
                    raise Fatal(f"failed to validate token: failed to get bootstrap data from {url}: "
                                "401 Unauthorized (wrong token password)") from exc
                if exc.status == 400:
                    raise Fatal(f"failed to validate server configuration: {exc.body}") from exc
                if exc.status == 409:
                    raise Fatal("starting kubernetes: preparing server: start managed database: joining etcd "
                                f"cluster: {str(exc.body).strip()}") from exc
                log("info", f"Waiting to join the cluster: {url}: {exc}")
            except (OSError, ssl.SSLError) as exc:
                log("info", f"Waiting for the server at {url} to answer: {exc}")
            self.stop.wait(RETRY_SECONDS)
        else:
            raise Fatal("stopped before joining")
        bootstrap = decrypt_bootstrap(password, reply["state"]["bootstrap"])
        self.state.data = reply["state"]
        self._install_bootstrap(bootstrap)
        self.state.save()
        log("info", f"Joined the etcd cluster with {len(self.state.members())} members")

    def _install_bootstrap(self, b: dict[str, str]) -> None:
        self.server_ca = b["server-ca.crt"].encode()
        for name, content in b.items():
            write_private(self.tls / name, content)
        token = format_token(self.server_ca, "server", self.password)
        write_private(self.server_dir / "token", token + "\n")
        node_token = self.server_dir / "node-token"
        if not node_token.is_symlink():
            node_token.unlink(missing_ok=True)
            node_token.symlink_to("token")
        agent_token = configured_token(self.cfg, "agent-token")
        if agent_token:
            write_private(self.server_dir / "agent-token",
                          format_token(self.server_ca, "node", parse_token(agent_token)[2]) + "\n")
        write_private(self.server_dir / "cred" / "passwd",
                      f"{self.password},server,server,k3s:server\n")

    def _local_address(self) -> str:
        """Where local clients reach this server: the bind address, else loopback."""
        bind = self.cfg.get("bind-address")
        return bind if bind and bind not in ("0.0.0.0", "::") else "127.0.0.1"  # noqa: S104 - comparing, not binding

    def _sans(self) -> list[str]:
        sans = [self._local_address(), "127.0.0.1", "::1", "localhost", "kubernetes", "kubernetes.default",
                "kubernetes.default.svc", "kubernetes.default.svc.cluster.local",
                self.node_name, socket.gethostname(), self.node_ip]
        sans += _as_list(self.cfg.get("node-ip")) + _as_list(self.cfg.get("node-external-ip"))
        sans += _as_list(self.cfg.get("tls-san"))
        seen: list[str] = []
        for s in sans:
            if s and s not in seen:
                seen.append(s)
        return seen

    def _write_files(self) -> None:
        ca = self.tls / "server-ca.crt"
        cak = self.tls / "server-ca.key"
        sans = self._sans()
        stamp = self.tls / "serving-kube-apiserver.sans"
        if not stamp.exists() or stamp.read_text() != json.dumps(sans):
            cert, key = sign_cert(ca.read_bytes(), cak.read_bytes(), "/CN=kube-apiserver", sans, client=False)
            write_private(self.tls / "serving-kube-apiserver.crt", cert + ca.read_bytes())
            write_private(self.tls / "serving-kube-apiserver.key", key)
            write_private(stamp, json.dumps(sans))
        admin_crt = self.tls / "client-admin.crt"
        if not admin_crt.exists():
            cert, key = sign_cert((self.tls / "client-ca.crt").read_bytes(),
                                  (self.tls / "client-ca.key").read_bytes(),
                                  "/O=system:masters/CN=system:admin", None, client=True)
            write_private(admin_crt, cert)
            write_private(self.tls / "client-admin.key", key)
        kubeconfig = {
            "apiVersion": "v1",
            "clusters": [{"cluster": {
                "certificate-authority-data": base64.b64encode(ca.read_bytes()).decode(),
                "server": f"https://{_url_host_fmt(self._local_address())}:{self.port}"}, "name": "default"}],
            "contexts": [{"context": {"cluster": "default", "user": "default"}, "name": "default"}],
            "current-context": "default", "kind": "Config", "preferences": {},
            "users": [{"name": "default", "user": {
                "client-certificate-data": base64.b64encode(admin_crt.read_bytes()).decode(),
                "client-key-data": base64.b64encode((self.tls / "client-admin.key").read_bytes()).decode()}}],
        }
        mode_text = str(self.cfg.get("write-kubeconfig-mode") or "0600")
        try:
            mode = int(mode_text, 8)
        except ValueError as exc:
            raise Fatal(f"invalid write-kubeconfig-mode {mode_text!r}") from exc
        path = Path(self.cfg.get("write-kubeconfig") or p("/etc/rancher/k3s/k3s.yaml"))
        write_private(path, yaml_dump(kubeconfig), mode)
        if self.cfg.get("write-kubeconfig-group"):
            import grp
            os.chown(path, -1, grp.getgrnam(self.cfg["write-kubeconfig-group"]).gr_gid)
        log("info", f"Wrote kubeconfig {path}")

    def _serve(self) -> None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(self.tls / "serving-kube-apiserver.crt"), str(self.tls / "serving-kube-apiserver.key"))
        ctx.load_verify_locations(cafile=str(self.tls / "client-ca.crt"))
        ctx.verify_mode = ssl.CERT_OPTIONAL
        bind = self.cfg.get("bind-address") or "0.0.0.0"  # noqa: S104 - K3s listens on all addresses by default
        handler = type("Handler", (ApiHandler,), {"server_obj": self})
        time.sleep(API_START_SECONDS)
        try:
            self.httpd = ApiServer((bind, self.port), handler, ctx, self)
        except OSError as exc:
            raise Fatal(f"failed to listen on {bind}:{self.port}: {exc.strerror}") from exc
        threading.Thread(target=self.httpd.serve_forever, daemon=True, name="api-loop").start()
        threading.Thread(target=self._persist_loop, daemon=True, name="persist").start()
        log("info", f"Serving the Kubernetes API on https://{bind}:{self.port}")

    def node_record(self, payload: dict[str, Any], existing: dict[str, Any] | None) -> dict[str, Any]:
        now = time.time()
        rec: dict[str, Any] = dict(existing) if existing else {"created": now}
        labels = dict(existing["labels"]) if existing else {}
        if not existing:  # node-label and node-taint only apply at first registration
            for spec in payload.get("node_labels", []):
                k, v = parse_label(spec)
                labels[k] = v
            rec["taints"] = [parse_taint(t) for t in payload.get("node_taints", [])]
        labels.update({
            "kubernetes.io/arch": payload["arch"], "beta.kubernetes.io/arch": payload["arch"],
            "kubernetes.io/os": "linux", "beta.kubernetes.io/os": "linux",
            "kubernetes.io/hostname": payload["name"], "k3s.io/hostname": payload["hostname"],
            "k3s.io/internal-ip": payload["ip"], "node.kubernetes.io/instance-type": "k3s",
        })
        for role in payload.get("roles", []):
            labels[f"node-role.kubernetes.io/{role}"] = "true"
        rec.update({"name": payload["name"], "ip": payload["ip"], "arch": payload["arch"],
                    "version": payload["version"], "labels": labels, "last_seen": now,
                    "running": True, "os_image": payload.get("os_image", ""),
                    "kernel": payload.get("kernel", ""), "args": payload.get("args", []),
                    "external_ips": payload.get("external_ips", []),
                    **{k: payload.get(k, "") for k in ("machine_id", "boot_id", "system_uuid")}})
        return rec

    def register(self, payload: dict[str, Any], password: str) -> None:
        """Register (or re-register) a node, enforcing its node password."""
        self.state.write({"op": "register", "node": payload, "password": password})

    def heartbeat(self, name: str, password: str, version_: str, running: bool = True) -> None:
        """A node's heartbeat. The leader keeps it in memory (PERSIST_SECONDS at most, then one write for
        all of them); another server hands it to the leader."""
        self.count("heartbeats")
        self.state.require_quorum()
        leader = self.state.leader()
        beat = {"name": name, "password": password, "version": version_, "running": running}
        if leader == self.node_name:
            self.note_heartbeat(beat)
            return
        try:
            self.peer_call(self.state.members()[leader], "POST", "/v1-k3s/sim/peer/heartbeat", beat, timeout=5)
        except HttpError as exc:
            if exc.status == 403:
                raise PermissionError(exc.body) from exc
            if exc.status == 404:
                raise KeyError(name) from exc
            raise ServiceUnavailable(f"etcdserver: leader {leader} refused the heartbeat: {exc.body}") from exc
        except (OSError, ssl.SSLError) as exc:
            self.state.forget_alive()
            raise ServiceUnavailable(f"etcdserver: leader changed ({leader} unreachable)") from exc

    def note_heartbeat(self, beat: dict[str, Any]) -> None:
        """On the leader: check the node and its password as a write would, and keep the beat in memory."""
        name = beat["name"]
        with self.state.lock:
            if name not in self.state.data["nodes"]:
                raise KeyError(name)
            self._check_node_password(self.state.data, name, beat["password"])
            self.pending[name] = {"last_seen": time.time(), "running": beat["running"], "version": beat["version"]}

    def _persist_loop(self) -> None:
        """Write the heartbeats kept in memory to the datastore, at most every PERSIST_SECONDS."""
        while not self.stop.wait(PERSIST_SECONDS):
            with self.state.lock:
                batch = dict(self.pending)
            if not batch:
                continue
            try:
                self.state.write({"op": "heartbeats", "seen": batch})
            except (ServiceUnavailable, KeyError, PermissionError) as exc:
                log("warning", f"Node heartbeats not persisted yet: {exc}")
                continue
            with self.state.lock:
                for name, seen in batch.items():
                    if self.pending.get(name) is seen:
                        del self.pending[name]

    def node_records(self) -> dict[str, dict[str, Any]]:
        """The nodes as the datastore has them, with the heartbeats the leader holds in memory."""
        with self.state.lock:
            nodes = self.state.data["nodes"]
            return {n: (dict(r, **self.pending[n]) if n in self.pending else r) for n, r in nodes.items()}

    @staticmethod
    def _check_node_password(state: dict[str, Any], name: str, password: str) -> None:
        stored = state["node_passwords"].get(name)
        if stored is not None and stored != hashlib.sha256(f"{name}:{password}".encode()).hexdigest():
            raise PermissionError(NODE_PASSWORD_MSG)

    def apply_op(self, state: dict[str, Any], op: dict[str, Any]) -> None:
        """Apply one datastore operation (on the leader)."""
        kind = op["op"]
        if kind == "register":
            name = op["node"]["name"]
            self._check_node_password(state, name, op["password"])
            state["node_passwords"][name] = hashlib.sha256(f"{name}:{op['password']}".encode()).hexdigest()
            state["nodes"][name] = self.node_record(op["node"], state["nodes"].get(name))
            self.pending.pop(name, None)
        elif kind == "heartbeats":  # a batch the leader kept in memory; nodes deleted since are skipped
            for name, seen in op["seen"].items():
                if name in state["nodes"]:
                    state["nodes"][name].update(seen)
        elif kind == "add_member":
            state["members"][op["name"]] = op["url"]
        elif kind == "cordon":
            if op["name"] not in state["nodes"]:
                raise KeyError(op["name"])
            state["nodes"][op["name"]]["unschedulable"] = op["unschedulable"]
        elif kind == "node_meta":  # kubectl label / taint: kept in the datastore like any node field
            if op["name"] not in state["nodes"]:
                raise KeyError(op["name"])
            rec = state["nodes"][op["name"]]
            labels = dict(rec.get("labels", {}))
            for key, value in (op.get("labels") or {}).items():
                if value is None:
                    labels.pop(key, None)
                else:
                    labels[key] = str(value)
            rec["labels"] = labels
            if op.get("taints") is not None:
                rec["taints"] = op["taints"]
        elif kind in ("object_put", "object_delete"):
            apply_object_op(state, op)
        elif kind == "lease":
            apply_lease_op(state, op)
        elif kind == "delete_node":
            if op["name"] not in state["nodes"]:
                raise KeyError(op["name"])
            state["nodes"].pop(op["name"])
            state["node_passwords"].pop(op["name"], None)  # the <name>.node-password.k3s secret
            # K3s's etcd member controller (a finalizer on server nodes) removes a deleted server's member.
            if state.get("members", {}).pop(op["name"], None) is not None:
                log("info", f"Removed etcd member {op['name']} (its node was deleted)")
        else:
            raise ValueError(f"unknown operation {kind!r}")

    def own_payload(self) -> dict[str, Any]:
        roles = ["control-plane", "master"] + (["etcd"] if self.etcd else [])
        return node_payload(self.cfg, self.node_name, self.node_ip, roles)

    def _register_self(self) -> None:
        pw = node_password()
        while not self.stop.is_set():
            try:
                self.register(self.own_payload(), pw)
                return
            except PermissionError as exc:
                raise Fatal(str(exc)) from exc
            except ServiceUnavailable as exc:
                log("info", f"Waiting for etcd quorum before registering this node: {exc}")
            self.stop.wait(RETRY_SECONDS)

    def _controllers_loop(self) -> None:
        """The deploy controller on every server; the helm controller on the datastore's leader; what
        kube-vip would do on this server."""
        deploy, helm = DeployController(self), HelmController(self)
        self.kube_vip = KubeVip(self)
        while True:
            try:
                if self.state.has_quorum():
                    deploy.scan()
                    if self.state.leader() == self.node_name:
                        helm.scan()
                        Objects(self).purge_terminating()
                self.kube_vip.scan()
            except (ServiceUnavailable, ApiStatus) as exc:
                log("warning", f"controllers: {exc}")
            except Exception as exc:  # a controller's bug must not stop the server
                log("error", f"controllers: {type(exc).__name__}: {exc}")
            if self.stop.wait(DEPLOY_SECONDS):
                return

    def _heartbeat_loop(self) -> None:
        pw = node_password()
        while not self.stop.wait(HEARTBEAT_SECONDS):
            try:
                self.heartbeat(self.node_name, pw, version())
            except KeyError:
                log("info", "This node was deleted from the cluster: registering it again")
                try:
                    self.register(self.own_payload(), pw)
                except Exception as exc:
                    log("error", f"re-registration failed: {exc}")
            except ServiceUnavailable as exc:
                log("warning", f"Node heartbeat failed: {exc}")
            except PermissionError as exc:
                log("error", str(exc))

    def shutdown(self) -> None:
        self.stop.set()
        if self.kube_vip is not None:
            self.kube_vip.release(give_up_lease=True)  # as kube-vip when its node stops
        if self.httpd:
            self.httpd.shutdown()
            # Stop listening now (new connections are refused), not at exit:
            # the kernel would otherwise accept connections nobody serves.
            self.httpd.server_close()

    # cluster reset ----------------------------------------------------------
    def cluster_reset(self) -> None:
        restore = self.cfg.get("cluster-reset-restore-path")
        token = configured_token(self.cfg)
        if restore:
            path = Path(restore)
            if not path.is_file():
                raise Fatal(f"cluster-reset-restore-path {path}: no such file")
            snap = json.loads(path.read_text())
            if snap.get("kind") != "pik3s-sim-etcd-snapshot":
                raise Fatal(f"{path} is not an etcd snapshot")
            state = snap["state"]
            stored = self.server_dir / "token"
            current = token or (stored.read_text().strip() if stored.exists() else None)
            if not current:
                raise Fatal("--token is required to restore a snapshot onto a server that has no token")
            _h, _u, password = parse_token(current)
            if password_check(password, state["token_salt"]) != state["token_check"]:
                raise Fatal("bootstrap data already found and encrypted with different token")
            bootstrap = decrypt_bootstrap(password, state["bootstrap"])
            log("info", f"Restoring etcd snapshot {path}")
        else:
            if not self.db_file.exists():
                raise Fatal(f"etcd database not found in {self.server_dir}")
            state = json.loads(self.db_file.read_text())
            stored_token = (self.server_dir / "token").read_text().strip()
            password = parse_token(token or stored_token)[2]
            bootstrap = decrypt_bootstrap(password, state["bootstrap"])
        self.etcd = True
        self.password = password
        state["members"] = {self.node_name: self.url}
        state["generation"] = secrets.token_hex(4)
        state["etcd"] = True
        db = self.server_dir / "db"
        old_etcd = db / "etcd"
        if old_etcd.exists():  # kept aside as K3s does; snapshots stay where they are
            old_etcd.rename(db / f"etcd-old-{int(time.time())}")
        (db / "state.db").unlink(missing_ok=True)
        self.state.data = state
        self._install_bootstrap(bootstrap)
        self.state.save()
        write_private(self.server_dir / "db" / "reset-flag", "")
        log("info", "Managed etcd cluster membership has been reset, restart without --cluster-reset "
                    f"flag now. Backup and delete {self.server_dir / 'db'} on each peer etcd server "
                    "and rejoin the nodes")


def _url_host(url: Any) -> str | None:
    if not url:
        return None
    host = urllib.parse.urlsplit(str(url)).hostname
    if not host:
        return None
    try:
        return socket.gethostbyname(host)
    except OSError:
        return None


def _url_host_fmt(ip: str) -> str:
    return f"[{ip}]" if ":" in ip else ip


def node_name_from(cfg: dict[str, Any]) -> str:
    name = cfg.get("node-name") or socket.gethostname()
    if cfg.get("with-node-id"):
        id_file = p("/etc/rancher/node/node-id")
        if not id_file.exists():
            write_private(id_file, secrets.token_hex(4) + "\n")
        name = f"{name}-{id_file.read_text().strip()}"
    name = str(name).lower()
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", name):
        raise Fatal(f"invalid node name {name!r}: must be a lowercase RFC 1123 name")
    return name


def node_password() -> str:
    path = p("/etc/rancher/node/password")
    if not path.exists():
        write_private(path, secrets.token_hex(16) + "\n")
    return path.read_text().strip()


def node_payload(cfg: dict[str, Any], name: str, ip: str, roles: list[str]) -> dict[str, Any]:
    return {
        "name": name, "hostname": socket.gethostname(), "ip": ip, "arch": k8s_arch(),
        "version": version(), "roles": roles, "node_labels": _as_list(cfg.get("node-label")),
        "node_taints": _as_list(cfg.get("node-taint")), "os_image": os_image(),
        "kernel": platform.release(), "external_ips": _as_list(cfg.get("node-external-ip")),
        "args": sorted(k for k in cfg if k not in ("token", "agent-token")), **machine_ids(),
    }


def machine_ids() -> dict[str, str]:
    """What the kubelet reports as machineID, systemUUID and bootID (the Node's nodeInfo)."""
    def read(path: str) -> str:
        try:
            return Path(p(path)).read_text().strip()
        except OSError:
            return ""
    machine = read("/etc/machine-id")
    return {"machine_id": machine, "boot_id": read("/proc/sys/kernel/random/boot_id"),
            "system_uuid": read("/sys/class/dmi/id/product_uuid") or machine}


def import_images(data_dir: Path) -> None:
    images = data_dir / "agent" / "images"
    if not images.is_dir():
        return
    import tarfile
    for tarball in sorted(images.iterdir()):
        if not tarball.name.endswith((".tar", ".tar.gz", ".tar.zst", ".tgz")):
            continue
        try:
            with tarfile.open(tarball) as tf:
                member = tf.extractfile("manifest.json")
                manifest = json.loads(member.read()) if member else {}
        except (tarfile.TarError, KeyError, ValueError) as exc:
            log("error", f"Failed to import images from {tarball}: {exc}")
            continue
        arch = manifest.get("arch")
        if arch and arch != k8s_arch():
            log("error", f"Images in {tarball} are for {arch}, this node is {k8s_arch()}: not imported")
            continue
        log("info", f"Imported images from {tarball} ({len(manifest.get('images', []))} images)")


class _Writer:
    """A connection's unbuffered writer (what socketserver gives handlers, without its private class)."""

    def __init__(self, sock: socket.socket):
        self.sock = sock

    def write(self, data: bytes) -> int:
        self.sock.sendall(data)
        return len(data)

    def flush(self) -> None:
        pass


class _Conn:
    """One client connection and what outlives its requests: the TLS socket, its reader and writer."""

    def __init__(self, sock: ssl.SSLSocket, addr: Any):
        self.sock = sock
        self.addr = addr
        self.rfile = sock.makefile("rb")
        self.wfile = _Writer(sock)

    def close(self) -> None:
        for closer in (self.rfile.close, self.sock.close):
            try:
                closer()
            except OSError:
                pass


class ApiServer:
    """HTTPS/1.1 with keep-alive on a fixed pool of threads started once. A connection waiting for its
    next request sits in a selector, not in a thread; a worker takes it for one request (or its TLS
    handshake) and hands it back. No thread starts or ends per connection or request: under qemu-user
    7.2, which runs the lab's arm64 and armhf hosts, every thread that exits leaks about 200 KB, so a
    server that started one per connection grew until the kernel killed it."""

    def __init__(self, address: tuple[str, int], handler: type[ApiHandler], ctx: ssl.SSLContext,
                 server: Server, workers: int = WORKERS):
        self.listener = socket.create_server(address, backlog=128)
        self.handler, self.ctx, self.server_obj = handler, ctx, server
        self.selector = selectors.DefaultSelector()
        self.jobs: queue.SimpleQueue[tuple[str, Any] | None] = queue.SimpleQueue()
        self.returned: queue.SimpleQueue[_Conn] = queue.SimpleQueue()
        self.wake_r, self.wake_w = socket.socketpair()
        self.stopping = threading.Event()
        self.stopped = threading.Event()
        self.workers = [threading.Thread(target=self._work, daemon=True, name=f"api-{i}") for i in range(workers)]
        for t in self.workers:
            t.start()

    def serve_forever(self) -> None:
        self.listener.setblocking(False)
        self.selector.register(self.listener, selectors.EVENT_READ, "accept")
        self.selector.register(self.wake_r, selectors.EVENT_READ, "wake")
        idle: set[_Conn] = set()
        try:
            while not self.stopping.is_set():
                for key, _events in self.selector.select(timeout=1.0):
                    if key.data == "accept":
                        self._accept()
                    elif key.data == "wake":
                        self.wake_r.recv(4096)
                    else:
                        conn = key.data
                        self.selector.unregister(conn.sock)
                        idle.discard(conn)
                        self.jobs.put(("request", conn))
                while True:
                    try:
                        conn = self.returned.get_nowait()
                    except queue.Empty:
                        break
                    self.selector.register(conn.sock, selectors.EVENT_READ, conn)
                    idle.add(conn)
        finally:
            for conn in idle:
                conn.close()
            self.selector.close()
            self.stopped.set()

    def _accept(self) -> None:
        while True:
            try:
                sock, addr = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            self.jobs.put(("handshake", (sock, addr)))

    def _give_back(self, conn: _Conn) -> None:
        if self.stopping.is_set():
            conn.close()
            return
        self.returned.put(conn)
        try:
            self.wake_w.send(b"x")
        except OSError:
            conn.close()

    def _work(self) -> None:
        while True:
            job = self.jobs.get()
            if job is None:
                return
            kind, arg = job
            try:
                if kind == "handshake":
                    self._handshake(*arg)
                else:
                    self._request(arg)
            except Exception as exc:  # one request's failure must never cost a worker
                log("error", f"API request failed: {exc!r}")

    def _handshake(self, raw: socket.socket, addr: Any) -> None:
        raw.setblocking(True)
        raw.settimeout(10)
        try:
            sock = self.ctx.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            # K3s logs one line for a client that is not TLS (a plain TCP probe of the port, say).
            reason = "EOF" if isinstance(exc, (ssl.SSLEOFError, ConnectionResetError)) or not str(exc) else exc
            log("info", f"http: TLS handshake error from {addr[0]}:{addr[1]}: {reason}")
            raw.close()
            return
        sock.settimeout(30)
        self.server_obj.count("connections")
        self._give_back(_Conn(sock, addr))

    def _request(self, conn: _Conn) -> None:
        handler = self.handler(conn, conn.addr, self)  # type: ignore[arg-type]
        if handler.close_connection:
            conn.close()
        else:
            self._give_back(conn)

    def shutdown(self) -> None:
        """Stop serving: the listener closes, idle connections close, the workers end."""
        self.stopping.set()
        try:
            self.wake_w.send(b"x")
        except OSError:
            pass
        self.stopped.wait(5)
        self.listener.close()
        for _ in self.workers:
            self.jobs.put(None)

    def server_close(self) -> None:
        self.listener.close()


class ApiHandler(http.server.BaseHTTPRequestHandler):
    """One API request on a connection ApiServer keeps open (TLS done, reader and writer kept)."""

    server_obj: Server
    _raw: bytes = b""
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt: str, *args: Any) -> None:  # quiet access log
        pass

    def setup(self) -> None:
        conn: _Conn = self.request
        self.connection = conn.sock
        self.rfile, self.wfile = conn.rfile, conn.wfile  # type: ignore[assignment]

    def handle(self) -> None:
        self.close_connection = True
        self.handle_one_request()
        if getattr(self, "raw_requestline", b""):
            self.server_obj.count("requests")

    def finish(self) -> None:
        pass  # the writer is unbuffered; the connection stays open for its next request

    def _send(self, status: int, body: Any, ctype: str = "application/json") -> None:
        data = body if isinstance(body, bytes) else (
            json.dumps(body).encode() if ctype == "application/json" else str(body).encode())
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str) -> None:
        self._send(status, message + "\n", "text/plain")

    def _body(self) -> Any:
        data = self._raw
        ctype = self.headers.get("Content-Type", "").split(";")[0].strip()
        if ctype == "application/vnd.kubernetes.protobuf":
            return protobuf_body(data)
        if ctype in ("application/yaml", "application/apply-patch+yaml"):
            raise ApiStatus(415, "UnsupportedMediaType", f"{SIM_NAME}: YAML request bodies are not simulated")
        if not data:
            return None
        try:
            return json.loads(data)
        except ValueError as exc:
            raise ApiStatus(400, "BadRequest", f"the body of the request could not be decoded: {exc}") from exc

    def _basic(self) -> tuple[str, str] | None:
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Basic "):
            return None
        try:
            user, _, pw = base64.b64decode(auth[6:]).decode().partition(":")
        except ValueError:
            return None
        return user, pw

    def _token_user(self) -> str | None:
        """'server' or 'node' when the request carries a valid token password."""
        creds = self._basic()
        if not creds:
            return None
        user, pw = creds
        data = self.server_obj.state.data
        if password_check(pw, data["token_salt"]) == data["token_check"]:
            return user if user in ("server", "node") else None
        if user == "node" and data.get("agent_token_check") and \
                password_check(pw, data["token_salt"]) == data["agent_token_check"]:
            return "node"
        return None

    def _admin(self) -> bool:
        cert = self.connection.getpeercert() if isinstance(self.connection, ssl.SSLSocket) else None
        if not cert:
            return False
        subject: dict[str, str] = {}
        rdns: Any = cert.get("subject", ())
        for rdn in rdns:
            for key, value in rdn:
                subject[str(key)] = str(value)
        return subject.get("organizationName") == "system:masters"

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        srv = self.server_obj
        path = urllib.parse.urlsplit(self.path).path
        # The whole body is read, used or not (a DELETE carries DeleteOptions): the connection stays in step.
        length = int(self.headers.get("Content-Length") or 0)
        self._raw = self.rfile.read(length) if length else b""
        try:
            if path == "/ping" and method == "GET":
                return self._send(200, "pong", "text/plain")
            if path == "/cacerts" and method == "GET":
                return self._send(200, srv.server_ca, "text/plain")
            if path.startswith("/v1-k3s/"):
                return self._k3s(method, path)
            who = self._identity()
            if who is None:
                return self._send(401, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                        "message": "Unauthorized", "reason": "Unauthorized", "code": 401})
            return self._kube(method, path, who)
        except ApiStatus as exc:
            return self._send(exc.code, exc.status())
        except ServiceUnavailable as exc:
            return self._error(503, str(exc))
        except Fatal as exc:
            return self._error(400, str(exc))
        except (BrokenPipeError, ConnectionResetError):
            return None
        except Exception as exc:  # a bug in the simulator: answer (never leave the client waiting) and log it
            log("error", f"{method} {path}: {type(exc).__name__}: {exc}")
            return self._send(500, ApiStatus(500, "InternalError", f"{SIM_NAME}: {type(exc).__name__}: {exc}")
                              .status())

    def _k3s(self, method: str, path: str) -> None:
        srv = self.server_obj
        user = self._token_user()
        if user is None:
            return self._error(401, "Unauthorized")
        if path == "/v1-k3s/sim/peer/ping":
            return self._send(200, {"name": srv.node_name, "generation": srv.state.data.get("generation"),
                                    "members": sorted(srv.state.members())})
        if path == "/v1-k3s/sim/peer/state" and user == "server":
            return self._send(200, srv.state.data)
        if path == "/v1-k3s/sim/peer/write" and method == "POST" and user == "server":
            try:
                srv.state.commit(self._body())
            except ApiStatus as exc:
                return self._send(exc.code, exc.status())
            except PermissionError as exc:
                return self._error(403, str(exc))
            except KeyError as exc:
                return self._error(404, f"not found: {exc}")
            return self._send(200, {"ok": True})
        if path == "/v1-k3s/sim/peer/heartbeat" and method == "POST" and user == "server":
            try:
                srv.note_heartbeat(self._body())
            except PermissionError as exc:
                return self._error(403, str(exc))
            except KeyError as exc:
                return self._error(404, f"not found: {exc}")
            return self._send(200, {"ok": True})
        if path == "/v1-k3s/sim/peer/replicate" and method == "POST" and user == "server":
            verdict = srv.state.receive(self._body())
            if verdict == "ok":
                return self._send(200, {"ok": True})
            if verdict == STALE_REPLICA:
                return self._error(409, f"{STALE_REPLICA}: this member is at revision "
                                        f"{srv.state.data.get('revision', 0)}")
            return self._error(409, "member of another cluster generation")
        if path == "/v1-k3s/server-bootstrap" and method == "POST" and user == "server":
            return self._server_bootstrap(self._body())
        if path == "/v1-k3s/sim/apiservers":
            return self._send(200, sorted(srv.state.members().values()))
        if path == "/v1-k3s/sim/nodes/register" and method == "POST":
            body = self._body()
            try:
                srv.register(body["node"], body["password"])
            except PermissionError as exc:
                return self._error(403, str(exc))
            return self._send(200, {"ok": True})
        m = re.fullmatch(r"/v1-k3s/sim/nodes/([^/]+)/heartbeat", path)
        if m and method == "POST":
            body = self._body()
            try:
                srv.heartbeat(m.group(1), body["password"], body["version"], body.get("running", True))
            except KeyError:
                return self._error(404, f"node {m.group(1)} not found")
            except PermissionError as exc:
                return self._error(403, str(exc))
            # The servers to fall back on, in the reply: no separate request for them.
            return self._send(200, {"ok": True, "apiservers": sorted(srv.state.members().values())})
        return self._error(404, "not found")

    # Kubernetes API: discovery, objects, tokens -----------------------------
    def _identity(self) -> tuple[str, list[str]] | None:
        if self._admin():
            return "system:admin", ["system:masters", "system:authenticated"]
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            return Objects(self.server_obj).token_identity(auth[7:].strip())
        return None

    def _authorize(self, who: tuple[str, list[str]], verb: str, group: str, resource: str,
                   namespace: str | None, name: str | None, path: str) -> None:
        user, groups = who
        if "system:masters" in groups or Objects(self.server_obj).allowed(user, groups, verb, group, resource,
                                                                           namespace, name, path):
            return
        if not resource:
            raise ApiStatus(403, "Forbidden", f'forbidden: User "{user}" cannot {verb} path "{path}"')
        what = f'{resource.partition("/")[0]}{"." + group if group else ""}' + (f' "{name}"' if name else "")
        scope = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
        raise ApiStatus(403, "Forbidden", f'{what} is forbidden: User "{user}" cannot {verb} resource '
                        f'"{resource}" in API group "{group}" {scope}',
                        {"name": name or "", "group": group, "kind": resource.partition("/")[0]})

    def _discovery(self, path: str) -> Any:
        """/api, /apis, /api/v1, /apis/<group>[/<version>]: what clients read to map kinds to paths."""
        srv = self.server_obj
        kinds = Objects(srv).kinds()
        versions: dict[str, list[str]] = {}
        for k in kinds:
            if k.version not in versions.setdefault(k.group, []):
                versions[k.group].append(k.version)

        def group_doc(g: str) -> dict[str, Any]:
            vs = [{"groupVersion": f"{g}/{v}", "version": v} for v in versions[g]]
            return {"name": g, "versions": vs, "preferredVersion": vs[0]}

        def resources(g: str, v: str) -> dict[str, Any]:
            res = []
            for k in kinds:
                if (k.group, k.version) != (g, v):
                    continue
                res.append({"name": k.plural, "singularName": k.kind.lower(), "namespaced": k.namespaced,
                            "kind": k.kind, "verbs": list(k.verbs),
                            **({"shortNames": list(k.short)} if k.short else {})})
                for sub, sub_kind, verbs in SUBRESOURCES.get((g, k.plural), []):
                    res.append({"name": f"{k.plural}/{sub}", "singularName": "", "namespaced": k.namespaced,
                                "group": "authentication.k8s.io" if sub == "token" else g,
                                "version": "v1", "kind": sub_kind, "verbs": list(verbs)})
            return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": f"{g}/{v}" if g else v,
                    "resources": res}

        if path == "/api":
            return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": f"{_url_host_fmt(srv.node_ip)}:{srv.port}"}]}
        if path == "/api/v1":
            return resources("", "v1")
        if path == "/apis":
            return {"kind": "APIGroupList", "apiVersion": "v1",
                    "groups": [group_doc(g) for g in sorted(versions) if g]}
        parts = path.split("/")[2:]
        if len(parts) == 1 and parts[0] in versions and parts[0]:
            return dict(group_doc(parts[0]), kind="APIGroup", apiVersion="v1")
        if len(parts) == 2 and parts[1] in versions.get(parts[0], []) and parts[0]:
            return resources(parts[0], parts[1])
        raise ApiStatus(404, "NotFound", "the server could not find the requested resource")

    def _objects(self, method: str, who: tuple[str, list[str]], m: re.Match[str], query: dict[str, list[str]]) -> None:
        srv = self.server_obj
        objs = Objects(srv)
        group = m.group("g") or ""
        version = m.group("v") or m.group("gv")
        ns, plural, name, sub = m.group("ns"), m.group("plural"), m.group("name"), m.group("sub")
        if ns and not plural:  # /api/v1/namespaces/<name>
            plural, name, ns = "namespaces", ns, None
        kind = objs.by_path(group, version, plural or "")
        if not kind.namespaced and ns:
            raise ApiStatus(404, "NotFound", "the server could not find the requested resource")
        if "watch" in query and query["watch"][0] in ("1", "true"):
            raise ApiStatus(405, "MethodNotAllowed", f"{SIM_NAME}: watch is not simulated")
        verb = {"GET": "get" if name else "list", "POST": "create", "PUT": "update", "PATCH": "patch",
                "DELETE": "delete"}[method]
        resource = f"{kind.plural}/{sub}" if sub else kind.plural
        self._authorize(who, verb, kind.group, resource, ns, name, self.path)
        if kind is NODE_KIND:
            return self._nodes(method, name, sub)
        if sub:
            if (kind.group, kind.plural, sub) == ("", "serviceaccounts", "token") and method == "POST" and name:
                body = self._body() or {}
                spec = body.get("spec") or {}
                status = objs.issue_token(ns or "default", name, spec.get("expirationSeconds") or 3600,
                                          spec.get("audiences") or [])
                return self._send(201, {"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
                                        "metadata": {"name": name, "namespace": ns,
                                                     "creationTimestamp": iso(time.time())},
                                        "spec": {"audiences": spec.get("audiences") or [SA_ISSUER, "k3s"],
                                                 "expirationSeconds": spec.get("expirationSeconds") or 3600,
                                                 "boundObjectRef": None},
                                        "status": status})
            raise ApiStatus(404, "NotFound", "the server could not find the requested resource")
        if method == "GET" and not name:
            items = objs.items(kind, ns)
            if "labelSelector" in query:
                try:
                    reqs = parse_selector(query["labelSelector"][0])
                except KubectlError as exc:
                    raise ApiStatus(400, "BadRequest", str(exc).removeprefix("error: ")) from exc
                items = [o for o in items if selector_matches(reqs, o["metadata"].get("labels") or {})]
            for field in query.get("fieldSelector", [""])[0].split(","):
                key, _sep, value = field.partition("=")
                if key in ("metadata.name", "metadata.namespace"):
                    items = [o for o in items if o["metadata"].get(key.partition(".")[2]) == value.lstrip("=")]
                elif key:
                    raise ApiStatus(400, "BadRequest", f'"{key}" is not a known field selector: only '
                                    '"metadata.name", "metadata.namespace"')
            return self._send_list(kind, items)
        if method == "GET":
            return self._send_objects(kind, [objs.get(kind, ns, name)], single=True)
        if method == "POST" and not name:
            obj = objs.validate(kind, ns, self._body())
            return self._send(201, objs.write(kind, obj, "create"))
        if method == "PUT" and name:
            obj = objs.validate(kind, ns, self._body(), name)
            return self._send(200, objs.write(kind, obj, "update"))
        if method == "PATCH" and name:
            ctype = self.headers.get("Content-Type", "").split(";")[0]
            if ctype not in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
                raise ApiStatus(415, "UnsupportedMediaType", f"{SIM_NAME}: patch type {ctype!r} is not "
                                "simulated (merge and strategic merge patches are)")
            current = objs.get(kind, ns, name)
            patched = merge_patch(current, self._body() or {})
            patched["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            obj = objs.validate(kind, ns, patched, name)
            return self._send(200, objs.write(kind, obj, "update"))
        if method == "DELETE" and name:
            gone = objs.delete(kind, ns, name)
            return self._send(200, gone)
        raise ApiStatus(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")

    def _wants_table(self) -> bool:
        return "as=Table" in self.headers.get("Accept", "")

    def _send_list(self, kind: Kind, items: list[dict[str, Any]]) -> None:
        if self._wants_table():
            return self._send_objects(kind, items, single=False)
        rv = str(self.server_obj.state.data.get("revision", 0))
        return self._send(200, {"apiVersion": kind.api_version, "kind": f"{kind.kind}List",
                                "metadata": {"resourceVersion": rv}, "items": items})

    def _send_objects(self, kind: Kind, items: list[dict[str, Any]], single: bool) -> None:
        if not self._wants_table():
            return self._send(200, items[0])
        cols = object_columns(kind)
        return self._send(200, {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {
            "resourceVersion": str(self.server_obj.state.data.get("revision", 0))},
            "columnDefinitions": [{"name": c, "type": "string", "format": "name" if c == "Name" else "",
                                   "description": "", "priority": 1 if c in WIDE_COLUMNS else 0}
                                  for c, _fn in cols],
            "rows": [{"cells": [fn(o) for _c, fn in cols], "object": {
                "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]}}
                for o in items]})

    def _server_bootstrap(self, body: dict[str, Any]) -> None:
        srv = self.server_obj
        if not srv.state.data.get("etcd"):
            return self._error(400, "this server uses the embedded SQLite datastore and cannot be joined by "
                                    "other servers: start the first server with --cluster-init")
        mine, theirs = srv.state.data["critical"], body["critical"]
        for key in CRITICAL_KEYS:
            if mine.get(key) != theirs.get(key):
                return self._error(400, f"critical configuration value mismatch between servers: "
                                        f"{key} is {mine.get(key)!r} on the cluster, {theirs.get(key)!r} here")
        name = body["name"]
        if name in srv.state.members() and name in srv.state.data["nodes"]:
            # A member that started once (its node registered) and a joiner of that name without a
            # datastore: a rebuilt machine, or a join that died after starting. K3s refuses; deleting
            # the node removes the member. (A member added but never started is taken over, as K3s does.)
            return self._error(409, "duplicate node name found, please use a unique name for this node")
        srv.state.write({"op": "add_member", "name": name, "url": body["url"]})
        srv.state.forget_alive()
        return self._send(200, {"state": srv.state.data})

    def _kube(self, method: str, path: str, who: tuple[str, list[str]]) -> None:
        srv = self.server_obj
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        if path in ("/readyz", "/livez", "/healthz"):
            if srv.state.has_quorum():
                return self._send(200, "ok", "text/plain")
            return self._error(500, "[-]etcd failed: reason withheld\nreadyz check failed")
        if path == "/version":
            return self._send(200, {"gitVersion": version(), "platform": f"linux/{k8s_arch()}",
                                    "simulator": SIM_NAME})
        if path == "/pik3s-sim/stats":  # test equipment's own counters (the soak test reads them)
            self._authorize(who, "get", "", "", None, None, path)
            with srv.stats_lock:
                return self._send(200, dict(srv.stats, threads=threading.active_count()))
        if path == "/openapi/v2":
            # An empty OpenAPI document (protobuf): the simulator has no schemas, so clients skip validation.
            return self._send(200, b"", "application/com.github.proto-openapi.spec.v2.v1.0+protobuf")
        srv.state.require_quorum()
        if path == "/pik3s-sim/snapshot" and method == "GET":
            self._authorize(who, "get", "", "", None, None, path)
            return self._send(200, srv.state.data)
        if path in ("/api", "/apis") or re.fullmatch(r"/api/v1|/apis/[^/]+(/[^/]+)?", path):
            self._authorize(who, "get", "", "", None, None, path)
            return self._send(200, self._discovery(path))
        m = _API_PATH.fullmatch(path)
        if m:
            return self._objects(method, who, m, query)
        raise ApiStatus(404, "NotFound", "the server could not find the requested resource")

    def _nodes(self, method: str, name: str | None, sub: str | None) -> None:
        srv = self.server_obj
        if sub:
            raise ApiStatus(404, "NotFound", "the server could not find the requested resource")
        if name is None:
            if method != "GET":
                raise ApiStatus(405, "MethodNotAllowed", "the server does not allow this method on the requested "
                                "resource")
            items = [node_object(r) for _, r in sorted(srv.node_records().items())]
            if self._wants_table():
                return self._send_objects(NODE_KIND, items, single=False)
            return self._send(200, {"apiVersion": "v1", "kind": "NodeList", "items": items})
        if name not in srv.state.data["nodes"]:
            raise ApiStatus(404, "NotFound", f'nodes "{name}" not found', {"name": name, "kind": "nodes"})
        if method == "GET":
            return self._send_objects(NODE_KIND, [node_object(srv.node_records()[name])], single=True)
        if method == "PATCH":
            body = self._body() or {}
            unsched = body.get("spec", {}).get("unschedulable")
            if unsched is not None:
                srv.state.write({"op": "cordon", "name": name, "unschedulable": bool(unsched)})
            labels = (body.get("metadata") or {}).get("labels")
            taints = (body.get("spec") or {}).get("taints")
            if labels or taints is not None:
                # The taints the node controller adds (cordoned, unreachable) are not stored.
                stored = [t for t in taints or [] if t.get("key") not in SYNTHETIC_TAINTS]
                srv.state.write({"op": "node_meta", "name": name, "labels": labels or {},
                                 "taints": stored if taints is not None else None})
            return self._send(200, node_object(srv.node_records()[name]))
        if method == "DELETE":
            srv.state.write({"op": "delete_node", "name": name})
            return self._send(200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                                    "details": {"name": name, "kind": "nodes"}})
        raise ApiStatus(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")


_API_PATH = re.compile(r"/(?:api/(?P<v>v1)|apis/(?P<g>[^/]+)/(?P<gv>[^/]+))(?:/namespaces/(?P<ns>[^/]+))?"
                       r"(?:/(?P<plural>[^/]+)(?:/(?P<name>[^/]+)(?:/(?P<sub>[^/]+))?)?)?")


# --------------------------------------------------------------------------
# Kubernetes objects beside nodes: what auto-deployed manifests, HelmCharts
# and a dashboard's access need. Stored in the datastore (replicated like
# everything else), served under the API's real paths with discovery, RBAC
# for service-account tokens, and K3s's deploy controller reading the
# manifests directory. No object runs: a Deployment is a record, a HelmChart
# becomes a helm-install Job and a Helm release record, never pods.

class ApiStatus(Exception):
    """An API error as the API server returns it (a metav1.Status)."""

    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details or {}

    def status(self) -> dict[str, Any]:
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": self.message,
                "reason": self.reason, "details": self.details, "code": self.code}

    @staticmethod
    def from_body(body: str) -> ApiStatus | None:
        try:
            doc = json.loads(body)
        except ValueError:
            return None
        if not isinstance(doc, dict) or doc.get("kind") != "Status" or not doc.get("code"):
            return None
        return ApiStatus(int(doc["code"]), doc.get("reason", ""), doc.get("message", ""), doc.get("details"))


def _protobuf_fields(data: bytes) -> dict[int, list[Any]]:
    """The fields of one protobuf message: number -> values (varints as ints, the rest as bytes)."""
    fields: dict[int, list[Any]] = {}
    i = 0

    def varint() -> int:
        nonlocal i
        shift = value = 0
        while True:
            b = data[i]
            i += 1
            value |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return value

    while i < len(data):
        key = varint()
        number, wire = key >> 3, key & 7
        if wire == 0:
            fields.setdefault(number, []).append(varint())
        elif wire == 2:
            length = varint()
            fields.setdefault(number, []).append(data[i:i + length])
            i += length
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            fields.setdefault(number, []).append(data[i:i + size])
            i += size
        else:
            raise ValueError(f"protobuf wire type {wire} is not read")
    return fields


def protobuf_body(data: bytes) -> dict[str, Any]:
    """A request body in Kubernetes' protobuf encoding (the k8s\\0 envelope). The simulator reads the
    one message clients send only that way (TokenRequest, from kubectl create token and client-go); any
    other is refused with the API server's 415, so clients that can fall back to JSON do."""
    unsupported = ApiStatus(415, "UnsupportedMediaType", "the body of the request was in an unknown format - "
                            "accepted media types include: application/json, application/merge-patch+json, "
                            f"application/strategic-merge-patch+json ({SIM_NAME}: protobuf is read for "
                            "TokenRequest only)")
    if not data.startswith(b"k8s\x00"):
        raise unsupported
    try:
        unknown = _protobuf_fields(data[4:])
        type_meta = _protobuf_fields(unknown[1][0])
        api_version, kind = type_meta[1][0].decode(), type_meta[2][0].decode()
        if (api_version, kind) != ("authentication.k8s.io/v1", "TokenRequest"):
            raise unsupported
        message = _protobuf_fields(unknown[2][0]) if 2 in unknown else {}
        spec = _protobuf_fields(message[2][0]) if 2 in message else {}
    except (IndexError, KeyError, ValueError, UnicodeDecodeError) as exc:
        raise ApiStatus(400, "BadRequest", f"the body of the request could not be decoded: {exc}") from exc
    out: dict[str, Any] = {"apiVersion": api_version, "kind": kind, "spec": {}}
    if 1 in spec:
        out["spec"]["audiences"] = [a.decode() for a in spec[1]]
    if 4 in spec:
        out["spec"]["expirationSeconds"] = spec[4][0]
    return out


class Kind:
    """One resource type: kind, API group and version, plural, scope, short names."""

    def __init__(self, kind: str, group: str, version: str, plural: str, namespaced: bool,
                 short: tuple[str, ...] = (), verbs: tuple[str, ...] = ("create", "delete", "get", "list",
                                                                          "patch", "update")):
        self.kind, self.group, self.version, self.plural = kind, group, version, plural
        self.namespaced, self.short, self.verbs = namespaced, short, verbs

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def res(self) -> str:
        """Where the datastore keeps its objects."""
        return f"{self.group}/{self.plural}"

    @property
    def qualified(self) -> str:
        """serviceaccount, clusterrolebinding.rbac.authorization.k8s.io: as kubectl names it in messages."""
        return self.kind.lower() + (f".{self.group}" if self.group else "")

    def prefix(self, namespace: str | None) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        return f"{base}/namespaces/{namespace}/{self.plural}" if self.namespaced and namespace else \
            f"{base}/{self.plural}"

    def names(self) -> set[str]:
        return {self.plural, self.kind.lower(), *self.short, f"{self.plural}.{self.group}",
                f"{self.kind.lower()}.{self.group}"} if self.group else {self.plural, self.kind.lower(), *self.short}


NODE_KIND = Kind("Node", "", "v1", "nodes", False, ("no",), ("delete", "get", "list", "patch"))
BUILTIN_KINDS = [
    NODE_KIND,
    Kind("Namespace", "", "v1", "namespaces", False, ("ns",)),
    Kind("ServiceAccount", "", "v1", "serviceaccounts", True, ("sa",)),
    Kind("ConfigMap", "", "v1", "configmaps", True, ("cm",)),
    Kind("Secret", "", "v1", "secrets", True),
    Kind("Service", "", "v1", "services", True, ("svc",)),
    Kind("ClusterRole", "rbac.authorization.k8s.io", "v1", "clusterroles", False),
    Kind("ClusterRoleBinding", "rbac.authorization.k8s.io", "v1", "clusterrolebindings", False),
    Kind("Role", "rbac.authorization.k8s.io", "v1", "roles", True),
    Kind("RoleBinding", "rbac.authorization.k8s.io", "v1", "rolebindings", True),
    Kind("Deployment", "apps", "v1", "deployments", True, ("deploy",)),
    Kind("DaemonSet", "apps", "v1", "daemonsets", True, ("ds",)),
    Kind("StatefulSet", "apps", "v1", "statefulsets", True, ("sts",)),
    Kind("Job", "batch", "v1", "jobs", True),
    Kind("Lease", "coordination.k8s.io", "v1", "leases", True),
    Kind("Ingress", "networking.k8s.io", "v1", "ingresses", True, ("ing",)),
    Kind("CustomResourceDefinition", "apiextensions.k8s.io", "v1", "customresourcedefinitions", False,
         ("crd", "crds")),
    # The custom resources K3s itself defines.
    Kind("Addon", "k3s.cattle.io", "v1", "addons", True),
    Kind("HelmChart", "helm.cattle.io", "v1", "helmcharts", True),
    Kind("HelmChartConfig", "helm.cattle.io", "v1", "helmchartconfigs", True),
]
KINDS = {k.kind: k for k in BUILTIN_KINDS}
SUBRESOURCES = {("", "serviceaccounts"): [("token", "TokenRequest", ("create",))]}
PROTECTED_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
# ClusterRoles every cluster has (the API server's bootstrap policy), as far as the simulator needs them.
BUILTIN_CLUSTER_ROLES = {
    "cluster-admin": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                      {"nonResourceURLs": ["*"], "verbs": ["*"]}],
    "view": [{"apiGroups": [""], "verbs": ["get", "list", "watch"],
              "resources": ["configmaps", "endpoints", "persistentvolumeclaims", "pods", "replicationcontrollers",
                            "serviceaccounts", "services", "namespaces", "events", "limitranges",
                            "resourcequotas"]},
             {"apiGroups": ["apps"], "verbs": ["get", "list", "watch"],
              "resources": ["daemonsets", "deployments", "replicasets", "statefulsets"]},
             {"apiGroups": ["batch"], "verbs": ["get", "list", "watch"], "resources": ["cronjobs", "jobs"]},
             {"apiGroups": ["networking.k8s.io"], "verbs": ["get", "list", "watch"],
              "resources": ["ingresses", "networkpolicies"]}],
}
# What any authenticated user may read (system:discovery, system:public-info-viewer).
DISCOVERY_PATHS = ("/api", "/apis", "/version", "/healthz", "/livez", "/readyz", "/openapi")
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"
K3S_OWNER_ANNOTATIONS = ("objectset.rio.cattle.io/owner-gvk", "objectset.rio.cattle.io/owner-name",
                         "objectset.rio.cattle.io/owner-namespace")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


# Kinds whose names are only path segments (RBAC: system:kube-vip-role is a valid ClusterRole name).
PATH_SEGMENT_NAMES = ("ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")


def name_problem(name: Any, label: bool = False, path_segment: bool = False) -> str | None:
    """The API server's message for an invalid object name, or None."""
    text = str(name)
    if path_segment:
        if text in (".", ".."):
            return f"may not be '{text}'"
        bad = next((c for c in ("/", "%") if c in text), None)
        return f"may not contain '{bad}'" if bad else None
    if label:
        if not _DNS_LABEL.fullmatch(text) or len(text) > 63:
            return ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
                    "and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', "
                    "regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')")
        return None
    if not _DNS_SUBDOMAIN.fullmatch(text) or len(text) > 253:
        return ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
                "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
                "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
    return None


def object_key(kind: Kind, namespace: str | None, name: str) -> str:
    return f"{namespace}/{name}" if kind.namespaced else name


def crd_kinds(crds: list[dict[str, Any]]) -> list[Kind]:
    out = []
    for crd in crds:
        spec = crd.get("spec") or {}
        names = spec.get("names") or {}
        for v in spec.get("versions") or []:
            if v.get("served", True):
                out.append(Kind(names.get("kind", ""), spec.get("group", ""), v.get("name", ""),
                                names.get("plural", ""), spec.get("scope", "Namespaced") == "Namespaced",
                                tuple(names.get("shortNames") or ())))
    return out


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch. Strategic merge patches are applied as merge patches (their
    $-directives dropped): the simulator keeps no per-field merge keys."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if k.startswith("$"):
            continue
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Objects:
    """The objects of one server's copy of the datastore, and the rules the API server applies to them."""

    def __init__(self, srv: Server):
        self.srv = srv

    # types ------------------------------------------------------------------
    def kinds(self) -> list[Kind]:
        crds = list(self._stored(KINDS["CustomResourceDefinition"]).values())  # CustomResourceDefinition
        return BUILTIN_KINDS + crd_kinds(crds)

    def by_path(self, group: str, version: str, plural: str) -> Kind:
        for k in self.kinds():
            if (k.group, k.version, k.plural) == (group, version, plural):
                return k
        raise ApiStatus(404, "NotFound", "the server could not find the requested resource")

    def by_gvk(self, api_version: str, kind: str) -> Kind:
        for k in self.kinds():
            if (k.api_version, k.kind) == (api_version, kind):
                return k
        raise ApiStatus(404, "NotFound", f'no matches for kind "{kind}" in version "{api_version}"')

    # reads ------------------------------------------------------------------
    def _stored(self, kind: Kind) -> dict[str, dict[str, Any]]:
        stored: dict[str, dict[str, Any]] = self.srv.state.data.get("objects", {}).get(kind.res, {})
        return stored

    def _builtins(self, kind: Kind) -> dict[str, dict[str, Any]]:
        created = iso(self.srv.state.data.get("created", 0))
        if kind.plural == "namespaces" and not kind.group:
            return {n: {"apiVersion": "v1", "kind": "Namespace", "metadata": {
                "name": n, "uid": str(uuid_for(f"ns/{n}")), "creationTimestamp": created, "resourceVersion": "1",
                "labels": {"kubernetes.io/metadata.name": n}}, "spec": {"finalizers": ["kubernetes"]},
                "status": {"phase": "Active"}} for n in PROTECTED_NAMESPACES}
        if kind.plural == "clusterroles" and kind.group == "rbac.authorization.k8s.io":
            return {n: {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {
                "name": n, "uid": str(uuid_for(f"clusterrole/{n}")), "creationTimestamp": created,
                "resourceVersion": "1", "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}},
                "rules": rules} for n, rules in BUILTIN_CLUSTER_ROLES.items()}
        return {}

    def _all(self, kind: Kind) -> dict[str, dict[str, Any]]:
        with self.srv.state.lock:
            return {**self._builtins(kind), **copy.deepcopy(self._stored(kind))}

    def get(self, kind: Kind, namespace: str | None, name: str) -> dict[str, Any]:
        obj = self._all(kind).get(object_key(kind, namespace, name))
        if obj is None:
            raise ApiStatus(404, "NotFound", f'{kind.plural}{"." + kind.group if kind.group else ""} "{name}" '
                            "not found", {"name": name, "group": kind.group, "kind": kind.plural})
        return obj

    def items(self, kind: Kind, namespace: str | None = None) -> list[dict[str, Any]]:
        items = [o for _k, o in sorted(self._all(kind).items())]
        if kind.namespaced and namespace:
            items = [o for o in items if o["metadata"].get("namespace") == namespace]
        return items

    def namespace_exists(self, name: str) -> bool:
        return name in PROTECTED_NAMESPACES or name in self._stored(KINDS["Namespace"])

    # writes (through the datastore's leader) -------------------------------
    def validate(self, kind: Kind, namespace: str | None, obj: Any, name: str | None = None) -> dict[str, Any]:
        if not isinstance(obj, dict):
            raise ApiStatus(400, "BadRequest", "the object provided is not a JSON object")
        if obj.get("kind", kind.kind) != kind.kind or obj.get("apiVersion", kind.api_version) != kind.api_version:
            raise ApiStatus(400, "BadRequest", f"the API version in the data ({obj.get('apiVersion')}) does not "
                            f"match the expected API version ({kind.api_version})"
                            if obj.get("apiVersion", kind.api_version) != kind.api_version else
                            f"the kind in the data ({obj.get('kind')}) does not match the expected kind "
                            f"({kind.kind})")
        meta = obj.get("metadata")
        if not isinstance(meta, dict) or not meta.get("name"):
            raise ApiStatus(422, "Invalid", f"{kind.kind} \"\" is invalid: metadata.name: Required value: "
                            "name or generateName is required")
        if name is not None and meta["name"] != name:
            raise ApiStatus(400, "BadRequest", f"the name of the object ({meta['name']}) does not match the name "
                            f"on the URL ({name})")
        why = name_problem(meta["name"], label=kind.kind in ("Namespace", "Service"),
                           path_segment=kind.kind in PATH_SEGMENT_NAMES)
        if why:
            raise ApiStatus(422, "Invalid", f'{kind.kind} "{meta["name"]}" is invalid: metadata.name: Invalid '
                            f'value: "{meta["name"]}": {why}')
        if kind.namespaced:
            ns = meta.get("namespace") or namespace or "default"
            if namespace and meta.get("namespace") and meta["namespace"] != namespace:
                raise ApiStatus(400, "BadRequest", "the namespace of the provided object does not match the "
                                "namespace sent on the request")
            meta["namespace"] = ns
        else:
            meta.pop("namespace", None)
        obj["apiVersion"], obj["kind"] = kind.api_version, kind.kind
        if kind.kind == "Secret" and isinstance(obj.get("stringData"), dict):
            data = dict(obj.get("data") or {})
            for k, v in obj.pop("stringData").items():
                data[k] = base64.b64encode(str(v).encode()).decode()
            obj["data"] = data
        return obj

    def write(self, kind: Kind, obj: dict[str, Any], mode: str) -> dict[str, Any]:
        """mode: create (409 if it exists), update (404 if it does not) or put (either)."""
        meta = obj["metadata"]
        key = object_key(kind, meta.get("namespace"), meta["name"])
        if key in self._builtins(kind) and kind.kind != "Namespace":
            raise ApiStatus(403, "Forbidden", f'{kind.plural} "{meta["name"]}" is forbidden: {SIM_NAME}: '
                            "the bootstrap policy's objects are built in")
        self.srv.state.write({"op": "object_put", "res": kind.res, "key": key, "obj": obj, "mode": mode,
                              "kind": kind.kind, "plural": kind.plural, "group": kind.group,
                              "namespaced": kind.namespaced, "now": iso(time.time())})
        return self.get(kind, meta.get("namespace"), meta["name"])

    def delete(self, kind: Kind, namespace: str | None, name: str) -> dict[str, Any]:
        obj = self.get(kind, namespace, name)
        if kind.kind == "Namespace" and name in PROTECTED_NAMESPACES:
            raise ApiStatus(403, "Forbidden", f'namespaces "{name}" is forbidden: this namespace may not be deleted')
        if object_key(kind, namespace, name) in self._builtins(kind):
            raise ApiStatus(403, "Forbidden", f'{kind.plural} "{name}" is forbidden: {SIM_NAME}: '
                            "the bootstrap policy's objects are built in")
        self.srv.state.write({"op": "object_delete", "res": kind.res, "key": object_key(kind, namespace, name),
                              "kind": kind.kind, "plural": kind.plural, "group": kind.group, "name": name,
                              "now": iso(time.time())})
        return obj

    def purge_terminating(self) -> None:
        """The namespace controller: a namespace Terminating for a moment (as the real controller takes
        one to delete its content) is emptied, then removed."""
        kind = KINDS["Namespace"]
        for ns in list(self._stored(kind).values()):
            name = ns["metadata"]["name"]
            since = ns["metadata"].get("deletionTimestamp")
            if since and time.time() - _dt.datetime.strptime(since, "%Y-%m-%dT%H:%M:%S%z").timestamp() >= 2:
                self.srv.state.write({"op": "object_delete", "res": kind.res, "key": name, "kind": "Namespace",
                                      "plural": "namespaces", "group": "", "name": name, "purge": True})

    def apply(self, kind: Kind, obj: dict[str, Any]) -> str:
        """Create or replace as a deployer's apply does: 'created', 'configured' or 'unchanged'."""
        meta = obj["metadata"]
        try:
            current = self.get(kind, meta.get("namespace"), meta["name"])
        except ApiStatus:
            self.write(kind, obj, "create")
            return "created"
        if _content(current) == _content(obj):
            return "unchanged"
        merged = dict(obj)
        if "status" in current and "status" not in obj:
            merged["status"] = current["status"]
        self.write(kind, merged, "update")
        return "configured"

    # service-account tokens -------------------------------------------------
    def _signing_key(self) -> bytes:
        # The simulator signs with HMAC-SHA256 under a key every server derives from the cluster's CA
        # key (K3s signs RS256 with its service-account key, which is bootstrap data in the same way).
        return hashlib.sha256(b"pik3s-sim-service-account:" + (self.srv.tls / "server-ca.key").read_bytes()).digest()

    def issue_token(self, namespace: str, name: str, seconds: int, audiences: list[str]) -> dict[str, Any]:
        sa = self.get(KINDS["ServiceAccount"], namespace, name)
        now = int(time.time())
        seconds = max(600, min(int(seconds or 3600), 48 * 3600))  # the API server's bounds (10 min .. 48 h)
        claims = {"aud": audiences or [SA_ISSUER, "k3s"], "exp": now + seconds, "iat": now, "nbf": now,
                  "iss": SA_ISSUER, "sub": f"system:serviceaccount:{namespace}:{name}",
                  "kubernetes.io": {"namespace": namespace,
                                    "serviceaccount": {"name": name, "uid": sa["metadata"]["uid"]}}}
        head = _b64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "pik3s-sim"}).encode())
        body = _b64url(json.dumps(claims, separators=(",", ":")).encode())
        sig = _b64url(hmac.new(self._signing_key(), f"{head}.{body}".encode(), hashlib.sha256).digest())
        return {"token": f"{head}.{body}.{sig}", "expirationTimestamp": iso(now + seconds)}

    def token_identity(self, token: str) -> tuple[str, list[str]] | None:
        """(user, groups) of a valid service-account token, or None."""
        try:
            head, body, sig = token.split(".")
            want = _b64url(hmac.new(self._signing_key(), f"{head}.{body}".encode(), hashlib.sha256).digest())
            if not hmac.compare_digest(want, sig):
                return None
            claims = json.loads(_unb64url(body))
            if not claims["nbf"] <= time.time() < claims["exp"]:
                return None
            info = claims["kubernetes.io"]
            sa = self.get(KINDS["ServiceAccount"], info["namespace"], info["serviceaccount"]["name"])
        except (ValueError, KeyError, TypeError, ApiStatus):
            return None
        if sa["metadata"]["uid"] != info["serviceaccount"]["uid"]:
            return None  # the account was deleted and made again: its old tokens end with it
        ns = info["namespace"]
        return (claims["sub"], ["system:serviceaccounts", f"system:serviceaccounts:{ns}", "system:authenticated"])

    # authorization ----------------------------------------------------------
    def allowed(self, user: str, groups: list[str], verb: str, group: str, resource: str, namespace: str | None,
                name: str | None, path: str) -> bool:
        def subject_matches(s: dict[str, Any], binding_ns: str | None) -> bool:
            if s.get("kind") == "ServiceAccount":
                return user == f"system:serviceaccount:{s.get('namespace') or binding_ns}:{s.get('name')}"
            if s.get("kind") == "User":
                return user == s.get("name")
            return s.get("kind") == "Group" and s.get("name") in groups

        def rules_of(ref: dict[str, Any], ns: str | None) -> list[dict[str, Any]]:
            kinds = {"ClusterRole": (KINDS["ClusterRole"], None), "Role": (KINDS["Role"], ns)}
            if ref.get("kind") not in kinds:
                return []
            kind, where = kinds[ref["kind"]]
            try:
                return self.get(kind, where, ref.get("name", "")).get("rules") or []
            except ApiStatus:
                return []

        def rule_matches(rule: dict[str, Any]) -> bool:
            verbs = rule.get("verbs") or []
            if "*" not in verbs and verb not in verbs:
                return False
            if not resource:
                urls = rule.get("nonResourceURLs") or []
                return any(u == path or u == "*" or (u.endswith("*") and path.startswith(u[:-1])) for u in urls)
            if "*" not in (rule.get("apiGroups") or []) and group not in (rule.get("apiGroups") or []):
                return False
            if "*" not in (rule.get("resources") or []) and resource not in (rule.get("resources") or []):
                return False
            return not rule.get("resourceNames") or name in rule["resourceNames"]

        if not resource and any(path == d or path.startswith(d + "/") for d in DISCOVERY_PATHS):
            return True
        crb, rb = KINDS["ClusterRoleBinding"], KINDS["RoleBinding"]
        for b in self.items(crb):
            if any(subject_matches(s, None) for s in b.get("subjects") or []) and \
                    any(rule_matches(r) for r in rules_of(b.get("roleRef") or {}, None)):
                return True
        if namespace:
            for b in self.items(rb, namespace):
                if any(subject_matches(s, namespace) for s in b.get("subjects") or []) and \
                        any(rule_matches(r) for r in rules_of(b.get("roleRef") or {}, namespace)):
                    return True
        return False


def _content(obj: dict[str, Any]) -> dict[str, Any]:
    """What an apply compares: the object without the fields the server sets."""
    out = {k: v for k, v in obj.items() if k != "status"}
    meta = {k: v for k, v in (obj.get("metadata") or {}).items()
            if k not in ("uid", "creationTimestamp", "resourceVersion", "generation", "managedFields")}
    out["metadata"] = meta
    return out


def uuid_for(text: str) -> str:
    digest = hashlib.sha256(text.encode()).hexdigest()
    return f"{digest[:8]}-{digest[8:12]}-5{digest[13:16]}-a{digest[17:20]}-{digest[20:32]}"


def apply_lease_op(state: dict[str, Any], op: dict[str, Any]) -> None:
    """Take or renew a coordination.k8s.io Lease (leader election, as client-go does it): granted when it
    is free, expired, or already this holder's; otherwise 409. ``release`` gives it up."""
    store = state.setdefault("objects", {}).setdefault("coordination.k8s.io/leases", {})
    key = f"{op['namespace']}/{op['name']}"
    current = store.get(key)
    spec = (current or {}).get("spec") or {}
    now = float(op["now"])
    holder = spec.get("holderIdentity")
    expired = now - float(spec.get("pik3sRenewEpoch", 0)) > float(spec.get("leaseDurationSeconds", 0))
    if op.get("release"):
        if current is not None and holder == op["holder"]:
            spec.update(holderIdentity="", pik3sRenewEpoch=0)
        return
    if current is not None and holder not in ("", op["holder"]) and not expired:
        raise ApiStatus(409, "Conflict", f'leases.coordination.k8s.io "{op["name"]}" is held by {holder}')
    rv = str(state.get("revision", 0) + 1)
    transitions = int(spec.get("leaseTransitions", 0)) + (0 if holder == op["holder"] else 1)
    store[key] = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {
        "name": op["name"], "namespace": op["namespace"], "resourceVersion": rv,
        "uid": (current or {}).get("metadata", {}).get("uid") or uuid_for(f"{state.get('generation')}/lease/{key}"),
        "creationTimestamp": (current or {}).get("metadata", {}).get("creationTimestamp") or iso(now)},
        "spec": {"holderIdentity": op["holder"], "leaseDurationSeconds": op["duration"],
                 "acquireTime": spec.get("acquireTime") if holder == op["holder"] else _micro(now),
                 "renewTime": _micro(now), "leaseTransitions": transitions, "pik3sRenewEpoch": now}}


def _micro(t: float) -> str:
    return _dt.datetime.fromtimestamp(t, _dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def apply_object_op(state: dict[str, Any], op: dict[str, Any]) -> None:
    """The datastore's side of object writes (run by the leader inside a commit)."""
    objects = state.setdefault("objects", {})
    store = objects.setdefault(op["res"], {})
    key = op["key"]
    plural = op["plural"] + (f".{op['group']}" if op["group"] else "")
    if op["op"] == "object_delete":
        if key not in store:
            raise ApiStatus(404, "NotFound", f'{plural} "{op["name"]}" not found')
        if op["kind"] == "Namespace" and not op.get("purge"):
            # Terminating until the namespace controller (Server._controllers_loop) has emptied it.
            meta = store[key]["metadata"]
            meta.setdefault("deletionTimestamp", op.get("now") or iso(time.time()))
            store[key]["status"] = {"phase": "Terminating"}
            meta["resourceVersion"] = str(state.get("revision", 0) + 1)
            return
        gone = store.pop(key)
        if op["kind"] == "Namespace":
            ns = gone["metadata"]["name"]
            for other in objects.values():
                for k in [k for k, o in other.items() if o["metadata"].get("namespace") == ns]:
                    other.pop(k)
        return
    obj = copy.deepcopy(op["obj"])
    meta = obj["metadata"]
    current = store.get(key)
    if op["mode"] == "create" and current is not None:
        raise ApiStatus(409, "AlreadyExists", f'{plural} "{meta["name"]}" already exists',
                        {"name": meta["name"], "group": op["group"], "kind": op["plural"]})
    if op["mode"] == "update" and current is None:
        raise ApiStatus(404, "NotFound", f'{plural} "{meta["name"]}" not found')
    if op["namespaced"]:
        ns = meta["namespace"]
        namespaces = objects.get("/namespaces", {})
        if ns not in PROTECTED_NAMESPACES and ns not in namespaces:
            raise ApiStatus(404, "NotFound", f'namespaces "{ns}" not found',
                            {"name": ns, "kind": "namespaces"})
        if current is None and ns in namespaces and namespaces[ns]["metadata"].get("deletionTimestamp"):
            raise ApiStatus(403, "Forbidden", f'{plural} "{meta["name"]}" is forbidden: unable to create new '
                            f"content in namespace {ns} because it is being terminated")
    want_rv = meta.get("resourceVersion")
    if current is not None and op["mode"] == "update" and want_rv and want_rv != current["metadata"].get(
            "resourceVersion"):
        raise ApiStatus(409, "Conflict", f'Operation cannot be fulfilled on {plural} "{meta["name"]}": the object '
                        "has been modified; please apply your changes to the latest version and try again")
    meta["uid"] = current["metadata"]["uid"] if current else uuid_for(f"{state.get('generation')}/{op['res']}/"
                                                                       f"{key}/{state.get('revision', 0)}")
    meta["creationTimestamp"] = current["metadata"]["creationTimestamp"] if current else op["now"]
    meta["resourceVersion"] = str(state.get("revision", 0) + 1)
    generation = current["metadata"].get("generation", 1) if current else 1
    if current is not None and current.get("spec") != obj.get("spec"):
        generation += 1
    meta["generation"] = generation
    store[key] = obj
    if op["kind"] == "Namespace" and current is None:  # the service-account controller's default account
        name = meta["name"]
        objects.setdefault("/serviceaccounts", {}).setdefault(f"{name}/default", {
            "apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": "default", "namespace": name, "creationTimestamp": op["now"],
                         "uid": uuid_for(f"{meta['uid']}/default"), "resourceVersion": meta["resourceVersion"]}})


def _ago(obj: dict[str, Any]) -> str:
    return _age(obj["metadata"].get("creationTimestamp") or iso(time.time()))


def object_columns(kind: Kind) -> list[tuple[str, Any]]:
    """The columns kubectl shows for a kind (the server's Table), as (name, cell of an object)."""
    name = ("Name", lambda o: o["metadata"]["name"])
    age = ("Age", _ago)
    table: dict[str, list[tuple[str, Any]]] = {
        "Node": [name, ("Status", node_status), ("Roles", node_roles), age,
                 ("Version", lambda o: o["status"]["nodeInfo"]["kubeletVersion"]),
                 ("Internal-IP", lambda o: _address(o, "InternalIP")),
                 ("External-IP", lambda o: _address(o, "ExternalIP")),
                 ("OS-Image", lambda o: o["status"]["nodeInfo"]["osImage"] or "<unknown>"),
                 ("Kernel-Version", lambda o: o["status"]["nodeInfo"]["kernelVersion"] or "<unknown>"),
                 ("Container-Runtime", lambda o: o["status"]["nodeInfo"]["containerRuntimeVersion"])],
        "Namespace": [name, ("Status", lambda o: (o.get("status") or {}).get("phase", "Active")), age],
        "ServiceAccount": [name, ("Secrets", lambda o: str(len(o.get("secrets") or []))), age],
        "Secret": [name, ("Type", lambda o: o.get("type", "Opaque")),
                   ("Data", lambda o: str(len(o.get("data") or {}))), age],
        "ConfigMap": [name, ("Data", lambda o: str(len(o.get("data") or {}) + len(o.get("binaryData") or {}))), age],
        "ClusterRoleBinding": [name, ("Role", lambda o: f"{o['roleRef']['kind']}/{o['roleRef']['name']}"), age],
        "RoleBinding": [name, ("Role", lambda o: f"{o['roleRef']['kind']}/{o['roleRef']['name']}"), age],
        "Deployment": [name, ("Ready", lambda o: f"0/{spec(o, 'replicas', 1)}"), ("Up-to-date", lambda o: "0"),
                       ("Available", lambda o: "0"), age],
        "Job": [name, ("Status", lambda o: job_status(o)),
                ("Completions", lambda o: f"{(o.get('status') or {}).get('succeeded', 0)}/"
                                          f"{spec(o, 'completions', 1)}"), age],
        "HelmChart": [name, ("Job", lambda o: (o.get("status") or {}).get("jobName", "")),
                      ("Chart", lambda o: spec(o, "chart")), ("TargetNamespace", lambda o: spec(o, "targetNamespace")),
                      ("Version", lambda o: spec(o, "version")), ("Repo", lambda o: spec(o, "repo")),
                      ("HelmVersion", lambda o: spec(o, "helmVersion")),
                      ("Bootstrap", lambda o: spec(o, "bootstrap", False).lower())],
        "Addon": [name, ("Source", lambda o: spec(o, "source")), ("Checksum", lambda o: spec(o, "checksum"))],
    }
    return table.get(kind.kind, [name, age])


# Columns kubectl shows only with -o wide (the Table's priority 1).
WIDE_COLUMNS = {"Internal-IP", "External-IP", "OS-Image", "Kernel-Version", "Container-Runtime"}


def _address(node: dict[str, Any], kind: str) -> str:
    return next((a["address"] for a in node["status"]["addresses"] if a["type"] == kind), "<none>")


def spec(obj: dict[str, Any], key: str, default: Any = "") -> str:
    return str((obj.get("spec") or {}).get(key, default))


def job_status(job: dict[str, Any]) -> str:
    conds = {c["type"]: c for c in (job.get("status") or {}).get("conditions") or [] if c.get("status") == "True"}
    return "Complete" if "Complete" in conds else "Failed" if "Failed" in conds else "Running"


# --------------------------------------------------------------------------
# K3s's controllers for auto-deployed manifests and HelmCharts.

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
DEPLOY_SECONDS = float(os.environ.get("PIK3S_SIM_DEPLOY_SECONDS", "2"))
HELM_RETRY_SECONDS = float(os.environ.get("PIK3S_SIM_HELM_RETRY", "10"))
ADDON_RETRY_SECONDS = float(os.environ.get("PIK3S_SIM_ADDON_RETRY", "5"))
ADDON_KIND, HELMCHART_KIND, JOB_KIND, SECRET_KIND = (KINDS[k] for k in ("Addon", "HelmChart", "Job", "Secret"))


class DeployController:
    """K3s's deploy controller on one server: every file under server/manifests is applied when it is new
    or its modification time changes (and at start), its objects tracked by an Addon of the file's base
    name in kube-system; objects dropped from a changed file are deleted; a deleted file's objects stay;
    a file that fails is tried again after a pause."""

    def __init__(self, srv: Server):
        self.srv = srv
        self.dir = srv.server_dir / "manifests"
        self.seen: dict[str, float] = {}
        self.retry_at: dict[str, tuple[float, float]] = {}

    def files(self) -> list[Path]:
        if not self.dir.is_dir():
            return []
        out = []
        for path in sorted(self.dir.rglob("*")):
            if path.is_file() and path.suffix in MANIFEST_SUFFIXES and not Path(str(path) + ".skip").exists():
                out.append(path)
        return out

    def scan(self) -> None:
        for path in self.files():
            try:
                mtime = path.stat().st_mtime
            except OSError:
                continue
            if self.seen.get(str(path)) == mtime:
                continue
            retry = self.retry_at.get(str(path))
            if retry and retry[0] == mtime and time.monotonic() < retry[1]:
                continue
            try:
                self.process(path)
                self.seen[str(path)] = mtime
                self.retry_at.pop(str(path), None)
            except ServiceUnavailable:
                return  # no quorum: try again on the next scan
            except (ApiStatus, YamlError, OSError, ValueError) as exc:
                # As K3s's controller: requeued, tried again after a pause (an object of another file,
                # its namespace say, may be missing yet).
                self.retry_at[str(path)] = (mtime, time.monotonic() + ADDON_RETRY_SECONDS)
                msg = exc.message if isinstance(exc, ApiStatus) else str(exc)
                log("error", f"Failed to process config: failed to process {path}: {msg}")

    def process(self, path: Path) -> None:
        objs = Objects(self.srv)
        content = path.read_bytes()
        name = path.name.rsplit(".", 1)[0]
        why = name_problem(name)
        if why:
            raise ApiStatus(422, "Invalid", f'Addon.k3s.cattle.io "{name}" is invalid: metadata.name: Invalid value: '
                            f'"{name}": {why}')
        docs: list[Any] = []
        for doc in yaml_load_all(content.decode()):
            is_list = isinstance(doc, dict) and str(doc.get("kind", "")).endswith("List") and "items" in doc
            docs.extend((doc.get("items") or []) if is_list else [doc])
        checksum = hashlib.sha256(content).hexdigest()
        wanted: list[tuple[Kind, dict[str, Any]]] = []
        for doc in docs:
            if not isinstance(doc, dict) or not doc.get("kind") or not doc.get("apiVersion"):
                raise ApiStatus(400, "BadRequest", "Object 'Kind' is missing in the document")
            kind = objs.by_gvk(doc["apiVersion"], doc["kind"])
            obj = objs.validate(kind, None, copy.deepcopy(doc))
            ann = obj["metadata"].setdefault("annotations", {})
            ann.update(dict(zip(K3S_OWNER_ANNOTATIONS, ("k3s.cattle.io/v1, Kind=Addon", name, "kube-system"),
                                strict=True)))
            wanted.append((kind, obj))
        try:
            previous = objs.get(ADDON_KIND, "kube-system", name)
        except ApiStatus:
            previous = None
        for kind, obj in wanted:
            objs.apply(kind, obj)
        keep = {(k.res, object_key(k, o["metadata"].get("namespace"), o["metadata"]["name"])) for k, o in wanted}
        for ref in ((previous or {}).get("status") or {}).get("objects") or []:
            if (ref["res"], ref["key"]) not in keep:
                gone_kind = next((k for k in objs.kinds() if k.res == ref["res"]), None)
                if gone_kind is not None:
                    try:
                        objs.delete(gone_kind, ref.get("namespace"), ref["name"])
                    except ApiStatus:
                        pass
        addon = {"apiVersion": ADDON_KIND.api_version, "kind": "Addon",
                 "metadata": {"name": name, "namespace": "kube-system"},
                 "spec": {"source": str(path), "checksum": checksum},
                 "status": {"objects": [{"res": k.res, "key": object_key(k, o["metadata"].get("namespace"),
                                                                            o["metadata"]["name"]),
                                         "namespace": o["metadata"].get("namespace"), "name": o["metadata"]["name"],
                                         "kind": k.kind, "apiVersion": k.api_version} for k, o in wanted]}}
        if previous is None or _content(previous) != _content(addon) or previous.get("status") != addon["status"]:
            objs.apply(ADDON_KIND, addon) if previous is None else objs.write(ADDON_KIND, addon, "put")
        log("info", f"Applied {len(wanted)} object(s) from {path} (Addon kube-system/{name})")


class HelmController:
    """K3s's helm-controller, run by the datastore's leader: a HelmChart (new or changed) gets a
    helm-install-<name> Job that completes when the chart resolves (from chartContent, or the repo's
    index.yaml and archive, fetched by this server as the Job's pod would) and fails with Helm's message
    when it does not; a completed install is recorded as Helm records a release (a Secret in the target
    namespace). Nothing in the chart is rendered or run."""

    def __init__(self, srv: Server):
        self.srv = srv
        self.failed_at: dict[str, float] = {}

    def scan(self) -> None:
        objs = Objects(self.srv)
        for chart in objs.items(HELMCHART_KIND):
            meta, spec = chart["metadata"], chart.get("spec") or {}
            digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
            status = chart.get("status") or {}
            key = f"{meta['namespace']}/{meta['name']}"
            if status.get("specHash") == digest and (status.get("phase") == "Complete"
                                                      or time.time() - self.failed_at.get(key, 0) < HELM_RETRY_SECONDS):
                continue
            self.install(objs, chart, digest)
            if (objs.get(HELMCHART_KIND, meta["namespace"], meta["name"]).get("status") or {}).get("phase") == "Failed":
                self.failed_at[key] = time.time()

    def install(self, objs: Objects, chart: dict[str, Any], digest: str) -> None:
        meta, spec = chart["metadata"], chart.get("spec") or {}
        target = spec.get("targetNamespace") or meta["namespace"]
        job_name = f"helm-install-{meta['name']}"
        error, version = "", ""
        try:
            if not spec.get("chart") and not spec.get("chartContent"):
                raise ValueError("Error: chart name or chartContent is required")
            chart_yaml = self.resolve(spec)
            version = str(chart_yaml.get("version", ""))
            if not objs.namespace_exists(target):
                if not spec.get("createNamespace"):
                    raise ValueError(f'Error: INSTALLATION FAILED: create: failed to create: namespaces "{target}" '
                                     "not found")
                objs.apply(KINDS["Namespace"], {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": target}})
        except (ValueError, KeyError, OSError, YamlError, HttpError, tarfile.TarError, ssl.SSLError) as exc:
            error = str(exc) if str(exc).startswith("Error:") else f"Error: {exc}"
        now = iso(time.time())
        cond = {"type": "Failed" if error else "Complete", "status": "True", "lastProbeTime": now,
                "lastTransitionTime": now, **({"reason": "BackoffLimitExceeded", "message": error} if error else {})}
        job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {
            "name": job_name, "namespace": meta["namespace"],
            "labels": {"helmcharts.helm.cattle.io/chart": meta["name"]},
            "annotations": {"helmcharts.helm.cattle.io/configHash": f"SHA256={digest}",
                            "pik3s-sim/note": f"{SIM_NAME}: no pod ran; the chart was resolved by the server"}},
            "spec": {"backoffLimit": 1000, "completions": 1},
            "status": {"conditions": [cond], **({"failed": 1} if error else {"succeeded": 1})}}
        objs.write(JOB_KIND, objs.validate(JOB_KIND, None, job), "put")
        if error:
            log("error", f"helm-install-{meta['name']}: {error}")
        else:
            rel = {"apiVersion": "v1", "kind": "Secret", "type": "helm.sh/release.v1", "metadata": {
                "name": f"sh.helm.release.v1.{meta['name']}.v1", "namespace": target,
                "labels": {"owner": "helm", "name": meta["name"], "status": "deployed", "version": "1"}},
                "stringData": {"release": json.dumps({"name": meta["name"], "chart": spec.get("chart", ""),
                                                      "version": version, "values": spec.get("valuesContent", "")})}}
            objs.write(SECRET_KIND, objs.validate(SECRET_KIND, None, rel), "put")
            log("info", f"helm-install-{meta['name']}: installed {spec.get('chart') or 'chartContent'} {version} "
                        f"in {target} (recorded, not run: {SIM_NAME})")
        updated = objs.get(HELMCHART_KIND, meta["namespace"], meta["name"])
        updated["status"] = {"jobName": job_name, "phase": "Failed" if error else "Complete", "specHash": digest,
                             **({"message": error} if error else {"version": version})}
        objs.write(HELMCHART_KIND, updated, "update")

    def resolve(self, spec: dict[str, Any]) -> dict[str, Any]:
        """The Chart.yaml of the chart the HelmChart names, as Helm would find it."""
        if spec.get("chartContent"):
            try:
                data = base64.b64decode(spec["chartContent"], validate=True)
            except ValueError as exc:
                raise ValueError("Error: illegal base64 data in chartContent") from exc
            chart = chart_yaml(data)
            if spec.get("version") and str(chart.get("version")) != str(spec["version"]):
                raise ValueError(f'Error: chart "{chart.get("name")}" version "{spec["version"]}" not found: '
                                 f'chartContent holds version {chart.get("version")}')
            return chart
        repo, name, want = str(spec.get("repo") or ""), str(spec["chart"]), str(spec.get("version") or "")
        if not repo:
            raise ValueError(f'Error: repo "" for chart "{name}": {SIM_NAME}: charts from an OCI registry or a '
                             "repo name are not simulated; give repo as an http(s) URL")
        base = repo.rstrip("/") + "/"
        try:
            index = yaml_load(_fetch(base + "index.yaml").decode())
        except (OSError, HttpError, ValueError) as exc:
            raise ValueError(f'Error: looks like "{repo}" is not a valid chart repository or cannot be reached: '
                             f"{exc}") from exc
        entries = ((index or {}).get("entries") or {}).get(name)
        if not entries:
            raise ValueError(f'Error: chart "{name}" not found in {repo} repository')
        found = [e for e in entries if not want or str(e.get("version")) == want]
        if not found:
            raise ValueError(f'Error: chart "{name}" version "{want}" not found in {repo} repository')
        entry = found[0] if want else max(found, key=lambda e: _semver_key(str(e.get("version"))))
        url = urllib.parse.urljoin(base, (entry.get("urls") or [""])[0])
        data = _fetch(url)
        if entry.get("digest") and hashlib.sha256(data).hexdigest() != entry["digest"]:
            raise ValueError(f"Error: {url}: digest does not match the repository index")
        return chart_yaml(data)


class KubeVip:
    """What kube-vip's DaemonSet (from the auto-deploy directory; ARP mode, control plane, leader
    election) would do on this server, since the simulator runs no pods: while the DaemonSet exists
    and this server holds the Lease kube-system/plndr-cp-lock (taken and renewed through the
    datastore, so one server at a time), the virtual IP is on its interface, announced with
    gratuitous ARP; otherwise it is not. PIK3S_SIM_NETWORK=0 (the unit tests on loopback) leaves the
    machine's interfaces alone and only logs."""

    def __init__(self, srv: Server):
        self.srv = srv
        self.held: tuple[str, str] | None = None
        self.act = os.environ.get("PIK3S_SIM_NETWORK", "1") != "0"

    def wanted(self) -> tuple[str, str] | None:
        """(address, interface) of the kube-vip DaemonSet in kube-system, when there is one in ARP mode."""
        for ds in Objects(self.srv).items(KINDS["DaemonSet"], "kube-system"):
            for c in (((ds.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers") or []:
                env = {e.get("name"): str(e.get("value", "")) for e in c.get("env") or []}
                address = env.get("address") or env.get("vip_address")
                if "kube-vip" in str(c.get("image", "")) and address and env.get("vip_arp") == "true" \
                        and env.get("cp_enable") == "true":
                    return address, env.get("vip_interface") or "eth0"
        return None

    LEASE, DURATION = "plndr-cp-lock", 6

    def scan(self) -> None:
        try:
            want = self.wanted()
            if want is not None:
                # Take or renew the Lease through the datastore: one holder at a time, cluster-wide.
                self.srv.state.write({"op": "lease", "namespace": "kube-system", "name": self.LEASE,
                                      "holder": self.srv.node_name, "duration": self.DURATION, "now": time.time()})
        except ApiStatus:
            want = None  # another server holds the Lease
        except ServiceUnavailable:
            want = None  # no quorum: the Lease cannot be renewed, kube-vip lets the address go
        if want == self.held:
            return
        self.release()
        if want is not None:
            address, iface = want
            log("info", f"kube-vip (not run: {SIM_NAME}): {self.srv.node_name} holds the lease, "
                        f"{address}/32 on {iface}")
            if self.act:
                self._ip("addr", "replace", f"{address}/32", "dev", iface)
                gratuitous_arp(iface, address)
            self.held = want

    def release(self, give_up_lease: bool = False) -> None:
        if self.held is None:
            return
        address, iface = self.held
        log("info", f"kube-vip (not run: {SIM_NAME}): {self.srv.node_name} lets {address} go")
        if self.act:
            self._ip("addr", "del", f"{address}/32", "dev", iface)
        self.held = None
        if give_up_lease:  # as kube-vip releasing its Lease on shutdown: another takes over at once
            try:
                self.srv.state.write({"op": "lease", "namespace": "kube-system", "name": self.LEASE,
                                      "holder": self.srv.node_name, "duration": self.DURATION, "now": time.time(),
                                      "release": True})
            except (ServiceUnavailable, ApiStatus, OSError):
                pass

    @staticmethod
    def _ip(*args: str) -> None:
        res = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
        if res.returncode != 0 and "Cannot assign" not in res.stderr:
            log("error", f"kube-vip: ip {' '.join(args)}: {res.stderr.strip()}")


def gratuitous_arp(iface: str, address: str, count: int = 3) -> None:
    """Announce that ``address`` is at this interface's MAC (an ARP request for itself, broadcast), as
    kube-vip does when it takes the address, so the neighbours' caches move to it."""
    try:
        mac = bytes.fromhex(Path(f"/sys/class/net/{iface}/address").read_text().strip().replace(":", ""))
        ip = socket.inet_aton(address)
        frame = b"\xff" * 6 + mac + b"\x08\x06" + b"\x00\x01\x08\x00\x06\x04\x00\x01" + mac + ip + b"\x00" * 6 + ip
        with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as sock:
            sock.bind((iface, 0))
            for _ in range(count):
                sock.send(frame)
    except OSError as exc:
        log("warning", f"kube-vip: gratuitous ARP for {address} on {iface} failed: {exc}")


def _semver_key(v: str) -> tuple[Any, ...]:
    core, _sep, pre = v.lstrip("v").partition("-")
    nums = [int(x) if x.isdigit() else 0 for x in core.split(".")]
    return (*nums, pre == "", pre)


def _fetch(url: str) -> bytes:
    if url.startswith("https://"):
        return https_request(url, timeout=30)
    if not url.startswith("http://"):
        raise ValueError(f"unsupported protocol scheme in {url!r}")
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname or "", u.port or 80, timeout=30)
    try:
        status, payload = _exchange(conn, "GET", u.path + (f"?{u.query}" if u.query else ""), None, None)
    finally:
        conn.close()
    if status >= 400:
        raise ValueError(f"failed to fetch {url} : {status} {http.client.responses.get(status, '')}")
    return payload


def chart_yaml(archive: bytes) -> dict[str, Any]:
    """The Chart.yaml of a chart archive (a gzipped tar with <name>/Chart.yaml), as Helm's loader reads it."""
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
            member = next((m for m in tar.getmembers() if m.name.count("/") == 1
                           and m.name.endswith("/Chart.yaml")), None)
            if member is None:
                raise ValueError("Error: Chart.yaml file is missing")
            data = tar.extractfile(member)
            doc = yaml_load((data.read() if data else b"").decode())
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ValueError("Error: file does not appear to be a gzipped archive; got 'application/octet-stream'") from exc
    if not isinstance(doc, dict) or not doc.get("name") or not doc.get("version"):
        raise ValueError("Error: validation: chart.metadata.name and version are required")
    return doc


# --------------------------------------------------------------------------
# The agent.

class Agent:
    def __init__(self, cfg: dict[str, Any]):
        self.cfg = cfg
        if not cfg.get("server"):
            raise Fatal("--server is required")
        self.token = configured_token(cfg)
        if not self.token:
            raise Fatal("--token is required")
        self.hash, _user, self.password = parse_token(self.token)
        self.servers = [str(cfg["server"]).rstrip("/")]
        self.data_dir = Path(cfg.get("data-dir") or p("/var/lib/rancher/k3s"))
        self.node_name = node_name_from(cfg)
        ips = _as_list(cfg.get("node-ip"))
        self.node_ip = ips[0] if ips else primary_ip(_url_host(cfg["server"]))
        self.ca: bytes | None = None
        self.client: HttpClient | None = None  # one TLS context and kept-open connections, once the CA is known
        self.stop = threading.Event()

    def call(self, path: str, body: Any, method: str = "POST") -> bytes:
        if self.client is None:
            assert self.ca is not None
            self.client = HttpClient(self.ca.decode(), ("node", self.password), timeout=5)
        last: Exception | None = None
        for url in list(self.servers):
            try:
                return self.client.request(url + path, method, body)
            except HttpError:
                raise
            except (OSError, ssl.SSLError, http.client.HTTPException) as exc:
                last = exc
        raise OSError(f"no server answered: {last}")

    def start(self) -> None:
        ok, why = memory_cgroup_state()
        if not ok:
            raise Fatal(f"{why}: enable the memory cgroup on the kernel command line "
                        "(cgroup_memory=1 cgroup_enable=memory)")
        log("info", f"Starting k3s agent {version()} ({SIM_NAME}, not K3s)")
        pw = node_password()
        payload = node_payload(self.cfg, self.node_name, self.node_ip, [])
        while not self.stop.is_set():
            try:
                if self.ca is None:
                    cacerts = https_request(self.servers[0] + "/cacerts", verify=False, timeout=5)
                    if self.hash and ca_hash(cacerts) != self.hash:
                        log("error", f"Failed to validate connection to cluster at {self.servers[0]}: "
                                     "token CA hash does not match the Cluster CA certificate hash")
                        self.stop.wait(RETRY_SECONDS)
                        continue
                    self.ca = cacerts
                self.call("/v1-k3s/sim/nodes/register", {"node": payload, "password": pw})
                break
            except HttpError as exc:
                if exc.status == 401:
                    log("error", f"Failed to validate connection to cluster at {self.servers[0]}: "
                                 "401 Unauthorized: the token's password is wrong")
                elif exc.status == 403:
                    log("error", exc.body)
                else:
                    log("info", f"Waiting to retrieve agent configuration; server is not ready: {exc}")
            except (OSError, ssl.SSLError) as exc:
                log("info", f"Waiting to retrieve agent configuration; server is not ready: {exc}")
            self.stop.wait(RETRY_SECONDS)
        if self.stop.is_set():
            return
        log("info", f"Node {self.node_name} registered with the cluster")
        self._refresh_servers()
        sd_notify("READY=1\n")
        import_images(self.data_dir)
        while not self.stop.wait(HEARTBEAT_SECONDS):
            try:
                reply = json.loads(self.call(f"/v1-k3s/sim/nodes/{self.node_name}/heartbeat",
                                             {"password": pw, "version": version()}))
                self._use_servers(reply.get("apiservers") or [])
            except HttpError as exc:
                if exc.status == 404:
                    log("info", "This node was deleted from the cluster: registering it again")
                    try:
                        self.call("/v1-k3s/sim/nodes/register", {"node": payload, "password": pw})
                    except Exception as exc2:
                        log("error", f"re-registration failed: {exc2}")
                else:
                    log("warning", f"Node heartbeat failed: {exc}")
            except (OSError, ssl.SSLError, ValueError) as exc:
                log("warning", f"Node heartbeat failed: {exc}")

    def _refresh_servers(self) -> None:
        try:
            urls = json.loads(self.call("/v1-k3s/sim/apiservers", None, "GET"))
        except Exception:
            return
        self._use_servers(urls)

    def _use_servers(self, urls: list[str]) -> None:
        """The configured server first, then the others the cluster knows, to fall back on."""
        first = self.servers[0]
        self.servers = [first] + [u for u in urls if u != first]


# --------------------------------------------------------------------------
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


def human_duration(secs: int) -> str:
    """kubectl's AGE column (k8s.io/apimachinery duration.HumanDuration)."""
    if secs < 0:
        return "<invalid>"
    if secs < 120:
        return f"{secs}s"
    minutes = secs // 60
    if minutes < 10:
        return f"{minutes}m{secs % 60}s" if secs % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d{hours % 24}h" if hours % 24 else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        years = hours // (24 * 365)
        days = (hours // 24) % 365
        return f"{years}y{days}d" if days else f"{years}y"
    return f"{hours // (24 * 365)}y"


def _age(created: str, now: float | None = None) -> str:
    t = _dt.datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=_dt.UTC)
    return human_duration(int((time.time() if now is None else now) - t.timestamp()))


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


# --------------------------------------------------------------------------
# etcd-snapshot.

def split_flags(command: str, argv: list[str]) -> tuple[list[str], list[str]]:
    """Separate flags (with their values) from positional arguments."""
    table = FLAGS[command]
    flags: list[str] = []
    positional: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("-") and arg != "-":
            flags.append(arg)
            name = arg.lstrip("-").partition("=")[0]
            if "=" not in arg and table.get(name) in ("str", "list") and i + 1 < len(argv):
                i += 1
                flags.append(argv[i])
        else:
            positional.append(arg)
        i += 1
    return flags, positional


def etcd_snapshot(argv: list[str]) -> int:
    flags, positional = split_flags("etcd-snapshot", argv)
    sub = positional.pop(0) if positional else "save"
    cfg = resolve_config("etcd-snapshot", flags)
    data_dir = Path(cfg.get("data-dir") or p("/var/lib/rancher/k3s"))
    server_dir = data_dir / "server"
    snap_dir = Path(cfg.get("dir") or cfg.get("etcd-snapshot-dir") or server_dir / "db" / "snapshots")
    if not (server_dir / "db" / "etcd").exists():
        raise Fatal(f"etcd database not found in {server_dir}")
    if sub == "save":
        tls = server_dir / "tls"
        endpoint_file = server_dir / "db" / "sim-endpoint"
        endpoint = endpoint_file.read_text().strip() if endpoint_file.exists() else "https://127.0.0.1:6443"
        try:
            state = json.loads(https_request(
                f"{endpoint}/pik3s-sim/snapshot", "GET",
                cadata=(tls / "server-ca.crt").read_text(),
                client_cert=((tls / "client-admin.crt").read_bytes(), (tls / "client-admin.key").read_bytes())))
        except (OSError, ssl.SSLError, HttpError) as exc:
            raise Fatal(f"failed to save snapshot: the local etcd did not answer: {exc}") from exc
        node = node_name_from(cfg)
        name = f"{cfg.get('name') or cfg.get('etcd-snapshot-name') or 'on-demand'}-{node}-{int(time.time())}"
        snap = {"kind": "pik3s-sim-etcd-snapshot", "simulator": SIM_NAME, "version": version(),
                "node": node, "created": time.time(), "state": state}
        snap_dir.mkdir(parents=True, exist_ok=True)
        write_private(snap_dir / name, json.dumps(snap))
        log("info", f"Snapshot {name} saved.")
        retention = cfg.get("snapshot-retention") or cfg.get("etcd-snapshot-retention")
        if retention:
            _prune(snap_dir, int(retention))
        return 0
    if sub in ("ls", "list"):
        rows = [("Name", "Location", "Size", "Created")]
        for f in sorted(snap_dir.glob("*")) if snap_dir.is_dir() else []:
            if f.is_file():
                created = _dt.datetime.fromtimestamp(f.stat().st_mtime, _dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                rows.append((f.name, f"file://{f}", str(f.stat().st_size), created))
        widths = [max(len(r[c]) for r in rows) for c in range(4)]
        for r in rows:
            print(" ".join(v.ljust(widths[c]) for c, v in enumerate(r)).rstrip())
        return 0
    if sub == "delete":
        if not positional:
            raise Fatal("no snapshots given for removal")
        for name in positional:
            target = snap_dir / name
            if not target.is_file():
                raise Fatal(f"snapshot {name} not found in {snap_dir}")
            target.unlink()
            log("info", f"Snapshot {name} deleted.")
        return 0
    if sub == "prune":
        _prune(snap_dir, int(cfg.get("snapshot-retention") or cfg.get("etcd-snapshot-retention") or 5))
        return 0
    raise Fatal(f"unknown etcd-snapshot command {sub!r}")


def _prune(snap_dir: Path, keep: int) -> None:
    snaps = sorted((f for f in snap_dir.glob("*") if f.is_file()), key=lambda f: f.stat().st_mtime)
    for f in snaps[:-keep] if keep > 0 else snaps:
        f.unlink()
        log("info", f"Removing local snapshot {f}")


# --------------------------------------------------------------------------
# check-config.

def check_config() -> int:
    ok, why = memory_cgroup_state()
    print(f"Verifying binaries in {p('/var/lib/rancher/k3s/data')}:\n"
          f"- {SIM_NAME}: no bundled binaries to verify\n\n"
          "System:\n"
          f"- cgroup hierarchy: {why}\n"
          f"- memory cgroup: {'enabled' if ok else 'missing'}\n")
    print("STATUS: pass" if ok else "STATUS: 1 (fail)")
    return 0 if ok else 1


# --------------------------------------------------------------------------

def _run_daemon(obj: Server | Agent) -> int:
    def on_signal(signum: int, _frame: Any) -> None:
        log("info", f"Received {signal.Signals(signum).name}, shutting down")
        obj.stop.set()
        if isinstance(obj, Server):
            obj.shutdown()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        obj.start()
    except OSError as exc:  # a data directory that cannot be written (full disk, read-only SD card)
        what = "preparing server" if isinstance(obj, Server) else "failed to prepare agent"
        where = f"open {exc.filename}: " if exc.filename else ""
        raise Fatal(f"{what}: {where}{(exc.strerror or str(exc)).lower()}") from exc
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv if argv is None else argv)
    check_cpu()
    prog = os.path.basename(argv[0])
    args = argv[1:]
    try:
        if prog == "kubectl":
            return kubectl(args)
        if prog in ("crictl", "ctr"):
            raise Fatal(f"{prog} is not simulated: the {SIM_NAME} runs no containers")
        if not args or args[0] in ("-h", "--help", "help"):
            print(f"k3s ({SIM_NAME}, test equipment, not K3s)\n"
                  "commands: server, agent, kubectl, etcd-snapshot, check-config, completion, --version")
            return 0
        cmd, rest = args[0], args[1:]
        if cmd in ("--version", "-v", "version"):
            print(f"k3s version {version()} ({SIM_NAME})\n{GO_VERSION} ({SIM_NAME}, test equipment, not K3s)")
            return 0
        if cmd == "server":
            cfg = resolve_config("server", rest)
            return _run_daemon(Server(cfg))
        if cmd == "agent":
            cfg = resolve_config("agent", rest)
            return _run_daemon(Agent(cfg))
        if cmd == "kubectl":
            return kubectl(rest)
        if cmd in ("crictl", "ctr"):
            raise Fatal(f"{cmd} is not simulated: the {SIM_NAME} runs no containers")
        if cmd == "etcd-snapshot":
            return etcd_snapshot(rest)
        if cmd == "completion":
            return k3s_completion(rest)
        if cmd == "check-config":
            return check_config()
        raise UsageError(f"No help topic for '{cmd}'")
    except UsageError as exc:
        sys.stderr.write(f"Incorrect Usage: {exc}\n")
        log("fatal", str(exc))
        return 1
    except Fatal as exc:
        log("fatal", str(exc))
        return 1


if __name__ == "__main__":
    sys.exit(main())
