"""The one table of K3s release facts the lab publishes: versions, channels,
asset names per architecture. The roles have their own single table of the
same facts (the arch filter); the lab's tests check the two agree.
"""

from __future__ import annotations

# Versions the lab mirror publishes, oldest first: one minor apart, so that
# upgrades and a skipped minor version can both be tested.
VERSIONS = ("v1.29.12+k3s1", "v1.30.8+k3s1", "v1.31.4+k3s1")

# update.k3s.io channel name -> version it redirects to.
CHANNELS = {
    "stable": "v1.31.4+k3s1",
    "latest": "v1.31.4+k3s1",
    "v1.29": "v1.29.12+k3s1",
    "v1.30": "v1.30.8+k3s1",
    "v1.31": "v1.31.4+k3s1",
}

# Debian/lab arch -> (binary asset, checksum file, airgap image arch).
ASSETS = {
    "amd64": ("k3s", "sha256sum-amd64.txt", "amd64"),
    "arm64": ("k3s-arm64", "sha256sum-arm64.txt", "arm64"),
    "armhf": ("k3s-armhf", "sha256sum-arm.txt", "arm"),
}

# Where the mirror serves them, shaped like GitHub and update.k3s.io.
RELEASE_PATH = "/k3s-io/k3s/releases/download"
TAG_PATH = "/k3s-io/k3s/releases/tag"
CHANNEL_PATH = "/v1-release/channels"

# What an airgap tarball lists (the images K3s ships; the simulator imports nothing).
AIRGAP_IMAGES = (
    "docker.io/rancher/klipper-helm", "docker.io/rancher/klipper-lb",
    "docker.io/rancher/local-path-provisioner", "docker.io/rancher/mirrored-coredns-coredns",
    "docker.io/rancher/mirrored-library-busybox", "docker.io/rancher/mirrored-library-traefik",
    "docker.io/rancher/mirrored-metrics-server", "docker.io/rancher/mirrored-pause",
)

# Helm charts the mirror serves as a chart repository (index.yaml and archives) at CHART_PATH, and
# in every release directory's charts/ for air-gap mode: lab stand-ins that carry the name and
# version of the charts pik3s pins (the add-on catalogue, plugins/plugin_utils/k3s_addons.py;
# the lab's tests check they agree) and the image their values name. Nothing in them runs.
CHART_PATH = "/charts"
CHARTS = (
    ("kubernetes-dashboard", "7.14.0", "docker.io/kubernetesui/dashboard-web", "1.7.0"),
    ("headlamp", "0.43.0", "ghcr.io/headlamp-k8s/headlamp", "v0.43.0"),
    ("hello", "1.0.0", "docker.io/library/nginx", "1.27"),
)
