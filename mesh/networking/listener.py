"""Listener builder: LDS for a sidecar — an HTTP proxy listener outbound, one inbound listener.

Go: ``buildSidecarListeners``
https://github.com/istio/istio/blob/1.19.0/pilot/pkg/networking/core/v1alpha3/listener.go#L223-L233,
the HTTP proxy listener ``buildHTTPProxy`` (listener.go#L558-L619) whose routes are the
``http_proxy`` route config, the HTTP connection manager
https://github.com/istio/istio/blob/1.19.0/pilot/pkg/networking/core/v1alpha3/listener_builder.go#L289,
and the listener names ``virtualInbound`` / ``virtualOutbound``
https://github.com/istio/istio/blob/1.19.0/pilot/pkg/model/listener.go#L21-L33.

In a real pod, iptables sends every outbound connection to port 15001 and every inbound one to
15006, and Envoy recovers the original destination. mesh has no iptables (DESIGN §6), so it
uses what Istio offers for apps that opt out of capture:

* **outbound** — Istio's HTTP proxy listener (mesh config ``proxyHttpPort`` or the proxy's
  ``HTTP_PROXY_PORT`` metadata), bound to the pod IP: the app sends ``GET /`` with
  ``Host: reviews:9080`` to ``<pod-ip>:15080`` and the ``http_proxy`` routes pick the cluster;
* **inbound** — ``virtualInbound`` on ``<pod-ip>:15006``, forwarding to the app's own port
  through the ``inbound|<port>||`` cluster, the port chosen by the ``Host`` header's port.

Mutual TLS on the inbound side (for a proxy whose agent serves it a workload certificate):
the PeerAuthentication mode of the workload (``networking/authn.py``) picks the filter chains
— STRICT: only a TLS chain requiring a client certificate from the trust domain, so plaintext
finds no chain and the connection is closed; PERMISSIVE: that chain plus a plaintext one, told
apart by the TLS inspector's ``transportProtocol``; DISABLE: plaintext only (the chains per mode
``getFilterChainMatchOptions``
https://github.com/istio/istio/blob/1.19.0/pilot/pkg/networking/core/v1alpha3/filterchain_options.go#L189-L219,
built by ``inboundChainForOpts``
https://github.com/istio/istio/blob/1.19.0/pilot/pkg/networking/core/v1alpha3/listener_inbound.go#L303-L325,
and the TLS inspector it needs, listener_inbound.go#L599-L655). Over TLS the app is told who
called in the ``x-forwarded-client-cert`` header (listener_inbound.go#L765-L778).

Simplifications, named: HTTP only (no TCP proxying, no protocol sniffing), the HTTP proxy
listener is on by default (port 15080) because it is the only outbound path here, and one
inbound listener serves all the workload's ports, so per-port mTLS modes collapse to the
strictest of them; TLS from outside the mesh (no ``istio`` ALPN) is not sent to a passthrough
chain under PERMISSIVE.
"""

from __future__ import annotations

from mesh.model.config import Config
from mesh.model.proxy import Proxy
from mesh.networking.authn import DISABLE, PERMISSIVE, STRICT, mtls_mode
from mesh.networking.cluster import inbound_cluster_name
from mesh.networking.extensions import FAULT_TYPE, HCM_TYPE, ROUTER_TYPE
from mesh.networking.push_context import ServiceInstance
from mesh.networking.route import HTTP_PROXY_ROUTE
from mesh.networking.tls import has_workload_cert, istio_mutual_downstream, tls_inspector

DEFAULT_HTTP_PROXY_PORT = 15080
INBOUND_PORT = 15006
VIRTUAL_INBOUND = "virtualInbound"


def http_proxy_port(proxy: Proxy) -> int:
    value = str(proxy.metadata.get("HTTP_PROXY_PORT") or "")
    return int(value) if value.isdigit() else DEFAULT_HTTP_PROXY_PORT


def build_sidecar_listeners(proxy: Proxy, instances: list[ServiceInstance],
                            peer_authentications: list[Config] | None = None,
                            trust_domain: str = "cluster.local") -> list[dict]:
    listeners = [build_http_proxy_listener(proxy)]
    if instances:
        listeners.append(build_inbound_listener(proxy, instances, peer_authentications, trust_domain))
    return listeners


def inbound_mtls_mode(proxy: Proxy, instances: list[ServiceInstance], peer_authentications: list[Config]) -> str:
    """The mode the inbound listener runs in: the strictest over the workload's ports; DISABLE
    when the proxy has no certificate to serve TLS with."""
    if not has_workload_cert(proxy.metadata):
        return DISABLE
    modes = {mtls_mode(peer_authentications, proxy.namespace, proxy.labels, i.endpoint.endpoint_port)
             for i in instances}
    return next((m for m in (STRICT, PERMISSIVE) if m in modes), DISABLE)


def build_http_proxy_listener(proxy: Proxy) -> dict:
    ip, port = proxy.ip_addresses[0], http_proxy_port(proxy)
    hcm = http_connection_manager(f"outbound_{ip}_{port}", rds=HTTP_PROXY_ROUTE)
    hcm["httpProtocolOptions"] = {"allowAbsoluteUrl": True}  # a proxy may be asked for http://host/path
    return {
        "name": f"{ip}_{port}",
        "address": _address(ip, port),
        "trafficDirection": "OUTBOUND",
        "filterChains": [{"filters": [_hcm_filter(hcm)]}],
    }


def build_inbound_listener(proxy: Proxy, instances: list[ServiceInstance],
                           peer_authentications: list[Config] | None = None,
                           trust_domain: str = "cluster.local") -> dict:
    ip = proxy.ip_addresses[0]
    ports = sorted({i.port for i in instances})
    vhosts = [{"name": f"inbound|http|{p}", "domains": [f"*:{p}"], "routes": [_inbound_route(p)]} for p in ports]
    vhosts.append({"name": "inbound|http|default", "domains": ["*"], "routes": [_inbound_route(ports[0])]})
    route_config = {"name": "inbound|http", "virtualHosts": vhosts, "validateClusters": False}
    hcm = http_connection_manager(f"inbound_0.0.0.0_{INBOUND_PORT}", route_config=route_config)
    listener: dict = {
        "name": VIRTUAL_INBOUND,
        "address": _address(ip, INBOUND_PORT),
        "trafficDirection": "INBOUND",
        "filterChains": [{"name": "inbound|http", "filters": [_hcm_filter(hcm)]}],
    }
    mode = inbound_mtls_mode(proxy, instances, peer_authentications or [])
    if mode == DISABLE:
        return listener
    mtls_hcm = dict(hcm, forwardClientCertDetails="APPEND_FORWARD",
                    setCurrentClientCertDetails={"subject": True, "dns": True, "uri": True})
    chains = [{"name": "inbound|http|mtls", "filterChainMatch": {"transportProtocol": "tls"},
               "transportSocket": istio_mutual_downstream(trust_domain), "filters": [_hcm_filter(mtls_hcm)]}]
    if mode == PERMISSIVE:
        chains.append({"name": "inbound|http", "filterChainMatch": {"transportProtocol": "raw_buffer"},
                       "filters": [_hcm_filter(hcm)]})
    listener["listenerFilters"] = [tls_inspector()]
    listener["filterChains"] = chains
    return listener


def _inbound_route(port: int) -> dict:
    return {"name": "default", "match": {"prefix": "/"},
            "route": {"cluster": inbound_cluster_name(port), "timeout": "0s"}}


def http_connection_manager(stat_prefix: str, rds: str | None = None, route_config: dict | None = None) -> dict:
    """The HTTP filter chain every Istio HCM ends with: fault injection (driven per route by
    VirtualService ``fault``), then the router."""
    hcm: dict = {"@type": HCM_TYPE, "statPrefix": stat_prefix, "useRemoteAddress": False,
                 "httpFilters": [
                     {"name": "envoy.filters.http.fault", "typedConfig": {"@type": FAULT_TYPE}},
                     {"name": "envoy.filters.http.router", "typedConfig": {"@type": ROUTER_TYPE}},
                 ]}
    if rds is not None:
        hcm["rds"] = {"configSource": {"ads": {}, "initialFetchTimeout": "0s", "resourceApiVersion": "V3"},
                      "routeConfigName": rds}
    else:
        hcm["routeConfig"] = route_config
    return hcm


def _hcm_filter(hcm: dict) -> dict:
    return {"name": "envoy.filters.network.http_connection_manager", "typedConfig": hcm}


def _address(ip: str, port: int) -> dict:
    return {"socketAddress": {"address": ip, "portValue": port}}
