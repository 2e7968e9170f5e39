"""Lab specs: the default seed lab and the errors a bad spec gets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pik3s.errors import Pik3sError
from pik3s_lab import spec


def test_default_spec_is_the_seed_lab() -> None:
    lab = spec.load_spec()
    assert lab.name == "seed"
    models = [(h.model, h.arch) for h in lab.hosts]
    assert models.count(("rpi4", "arm64")) == 3
    assert models.count(("rpi3", "armhf")) == 2
    assert [h.name for h in lab.hosts if "server" in h.groups] == ["pi4-1"]
    assert all("agent" in h.groups for h in lab.hosts if h.name != "pi4-1")


GOOD = {"name": "t", "hosts": [{"name": "a", "arch": "amd64", "model": "rpi4", "memory": "512m"}]}


def _with(**host: Any) -> dict[str, Any]:
    return {"name": "t", "hosts": [{**GOOD["hosts"][0], **host}]}


@pytest.mark.parametrize(("data", "message"), [
    ([], "the top level must be a mapping"),
    ({"name": "Bad_Name", "hosts": GOOD["hosts"]}, "name 'Bad_Name' must be lowercase"),
    ({"name": "t", "hosts": []}, "'hosts' must be a non-empty list"),
    ({"name": "t", "hosts": GOOD["hosts"], "extra": 1}, "unknown key(s) extra"),
    (_with(arch="armv6l"), "host a: arch 'armv6l' is not one of amd64, arm64, armhf"),
    (_with(model="rpi5"), "host a: model 'rpi5' is not one of rpi4, rpi3, generic"),
    (_with(memory="lots"), "host a: memory 'lots' must look like 512m or 2g"),
    (_with(groups=["master"]), "host a: groups must be a list of server, agent"),
    (_with(name="UPPER"), "name 'UPPER' must be a lowercase hostname"),
    (_with(cpu=4), "hosts[0]: unknown key(s) cpu"),
    ({"name": "t", "hosts": [GOOD["hosts"][0], GOOD["hosts"][0]]}, "duplicate host name(s) a"),
    ({**GOOD, "airgap": "yes"}, "airgap must be true or false, got 'yes'"),
    ({**GOOD, "api_lb": 1}, "api_lb must be true or false, got 1"),
    ({**GOOD, "api_lb": True}, "api_lb needs hosts in the server group to balance"),
    ({**GOOD, "vars": ["k3s_version"]}, "vars must be a mapping of inventory variable names to values"),
    ({**GOOD, "vars": {"ansible_user": "root", "pik3s_lab_airgap": False}},
     "vars may not set ansible_user, pik3s_lab_airgap: the lab sets those itself"),
    (_with(name="mirror"), "hosts[0]: name 'mirror' is taken by the lab's own mirror container"),
    (_with(name="lb"), "hosts[0]: name 'lb' is taken by the lab's own lb container"),
    (_with(name="etcd"), "hosts[0]: name 'etcd' is taken by the lab's own etcd container"),
    ({**GOOD, "etcd": True}, "etcd must be one of none, plain, tls, got True"),
    ({**GOOD, "etcd": "mtls"}, "etcd must be one of none, plain, tls, got 'mtls'"),
    (_with(memory="0m"), "host a: memory 0m is too little for systemd, sshd and K3s: give it 256m or more"),
    (_with(memory="64m"), "host a: memory 64m is too little"),
    (_with(memory="1g\n"), "host a: memory '1g\\n' must look like 512m or 2g"),
    (_with(count=0), "hosts[0]: count 0 must be a whole number from 1 to 244"),
    (_with(count="5"), "hosts[0]: count '5' must be a whole number from 1 to 244"),
    (_with(count=True), "hosts[0]: count True must be a whole number from 1 to 244"),
    (_with(name="a" * 30, count=10), "hosts[0]: '" + "a" * 30 + "-01' is too long for a hostname"),
    ({"name": "t", "hosts": [{"name": "a", "count": 200, "memory": "256m"}, {"name": "b", "count": 45}]},
     "245 hosts: a lab network (a /24) holds 244 at most"),
    ({"name": "t", "hosts": [{"name": "a", "count": 2}, {"name": "a-1"}]}, "duplicate host name(s) a-1"),
    (_with(name="a\n"), "hosts[0]: name 'a\\n' must be a lowercase hostname"),
])
def test_bad_specs_are_rejected_with_the_reason(data: Any, message: str) -> None:
    with pytest.raises(Pik3sError) as err:
        spec.parse_spec(data, "x.yml")
    assert message in str(err.value)
    assert str(err.value).startswith("lab spec x.yml: ")


def test_unreadable_and_invalid_yaml(tmp_path: Path) -> None:
    with pytest.raises(Pik3sError, match="cannot read lab spec"):
        spec.load_spec(tmp_path / "missing.yml")
    bad = tmp_path / "bad.yml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(Pik3sError, match="is not valid YAML"):
        spec.load_spec(bad)


def test_a_count_makes_numbered_hosts() -> None:
    lab = spec.parse_spec({"name": "fifty", "hosts": [
        {"name": "srv", "groups": ["server"], "memory": "1g"},
        {"name": "pi", "count": 50, "memory": "384m", "groups": ["agent"]}]})
    assert len(lab.hosts) == 51
    assert [h.name for h in lab.hosts[:3]] == ["srv", "pi-01", "pi-02"] and lab.hosts[-1].name == "pi-50"
    assert all(h.memory == "384m" and h.groups == ("agent",) for h in lab.hosts[1:])
    assert spec.fit_problem(lab, 24 * 1024**3) == ""
    nine = spec.parse_spec({"name": "t", "hosts": [{"name": "n", "count": 9}]})
    assert [h.name for h in nine.hosts][::8] == ["n-1", "n-9"]


def test_a_yaml_error_never_quotes_a_secret(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("name: t\nvars:\n  k3s_token: hunter2-do-not-print\n  x: [\n")
    with pytest.raises(Pik3sError) as err:
        spec.load_spec(bad)
    assert "is not valid YAML" in str(err.value) and "hunter2" not in str(err.value)


def test_what_does_not_fit_the_machine_is_refused_before_anything_is_created(
        monkeypatch: pytest.MonkeyPatch) -> None:
    hosts = [{"name": f"h{i}", "memory": "2g"} for i in range(13)]
    big = spec.parse_spec({"name": "big", "hosts": hosts})
    assert spec.fit_problem(big, 24 * 1024**3) == (
        "lab spec big: its 13 hosts ask for 26.0 GiB of memory and this machine has 24.0 GiB: give the hosts less "
        "memory (memory: 512m) or fewer hosts")
    assert spec.fit_problem(big, 32 * 1024**3) == ""
    assert spec.machine_memory() > 0
    # lab up says so before it touches Docker.
    monkeypatch.setattr(spec, "machine_memory", lambda: 1024**3)
    monkeypatch.setattr("pik3s_lab.docker.ensure_engine", lambda: pytest.fail("Docker was touched"))
    with pytest.raises(Pik3sError, match=r"ask for 26\.0 GiB of memory and this machine has 1\.0 GiB"):
        from pik3s_lab import lab as lablib
        lablib.up(big, Path("/nonexistent/pik3s-state"))


def test_what_the_inotify_limit_cannot_take_is_refused() -> None:
    fifty = spec.parse_spec({"name": "fifty", "hosts": [{"name": "pi", "count": 50, "memory": "256m"}]})
    assert spec.inotify_problem(fifty, limit=128, in_use=10) == (
        "lab spec fifty: 50 hosts need about 400 inotify instances (systemd in each holds ~7) and this machine "
        "allows 128, 10 in use: raise it (sysctl -w fs.inotify.max_user_instances=8192; scripts/setup-host does)")
    assert spec.inotify_problem(fifty, limit=8192, in_use=10) == ""
    # This machine's own limit and use are read (/proc): a one-host lab fits any machine set up for the lab.
    assert spec.inotify_problem(spec.parse_spec(GOOD)) == ""


def test_airgap_and_vars() -> None:
    lab = spec.parse_spec({**GOOD, "airgap": True, "vars": {"k3s_version": "v1.31.4+k3s1"}})
    assert lab.airgap is True and lab.vars == {"k3s_version": "v1.31.4+k3s1"}
    plain = spec.parse_spec(GOOD)
    assert plain.airgap is False and plain.vars == {}
    assert plain.etcd == "none" and spec.parse_spec({**GOOD, "etcd": "tls"}).etcd == "tls"
