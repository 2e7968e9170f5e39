"""The driver's API and CLI without lab hosts: argument building, events -> results and progress,
exit codes, secret masking, the JSON schema, and real ansible-runner runs of local playbooks."""

from __future__ import annotations

import io
import json
import os
import stat
import tempfile
import time
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from pik3s import api, cli, runner
from pik3s import inventory as inventory_mod
from pik3s.errors import Pik3sError, UsageError
from pik3s.masking import MASK, Masker, secret_values
from pik3s.progress import LineView, Progress, TtyView, compress, summary
from pik3s.results import (
    EXIT_CANCELLED,
    EXIT_ERROR,
    EXIT_HOST_FAILED,
    EXIT_INVALID,
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    ClusterFacts,
    Failure,
    HostStats,
    Result,
)
from tests.conftest import ROOT

TOKEN = "K10" + "ab" * 32 + "::server:Sup3rS3cretPassw0rd"
SHORT_TOKEN = "plain-short-token-42"
SCHEMA = json.loads((resources.files("pik3s") / "data" / "result.schema.json").read_text())


def _ev(event: str, counter: int = 1, **data: Any) -> dict[str, Any]:
    return {"event": event, "counter": counter, "created": "2026-11-29T08:00:00", "event_data": data,
            "stdout": data.pop("stdout", "")}


# ---- argument building --------------------------------------------------------------------------

def test_runner_kwargs_are_built_in_one_place(tmp_path: Path) -> None:
    kw = runner.runner_kwargs(playbook=tmp_path / "p.yml", inventory=tmp_path / "inv", private_dir=tmp_path,
                              extravars_file=tmp_path / "extravars.json", limit="a,b", verbosity=2, check=True,
                              timeout=30)
    assert kw["suppress_env_files"] is True and kw["suppress_output_file"] is True and kw["quiet"] is True
    assert runner.RUNNER_SETTINGS == {"suppress_output_file": True, "suppress_ansible_output": True}
    assert kw["extravars"] == str(tmp_path / "extravars.json")  # a file: -e @file, not values on argv
    assert kw["cmdline"] == "--check" and kw["limit"] == "a,b" and kw["verbosity"] == 2 and kw["timeout"] == 30
    env = kw["envvars"]
    assert env["ANSIBLE_COLLECTIONS_PATH"] == str(inventory_mod.collections_root())
    assert env["PATH"].split(os.pathsep)[0] == str(Path(inventory_mod.ansible_tool("ansible-playbook")).parent)
    plain = runner.runner_kwargs(playbook=tmp_path / "p.yml", inventory=tmp_path / "inv", private_dir=tmp_path,
                                 extravars_file=None, limit=None, verbosity=0, check=False, timeout=None)
    assert plain["cmdline"] is None and plain["extravars"] is None and plain["limit"] is None


def test_every_operation_names_a_collection_playbook() -> None:
    for op in runner.OPERATIONS.values():
        assert runner.playbook_path(op.playbook).is_file(), op
    assert runner.OPERATIONS["check"].check and not runner.OPERATIONS["deploy"].check


def test_phases_follow_import_playbook() -> None:
    names = runner.plays(runner.playbook_path("site"))
    assert names[0] == "Read the hosts and check the inventory before any host changes"
    assert names[-1] == "Report the cluster"
    assert "Join the agents" in names and len(names) == 8


@pytest.mark.parametrize(("items", "expected"), [
    (["a=1", "b=x=y"], {"a": "1", "b": "x=y"}),
    (["a=1", "a=2"], {"a": "2"}),
    (["k3s_version="], {"k3s_version": ""}),
    # What ansible-playbook -e takes: several pairs in one string, quoted values, inline YAML/JSON.
    (["a=1 b=2"], {"a": "1", "b": "2"}),
    (["msg='two words' x=\"y z\""], {"msg": "two words", "x": "y z"}),
    (['{"k3s_agent_batch": 2, "cfg": {"disable": ["traefik"]}}'],
     {"k3s_agent_batch": 2, "cfg": {"disable": ["traefik"]}}),
    (["{k3s_upgrade_force: true}"], {"k3s_upgrade_force": True}),
    (["", "a=1"], {"a": "1"}),
])
def test_extravars_as_ansible_reads_them(items: list[str], expected: dict[str, Any]) -> None:
    assert cli.parse_extravars(items) == expected


def test_extravars_from_file(tmp_path: Path) -> None:
    f = tmp_path / "vars.yml"
    f.write_text("k3s_agent_batch: 2\nnested: {a: [1, 2]}\n")
    assert cli.parse_extravars([f"@{f}", "x=y"]) == {"k3s_agent_batch": 2, "nested": {"a": [1, 2]}, "x": "y"}


SECRET = "hunter2-do-not-print"


@pytest.mark.parametrize(("item", "message"), [
    ("novalue", "-e #1: use key=value (several separated by spaces), inline YAML/JSON ({...}) or @file"),
    (f"k3s_token='{SECRET}", "-e #1: unbalanced quotes or Jinja braces in key=value pairs"),
    (f"{{k3s_token: {SECRET}", "-e #1: not valid YAML/JSON at line 1, column"),
    (f"[{SECRET}]", "-e #1: must be a mapping of variables"),
    ("./vars.yml", "-e #1: a file name needs '@' in front of it (-e @./vars.yml)"),
    ("@/nonexistent/vars.yml", "-e @/nonexistent/vars.yml: cannot read it: No such file"),
])
def test_extravars_errors_are_usage_errors_that_never_quote_the_argument(
        item: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(UsageError) as err:
        cli.parse_extravars([item])
    assert str(err.value).startswith(message)
    assert SECRET not in str(err.value)
    # Exit code 2, as the README says for a bad command line.
    assert cli.main(["deploy", "-i", str(ROOT / "inventories/sample/hosts.yml"), "-e", item]) == EXIT_USAGE
    assert SECRET not in capsys.readouterr().err


def test_extravars_file_must_be_a_mapping(tmp_path: Path) -> None:
    f = tmp_path / "list.yml"
    f.write_text("- 1\n")
    with pytest.raises(Pik3sError, match="must be a mapping of variables"):
        cli.parse_extravars([f"@{f}"])


@pytest.mark.parametrize("value", ["-5", "0", "soon"])
def test_timeout_must_be_positive(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["deploy", "-i", "x", "--timeout", value])
    assert exc.value.code == EXIT_USAGE
    assert "--timeout" in capsys.readouterr().err


def test_ask_vault_pass_needs_a_terminal(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    rc = cli.main(["inventory", "validate", "-i", str(ROOT / "inventories/sample/hosts.yml"), "--ask-vault-pass"])
    assert rc == EXIT_USAGE
    assert capsys.readouterr().err == ("pik3s: error: --ask-vault-pass needs a terminal: use --vault-password-file "
                                       "FILE instead\n")


def test_vault_options_reach_ansible_playbook(tmp_path: Path) -> None:
    kw = runner.runner_kwargs(playbook=Path("p.yml"), inventory=Path("i"), private_dir=tmp_path, extravars_file=None,
                              limit=None, verbosity=0, check=True, timeout=None,
                              vault_args=["--vault-id", "prod@/etc/pik3s/vault pass", "--vault-password-file", "/v"])
    assert kw["cmdline"] == "--check --vault-id 'prod@/etc/pik3s/vault pass' --vault-password-file /v"


def test_limit_and_remove_are_checked_before_any_host(capsys: pytest.CaptureFixture[str]) -> None:
    inv = str(ROOT / "inventories/sample/hosts.yml")
    rc = cli.main(["deploy", "-i", inv, "--limit", "pi4-2,pi9-9", "-o", "json"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == EXIT_INVALID and doc["problems"] == ["--limit: 'pi9-9' matches no host of the inventory"]
    rc = cli.main(["remove", "pi4-1", "-i", inv, "-o", "json"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == EXIT_INVALID and doc["problems"] == [
        "pi4-1 is the first server (pik3s runs kubectl there): put another server first in the 'server' group "
        "before removing it"]


def test_an_unreadable_inventory_keeps_the_cause(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = tmp_path / "inventory.sh"
    script.write_text("#!/bin/sh\necho 'cannot reach the CMDB at cmdb.example' >&2\nexit 3\n")
    script.chmod(0o755)
    assert cli.main(["inventory", "validate", "-i", str(script)]) == EXIT_ERROR
    assert "cannot reach the CMDB at cmdb.example" in capsys.readouterr().err


# ---- each operation's own parameters (one place, for the API and the CLI) ---------------------------

def test_operation_arguments() -> None:
    args = api._operation_arguments
    none: dict[str, Any] = {"nodes": None, "version": None, "backup_dir": None, "confirm": False,
                            "revert_prepare": False}
    assert args("add_nodes", extravars={"a": 1}, limit="x", **{**none, "nodes": ["n1", "n2"]}) == \
        {"extravars": {"a": 1}, "limit": ["n1", "n2"], "require_hosts": ["n1", "n2"]}
    assert args("remove_nodes", extravars={"k3s_remove": "other"}, limit=None, **{**none, "nodes": ["n1"]}) == \
        {"extravars": {"k3s_remove": "n1"}, "limit": None, "require_hosts": ["n1"]}
    assert args("remove_nodes", extravars=None, limit=None, **{**none, "nodes": ["n1", "n2"], "force": True}) == \
        {"extravars": {"k3s_remove": "n1,n2", "k3s_remove_force": True}, "limit": None, "require_hosts": ["n1", "n2"]}
    assert args("upgrade", extravars={"k3s_version": "v1.30.8+k3s1"}, limit=None,
                **{**none, "version": "v1.31.4+k3s1"})["extravars"] == {"k3s_version": "v1.31.4+k3s1"}
    assert args("reset", extravars=None, limit=None, **{**none, "confirm": True})["extravars"] == \
        {"k3s_reset_confirm": True, "k3s_reset_revert_prepare": False}


@pytest.mark.parametrize(("operation", "given", "message"), [
    ("deploy", {"nodes": ["n1"]}, "deploy takes no nodes"),
    ("add_nodes", {"nodes": ["n1"], "force": True}, "add_nodes takes no force"),
    ("upgrade", {"confirm": True, "backup_dir": "/b"}, "upgrade takes no backup_dir, confirm"),
    ("remove_nodes", {"nodes": []}, "remove_nodes: name the node(s) to remove (inventory hostnames)"),
    ("add_nodes", {}, "add_nodes: name the node(s) to add (inventory hostnames)"),
    ("restore", {"backup_dir": "/nonexistent/b"}, "k3s_restore /nonexistent/b is not a backup written by backup.yml: "
     "it lacks snapshot, token, nodes.json (for example -e k3s_restore=inventories/prod/.backups/"
     "pik3s-srv1-1700000000)"),
    ("reset", {}, "reset removes K3s and all its data: pass confirm=True (CLI: --yes)"),
])
def test_operation_arguments_refused(operation: str, given: dict[str, Any], message: str) -> None:
    with pytest.raises(Pik3sError) as err:
        api.start(operation, ROOT / "inventories/sample/hosts.yml", **given)
    assert str(err.value) == message


# ---- inventory descriptions ---------------------------------------------------------------------

def test_build_inventory_from_a_description() -> None:
    inv = inventory_mod.build({
        "servers": ["pi4-1"],
        "agents": [{"name": "pi3-1", "host": "10.0.0.13", "user": "ubuntu", "arch": "armv7l"}, "10.0.0.14"],
        "user": "pi", "vars": {"k3s_version": "v1.31.4+k3s1"}})
    assert inv == {"k3s_cluster": {
        "children": {"server": {"hosts": {"pi4-1": None}},
                     "agent": {"hosts": {"pi3-1": {"ansible_host": "10.0.0.13", "ansible_user": "ubuntu",
                                                   "ansible_architecture": "armv7l"},
                                         "10.0.0.14": None}}},
        "vars": {"k3s_version": "v1.31.4+k3s1", "ansible_user": "pi"}}}


@pytest.mark.parametrize(("description", "message"), [
    ({"agents": ["a"]}, "inventory description: servers must list at least one host"),
    ({"servers": ["a"], "agents": ["a"]}, "inventory description: a is listed twice"),
    ({"servers": ["a"], "nodes": []}, "inventory description: unknown key(s) nodes"),
    ({"servers": [{"host": "a", "ip": "1"}]}, "inventory description: servers[0]: unknown key(s) ip"),
    ({"servers": [{"user": "pi"}]}, "inventory description: servers[0]: a host needs a name or host"),
])
def test_bad_descriptions(description: dict[str, Any], message: str) -> None:
    with pytest.raises(Pik3sError) as err:
        inventory_mod.build(description)
    assert str(err.value).startswith(message)


def test_description_written_private_and_validated(tmp_path: Path) -> None:
    path = inventory_mod.write({"servers": ["s1"], "agents": ["a1"], "vars": {"k3s_token": SHORT_TOKEN}},
                               tmp_path / "c")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert inventory_mod.validate(str(path)).ok
    bad = api.start("deploy", {"servers": ["s1", "s2"], "agents": [], "vars": {"k3s_cluster_config": {}}},
                    state_dir=tmp_path / "even")
    assert isinstance(bad, Result) and bad.status == "invalid" and bad.exit_code == EXIT_INVALID
    assert any("odd number" in p for p in bad.problems), bad.problems


# ---- events -> results --------------------------------------------------------------------------

STATS = _ev("playbook_on_stats", 99, ok={"s1": 5, "a1": 3}, changed={"s1": 2}, failures={"a1": 1},
            dark={"a2": 1}, skipped={"s1": 1}, processed={"s1": 1, "a1": 1, "a2": 1},
            artifact_data={"pik3s_cluster": {
                "name": "k3s", "api_endpoint": "https://10.0.0.1:6443", "kubeconfig": "/nonexistent/k3s.yaml",
                "read_from": "s1", "error": "",
                "nodes": [{"name": "s1", "roles": ["control-plane", "master"], "ready": True, "schedulable": True,
                           "version": "v1.31.4+k3s1", "arch": "arm64", "address": "10.0.0.1"}]},
                "pik3s_backup": {"path": "/b/pik3s-s1-1"}})


def _collect(*events: dict[str, Any]) -> tuple[runner._Collector, list[runner.Event]]:
    c = runner._Collector()
    out = [e for e in (c.feed(ev) for ev in events) if e is not None]
    return c, out


def test_events_fold_into_stats_failures_changes() -> None:
    c, evs = _collect(
        _ev("playbook_on_play_start", 1, play="Prepare the hosts"),
        _ev("playbook_on_task_start", 2, task="Install"),
        _ev("runner_on_ok", 3, host="s1", task="Install", res={"changed": True}),
        _ev("runner_on_ok", 4, host="s1", task="Install", res={"changed": True}),
        _ev("runner_on_ok", 5, host="a1", task="Install", res={"changed": False}),
        _ev("runner_on_failed", 6, host="a1", task="Start", res={"msg": "unit failed", "rc": 1}),
        _ev("runner_on_failed", 7, host="s1", task="Probe", ignore_errors=True, res={"msg": "fine"}),
        _ev("runner_on_unreachable", 8, host="a2", task="Gather", res={"msg": "ssh: connect: refused"}),
        _ev("runner_on_failed", 9, host="a1", task="Secret", res={"censored": "the output has been hidden"}),
        STATS)
    assert [e.kind for e in evs] == ["play", "task", "changed", "changed", "ok", "failed", "ok", "unreachable",
                                     "failed", "stats"]
    assert evs[2].phase == 1 and evs[2].play == "Prepare the hosts"
    assert c.changes == {"s1": ["Install"]}
    assert c.failures == [Failure("a1", "Start", "unit failed"),
                          Failure("a2", "Gather", "ssh: connect: refused", unreachable=True),
                          Failure("a1", "Secret", "the output has been hidden")]
    assert c.stats["s1"] == HostStats(ok=5, changed=2, skipped=1)
    assert c.stats["a2"] == HostStats(unreachable=1)
    assert c.artifact_data["pik3s_backup"] == {"path": "/b/pik3s-s1-1"}


@pytest.mark.parametrize(("res", "message"), [
    ({"msg": " boom \n"}, "boom"),
    ({"rc": 3, "stderr": "no such unit", "stdout": ""}, "rc 3; no such unit"),
    ({}, "failed (no message)"),
])
def test_failure_message(res: dict[str, Any], message: str) -> None:
    assert runner._message(res) == message


def _finished(events: list[dict[str, Any]], status: str, rc: int | None, op: str = "deploy") -> Result:
    run = runner.Run(runner.OPERATIONS[op], Path("/inv"), masker=Masker())
    for ev in events:
        run._on_event(ev)
    run._finish(status, rc)
    return run.result


@pytest.mark.parametrize(("events", "status", "rc", "expected", "code"), [
    ([STATS], "successful", 0, "successful", EXIT_OK),
    ([_ev("runner_on_failed", host="a", task="t", res={"msg": "x"})], "failed", 2, "failed", EXIT_HOST_FAILED),
    ([_ev("runner_on_unreachable", host="a", task="t", res={"msg": "x"})], "failed", 4, "unreachable",
     EXIT_UNREACHABLE),
    ([_ev("runner_on_unreachable", host="a", task="t", res={"msg": "x"}),
      _ev("runner_on_failed", host="b", task="t", res={"msg": "y"})], "failed", 2, "failed", EXIT_HOST_FAILED),
    ([], "canceled", 254, "canceled", EXIT_CANCELLED),
    ([], "timeout", 254, "canceled", EXIT_CANCELLED),
    ([_ev("verbose", stdout="ERROR! the playbook: x could not be found")], "failed", 1, "error", EXIT_ERROR),
])
def test_status_and_exit_code(events: list[dict[str, Any]], status: str, rc: int, expected: str,
                              code: int) -> None:
    result = _finished(events, status, rc)
    assert (result.status, result.exit_code) == (expected, code)
    jsonschema.validate(result.to_dict(), SCHEMA)


def test_error_result_says_what_ansible_said() -> None:
    result = _finished([_ev("verbose", stdout="ERROR! the playbook: x could not be found")], "failed", 1)
    assert result.error == "ERROR! the playbook: x could not be found"


def test_cluster_facts_are_typed_and_schema_valid() -> None:
    result = _finished([STATS], "successful", 0)
    assert result.cluster == ClusterFacts(
        name="k3s", api_endpoint="https://10.0.0.1:6443", kubeconfig="/nonexistent/k3s.yaml",
        kubeconfig_exists=False, read_from="s1", error="",
        nodes=[runner.ClusterFacts.from_stats(STATS["event_data"]["artifact_data"]["pik3s_cluster"]).nodes[0]])
    assert result.cluster.nodes[0].roles == ["control-plane", "master"]
    assert result.data == {"pik3s_backup": {"path": "/b/pik3s-s1-1"}}
    doc = result.to_dict()
    jsonschema.validate(doc, SCHEMA)
    assert doc["exit_code"] == 0 and doc["schema_version"] == 1
    invalid = Result("deploy", "site", "inv", status="invalid", problems=["x"])
    jsonschema.validate(invalid.to_dict(), SCHEMA)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**doc, "status": "fine"}, SCHEMA)


# ---- masking ------------------------------------------------------------------------------------

def test_secret_values_found_by_name() -> None:
    found = secret_values({"k3s_token": TOKEN, "all": {"vars": {"db_password": "hunter2-long"}},
                           "ansible_ssh_private_key_file": "/home/pi/.ssh/id", "short_secret": "abc",
                           "k3s_token_tpl": "{{ lookup('env', 'T') }}", "k3s_version": "v1.31.4+k3s1"})
    # Whatever its length: a short secret is masked too (length never decides what is a secret).
    assert found == {TOKEN, "Sup3rS3cretPassw0rd", "hunter2-long", "abc"}


def test_masker_masks_values_tokens_and_keys_everywhere() -> None:
    m = Masker({SHORT_TOKEN})
    generated = "K10" + "cd" * 32 + "::server:" + "f" * 32  # a token nobody told pik3s about
    event = {"stdout": f"token={SHORT_TOKEN} joined with {generated}",
             "event_data": {"res": {"cmd": ["k3s", "--token", SHORT_TOKEN],
                                    "content": "-----BEGIN EC PRIVATE KEY-----\nMHcC\n-----END EC PRIVATE KEY-----",
                                    "kubeconfig": "client-key-data: LS0tLS1CRUdJTiBFQyBQUklWQVRF"},
                            SHORT_TOKEN: "as a key too"}}
    m.in_place(event)
    text = json.dumps(event)
    for secret in (SHORT_TOKEN, "f" * 32, "MHcC", "LS0tLS1CRUdJTiBFQyBQUklWQVRF"):
        assert secret not in text
    assert "K10cdcdcdcd...::server:********" in text and f"client-key-data: {MASK}" in text


# ---- progress -----------------------------------------------------------------------------------

def _events(*specs: tuple[str, int, str, str]) -> list[runner.Event]:
    return [runner.Event(kind, phase, f"play {phase}", task, host) for kind, phase, task, host in specs]


def test_progress_tracks_each_host() -> None:
    p = Progress(["a", "b", "c"], ["s1", "a1"])
    for ev in _events(("play", 1, "", ""), ("start", 1, "t1", "s1"), ("changed", 1, "t1", "s1"),
                      ("ok", 1, "t1", "a1"), ("play", 2, "", ""), ("start", 2, "t2", "s1"),
                      ("unreachable", 2, "t2", "a1"), ("ok", 2, "t3", "a1")):
        p.feed(ev)
    assert p.phase == 2 and p.total == 3
    s1 = p.hosts["s1"]
    assert (s1.phase, s1.task, s1.changed, s1.state) == (2, "t2", 1, "running")
    assert (p.hosts["a1"].state, p.hosts["a1"].task, p.hosts["a1"].failed) == ("unreachable", "t2", 1)


def test_line_view_prints_plays_changes_failures_only() -> None:
    out = io.StringIO()
    view = LineView(Progress(["p1", "p2"]), out)
    for ev in _events(("play", 1, "", ""), ("ok", 1, "quiet", "s1"), ("changed", 1, "Install", "s1")):
        view.feed(ev)
    view.feed(runner.Event("failed", 1, "play 1", "Start", "a1", "unit failed"))
    lines = [line.split("] ", 1)[1] for line in out.getvalue().splitlines()]
    assert lines == ["phase 1/2: play 1", "s1: changed: Install", "a1: FAILED: Start: unit failed"]


def test_line_view_verbose_adds_ansible_output_and_debug_messages() -> None:
    out = io.StringIO()
    view = LineView(Progress(["p1"]), out, verbose=True)
    view.feed(runner.Event("output", 0, "", message="<10.0.0.1> ESTABLISH SSH CONNECTION FOR USER: pi"))
    view.feed(runner.Event("ok", 1, "p1", "Say where the backup is", "s1", "backup /b/pik3s-s1-1"))
    view.feed(runner.Event("ok", 1, "p1", "quiet", "s1"))
    lines = out.getvalue().splitlines()
    assert lines[0] == "<10.0.0.1> ESTABLISH SSH CONNECTION FOR USER: pi"
    assert lines[1].endswith("] s1: Say where the backup is: backup /b/pik3s-s1-1") and len(lines) == 2
    quiet = io.StringIO()
    LineView(Progress(["p1"]), quiet).feed(runner.Event("output", 0, "", message="noise"))
    assert quiet.getvalue() == ""


def test_tty_view_draws_a_bar_per_host_and_redraws_in_place() -> None:
    out = io.StringIO()
    view = TtyView(Progress(["p1", "p2", "p3", "p4"], ["srv", "agent-1"]), "deploy K3s", out, width=120)
    for ev in _events(("play", 1, "", ""), ("start", 1, "Prepare", "srv"), ("play", 2, "", ""),
                      ("start", 2, "Install the K3s binary", "srv")):
        view.feed(ev)
    lines = view.lines()
    assert lines[0].startswith("pik3s deploy K3s · ") and "phase 2/4 ██████░░░░░░ play 2" in lines[0]
    assert lines[1].split() == ["srv", "██████░░░░░░", "2/4", "ok", "0", "changed", "0", "Install", "the", "K3s",
                                "binary"]
    assert "░" * 12 in lines[2] and "0/4" in lines[2]
    assert "\x1b[3F" in out.getvalue()  # moved back up over the 3 lines drawn before


@pytest.mark.parametrize(("names", "expected"), [
    (["pi-003", "pi-001", "pi-002", "srv"], "pi-001..pi-003, srv"),
    (["pi-1", "pi-2", "pi-4"], "pi-1, pi-2, pi-4"),
    (["a1", "a2", "a3", "b7", "a01"], "a1..a3, a01, b7"),
    ([], ""),
])
def test_host_names_are_compressed(names: list[str], expected: str) -> None:
    assert compress(names) == expected


def test_tty_view_of_50_hosts_fits_a_24_line_terminal() -> None:
    phases = ["Check", "Release", "Prepare", "First server", "Other servers", "Agents", "Report"]
    hosts = ["srv-1", "srv-2", "srv-3"] + [f"pi-{i:03d}" for i in range(1, 48)]
    out = io.StringIO()
    view = TtyView(Progress(phases, hosts), "deploy K3s", out, width=100, height=24)
    evs: list[tuple[str, int, str, str]] = [("play", 1, "", "")]
    evs += [("ok", 1, "Check the inventory", h) for h in hosts]
    evs += [("play", 3, "", "")] + [("ok", 3, "Write the files", h) for h in hosts]
    evs += [("play", 6, "", "")]
    evs += [("start", 6, "Write the files", h) for h in hosts[3:40]]
    evs += [("ok", 6, "Start K3s", h) for h in hosts[40:]]
    evs += [("start", 6, "Start K3s", h) for h in hosts[40:]]
    evs += [("unreachable", 6, "Write the files", "pi-013"), ("failed", 6, "Start K3s", "pi-045")]
    for ev in _events(*evs):
        view.feed(ev)
    lines = view.lines()
    assert len(lines) <= 23 and all(len(line) <= 100 for line in lines)
    assert "phase 6/7" in lines[0]
    text = "\n".join(lines)
    assert "  1/7 ██████████ 50/50 done" in text and " Check" in lines[1]
    assert "  3/7 ██████████ 50/50 done" in text
    assert "  6/7 ░░░░░░░░░░ 0/47 done, 45 working, 2 FAILED" in lines[6]  # the servers are not in it
    assert "  working (36) Write the files: pi-001..pi-012, pi-014..pi-037" in text
    assert "  working (9) Start K3s: pi-038..pi-044, pi-046, pi-047" in text  # pi-045 failed: not working
    assert "  UNREACHABLE pi-013: Write the files" in text and "  FAILED pi-045: Start K3s" in text
    # A few hosts keep one line each.
    small = TtyView(Progress(phases, hosts[:5]), "deploy K3s", io.StringIO(), width=100, height=24)
    assert len(small.lines()) == 6


def test_summary_of_a_check_and_a_failure() -> None:
    r = Result("check", "site", "inv", status="failed", rc=2, check=True,
               hosts={"s1": HostStats(ok=3, changed=1), "a1": HostStats(failed=1)},
               changes={"s1": ["Write config"]}, failures=[Failure("a1", "Start", "unit failed\nline 2")])
    text = summary(r)
    assert "would change:\n  s1: Write config" in text
    assert "a1 failed: Start\n  unit failed\n  line 2" in text
    assert text.endswith("pik3s check: FAILED (0s, exit 5)")


# ---- real runs (local connection, a test playbook) ------------------------------------------------

PLAYBOOK = """
- hosts: all
  gather_facts: false
  tasks:
    - name: Say the secret (what a careless role might do)
      ansible.builtin.debug:
        msg: "token is {{ k3s_token }} and {{ generated }}"
    - name: Change something
      ansible.builtin.command: "true"
      changed_when: true
    - name: Wait, if asked
      ansible.builtin.wait_for:
        timeout: "{{ wait | default(0) | int }}"
      when: wait is defined
    - name: Fail on b
      ansible.builtin.fail:
        msg: "b fails, token {{ k3s_token }}"
      when: inventory_hostname == 'b'
    - name: Report
      ansible.builtin.set_stats:
        data: {seen: "{{ k3s_token }}"}
      run_once: true
"""
GENERATED = "K10" + "12" * 32 + "::server:" + "9" * 32


@pytest.fixture
def local_play(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    play = tmp_path / "play.yml"
    play.write_text(PLAYBOOK)
    inv = tmp_path / "hosts.yml"
    inv.write_text("k3s_cluster:\n  children:\n    server:\n      hosts: {a: {ansible_connection: local}}\n"
                   "    agent:\n      hosts: {b: {ansible_connection: local}}\n"
                   "  vars: {ansible_python_interpreter: '{{ ansible_playbook_python }}'}\n")
    monkeypatch.setitem(runner.OPERATIONS, "deploy", runner.Operation("deploy", str(play), "test"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where private data dirs go: look for leftovers
    return inv, tmp_path


def test_real_run_masks_secrets_and_cleans_up(local_play: tuple[Path, Path]) -> None:
    inv, tmp = local_play
    seen: list[runner.Event] = []
    private: list[str] = []
    stored: list[str] = []

    def on_event(ev: runner.Event) -> None:
        seen.append(ev)
        private.extend(str(p) for p in tmp.glob("pik3s-run-*"))
        stored.extend(str(p) for p in tmp.glob("pik3s-run-*/**/*") if p.is_file()
                      and "-partial.json" not in p.name)  # the callback's hand-over files

    run = api.start("deploy", inv, extravars={"k3s_token": SHORT_TOKEN, "generated": GENERATED},
                    verbosity=3, on_event=on_event)
    assert isinstance(run, runner.Run)
    assert run.private_dir is not None and stat.S_IMODE(run.private_dir.stat().st_mode) == 0o700
    result = run.wait(120)
    assert result.status == "failed" and result.exit_code == EXIT_HOST_FAILED
    assert result.failures == [Failure("b", "Fail on b", f"b fails, token {MASK}")]
    assert result.hosts["a"].changed == 1 and result.hosts["b"].failed == 1
    assert result.changes == {"a": ["Change something"], "b": ["Change something"]}
    assert result.data == {"seen": MASK}
    blob = json.dumps([e.to_dict() for e in seen]) + json.dumps(result.to_dict())
    assert SHORT_TOKEN not in blob and "9" * 32 not in blob and f"token is {MASK}" in blob
    assert private, "the private data dir existed during the run"
    assert {Path(p).name for p in stored} <= {"extravars.json", "settings", "command"}, stored  # no events
    assert not any(SHORT_TOKEN in Path(p).read_text() for p in stored if Path(p).name != "extravars.json"
                   and Path(p).exists())
    assert not list(tmp.glob("pik3s-run-*")), "the private data dir (artifacts, extravars) is removed"
    jsonschema.validate(result.to_dict(), SCHEMA)


def test_real_run_can_be_cancelled(local_play: tuple[Path, Path]) -> None:
    inv, tmp = local_play
    run = api.start("deploy", inv, extravars={"k3s_token": SHORT_TOKEN, "generated": "x", "wait": 60})
    assert isinstance(run, runner.Run)
    started = time.monotonic()
    for ev in run.events():
        if ev.kind == "task" and ev.task == "Wait, if asked":
            run.cancel()
    result = run.wait(60)
    assert result.status == "canceled" and result.exit_code == EXIT_CANCELLED
    assert time.monotonic() - started < 40
    assert not list(tmp.glob("pik3s-run-*"))


# ---- CLI ----------------------------------------------------------------------------------------

def test_cli_invalid_inventory_exit_4_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inv = tmp_path / "hosts.yml"
    inv.write_text("k3s_cluster:\n  children:\n    server:\n      hosts: {s1: {ansible_host: 192.0.2.1}, "
                   "s2: {ansible_host: 192.0.2.2}}\n  vars: {k3s_token: 'K10abc::server:x'}\n")
    rc = cli.main(["deploy", "-i", str(inv), "--output", "json"])
    doc = json.loads(capsys.readouterr().out)
    jsonschema.validate(doc, SCHEMA)
    assert rc == EXIT_INVALID == doc["exit_code"] and doc["status"] == "invalid" and doc["rc"] is None
    assert "K10abc" not in json.dumps(doc)
    assert any("odd number" in p for p in doc["problems"])


def test_cli_reset_needs_yes_without_a_terminal(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    rc = cli.main(["reset", "-i", str(ROOT / "inventories/sample/hosts.yml")])
    assert rc == EXIT_ERROR
    assert capsys.readouterr().err == ("pik3s: error: reset removes K3s and ALL its data from the hosts: pass "
                                       "--yes to run it without a terminal; nothing was changed\n")


def test_cli_unknown_node_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    rc = cli.main(["add", "nope", "-i", str(ROOT / "inventories/sample/hosts.yml")])
    err = capsys.readouterr().err
    assert rc == EXIT_ERROR and err.startswith("pik3s: error: not in the inventory's k3s_cluster group: nope (it has")
    assert "Traceback" not in err


def test_cli_unexpected_error_has_no_traceback_unless_verbose(monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    def boom(*_a: Any, **_k: Any) -> None:
        raise RuntimeError("disk on fire")
    monkeypatch.setattr(api, "start", boom)
    assert cli.main(["deploy", "-i", "x"]) == EXIT_ERROR
    assert capsys.readouterr().err == "pik3s: error: RuntimeError: disk on fire (run with -v for the traceback)\n"
    with pytest.raises(RuntimeError):
        cli.main(["deploy", "-i", "x", "-v"])


def test_cli_jsonl_streams_events_then_the_result(local_play: tuple[Path, Path],
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    inv = local_play[0]
    rc = cli.main(["deploy", "-i", str(inv), "-o", "jsonl", "-e", f"k3s_token={SHORT_TOKEN}", "-e", "generated=g",
                   "--limit", "a"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rc == EXIT_OK
    assert lines[-1]["type"] == "result" and lines[-1]["limit"] == "a" and set(lines[-1]["hosts"]) == {"a"}
    assert {"play", "task", "changed", "stats"} <= {ev["kind"] for ev in lines[:-1]}
    assert SHORT_TOKEN not in json.dumps(lines)
    jsonschema.validate(lines[-1], SCHEMA)


def test_ssh_retries_and_keepalives_unless_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A dropped connection is tried again (runner.SSH_RETRIES) and a vanished host is noticed by
    keepalives (runner.SSH_ARGS), unless the environment or the ansible.cfg the run uses says otherwise."""
    cfg = tmp_path / "ansible.cfg"
    cfg.write_text("[defaults]\nforks = 5\n")
    monkeypatch.setenv("ANSIBLE_CONFIG", str(cfg))
    monkeypatch.delenv("ANSIBLE_SSH_RETRIES", raising=False)
    monkeypatch.delenv("ANSIBLE_SSH_ARGS", raising=False)
    assert runner._ansible_env()["ANSIBLE_SSH_RETRIES"] == "3" == str(runner.SSH_RETRIES)
    assert "-o ServerAliveInterval=10 -o ServerAliveCountMax=3" in runner._ansible_env()["ANSIBLE_SSH_ARGS"]
    cfg.write_text("[ssh_connection]\nretries = 0\nssh_args = -o ControlMaster=no\n")
    assert "ANSIBLE_SSH_RETRIES" not in runner._ansible_env() and "ANSIBLE_SSH_ARGS" not in runner._ansible_env()
    cfg.write_text("[connection]\nretries = 1\n")
    assert "ANSIBLE_SSH_RETRIES" not in runner._ansible_env()
    cfg.write_text("[defaults]\n")
    monkeypatch.setenv("ANSIBLE_SSH_RETRIES", "5")
    assert "ANSIBLE_SSH_RETRIES" not in runner._ansible_env()  # the caller's, inherited as it is


@pytest.mark.parametrize(("hosts", "cores", "forks"), [
    (50, 2, 5),     # Ansible's own 5 on the 2-core machine bench-scale measured
    (50, 1, 5),     # never fewer than 5
    (50, 4, 10), (50, 8, 20),
    (3, 8, 3),      # never more workers than hosts
    (500, 64, 50),  # at most 50
    (0, 2, 1),
])
def test_forks_from_the_host_count_and_the_cores(hosts: int, cores: int, forks: int) -> None:
    assert runner.default_forks(hosts, cores) == forks


FORKS_PLAYBOOK = """
- hosts: all
  gather_facts: false
  tasks:
    - name: Report the forks
      ansible.builtin.set_stats:
        data: {forks: "{{ ansible_forks }}"}
      run_once: true
"""


@pytest.mark.parametrize(("cores", "env", "cfg", "forks"), [
    (4, None, None, 10),     # 2.5 per core, 12 hosts
    (2, None, None, 5),
    (8, None, None, 12),     # no more than the hosts
    (8, "3", None, 3),       # ANSIBLE_FORKS wins
    (8, None, "7", 7),       # so does the ansible.cfg in use
])
def test_the_forks_reach_ansible_playbook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cores: int,
                                          env: str | None, cfg: str | None, forks: int) -> None:
    play = tmp_path / "play.yml"
    play.write_text(FORKS_PLAYBOOK)
    inv = tmp_path / "hosts.yml"
    inv.write_text("k3s_cluster:\n  children:\n    server:\n      hosts: {s: {ansible_connection: local}}\n"
                   "    agent:\n      hosts: {" + ", ".join(f"a{i}: {{ansible_connection: local}}" for i in range(11))
                   + "}\n  vars: {ansible_python_interpreter: '{{ ansible_playbook_python }}'}\n")
    monkeypatch.setitem(runner.OPERATIONS, "deploy", runner.Operation("deploy", str(play), "test"))
    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    monkeypatch.delenv("ANSIBLE_FORKS", raising=False)
    if env:
        monkeypatch.setenv("ANSIBLE_FORKS", env)
    ansible_cfg = tmp_path / "ansible.cfg"
    ansible_cfg.write_text(f"[defaults]\nforks = {cfg}\n" if cfg else "[defaults]\n")
    monkeypatch.setenv("ANSIBLE_CONFIG", str(ansible_cfg))
    run = api.start("deploy", inv)
    assert isinstance(run, runner.Run)
    result = run.wait(120)
    assert result.status == "successful", result.to_dict()
    assert result.data == {"forks": forks}
