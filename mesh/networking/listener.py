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

Simplifications, named: HTTP only (no TCP proxying, no protocol sniffing, no TLS), and the HTTP
proxy listener is on by default (port 15080) because it is the only outbound path here.
"""

from __future__ import annotations

from mesh.model.proxy import Proxy
from mesh.networking.cluster import inbound_cluster_name
from mesh.networking.extensions import FAULT_TYPE, HCM_TYPE, ROUTER_TYPE
from mesh.networking.push_context import ServiceInstance
from mesh.networking.route import HTTP_PROXY_ROUTE

DEFAULT_HTTP_PROXY_PORT = 15080
INBOUND_PORT = 15006
VIRTUAL_INBOUND = "virtualInbound"


def http_proxy_port(proxy: Proxy) -> int:
    value = str(proxy.metadata.get("HTTP_PROXY_PORT") or "")
    return int(value) if value.isdigit() else DEFAULT_HTTP_PROXY_PORT


def build_sidecar_listeners(proxy: Proxy, instances: list[ServiceInstance]) -> list[dict]:
    listeners = [build_http_proxy_listener(proxy)]
    if instances:
        listeners.append(build_inbound_listener(proxy, instances))
    return listeners


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


def build_inbound_listener(proxy: Proxy, instances: list[ServiceInstance]) -> dict:
    ip = proxy.ip_addresses[0]
    ports = sorted({i.port for i in instances})
    vhosts = [{"name": f"inbound|http|{p}", "domains": [f"*:{p}"], "routes": [_inbound_route(p)]} for p in ports]
    vhosts.append({"name": "inbound|http|default", "domains": ["*"], "routes": [_inbound_route(ports[0])]})
    route_config = {"name": "inbound|http", "virtualHosts": vhosts, "validateClusters": False}
    hcm = http_connection_manager(f"inbound_0.0.0.0_{INBOUND_PORT}", route_config=route_config)
    return {
        "name": VIRTUAL_INBOUND,
        "address": _address(ip, INBOUND_PORT),
        "trafficDirection": "INBOUND",
        "filterChains": [{"name": "inbound|http", "filters": [_hcm_filter(hcm)]}],
    }


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
