"""Gateway builder: listeners and routes of an ingress or egress gateway (a ``router`` proxy).

Go: ``buildGatewayListeners``
https://github.com/istio/istio/blob/1.19.0/pilot/pkg/networking/core/v1alpha3/gateway.go#L62,
``buildGatewayHTTPRouteConfig`` (gateway.go#L340-L522), listener names ``getListenerName``
(gateway.go#L287-L295), and ``VirtualServicesForGateway``
https://github.com/istio/istio/blob/1.19.0/pilot/pkg/model/push_context.go#L995-L1019.

A gateway proxy is configured by the Gateway objects whose ``selector`` matches its labels. Each
HTTP server (``port`` + ``hosts``) becomes a listener, whose routes are the route config
``http.<listen port>``. The port a server names may be a port of the gateway's Service: then the
proxy listens on that port's targetPort (the demo profile's Services map 80 → 8080), so a
Gateway for port 80 works whichever way the client reaches the pod; a number no Service port of
the pod has is listened on as written (``resolvePorts``,
https://github.com/istio/istio/blob/1.19.0/pilot/pkg/model/gateway.go#L359-L394, with the
selector-based "legacy" rules: the first matching Service port wins). Routes still see the
server's own port: a VirtualService ``match.port: 80`` and the virtual host ``<host>:80`` mean
the Gateway's port 80 (``buildGatewayHTTPRouteConfig`` takes ``server.Port.Number``, gateway.go#L380,
for both the routes, #L421-L422, and the virtual host name, #L457).

A VirtualService reaches the gateway by naming it in ``gateways``
(``bookinfo-gateway`` means the Gateway of that name in the VirtualService's namespace); its
routes are served for the hosts that both the server and the VirtualService name, each host a
virtual host ``<host>:<port>`` whose only domain is the host (ports are ignored in matching).

Simplifications, named: a gateway proxy whose metadata says INTERCEPTION_MODE=NONE (mesh's
loopback demo) binds its pod IP instead of 0.0.0.0; HTTP servers only (HTTPS/TLS/TCP servers are skipped: mesh has no
certificates for them), gateways are not scoped to their namespace, and a port served by
several Gateways merges their hosts without Istio's conflict rules. The port translation reads
the proxy's Service instances of the push being built, so (as in istiod, which recomputes a
gateway's merged servers on full pushes only: ``pushConnection`` → ``computeProxyState``,
https://github.com/istio/istio/blob/1.19.0/pilot/pkg/xds/ads.go#L732-L738 and #L654-L701) a
gateway pod that joins its Service's endpoints later moves its listeners at the next full push.
"""

from __future__ import annotations

from dataclasses import dataclass

from mesh.config.host import subset_of as host_subset_of
from mesh.model.config import Config
from mesh.model.proxy import Proxy
from mesh.networking.listener_builder import WILDCARD, address, hcm_filter, http_connection_manager
from mesh.networking.listener_inbound import ENVOY_SERVER_NAME
from mesh.networking.push_context import PushContext, ServiceInstance
from mesh.networking.route import (
    MAX_DIRECT_RESPONSE_BODY_BYTES,
    build_routes_for_virtual_service,
    resolve_gateway_name,
)

HTTP_SERVER_PROTOCOLS = {"HTTP", "HTTP2", "GRPC"}


@dataclass(frozen=True)
class GatewayServer:
    gateway: str  # <namespace>/<name>
    port: int  # the port the server names: what routes match and virtual hosts are named by
    hosts: tuple[str, ...]
    listen_port: int  # where the proxy listens for it (``resolve_port``)


def route_name(port: int) -> str:
    return f"http.{port}"


def gateways_for_proxy(push: PushContext, proxy: Proxy) -> list[Config]:
    """Gateways whose selector matches the proxy's labels (an empty selector matches any)."""
    return [gw for gw in push.gateways
            if all(proxy.labels.get(k) == v for k, v in (gw.spec.get("selector") or {}).items())]


def resolve_port(number: int, instances: list[ServiceInstance]) -> int:
    """The port a proxy listens on for a server's port ``number``: the targetPort (the endpoint's
    port) of the first of the proxy's Service ports with that number, else the number itself."""
    for inst in instances:
        if inst.port == number and inst.endpoint.endpoint_port:
            return inst.endpoint.endpoint_port
    return number


def http_servers(push: PushContext, proxy: Proxy) -> dict[int, list[GatewayServer]]:
    """Listen port → the HTTP servers of all the proxy's Gateways served there."""
    out: dict[int, list[GatewayServer]] = {}
    instances = push.service_instances(proxy)
    for gw in gateways_for_proxy(push, proxy):
        for server in gw.spec.get("servers") or []:
            port = server.get("port") or {}
            if str(port.get("protocol", "")).upper() not in HTTP_SERVER_PROTOCOLS or not port.get("number"):
                continue
            number = int(port["number"])
            listen = resolve_port(number, instances)
            out.setdefault(listen, []).append(
                GatewayServer(f"{gw.namespace}/{gw.name}", number, tuple(server.get("hosts") or ["*"]), listen))
    return out


def gateway_hcm(port: int) -> dict:
    """A gateway's HCM: the edge of the mesh (``buildGatewayConnectionManager``, gateway.go#L653-L698)
    — the peer's address is the client's, no ``x-forwarded-for`` hop is trusted (``xff_num_trusted_hops``
    0: proto3 JSON leaves a zero out), client certificate details are sanitized then set."""
    hcm = http_connection_manager(f"outbound_0.0.0.0_{port}", rds=route_name(port), use_remote_address=True)
    hcm.update(xffNumTrustedHops=0, forwardClientCertDetails="SANITIZE_SET",
               setCurrentClientCertDetails={"subject": True, "cert": True, "uri": True, "dns": True},
               serverName=ENVOY_SERVER_NAME, httpProtocolOptions={})
    return hcm


def build_gateway_listeners(push: PushContext, proxy: Proxy) -> list[dict]:
    # A gateway pod has no capture; it binds its ports on the wildcard, or (mesh's loopback demo,
    # INTERCEPTION_MODE=NONE) on its pod IP, since there all pods share one network namespace.
    ip = WILDCARD if proxy.captured else proxy.ip_addresses[0]
    listeners = []
    for port in sorted(http_servers(push, proxy)):
        listeners.append({
            "name": f"{ip}_{port}",
            "address": address(ip, port),
            "trafficDirection": "OUTBOUND",
            "continueOnListenerFiltersTimeout": True,
            "filterChains": [{"filters": [hcm_filter(gateway_hcm(port))]}],
        })
    return listeners


def build_gateway_route_config(push: PushContext, proxy: Proxy, name: str) -> dict | None:
    if not name.startswith("http.") or not name[5:].isdigit():
        return None
    port = int(name[5:])
    servers = http_servers(push, proxy).get(port, [])
    vhosts: dict[str, dict] = {}
    for server in servers:
        for vs in virtual_services_for_gateway(push, server.gateway):
            hosts = intersect_hosts(_server_hosts(server, vs.namespace), vs.spec.get("hosts") or [])
            if not hosts:
                continue
            routes = build_routes_for_virtual_service(push, proxy, vs, server.port, frozenset({server.gateway}))
            for host in hosts:
                if host in vhosts:
                    vhosts[host]["routes"].extend(routes)
                else:
                    vhosts[host] = {"name": f"{host}:{server.port}", "domains": [host], "routes": list(routes),
                                    "includeRequestAttemptCount": True}
    if not vhosts:  # a server with nothing bound to it answers 404
        virtual_hosts = [{"name": f"blackhole:{port}", "domains": ["*"], "routes": []}]
    else:
        virtual_hosts = [vhosts[h] for h in sorted(vhosts)]
    return {"name": name, "virtualHosts": virtual_hosts, "validateClusters": False,
            "ignorePortInHostMatching": True, "maxDirectResponseBodySizeBytes": MAX_DIRECT_RESPONSE_BODY_BYTES}


def virtual_services_for_gateway(push: PushContext, gateway: str) -> list[Config]:
    return [vs for vs in push.virtual_services
            if gateway in {resolve_gateway_name(g, vs.namespace) for g in vs.spec.get("gateways") or []}]


def _server_hosts(server: GatewayServer, vs_namespace: str) -> list[str]:
    """Server hosts may be ``ns/host`` (``./host``: the Gateway's namespace, ``*/host``: any);
    a namespaced host applies only to VirtualServices of that namespace."""
    gateway_namespace = server.gateway.split("/", 1)[0]
    out = []
    for h in server.hosts:
        ns, slash, host = h.rpartition("/")
        if not slash:
            out.append(h)
        elif ns == "*" or ns == vs_namespace or (ns == "." and gateway_namespace == vs_namespace):
            out.append(host)
    return out


def intersect_hosts(server_hosts: list[str], vs_hosts: list[str]) -> list[str]:
    """Hosts both sides serve, the more specific name of each matching pair (``*`` and
    ``bookinfo.com`` give ``bookinfo.com``)."""
    out = set()
    for a in server_hosts:
        for b in vs_hosts:
            if host_subset_of(b, a):
                out.add(b)
            elif host_subset_of(a, b):
                out.add(a)
    return sorted(out)
