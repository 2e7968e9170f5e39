"""K3s's flags, config files (config.yaml and config.yaml.d) and how they merge."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .common import Fatal, log, p
from .yamlreader import YamlError, yaml_load

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


def critical_mismatch(cluster: dict[str, Any], here: dict[str, Any]) -> str:
    """K3s's complaint about the first critical setting a joining server has otherwise than the cluster
    ('' when they all match)."""
    for key in CRITICAL_KEYS:
        if cluster.get(key) != here.get(key):
            return (f"critical configuration value mismatch between servers: {key} is {cluster.get(key)!r} "
                    f"on the cluster, {here.get(key)!r} here")
    return ""


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
               "K3S_KUBECONFIG_MODE": "write-kubeconfig-mode", "K3S_DATASTORE_ENDPOINT": "datastore-endpoint",
               "K3S_DATASTORE_CAFILE": "datastore-cafile", "K3S_DATASTORE_CERTFILE": "datastore-certfile",
               "K3S_DATASTORE_KEYFILE": "datastore-keyfile"}
    for env, key in env_map.items():
        if env in os.environ and key not in merged and key in FLAGS[command]:
            val = os.environ[env]
            merged[key] = val.lower() == "true" if FLAGS[command][key] == "bool" else val
    return merged
