"""Node objects: their status, roles, labels and taints as the API shows them."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import re
import time
from typing import Any

from .common import CONTAINERD_VERSION, NODE_GRACE_SECONDS, SIM_NAME, Fatal


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


def uuid_for(text: str) -> str:
    digest = hashlib.sha256(text.encode()).hexdigest()
    return f"{digest[:8]}-{digest[8:12]}-5{digest[13:16]}-a{digest[17:20]}-{digest[20:32]}"


def spec(obj: dict[str, Any], key: str, default: Any = "") -> str:
    return str((obj.get("spec") or {}).get(key, default))


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
