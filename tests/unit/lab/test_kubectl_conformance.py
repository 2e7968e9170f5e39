"""The simulator's kubectl against kubectl's documented behaviour, form by form.

Every expected value here is written from kubectl's documentation and reference
outputs (the kubectl Quick Reference, the JSONPath Support page, the label
selector grammar of k8s.io/apimachinery, `kubectl get --help`), never from what
the simulator prints. The nodes are fixed objects: srv (a Ready server) and
agt1 (a cordoned agent that stopped posting its status).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from pik3s_lab import mirror
from pik3s_lab.simulator import common as sim_common
from pik3s_lab.simulator import kubectl as sim_kubectl
from pik3s_lab.simulator import main as sim_main
from pik3s_lab.simulator import nodes as sim_nodes

NOW = 1_790_000_000.0


def _node(name: str, ip: str, labels: dict[str, str], *, age: int, ready: bool,
          cordoned: bool = False) -> dict[str, Any]:
    rec = {"name": name, "ip": ip, "labels": labels, "created": NOW - age,
           "last_seen": NOW if ready else NOW - 600, "unschedulable": cordoned,
           "version": "v1.30.8+k3s1", "arch": labels["kubernetes.io/arch"],
           "os_image": "Debian GNU/Linux 12 (bookworm)", "kernel": "6.6.51+rpt-rpi-v8"}
    return sim_nodes.node_object(rec, now=NOW)


AGT1 = _node("agt1", "10.0.0.11", {"kubernetes.io/arch": "arm", "kubernetes.io/hostname": "agt1", "tier": "edge"},
             age=90, ready=False, cordoned=True)
SRV = _node("srv", "10.0.0.10", {"kubernetes.io/arch": "arm64", "kubernetes.io/hostname": "srv",
                                 "node-role.kubernetes.io/control-plane": "true",
                                 "node-role.kubernetes.io/master": "true"},
            age=3725, ready=True)
ITEMS = [AGT1, SRV]
LIST = sim_kubectl.node_list(ITEMS)


# --- flag parsing: every spelling pflag accepts means the same thing

@pytest.mark.parametrize("argv", [
    ["get", "nodes", "-o=jsonpath={.items[0].metadata.name}"],
    ["get", "nodes", "-ojsonpath={.items[0].metadata.name}"],
    ["get", "nodes", "-o", "jsonpath={.items[0].metadata.name}"],
    ["get", "nodes", "--output=jsonpath={.items[0].metadata.name}"],
    ["get", "nodes", "--output", "jsonpath={.items[0].metadata.name}"],
    ["-o", "jsonpath={.items[0].metadata.name}", "get", "nodes"],
])
def test_output_flag_spellings(argv: list[str]) -> None:
    verb, args, flags = sim_kubectl.parse_kubectl_args(argv)
    assert (verb, args, flags["output"]) == ("get", ["nodes"], "jsonpath={.items[0].metadata.name}")


@pytest.mark.parametrize(("argv", "flags"), [
    (["get", "nodes", "-l", "tier=edge"], {"selector": "tier=edge"}),
    (["get", "nodes", "--selector=tier=edge"], {"selector": "tier=edge"}),
    (["get", "nodes", "-ltier=edge"], {"selector": "tier=edge"}),
    (["get", "nodes", "--show-labels", "--no-headers"], {"show-labels": "true", "no-headers": "true"}),
    (["get", "nodes", "--show-labels=false"], {"show-labels": "false"}),
    (["get", "nodes", "-A"], {"all-namespaces": "true"}),
    (["get", "nodes", "-n", "kube-system"], {"namespace": "kube-system"}),
    (["--kubeconfig", "/k.yaml", "get", "nodes"], {"kubeconfig": "/k.yaml"}),
    (["get", "--", "nodes"], {}),
])
def test_flags(argv: list[str], flags: dict[str, str]) -> None:
    assert sim_kubectl.parse_kubectl_args(argv)[2] == flags


@pytest.mark.parametrize(("argv", "message"), [
    (["get", "nodes", "--bogus"], "error: unknown flag: --bogus\nSee 'kubectl get --help' for usage."),
    (["get", "nodes", "-z"], "error: unknown shorthand flag: 'z' in -z\nSee 'kubectl get --help' for usage."),
    (["cordon", "srv", "--show-labels"],
     "error: unknown flag: --show-labels\nSee 'kubectl cordon --help' for usage."),
    (["cordon", "srv", "-o", "json"],
     "error: unknown shorthand flag: 'o' in -o\nSee 'kubectl cordon --help' for usage."),
    (["get", "nodes", "-o"], "error: flag needs an argument: 'o' in -o"),
    (["get", "nodes", "--output"], "error: flag needs an argument: --output"),
    (["get", "nodes", "--show-labels=maybe"],
     'error: invalid argument "maybe" for "--show-labels" flag: strconv.ParseBool: parsing "maybe": invalid syntax'),
])
def test_flag_errors(argv: list[str], message: str) -> None:
    with pytest.raises(sim_kubectl.KubectlError) as err:
        sim_kubectl.parse_kubectl_args(argv)
    assert str(err.value) == message


def _run(argv: list[str]) -> tuple[int, str, str]:
    class Buf:
        def __init__(self) -> None:
            self.text = ""

        def write(self, s: str) -> None:
            self.text += s

    out, err = Buf(), Buf()
    rc = sim_kubectl.kubectl(argv, out, err)
    return rc, out.text, err.text


def test_a_verb_kubectl_has_but_the_simulator_lacks_is_an_unknown_command_before_its_flags() -> None:
    rc, out, err = _run(["patch", "--type", "merge", "node/x"])
    assert (rc, out) == (1, "")
    assert err.splitlines() == ['error: unknown command "patch" for "kubectl"',
                                f"({sim_common.SIM_NAME}: kubectl patch is not simulated)"]


def test_unknown_command_is_kubectls_error_and_names_the_simulator() -> None:
    rc, out, err = _run(["rollout", "status", "deploy/x"])
    assert (rc, out) == (1, "")
    assert err.splitlines()[0] == 'error: unknown command "rollout" for "kubectl"'
    assert sim_common.SIM_NAME in err.splitlines()[1]


def test_unknown_resource_type() -> None:
    rc, _out, err = _run(["--kubeconfig", "/nonexistent", "get", "pods"])
    # The kubeconfig named does not exist: kubectl reads it before anything else.
    assert rc == 1 and err == "error: stat /nonexistent: no such file or directory\n"
    with pytest.raises(sim_kubectl.KubectlError) as exc:
        sim_kubectl._node_args(["pods"])
    assert str(exc.value).splitlines()[0] == 'error: the server doesn\'t have a resource type "pods"'


@pytest.mark.parametrize(("args", "names"), [
    (["nodes"], []), (["node"], []), (["no"], []),
    (["nodes", "a", "b"], ["a", "b"]), (["node/a"], ["a"]), (["node/a", "nodes/b"], ["a", "b"]),
])
def test_resource_arguments(args: list[str], names: list[str]) -> None:
    assert sim_kubectl._node_args(args) == names


# --- tables

def test_default_table() -> None:
    assert sim_kubectl.render_nodes(ITEMS, None, single=False, now=NOW) == (
        "NAME   STATUS                        ROLES                  AGE   VERSION\n"
        "agt1   NotReady,SchedulingDisabled   <none>                 90s   v1.30.8+k3s1\n"
        "srv    Ready                         control-plane,master   62m   v1.30.8+k3s1\n")


def test_show_labels_and_no_headers() -> None:
    text = sim_kubectl.render_nodes(ITEMS, None, single=False, show_labels=True, headers=False, now=NOW)
    assert text == (
        "agt1   NotReady,SchedulingDisabled   <none>                 90s   v1.30.8+k3s1   "
        "kubernetes.io/arch=arm,kubernetes.io/hostname=agt1,tier=edge\n"
        "srv    Ready                         control-plane,master   62m   v1.30.8+k3s1   "
        "kubernetes.io/arch=arm64,kubernetes.io/hostname=srv,node-role.kubernetes.io/control-plane=true,"
        "node-role.kubernetes.io/master=true\n")


def test_wide_table() -> None:
    lines = sim_kubectl.render_nodes([SRV], "wide", single=True, now=NOW).splitlines()
    assert lines[0].split() == ["NAME", "STATUS", "ROLES", "AGE", "VERSION", "INTERNAL-IP", "EXTERNAL-IP",
                                "OS-IMAGE", "KERNEL-VERSION", "CONTAINER-RUNTIME"]
    assert re.split(r" {3,}", lines[1]) == ["srv", "Ready", "control-plane,master", "62m", "v1.30.8+k3s1", "10.0.0.10",
                                    "<none>", "Debian GNU/Linux 12 (bookworm)", "6.6.51+rpt-rpi-v8",
                                    "containerd://1.7.23-k3s2"]


def test_name_output() -> None:
    assert sim_kubectl.render_nodes(ITEMS, "name", single=False) == "node/agt1\nnode/srv\n"


def test_custom_columns() -> None:
    text = sim_kubectl.render_nodes(ITEMS, "custom-columns=NAME:.metadata.name,ARCH:{.status.nodeInfo.architecture},"
                                   "TAINTS:.spec.taints[*].key,EXT:.status.nothere", single=False)
    taints = "node.kubernetes.io/unschedulable,node.kubernetes.io/unreachable"  # 63 characters
    assert text == (f"NAME   ARCH    {'TAINTS':63}   EXT\n"
                    f"agt1   arm     {taints}   <none>\n"
                    f"srv    arm64   {'<none>':63}   <none>\n")


@pytest.mark.parametrize(("secs", "age"), [
    (0, "0s"), (119, "119s"), (120, "2m"), (125, "2m5s"), (599, "9m59s"), (600, "10m"), (3725, "62m"),
    (10799, "179m"), (10800, "3h"), (11100, "3h5m"), (28800, "8h"), (172799, "47h"), (172800, "2d"),
    (180000, "2d2h"), (691200, "8d"), (63072000, "2y"), (63158400, "2y1d"), (252288000, "8y"),
])
def test_age_column(secs: int, age: str) -> None:
    assert sim_nodes.human_duration(secs) == age


# --- json and yaml

def test_json_of_one_named_node_is_the_object_and_of_several_a_list() -> None:
    one = json.loads(sim_kubectl.render_nodes([SRV], "json", single=True))
    assert one["kind"] == "Node" and one["metadata"]["name"] == "srv"
    many = sim_kubectl.render_nodes(ITEMS, "json", single=False)
    assert json.loads(many) == {"apiVersion": "v1", "items": ITEMS, "kind": "List",
                                "metadata": {"resourceVersion": ""}}
    assert many.startswith('{\n    "apiVersion": "v1",\n    "items": [\n')  # four spaces, keys sorted


def test_json_escapes_as_go_does() -> None:
    assert sim_kubectl.go_json({"b": "<a&b>", "a": 1}) == '{"a":1,"b":"\\u003ca\\u0026b\\u003e"}'


def test_yaml_reads_back_as_the_json() -> None:
    text = sim_kubectl.render_nodes(ITEMS, "yaml", single=False)
    assert yaml.safe_load(text) == json.loads(sim_kubectl.render_nodes(ITEMS, "json", single=False))
    assert text.startswith("apiVersion: v1\nitems:\n- apiVersion: v1\n")
    assert 'creationTimestamp: "' in text  # a timestamp stays a string


# --- jsonpath (kubectl's JSONPath Support page)

@pytest.mark.parametrize(("template", "text"), [
    ("{.items[*].metadata.name}", "agt1 srv"),
    ("{.items[0].metadata.name}", "agt1"),
    ("{.items[-1].metadata.name}", "srv"),
    ("{.items[0:1].metadata.name}", "agt1"),
    ("{.items[*]['metadata']['name']}", "agt1 srv"),
    ("{.kind}", "List"),
    ("{$.kind}", "List"),
    ("names: {.items[*].metadata.name}.", "names: agt1 srv."),
    ('{range .items[*]}{.metadata.name}{"\\t"}{.status.conditions[?(@.type=="Ready")].status}{"\\n"}{end}',
     "agt1\tUnknown\nsrv\tTrue\n"),
    ('{range .items[*]}[{.metadata.name}]{end}', "[agt1][srv]"),
    ("{.items[0].metadata.labels}", '{"kubernetes.io/arch":"arm","kubernetes.io/hostname":"agt1","tier":"edge"}'),
    ("{.items[*].metadata.labels.kubernetes\\.io/arch}", "arm arm64"),
    ("{.items[?(@.spec.unschedulable==true)].metadata.name}", "agt1"),
    ('{.items[?(@.metadata.name!="agt1")].metadata.name}', "srv"),
    ("{.items[?(@.metadata.labels.tier)].metadata.name}", "agt1"),
    ('{.items[*].status.addresses[?(@.type=="InternalIP")].address}', "10.0.0.11 10.0.0.10"),
    ("{.items[1].spec.unschedulable}", "false"),
    ("{.items[0].spec.taints[*].effect}", "NoSchedule NoSchedule"),
    ("{..kubeletVersion}", "v1.30.8+k3s1 v1.30.8+k3s1"),
    ("{.items[0].metadata.nothere}", ""),
    ("{.items[5].metadata.name}", ""),
    ("no braces", "no braces"),
])
def test_jsonpath_on_a_list(template: str, text: str) -> None:
    assert sim_kubectl.render_nodes(ITEMS, f"jsonpath={template}", single=False) == text  # no newline added


def test_jsonpath_on_one_named_node() -> None:
    assert sim_kubectl.render_nodes([SRV], "jsonpath={.spec.unschedulable}", single=True) == "false"
    assert sim_kubectl.render_nodes([SRV], "jsonpath={.status.nodeInfo.kubeletVersion}", single=True) == "v1.30.8+k3s1"


def test_jsonpath_as_json() -> None:
    text = sim_kubectl.render_nodes(ITEMS, "jsonpath-as-json={.items[*].metadata.name}", single=False)
    assert text == '[\n    "agt1",\n    "srv"\n]\n'


@pytest.mark.parametrize(("output", "message"), [
    ("jsonpath", "error: template format specified but no template given"),
    ("jsonpath={.items[0", "error: error parsing jsonpath {.items[0, unclosed action"),
    ("jsonpath={end}", "error: error parsing jsonpath {end}, not in range, nothing to end"),
    ("foo", 'error: unable to match a printer suitable for the output format "foo", allowed formats are: '
            "custom-columns,custom-columns-file,go-template,go-template-file,json,jsonpath,jsonpath-as-json,"
            "jsonpath-file,name,template,templatefile,wide,yaml"),
])
def test_output_errors(output: str, message: str) -> None:
    with pytest.raises(sim_kubectl.KubectlError) as err:
        sim_kubectl.render_nodes(ITEMS, output, single=False)
    assert str(err.value) == message


def test_a_format_kubectl_has_but_the_simulator_lacks_fails_as_unknown_and_says_so() -> None:
    with pytest.raises(sim_kubectl.KubectlError) as err:
        sim_kubectl.render_nodes(ITEMS, "go-template={{.kind}}", single=False)
    first, second = str(err.value).splitlines()
    assert first.startswith('error: unable to match a printer suitable for the output format "go-template={{.kind}}"')
    assert second == f"({sim_common.SIM_NAME}: the go-template output format is not simulated)"


# --- label selectors

@pytest.mark.parametrize(("selector", "names"), [
    ("tier=edge", ["agt1"]),
    ("tier==edge", ["agt1"]),
    ("tier!=edge", ["srv"]),  # a node without the label matches !=
    ("node-role.kubernetes.io/control-plane", ["srv"]),
    ("!node-role.kubernetes.io/control-plane", ["agt1"]),
    ("kubernetes.io/arch in (arm64, amd64)", ["srv"]),
    ("kubernetes.io/arch notin (arm64)", ["agt1"]),
    ("kubernetes.io/arch=arm64,node-role.kubernetes.io/master=true", ["srv"]),
    ("kubernetes.io/arch=arm64,tier=edge", []),
    ("", ["agt1", "srv"]),
])
def test_selectors(selector: str, names: list[str]) -> None:
    reqs = sim_kubectl.parse_selector(selector)
    matches = [n["metadata"]["name"] for n in ITEMS if sim_kubectl.selector_matches(reqs, n["metadata"]["labels"])]
    assert matches == names


def test_a_bad_selector_is_refused() -> None:
    with pytest.raises(sim_kubectl.KubectlError, match="unable to parse requirement"):
        sim_kubectl.parse_selector("=edge")


# --- completion

@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_kubectl_completion_scripts(shell: str) -> None:
    rc, out, err = _run(["completion", shell])
    assert (rc, err) == (0, "")
    if shell == "bash":
        assert subprocess.run(["bash", "-n"], input=out, text=True, check=False).returncode == 0
        check = subprocess.run(["bash", "-c", out + "\ncomplete -p kubectl\n"
                                "COMP_WORDS=(kubectl get --sh); COMP_CWORD=2; __kubectl_sim_complete; "
                                'echo "${COMPREPLY[@]}"'], capture_output=True, text=True, check=False)
        assert check.returncode == 0, check.stderr
        assert check.stdout.splitlines() == ["complete -o default -F __kubectl_sim_complete kubectl",
                                             "--show-labels"]
    else:
        assert out.startswith("#compdef kubectl\n")


def test_kubectl_completion_of_an_unknown_shell() -> None:
    assert _run(["completion", "tcsh"]) == (1, "", 'error: Unsupported shell type "tcsh".\n')
    assert _run(["completion"])[2].startswith("error: Shell not specified.")


def test_k3s_completion_prints_and_installs(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert sim_main.main(["k3s", "completion", "bash"]) == 0
    script = capsys.readouterr().out
    check = subprocess.run(["bash", "-c", script + "\ncomplete -p k3s"], capture_output=True, text=True, check=False)
    assert check.stdout.strip() == "complete -o bashdefault -o default -F _k3s_sim_complete k3s"
    (tmp_path / ".bashrc").write_text("# user's own\n")
    for _ in range(2):  # the second install finds its line and adds nothing
        assert sim_main.main(["k3s", "completion", "-i", "bash"]) == 0
    assert (tmp_path / ".bashrc").read_text() == "# user's own\nsource <(k3s completion bash)\n"
    assert sim_main.main(["k3s", "completion", "fish"]) == 1
    assert "unknown shell: fish" in capsys.readouterr().err


def test_bash_login_with_the_completion_lines_prints_nothing(tmp_path: Path) -> None:
    """What deployers add to .bashrc works in a login shell: no error lines."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    k3s = bindir / "k3s"
    k3s.write_bytes(mirror.simulator_asset("v1.31.4+k3s1", "amd64"))  # as the lab publishes it
    k3s.chmod(0o755)
    (bindir / "kubectl").symlink_to("k3s")  # as K3s's install.sh links it: the name decides
    rc = ("source <(k3s completion bash)\nsource <(k3s kubectl completion bash)\n"
          "source <(kubectl completion bash)\ncomplete -p k3s kubectl\n")
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}"}
    res = subprocess.run(["bash", "-c", rc], capture_output=True, text=True, env=env, check=False)
    assert (res.returncode, res.stderr) == (0, "")
    assert res.stdout.splitlines() == ["complete -o bashdefault -o default -F _k3s_sim_complete k3s",
                                       "complete -o default -F __kubectl_sim_complete kubectl"]
