"""istiod's HTTPS webhook server (port 15017): ``/inject`` and ``/validate`` for kube-apiserver.

Go: ``initSecureWebhookServer``
https://github.com/istio/istio/blob/1.19.0/pilot/pkg/bootstrap/webhook.go#L42-L66 makes an
``http.Server`` with istiod's certificate (no client certificates: kube-apiserver is trusted
through the ``caBundle`` it holds, not the other way round) and an empty mux; the injector and
the validation webhook add their handlers to it later, and ``Start`` serves it
(https://github.com/istio/istio/blob/1.19.0/pilot/pkg/bootstrap/server.go#L460-L471).

mesh does the same with ``Server.webhook_route_adders``: stages 13 and 14 append functions that
put their routes on an aiohttp app; the app is built when the server starts, from whatever was
appended by then.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from aiohttp import web


def build_webhook_app(route_adders: Iterable[Callable[[web.Application], None]]) -> web.Application:
    app = web.Application()
    seen: set[int] = set()
    for adder in route_adders:
        if id(adder) in seen:  # the same function appended twice would register its routes twice
            continue
        seen.add(id(adder))
        adder(app)
    return app


def routes_of(app: web.Application) -> list[str]:
    """``METHOD path`` of every route, sorted: what the server answers (for debug and notebooks)."""
    found = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter") or ""
        found.add(f"{route.method} {path}")
    return sorted(found)
