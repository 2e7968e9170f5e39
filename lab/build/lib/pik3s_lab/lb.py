#!/usr/bin/env python3
"""pik3s lab API load balancer: a TCP proxy in front of the lab's K3s servers,
standing in for what an HA rack puts there (kube-vip, haproxy, a router VIP).

Each client connection goes to the next backend in turn; a backend that
refuses, times out, or closes before answering the client's first bytes is
skipped (and avoided for a few seconds) and those bytes are replayed to the
next one (haproxy's "retry-on conn-failure empty-response"), so a server
that is stopping or starting for an upgrade does not fail a request while
another answers. TLS passes through untouched; the protocol must be one
where the client speaks first (TLS is). Standard library only; it runs inside
the lab's load-balancer container and in the lab's own tests.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
import time

CONNECT_TIMEOUT = 1.0
FIRST_ANSWER_TIMEOUT = 5.0
AVOID_SECONDS = 3.0


class Balancer:
    def __init__(self, backends: list[tuple[str, int]]) -> None:
        self.backends = backends
        self.turn = itertools.cycle(range(len(backends)))
        self.down_until = [0.0] * len(backends)

    def order(self) -> list[int]:
        start = next(self.turn)
        idx = [(start + i) % len(self.backends) for i in range(len(self.backends))]
        now = time.monotonic()
        return [i for i in idx if self.down_until[i] <= now] + [i for i in idx if self.down_until[i] > now]

    async def connect(self, first: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
        """A backend that answered ``first`` (the client's opening bytes), and its first answer."""
        errors = []
        for i in self.order():
            host, port = self.backends[i]
            writer = None
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), CONNECT_TIMEOUT)
                writer.write(first)
                await writer.drain()
                answer = await asyncio.wait_for(reader.read(65536), FIRST_ANSWER_TIMEOUT)
                if answer:
                    return reader, writer, answer
                errors.append(f"{host}:{port} closed without answering")
            except (TimeoutError, OSError) as exc:
                errors.append(f"{host}:{port} {exc.__class__.__name__}")
            self.down_until[i] = time.monotonic() + AVOID_SECONDS
            if writer is not None:
                writer.close()
        raise ConnectionError("no backend answers: " + ", ".join(errors))

    async def handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            first = await asyncio.wait_for(client_r.read(65536), FIRST_ANSWER_TIMEOUT)
            if not first:
                client_w.close()
                return
            back_r, back_w, answer = await self.connect(first)
        except (ConnectionError, TimeoutError, OSError) as exc:
            print(f"[pik3s lab lb] {exc}", flush=True)
            client_w.close()
            return
        client_w.write(answer)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                await dst.drain()
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except OSError:
                pass
            finally:
                try:
                    dst.close()
                except OSError:
                    pass

        await asyncio.gather(pipe(client_r, back_w), pipe(back_r, client_w))


async def serve(listen: tuple[str, int], backends: list[tuple[str, int]]) -> None:
    balancer = Balancer(backends)
    server = await asyncio.start_server(balancer.handle, listen[0], listen[1])
    print(f"[pik3s lab lb] {listen[0]}:{listen[1]} -> {', '.join(f'{h}:{p}' for h, p in backends)}", flush=True)
    async with server:
        await server.serve_forever()


def _addr(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--listen", type=_addr, required=True, help="HOST:PORT")
    ap.add_argument("--backend", type=_addr, action="append", required=True, help="HOST:PORT (repeat)")
    args = ap.parse_args(argv)
    try:
        asyncio.run(serve(args.listen, args.backend))
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
