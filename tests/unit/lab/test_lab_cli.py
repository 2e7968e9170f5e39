"""The lab's inventory and the CLI's contract (no Docker needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pik3s import cli
from pik3s_lab import lab as lablib


def _record(tmp_path: Path) -> lablib.LabRecord:
    hosts = [
        lablib.HostRecord("pi4-1", "arm64", "rpi4", "2g", ["server"], "172.29.9.10", "pik3s-t-pi4-1", "v1"),
        lablib.HostRecord("pi3-1", "armhf", "rpi3", "1g", ["agent"], "172.29.9.11", "pik3s-t-pi3-1", "v2"),
        lablib.HostRecord("box", "amd64", "generic", "1g", [], "172.29.9.12", "pik3s-t-box", "v3"),
    ]
    return lablib.LabRecord("t", "pik3s-t", "172.29.9.0/24", "pik3s-t-mirror", "172.29.9.2", hosts, str(tmp_path))


def test_inventory_shape(tmp_path: Path) -> None:
    record = _record(tmp_path)
    lablib.write_inventory(record)
    text = record.inventory.read_text()
    assert "simulator" in text.splitlines()[1]
    inv = yaml.safe_load(text)["all"]
    assert inv["vars"]["ansible_user"] == "pi"
    assert f"UserKnownHostsFile={tmp_path}/known_hosts" in inv["vars"]["ansible_ssh_common_args"]
    assert "StrictHostKeyChecking=yes" in inv["vars"]["ansible_ssh_common_args"]
    assert inv["vars"]["pik3s_lab_release_url"] == "http://172.29.9.2:8080/k3s-io/k3s/releases/download"
    assert inv["vars"]["pik3s_lab_channel_url"] == "http://172.29.9.2:8080/v1-release/channels"
    assert inv["hosts"]["pi3-1"] == {"ansible_host": "172.29.9.11", "pik3s_lab_arch": "armhf",
                                     "pik3s_lab_model": "rpi3"}
    assert set(inv["children"]["pik3s_lab"]["hosts"]) == {"pi4-1", "pi3-1", "box"}
    groups = inv["children"]["k3s_cluster"]["children"]
    assert set(groups["server"]["hosts"]) == {"pi4-1"} and set(groups["agent"]["hosts"]) == {"pi3-1"}


def test_record_round_trip(tmp_path: Path) -> None:
    record = _record(tmp_path)
    record.save()
    assert lablib.LabRecord.load(tmp_path) == record
    assert lablib.LabRecord.load(tmp_path / "nowhere") is None


def test_cpuinfo_carries_the_pi_model_lines() -> None:
    text = lablib._cpuinfo("rpi4", "pi4-1")
    assert text.count("processor\t:") == 4
    assert "Model\t\t: Raspberry Pi 4 Model B Rev 1.4" in text
    assert "Revision\t: c03114" in text
    assert lablib._cpuinfo("rpi3", "a") != lablib._cpuinfo("rpi3", "b")  # serial per host
    assert "ARMv7" in lablib._cpuinfo("rpi3", "a")


def test_state_dir_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PIK3S_LAB_HOME", str(tmp_path))
    assert lablib.default_state_dir("seed") == tmp_path / "seed"


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["lab", "image", "--arch", "armv6l"])
    assert exc.value.code == 2
    assert "invalid choice: 'armv6l'" in capsys.readouterr().err


def test_operator_errors_exit_1_without_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "lab.yml"
    bad.write_text("name: x\nhosts: []\n")
    assert cli.main(["lab", "up", "--spec", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.strip() == f"pik3s: error: lab spec {bad}: 'hosts' must be a non-empty list"


def test_dynamic_inventory_matches_the_yaml_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json
    assert cli.main(["lab", "inventory", "--state-dir", str(tmp_path), "--name", "t"]) == 0
    assert json.loads(capsys.readouterr().out) == {"_meta": {"hostvars": {}}}
    record = _record(tmp_path)
    lablib.write_inventory(record)
    data = lablib.inventory_json(tmp_path)
    assert data["all"]["vars"]["ansible_user"] == "pi"
    assert set(data["all"]["children"]) == {"pik3s_lab", "k3s_cluster"}
    assert data["k3s_cluster"]["children"] == ["server", "agent"]
    assert data["server"]["hosts"] == ["pi4-1"]
    assert data["_meta"]["hostvars"]["pi3-1"]["ansible_host"] == "172.29.9.11"
    assert cli.main(["lab", "inventory", "--state-dir", str(tmp_path), "--name", "t", "--host", "box"]) == 0
    assert json.loads(capsys.readouterr().out)["pik3s_lab_arch"] == "amd64"
