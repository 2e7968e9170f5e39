"""Labs for the integration tests: each module brings up its own, named after the test run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from pik3s_lab import lab as lablib
from pik3s_lab import spec as speclib
from tests.conftest import ROOT, ansible_env


def host(name: str, group: str, arch: str = "amd64", model: str = "rpi4") -> dict[str, Any]:
    return {"name": name, "arch": arch, "model": model, "memory": "512m", "groups": [group]}


@contextmanager
def running_lab(tmp_path_factory: pytest.TempPathFactory, prefix: str,
                hosts: list[dict[str, Any]], **extra: Any) -> Iterator[lablib.LabRecord]:
    """A lab of ``hosts`` (and the spec's ``extra`` keys) for the duration of the block; removed afterwards,
    network included."""
    spec = speclib.parse_spec({"name": f"{prefix}{os.getpid()}", "hosts": hosts, **extra})
    state = tmp_path_factory.mktemp("lab")
    record = lablib.up(spec, state, progress=print)
    try:
        yield record
    finally:
        removed = lablib.down(spec.name, state)
        assert f"network pik3s-{spec.name}" in removed


# The conformance suite runs modules of community.general and ansible.posix,
# which no PyPI package ships alone and Galaxy is out of reach: they are taken
# from the `ansible` community package's wheel (from PyPI), cached.
CONFORMANCE_ANSIBLE = "12.3.0"  # community.general 11.4.2, ansible.posix 2.1.0
CONFORMANCE_COLLECTIONS = ("community/general", "ansible/posix")


def conformance_collections() -> Path:
    """A collections path holding community.general and ansible.posix (downloaded once)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pik3s" / "conformance"
    root = cache / f"ansible-{CONFORMANCE_ANSIBLE}"
    if all((root / "ansible_collections" / c / "MANIFEST.json").is_file() for c in CONFORMANCE_COLLECTIONS):
        return root
    wheels = cache / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary", ":all:",
                    "-d", str(wheels), f"ansible=={CONFORMANCE_ANSIBLE}"], check=True)
    wheel = next(wheels.glob(f"ansible-{CONFORMANCE_ANSIBLE}-*.whl"))
    partial = root.with_suffix(".partial")
    shutil.rmtree(partial, ignore_errors=True)
    with zipfile.ZipFile(wheel) as zf:
        for name in zf.namelist():
            if any(name.startswith(f"ansible_collections/{c}/") for c in CONFORMANCE_COLLECTIONS):
                zf.extract(name, partial)
    shutil.rmtree(root, ignore_errors=True)
    partial.rename(root)
    return root


REPORTS = Path(os.environ.get("PIK3S_REPORT_DIR") or Path.home() / ".cache" / "pik3s" / "reports")


def record_fault(module: str, fault: str, outcome: str, recover_s: float | None, manual: str = "none",
                 data_lost: str = "none") -> None:
    """One row of the fault table (fault -> outcome, time to recover with a re-run, manual steps, data
    lost) into $PIK3S_REPORT_DIR/faults-<module>.json (one file per module: modules run in parallel)."""
    REPORTS.mkdir(parents=True, exist_ok=True)
    path = REPORTS / f"faults-{module}.json"
    rows = json.loads(path.read_text()) if path.exists() else {}
    rows[fault] = {"outcome": outcome, "recover_s": None if recover_s is None else round(recover_s, 1),
                   "manual_steps": manual, "data_lost": data_lost}
    path.write_text(json.dumps(rows, indent=1) + "\n")


def lab_inventory(lab: lablib.LabRecord) -> str:
    """A private copy of inventories/lab for ``lab`` (the dynamic inventory script and the group_vars,
    linked): what the playbooks write beside the inventory (the fetched kubeconfig in .kube/, backups in
    .backups/) stays with this lab, apart from the checkout and from labs run in parallel."""
    d = Path(lab.state_dir) / "inventory"
    if not d.is_dir():
        (d / "group_vars").mkdir(parents=True)
        (d / "hosts").symlink_to(ROOT / "inventories" / "lab" / "hosts")
        (d / "group_vars" / "all.yml").symlink_to(ROOT / "inventories" / "lab" / "group_vars" / "all.yml")
    return str(d)


# ---- helpers of the modules that drive pik3s on a lab and inject faults into its hosts ----------------

PIK3S = str(Path(sys.executable).with_name("pik3s"))


def pik3s_env(lab: lablib.LabRecord) -> dict[str, str]:
    """The environment pik3s runs in against ``lab``: this venv's tools first, the lab's state dir."""
    return {**ansible_env(), "PIK3S_LAB_STATE_DIR": lab.state_dir,
            "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}


def run_pik3s(lab: lablib.LabRecord, *args: str, inventory: str = "",
              timeout: float = 900) -> tuple[int, dict[str, Any], str]:
    """`pik3s ARGS -i INVENTORY --output json` (the lab's private inventory by default): exit code,
    the JSON result ({} when none), stderr."""
    proc = subprocess.run([PIK3S, *args, "-i", inventory or lab_inventory(lab), "--output", "json"], cwd=ROOT,
                          env=pik3s_env(lab), capture_output=True, text=True, timeout=timeout, check=False)
    return proc.returncode, json.loads(proc.stdout) if proc.stdout.strip() else {}, proc.stderr


def container(lab: lablib.LabRecord, name: str) -> str:
    return next(h.container for h in lab.hosts if h.name == name)


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check)


def sh(lab: lablib.LabRecord, name: str, script: str, check: bool = True) -> str:
    """A shell script run as root in a lab host's container (outside Ansible): its stdout."""
    return docker("exec", container(lab, name), "sh", "-c", script, check=check).stdout


def wait_ssh(lab: lablib.LabRecord, name: str, timeout: float = 120) -> None:
    """Until sshd runs again on a host powered back on."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if docker("exec", container(lab, name), "systemctl", "is-active", "--quiet", "ssh.service",
                  check=False).returncode == 0:
            return
        time.sleep(1)
    raise AssertionError(f"sshd of {name} did not come back")
