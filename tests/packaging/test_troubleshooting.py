"""docs/troubleshooting.md quotes the messages pik3s prints: each quoted message is in the code (its text
between the <placeholders>), and every failure the roles and playbooks raise is quoted."""

from __future__ import annotations

import re

import yaml

from tests.conftest import ROOT

PAGE = ROOT / "docs/troubleshooting.md"
MESSAGE = re.compile(r"^Message: `(.+)`$", re.M)
SOURCES = [*ROOT.glob("roles/*/tasks/*.yml"), *ROOT.glob("playbooks/*.yml"), *ROOT.glob("plugins/**/*.py"),
           *ROOT.glob("src/pik3s/*.py")]


def _normal(text: str) -> str:
    """Source text as its messages print: adjacent string literals joined, Jinja and placeholders cut out,
    whitespace collapsed."""
    text = re.sub(r"[\"']\s*\n\s*(?:f|rf)?[\"']", "", text)  # "..." \n f"..." -> one literal
    # a Jinja expression prints its string literals ('K3s is not installed here (no ' ~ path): keep them
    text = re.sub(r"\{\{.*?\}\}|\{%.*?%\}",
                  lambda m: "\x00" + "\x00".join(re.findall(r"'([^']*)'", m.group(0))) + "\x00", text, flags=re.S)
    return " ".join(text.split())


CORPUS = "\n".join(_normal(p.read_text()) for p in SOURCES)


def quoted() -> list[str]:
    return MESSAGE.findall(PAGE.read_text())


def fragments(message: str) -> list[str]:
    """The literal parts of a quoted message (between <placeholders> and '...')."""
    parts = re.split(r"<[^>]*>|\.\.\.|\{[^}]*\}", message)
    return [p.strip(" :;,()") for p in parts if len(p.strip(" :;,()")) >= 8]


def test_every_quoted_message_is_one_pik3s_prints() -> None:
    messages = quoted()
    assert len(messages) >= 40
    missing = [(m, f) for m in messages for f in fragments(m) if _normal(f) not in CORPUS]
    assert missing == []


def _fail_messages() -> list[tuple[str, str]]:
    """(file, message source) of every fail/assert task of the roles and playbooks."""
    found = []

    def walk(where: str, node: object) -> None:
        if isinstance(node, dict):
            check = node.get("ansible.builtin.assert")
            if isinstance(check, dict) and "fail_msg" in check:
                found.append((where, str(check["fail_msg"])))
            if isinstance(node.get("ansible.builtin.fail"), dict):
                found.append((where, str(node["ansible.builtin.fail"].get("msg", ""))))
            for value in node.values():
                walk(where, value)
        elif isinstance(node, list):
            for value in node:
                walk(where, value)

    for path in [*ROOT.glob("roles/*/tasks/*.yml"), *ROOT.glob("playbooks/*.yml")]:
        walk(str(path.relative_to(ROOT)), yaml.safe_load(path.read_text()))
    return found


def test_every_failure_the_roles_raise_is_on_the_page() -> None:
    page = " ".join(_normal(m) for m in quoted())
    failures = _fail_messages()
    assert len(failures) >= 18
    uncovered = []
    for where, source in failures:
        literal = [p.strip(" :;,.()") for p in _normal(source).split("\x00")]
        literal = [p for p in literal if len(p) >= 15]
        if not literal:  # the message is all template: a rules' or plan's text, quoted from its Python source
            continue
        if not any(part[:40] in page for part in literal):
            uncovered.append((where, literal[0]))
    assert uncovered == []


def test_the_page_check_finds_a_message_that_is_not_printed() -> None:
    assert [f for f in fragments("the cluster is on fire: <host> melted") if _normal(f) not in CORPUS] == [
        "the cluster is on fire"]
