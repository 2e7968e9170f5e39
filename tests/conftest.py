"""Shared test helpers: running Ansible from the checkout against a lab."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def ansible_env() -> dict[str, str]:
    """The environment of an operator in this checkout: its ansible.cfg, nothing inherited."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env["ANSIBLE_CONFIG"] = str(ROOT / "ansible.cfg")
    env["ANSIBLE_FORCE_COLOR"] = "0"
    return env


def run_ansible(tool: str, *args: str, timeout: float = 600,
                env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**ansible_env(), "PATH": f"{BIN}:{os.environ.get('PATH', '')}", **(env or {})}
    return subprocess.run([str(BIN / tool), *args], cwd=ROOT, env=full_env, capture_output=True,
                          text=True, timeout=timeout, check=False)


def build_wheel(dest: Path) -> Path:
    """pik3s's wheel, built from this checkout as a release builds it (the collection inside)."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "--disable-pip-version-check", "-w", str(dest), str(ROOT)], check=True, capture_output=True)
    (wheel,) = dest.glob("pik3s-*.whl")
    return wheel


def fresh_venv(dest: Path, *wheels: Path) -> Path:
    """A new venv with ``wheels`` installed as a user installs them, offline: pik3s's dependencies are
    those of this test venv (appended to the new one's path by a .pth file, after its own
    site-packages); neither this checkout nor the lab package is in it. Returns its bin directory."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(dest)], check=True)
    site = next((dest / "lib").glob("python3*/site-packages"))
    ours = next(p for p in map(Path, sys.path) if p.name == "site-packages" and (p / "ansible").is_dir())
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                    "--disable-pip-version-check", "--target", str(site), *map(str, wheels)], check=True,
                   capture_output=True)
    (site / "zz-test-dependencies.pth").write_text(f"{ours}\n")
    bindir = dest / "bin"
    (bindir / "pik3s").write_text(f"#!{bindir / 'python'}\nimport sys\nfrom pik3s.cli import main\nsys.exit(main())\n")
    (bindir / "pik3s").chmod(0o755)
    return bindir


def outside_env(bindir: Path, home: Path) -> dict[str, str]:
    """The environment of a user outside this checkout: the fresh venv's pik3s first on PATH (Ansible's
    tools from this venv after it), no pik3s or Ansible settings of the test run."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIK3S_", "ANSIBLE_"))}
    env.update(HOME=str(home), PATH=f"{bindir}:{Path(sys.executable).parent}:/usr/bin:/bin")
    return env
