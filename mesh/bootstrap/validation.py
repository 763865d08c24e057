"""Stage 14, initConfigValidation: the ``/validate`` webhook kube-apiserver asks before it stores
Istio config.

Go: https://github.com/istio/istio/blob/1.19.0/pilot/pkg/bootstrap/validation.go#L25-L53. Only
with a kube client (no cluster, no admission). The rules are in ``mesh.config.validation``, the
HTTP handler in ``mesh.webhooks.validation``; it is served on the debug port and, once stage 12
has made it, on the HTTPS webhook port. On a replayed cluster,
``mesh.webhooks.replay.ReplayValidation`` plays kube-apiserver's validating step (bad Istio config
is refused before any informer sees it); its decisions are at ``/debug/validation`` and in
``server.config_validation.decisions``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mesh.kube.client import ReplayClient
from mesh.webhooks import validation
from mesh.webhooks.replay import ReplayValidation, describe_decisions

if TYPE_CHECKING:
    from mesh.bootstrap.server import Server


def init_config_validation(server: Server) -> ReplayValidation | None:
    if server.kube_client is None:
        return None
    server.http_route_adders.append(validation.add_routes)
    server.webhook_route_adders.append(validation.add_routes)  # built once even if stage 12 added it
    if not isinstance(server.kube_client, ReplayClient):
        return None
    checker = ReplayValidation(server.kube_client, server.args.namespace, server.args.revision).install()
    server.debug_routes["/debug/validation"] = lambda q: describe_decisions(checker.decisions)
    return checker
