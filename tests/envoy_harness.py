"""Tests-only: one asyncio loop in a thread, small HTTP apps on pod IPs, waiting for Envoy to sync."""

from __future__ import annotations

import asyncio
import threading

# The pod apps, requests through a sidecar, splits and waits are the notebooks' helpers too.
from mesh.demo.e2e import get, split, start_app, synced, wait_until  # noqa: F401


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

