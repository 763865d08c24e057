"""Istio's tcp-echo sample server: every line a client sends comes back with a prefix.

Go: https://github.com/istio/istio/blob/1.19.0/samples/tcp-echo/src/main.go — run as
``main PORTS PREFIX`` (ports comma-separated), it listens on every address at each port
(L35-L38, L46) and answers each newline-terminated line with ``"<prefix> <line>"`` until the
client closes (L67-L85). The sample's Deployment runs it with ``["9000,9001,9002", "hello"]``, so the
Service's ``tcp`` port 9000 answers ``hello <line>``.

``python -m mesh.demo.tcp_echo PORTS PREFIX`` is that program, run by the demo as the tcp-echo
pod's container inside its network namespace (``mesh.demo.podmode``); it prints ``ready`` once it
listens on every port, which is how the demo knows the container has started.

Simplifications, named: no per-line logging (the Go server prints each request and response); in
the loopback fallback (no network namespaces) the demo has no TCP app, only the HTTP apps that
call through their sidecar's HTTP proxy listener.
"""

from __future__ import annotations

import asyncio
import sys

from mesh.demo.apps import ready_until_signalled


async def _handle(prefix: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while line := await reader.readline():
            if not line.endswith(b"\n"):  # EOF before a newline: the Go server drops the partial line
                break
            writer.write(prefix + b" " + line)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def serve(ports: list[int], prefix: str, host: str | None = None) -> list[asyncio.Server]:
    """Listen on ``host`` (None: every address, as Go's ``":<port>"``) at each port."""
    async def handle(reader, writer):
        await _handle(prefix.encode(), reader, writer)
    return [await asyncio.start_server(handle, host, port) for port in ports]


async def _main(ports: list[int], prefix: str) -> None:
    servers = await serve(ports, prefix)
    await ready_until_signalled()
    for server in servers:
        server.close()
        await server.wait_closed()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:  # the Go program's own check (L28-L31)
        print("you should run it like: 'main [PORTS...] prefix', PORTS comma-separated, like port1[,port2]")
        return 1
    asyncio.run(_main([int(p) for p in args[0].split(",")], args[1]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
