"""k3s_files: atomic writes, check mode, diffs without secrets, owners and modes (as root, in a temp dir)."""

from __future__ import annotations

import hashlib
import os
import pwd
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.pik3s.cluster.plugins.modules import k3s_files as m
from tests.unit.plugins.modules.conftest import fill, run_module

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="sets owners: runs as root, as on the hosts")
SECRET = "hunter2-token-password"


def run(files: list[dict[str, Any]] = (), secrets: list[dict[str, Any]] = (), **kw: Any) -> dict[str, Any]:
    return run_module(m.main, {"files": list(files), "secrets": list(secrets)}, **kw)


def stat(path: Path) -> tuple[str, str, str]:
    st = path.stat()
    return oct(st.st_mode & 0o7777), pwd.getpwuid(st.st_uid).pw_name, path.read_text() if path.is_file() else ""


def test_creates_then_changes_nothing(tmp_path: Path) -> None:
    d, f = tmp_path / "k3s", tmp_path / "k3s" / "config.yaml"
    entries = [{"path": str(d), "state": "directory", "mode": "0755"},
               {"path": str(f), "content": "a: 1\n", "mode": "0600"}]
    first = run(entries)
    assert first["changed"] and first["changed_paths"] == [str(d), str(f)]
    assert [e["action"] for e in first["files"]] == ["created", "created"]
    assert stat(f) == ("0o600", "root", "a: 1\n") and stat(d)[:2] == ("0o755", "root")
    second = run(entries)
    assert not second["changed"] and [e["action"] for e in second["files"]] == ["unchanged", "unchanged"]


def test_replaces_atomically_leaving_no_temporary_file(tmp_path: Path) -> None:
    f = tmp_path / "config.yaml"
    f.write_text("old\n")
    before = f.stat().st_ino
    assert run([{"path": str(f), "content": "new\n", "mode": "0600"}])["changed_paths"] == [str(f)]
    assert f.read_text() == "new\n"
    assert f.stat().st_ino != before  # a new file renamed over the old one, never rewritten in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml"]


def test_mode_and_owner_only(tmp_path: Path) -> None:
    f = tmp_path / "kubeconfig"
    f.write_text("x\n")
    f.chmod(0o644)
    ino = f.stat().st_ino
    result = run([{"path": str(f), "content": "x\n", "mode": "0600", "owner": "nobody"}])
    assert [e["action"] for e in result["files"]] == ["attributes"]
    assert stat(f) == ("0o600", "nobody", "x\n") and f.stat().st_ino == ino


def test_check_mode_changes_nothing_but_says_what_would(tmp_path: Path) -> None:
    f, d = tmp_path / "a.conf", tmp_path / "dir"
    f.write_text("old\n")
    f.chmod(0o644)
    result = run([{"path": str(f), "content": "new\n"}, {"path": str(d), "state": "directory"},
                  {"path": str(tmp_path / "link"), "state": "link", "target": "/usr/local/bin/k3s"},
                  {"path": str(tmp_path / "b.conf"), "content": "x\n", "mode": "0600"}], check=True)
    assert result["changed"] and len(result["changed_paths"]) == 4
    assert f.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["a.conf"]
    mode = run([{"path": str(f), "content": "old\n", "mode": "0600"}], check=True)
    assert [e["action"] for e in mode["files"]] == ["attributes"] and oct(f.stat().st_mode & 0o777) == "0o644"


def test_diff_shows_text_but_never_secrets(tmp_path: Path) -> None:
    conf, token = tmp_path / "config.yaml", tmp_path / "cluster-token"
    conf.write_text("a: 1\n")
    token.write_text("old-password\n")
    result = run([{"path": str(conf), "content": "a: 2\n"}],
                 [{"path": str(token), "content": SECRET + "\n", "mode": "0600"}], diff=True)
    diffs = {d["after_header"]: d for d in result["diff"]}
    assert (diffs[str(conf)]["before"], diffs[str(conf)]["after"]) == ("a: 1\n", "a: 2\n")
    assert "secret content not shown" in diffs[str(token)]["after"]
    assert SECRET not in str(result) and "old-password" not in str(result)
    assert token.read_text() == SECRET + "\n"


def test_a_new_secret_file_is_never_readable_by_others(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    token = tmp_path / "cluster-token"
    token.write_text("old\n")
    token.chmod(0o644)  # drifted: world-readable
    seen: list[int] = []
    real_rename = os.rename

    def rename(src: Any, dst: Any) -> None:
        seen.append(os.stat(src).st_mode & 0o777)  # the new content's mode at the moment it takes the name
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    run(secrets=[{"path": str(token), "content": SECRET, "mode": "0600"}])
    assert seen and all(mode & 0o077 == 0 for mode in seen)
    assert stat(token)[0] == "0o600"


def test_links_kept_when_another_package_owns_the_name(tmp_path: Path) -> None:
    ours, theirs = tmp_path / "kubectl", tmp_path / "ctr"
    theirs.write_text("containerd's ctr\n")
    entries = [{"path": str(p), "state": "link", "target": "/usr/local/bin/k3s"} for p in (ours, theirs)]
    result = run(entries)
    assert [e["action"] for e in result["files"]] == ["linked", "kept"]
    assert os.readlink(ours) == "/usr/local/bin/k3s" and theirs.read_text() == "containerd's ctr\n"
    assert not run(entries)["changed"]


def test_absent(tmp_path: Path) -> None:
    f = tmp_path / "registries.yaml"
    f.write_text("x\n")
    assert run([{"path": str(f), "state": "absent"}])["changed_paths"] == [str(f)]
    assert not f.exists() and not run([{"path": str(f), "state": "absent"}])["changed"]


def test_block_at_the_top_then_replaced_in_place(tmp_path: Path) -> None:
    rc = tmp_path / ".bashrc"
    rc.write_text("# ~/.bashrc\n[ -z \"$PS1\" ] && return\nalias ll='ls -l'\n")
    rc.chmod(0o640)
    entry = {"path": str(rc), "state": "block", "marker": "# {mark} pik3s: kubectl", "block": "export A=1"}
    run([entry])
    assert rc.read_text().splitlines()[:3] == ["# BEGIN pik3s: kubectl", "export A=1", "# END pik3s: kubectl"]
    assert oct(rc.stat().st_mode & 0o777) == "0o640"  # its own mode kept
    run([dict(entry, block="export A=2")])
    lines = rc.read_text().splitlines()
    assert lines.count("# BEGIN pik3s: kubectl") == 1 and "export A=2" in lines and "export A=1" not in lines
    assert not run([dict(entry, block="export A=2")])["changed"]


def test_remote_src_copy_stays_on_the_host(tmp_path: Path) -> None:
    admin, copy = tmp_path / "k3s.yaml", tmp_path / "home" / "config"
    admin.write_text("client-key-data: " + SECRET + "\n")
    result = run([{"path": str(copy), "remote_src": str(admin), "mode": "0600", "owner": "nobody"}], diff=True)
    assert copy.read_text() == admin.read_text() and stat(copy)[:2] == ("0o600", "nobody")
    assert SECRET not in str(result)


def test_transferred_file_is_checked_before_it_replaces_anything(tmp_path: Path) -> None:
    binary, tmp_src = tmp_path / "k3s", tmp_path / "transferred"
    binary.write_bytes(b"old release")
    tmp_src.write_bytes(b"new release")
    good = hashlib.sha256(b"new release").hexdigest()
    bad = run([{"path": str(binary), "tmp_src": str(tmp_src), "checksum": "0" * 64, "mode": "0755"}])
    assert bad["failed"] and "does not match its sha256" in bad["msg"] and binary.read_bytes() == b"old release"
    ok = run([{"path": str(binary), "tmp_src": str(tmp_src), "checksum": good, "mode": "0755"}])
    assert ok["changed"] and binary.read_bytes() == b"new release" and stat(binary)[0] == "0o755"
    # the same release again: compared by checksum, nothing to put in place
    assert not run([{"path": str(binary), "checksum": good, "mode": "0755"}])["changed"]


def test_a_full_disk_says_so_and_leaves_the_old_file(small_disk: Path) -> None:
    """A real full filesystem: the write fails with the disk-full message naming the file and where, the
    old file is intact and no temporary file is left behind."""
    f = small_disk / "config.yaml"
    f.write_text("old: 1\n")
    f.chmod(0o600)
    fill(small_disk)
    out = run([{"path": str(f), "content": "new: 2\n" * 20000, "mode": "0600"}])
    assert out["failed"]
    assert out["msg"] == (f"the disk is full: writing {f} failed (No space left on device) on the filesystem of "
                          f"{small_disk}; {f} was left as it was (each file is replaced whole or not at all). "
                          "Free space there, then re-run.")
    assert f.read_text() == "old: 1\n"
    assert sorted(p.name for p in small_disk.iterdir()) == [".filler", "config.yaml"]


def test_a_killed_writers_temporary_file_is_removed_by_the_next_write(tmp_path: Path) -> None:
    """A run killed mid-write leaves .pik3s-<pid>-* beside the intact old file: the next write in that
    directory removes it, and leaves the temporary file of a writer that is still alive."""
    f = tmp_path / "k3s"
    f.write_text("old binary\n")
    dead = tmp_path / ".pik3s-999999999-abcd"  # no such pid
    dead.write_text("half a bin")
    live = tmp_path / f".pik3s-{os.getpid()}-efgh"
    live.write_text("being written")
    out = run([{"path": str(tmp_path / "config.yaml"), "content": "a: 1\n", "mode": "0600"}])
    assert out["changed"] and out["leftovers_removed"] == [str(dead)]
    assert not dead.exists() and live.exists() and f.read_text() == "old binary\n"
    again = run([{"path": str(tmp_path / "config.yaml"), "content": "a: 1\n", "mode": "0600"}])
    assert again["leftovers_removed"] == [] and not again["changed"]
