"""LDS generator: a sidecar's listeners, or a gateway's (``router`` proxies).

Go: ``LdsGenerator`` and ``ldsNeedsPush`` https://github.com/istio/istio/blob/1.19.0/pilot/pkg/xds/lds.go#L26-L104.
"""

from __future__ import annotations

from mesh.model.push_request import PushRequest
from mesh.networking.gateway import build_gateway_listeners
from mesh.networking.listener import build_sidecar_listeners
from mesh.networking.push_context import PushContext
from mesh.xds.generator import ProxyState, Resource, WatchedResource, needs_push
from mesh.xds.types import LISTENER


class LdsGenerator:
    def generate(self, state: ProxyState, push: PushContext, watched: WatchedResource,
                 request: PushRequest | None) -> list[Resource] | None:
        if not needs_push(request, LISTENER, state.proxy.type):
            return None
        if state.proxy.type == "router":
            listeners = build_gateway_listeners(push, state.proxy)
        else:
            listeners = build_sidecar_listeners(state.proxy, push, state.instances)
        return [Resource(li["name"], li) for li in listeners]
