"""Route builder: RDS for a sidecar — virtual hosts per service, routes from VirtualServices.

Go: ``buildSidecarOutboundHTTPRouteConfig``
https://github.com/istio/istio/blob/1.19.0/pilot/pkg/networking/core/v1alpha3/httproute.go#L135-L227,
virtual-host domains ``generateVirtualHostDomains`` and ``generateAltVirtualHostsForKubernetesService``
(httproute.go#L553-L692), the catch-all virtual host (httproute.go#L766-L825); per-route
translation ``translateRoute``
https://github.com/istio/istio/blob/1.19.0/pilot/pkg/networking/core/v1alpha3/route/route.go#L397-L470,
destination cluster names ``GetDestinationCluster`` (route.go#L289-L308), source and gateway
scoping ``sourceMatchHTTP`` (route.go#L377-L394), matches
``TranslateRouteMatch`` (route.go#L878-L954), faults ``TranslateFault`` (route.go#L1181-L1233),
timeouts ``setTimeout`` (route.go#L1129-L1152) and retries ``retry.ConvertPolicy``
https://github.com/istio/istio/blob/1.19.0/pilot/pkg/networking/core/v1alpha3/route/retry/retry.go#L33-L103.

The shape, for a request with ``Host: reviews:9080`` reaching the sidecar's HTTP proxy listener:
route config ``http_proxy`` → virtual host ``reviews.default.svc.cluster.local:9080`` (its domains
list every way to spell the host: ``reviews:9080``, ``reviews.default:9080``, ...) → the first
route whose match fits → a cluster, or several with weights.

Names follow Istio: virtual hosts ``<host>:<port>``; a route is named after the VirtualService's
http entry (``<http.name>.<match.name>`` when both are set); a route Istio made up is ``default``.

Why one module of about 500 lines: it mirrors one Go pair, ``httproute.go`` (the route
configuration and virtual hosts) with ``route/route.go`` (one route's translation), which a reader
holds side by side; each half is in Go's order, so splitting it would separate a Go function from
its neighbours.

Istio also sets the deprecated ``max_grpc_timeout``; Envoy 1.40 warns about it, so mesh leaves it out.

Consistent hashing: a DestinationRule's ``consistentHash`` makes its clusters RING_HASH or MAGLEV
(``networking/cluster_traffic_policy.py``); what to hash — a header, a cookie, the source IP, a
query parameter — is the route's ``hashPolicy``: ``hashForService`` for a service's default route
and ``hashForHTTPDestination`` per VirtualService destination (route.go#L1296-L1388), turned into
Envoy's form by ``consistentHashToHashPolicy`` (route.go#L1251-L1294).

Simplifications, named: no mirroring, CORS or destination-level headers;
without capture (INTERCEPTION_MODE=NONE, the loopback demo) the catch-all virtual host always
blocks (``block_all``, 502) — there mesh must never forward traffic to an address it does not know.
"""

from __future__ import annotations

from mesh.config.host import subset_of as host_subset_of
from mesh.model.config import Config
from mesh.model.proxy import Proxy
from mesh.model.service import Service, ServiceProtocol
from mesh.networking.cluster import outbound_cluster_name
from mesh.networking.cluster_traffic_policy import proto_duration
from mesh.networking.extensions import FAULT_TYPE, PREVIOUS_HOSTS_TYPE
from mesh.networking.push_context import PushContext, resolve_gateway_name, resolve_short_name
from mesh.networking.sidecar import EgressListener, egress_listeners_of

HTTP_PROXY_ROUTE = "http_proxy"  # model.RDSHttpProxy
MESH = "mesh"  # the gateway name that means "every sidecar"
DEFAULT_ROUTE_NAME = "default"
BLOCK_ALL = "block_all"
ALLOW_ANY = "allow_any"
MAX_DIRECT_RESPONSE_BODY_BYTES = 1024 * 1024  # route.DefaultMaxDirectResponseBodySizeBytes


def build_sidecar_route_config(push: PushContext, proxy: Proxy, route_name: str) -> dict | None:
    """The RouteConfiguration called ``route_name``: ``http_proxy`` (all HTTP ports), a port number
    like ``9080`` (the ``0.0.0.0_9080`` listener), or ``<host>:<port>`` (a sniffed port's own
    listener). None for a name mesh does not build."""
    sniffed = ""
    if route_name == HTTP_PROXY_ROUTE:
        ports = None
    elif route_name.isdigit():
        ports = {int(route_name)}
    elif route_name.rpartition(":")[2].isdigit() and route_name.rpartition(":")[0]:
        sniffed, ports = route_name, {int(route_name.rpartition(":")[2])}
    else:
        return None
    # Only the services and VirtualServices of the egress listener on this port (or the catch-all):
    # ``GetEgressListenerForRDS``. An HTTP_PROXY listener takes every port, like http_proxy.
    egress = egress_listener_for_rds(push, next(iter(ports)) if ports else 0, route_name)
    if egress is not None and egress.port and egress.protocol == ServiceProtocol.HTTP_PROXY:
        ports = None
    vhosts = build_sidecar_virtual_hosts(push, proxy, ports, egress) if egress is not None else []
    vhosts.sort(key=lambda v: v["name"])
    if sniffed:
        vhosts = sniffed_virtual_hosts(vhosts, sniffed)
    else:
        vhosts.append(catch_all_virtual_host(proxy, push.outbound_traffic_mode))
    return {
        "name": route_name,
        "virtualHosts": vhosts,
        "validateClusters": False,
        "maxDirectResponseBodySizeBytes": MAX_DIRECT_RESPONSE_BODY_BYTES,
        # Per-port route configs match hosts without their port (the listener already fixed it).
        # Istio sets this on http_proxy too; there the domains carry ports, so mesh leaves it off.
        "ignorePortInHostMatching": ports is not None,
    }


def egress_listener_for_rds(push, port: int, route_name: str) -> EgressListener | None:
    """The proxy's egress listener that ``route_name`` belongs to (``GetEgressListenerForRDS``)."""
    scope = getattr(push, "scope", None)
    if scope is not None:
        return scope.egress_listener_for_rds(port, route_name)
    return egress_listeners_of(push)[0]


def sniffed_virtual_hosts(vhosts: list[dict], route_name: str) -> list[dict]:
    """``getVirtualHostsForSniffedServicePort``: the listener is the service's own, so its one
    virtual host answers any Host."""
    host = route_name.rpartition(":")[0]
    mine = [v for v in vhosts if route_name in v["domains"] or host in v["domains"]]
    if len(mine) == 1:
        mine[0] = dict(mine[0], domains=["*"])
    return mine


def build_sidecar_virtual_hosts(push: PushContext, proxy: Proxy, ports: set[int] | None,
                                egress: EgressListener | None = None) -> list[dict]:
    """Per port route configs hold every service of the egress listener with that port (whatever it
    speaks, as ``BuildSidecarOutboundVirtualHosts``); ``http_proxy`` the HTTP ports of all of them."""
    out = []
    if egress is None:
        egress = egress_listener_for_rds(push, next(iter(ports)) if ports else 0, HTTP_PROXY_ROUTE)
    services, vss = (egress.services, egress.virtual_services) if egress is not None else ([], [])
    for service in services:
        for port in service.ports:
            if ports is None:
                if not port.protocol.is_http() or port.protocol == "HTTP_PROXY":
                    continue
            elif port.port not in ports or port.protocol == "UDP":
                continue
            vs = _virtual_service_for(push, vss, service.hostname)
            if vs is not None:
                routes = build_routes_for_virtual_service(push, proxy, vs, port.port)
            else:
                routes = [default_route(outbound_cluster_name(port.port, "", service.hostname),
                                        f"{service.hostname}:{port.port}/*")]
                # hashForService: a DestinationRule's consistent hash needs the route to say what to hash
                hashing = hash_policy(service_consistent_hash(push, service.hostname, port.port))
                if hashing is not None:
                    routes[0]["route"]["hashPolicy"] = [hashing]
            if not routes:
                continue
            domains = virtual_host_domains(service, port.port, proxy.dns_domain, 0 if ports is None else port.port)
            if ports is None:  # ``mergeAllVirtualHosts``: one config for all ports keeps the port-bearing names
                domains = [d for d in domains if ":" in d] if port.port != 80 else domains
            out.append({
                "name": f"{service.hostname}:{port.port}",
                "domains": domains,
                "routes": routes,
                "includeRequestAttemptCount": True,
            })
    return out


def _virtual_service_for(push: PushContext, vss: list[Config], hostname: str) -> Config | None:
    """The oldest VirtualService naming this host (exactly first, then by wildcard)."""
    exact = [vs for vs in vss if hostname in push.vs_hosts(vs)]
    if exact:
        return exact[0]
    wild = [vs for vs in vss if any(host_subset_of(hostname, h) for h in push.vs_hosts(vs))]
    return wild[0] if wild else None


def virtual_host_domains(service: Service, port: int, proxy_domain: str, listener_port: int = 0) -> list[str]:
    """``generateVirtualHostDomains``: every Host header that means this service, from the caller's
    namespace. A caller in the same namespace may say ``reviews``; from elsewhere
    ``reviews.default``; anyone may use the FQDN or the ClusterIP. For a per-port route config
    (``listener_port`` set) the names come bare, since it ignores the port in matching
    (httproute.go#L553-L557); for ``http_proxy`` (0) each name comes bare and with ``:<port>``."""
    hostname = service.hostname
    names = [hostname]
    ih = hostname.find(".svc.")
    pd = proxy_domain.find(".svc.")
    if ih > 0 and pd > 0:
        short, ns_qualified = hostname.split(".", 1)[0], hostname[:ih]
        if hostname[len(short) + 1:ih] == proxy_domain[:pd]:
            names += [short, ns_qualified + ".svc", ns_qualified]
        else:
            names += [ns_qualified, ns_qualified + ".svc"]
    if service.resolution == "Passthrough" and service.registry == "Kubernetes":
        names += ["*." + n for n in names]  # a headless service's pods by name (httproute.go#L562-L567)
    if service.cluster_vip and service.cluster_vip not in ("None", "0.0.0.0"):
        names.append(service.cluster_vip)
    domains = []
    for name in names:
        domains.append(name)
        if not listener_port:
            domains.append(f"{name}:{port}")
    return domains


def catch_all_virtual_host(proxy: Proxy | None = None, outbound_traffic_mode: str = "ALLOW_ANY") -> dict:
    """``buildCatchAllVirtualHost`` (httproute.go#L766-L825): ``allow_any`` to PassthroughCluster, or
    ``block_all`` (502) under REGISTRY_ONLY. Without capture mesh always blocks: there the
    original destination would be an address in the root network namespace."""
    if proxy is not None and proxy.captured and outbound_traffic_mode != "REGISTRY_ONLY":
        return {"name": ALLOW_ANY, "domains": ["*"], "includeRequestAttemptCount": True, "routes": [{
            "name": ALLOW_ANY, "match": {"prefix": "/"}, "route": {"cluster": "PassthroughCluster", "timeout": "0s"}}]}
    return {"name": BLOCK_ALL, "domains": ["*"], "includeRequestAttemptCount": True, "routes": [{
        "name": BLOCK_ALL, "match": {"prefix": "/"}, "directResponse": {"status": 502}}]}


def default_route(cluster: str, operation: str) -> dict:
    return {"name": DEFAULT_ROUTE_NAME, "match": {"prefix": "/"}, "decorator": {"operation": operation},
            "route": {"cluster": cluster, "timeout": "0s", "retryPolicy": default_retry_policy()}}


# -- VirtualService → routes ---------------------------------------------------------------------

def build_routes_for_virtual_service(push: PushContext, proxy: Proxy, vs: Config, port: int,
                                     gateway_names: frozenset[str] = frozenset({"mesh"})) -> list[dict]:
    """Routes in the VirtualService's order; a route that matches everything ends the list,
    since nothing after it could ever be reached (``BuildHTTPRoutesForVirtualService``)."""
    routes = []
    for http in vs.spec.get("http") or []:
        catch_all = False
        for match in http.get("match") or [None]:
            route = translate_route(push, proxy, vs, http, match, port, gateway_names)
            if route is not None:
                routes.append(route)
                catch_all = match is None or _is_catch_all(match)
                if catch_all:
                    break
        if catch_all:
            break
    return routes


def translate_route(push: PushContext, proxy: Proxy, vs: Config, http: dict, match: dict | None,
                    port: int, gateway_names: frozenset[str] = frozenset({"mesh"})) -> dict | None:
    match = match or {}
    if match.get("port") and int(match["port"]) != port:
        return None
    if not _source_matches(match, proxy, gateway_names, vs.namespace):
        return None
    name = http.get("name", "")
    if match.get("name"):
        name = f"{name}.{match['name']}"
    out: dict = {"match": translate_match(match)}
    if name:
        out["name"] = name
    headers = http.get("headers") or {}
    _apply_headers(out, headers.get("request") or {}, "request")
    _apply_headers(out, headers.get("response") or {}, "response")
    if http.get("redirect"):
        out["redirect"] = _redirect(http["redirect"])
    elif http.get("directResponse"):
        out["directResponse"] = _direct_response(http["directResponse"])
    else:
        out["route"] = _route_action(push, vs, http, port)
    out["decorator"] = {"operation": f"{vs.name}:{port}/*" if "route" not in out or
                        "weightedClusters" in out["route"] else _operation(out["route"]["cluster"], port)}
    if http.get("fault"):
        out["typedPerFilterConfig"] = {"envoy.filters.http.fault": translate_fault(http["fault"])}
    out["metadata"] = {"filterMetadata": {"istio": {
        "config": f"/apis/networking.istio.io/v1alpha3/namespaces/{vs.namespace}/virtual-service/{vs.name}"}}}
    return out


def _operation(cluster: str, port: int) -> str:
    host = cluster.rsplit("|", 1)[-1]
    return f"{host}:{port}/*"


def _route_action(push: PushContext, vs: Config, http: dict, port: int) -> dict:
    destinations = [d for d in http.get("route") or [] if d.get("destination")]
    clusters = []
    for dst in destinations:
        d = dst["destination"]
        host = resolve_short_name(d.get("host", ""), vs.namespace, vs.domain or push.domain)
        weight = int(dst.get("weight", 0) or 0)
        if weight == 0 and len(destinations) > 1:
            continue  # a zero-weight destination among several receives nothing
        clusters.append((destination_cluster(d, host, push.service(host), port), weight))
    action: dict = {}
    # per destination, its rule's consistent hash (one entry each, as Istio appends them)
    hashes = [hash_policy(destination_consistent_hash(push, resolve_short_name(
        d["destination"].get("host", ""), vs.namespace, vs.domain or push.domain), d["destination"]))
        for d in destinations]
    if any(h is not None for h in hashes):
        action["hashPolicy"] = [h for h in hashes if h is not None]
    if len(clusters) == 1:
        action["cluster"] = clusters[0][0]
    elif clusters:
        action["weightedClusters"] = {"clusters": [{"name": c, "weight": w} for c, w in clusters]}
    else:
        action["cluster"] = "BlackHoleCluster"
    action["timeout"] = http.get("timeout", "0s")
    retry = convert_retry_policy(http.get("retries"))
    if retry is not None:
        action["retryPolicy"] = retry
    rewrite = http.get("rewrite") or {}
    if rewrite.get("uri"):
        action["prefixRewrite"] = rewrite["uri"]
    if rewrite.get("authority"):
        action["hostRewriteLiteral"] = rewrite["authority"]
    return action


def destination_cluster(destination: dict, host: str, service: Service | None, listener_port: int) -> str:
    """Which ``outbound|port|subset|host`` a destination means: its port if given, else the
    service's only port, else the port the request came in on."""
    port = listener_port
    if (destination.get("port") or {}).get("number"):
        port = int(destination["port"]["number"])
    elif service is not None and len(service.ports) == 1:
        port = service.ports[0].port
    return outbound_cluster_name(port, destination.get("subset", ""), host)


# -- consistent hashing: DestinationRule → route hash policy --------------------------------------

def _port_level_hash(settings: list[dict] | None, port: int | None) -> dict | None:
    """``portLevelSettingsConsistentHash``: the hash of the entry for this port, if any."""
    if port is None:
        return None
    for pls in settings or []:
        if int((pls.get("port") or {}).get("number") or 0) == port:
            return ((pls.get("loadBalancer") or {}).get("consistentHash"))
    return None


def service_consistent_hash(push: PushContext, hostname: str, port: int) -> dict | None:
    """``hashForService``: the rule's top-level hash, or its port-level entry's for this port."""
    rule = push.destination_rule(hostname)
    if rule is None:
        return None
    policy = rule.spec.get("trafficPolicy") or {}
    return (_port_level_hash(policy.get("portLevelSettings"), port)
            or (policy.get("loadBalancer") or {}).get("consistentHash"))


def destination_consistent_hash(push: PushContext, hostname: str, destination: dict) -> dict | None:
    """``hashForHTTPDestination``: the most specific of the subset's port-level hash, the subset's,
    the rule's port-level one (only for a destination naming its port) and the rule's own."""
    rule = push.destination_rule(hostname)
    if rule is None:
        return None
    policy = rule.spec.get("trafficPolicy") or {}
    port = int((destination.get("port") or {}).get("number") or 0) or None
    subset_hash = subset_pls_hash = None
    for subset in rule.spec.get("subsets") or []:
        if subset.get("name") == destination.get("subset", ""):
            sub_policy = subset.get("trafficPolicy") or {}
            subset_hash = (sub_policy.get("loadBalancer") or {}).get("consistentHash")
            subset_pls_hash = _port_level_hash(sub_policy.get("portLevelSettings"), port)
            break
    for found in (subset_pls_hash, subset_hash, _port_level_hash(policy.get("portLevelSettings"), port)):
        if found is not None:
            return found
    return (policy.get("loadBalancer") or {}).get("consistentHash")


def hash_policy(consistent_hash: dict | None) -> dict | None:
    """``consistentHashToHashPolicy``: what the ring (or Maglev table) hashes a request by. A
    hash with no key (only ``ringHash``/``maglev`` settings) gives no policy: Envoy then picks
    a random point on the ring for each request."""
    if not consistent_hash:
        return None
    if consistent_hash.get("httpHeaderName"):
        return {"header": {"headerName": consistent_hash["httpHeaderName"]}}
    if consistent_hash.get("httpCookie") is not None:
        cookie = consistent_hash["httpCookie"]
        out: dict = {"name": cookie.get("name", "")}
        if cookie.get("ttl"):
            out["ttl"] = proto_duration(cookie["ttl"])
        if cookie.get("path"):
            out["path"] = cookie["path"]
        return {"cookie": out}
    if "useSourceIp" in consistent_hash:
        return {"connectionProperties": {"sourceIp": bool(consistent_hash["useSourceIp"])}}
    if consistent_hash.get("httpQueryParameterName"):
        return {"queryParameter": {"name": consistent_hash["httpQueryParameterName"]}}
    return None


def default_retry_policy() -> dict:
    """Istio retries twice on connection failures and 503, preferring hosts not tried yet."""
    return {
        "retryOn": "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes",
        "numRetries": 2,
        "retriableStatusCodes": [503],
        "retryHostPredicate": [{"name": "envoy.retry_host_predicates.previous_hosts",
                                "typedConfig": {"@type": PREVIOUS_HOSTS_TYPE}}],
        "hostSelectionRetryMaxAttempts": "5",
    }


def convert_retry_policy(retries: dict | None) -> dict | None:
    """None keeps Istio's default; ``attempts: 0`` turns retries off; anything else overrides it."""
    if retries is None:
        return default_retry_policy()
    attempts = int(retries.get("attempts", 0) or 0)
    if attempts <= 0:
        return None
    policy = default_retry_policy()
    policy["numRetries"] = attempts
    if retries.get("retryOn"):
        conditions, codes = [], []
        for part in (p.strip() for p in retries["retryOn"].split(",")):
            if part.isdigit():
                codes.append(int(part))
            elif part:
                conditions.append(part)
        if codes and "retriable-status-codes" not in conditions:
            conditions.append("retriable-status-codes")
        policy["retryOn"] = ",".join(conditions)
        policy["retriableStatusCodes"] = codes or policy["retriableStatusCodes"]
    if retries.get("perTryTimeout"):
        policy["perTryTimeout"] = retries["perTryTimeout"]
    return policy


def translate_fault(fault: dict) -> dict:
    out: dict = {"@type": FAULT_TYPE}
    delay = fault.get("delay") or {}
    if delay:
        out["delay"] = {"fixedDelay": delay.get("fixedDelay", "0s"), "percentage": _percentage(delay)}
    abort = fault.get("abort") or {}
    if abort:
        out["abort"] = {"percentage": _percentage(abort)}
        if "grpcStatus" in abort:
            out["abort"]["grpcStatus"] = int(abort["grpcStatus"])
        else:
            out["abort"]["httpStatus"] = int(abort.get("httpStatus", 500))
    return out


def _percentage(spec: dict) -> dict:
    """``percentage.value`` (0–100, a double) becomes parts per million; the old integer
    ``percent`` parts per hundred; neither means always."""
    if "percentage" in spec:
        return {"numerator": int(round(float(spec["percentage"].get("value", 0)) * 10_000)), "denominator": "MILLION"}
    if "percent" in spec:
        return {"numerator": int(spec["percent"]), "denominator": "HUNDRED"}
    return {"numerator": 100, "denominator": "HUNDRED"}


def translate_match(match: dict) -> dict:
    out: dict = {}
    uri = match.get("uri") or {}
    if "exact" in uri:
        out["path"] = uri["exact"]
    elif "prefix" in uri:
        out["prefix"] = uri["prefix"]
    elif "regex" in uri:
        out["safeRegex"] = {"regex": uri["regex"]}
    else:
        out["prefix"] = "/"
    if match.get("ignoreUriCase"):
        out["caseSensitive"] = False
    headers = [_header_matcher(name, sm) for name, sm in sorted((match.get("headers") or {}).items())]
    headers += [dict(_header_matcher(name, sm), invertMatch=True)
                for name, sm in sorted((match.get("withoutHeaders") or {}).items())]
    for field, header in (("method", ":method"), ("authority", ":authority"), ("scheme", ":scheme")):
        if match.get(field):
            headers.append(_header_matcher(header, match[field]))
    if headers:
        out["headers"] = headers
    params = [{"name": name, "stringMatch": _string_match(sm)} for name, sm in sorted((match.get("queryParams") or {}).items())]
    if params:
        out["queryParameters"] = params
    return out


def _header_matcher(name: str, sm: dict) -> dict:
    if not sm:  # an empty match means "the header is present"
        return {"name": name, "presentMatch": True}
    return {"name": name, "stringMatch": _string_match(sm)}


def _string_match(sm: dict) -> dict:
    if "exact" in sm:
        return {"exact": sm["exact"]}
    if "prefix" in sm:
        return {"prefix": sm["prefix"]}
    if "regex" in sm:
        return {"safeRegex": {"regex": sm["regex"]}}
    return {"prefix": ""}


def _is_catch_all(match: dict) -> bool:
    uri = match.get("uri") or {}
    keys = set(match) - {"name", "uri"}
    return not keys and (not uri or uri.get("prefix") == "/" or uri.get("regex") == "*")


def _source_matches(match: dict, proxy: Proxy, gateway_names: frozenset[str], vs_namespace: str) -> bool:
    """``sourceMatchHTTP``: a match naming ``gateways`` applies to those gateways only (``mesh``
    is every sidecar); otherwise it is scoped by the caller's labels and namespace."""
    gateways = match.get("gateways")
    if gateways:
        return any(resolve_gateway_name(g, vs_namespace) in gateway_names for g in gateways)
    labels = match.get("sourceLabels") or {}
    if any(proxy.labels.get(k) != v for k, v in labels.items()):
        return False
    ns = match.get("sourceNamespace")
    return not ns or ns == proxy.namespace


def _apply_headers(out: dict, ops: dict, direction: str) -> None:
    """``set`` overwrites, ``add`` appends, ``remove`` drops (``TranslateHeadersOperations``)."""
    to_add = [{"header": {"key": k, "value": v}, "appendAction": "OVERWRITE_IF_EXISTS_OR_ADD"}
              for k, v in sorted((ops.get("set") or {}).items())]
    to_add += [{"header": {"key": k, "value": v}, "appendAction": "APPEND_IF_EXISTS_OR_ADD"}
               for k, v in sorted((ops.get("add") or {}).items())]
    if to_add:
        out[f"{direction}HeadersToAdd"] = to_add
    if ops.get("remove"):
        out[f"{direction}HeadersToRemove"] = list(ops["remove"])


def _redirect(spec: dict) -> dict:
    out: dict = {}
    if spec.get("uri"):
        out["pathRedirect"] = spec["uri"]
    if spec.get("authority"):
        out["hostRedirect"] = spec["authority"]
    if spec.get("port"):
        out["portRedirect"] = int(spec["port"])
    if spec.get("scheme"):
        out["schemeRedirect"] = spec["scheme"]
    codes = {301: "MOVED_PERMANENTLY", 302: "FOUND", 303: "SEE_OTHER", 307: "TEMPORARY_REDIRECT",
             308: "PERMANENT_REDIRECT"}
    out["responseCode"] = codes.get(int(spec.get("redirectCode", 301)), "MOVED_PERMANENTLY")
    return out


def _direct_response(spec: dict) -> dict:
    out: dict = {"status": int(spec.get("status", 200))}
    body = spec.get("body") or {}
    if "string" in body:
        out["body"] = {"inlineString": body["string"]}
    return out
