"""Start an aiohttp app on an address and learn the port it got (0 asks for a free one).

Every server mesh runs over HTTP — the debug port, the HTTPS webhook port, the replay API server,
and the small servers tests and benchmarks start — binds the same way.
"""

from __future__ import annotations

import ssl

from aiohttp import web


async def serve_app(app: web.Application, host: str, port: int, ssl_context: ssl.SSLContext | None = None,
                    shutdown_timeout: float = 60.0) -> tuple[web.AppRunner, int]:
    """Serve ``app`` on host:port, over TLS if ``ssl_context``; returns the runner and the bound port."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]  # aiohttp has no public accessor for it
