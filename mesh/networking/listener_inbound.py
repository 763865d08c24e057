"""Inbound listeners of a sidecar: ``virtualInbound`` on 15006 with a chain per workload port.

Go: ``buildInboundListeners`` and ``inboundVirtualListener``
https://github.com/istio/istio/blob/1.19.0/pilot/pkg/networking/core/v1alpha3/listener_inbound.go#L200-L255,
``buildInboundListener`` (#L267-L299), ``inboundChainForOpts`` (#L303-L325), the chain configs per
target port ``getFilterChainsByServicePort`` (#L336-L402), listener filters ``populateListenerFilters``
and the inspectors' port predicates (#L502-L663), the passthrough and blackhole chains
``buildInboundPassthroughChains`` / ``buildInboundBlackhole`` (#L700-L762), the inbound HCM
``buildSidecarInboundHTTPOpts`` (#L765-L799), TCP chains ``buildInboundNetworkFilters``
(#L822-L852), and the inline route ``buildSidecarInboundHTTPRouteConfig``
https://github.com/istio/istio/blob/1.19.0/pilot/pkg/networking/core/v1alpha3/httproute.go#L113-L131.

**REDIRECT.** iptables sends every connection to the pod to 15006; ``virtualInbound`` (0.0.0.0:15006,
``original_dst`` listener filter) recovers where it was going and picks a chain:

* ``virtualInbound-blackhole`` for connections to 15006 itself (they would loop);
* per workload port (the endpoint's *target* port), chains named ``0.0.0.0_<targetPort>``
  matching ``destination_port`` plus the transport/ALPN of the port's mTLS mode and protocol
  (``networking/filterchain_options.py``): HTTP chains end in an HCM whose inline route sends
  everything to ``inbound|<targetPort>||``, TCP chains in a ``tcp_proxy`` to that cluster;
* passthrough chains for ports no Service names (``virtualInbound-catchall-http`` and
  ``virtualInbound``, matching any IPv4 destination ``0.0.0.0/0``) to ``InboundPassthroughClusterIpv4``.

Every inbound HCM forwards the client's certificate details (``x-forwarded-client-cert``:
``APPEND_FORWARD``, subject, URI and DNS SANs) and names itself ``istio-envoy``.

**NONE** (no capture): Istio builds no inbound listener from a workload's ports — a Sidecar's
``ingress`` would declare them (#L406-L414). mesh keeps the one its loopback demo needs, as if a
Sidecar ingress declared it: ``virtualInbound`` bound to ``<pod-ip>:15006``, routing by the
``Host`` header's port to ``inbound|<port>||`` (a STATIC cluster to the app on the pod IP), with
the mTLS chains of ``getFilterChainMatchOptions`` for HTTP. Its per-port modes collapse to the
strictest of the workload's ports, and it binds the pod IP rather than the wildcard.

**Sidecar ingress listeners** (``buildInboundChainConfigs``, #L401-L488): when the proxy's Sidecar
declares ``ingress``, those ports *replace* the Service ports (``PILOT_ALLOW_SIDECAR_SERVICE_INBOUND_LISTENER_MERGE``
is off by default). Each is a chain ``<bind>_<port>`` matching its port, in the protocol it declares,
to ``inbound|<port>||`` (whose endpoint its ``defaultEndpoint`` sets, ``networking/cluster.py``);
its route's operation names the synthetic host ``<sidecar>.<namespace>``. ``bind`` defaults to the
proxy's global unicast address, else 0.0.0.0 (``getSidecarInboundBindIPs``,
https://github.com/istio/istio/blob/1.19.0/pilot/pkg/networking/core/v1alpha3/listener_address.go#L86-L96).
``captureMode`` decides where the chain goes (``getBindToPort``, #L490-L498): NONE (or DEFAULT on a
proxy nothing captures) makes it a listener of its own bound to ``<bind>:<port>``, without
``original_dst`` (``inboundCustomListener``, #L257-L265); otherwise it joins ``virtualInbound``.
Without capture there is then no ``virtualInbound`` at all: the ingress listeners are the inbound side.

Simplifications, named: IPv4 only; per-port ``portLevelMtls`` passthrough chains are left out
(ports without a Service use the workload-wide mode); ingress ``tls`` is ignored (istiod reads it
only with ``ENABLE_TLS_ON_SIDECAR_INGRESS``).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from mesh.config.protocol import parse as protocol_parse
from mesh.model.config import Config
from mesh.model.proxy import Proxy
from mesh.networking.authn import DISABLE, PERMISSIVE, STRICT, mtls_mode
from mesh.networking.cluster import BLACKHOLE, INBOUND_PASSTHROUGH_IPV4, inbound_cluster_name
from mesh.networking.extensions import HTTP_INSPECTOR_TYPE, ORIGINAL_DST_TYPE
from mesh.networking.filterchain_options import (
    AUTO,
    HTTP,
    TCP,
    TLS,
    FilterChainMatchOption,
    filter_chain_match_options,
    listener_protocol,
)
from mesh.networking.listener_builder import (
    WILDCARD,
    address,
    hcm_filter,
    http_connection_manager,
    tcp_proxy_filter,
)
from mesh.networking.push_context import ServiceInstance
from mesh.networking.tls import has_workload_cert, istio_mutual_downstream, tls_inspector

INBOUND_PORT = 15006  # MeshConfig.proxyInboundListenPort
VIRTUAL_INBOUND = "virtualInbound"
VIRTUAL_INBOUND_BLACKHOLE = "virtualInbound-blackhole"
VIRTUAL_INBOUND_CATCHALL_HTTP = "virtualInbound-catchall-http"
ENVOY_SERVER_NAME = "istio-envoy"  # accesslog.go#L36-L37
ORIGINAL_DST = "envoy.filters.listener.original_dst"
HTTP_INSPECTOR = "envoy.filters.listener.http_inspector"


def http_inspector() -> dict:
    return {"name": HTTP_INSPECTOR, "typedConfig": {"@type": HTTP_INSPECTOR_TYPE}}


def original_dst() -> dict:
    return {"name": ORIGINAL_DST, "typedConfig": {"@type": ORIGINAL_DST_TYPE}}


def build_inbound_listeners(proxy: Proxy, instances: list[ServiceInstance],
                            peer_authentications: list[Config], trust_domain: str,
                            ingress: list[dict] | None = None, sidecar_host: str = "") -> list[dict]:
    """``buildInboundListeners``. With a Sidecar's ``ingress`` listeners (``ingress``; the
    synthetic ``<sidecar>.<namespace>`` host names them in routes) those replace the service ports."""
    if ingress:
        return build_ingress_listeners(proxy, ingress, sidecar_host, peer_authentications, trust_domain)
    if proxy.captured:
        return [build_virtual_inbound_listener(proxy, instances, peer_authentications, trust_domain)]
    if not instances:
        return []
    return [build_bound_inbound_listener(proxy, instances, peer_authentications, trust_domain)]


@dataclass(frozen=True)
class IngressChain:
    """One Sidecar ingress listener as ``buildInboundChainConfigs`` reads it (#L414-L476)."""

    port: int  # the listener port, which is also the target port (the API has no targetPort)
    protocol: str
    bind: str
    bind_to_port: bool

    @property
    def name(self) -> str:
        return f"{self.bind}_{self.port}"

    @property
    def cluster(self) -> str:
        return inbound_cluster_name(self.port)


def global_unicast_ip(addresses: list[str]) -> str | None:
    """``GlobalUnicastIP``: the first address that is neither loopback, link-local, multicast nor
    unspecified (private ranges count, as in Go's ``IsGlobalUnicast``)."""
    for a in addresses:
        try:
            ip = ipaddress.ip_address(a)
        except ValueError:
            continue
        if not (ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_unspecified
                or a == "255.255.255.255"):
            return a
    return None


def ingress_chains(proxy: Proxy, ingress: list[dict]) -> list[IngressChain]:
    """Per ingress listener: bound to a real port when its ``captureMode`` is NONE (DEFAULT: when
    the proxy is not captured, ``getBindToPort``); ``bind`` defaults to the proxy's global unicast IP,
    else 0.0.0.0 (``getSidecarInboundBindIPs``); a port listed twice keeps its first listener."""
    by_port: dict[int, IngressChain] = {}
    for listener in ingress:
        port = listener.get("port") or {}
        number = int(port.get("number") or 0)
        mode = listener.get("captureMode") or "DEFAULT"
        bind_to_port = (not proxy.captured) if mode == "DEFAULT" else mode == "NONE"
        bind = listener.get("bind") or global_unicast_ip(proxy.ip_addresses) or WILDCARD
        by_port.setdefault(number, IngressChain(number, listener_protocol(protocol_parse(port.get("protocol") or "")),
                                                bind, bind_to_port))
    return [by_port[p] for p in sorted(by_port)]


def build_ingress_listeners(proxy: Proxy, ingress: list[dict], sidecar_host: str,
                            peer_authentications: list[Config], trust_domain: str) -> list[dict]:
    """A chain per ingress port, to ``inbound|<port>||``; chains that bind a port become listeners of
    their own (``inboundCustomListener``), the rest join ``virtualInbound`` under capture."""
    virtual, bound = [], []
    for ic in ingress_chains(proxy, ingress):
        chains = _chains(filter_chain_match_options(_port_mode(proxy, peer_authentications, ic.port), ic.protocol),
                         ic.name, ic.name, ic.cluster, {"destinationPort": ic.port},
                         _inline_route_config(ic.cluster, ic.port, sidecar_host), f"inbound_{ic.name}", trust_domain)
        if not ic.bind_to_port:
            virtual += chains
            continue
        listener = {"name": ic.name, "address": address(ic.bind, ic.port), "trafficDirection": "INBOUND",
                    "continueOnListenerFiltersTimeout": True, "filterChains": chains}
        inspectors = inspectors_for(chains)
        if inspectors:
            listener["listenerFilters"] = inspectors
        listener["listenerFiltersTimeout"] = "0s"  # MeshConfig.protocolDetectionTimeout
        bound.append(listener)
    if proxy.captured:
        return [virtual_inbound_listener(proxy, peer_authentications, trust_domain, virtual)] + bound
    return bound


def _port_mode(proxy: Proxy, peer_authentications: list[Config], port: int) -> str:
    """The mTLS mode of one target port; DISABLE when the proxy has no certificate to serve TLS."""
    if not has_workload_cert(proxy.metadata):
        return DISABLE
    return mtls_mode(peer_authentications, proxy.namespace, proxy.labels, port)


def inbound_hcm(stat_prefix: str, route_config: dict) -> dict:
    hcm = http_connection_manager(stat_prefix, route_config=route_config)
    hcm.update(forwardClientCertDetails="APPEND_FORWARD",
               setCurrentClientCertDetails={"subject": True, "dns": True, "uri": True},
               serverName=ENVOY_SERVER_NAME)
    return hcm


def inbound_route(cluster: str, operation: str) -> dict:
    """``BuildDefaultHTTPInboundRoute``: no timeout, gRPC deadlines not capped (route.go#L1097-L1108)."""
    return {"name": "default", "match": {"prefix": "/"}, "decorator": {"operation": operation},
            "route": {"cluster": cluster, "timeout": "0s",
                      "maxStreamDuration": {"maxStreamDuration": "0s", "grpcTimeoutHeaderMax": "0s"}}}


def _inline_route_config(cluster: str, service_port: int, hostname: str) -> dict:
    return {"name": cluster, "validateClusters": False, "virtualHosts": [{
        "name": f"inbound|http|{service_port}", "domains": ["*"],
        "routes": [inbound_route(cluster, f"{hostname}:{service_port}/*")]}]}


def _chains(option_set: tuple[FilterChainMatchOption, ...], name: str, http_name: str, cluster: str,
            match_extra: dict, http_route: dict, stat_prefix: str, trust_domain: str) -> list[dict]:
    """``inboundChainForOpts``: one chain per option, HTTP or TCP filters, TLS where the option says."""
    chains = []
    for opt in option_set:
        chain: dict = {"filterChainMatch": dict(match_extra, **opt.match())}
        if opt.protocol == HTTP:
            chain["filters"] = [hcm_filter(inbound_hcm(stat_prefix, http_route))]
            chain["name"] = http_name
        else:
            chain["filters"] = [tcp_proxy_filter(cluster)]
            chain["name"] = name
        if opt.tls:
            chain["transportSocket"] = istio_mutual_downstream(trust_domain, tcp=opt.protocol == TCP)
        chains.append(chain)
    return chains


def _protocol(instance: ServiceInstance) -> str:
    port = instance.service.port_by_number(instance.port)
    return listener_protocol(port.protocol) if port is not None else TCP


def build_virtual_inbound_listener(proxy: Proxy, instances: list[ServiceInstance],
                                   peer_authentications: list[Config], trust_domain: str) -> dict:
    chains = []
    by_target: dict[int, ServiceInstance] = {}
    for inst in instances:  # the oldest Service wins a target port (``reportInboundConflict``)
        by_target.setdefault(inst.endpoint.endpoint_port or inst.port, inst)
    for target in sorted(by_target):
        inst = by_target[target]
        cluster, name = inbound_cluster_name(target), f"{WILDCARD}_{target}"
        chains += _chains(filter_chain_match_options(_port_mode(proxy, peer_authentications, target), _protocol(inst)),
                          name, name, cluster, {"destinationPort": target},
                          _inline_route_config(cluster, inst.port, inst.service.hostname), f"inbound_{name}",
                          trust_domain)
    return virtual_inbound_listener(proxy, peer_authentications, trust_domain, chains)


def virtual_inbound_listener(proxy: Proxy, peer_authentications: list[Config], trust_domain: str,
                             port_chains: list[dict]) -> dict:
    """``inboundVirtualListener``: the blackhole and passthrough chains, then ``port_chains``."""
    chains = [{"filterChainMatch": {"destinationPort": INBOUND_PORT}, "name": VIRTUAL_INBOUND_BLACKHOLE,
               "filters": [tcp_proxy_filter(BLACKHOLE)]}]
    # Passthrough: any IPv4 destination on a port no Service declares (``ForPassthrough``: port 0).
    passthrough_route = {"name": INBOUND_PASSTHROUGH_IPV4, "validateClusters": False, "virtualHosts": [{
        "name": "inbound|http|0", "domains": ["*"], "routes": [inbound_route(INBOUND_PASSTHROUGH_IPV4, ":0/*")]}]}
    chains += _chains(filter_chain_match_options(_port_mode(proxy, peer_authentications, 0), AUTO),
                      VIRTUAL_INBOUND, VIRTUAL_INBOUND_CATCHALL_HTTP, INBOUND_PASSTHROUGH_IPV4,
                      {"prefixRanges": [{"addressPrefix": "0.0.0.0", "prefixLen": 0}]},
                      passthrough_route, INBOUND_PASSTHROUGH_IPV4, trust_domain)
    chains += port_chains
    listener = {"name": VIRTUAL_INBOUND, "address": address(WILDCARD, INBOUND_PORT), "trafficDirection": "INBOUND",
                "continueOnListenerFiltersTimeout": True, "filterChains": chains}
    listener["listenerFilters"] = [original_dst()] + inspectors_for(chains)
    listener["listenerFiltersTimeout"] = "0s"  # MeshConfig.protocolDetectionTimeout
    return listener


def inspectors_for(chains: list[dict]) -> list[dict]:
    """``populateListenerFilters``: a TLS inspector where some chain matches ``tls``, an HTTP
    inspector where some chain matches plaintext HTTP ALPNs, each disabled on the ports that need
    neither (port 0 stands for chains without a port)."""
    needs: dict[int, list[bool]] = {}
    for chain in chains:
        m = chain.get("filterChainMatch") or {}
        port = int(m.get("destinationPort") or 0)
        tls = m.get("transportProtocol") == TLS
        http = any(a in ("http/1.1", "h2c") for a in m.get("applicationProtocols") or [])
        old = needs.get(port, [False, False])
        needs[port] = [old[0] or tls, old[1] or http]
    out = []
    if any(t for t, _ in needs.values()):
        out.append(_with_predicate(tls_inspector(), needs, 0))
    if any(h for _, h in needs.values()):
        out.append(_with_predicate(http_inspector(), needs, 1))
    return out


def _with_predicate(listener_filter: dict, needs: dict[int, list[bool]], which: int) -> dict:
    if which == 0 and needs.get(0, [False, False])[0]:
        # enabled by default: switch it off on the ports that do not need it
        ports = sorted(p for p, n in needs.items() if p and not n[0])
        predicate = _exclude_ports(ports) if ports else None
    elif which == 0:
        ports = sorted(p for p, n in needs.items() if p and n[0])
        predicate = {"notMatch": _exclude_ports(ports)} if ports else None
    else:
        ports = sorted(p for p, n in needs.items() if not n[1])
        predicate = _exclude_ports(ports) if ports else None
    if predicate is not None:
        listener_filter = dict(listener_filter, filterDisabled=predicate)
    return listener_filter


def _exclude_ports(ports: list[int]) -> dict:
    """``listenerPredicateExcludePorts``: true for connections to any of ``ports``."""
    ranges = [{"destinationPortRange": {"start": p, "end": p + 1}} for p in ports]
    return ranges[0] if len(ranges) == 1 else {"orMatch": {"rules": ranges}}


# -- NONE: mesh's bound inbound listener --------------------------------------------------------

def bound_inbound_mode(proxy: Proxy, instances: list[ServiceInstance], peer_authentications: list[Config]) -> str:
    """The strictest mode over the workload's ports (one listener serves them all)."""
    modes = {_port_mode(proxy, peer_authentications, i.endpoint.endpoint_port) for i in instances}
    return next((m for m in (STRICT, PERMISSIVE) if m in modes), DISABLE)


def build_bound_inbound_listener(proxy: Proxy, instances: list[ServiceInstance],
                                 peer_authentications: list[Config], trust_domain: str) -> dict:
    ip = proxy.ip_addresses[0]
    ports = sorted({i.port for i in instances})
    host = {i.port: i.service.hostname for i in reversed(instances)}
    vhosts = [{"name": f"inbound|http|{p}", "domains": [f"*:{p}"],
               "routes": [inbound_route(inbound_cluster_name(p), f"{host[p]}:{p}/*")]} for p in ports]
    vhosts.append({"name": "inbound|http|default", "domains": ["*"],
                   "routes": [inbound_route(inbound_cluster_name(ports[0]), f"{host[ports[0]]}:{ports[0]}/*")]})
    route_config = {"name": "inbound|http", "virtualHosts": vhosts, "validateClusters": False}
    mode = bound_inbound_mode(proxy, instances, peer_authentications)
    chains = _chains(filter_chain_match_options(mode, HTTP), "inbound|http", "inbound|http", "",
                     {}, route_config, f"inbound_0.0.0.0_{INBOUND_PORT}", trust_domain)
    listener: dict = {"name": VIRTUAL_INBOUND, "address": address(ip, INBOUND_PORT), "trafficDirection": "INBOUND",
                      "continueOnListenerFiltersTimeout": True, "filterChains": chains}
    if mode == DISABLE:
        for chain in chains:
            chain.pop("filterChainMatch", None)  # one chain: nothing to tell apart
    else:
        listener["listenerFilters"] = [tls_inspector()]
    return listener
