"""Which k3s_files entries the controller can leave out, from the host state, as a table."""

from __future__ import annotations

from typing import Any

import pytest

from ansible_collections.pik3s.cluster.plugins.module_utils.k3s_digest import fingerprint, sha256_bytes
from ansible_collections.pik3s.cluster.plugins.plugin_utils.k3s_files_plan import EntryError, matches, normalize

KEY = "run-key"
CONFIG = "node-name: srv\n"
FILE = {"exists": True, "type": "file", "mode": "0600", "owner": "root", "group": "root",
        "sha256": sha256_bytes(CONFIG)}
KNOWN: dict[str, Any] = {
    "/etc/rancher/k3s/config.yaml": FILE,
    "/etc/rancher/k3s/registries.yaml": {"exists": True, "type": "file", "mode": "0600", "owner": "root",
                                         "group": "root", "fingerprint": fingerprint(KEY, "mirrors: {}\n")},
    "/etc/rancher/k3s": {"exists": True, "type": "directory", "mode": "0755", "owner": "root", "group": "root"},
    "/usr/local/bin/kubectl": {"exists": True, "type": "link", "link": "/usr/local/bin/k3s"},
    "/usr/local/bin/ctr": {"exists": True, "type": "file", "mode": "0755", "sha256": "ab" * 32},
    "/usr/local/bin/k3s": {"exists": True, "type": "file", "mode": "0755", "owner": "root", "sha256": "cd" * 32},
    "/etc/rancher/k3s/k3s.yaml": {"exists": True, "type": "file", "mode": "0600", "sha256": "ef" * 32},
    "~pi/.kube/config": {"exists": True, "type": "file", "mode": "0600", "owner": "pi", "sha256": "ef" * 32},
    "~pi/.bashrc": {"exists": True, "type": "file", "mode": "0644", "owner": "pi", "sha256": "00" * 32},
    "/etc/gone": {"exists": False},
}
BLOCKS = {"~pi/.bashrc": 'export KUBECONFIG="$HOME/.kube/config"'}


@pytest.mark.parametrize(("entry", "match"), [
    ({"path": "/etc/rancher/k3s/config.yaml", "content": CONFIG, "mode": "0600", "owner": "root"}, True),
    ({"path": "/etc/rancher/k3s/config.yaml", "content": CONFIG + "x: 1\n", "mode": "0600"}, False),
    ({"path": "/etc/rancher/k3s/config.yaml", "content": CONFIG, "mode": "0644"}, False),  # mode drift
    ({"path": "/etc/rancher/k3s/config.yaml", "content": CONFIG, "mode": "600"}, True),  # octal digits
    ({"path": "/etc/rancher/k3s/config.yaml", "content": CONFIG, "owner": "pi"}, False),  # owner drift
    ({"path": "/etc/rancher/k3s/new.yaml", "content": CONFIG}, False),  # not in the state: never assumed
    # secrets compare by fingerprint only, and only with the key
    ({"path": "/etc/rancher/k3s/registries.yaml", "content": "mirrors: {}\n", "secret": True}, True),
    ({"path": "/etc/rancher/k3s/registries.yaml", "content": "mirrors: {a: 1}\n", "secret": True}, False),
    ({"path": "/etc/rancher/k3s/config.yaml", "content": CONFIG, "secret": True}, False),  # no fingerprint read
    ({"path": "/etc/rancher/k3s", "state": "directory", "mode": "0755"}, True),
    ({"path": "/etc/rancher/k3s", "state": "directory", "mode": "0700"}, False),
    ({"path": "/etc/rancher/k3s/config.yaml", "state": "directory"}, False),
    ({"path": "/usr/local/bin/kubectl", "state": "link", "target": "/usr/local/bin/k3s"}, True),
    ({"path": "/usr/local/bin/kubectl", "state": "link", "target": "/opt/k3s"}, False),
    ({"path": "/usr/local/bin/ctr", "state": "link", "target": "/usr/local/bin/k3s"}, True),  # kept: not ours
    ({"path": "/usr/local/bin/ctr", "state": "link", "target": "/usr/local/bin/k3s", "force": True}, False),
    ({"path": "/etc/gone", "state": "absent"}, True),
    ({"path": "/etc/rancher/k3s/config.yaml", "state": "absent"}, False),
    ({"path": "/usr/local/bin/k3s", "src": "/cache/k3s", "checksum": "cd" * 32, "mode": "0755"}, True),
    ({"path": "/usr/local/bin/k3s", "src": "/cache/k3s", "checksum": "ce" * 32}, False),
    ({"path": "~pi/.kube/config", "remote_src": "/etc/rancher/k3s/k3s.yaml", "owner": "pi"}, True),
    ({"path": "~pi/.kube/config", "remote_src": "/etc/rancher/k3s/missing.yaml"}, False),
    ({"path": "~pi/.bashrc", "state": "block", "marker": "# {mark} x", "owner": "pi",
      "block": 'export KUBECONFIG="$HOME/.kube/config"\n'}, True),
    ({"path": "~pi/.bashrc", "state": "block", "marker": "# {mark} x", "block": "export A=1"}, False),
])
def test_matches(entry: dict[str, Any], match: bool) -> None:
    assert matches(normalize(entry), KNOWN, BLOCKS, KEY) is match


def test_a_secret_never_matches_without_the_key() -> None:
    entry = normalize({"path": "/etc/rancher/k3s/registries.yaml", "content": "mirrors: {}\n", "secret": True})
    assert matches(entry, KNOWN, BLOCKS, "") is False


def test_the_local_source_checksum_counts_when_none_is_given() -> None:
    entry = normalize({"path": "/usr/local/bin/k3s", "src": "/cache/k3s"})
    assert matches(entry, KNOWN, BLOCKS, KEY, src_sha256="cd" * 32) is True


@pytest.mark.parametrize(("entry", "message"), [
    ("x", "each entry of files must be a dict, not str"),
    ({"content": "x"}, "an entry of files has no path"),
    ({"path": "/a", "content": "x", "src": "/b"}, "/a: a file needs exactly one of content, src, remote_src "
                                                  "(got content, src)"),
    ({"path": "/a"}, "/a: a file needs exactly one of content, src, remote_src (got none)"),
    ({"path": "/a", "state": "link"}, "/a: a link needs a target"),
    ({"path": "/a", "state": "block", "block": "x"}, "/a: a block needs block and marker"),
    ({"path": "/a", "state": "fifo"}, "/a: state must be one of file, directory, link, absent, block, not 'fifo'"),
    ({"path": "/a", "content": "x", "mode": "rw-r--r--"}, "/a: file mode 'rw-r--r--' is not octal digits"),
    ({"path": "/a", "content": "x", "dest": "/b"}, "/a: unknown keys dest"),
])
def test_bad_entries_name_the_path_and_the_problem(entry: Any, message: str) -> None:
    with pytest.raises(EntryError) as err:
        normalize(entry)
    assert message in str(err.value)


def test_a_bad_entry_never_shows_its_content() -> None:
    with pytest.raises(EntryError) as err:
        normalize({"path": "/etc/rancher/k3s/cluster-token", "content": "hunter2", "secret": True, "src": "/x"})
    assert "hunter2" not in str(err.value)
