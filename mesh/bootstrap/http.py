"""istiod's plain HTTP port: readiness and the debug endpoints (``/debug/...``).

Go: ``initServers`` and ``initIstiodAdminServer`` build the muxes
(https://github.com/istio/istio/blob/1.19.0/pilot/pkg/bootstrap/server.go#L573-L639), the
readiness handler answers ``/ready``
(https://github.com/istio/istio/blob/1.19.0/pilot/pkg/bootstrap/server.go#L561-L571), and the
debug handlers live in https://github.com/istio/istio/blob/1.19.0/pilot/pkg/xds/debug.go.

Every stage adds its debug views to ``Server.debug_routes`` (path → function of the query
returning JSON-able data); this module serves them, plus any aiohttp routes stages register in
``Server.http_route_adders`` (e.g. ``/inject`` until the HTTPS webhook server exists).
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from mesh.bootstrap.server import Server

log = logging.getLogger(__name__)


def _json(data: object, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(data, indent=2, sort_keys=False, default=str) + "\n",
                        status=status, content_type="application/json")


def build_debug_app(server: Server) -> web.Application:
    app = web.Application()

    async def ready(_request: web.Request) -> web.Response:
        if server.is_ready():
            return web.Response(text="ok\n")
        return web.Response(text="not ready: informers have not synced\n", status=503)

    async def index(_request: web.Request) -> web.Response:
        return _json({"endpoints": sorted(server.debug_routes)})

    async def debug(request: web.Request) -> web.Response:
        handler = server.debug_routes.get(request.path)
        if handler is None:
            return _json({"error": f"no debug endpoint {request.path}", "endpoints": sorted(server.debug_routes)},
                         status=404)
        try:
            return _json(handler(dict(request.query)))
        except (KeyError, ValueError) as err:  # e.g. an unknown proxyID
            return _json({"error": str(err)}, status=400)

    app.router.add_get("/ready", ready)
    app.router.add_get("/debug", index)
    for adder in server.http_route_adders:
        adder(app)
    app.router.add_get("/debug/{tail:.*}", debug)
    return app


def build_monitoring_app(registry) -> web.Application:
    """The monitoring port (15014): Prometheus ``/metrics``, as istiod's monitoring mux
    (https://github.com/istio/istio/blob/1.19.0/pilot/pkg/bootstrap/monitoring.go)."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    async def metrics(_request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    return app
