"""``python -m mesh proxy-config clusters|listeners|routes|endpoints <pod>.<ns>``: one proxy's config.

Go: ``istioctl proxy-config`` asks the Envoy of a pod for its ``/config_dump``
(https://github.com/istio/istio/blob/1.19.0/istioctl/pkg/proxyconfig/proxyconfig.go#L143-L153)
and prints summaries
(https://github.com/istio/istio/blob/1.19.0/istioctl/pkg/writer/envoy/configdump/cluster.go#L65-L104,
listener.go#L285-L343, route.go#L50-L171, endpoint.go#L112-L138). mesh asks the other end
instead: the server's ``/debug/config_dump?proxyID=`` (what istiod would send that proxy now, in
the same shape), so no Envoy admin port is needed. ``-o json`` prints the resources themselves.

Columns and rules follow istioctl's verbose summaries:

- clusters: SERVICE FQDN, PORT, SUBSET, DIRECTION, TYPE, DESTINATION RULE — a name
  ``outbound|9080|v1|reviews.default.svc.cluster.local`` is split into its parts; other names
  (BlackHoleCluster...) print whole with ``-`` elsewhere;
- listeners: ADDRESSES, PORT, MATCH, DESTINATION (per filter chain: ``Route: <name>`` for RDS,
  ``Cluster: <name>`` for TCP proxy);
- routes: NAME, VHOST NAME, DOMAINS, MATCH, VIRTUAL SERVICE — domains shortened as istioctl does
  (names without a port, ``.svc.cluster.local`` variants folded); mesh's sidecar domains all
  carry a port, so when none is left the port-bearing ones are shown the same way;
- endpoints: ENDPOINT, STATUS, LOCALITY, CLUSTER from the EDS part of the dump.
"""

from __future__ import annotations

import json

from mesh.cli import UsageError
from mesh.cli._debug_api import add_server_flags, get_json, server_url, table

SECTIONS = {  # what the user types → (the dump section, the list in it, the key holding each resource)
    "clusters": ("ClustersConfigDump", "dynamicActiveClusters", "cluster"),
    "listeners": ("ListenersConfigDump", "dynamicListeners", "activeState.listener"),
    "routes": ("RoutesConfigDump", "dynamicRouteConfigs", "routeConfig"),
    "endpoints": ("EndpointsConfigDump", "dynamicEndpointConfigs", "endpointConfig"),
}
ALIASES = {"cluster": "clusters", "c": "clusters", "listener": "listeners", "l": "listeners",
           "route": "routes", "r": "routes", "endpoint": "endpoints", "ep": "endpoints"}


def register(subparsers) -> None:
    p = subparsers.add_parser("proxy-config", help="a proxy's clusters, listeners, routes or endpoints, "
                              "from a running server", description=__doc__)
    p.add_argument("kind", choices=sorted(SECTIONS) + sorted(ALIASES), metavar="clusters|listeners|routes|endpoints")
    p.add_argument("proxy", help="<pod name>.<namespace>, as proxy-status lists it")
    add_server_flags(p)
    p.add_argument("-o", "--output", choices=["table", "json"], default="table", help="output format")
    p.add_argument("--fqdn", default=None, help="clusters: only this service FQDN")
    p.add_argument("--port", type=int, default=None, help="clusters and listeners: only this port")
    p.add_argument("--name", default=None, help="routes: only this route config")
    p.add_argument("--cluster", default=None, help="endpoints: only this cluster")
    p.set_defaults(func=run)


def run(args) -> int:
    kind = ALIASES.get(args.kind, args.kind)
    name, dot, namespace = args.proxy.rpartition(".")
    if not dot or not name or not namespace:
        raise UsageError(f"proxy {args.proxy!r}: expected <pod name>.<namespace>")
    base = server_url(args)
    connected = [row.get("NAME") for row in get_json(base, "/debug/proxy_status")]
    if args.proxy not in connected:
        hint = f"; connected: {', '.join(sorted(connected))}" if connected else "; no proxy is connected"
        raise UsageError(f"proxy {args.proxy} is not connected to the server at {base}{hint}")
    dump = get_json(base, "/debug/config_dump", {"proxyID": args.proxy})
    resources = [r for r in section(dump, kind) if wanted(kind, r, args)]
    if args.output == "json":
        print(json.dumps(resources, indent=2))
        return 0
    header, rows = SUMMARIES[kind](resources, args)
    print(table(header, rows))
    return 0


def section(dump: dict, kind: str) -> list[dict]:
    """The resources of one kind from a ``/config_dump``-shaped document."""
    type_name, list_key, path = SECTIONS[kind]
    for config in dump.get("configs", []):
        if config.get("@type", "").endswith("." + type_name):
            out = []
            for entry in config.get(list_key, []):
                for key in path.split("."):
                    entry = entry.get(key, {})
                out.append(entry)
            return out
    return []


def wanted(kind: str, resource: dict, args) -> bool:
    """The filter flags, applied to tables and JSON alike (as istioctl's ``Verify`` methods)."""
    if kind == "clusters":
        _, port, _, fqdn = parse_cluster_name(resource.get("name", ""))
        return (not args.fqdn or fqdn == args.fqdn) and (args.port is None or port == str(args.port))
    if kind == "listeners":
        port = resource.get("address", {}).get("socketAddress", {}).get("portValue", 0)
        return args.port is None or port == args.port
    if kind == "routes":
        return not args.name or resource.get("name") == args.name
    return not args.cluster or resource.get("clusterName") == args.cluster


# -- clusters ---------------------------------------------------------------------------------
def parse_cluster_name(name: str) -> tuple[str, str, str, str]:
    """(direction, port, subset, fqdn) of ``direction|port|subset|fqdn`` (``model.ParseSubsetKey``)."""
    parts = name.split("|")
    if len(parts) < 4:
        return "-", "-", "-", name
    return parts[0], parts[1], parts[2] or "-", parts[3]


def describe_management(metadata: dict | None) -> str:
    """``name.namespace`` of the Istio config behind a resource, from its ``istio.config`` metadata."""
    path = ((metadata or {}).get("filterMetadata", {}).get("istio", {}) or {}).get("config", "")
    if not path:
        return ""
    prefix = "/apis/networking.istio.io/v1alpha3/namespaces/"
    pieces = path.split("/")
    if path.startswith(prefix) and len(pieces) == 8:
        return f"{pieces[7]}.{pieces[5]}"
    return "<unknown>"


def cluster_rows(clusters: list[dict], args) -> tuple[list[str], list[list[str]]]:
    rows = []
    for c in clusters:
        direction, port, subset, fqdn = parse_cluster_name(c.get("name", ""))
        rows.append([fqdn, port, subset, direction, c.get("type", "STATIC"), describe_management(c.get("metadata"))])
    rows.sort(key=lambda r: (r[0], r[3], _num(r[1]), r[2]))
    return ["SERVICE FQDN", "PORT", "SUBSET", "DIRECTION", "TYPE", "DESTINATION RULE"], rows


# -- listeners --------------------------------------------------------------------------------
def describe_chain_match(match: dict | None) -> str:
    match = match or {}
    conds = []
    if "destinationPort" in match:
        conds.append(f"port={match['destinationPort']}")
    if match.get("serverNames"):
        conds.append("SNI: " + ",".join(match["serverNames"]))
    if match.get("transportProtocol"):
        conds.append("Trans: " + match["transportProtocol"])
    if match.get("applicationProtocols"):
        conds.append("App: " + ",".join(match["applicationProtocols"]))
    return "; ".join(conds) or "ALL"


def describe_chain_destination(chain: dict) -> str:
    for f in chain.get("filters", []):
        config = f.get("typedConfig", {})
        if f.get("name") == "envoy.filters.network.http_connection_manager":
            if "rds" in config:
                return f"Route: {config['rds'].get('routeConfigName', '')}"
            vhosts = config.get("routeConfig", {}).get("virtualHosts", [])
            routes = [describe_match(r.get("match", {})) for vh in vhosts for r in vh.get("routes", [])]
            return "Inline Route: " + ", ".join(routes)
        if f.get("name") == "envoy.filters.network.tcp_proxy":
            return f"Cluster: {config.get('cluster', '')}"
    return "Non-HTTP/Non-TCP"


def listener_rows(listeners: list[dict], args) -> tuple[list[str], list[list[str]]]:
    rows = []
    for li in listeners:
        socket = li.get("address", {}).get("socketAddress", {})
        port = socket.get("portValue", 0)
        for chain in li.get("filterChains", []):
            rows.append([socket.get("address", ""), str(port), describe_chain_match(chain.get("filterChainMatch")),
                         describe_chain_destination(chain)])
    rows.sort(key=lambda r: (_num(r[1]), r[0]))
    return ["ADDRESSES", "PORT", "MATCH", "DESTINATION"], rows


# -- routes -----------------------------------------------------------------------------------
def describe_match(match: dict) -> str:
    conds = []
    if match.get("prefix"):
        conds.append(f"{match['prefix']}*")
    if match.get("path"):
        conds.append(match["path"])
    if match.get("safeRegex"):
        conds.append(f"regex {match['safeRegex'].get('regex', '')}")
    return " ".join(conds)


def describe_domains(domains: list[str], shown: int = 2) -> str:
    """The shortest way to name a virtual host: istioctl's ``describeRouteDomains``."""
    if len(domains) <= 1:
        return "".join(domains)
    candidates = [d for d in domains if ":" not in d] or list(domains)
    present = set(candidates)
    folded = []
    for d in candidates:
        host, colon, port = d.partition(":")
        if any(host.endswith(suffix) and f"{host[:-len(suffix)]}{colon}{port}" in present
               for suffix in (".svc.cluster.local", ".svc")):
            continue
        folded.append(d)
    if len(folded) > shown:
        return f"{', '.join(folded[:shown])} + {len(folded) - shown} more..."
    return ", ".join(folded)


def route_rows(configs: list[dict], args) -> tuple[list[str], list[list[str]]]:
    rows = []
    for rc in configs:
        for vh in rc.get("virtualHosts", []):
            domains = describe_domains(vh.get("domains", []))
            for r in vh.get("routes", []):
                rows.append([rc.get("name", ""), vh.get("name", ""), domains, describe_match(r.get("match", {})),
                             describe_management(r.get("metadata"))])
            if not vh.get("routes"):
                rows.append([rc.get("name", ""), vh.get("name", ""), domains, "/*", "404"])
    return ["NAME", "VHOST NAME", "DOMAINS", "MATCH", "VIRTUAL SERVICE"], rows


# -- endpoints --------------------------------------------------------------------------------
def endpoint_rows(assignments: list[dict], args) -> tuple[list[str], list[list[str]]]:
    rows = []
    for cla in assignments:
        cluster = cla.get("clusterName", "")
        for group in cla.get("endpoints", []):
            loc = group.get("locality", {})
            locality = "/".join(loc[k] for k in ("region", "zone", "subZone") if loc.get(k))
            for lb in group.get("lbEndpoints", []):
                socket = lb.get("endpoint", {}).get("address", {}).get("socketAddress", {})
                rows.append([f"{socket.get('address', '')}:{socket.get('portValue', '')}",
                             lb.get("healthStatus", "UNKNOWN"), locality, cluster])
    rows.sort(key=lambda r: (r[3], r[0]))
    return ["ENDPOINT", "STATUS", "LOCALITY", "CLUSTER"], rows


SUMMARIES = {"clusters": cluster_rows, "listeners": listener_rows, "routes": route_rows, "endpoints": endpoint_rows}


def _num(text: str) -> int:
    return int(text) if text.isdigit() else -1
