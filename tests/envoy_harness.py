"""Tests-only: one asyncio loop in a thread, small HTTP apps on pod IPs, waiting for Envoy to sync."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter

import aiohttp
from aiohttp import web

from mesh.xds.resources import PUSH_ORDER


class LoopThread:
    """Run coroutines on one long-lived loop, so servers outlive a single test function."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro, timeout: float = 30.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()


async def start_app(ip: str, port: int, name: str) -> web.AppRunner:
    """A pod's app: answers every path with its own name, and echoes the request headers it saw."""
    async def handle(request: web.Request) -> web.Response:
        return web.json_response({"app": name, "headers": dict(request.headers)})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, ip, port).start()
    return runner


async def get(proxy: tuple[str, int], host: str, path: str = "/", session: aiohttp.ClientSession | None = None):
    """GET through a sidecar's HTTP proxy listener; returns (status, json-or-text, headers)."""
    own = session is None
    session = session or aiohttp.ClientSession()
    try:
        async with session.get(f"http://{proxy[0]}:{proxy[1]}{path}", headers={"Host": host}) as resp:
            body = await resp.json() if resp.content_type == "application/json" else await resp.text()
            return resp.status, body, dict(resp.headers)
    finally:
        if own:
            await session.close()


async def split(proxy, host: str, n: int) -> Counter:
    async with aiohttp.ClientSession() as session:
        results = await asyncio.gather(*(get(proxy, host, session=session) for _ in range(n)))
    return Counter(body["app"] if status == 200 else status for status, body, _ in results)


async def wait_until(predicate, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


def synced(ads, proxy_id: str) -> bool:
    """Has this proxy ACKed the current push version for every type it watches?"""
    con = ads.connection(proxy_id)
    if con is None or not con.watched:
        return False
    version = ads.push_context.version
    return all(w.version_acked == version for t, w in con.watched.items() if t in PUSH_ORDER)
