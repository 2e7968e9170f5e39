"""`pik3s demo` end to end, as the README's main job runs it: the seed lab (3 x Pi 4 arm64 + 2 x Pi 3
armhf, emulated) up, K3s deployed by the real playbooks through the driver, the cluster shown, then
`pik3s demo down`. Writes its wall time to $PIK3S_REPORT_DIR/demo.json."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, ansible_env

pytestmark = pytest.mark.lab

PIK3S = str(Path(sys.executable).with_name("pik3s"))
REPORT = Path(os.environ.get("PIK3S_REPORT_DIR", Path.home() / ".cache" / "pik3s" / "reports"))
SEED = {"pi4-1": "control-plane,master", "pi4-2": "<none>", "pi4-3": "<none>", "pi3-1": "<none>",
        "pi3-2": "<none>"}
ARCH = {"pi4-1": "arm64", "pi4-2": "arm64", "pi4-3": "arm64", "pi3-1": "arm", "pi3-2": "arm"}


def _seed_containers() -> list[str]:
    out = subprocess.run(["docker", "ps", "-aq", "--filter", "name=^pik3s-seed-"], capture_output=True, text=True,
                         check=True).stdout
    return out.split()


def test_demo_up_and_down(tmp_path: Path) -> None:
    if _seed_containers():
        pytest.skip("a seed lab is already running on this machine (pik3s demo down removes it)")
    env = {**ansible_env(), "PIK3S_LAB_HOME": str(tmp_path / "labs"),
           "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    started = time.monotonic()
    try:
        up = subprocess.run([PIK3S, "demo"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800,
                            check=False)
        seconds = time.monotonic() - started
        assert up.returncode == 0, (up.stdout[-3000:], up.stderr[-3000:])
        assert "the pik3s K3s SIMULATOR" in up.stderr  # says what it installs, before it does
        assert "demo: the nodes above run the pik3s K3s simulator, not K3s" in up.stdout
        rows = {m.group(1): m.groups()[1:] for m in re.finditer(
            r"^(pi[34]-\d)\s+(\S+)\s+(Ready|NotReady)\s+\S+\s+(v\S+)\s+(\S+)\s", up.stdout, re.M)}
        assert {n: r[0] for n, r in rows.items()} == SEED, up.stdout
        assert all(r[1] == "Ready" for r in rows.values()), up.stdout
        assert {n: r[3] for n, r in rows.items()} == ARCH
        kubeconfig = re.search(r"^kubeconfig: (\S+)$", up.stdout, re.M)
        assert kubeconfig and Path(kubeconfig.group(1)).is_file(), up.stdout
        assert re.search(r"^pik3s deploy: done \(", up.stdout, re.M)
        REPORT.mkdir(parents=True, exist_ok=True)
        (REPORT / "demo.json").write_text(json.dumps({"seconds": round(seconds, 1), "nodes": len(rows)}))
    finally:
        down = subprocess.run([PIK3S, "demo", "down"], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=600, check=False)
    assert down.returncode == 0, down.stderr
    assert _seed_containers() == []
