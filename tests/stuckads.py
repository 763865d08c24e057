"""Hostile ADS clients over raw HTTP/2 (the ``h2`` package), for fairness tests and bench/.

``StuckClient`` opens an ADS stream, asks for clusters and then never opens its flow-control
window (initial window 0, no WINDOW_UPDATE): every response to it stalls in the server.
``FloodClient`` sends DiscoveryRequests as fast as the socket takes them and reads nothing.
"""

from __future__ import annotations

import asyncio
import struct

import h2.config
import h2.connection
import h2.events
import h2.settings
from envoy_data_plane.envoy.service.discovery.v3 import DiscoveryRequest

from mesh.xds.ads import ADS_METHOD


def discovery_request(type_url: str, node_id: str = "", names=(), nonce: str = "") -> bytes:
    d = {"typeUrl": type_url, "resourceNames": list(names), "responseNonce": nonce}
    if node_id:
        d["node"] = {"id": node_id, "metadata": {"NAMESPACE": node_id.split("~")[2].rsplit(".", 1)[-1]}}
    return bytes(DiscoveryRequest.from_dict(d))


def grpc_frame(message: bytes) -> bytes:
    return b"\x00" + struct.pack(">I", len(message)) + message


class RawAdsStream:
    """One HTTP/2 connection carrying one ADS stream, driven by hand."""

    def __init__(self, window: int = 65535):
        config = h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        self.conn = h2.connection.H2Connection(config)
        self.window = window
        self.stream_id = 1
        self.events: list = []
        self.reset: h2.events.StreamReset | None = None
        self.trailers: dict = {}
        self.closed = False  # the server closed the connection
        self._reader_task: asyncio.Task | None = None

    async def open(self, host: str, port: int, first: bytes) -> None:
        self.reader, self.writer = await asyncio.open_connection(host, port)
        self.conn.initiate_connection()
        self.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: self.window})
        self.conn.send_headers(self.stream_id, [
            (":method", "POST"), (":scheme", "http"), (":path", ADS_METHOD), (":authority", f"{host}:{port}"),
            ("content-type", "application/grpc"), ("te", "trailers")])
        self.conn.send_data(self.stream_id, grpc_frame(first))
        await self.flush()
        self._reader_task = asyncio.create_task(self._read())

    async def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.writer.write(data)
            await self.writer.drain()

    async def _read(self) -> None:
        # Answer SETTINGS and PINGs (h2 does that itself) but never acknowledge DATA: the server's
        # send window on this stream stays shut.
        try:
            while chunk := await self.reader.read(65536):
                for event in self.conn.receive_data(chunk):
                    self.events.append(event)
                    if isinstance(event, h2.events.StreamReset):
                        self.reset = event
                    elif isinstance(event, h2.events.TrailersReceived | h2.events.ResponseReceived):
                        self.trailers.update(dict(event.headers))
                await self.flush()
        except (ConnectionError, OSError, h2.exceptions.ProtocolError):
            pass
        self.closed = True

    @property
    def grpc_status(self) -> str | None:
        return self.trailers.get("grpc-status")

    async def close(self) -> None:
        if self._reader_task is not None:
            self._reader_task.cancel()
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, OSError):
            pass


async def stuck_client(host: str, port: int, type_url: str, n: int) -> RawAdsStream:
    stream = RawAdsStream(window=0)
    await stream.open(host, port, discovery_request(type_url, f"sidecar~127.10.9.{n % 250 + 1}~stuck-{n}.default~"
                                                               f"default.svc.cluster.local"))
    return stream


async def flood(stream: RawAdsStream, message: bytes, total_bytes: int, patience: float = 3.0) -> int:
    """Send ``message`` again and again (without reading) until ``total_bytes`` are sent, the
    server ends the stream, or it reads nothing more for ``patience`` seconds; returns the bytes sent."""
    sent = 0
    frame = grpc_frame(message)
    loop = asyncio.get_running_loop()
    last_progress = loop.time()
    while sent < total_bytes and stream.reset is None and stream.grpc_status is None and not stream.closed:
        try:
            if stream.conn.local_flow_control_window(stream.stream_id) < len(frame):
                if loop.time() - last_progress > patience:
                    break
                await asyncio.sleep(0.01)  # the server has not read that far yet
                continue
            last_progress = loop.time()
            stream.conn.send_data(stream.stream_id, frame)
            await stream.flush()
        except (ConnectionError, OSError, h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            break
        sent += len(frame)
    return sent
