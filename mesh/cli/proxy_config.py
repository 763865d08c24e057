"""``python -m mesh proxy-config all|bootstrap|clusters|listeners|routes|endpoints|secret <pod>.<ns>``.

Go: ``istioctl proxy-config`` asks the Envoy of a pod for its ``/config_dump``
(https://github.com/istio/istio/blob/1.19.0/istioctl/pkg/proxyconfig/proxyconfig.go#L143-L153)
and prints summaries
(https://github.com/istio/istio/blob/1.19.0/istioctl/pkg/writer/envoy/configdump/cluster.go#L65-L104,
listener.go#L285-L343, route.go#L50-L171, endpoint.go#L112-L138; ``all`` is clusters, listeners,
routes, secrets and endpoints in turn, configdump.go#L125-L146; secrets as
https://github.com/istio/istio/blob/1.19.0/istioctl/pkg/writer/compare/sds/util.go#L143-L232 reads them).

Two sources, one shape (Envoy's ``/config_dump``, snake_case field names):

* by default the server's ``/debug/config_dump?proxyID=`` — what istiod would send that proxy
  now (``include_eds=true`` for endpoints). It has no bootstrap and no secrets, as istiod's has
  none: the agent writes the one and serves the other;
* ``--from-envoy <admin address>``: a running Envoy's own ``/config_dump?include_eds`` (its admin
  port, loopback only), which is what istioctl reads — bootstrap and secrets included.

``-o json`` prints the resources themselves (``all -o json`` and ``bootstrap``: the dump / the
bootstrap section whole). Columns and rules follow istioctl's verbose summaries:

- clusters: SERVICE FQDN, PORT, SUBSET, DIRECTION, TYPE, DESTINATION RULE — a name
  ``outbound|9080|v1|reviews.default.svc.cluster.local`` is split into its parts; other names
  (BlackHoleCluster...) print whole with ``-`` elsewhere;
- listeners: ADDRESSES, PORT, MATCH, DESTINATION (per filter chain, the default chain last:
  ``Route: <name>`` for RDS, ``Cluster: <name>`` for TCP proxy);
- routes: NAME, VHOST NAME, DOMAINS, MATCH, VIRTUAL SERVICE — domains shortened as istioctl does
  (names without a port, ``.svc.cluster.local`` variants folded); when every domain carries a
  port (``http_proxy``), the port-bearing ones are shown the same way;
- endpoints: ENDPOINT, STATUS, LOCALITY, CLUSTER from the EDS part of the dump;
- secret: RESOURCE NAME, TYPE, STATUS, VALID CERT, SERIAL NUMBER, NOT AFTER, NOT BEFORE.
"""

from __future__ import annotations

import base64
import datetime
import json
import urllib.parse

from mesh.cli import UsageError
from mesh.cli._debug_api import add_server_flags, get_json, server_url, table
from mesh.util.net import is_loopback

SECTIONS = {  # what the user types → (the dump section, [(list, key path of each resource)])
    "clusters": ("ClustersConfigDump", [("static_clusters", "cluster"), ("dynamic_active_clusters", "cluster")]),
    "listeners": ("ListenersConfigDump", [("static_listeners", "listener"),
                                          ("dynamic_listeners", "active_state.listener")]),
    "routes": ("RoutesConfigDump", [("static_route_configs", "route_config"),
                                    ("dynamic_route_configs", "route_config")]),
    "endpoints": ("EndpointsConfigDump", [("static_endpoint_configs", "endpoint_config"),
                                          ("dynamic_endpoint_configs", "endpoint_config")]),
    "secret": ("SecretsConfigDump", [("static_secrets", "secret"), ("dynamic_active_secrets", "secret")]),
}
KINDS = ["all", "bootstrap", "clusters", "listeners", "routes", "endpoints", "secret"]
ALIASES = {"cluster": "clusters", "c": "clusters", "listener": "listeners", "l": "listeners",
           "route": "routes", "r": "routes", "endpoint": "endpoints", "ep": "endpoints",
           "secrets": "secret", "s": "secret", "b": "bootstrap", "a": "all"}
ALL_ORDER = ("clusters", "listeners", "routes", "secret", "endpoints")  # PrintFullSummary


def register(subparsers) -> None:
    p = subparsers.add_parser("proxy-config", help="a proxy's config: all, bootstrap, clusters, listeners, routes, "
                              "endpoints or secret, from a running server or Envoy", description=__doc__)
    p.add_argument("kind", choices=KINDS + sorted(ALIASES), metavar="|".join(KINDS))
    p.add_argument("proxy", nargs="?", default=None,
                   help="<pod name>.<namespace>, as proxy-status lists it (not needed with --from-envoy)")
    add_server_flags(p)
    p.add_argument("--from-envoy", dest="from_envoy", default=None, metavar="ADMIN",
                   help="read a running Envoy's own /config_dump from its admin address "
                   "(e.g. 127.0.0.1:15000, or unix:<path> for an admin socket)")
    p.add_argument("-o", "--output", choices=["table", "json"], default=None,
                   help="output format (default: table; json for bootstrap)")
    p.add_argument("--fqdn", default=None, help="clusters: only this service FQDN")
    p.add_argument("--port", type=int, default=None, help="clusters and listeners: only this port")
    p.add_argument("--name", default=None, help="routes: only this route config")
    p.add_argument("--cluster", default=None, help="endpoints: only this cluster")
    p.set_defaults(func=run)


def run(args) -> int:
    kind = ALIASES.get(args.kind, args.kind)
    output = args.output or ("json" if kind == "bootstrap" else "table")
    dump = envoy_config_dump(args.from_envoy) if args.from_envoy else server_config_dump(args)
    if kind == "bootstrap":
        if output == "json":
            print(json.dumps(bootstrap(dump), indent=2))
            return 0
        raise UsageError("proxy-config bootstrap: only -o json (the bootstrap is one document)")
    if kind == "all" and output == "json":
        print(json.dumps(dump, indent=2))
        return 0
    if output == "json":
        print(json.dumps([r for r in section(dump, kind) if wanted(kind, r, args)], indent=2))
        return 0
    blocks = []
    for k in (ALL_ORDER if kind == "all" else (kind,)):
        header, rows = SUMMARIES[k]([r for r in section(dump, k) if wanted(k, r, args)], args)
        blocks.append(table(header, rows))
    print("\n\n".join(blocks))
    return 0


def server_config_dump(args) -> dict:
    if not args.proxy:
        raise UsageError("proxy-config: name the proxy (<pod name>.<namespace>), or read an Envoy with --from-envoy")
    name, dot, namespace = args.proxy.rpartition(".")
    if not dot or not name or not namespace:
        raise UsageError(f"proxy {args.proxy!r}: expected <pod name>.<namespace>")
    base = server_url(args)
    connected = [row.get("NAME") for row in get_json(base, "/debug/proxy_status")]
    if args.proxy not in connected:
        hint = f"; connected: {', '.join(sorted(connected))}" if connected else "; no proxy is connected"
        raise UsageError(f"proxy {args.proxy} is not connected to the server at {base}{hint}")
    return get_json(base, "/debug/config_dump", {"proxyID": args.proxy, "include_eds": "true"})


def envoy_admin_url(address: str) -> str:
    """``127.0.0.1:15000`` or ``http://127.0.0.1:15000`` → the admin base URL; loopback only.
    (``unix:<path>`` is handled by ``envoy_config_dump``.)"""
    text = address if "://" in address else f"http://{address}"
    parsed = urllib.parse.urlsplit(text)
    if parsed.scheme != "http" or not parsed.hostname or parsed.port is None:
        raise UsageError(f"--from-envoy {address}: expected <loopback address>:<admin port>")
    if not is_loopback(parsed.hostname):
        raise UsageError(f"--from-envoy {address}: mesh only talks to loopback addresses (127.0.0.0/8)")
    return f"http://{parsed.hostname}:{parsed.port}"


def envoy_config_dump(address: str) -> dict:
    """Envoy's own ``/config_dump`` with endpoints (``include_eds``, as istioctl asks for them), from
    an admin address on loopback or, as ``unix:<path>``, on a Unix socket (which reaches an Envoy
    in a pod's network namespace from outside it)."""
    if address.startswith("unix:"):
        return _unix_get_json(address[len("unix:"):], "/config_dump?include_eds")
    base = envoy_admin_url(address)
    return get_json(base, "/config_dump", {"include_eds": ""},
                    unreachable=f"no Envoy admin interface answers at {base}")


def _unix_get_json(path: str, url_path: str, timeout: float = 10.0):
    import http.client
    import socket

    class Connection(http.client.HTTPConnection):
        def connect(self):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(path)

    conn = Connection("localhost", timeout=timeout)
    try:
        conn.request("GET", url_path)
        resp = conn.getresponse()
        body = resp.read()
    except OSError as err:
        raise UsageError(f"no Envoy admin interface answers at unix:{path} ({err})") from err
    finally:
        conn.close()
    if resp.status != 200:
        raise UsageError(f"unix:{path}{url_path}: {resp.status} {resp.reason}")
    try:
        return json.loads(body)
    except ValueError as err:
        raise UsageError(f"unix:{path}{url_path}: the answer is not JSON ({err})") from err


def bootstrap(dump: dict) -> dict:
    for config in dump.get("configs", []):
        if config.get("@type", "").endswith(".BootstrapConfigDump"):
            return config
    return {}


def section(dump: dict, kind: str) -> list[dict]:
    """The resources of one kind from a ``/config_dump``-shaped document, static ones first."""
    type_name, lists = SECTIONS[kind]
    out = []
    for config in dump.get("configs", []):
        if not config.get("@type", "").endswith("." + type_name):
            continue
        for list_key, path in lists:
            for entry in config.get(list_key, []):
                for key in path.split("."):
                    entry = entry.get(key, {})
                out.append(entry)
    return out


def wanted(kind: str, resource: dict, args) -> bool:
    """The filter flags, applied to tables and JSON alike (as istioctl's ``Verify`` methods)."""
    if kind == "clusters":
        _, port, _, fqdn = parse_cluster_name(resource.get("name", ""))
        return (not args.fqdn or fqdn == args.fqdn) and (args.port is None or port == str(args.port))
    if kind == "listeners":
        port = resource.get("address", {}).get("socket_address", {}).get("port_value", 0)
        return args.port is None or port == args.port
    if kind == "routes":
        return not args.name or resource.get("name") == args.name
    if kind == "endpoints":
        return not args.cluster or resource.get("cluster_name") == args.cluster
    return True


# -- clusters ---------------------------------------------------------------------------------
def parse_cluster_name(name: str) -> tuple[str, str, str, str]:
    """(direction, port, subset, fqdn) of ``direction|port|subset|fqdn`` (``model.ParseSubsetKey``)."""
    parts = name.split("|")
    if len(parts) < 4:
        return "-", "-", "-", name
    return parts[0], parts[1], parts[2] or "-", parts[3]


def describe_management(metadata: dict | None) -> str:
    """``name.namespace`` of the Istio config behind a resource, from its ``istio.config`` metadata."""
    path = ((metadata or {}).get("filter_metadata", {}).get("istio", {}) or {}).get("config", "")
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
    if "destination_port" in match:
        conds.append(f"port={match['destination_port']}")
    if match.get("server_names"):
        conds.append("SNI: " + ",".join(match["server_names"]))
    if match.get("transport_protocol"):
        conds.append("Trans: " + match["transport_protocol"])
    if match.get("application_protocols"):
        conds.append("App: " + ",".join(match["application_protocols"]))
    for cidr in match.get("prefix_ranges") or []:
        conds.append(f"Addr: {cidr.get('address_prefix', '')}/{cidr.get('prefix_len', 0)}")
    return "; ".join(conds) or "ALL"


def describe_chain_destination(chain: dict) -> str:
    for f in chain.get("filters", []):
        config = f.get("typed_config", {})
        if f.get("name") == "envoy.filters.network.http_connection_manager":
            if "rds" in config:
                return f"Route: {config['rds'].get('route_config_name', '')}"
            vhosts = config.get("route_config", {}).get("virtual_hosts", [])
            routes = [describe_match(r.get("match", {})) for vh in vhosts for r in vh.get("routes", [])]
            return "Inline Route: " + ", ".join(routes)
        if f.get("name") == "envoy.filters.network.tcp_proxy":
            return f"Cluster: {config.get('cluster', '')}"
    return "Non-HTTP/Non-TCP"


def listener_rows(listeners: list[dict], args) -> tuple[list[str], list[list[str]]]:
    rows = []
    for li in listeners:
        socket = li.get("address", {}).get("socket_address", {})
        port = socket.get("port_value", 0)
        chains = li.get("filter_chains", []) + ([li["default_filter_chain"]] if li.get("default_filter_chain") else [])
        for chain in chains:
            rows.append([socket.get("address", ""), str(port), describe_chain_match(chain.get("filter_chain_match")),
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
    if match.get("safe_regex"):
        conds.append(f"regex {match['safe_regex'].get('regex', '')}")
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
        for vh in rc.get("virtual_hosts", []):
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
        cluster = cla.get("cluster_name", "")
        for group in cla.get("endpoints", []):
            loc = group.get("locality", {})
            locality = "/".join(loc[k] for k in ("region", "zone", "sub_zone") if loc.get(k))
            for lb in group.get("lb_endpoints", []):
                socket = lb.get("endpoint", {}).get("address", {}).get("socket_address", {})
                rows.append([f"{socket.get('address', '')}:{socket.get('port_value', '')}",
                             lb.get("health_status", "UNKNOWN"), locality, cluster])
    rows.sort(key=lambda r: (r[3], r[0]))
    return ["ENDPOINT", "STATUS", "LOCALITY", "CLUSTER"], rows


# -- secrets ----------------------------------------------------------------------------------
def secret_rows(secrets: list[dict], args, now: datetime.datetime | None = None) -> tuple[list[str], list[list[str]]]:
    """One row per SDS secret: its certificate (the chain's first, or the trusted CA) decoded."""
    from cryptography import x509

    now = now or datetime.datetime.now(datetime.UTC)
    rows = []
    for secret in secrets:
        data = (secret.get("tls_certificate", {}).get("certificate_chain", {}).get("inline_bytes")
                or secret.get("validation_context", {}).get("trusted_ca", {}).get("inline_bytes") or "")
        if not data:
            rows.append([secret.get("name", ""), "", "ACTIVE", "false", "", "", ""])
            continue
        cert = x509.load_pem_x509_certificate(base64.b64decode(data))
        try:
            is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            is_ca = False
        after, before = cert.not_valid_after_utc, cert.not_valid_before_utc
        rows.append([secret.get("name", ""), "CA" if is_ca else "Cert Chain", "ACTIVE",
                     str(before < now < after).lower(), f"{cert.serial_number:x}",
                     after.strftime("%Y-%m-%dT%H:%M:%SZ"), before.strftime("%Y-%m-%dT%H:%M:%SZ")])
    return ["RESOURCE NAME", "TYPE", "STATUS", "VALID CERT", "SERIAL NUMBER", "NOT AFTER", "NOT BEFORE"], rows


SUMMARIES = {"clusters": cluster_rows, "listeners": listener_rows, "routes": route_rows, "endpoints": endpoint_rows,
             "secret": secret_rows}


def _num(text: str) -> int:
    return int(text) if text.isdigit() else -1
