"""Start an aiohttp app on an address and learn the port it got (0 asks for a free one).

Every server mesh runs over HTTP — the debug port, the HTTPS webhook port, the replay API server,
and the small servers tests and benchmarks start — binds the same way, with the same guards
against slow or stuck clients:

* **header timeout** (``HEADER_TIMEOUT``): a connection must deliver a request's headers within
  this long of connecting or of its previous request, or it is closed. This bounds slowloris
  connections (headers trickled a byte at a time) and idle keep-alive ones. Go's ``http.Server``
  calls it ``ReadHeaderTimeout``; istiod's webhook server sets none
  (https://github.com/istio/istio/blob/1.19.0/pilot/pkg/bootstrap/webhook.go#L55-L64), mesh does.
* **body timeout** (``BODY_TIMEOUT``): a request body not fully received in this long gets
  HTTP 408 and the connection is closed.
* **shutdown timeout** (``SHUTDOWN_TIMEOUT``): stopping waits this long for requests in flight,
  then cancels them, so SIGTERM during a slow upload exits within seconds.

Bodies are capped by aiohttp's ``client_max_size`` (1 MiB unless the app says otherwise; HTTP 413).
"""

from __future__ import annotations

import asyncio
import logging
import ssl

from aiohttp import web

from mesh.util.net import PortInUse, host_port

log = logging.getLogger(__name__)

HEADER_TIMEOUT = 10.0  # seconds
BODY_TIMEOUT = 30.0  # seconds
SHUTDOWN_TIMEOUT = 2.0  # seconds


class _Guard(asyncio.Protocol):
    """Wraps aiohttp's per-connection protocol to close it when a request's headers are late."""

    def __init__(self, handler: asyncio.Protocol, served: ServedApp):
        self.handler = handler
        self.served = served
        self.transport: asyncio.Transport | None = None
        self.busy = False  # inside a request (headers received, response not yet produced)
        self._timer: asyncio.TimerHandle | None = None

    def arm(self) -> None:
        self.disarm()
        self._timer = asyncio.get_running_loop().call_later(self.served.header_timeout, self._expired)

    def disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self) -> None:
        if not self.busy and self.transport is not None:
            self.served.header_timeouts += 1
            self.transport.close()

    # -- asyncio.Protocol, forwarded ----------------------------------------------------------
    def connection_made(self, transport) -> None:
        self.transport = transport
        self.served.guards[self.handler] = self
        self.arm()
        self.handler.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.handler.data_received(data)

    def eof_received(self):
        return self.handler.eof_received()

    def connection_lost(self, exc) -> None:
        self.disarm()
        self.served.guards.pop(self.handler, None)
        self.handler.connection_lost(exc)

    def pause_writing(self) -> None:
        self.handler.pause_writing()

    def resume_writing(self) -> None:
        self.handler.resume_writing()


class ServedApp:
    """A running app: its runner, its listening server, and the guards' counters."""

    def __init__(self, runner: web.AppRunner, header_timeout: float, body_timeout: float):
        self.runner = runner
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.guards: dict[asyncio.Protocol, _Guard] = {}
        self.header_timeouts = 0
        self.body_timeouts = 0
        self.server: asyncio.Server | None = None

    @web.middleware
    async def middleware(self, request: web.Request, handler):
        guard = self.guards.get(request.protocol)
        if guard is not None:
            guard.busy = True
            guard.disarm()
        try:
            if request.body_exists:
                try:
                    await asyncio.wait_for(request.read(), self.body_timeout)  # kept: handlers read it again
                except TimeoutError:
                    self.body_timeouts += 1
                    return web.Response(status=408, text="request body not received in time\n",
                                        headers={"Connection": "close"})
            return await handler(request)
        finally:
            if guard is not None:
                guard.busy = False
                guard.arm()  # the next request's headers are due within the header timeout

    async def cleanup(self) -> None:
        if self.server is not None:
            self.server.close()
        await self.runner.cleanup()  # waits SHUTDOWN_TIMEOUT for requests in flight, then cancels them


async def serve_app(app: web.Application, host: str, port: int, ssl_context: ssl.SSLContext | None = None,
                    shutdown_timeout: float = SHUTDOWN_TIMEOUT, header_timeout: float = HEADER_TIMEOUT,
                    body_timeout: float = BODY_TIMEOUT) -> tuple[ServedApp, int]:
    """Serve ``app`` on host:port, over TLS if ``ssl_context``; returns the served app (its
    ``cleanup()`` stops it) and the bound port. The port is exclusive (no SO_REUSEPORT)."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=shutdown_timeout, handler_cancellation=True)
    served = ServedApp(runner, header_timeout, body_timeout)
    app.middlewares.insert(0, served.middleware)
    await runner.setup()
    loop = asyncio.get_running_loop()
    try:
        served.server = await loop.create_server(lambda: _Guard(runner.server(), served), host, port,
                                                 ssl=ssl_context, reuse_address=True, backlog=128)
    except OSError as err:
        await runner.cleanup()
        raise PortInUse(f"cannot listen on {host_port(host, port)}: {err.strerror}") from err
    return served, served.server.sockets[0].getsockname()[1]
