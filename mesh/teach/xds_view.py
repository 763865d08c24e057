"""Plain-text views of generated xDS for notebook 08: the generator map, and one proxy's clusters,
endpoints, listeners and routes as tables.

Nothing here is part of the mini-istiod. ``initial_config`` asks the generators of stage 8 what a
sidecar would get on connecting — the same calls ADS makes for a new stream (mesh/xds/ads.py,
``_send`` with no push request; Go: ``pushXds`` https://github.com/istio/istio/blob/1.19.0/pilot/pkg/xds/xdsgen.go#L96-L170),
with the EDS and RDS names Envoy would subscribe to after its clusters and listeners arrive. The
tables read the resources as the builders made them (protobuf-JSON dicts), in the order generated.
Go's own summaries of the same data are ``istioctl proxy-config``'s
(https://github.com/istio/istio/blob/1.19.0/istioctl/pkg/writer/envoy/configdump/cluster.go#L65-L104).
"""

from __future__ import annotations

from argparse import Namespace

from mesh.cli import proxy_config
from mesh.model.proxy import Proxy
from mesh.networking.push_context import PushContext
from mesh.teach.views import TextView, table
from mesh.xds.debug import envoy_json
from mesh.xds.generator import ProxyState, Resource, WatchedResource
from mesh.xds.push_recorder import eds_names, rds_names
from mesh.xds.types import CLUSTER, ENDPOINT, LISTENER, PUSH_ORDER, ROUTE, short_name

# What InitGenerators registers in istiod 1.19.0 (discovery.go#L536-L572), in its order, and what
# each key builds. Facts about istiod, listed so the notebook can put mesh's map next to it.
ISTIOD_GENERATORS: tuple[tuple[str, str, str], ...] = (
    ("envoy.config.cluster.v3.Cluster", "CdsGenerator", "clusters (CDS)"),
    ("envoy.config.listener.v3.Listener", "LdsGenerator", "listeners (LDS)"),
    ("envoy.config.route.v3.RouteConfiguration", "RdsGenerator", "routes (RDS)"),
    ("envoy.config.endpoint.v3.ClusterLoadAssignment", "EdsGenerator", "endpoints (EDS)"),
    ("envoy.extensions.transport_sockets.tls.v3.Secret", "SecretGen", "certificates from Kubernetes secrets "
     "(SDS, gateways' credentialName); only with a credentials controller"),
    ("envoy.config.core.v3.TypedExtensionConfig", "EcdsGenerator", "extension configs (ECDS: Wasm plugins)"),
    ("istio.networking.nds.v1.NameTable", "NdsGenerator", "DNS name table for the agent's DNS proxy (NDS)"),
    ("istio.mesh.v1alpha1.ProxyConfig", "PcdsGenerator", "proxy config: the trust bundle (PCDS)"),
    ("istio.workload.Address / Workload / Service", "WorkloadGenerator", "ambient: workloads for ztunnel"),
    ("istio.security.Authorization", "WorkloadRBACGenerator", "ambient: authorization policies for ztunnel"),
    ("grpc, grpc/<type>", "GrpcConfigGenerator / EdsGenerator", "proxyless gRPC clients"),
    ("api, api/<type>", "apigen / EdsGenerator", "Istio config itself over MCP-over-xDS"),
    ("api/istio.io/connect, event", "StatusGen", "connection and push events for other istiods"),
    ("istio.io/debug", "DebugGen", "debug endpoints over xDS (istioctl x internal-debug)"),
    ("envoy.config.bootstrap.v3.Bootstrap", "BootstrapGenerator", "a bootstrap for the proxy"),
)


def generator_table(generators: dict) -> TextView:
    """mesh's type URL → generator map, in push order, with the module that holds each generator."""
    order = {t: i for i, t in enumerate(PUSH_ORDER)}
    rows = [(short_name(url), url.removeprefix("type.googleapis.com/"), type(gen).__name__, type(gen).__module__)
            for url, gen in sorted(generators.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0]))]
    return table(("type", "type URL", "generator", "module"), rows)


def istiod_generators_table(generators: dict) -> TextView:
    """istiod's generator map next to mesh's: which keys mesh fills too."""
    ours = {url.removeprefix("type.googleapis.com/") for url in generators}
    rows = [(key, gen, "yes" if key in ours else "-", what) for key, gen, what in ISTIOD_GENERATORS]
    return table(("istiod key (type URL)", "istiod generator", "in mesh", "builds"), rows)


# -- one proxy's config ------------------------------------------------------------------------------
def initial_config(proxy: Proxy, push: PushContext, generators: dict) -> dict[str, list[Resource]]:
    """What a newly connected sidecar gets, per type URL in push order: everything for CDS and LDS,
    then EDS for the EDS clusters it was given and RDS for the route names its listeners carry."""
    state = ProxyState(proxy, push.service_instances(proxy))
    out: dict[str, list[Resource]] = {}
    for type_url in PUSH_ORDER:
        names: list[str] = []
        if type_url == ENDPOINT:
            names = eds_names(out.get(CLUSTER, []))
        elif type_url == ROUTE:
            names = rds_names(out.get(LISTENER, []))
        generator = generators.get(type_url)
        if generator is not None:
            out[type_url] = generator.generate(state, push, WatchedResource(type_url, names=names), None) or []
    return out


def _short_host(host: str) -> str:
    return host.split(".svc.", 1)[0] if ".svc." in host else host


def clusters_table(clusters: list[Resource]) -> TextView:
    """Name split into Istio's parts, discovery type, load balancer, and the DestinationRule behind it."""
    rows = []
    for c in clusters:
        parts = c.name.split("|")
        direction, port, subset, host = parts if len(parts) == 4 else ("-", "-", "-", c.name)
        rule = (((c.body.get("metadata") or {}).get("filterMetadata") or {}).get("istio") or {}).get("config", "")
        rows.append((direction, port, subset or "-", _short_host(host) or "-", c.body.get("type", "-"),
                     c.body.get("lbPolicy", "-"), rule.rsplit("/", 1)[-1] if rule else "-"))
    return table(("direction", "port", "subset", "host", "type", "lb policy", "destination rule"), rows)


def endpoints_table(assignments: list[Resource]) -> TextView:
    """One row per endpoint: the cluster it belongs to, its address, locality and health."""
    rows = []
    for cla in assignments:
        groups = cla.body.get("endpoints") or []
        if not groups:
            rows.append((cla.name, "(no endpoints)", "", ""))
        for group in groups:
            loc = group.get("locality") or {}
            where = "/".join(v for v in (loc.get("region"), loc.get("zone")) if v) or "-"
            for lb in group.get("lbEndpoints") or []:
                addr = ((lb.get("endpoint") or {}).get("address") or {}).get("socketAddress") or {}
                rows.append((cla.name, f"{addr.get('address')}:{addr.get('portValue')}", where,
                             lb.get("healthStatus", "-")))
    return table(("cluster", "endpoint", "locality", "health"), rows)


def _filters(chain: dict) -> list[dict]:
    return [f.get("typedConfig") or {} for f in chain.get("filters") or []]


def listeners_table(listeners: list[Resource]) -> TextView:
    """Address, direction, and where each filter chain sends HTTP: a named route (RDS) or an inline one."""
    rows = []
    for li in listeners:
        addr = (li.body.get("address") or {}).get("socketAddress") or {}
        for chain in li.body.get("filterChains") or [{}]:
            for hcm in _filters(chain):
                if "rds" in hcm:
                    dest = f"routes from RDS: {hcm['rds'].get('routeConfigName')}"
                elif "routeConfig" in hcm:
                    clusters = sorted({r.get("route", {}).get("cluster", "")
                                       for vh in hcm["routeConfig"].get("virtualHosts") or []
                                       for r in vh.get("routes") or []})
                    dest = f"inline route {hcm['routeConfig'].get('name')} → {', '.join(clusters)}"
                else:
                    dest = hcm.get("cluster", "-")
                rows.append((li.name, f"{addr.get('address')}:{addr.get('portValue')}",
                             li.body.get("trafficDirection", "-"), dest))
    return table(("listener", "address", "direction", "HTTP goes to"), rows)


def describe_destination(route: dict) -> str:
    """``v1 90%, v3 10%`` for weighted clusters, the cluster's subset or host otherwise."""
    action = route.get("route") or {}
    weighted = (action.get("weightedClusters") or {}).get("clusters")
    if weighted:
        return ", ".join(f"{_subset_or_host(c['name'])} {c.get('weight', 0)}%" for c in weighted)
    if "cluster" in action:
        return _subset_or_host(action["cluster"])
    if "directResponse" in route:
        return f"direct response {route['directResponse'].get('status')}"
    return "-"


def _subset_or_host(cluster: str) -> str:
    parts = cluster.split("|")
    if len(parts) == 4:
        return parts[2] or _short_host(parts[3])
    return cluster


def _match(match: dict) -> str:
    for key in ("prefix", "path", "safeRegex"):
        if key in match:
            value = match[key] if key != "safeRegex" else match[key].get("regex")
            text = f"{key} {value}"
            break
    else:
        text = "-"
    headers = [h.get("name", "") for h in match.get("headers") or []]
    return text + (f" + headers {', '.join(headers)}" if headers else "")


def routes_table(configs: list[Resource], hosts: tuple[str, ...] | None = None) -> TextView:
    """One row per route: route config, virtual host, a few of its domains, the match, where it goes.
    ``hosts`` keeps only virtual hosts whose name starts with one of them (e.g. ``("reviews.",)``)."""
    rows = []
    for cfg in configs:
        for vh in cfg.body.get("virtualHosts") or []:
            if hosts and not vh.get("name", "").startswith(hosts):
                continue
            domains = vh.get("domains") or []
            shown = ", ".join(domains[:2]) + (f" (+{len(domains) - 2})" if len(domains) > 2 else "")
            for r in vh.get("routes") or []:
                rows.append((cfg.name, vh.get("name"), shown, _match(r.get("match") or {}), describe_destination(r)))
    return table(("route config", "virtual host", "domains", "match", "destination"), rows)


def route_destination(configs: list[Resource], host_prefix: str) -> str:
    """Where the first route of the first virtual host named ``host_prefix...`` sends traffic."""
    for cfg in configs:
        for vh in cfg.body.get("virtualHosts") or []:
            if vh.get("name", "").startswith(host_prefix) and vh.get("routes"):
                return describe_destination(vh["routes"][0])
    return "-"


def config_counts(config: dict[str, list[Resource]]) -> TextView:
    """How many resources of each type."""
    return table(("type", "resources", "names"),
                 [(short_name(t), len(rs), ", ".join(r.name for r in rs[:2]) + (" …" if len(rs) > 2 else ""))
                  for t, rs in config.items()])


def vs_weights(store, name: str, namespace: str) -> str:
    """A VirtualService's first HTTP route as ``v1=90 v3=10`` (what the user wrote), or ``-``."""
    cfg = store.get("VirtualService", name, namespace) if store is not None else None
    if cfg is None:
        return "-"
    routes = ((cfg.spec.get("http") or [{}])[0]).get("route") or []
    return " ".join(f"{(r.get('destination') or {}).get('subset', '(all)')}={r.get('weight', 100)}" for r in routes)


def route_timeline(server, pod: dict, host_prefix: str, vs: tuple[str, str], times: list[float],
                   captured: bool = False) -> TextView:
    """Replay ``server`` (a VirtualClock) to each instant, build a fresh PushContext as a full push
    would, and generate ``pod``'s config: the VirtualService as written next to the route generated
    for ``host_prefix`` and the clusters for that host (``captured``: as ``proxy_for_pod`` says)."""
    from mesh.demo.pods import proxy_for_pod

    env = server.environment
    rows = []
    for t in times:
        server.clock.advance_to(t)
        push = PushContext.build(env.service_discovery, env.config_store, domain=env.domain_suffix)
        config = initial_config(proxy_for_pod(pod, env.domain_suffix, captured), push, server.xds_generators)
        host = [c.name.split("|")[2] or "(all)" for c in config[CLUSTER] if f"|{host_prefix}" in c.name]
        rows.append((f"{t:g}", vs_weights(env.config_store, *vs), ", ".join(host),
                     route_destination(config[ROUTE], host_prefix)))
    return table(("t (s)", "VirtualService (as written)", f"{host_prefix.rstrip('.')} clusters (subsets)",
                  "generated route"), rows)


def last_sent(recorder, proxy_id: str, type_name: str) -> list[Resource]:
    """The resources of one type (``CDS``, ``LDS``, ...) last sent to a proxy, by a recorded push or
    by its connect (a SotW CDS/LDS response holds the whole set)."""
    found: list[Resource] = []
    for rec in recorder.records:
        for delivery in rec.deliveries:
            if delivery.proxy == proxy_id:
                for sent in delivery.sent:
                    if sent.type == type_name:
                        found = list(sent.resources)
    return found


def proxy_config_table(kind: str, resources: list[Resource], fqdn: str | None = None,
                       port: int | None = None) -> TextView:
    """``mesh proxy-config <kind>`` (istioctl's summary columns, ``mesh/cli/proxy_config.py``) over
    resources as the generators built them, in the field names Envoy's config_dump uses."""
    type_url = {"clusters": CLUSTER, "listeners": LISTENER, "routes": ROUTE}[kind]
    args = Namespace(fqdn=fqdn, port=port, name=None, cluster=None)
    bodies = [envoy_json(type_url, r.body) for r in resources]
    header, rows = proxy_config.SUMMARIES[kind]([b for b in bodies if proxy_config.wanted(kind, b, args)], args)
    return table(header, rows)
