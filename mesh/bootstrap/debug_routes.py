"""The debug mux's own routes: ``/debug/mesh``, ``/debug/stages``, ``/debug/push_requests`` and the
ADS views (``/debug/syncz``, ``/debug/adsz``, ``/debug/config_dump``, ...).

Go: istiod registers them in ``InitDebug`` / ``AddDebugHandlers``
(https://github.com/istio/istio/blob/1.19.0/pilot/pkg/xds/debug.go#L144-L211); the views over the
connections themselves are ``mesh.xds.debug``, those over the controllers ``controllers_debug``.
Each route is a function of the query dict returning JSON-able data (served by ``http.py``).
``/debug/stages`` and ``/debug/push_requests`` are mesh's own, for the course.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from mesh.bootstrap.stages import STAGES
from mesh.xds import debug

if TYPE_CHECKING:
    from mesh.bootstrap.server import Server
    from mesh.xds.ads import AdsServer

Route = Callable[[dict], object]


def base_routes(server: Server) -> dict[str, Route]:
    """What the prologue serves before any stage ran."""
    env = server.environment
    return {
        "/debug/mesh": lambda q: env.mesh(),
        "/debug/meshnetworks": lambda q: env.networks(),
        "/debug/networkz": lambda q: [
            gw._asdict() for gw in (env.network_manager.unresolved if env.network_manager else [])],
        "/debug/stages": lambda q: [
            {"number": s.number, "name": s.name, "go": s.go_name,
             "state": "done" if s.name in server.completed else "pending"}
            for s in STAGES],
        "/debug/push_requests": lambda q: [
            {"at": round(r.at, 3), "full": r.request.full, "reason": dict(r.request.reason),
             "configs": sorted(str(c) for c in r.request.configs_updated)}
            for r in server.xds.requests],
    }


def discovery_routes(ads: AdsServer) -> dict[str, Route]:
    """The ADS views, added by stage 16 once there is an ADS server."""

    def config_dump(q: dict) -> dict:
        if "proxyID" not in q:
            raise ValueError("config_dump needs ?proxyID=<pod>.<namespace>")
        # include_eds=true as in istiod's ConfigDump (debug.go#L659)
        dump = debug.config_dump(ads, q["proxyID"], include_eds=q.get("include_eds") == "true")
        if dump is None:
            raise KeyError(f"proxy {q['proxyID']} is not connected")
        return dump

    return {
        "/debug/syncz": lambda q: debug.syncz(ads, q.get("namespace")),
        "/debug/adsz": lambda q: debug.adsz(ads, push=q.get("push") == "true"),
        "/debug/config_dump": config_dump,
        "/debug/push_status": lambda q: debug.push_status(ads),
        "/debug/proxy_status": lambda q: debug.proxy_status(ads),
    }
