#!/usr/bin/python
# Copyright: pik3s developers
# Apache License 2.0 (see LICENSE)
"""Documentation of the pik3s.cluster.k3s_release action, which runs on the controller only."""

from __future__ import annotations

DOCUMENTATION = r"""
module: k3s_release
author: pik3s developers (@pik3s)
version_added: 0.1.0
short_description: Settle the K3s release and verify its files on the controller
description:
  - Resolves the release to install (O(version), or the newest of O(channel) from the channel service's
    redirect) and makes the binary of every CPU architecture in O(architectures) ready on the controller,
    verified against the sha256 the release's own checksum file states.
  - Online, checksum files and binaries are downloaded once into O(cache_dir)/<version>/; a cached file is
    used only when it still verifies. In air-gap mode they are taken from O(airgap_dir), with the air-gap
    image tarballs, and verified the same way; nothing is downloaded.
  - A file that does not verify is reported with C(ok=false) in RV(assets), so that only the hosts of that
    CPU are stopped; a version, channel or checksum-file problem fails the task.
  - Runs on the controller only and contacts no host. It fills the controller's cache in check mode too.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
attributes:
  action:
    support: full
  async:
    support: none
  bypass_host_loop:
    support: none
  check_mode:
    support: full
    details: The controller's download cache is filled in check mode too; no host is contacted.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  version:
    description: A release name like C(v1.31.4+k3s1); empty resolves O(channel).
    type: str
    default: ""
  channel:
    description: The channel (C(stable), C(latest), C(v1.31), ...) resolved when O(version) is empty.
    type: str
    default: stable
  channel_url:
    description: Base URL of the channel service (C(https://update.k3s.io/v1-release/channels)).
    type: str
    default: ""
  release_url:
    description: Base URL of the releases (C(https://github.com/k3s-io/k3s/releases/download)).
    type: str
    default: ""
  airgap_dir:
    description: A directory on the controller with the release's binaries, checksum files and image tarballs.
    type: path
    default: ""
  cache_dir:
    description: The controller's download cache, one directory per version.
    type: path
    default: ""
  architectures:
    description: The CPU architectures (C(uname -m)) whose binaries are needed.
    type: list
    elements: str
    default: []
  validate_certs:
    description: Verify TLS certificates of the release and channel URLs.
    type: bool
    default: true
  timeout:
    description: Seconds per HTTP request.
    type: int
    default: 30
"""

EXAMPLES = r"""
- name: Resolve and verify the release
  pik3s.cluster.k3s_release:
    version: "{{ k3s_version }}"
    channel: "{{ k3s_channel }}"
    channel_url: "{{ k3s_channel_url }}"
    release_url: "{{ k3s_release_url }}"
    airgap_dir: "{{ k3s_airgap_dir }}"
    cache_dir: "{{ k3s_cache_dir }}"
    architectures: [x86_64, aarch64]
  run_once: true
  register: release
"""

RETURN = r"""
version:
  description: The release settled on.
  returned: success
  type: str
  sample: v1.31.4+k3s1
assets:
  description:
    - Per asset name (C(k3s), C(k3s-arm64), C(k3s-armhf), and in air-gap mode C(k3s-airgap-images-<arch>.tar.gz)),
      C(ok) (verified), C(path) (on the controller), C(sha256) (what the checksum file states), C(error)
      and C(checksum_file).
  returned: success
  type: dict
known_binaries:
  description: The sha256 of every K3s binary named in the cache's checksum files, mapped to its version.
  returned: success
  type: dict
"""
