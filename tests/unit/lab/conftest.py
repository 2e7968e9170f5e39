from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.unit.lab.simharness import Node, publish


@pytest.fixture
def k3s_binary(tmp_path: Path) -> Path:
    return publish(tmp_path)


@pytest.fixture
def make_node(tmp_path: Path, k3s_binary: Path) -> Iterator[Callable[..., Node]]:
    nodes: list[Node] = []

    def make(name: str, role: str = "server") -> Node:
        node = Node(tmp_path, name, k3s_binary, role)
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        node.stop()
