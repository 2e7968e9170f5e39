"""The lab's API load balancer, on loopback: round robin, and no failed
request while one backend refuses connections or closes them unanswered
(the client's first bytes are replayed to the next backend)."""

from __future__ import annotations

import asyncio
import socket

import pytest

from pik3s_lab import lb


async def _backend(name: bytes) -> asyncio.AbstractServer:
    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        data = await r.readline()
        w.write(name + b":" + data)
        await w.drain()
        w.close()
    return await asyncio.start_server(handle, "127.0.0.1", 0)


async def _closes_at_once() -> asyncio.AbstractServer:
    """A server that is going away: accepts, then closes without answering."""
    async def handle(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.close()
    return await asyncio.start_server(handle, "127.0.0.1", 0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _ask(port: int) -> bytes:
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(b"ping\n")
    await w.drain()
    out = await r.read()
    w.close()
    return out


def test_round_robin_and_failover() -> None:
    async def scenario() -> None:
        a, b, going = await _backend(b"a"), await _backend(b"b"), await _closes_at_once()
        dead = _free_port()  # nothing listens here: refused
        backends = [("127.0.0.1", a.sockets[0].getsockname()[1]), ("127.0.0.1", dead),
                    ("127.0.0.1", going.sockets[0].getsockname()[1]), ("127.0.0.1", b.sockets[0].getsockname()[1])]
        balancer = lb.Balancer(backends)
        front = await asyncio.start_server(balancer.handle, "127.0.0.1", 0)
        port = front.sockets[0].getsockname()[1]
        answers = [await _ask(port) for _ in range(6)]
        assert all(x in (b"a:ping\n", b"b:ping\n") for x in answers), answers
        assert {b"a:ping\n", b"b:ping\n"} == set(answers)  # both used
        a.close()
        await a.wait_closed()  # a server stops: nothing fails, b answers
        answers = [await _ask(port) for _ in range(6)]
        assert answers == [b"b:ping\n"] * 6
        b.close()
        await b.wait_closed()
        assert await _ask(port) == b""  # none left: the client sees the connection closed
        front.close()
    asyncio.run(scenario())


def test_cli_needs_backends(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        lb.main(["--listen", "127.0.0.1:1"])
    assert "--backend" in capsys.readouterr().err
