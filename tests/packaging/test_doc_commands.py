"""Every command the docs show exists: each `pik3s` verb and flag (and each choice they list) in the CLI,
each playbook and -e variable in the collection, each script and tox environment in the repository.
Read from the code blocks and inline code of README.md, docs/ (English and Spanish), the roles' and
the lab's READMEs."""

from __future__ import annotations

import argparse
import configparser
import itertools
import re
import shlex
from pathlib import Path

import pytest

from pik3s import cli
from pik3s_lab import cli as lab_cli
from tests.conftest import ROOT

DOCS = sorted([ROOT / "README.md", ROOT / "lab/README.md", *ROOT.glob("docs/**/*.md"), *ROOT.glob("roles/*/README.md")])
FENCE = re.compile(r"^```[a-z]*\n(.*?)^```", re.M | re.S)
COMMAND = re.compile(r"^(?:pik3s|ansible-playbook|tox) \S|^(?:\./)?scripts/[a-z]")
INLINE = re.compile(r"`([^`\n]+)`")
# the variables a reader may pass with -e: every role's argument specs, and what the playbooks read
KNOWN_VARS = "\n".join(p.read_text() for p in [*ROOT.glob("roles/*/meta/argument_specs.yml"),
                                                 *ROOT.glob("playbooks/*.yml"), *ROOT.glob("roles/*/defaults/*.yml")])


def commands(path: Path) -> list[str]:
    text = path.read_text()
    found = []
    for block in FENCE.findall(text):
        for line in block.splitlines():
            line = line.strip().removeprefix("$ ")
            if COMMAND.match(line):
                found.append(line)
    prose = re.sub(r"^Message: `.*`$", "", FENCE.sub("", text), flags=re.M)  # quoted messages are not commands
    found += [c for c in INLINE.findall(prose) if COMMAND.match(c)]
    return found


def _words(line: str) -> list[str]:
    line = re.split(r"\s#\s|\s{2,}#", line, maxsplit=1)[0]  # a trailing comment
    try:
        return shlex.split(line)
    except ValueError:
        return line.split()


def _subparser(parser: argparse.ArgumentParser, words: list[str]) -> tuple[argparse.ArgumentParser, list[str]]:
    """The (sub)parser the leading words name, and the rest of the words."""
    while words:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs or words[0] not in subs[0].choices:
            break
        parser, words = subs[0].choices[words[0]], words[1:]
    return parser, words


def check_pik3s(words: list[str]) -> list[str]:
    if words[:1] == ["--version"] or words[:1] == ["--help"]:
        return []
    parser = lab_cli.build_parser() if words and words[0] in cli.LAB_VERBS else cli.build_parser()
    top = parser
    parser, rest = _subparser(parser, words)
    if parser is top:
        return [f"no verb {words[0]!r}" if words else "no verb"]
    problems = []
    options = parser._option_string_actions
    for i, raw in enumerate(rest):
        for token in raw.strip("[]").split("|"):
            token = token.strip("[].")
            flag = token.split("=", 1)[0]
            if not flag.startswith("-") or flag in ("-", "--"):
                continue
            if flag not in options:
                problems.append(f"no option {flag}")
                continue
            choices = options[flag].choices
            if choices and i + 1 < len(rest):
                for value in rest[i + 1].strip("[]").split("|"):
                    value = value.strip("[].")
                    if value and value.isidentifier() and value.lower() == value and value not in choices:
                        problems.append(f"{flag} has no choice {value!r}")
    return problems


def check_playbook(words: list[str]) -> list[str]:
    problems = []
    target = words[0] if words else ""
    if target.startswith("pik3s.cluster."):
        if not (ROOT / "playbooks" / f"{target.removeprefix('pik3s.cluster.')}.yml").is_file():
            problems.append(f"no playbook {target}")
    elif not (ROOT / target).is_file() and not (ROOT / "playbooks" / Path(target).name).is_file():
        problems.append(f"no playbook {target}")
    for flag, value in itertools.pairwise(words):
        if flag in ("-e", "--extra-vars") and "=" in value:
            for key in re.findall(r"(?:^|\s)([a-z_][a-z0-9_]*)=", value):
                if not re.search(rf"\b{key}\b", KNOWN_VARS):
                    problems.append(f"no variable {key}")
    return problems


def _expand(name: str) -> list[str]:
    """tox's factor braces: unit-ansible{217,218} -> unit-ansible217, unit-ansible218."""
    match = re.search(r"\{([^{}]*)\}", name)
    if not match:
        return [name]
    return [n for alt in match.group(1).split(",")
            for n in _expand(name[:match.start()] + alt.strip() + name[match.end():])]


def tox_envs() -> set[str]:
    """The environments tox.ini defines: env_list and the testenv sections, braces expanded."""
    ini = configparser.ConfigParser()
    ini.read(ROOT / "tox.ini")
    listed = re.split(r",\s*(?![^{]*\})", " ".join(ini["tox"]["env_list"].split()))
    sections = [s.removeprefix("testenv:") for s in ini.sections() if s.startswith("testenv:")]
    return {n for item in [*listed, *sections] if item for n in _expand(item.strip())}


def check(line: str) -> list[str]:
    words = _words(line)
    tool, args = words[0], words[1:]
    if tool == "pik3s":
        return check_pik3s(args)
    if tool == "ansible-playbook":
        return check_playbook(args)
    if tool.endswith("scripts/test") and not (ROOT / "scripts/test").is_file():
        return [f"no executable {tool}"]
    if tool in ("tox", "scripts/test", "./scripts/test"):  # scripts/test hands its arguments to tox
        envs = tox_envs()
        named = [args[i + 1] for i, a in enumerate(args[:-1]) if a == "-e"]
        return [f"no tox env {e}" for n in named for e in n.split(",") if e not in envs]
    script = ROOT / tool.removeprefix("./")
    return [] if script.is_file() and script.stat().st_mode & 0o111 else [f"no executable {tool}"]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_command_the_docs_show_exists(doc: Path) -> None:
    if doc.name == "README.md" and doc.parent in (ROOT, ROOT / "docs/es"):
        assert len(commands(doc)) >= 20  # the reference and the guide show their commands
    problems = [f"{line!r}: {p}" for line in commands(doc) for p in check(line)]
    assert problems == []


def test_the_checker_finds_dead_commands() -> None:
    assert check("pik3s deploy -i INVENTORY --limt HOSTS") == ["no option --limt"]
    assert check("pik3s deploy -i INV [--output text|json|yaml]") == ["--output has no choice 'yaml'"]
    assert check("pik3s destroy -i INVENTORY") == ["no verb 'destroy'"]
    assert check("pik3s lab up [--spec lab.yml] [--nmae NAME]") == ["no option --nmae"]
    assert check("ansible-playbook pik3s.cluster.upgrad -i inv") == ["no playbook pik3s.cluster.upgrad"]
    assert check("ansible-playbook pik3s.cluster.upgrade -i inv -e k3s_verison=v1") == ["no variable k3s_verison"]
    assert check("scripts/no-such-script") == ["no executable scripts/no-such-script"]
    assert check("./scripts/test -e unit-ansible219,lnt") == ["no tox env lnt"]
    assert check("pik3s upgrade -i INVENTORY [--k3s-version vX.Y.Z+k3sN]") == []
