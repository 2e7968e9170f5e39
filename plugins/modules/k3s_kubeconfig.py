#!/usr/bin/python
# Copyright: pik3s developers
# Apache License 2.0 (see LICENSE)
"""Documentation of the pik3s.cluster.k3s_kubeconfig action, which runs on the controller."""

from __future__ import annotations

DOCUMENTATION = r"""
module: k3s_kubeconfig
author: pik3s developers (@pik3s)
version_added: 0.1.0
short_description: Bring a K3s server's admin kubeconfig to the controller, renamed and pointed at the API
description:
  - Reads the admin kubeconfig K3s writes on a server (O(src)), sets every name to O(cluster_name) and the
    server URL to O(server), and writes it on the controller to O(dest) (mode 0600, its directory 0700),
    atomically. With O(merge), also merges it into O(merge_path) (entries of the same name replaced, others
    and the current context kept, the previous file kept as a timestamped C(.bak), mode 0600).
  - The controller's copy starts with a comment naming the server file and its sha256. When O(source_sha256)
    (from M(pik3s.cluster.k3s_host_info)) is that sha256 and the copy still points at O(server), the server is
    not contacted at all.
  - The admin client key never appears in the task's result, its diff or its log.
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
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  src:
    description: The admin kubeconfig on the server.
    type: str
    required: true
  source_sha256:
    description: Its sha256 as read by M(pik3s.cluster.k3s_host_info) in this run; empty to always read it.
    type: str
    default: ""
  dest:
    description: Where it goes on the controller.
    type: path
    required: true
  cluster_name:
    description: The name of its cluster, context and user.
    type: str
    required: true
  server:
    description: The API URL it points at (C(https://<endpoint>:<port>)).
    type: str
    required: true
  merge:
    description: Also merge it into O(merge_path).
    type: bool
    default: false
  merge_path:
    description: The operator's kubeconfig to merge into.
    type: path
"""

EXAMPLES = r"""
- name: Fetch the kubeconfig
  pik3s.cluster.k3s_kubeconfig:
    src: /etc/rancher/k3s/k3s.yaml
    source_sha256: "{{ host_state.files['/etc/rancher/k3s/k3s.yaml'].sha256 }}"
    dest: "{{ inventory_dir }}/.kube/k3s.yaml"
    cluster_name: k3s
    server: https://192.168.1.10:6443
"""

RETURN = r"""
dest:
  description: The controller's copy.
  returned: always
  type: str
merged:
  description: Whether O(merge_path) was (or, in check mode, would be) changed.
  returned: always
  type: bool
host_calls:
  description: Module calls made on the server (0 when the copy was already current).
  returned: always
  type: int
"""
