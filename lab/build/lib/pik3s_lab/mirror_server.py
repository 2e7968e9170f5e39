#!/usr/bin/env python3
"""pik3s lab release mirror: serves a K3s-release-shaped tree over HTTP.

Files under /k3s-io/k3s/releases/download/<version>/<asset> as on GitHub, and
/v1-release/channels/<name> answering like update.k3s.io: a 302 redirect to
/k3s-io/k3s/releases/tag/<version>. Standard library only; it runs inside the
lab's mirror container and in the lab's own tests.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import sys
import urllib.parse
from pathlib import Path

CHANNEL_PREFIX = "/v1-release/channels/"
TAG_PREFIX = "/k3s-io/k3s/releases/tag/"


class Handler(http.server.SimpleHTTPRequestHandler):
    root: Path

    def _channels(self) -> dict[str, str]:
        channels: dict[str, str] = json.loads((self.root / "channels.json").read_text())
        return channels

    def do_GET(self) -> None:
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        if path.startswith(CHANNEL_PREFIX):
            name = path[len(CHANNEL_PREFIX):].strip("/")
            version = self._channels().get(name)
            if version is None:
                self.send_error(404, f"channel {name!r} not found")
                return
            host = self.headers.get("Host") or "localhost"
            self.send_response(302)
            self.send_header("Location", f"http://{host}{TAG_PREFIX}{urllib.parse.quote(version, safe='+')}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if path.startswith(TAG_PREFIX):
            version = path[len(TAG_PREFIX):].strip("/")
            if not (self.root / "k3s-io/k3s/releases/download" / version).is_dir():
                self.send_error(404, f"release {version!r} not found")
                return
            body = f"<html><body><h1>Release {version}</h1></body></html>\n".encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if path.endswith("/") or path == "/channels.json":
            self.send_error(404, "not found")  # no directory listings, as on GitHub
            return
        super().do_GET()

    def log_message(self, fmt: str, *args: object) -> None:
        sys.stderr.write("pik3s-mirror: " + (fmt % args) + "\n")


def make_server(root: Path, bind: str, port: int) -> http.server.ThreadingHTTPServer:
    handler = type("MirrorHandler", (Handler,), {"root": root})
    return http.server.ThreadingHTTPServer(
        (bind, port), functools.partial(handler, directory=str(root)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    server = make_server(args.root, args.bind, args.port)
    sys.stderr.write(f"pik3s-mirror: serving {args.root} on http://{args.bind}:{args.port}\n")
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
