"""RDS generator: the route configurations a proxy's listeners name.

Go: ``RdsGenerator`` and ``rdsNeedsPush`` https://github.com/istio/istio/blob/1.19.0/pilot/pkg/xds/rds.go#L23-L67.
"""

from __future__ import annotations

from mesh.model.push_request import PushRequest
from mesh.networking.gateway import build_gateway_route_config
from mesh.networking.push_context import PushContext
from mesh.networking.route import build_sidecar_route_config
from mesh.xds.generator import ProxyState, Resource, WatchedResource, needs_push
from mesh.xds.types import ROUTE


class RdsGenerator:
    def generate(self, state: ProxyState, push: PushContext, watched: WatchedResource,
                 request: PushRequest | None) -> list[Resource] | None:
        if not needs_push(request, ROUTE):
            return None
        proxy = state.proxy
        # Routes depend on who asks only through its namespace (short host names), labels
        # (``sourceLabels`` matches) and capture (the catch-all virtual host): proxies alike in
        # these share one built resource.
        who = (proxy.type, proxy.dns_domain, proxy.namespace, tuple(sorted(proxy.labels.items())), proxy.captured)
        if proxy.type == "router":  # and, for a gateway, which port its Services send where
            who += (_port_translation(push, proxy),)
        out = []
        for name in watched.names:
            resource = push.memo(("rds", name, who), lambda n=name: _build(push, proxy, n))
            if resource is not None:
                out.append(resource)
        return out


def _build(push: PushContext, proxy, name: str) -> Resource | None:
    if proxy.type == "router":
        config = build_gateway_route_config(push, proxy, name)
    else:
        config = build_sidecar_route_config(push, proxy, name)
    return Resource(name, config) if config is not None else None


def _port_translation(push: PushContext, proxy) -> tuple[tuple[int, int], ...]:
    """A gateway's Service ports and their target ports: which Gateway servers share a route
    config ``http.<port>`` depends on them (``mesh.networking.gateway.resolve_port``), so two
    replicas share a built route only when they agree (one not in its Service's endpoints yet
    does not)."""
    return tuple(sorted({(i.port, i.endpoint.endpoint_port) for i in push.service_instances(proxy)}))
