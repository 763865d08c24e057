"""``127.0.0.1:<port>`` in the root namespace forwarded to an address inside a pod, like ``kubectl
port-forward``.

kubectl asks the kubelet to open a stream to the pod's port; here two forwarders meet at a Unix
socket, which (unlike TCP) crosses network namespaces because it lives in the file system:

    client ─TCP─▶ 127.0.0.1:<local>  (this process, root namespace)
                  └─UDS─▶ forwarder in the pod's namespace (``python -m mesh.cni.portforward``)
                          └─TCP─▶ <pod ip>:<port>  (inside the pod; not captured: lo, app's own IP)

Nothing in the root namespace ever connects to a pod or Service address.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
from pathlib import Path

from mesh.cni.pod import PodSandbox


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            if writer.can_write_eof():
                writer.write_eof()


async def _splice(r1, w1, r2, w2) -> None:
    try:
        await asyncio.gather(_pipe(r1, w2), _pipe(r2, w1))
    finally:
        for w in (w1, w2):
            w.close()


class PortForward:
    """Start with ``await start()``; ``local_port`` is then bound on 127.0.0.1; ``stop()`` ends both sides."""

    def __init__(self, pod: PodSandbox, port: int, socket_path: str | Path, local_port: int = 0,
                 target_ip: str | None = None):
        self.pod, self.port, self.local_port = pod, port, local_port
        self.target_ip = target_ip or pod.ip
        self.socket_path = Path(socket_path)
        self._helper: subprocess.Popen | None = None
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> PortForward:
        self.socket_path.unlink(missing_ok=True)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        self._helper = self.pod.spawn([sys.executable, "-m", "mesh.cni.portforward", "--uds", str(self.socket_path),
                                       "--to", f"{self.target_ip}:{self.port}"], env=env, stdout=subprocess.PIPE,
                                      text=True)
        # "ready" once it listens (the socket file exists a moment earlier, at bind, when a connect
        # would still be refused)
        try:
            line = await asyncio.wait_for(asyncio.to_thread(self._helper.stdout.readline), 10)
        except TimeoutError:
            line = ""
        if line.strip() != "ready":
            await self.stop()
            raise RuntimeError(f"port-forward helper in {self.pod.netns} did not start")
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.local_port)
        self.local_port = self._server.sockets[0].getsockname()[1]
        return self

    async def _accept(self, reader, writer) -> None:
        try:
            r2, w2 = await asyncio.open_unix_connection(str(self.socket_path))
        except OSError:
            writer.close()
            return
        await _splice(reader, writer, r2, w2)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None
        if self._helper is not None:
            self._helper.terminate()
            try:
                self._helper.wait(3)
            except subprocess.TimeoutExpired:
                self._helper.kill()
                self._helper.wait()
            if self._helper.stdout is not None:
                self._helper.stdout.close()
            self._helper = None
        self.socket_path.unlink(missing_ok=True)


async def _serve_in_pod(uds: str, host: str, port: int) -> None:
    async def accept(reader, writer):
        try:
            r2, w2 = await asyncio.open_connection(host, port)
        except OSError:
            writer.close()
            return
        await _splice(reader, writer, r2, w2)

    server = await asyncio.start_unix_server(accept, uds)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    """The pod side: run inside the pod's network namespace."""
    parser = argparse.ArgumentParser(prog="python -m mesh.cni.portforward")
    parser.add_argument("--uds", required=True)
    parser.add_argument("--to", required=True, help="ip:port inside the pod's namespace")
    args = parser.parse_args(argv)
    host, _, port = args.to.rpartition(":")
    try:
        asyncio.run(_serve_in_pod(args.uds, host, int(port)))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
