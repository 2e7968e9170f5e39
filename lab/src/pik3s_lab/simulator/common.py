"""Constants, paths, logging in K3s's format and the fatal error every part shares."""

from __future__ import annotations

import datetime as _dt
import os
import sys
from pathlib import Path

# The release and arch an asset was published as: pik3s_lab.mirror writes them
# into _published.py when it builds the asset. Run from the source tree (unit
# tests), the simulator is no release: version v0.0.0+sim, any arch.
PUBLISHED_VERSION = PUBLISHED_ARCH = ""
try:
    from . import _published  # type: ignore[attr-defined,unused-ignore]
except ImportError:
    pass
else:
    PUBLISHED_VERSION, PUBLISHED_ARCH = str(_published.VERSION), str(_published.ARCH)

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
# How long a server on an external datastore waits for it to answer at start before it gives up (and
# systemd starts it again).
EXTERNAL_CONNECT_SECONDS = float(os.environ.get("PIK3S_SIM_DATASTORE_WAIT", "15"))
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


# Logging, in K3s's logrus format, every line naming the simulator.
def log(level: str, msg: str) -> None:
    now = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    msg = msg.replace('"', '\\"')
    sys.stderr.write(f'time="{now}" level={level} msg="[{SIM_NAME}] {msg}"\n')
    sys.stderr.flush()


class Fatal(Exception):
    """Ends the program with level=fatal, as K3s does."""
