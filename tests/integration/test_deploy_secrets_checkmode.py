"""site.yml on a small lab: the token never shows in Ansible's output (default
verbosity and -vvv), and check mode works on fresh and on converged hosts."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from pik3s.lab import lab as lablib
from tests.conftest import run_ansible
from tests.integration.conftest import host, running_lab

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[lablib.LabRecord]:
    with running_lab(tmp_path_factory, "sec", [host("srv", "server"), host("agt", "agent", model="generic")]) as record:
        yield record


def site(lab: lablib.LabRecord, *args: str) -> tuple[int, str]:
    res = run_ansible("ansible-playbook", "-i", "inventories/lab", "site.yml", *args,
                      env={"PIK3S_LAB_STATE_DIR": lab.state_dir})
    return res.returncode, res.stdout + res.stderr


def changed(output: str) -> dict[str, int]:
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\S+)\s+: ok=\d+\s+changed=(\d+)", output, re.M)}


def test_check_mode_converge_secrets(lab: lablib.LabRecord) -> None:
    rc, fresh_check = site(lab, "--check")
    assert rc == 0, fresh_check

    rc, first = site(lab, "-vvv")
    assert rc == 0, first[-3000:]
    res = run_ansible("ansible", "-i", "inventories/lab", "srv", "-b", "-m", "ansible.builtin.command",
                      "-a", "cat /var/lib/rancher/k3s/server/token", env={"PIK3S_LAB_STATE_DIR": lab.state_dir})
    token = re.search(r"K10[0-9a-f]{64}::server:\S+", res.stdout)
    assert token, res.stdout
    password = token.group(0).rsplit(":", 1)[1]
    assert len(password) == 48  # generated on the controller: 48 letters and digits

    rc, second = site(lab)
    assert rc == 0, second[-3000:]
    assert changed(second) == {"srv": 0, "agt": 0}

    rc, converged_check = site(lab, "--check", "-vvv")
    assert rc == 0, converged_check[-3000:]
    assert changed(converged_check) == {"srv": 0, "agt": 0}

    for name, output in (("fresh --check", fresh_check), ("-vvv converge", first), ("re-run", second),
                         ("--check -vvv", converged_check)):
        assert password not in output, f"the token's password leaked in the {name} output"
