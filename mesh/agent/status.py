"""The agent's status port, 15020: is Envoy ready, and its Prometheus metrics.

Go: the status server https://github.com/istio/istio/blob/1.19.0/pilot/cmd/pilot-agent/status/server.go#L348-L372
(``/healthz/ready``, ``/stats/prometheus`` and ``/metrics``), its readiness answer
(``handleReadyProbe``, server.go#L453-L469: 200, or 503 with the reason logged; here the 503's
body says the reason too) and the probe
https://github.com/istio/istio/blob/1.19.0/pilot/cmd/pilot-agent/status/ready/probe.go#L46-L137 :

1. Envoy has received config: ``cluster_manager.cds.update_success`` and
   ``listener_manager.lds.update_success`` are both above zero (read once from Envoy's admin
   ``/stats?usedonly&filter=...``, then remembered);
2. Envoy is LIVE (``server.state`` 0) and its workers have started
   (``listener_manager.workers_started`` 1), also remembered once true
   (stat names and filters: https://github.com/istio/istio/blob/1.19.0/pilot/cmd/pilot-agent/status/util/stats.go#L30-L40).

Kubelet does not ask 15020 directly: the injected readiness probe targets Envoy's own
``:15021/healthz/ready`` listener, which the bootstrap routes to the ``agent`` cluster, this
port — so a ready answer also proves Envoy's listeners serve.

Simplifications, named: ``/stats/prometheus`` returns Envoy's metrics only (Istio merges the
agent's own and the app's, from ``prometheus.io`` annotations); no ``/app-health/`` probe
rewriting, ``/quitquitquit``, pprof or ``/debug/ndsz``.
"""

from __future__ import annotations

import logging
import re
import socket

from aiohttp import web

from mesh.agent.netns import PodNetwork

log = logging.getLogger(__name__)

STATUS_PORT = 15020  # ProxyConfig.statusPort: the agent's own
READY_PATH = "/healthz/ready"
READY_STATS = r"^(server\.state|listener_manager\.workers_started)"
UPDATE_STATS = r"^(cluster_manager\.cds|listener_manager\.lds)\.(update_success|update_rejected)$"
LIVE = 0  # envoy.admin.v3.ServerInfo.State.LIVE


def parse_stats(text: str) -> dict[str, int]:
    """Envoy's ``/stats`` text (``name: value`` lines) as numbers; histograms and text values skipped."""
    stats = {}
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        if sep and re.fullmatch(r"\s*\d+\s*", value):
            stats[name.strip()] = int(value)
    return stats


class NotReady(Exception):
    pass


class ReadinessProbe:
    """``ready.Probe``: asks Envoy's admin at ``admin_host:admin_port`` from the pod's network."""

    def __init__(self, net: PodNetwork, admin_host: str, admin_port: int):
        self.net = net
        self.admin_host, self.admin_port = admin_host, admin_port
        self.received_first_update = False
        self.at_least_once_ready = False

    async def _stats(self, regex: str) -> dict[str, int]:
        status, body = await self.net.get(self.admin_host, self.admin_port, f"/stats?usedonly&filter={regex}")
        if status != 200:
            raise NotReady(f"envoy admin /stats answered {status}")
        return parse_stats(body)

    async def check(self) -> None:
        """Return if Envoy is ready; NotReady saying why not."""
        try:
            await self._check_config()
            await self._check_envoy()
        except OSError as err:
            raise NotReady(f"envoy admin unreachable: {err}") from None

    async def _check_config(self) -> None:
        if self.received_first_update:
            return
        s = await self._stats(UPDATE_STATS)
        cds, lds = s.get("cluster_manager.cds.update_success", 0), s.get("listener_manager.lds.update_success", 0)
        summary = (f"cds updates: {cds} successful, {s.get('cluster_manager.cds.update_rejected', 0)} rejected; "
                   f"lds updates: {lds} successful, {s.get('listener_manager.lds.update_rejected', 0)} rejected")
        if cds and lds:
            self.received_first_update = True
            return
        if not cds and not lds:
            raise NotReady(f"config not received from XDS server (is Istiod running?): {summary}")
        if s.get("cluster_manager.cds.update_rejected") or s.get("listener_manager.lds.update_rejected"):
            raise NotReady(f"config received from XDS server, but was rejected: {summary}")
        raise NotReady(f"config not fully received from XDS server: {summary}")

    async def _check_envoy(self) -> None:
        if self.at_least_once_ready:
            return
        s = await self._stats(READY_STATS)
        if "server.state" not in s or "listener_manager.workers_started" not in s:
            raise NotReady(f"readiness stats not yet updated: {sorted(s)}")
        if s["server.state"] != LIVE:
            raise NotReady(f"server is not live, current state is: {s['server.state']}")
        if s["listener_manager.workers_started"] != 1:
            raise NotReady("workers have not yet started")
        self.at_least_once_ready = True


class StatusServer:
    """Port 15020 on the pod's network: ``/healthz/ready`` from the probe, Envoy's Prometheus stats."""

    def __init__(self, net: PodNetwork, probe: ReadinessProbe, host: str, port: int = STATUS_PORT,
                 prometheus: tuple[str, int] | None = None):
        self.net, self.probe = net, probe
        self.host, self.port = host, port
        self.prometheus = prometheus  # Envoy's 15090 listener, scraped for /stats/prometheus
        self.last_error: str | None = None
        self.was_ready = False
        self._runner: web.AppRunner | None = None
        self._sock: socket.socket | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get(READY_PATH, self._ready)
        app.router.add_get("/stats/prometheus", self._stats)
        app.router.add_get("/metrics", self._stats)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        self._sock = await self.net.listen(self.host, self.port)
        await web.SockSite(self._runner, self._sock).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    async def _ready(self, _request: web.Request) -> web.Response:
        try:
            await self.probe.check()
        except NotReady as err:
            if self.last_error != str(err):
                log.warning("Envoy proxy is NOT ready: %s", err)
            self.last_error, self.was_ready = str(err), False
            return web.Response(status=503, text=str(err))
        if not self.was_ready:
            log.info("Envoy proxy is ready")
        self.last_error, self.was_ready = None, True
        return web.Response(status=200)

    async def _stats(self, _request: web.Request) -> web.Response:
        if self.prometheus is None:
            return web.Response(status=404)
        try:
            status, body = await self.net.get(*self.prometheus, "/stats/prometheus")
        except OSError as err:
            log.error("failed scraping envoy metrics: %s", err)
            status, body = 200, ""  # as Istio: a failed Envoy scrape drops those metrics, not the answer
        return web.Response(status=status, text=body, content_type="text/plain")
