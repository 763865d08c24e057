"""Outbound listeners of a sidecar: one per service port (REDIRECT), or the HTTP proxy (NONE).

Go: ``buildSidecarListeners``
https://github.com/istio/istio/blob/1.19.0/pilot/pkg/networking/core/v1alpha3/listener.go#L223-L233,
``buildSidecarOutboundListeners`` (#L296-L556), per port ``buildSidecarOutboundListenerForPortOrUDS``
(#L784-L1000) with its HTTP and TCP options (#L621-L782), ``buildListener`` (#L1102-L1272),
the fall-through chain ``appendListenerFallthroughRouteForCompleteListener`` (#L1286-L1315), and
the HTTP proxy listener ``buildHTTPProxy`` (#L558-L619).

**REDIRECT** (iptables captures the pod's traffic; ``Proxy.captured``). Nothing here binds a
socket (``bind_to_port: false``): ``virtualOutbound`` on 15001 receives each captured connection
and hands it to the listener whose address is the connection's original destination.

* An HTTP port (``http``, ``http2``, ``grpc`` ...) gets ``0.0.0.0_<port>``, shared by every
  service on that port: a chain for plaintext HTTP (``transport_protocol: raw_buffer``,
  ``application_protocols: [http/1.1, h2c]``, found by the TLS and HTTP inspectors) whose HCM
  takes its routes from RDS ``"<port>"`` — the Host header picks the service there — and a
  default chain, ``PassthroughFilterChain``, for anything else.
* A TCP port gets ``<ClusterIP>_<port>``: the connection's destination address alone says which
  service it is, and a ``tcp_proxy`` sends it to ``outbound|<port>||<host>``.
* A port without a protocol (sniffed) gets ``<ClusterIP>_<port>`` too, with both: HTTP (routes
  ``<host>:<port>``) when the inspectors see HTTP, else the TCP proxy as the default chain.

**NONE** (no capture): Istio's HTTP proxy listener only, bound to the pod's loopback IP on
``proxyHttpPort``; the apps send ``GET /`` with ``Host: reviews:9080`` to it and the ``http_proxy``
routes pick the cluster.

Which services get listeners is the proxy's SidecarScope, per egress listener
(``mesh/networking/sidecar.py``), as ``buildSidecarOutboundListeners`` walks them: a listener with
a ``port`` builds that port, in the protocol it declares, for each service it imports; the catch-all
then builds every port of its services at an address no earlier listener took (those are *locked*:
Istio adds no services to them). Its ``bind`` replaces the address (0.0.0.0 or the VIP), and
``captureMode: NONE`` binds a real socket there, on 127.0.0.1 when no ``bind`` is given
(#L325-L366).

Simplifications, named: when an HTTP
and a TCP port collide on one address the first (by host name) wins instead of Istio's merged
listener; a headless TCP service gets one wildcard listener instead of one per endpoint; TLS
ports get a plain TCP proxy (no SNI chains from VirtualService ``tls`` routes). In NONE mode the
HTTP proxy listener is on by default (port 15080, it is the only outbound path there), binds the
pod's loopback IP instead of 127.0.0.1, and Istio's per-port listeners bound to 127.0.0.1 are
left out (each pod has no loopback of its own there, and the apps do not use them) — only egress
listeners with an explicit ``bind`` are built there. Unix-socket egress listeners are not built.
"""

from __future__ import annotations

from mesh.model.proxy import Proxy
from mesh.model.service import Port, Service, ServiceProtocol
from mesh.networking.cluster import outbound_cluster_name
from mesh.networking.filterchain_options import HTTP, PLAINTEXT_HTTP_ALPNS, RAW_BUFFER, TCP, listener_protocol
from mesh.networking.listener_builder import (
    WILDCARD,
    address,
    build_virtual_outbound_listener,
    hcm_filter,
    http_connection_manager,
    passthrough_filter_chain,
    tcp_proxy_filter,
)
from mesh.networking.listener_inbound import build_inbound_listeners, http_inspector
from mesh.networking.route import HTTP_PROXY_ROUTE
from mesh.networking.sidecar import egress_listeners_of
from mesh.networking.tls import tls_inspector

DEFAULT_HTTP_PROXY_PORT = 15080
LOCALHOST = "127.0.0.1"
UNIX_PREFIX = "unix://"  # model.UnixAddressPrefix


def build_sidecar_listeners(proxy: Proxy, push, instances, peer_authentications=None,
                            trust_domain: str | None = None) -> list[dict]:
    """``getListeners``' order: outbound listeners, the HTTP proxy, virtualOutbound, inbound."""
    peer_authentications = push.peer_authentications if peer_authentications is None else peer_authentications
    trust_domain = trust_domain or push.trust_domain
    listeners: list[dict] = build_outbound_listeners(push, proxy)
    http_proxy = build_http_proxy_listener(proxy)
    if http_proxy is not None:
        listeners.append(http_proxy)
    if proxy.captured:
        listeners.append(build_virtual_outbound_listener(push.outbound_traffic_mode))
    scope = getattr(push, "scope", None)  # a ScopedPush: the proxy's Sidecar may declare ingress listeners
    ingress = scope.ingress if scope is not None else []
    sidecar_host = f"{scope.name}.{scope.namespace}" if scope is not None else ""
    return listeners + build_inbound_listeners(proxy, instances, peer_authentications, trust_domain,
                                               ingress, sidecar_host)


def http_proxy_port(proxy: Proxy) -> int | None:
    """The proxy's ``HTTP_PROXY_PORT`` metadata; without it, mesh's default in NONE mode (the apps'
    only way out) and none under capture (MeshConfig ``proxyHttpPort`` is 0 by default)."""
    value = str(proxy.metadata.get("HTTP_PROXY_PORT") or "")
    if value.isdigit():
        return int(value)
    return None if proxy.captured else DEFAULT_HTTP_PROXY_PORT


def service_address(service: Service) -> str:
    vip = service.cluster_vip
    return vip if vip and vip not in ("None", "0.0.0.0") else WILDCARD


def build_outbound_listeners(push, proxy: Proxy) -> list[dict]:
    """``buildSidecarOutboundListeners``: per egress listener of the proxy's SidecarScope — one with
    a port builds that port for each of its services, the catch-all every port of its services that
    no earlier listener took (those are *locked*); then TCP listeners first, then HTTP."""
    mode = push.outbound_traffic_mode
    built: dict[str, tuple[str, dict]] = {}  # "<bind>:<port>" → (protocol, listener)
    for egress in egress_listeners_of(push):
        bind_to_port = (not proxy.captured or egress.capture_mode == "NONE"
                        or egress.bind.startswith(UNIX_PREFIX))
        if (not proxy.captured and not egress.bind) or egress.bind.startswith(UNIX_PREFIX):
            continue  # NONE: per-port listeners on 127.0.0.1 are left out; no Unix sockets (docstring)
        bind = egress.bind or (LOCALHOST if bind_to_port else "")
        if egress.port is not None:
            port = Port(egress.port_name, egress.port, egress.protocol)
            for service in egress.services:
                _add_outbound(built, service, port, bind, bind_to_port, mode)
        else:  # ports already built are locked: the catch-all adds nothing to them
            for service in egress.services:
                for port in service.ports:
                    if port.protocol != ServiceProtocol.HTTP_PROXY:
                        _add_outbound(built, service, port, bind, bind_to_port, mode)
    tcp = [li for proto, li in built.values() if proto == TCP]
    http = [li for proto, li in built.values() if proto != TCP]
    return tcp + http


def _add_outbound(built: dict[str, tuple[str, dict]], service: Service, port: Port, bind: str,
                  bind_to_port: bool, mode: str) -> None:
    """``buildSidecarOutboundListenerForPortOrUDS`` for one service port: HTTP ports share
    ``<bind or 0.0.0.0>:<port>`` (their hosts are told apart in RDS), TCP ports listen on
    ``<bind or the service VIP>:<port>``; the first to take an address keeps it."""
    if port.protocol == ServiceProtocol.UDP:
        return
    proto = HTTP if port.protocol == ServiceProtocol.HTTP_PROXY else listener_protocol(port.protocol)
    where = bind or (WILDCARD if proto == HTTP else service_address(service))
    key = f"{where}:{port.port}"
    if key not in built:
        built[key] = (proto, _outbound_listener(service, port.port, proto, where, mode, bind_to_port))


def _outbound_listener(service: Service, port: int, proto: str, bind: str, mode: str,
                       bind_to_port: bool = False) -> dict:
    name = f"{bind}_{port}"
    listener: dict = {"name": name, "address": address(bind, port), "trafficDirection": "OUTBOUND",
                      "continueOnListenerFiltersTimeout": True,
                      "listenerFiltersTimeout": "0s"}  # MeshConfig.protocolDetectionTimeout
    if not bind_to_port:
        listener["bindToPort"] = False
    cluster = outbound_cluster_name(port, "", service.hostname)
    if proto == TCP:
        listener["filterChains"] = [{"filters": [tcp_proxy_filter(cluster)]}]
        return listener
    rds = str(port) if proto == HTTP else f"{service.hostname}:{port}"
    hcm = hcm_filter(http_connection_manager(f"outbound_{name}", rds=rds))
    if proto == HTTP and bind != WILDCARD:  # a bound HTTP port: one chain, nothing to tell apart
        listener["filterChains"] = [{"filters": [hcm]}]
        return listener
    http_chain = {"filterChainMatch": {"transportProtocol": RAW_BUFFER, "applicationProtocols": list(PLAINTEXT_HTTP_ALPNS)},
                  "filters": [hcm]}
    listener["listenerFilters"] = [tls_inspector(), http_inspector()]
    listener["filterChains"] = [http_chain]
    # The chain for everything that is not plaintext HTTP: the egress cluster, or for a sniffed
    # port the service's own TCP proxy (it matched everything, so it becomes the default).
    listener["defaultFilterChain"] = (passthrough_filter_chain(mode) if proto == HTTP
                                      else {"filters": [tcp_proxy_filter(cluster)]})
    return listener


def build_http_proxy_listener(proxy: Proxy) -> dict | None:
    port = http_proxy_port(proxy)
    if port is None:
        return None
    ip = LOCALHOST if proxy.captured else proxy.ip_addresses[0]
    hcm = http_connection_manager(f"outbound_{ip}_{port}", rds=HTTP_PROXY_ROUTE)
    hcm["httpProtocolOptions"] = {"allowAbsoluteUrl": True}  # a proxy may be asked for http://host/path
    return {
        "name": f"{ip}_{port}",
        "address": address(ip, port),
        "trafficDirection": "OUTBOUND",
        "continueOnListenerFiltersTimeout": True,
        "filterChains": [{"filters": [hcm_filter(hcm)]}],
    }

