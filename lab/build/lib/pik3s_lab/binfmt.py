"""Register qemu-user-static for arm64 and armhf with the flags sudo needs.

Debian registers qemu with flags ``PF``. Under those, setuid binaries run with
the caller's credentials and ``sudo`` fails with "effective uid is not 0".
The ``C`` flag (credentials, which implies ``O``) makes the kernel compute
credentials from the emulated binary, so sudo works as on a real Pi. ``F``
opens the interpreter at registration time, so it also works inside
containers and chroots that do not contain qemu.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from pik3s.errors import Pik3sError

BINFMT = Path("/proc/sys/fs/binfmt_misc")
FLAGS = "POCF"

# Debian architecture -> (binfmt entry name, ELF magic, mask, interpreter).
_ELF_MASK = r"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff"
ENTRIES: dict[str, tuple[str, str, str]] = {
    "arm64": (
        "qemu-aarch64",
        r"\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00",
        "/usr/libexec/qemu-binfmt/aarch64-binfmt-P",
    ),
    "armhf": (
        "qemu-arm",
        r"\x7f\x45\x4c\x46\x01\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x28\x00",
        "/usr/libexec/qemu-binfmt/arm-binfmt-P",
    ),
}


def current_flags(name: str) -> str | None:
    """The flags of a registered entry, or None when it is not registered."""
    entry = BINFMT / name
    if not entry.exists():
        return None
    for line in entry.read_text().splitlines():
        if line.startswith("flags:"):
            return line.split(":", 1)[1].strip()
    return ""


_LOCK = threading.Lock()


def ensure(arch: str) -> None:
    """Make sure binaries of ``arch`` run here, with credentials (C) honoured."""
    if arch not in ENTRIES:
        return
    with _LOCK:  # image builds run in parallel threads
        _ensure(arch)


def _ensure(arch: str) -> None:
    name, magic, interpreter = ENTRIES[arch]
    if not Path(interpreter).exists():
        raise Pik3sError(
            f"{interpreter} is missing: install qemu-user-static to run {arch} lab hosts"
        )
    if not (BINFMT / "register").exists():
        if os.geteuid() != 0:
            raise Pik3sError("binfmt_misc is not mounted and mounting it needs root")
        rc = os.system(f"mount -t binfmt_misc binfmt_misc {BINFMT}")  # noqa: S605 - fixed command
        if rc != 0:
            raise Pik3sError(f"could not mount binfmt_misc on {BINFMT}")
    flags = current_flags(name)
    if flags is not None and set(FLAGS) <= set(flags):
        return
    if os.geteuid() != 0:
        raise Pik3sError(f"registering {name} with flags {FLAGS} needs root")
    if flags is not None:
        (BINFMT / name).write_text("-1")
    (BINFMT / "register").write_text(f":{name}:M::{magic}:{_ELF_MASK}:{interpreter}:{FLAGS}")
