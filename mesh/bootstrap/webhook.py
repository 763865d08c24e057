"""Stage 12, initSecureWebhookServer: the HTTPS webhook server (port 15017), ``/inject`` and
``/validate`` for kube-apiserver.

Go: ``initSecureWebhookServer``
https://github.com/istio/istio/blob/1.19.0/pilot/pkg/bootstrap/webhook.go#L45-L66 (only with a kube
client, server.go#L316-L317) makes an
``http.Server`` with istiod's certificate (no client certificates: kube-apiserver is trusted
through the ``caBundle`` it holds, not the other way round) and an empty mux; the injector and
the validation webhook add their handlers to it later, and ``Start`` serves it
(https://github.com/istio/istio/blob/1.19.0/pilot/pkg/bootstrap/server.go#L460-L471).

mesh does the same with ``Server.webhook_route_adders``: stages 13 and 14 append functions that
put their routes on an aiohttp app; the app is built when the server starts, from whatever was
appended by then.

Istio starts the ``caBundle`` patchers of the injector's and the validator's webhook
configurations from the injector (sidecarinjector.go#L92-L105) and the validation controller; mesh
starts both here, next to the server they are for. They patch only when the CA root really signed
istiod's certificate (not with ``--tls-cert`` files).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from aiohttp import web

from mesh.security.ca import CAError, load_pem_certs, verify_chain
from mesh.security.tls import server_context
from mesh.util.web import serve_app
from mesh.webhooks import validation
from mesh.webhooks.certpatch import WebhookCertPatcher

if TYPE_CHECKING:
    from mesh.bootstrap.server import Server

log = logging.getLogger("mesh.bootstrap")


def init_secure_webhook_server(server: Server) -> None:
    args = server.args
    if server.kube_client is None:
        log.info("no kube client: no webhook server (nothing would call it)")
        return
    if server.istiod_cert is None or "webhook" not in args.ports:
        log.warning("the secure webhook server is disabled (no istiod certificate or no webhook port)")
        return
    server.webhook_route_adders.append(validation.add_routes)  # stage 14 may add it again: built once
    if server.ca is not None:
        chain = load_pem_certs(server.istiod_cert.chain_pem.encode())
        try:
            verify_chain(chain[0], chain[1:], server.ca.bundle.root_certs)
        except CAError:
            log.info("istiod's certificate is not signed by the mesh CA: caBundle left to the installer")
        else:
            server.webhook_patcher = WebhookCertPatcher(server.kube_client, args.revision, lambda: server.ca.root_pem)
            server.webhook_patcher.run()
    server.add_start_func("webhook server", serve_webhooks)


async def serve_webhooks(server: Server) -> None:
    """The start func: serve whatever routes stages 13 and 14 added, with istiod's certificate."""
    app = build_webhook_app(server.webhook_route_adders)
    runner, port = await serve_app(app, server.args.host, server.args.ports["webhook"],
                                   server_context(server.istiod_cert))
    server.bound_ports["webhook"] = port
    server.stop_funcs.append(runner.cleanup)
    log.info("webhook server (HTTPS) on %s:%d", server.args.host, port)


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
