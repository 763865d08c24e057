"""PushContext: one consistent snapshot of the mesh that every generator of one push reads.

Go: ``PushContext`` https://github.com/istio/istio/blob/1.19.0/pilot/pkg/model/push_context.go#L200
built by ``InitContext`` (#L1236-L1270): ``createNewContext`` (#L1272-L1295) builds every index,
``updateContext`` (#L1297-L1428) rebuilds only those the kinds in ``ConfigsUpdated`` can affect and
takes the others from the previous push. The indexes, each a field here that a notebook can print:

* ``service_index`` (``initServiceRegistry``, #L1432-L1484): services by hostname and namespace,
  and by visibility — ``public`` (exportTo ``*``), ``private_by_namespace`` (``.``),
  ``exported_to_namespace`` (named namespaces); exportTo ``~`` hides a service from everyone.
  Kubernetes Services take it from the ``networking.istio.io/exportTo`` annotation, ServiceEntries
  from ``exportTo``; without either MeshConfig ``defaultServiceExportTo`` decides (#L1666-L1694).
* ``virtual_service_index`` (``initVirtualServices``, #L1539-L1653): VirtualServices by gateway,
  split the same three ways by ``exportTo`` (default ``defaultVirtualServiceExportTo``).
* ``destination_rule_index`` (``initDestinationRules`` / ``setDestinationRules``, #L1746-L1757 and #L1776-L1874):
  per namespace the rules usable there (``namespace_local``), the rules exported from it
  (``exported_by_namespace``) and the root namespace's private ones (``root_namespace_local``).
  Each host holds a list of ``ConsolidatedDestRule``: rules for one host in one namespace are
  *merged* as ``mergeDestinationRule`` does
  (https://github.com/istio/istio/blob/1.19.0/pilot/pkg/model/destination_rule.go#L41-L121), oldest
  first — a later rule's subsets are appended unless their name is already there, its top-level
  ``trafficPolicy`` is taken only if the merged rule has none, its ``exportTo`` only if the first
  had none — and the result remembers every rule it came from (``sources``, Go's ``from``). A rule
  with a ``workloadSelector`` is private to its namespace and stays an entry of its own (merged only
  with rules of the same selector); ``SidecarScope.destination_rule`` picks the entry whose selector
  matches the proxy, else the one without a selector (sidecar.go#L570-L596).
  ``destination_rule_for`` (``destinationRule``, #L1111-L1189) looks a host up in the proxy's
  namespace (the root namespace's private rules for a proxy there), then the rules the service's
  namespace exports, then the root namespace's.
* ``sidecar_index`` (``initSidecarScopes``, #L1708-L1743): the SidecarScopes of every namespace
  (``mesh/networking/sidecar.py``); ``sidecar_scope_for(proxy)`` is ``getSidecarScope`` (#L1043-L1108).

Short host names are made fully qualified as ``ResolveShortnameToFQDN`` does
(https://github.com/istio/istio/blob/1.19.0/pilot/pkg/model/config.go#L226-L258).

Why a snapshot: a push builds config for many proxies over some time while registries keep
changing. Reading one frozen view keeps every proxy of that push consistent with each other.

``services``, ``virtual_services`` and ``destination_rule(host)`` stay the mesh-wide view (what a
builder called without a proxy sees, and what gateways read); per proxy the builders read a
``ScopedPush`` (sidecar.py), which answers the same names from the proxy's SidecarScope.

Simplifications, named: istiod lives in ``pilot/pkg/model``; mesh's PushContext also indexes
Gateways and PeerAuthentications but not EnvoyFilters, AuthorizationPolicies, Telemetry or
WasmPlugins; no namespace/mesh-wide DestinationRule inheritance (``PILOT_ENABLE_DESTINATION_RULE_INHERITANCE``,
off by default) and no ``DuplicatedSubsets`` metric. Gateways read every VirtualService bound to
them, whatever its exportTo.

mesh's own fast paths (not istiod's): ``destination_rule_for`` answers once per push for all proxy
namespaces that cannot change the answer (``DestinationRuleIndex.namespaces_that_matter``), and
``memo_by_identity`` finds what was built for a shared resource list by the list's identity.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TypeVar

from mesh.config.host import subset_of as host_subset_of
from mesh.model.config import Config, ConfigStore
from mesh.model.proxy import Proxy
from mesh.model.service import IstioEndpoint, Service, ServiceDiscovery
from mesh.util.net import is_ip_address

T = TypeVar("T")

VIRTUAL_SERVICE = "VirtualService"
DESTINATION_RULE = "DestinationRule"
GATEWAY = "Gateway"
PEER_AUTHENTICATION = "PeerAuthentication"
SIDECAR = "Sidecar"
MESH_GATEWAY = "mesh"  # constants.IstioMeshGateway
# MeshConfig defaultServiceExportTo / defaultVirtualServiceExportTo / defaultDestinationRuleExportTo
# when unset (initDefaultExportMaps): visible everywhere.
DEFAULT_EXPORT_TO = {"service": ("*",), "virtual_service": ("*",), "destination_rule": ("*",)}


def resolve_short_name(host: str, namespace: str, domain: str = "cluster.local") -> str:
    """``reviews`` in namespace ``default`` → ``reviews.default.svc.cluster.local``.
    Names with a dot, ``*`` and IP addresses are taken as they are (as in Istio)."""
    if not host or host == "*" or "." in host or is_ip_address(host):
        return host
    return f"{host}.{namespace}.svc.{domain}" if namespace else host


@dataclass(frozen=True)
class ServiceInstance:
    """A proxy's own service port: what its inbound side serves (``model.ServiceInstance``)."""

    service: Service
    port: int  # the service port
    endpoint: IstioEndpoint


PUBLIC, PRIVATE, NONE = "*", ".", "~"  # visibility.Instance values of exportTo

# updateContext's switch (push_context.go#L1308-L1342): which index each changed kind rebuilds.
# Gateway API kinds are converted into VirtualServices and Gateways, so they rebuild both.
_GATEWAY_API_KINDS = ("HTTPRoute", "TCPRoute", "TLSRoute", "GRPCRoute", "GatewayClass", "KubernetesGateway",
                      "ReferenceGrant")
INDEXES_BY_KIND: dict[str, tuple[str, ...]] = {
    "ServiceEntry": ("services",),
    DESTINATION_RULE: ("destination_rules",),
    VIRTUAL_SERVICE: ("virtual_services",),
    GATEWAY: ("gateways",),
    SIDECAR: ("sidecars",),
    PEER_AUTHENTICATION: ("authn",),
    "RequestAuthentication": ("authn",),
    **{k: ("virtual_services", "gateways") for k in _GATEWAY_API_KINDS},
}
INDEXES = ("services", "virtual_services", "destination_rules", "gateways", "authn", "sidecars")


def indexes_to_rebuild(kinds: set[str]) -> set[str]:
    """``updateContext``'s rule: the indexes the changed kinds can affect. Sidecar scopes are
    derived from services, VirtualServices and DestinationRules, so they follow any of them."""
    out = {index for kind in kinds for index in INDEXES_BY_KIND.get(kind, ())}
    if out & {"services", "virtual_services", "destination_rules"}:
        out.add("sidecars")
    return out


def export_set(values, default: tuple[str, ...]) -> frozenset[str]:
    return frozenset(values) if values else frozenset(default)


@dataclass
class ServiceIndex:
    """``serviceIndex`` (push_context.go#L60-L76)."""

    public: list[Service] = field(default_factory=list)
    private_by_namespace: dict[str, list[Service]] = field(default_factory=dict)
    exported_to_namespace: dict[str, list[Service]] = field(default_factory=dict)
    hostname_and_namespace: dict[str, dict[str, Service]] = field(default_factory=dict)


@dataclass
class VirtualServiceIndex:
    """``virtualServiceIndex`` (push_context.go#L96-L111), keyed (namespace, gateway) / gateway."""

    public_by_gateway: dict[str, list[Config]] = field(default_factory=dict)
    private_by_namespace_and_gateway: dict[tuple[str, str], list[Config]] = field(default_factory=dict)
    exported_to_namespace_by_gateway: dict[tuple[str, str], list[Config]] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class ConsolidatedDestRule:
    """``ConsolidatedDestRule`` (push_context.go#L289-L295): a DestinationRule, merged from the
    rules named in ``sources`` (namespace, name), oldest first. ``rule`` is the oldest rule's
    metadata with the merged spec."""

    rule: Config
    sources: tuple[tuple[str, str], ...]

    @property
    def selector(self) -> dict[str, str] | None:
        return workload_selector(self.rule)


def workload_selector(rule: Config) -> dict[str, str] | None:
    """A DestinationRule's ``workloadSelector.matchLabels``; None when it has no selector at all
    (an empty selector is still a selector, as Go's ``GetWorkloadSelector() != nil``)."""
    selector = rule.spec.get("workloadSelector")
    return None if selector is None else dict(selector.get("matchLabels") or {})


@dataclass
class ConsolidatedDestRules:
    """``consolidatedDestRules`` (push_context.go#L278-L287): FQDN host → rules, and the exportTo
    of each host as the first rule that had one gave it (empty: everywhere)."""

    rules: dict[str, list[ConsolidatedDestRule]] = field(default_factory=dict)
    export_to: dict[str, frozenset[str]] = field(default_factory=dict)

    def merge(self, dr: Config, host: str, export_to: frozenset[str]) -> None:
        """``mergeDestinationRule`` (destination_rule.go#L41-L121)."""
        entries = self.rules.get(host)
        if entries is None:
            self.rules[host] = [ConsolidatedDestRule(dr, ((dr.namespace, dr.name),))]
            self.export_to[host] = export_to
            return
        selector = workload_selector(dr)
        new_entry = True
        for i, entry in enumerate(entries):
            old = entry.selector
            same_selector = (old or {}) == (selector or {})
            if old is not None and selector is not None and not same_selector:
                continue  # different workloads: never merged
            if (old is None and selector is None) or (selector is not None and same_selector):
                new_entry = False
            spec = dict(entry.rule.spec)
            have = {s.get("name") for s in spec.get("subsets") or []}
            extra = [s for s in dr.spec.get("subsets") or [] if s.get("name") not in have]
            if extra:
                spec["subsets"] = list(spec.get("subsets") or []) + extra
            if spec.get("trafficPolicy") is None and dr.spec.get("trafficPolicy") is not None:
                spec["trafficPolicy"] = dr.spec["trafficPolicy"]  # the first top-level policy wins
            if not self.export_to.get(host) and export_to:
                self.export_to[host] = export_to
            entries[i] = ConsolidatedDestRule(replace(entry.rule, spec=spec),
                                              entry.sources + ((dr.namespace, dr.name),))
        if new_entry:
            entries.append(ConsolidatedDestRule(dr, ((dr.namespace, dr.name),)))


@dataclass
class DestinationRuleIndex:
    """``destinationRuleIndex`` (push_context.go#L127-L136), each part host → rules."""

    namespace_local: dict[str, ConsolidatedDestRules] = field(default_factory=dict)
    exported_by_namespace: dict[str, ConsolidatedDestRules] = field(default_factory=dict)
    root_namespace_local: ConsolidatedDestRules = field(default_factory=ConsolidatedDestRules)
    _matter: tuple[str, frozenset[str]] | None = field(default=None, repr=False)  # (root namespace, namespaces)

    def namespaces_that_matter(self, root_namespace: str) -> frozenset[str]:
        """The proxy namespaces whose lookups can differ from any other's: those with rules usable
        there, the root namespace, and those an exportTo names (``PushContext.destination_rule_for``)."""
        if self._matter is None or self._matter[0] != root_namespace:
            named = {ns for rules in self.exported_by_namespace.values() for exports in rules.export_to.values()
                     for ns in exports}
            self._matter = (root_namespace, frozenset({*self.namespace_local, root_namespace, *named}))
        return self._matter[1]


@dataclass
class PushContext:
    version: str
    services: list[Service]
    virtual_services: list[Config]
    destination_rules: dict[str, Config]  # FQDN host → the oldest rule (the mesh-wide view)
    registry: ServiceDiscovery
    domain: str = "cluster.local"
    gateways: list[Config] = field(default_factory=list)
    peer_authentications: list[Config] = field(default_factory=list)
    # Pod IPs whose sidecar terminates mutual TLS on its inbound port (a connected proxy that
    # has a workload certificate): EDS sends their traffic there, over TLS (networking/tls.py).
    mtls_addresses: frozenset[str] = frozenset()
    trust_domain: str = "cluster.local"  # MeshConfig.trustDomain: whose SPIFFE identities inbound mTLS accepts
    # Pod IPs of connected sidecars that nothing captures (INTERCEPTION_MODE=NONE): EDS sends
    # their mTLS traffic to their inbound port (networking/endpoints.py).
    uncaptured_addresses: frozenset[str] = frozenset()
    outbound_traffic_mode: str = "ALLOW_ANY"  # MeshConfig.outboundTrafficPolicy.mode
    root_namespace: str = "istio-system"  # MeshConfig.rootNamespace
    service_index: ServiceIndex = field(default_factory=ServiceIndex)
    virtual_service_index: VirtualServiceIndex = field(default_factory=VirtualServiceIndex)
    destination_rule_index: DestinationRuleIndex = field(default_factory=DestinationRuleIndex)
    sidecar_index: object = None  # mesh.networking.sidecar.SidecarIndex
    sidecars: list[Config] = field(default_factory=list)
    # Which indexes this context built and which it took from the previous push (updateContext).
    rebuilt: dict[str, bool] = field(default_factory=dict)
    # The typed XdsCache (mesh.xds.typed_cache) and this push's token for writing to it; set by
    # ADS. None: build everything anew (a PushContext made outside a server).
    xds_cache: object = None
    cache_token: float = 0.0
    _by_host: dict[str, Service] = field(default_factory=dict, repr=False)
    _memo: dict = field(default_factory=dict, repr=False)

    @classmethod
    def build(cls, registry: ServiceDiscovery, config_store: ConfigStore | None, version: str = "0",
              domain: str = "cluster.local", mtls_addresses: frozenset[str] = frozenset(),
              trust_domain: str = "cluster.local", uncaptured_addresses: frozenset[str] = frozenset(),
              outbound_traffic_mode: str = "ALLOW_ANY", previous: PushContext | None = None,
              configs_updated=None, root_namespace: str = "istio-system",
              export_defaults: Mapping[str, tuple[str, ...]] | None = None) -> PushContext:
        """``InitContext``: everything anew (``createNewContext``) without a previous context or
        without a list of changed configs; else ``updateContext``: rebuild only the indexes the
        changed kinds affect (``indexes_to_rebuild``) and share the rest with ``previous``."""
        ctx = cls(version=version, services=[], virtual_services=[], destination_rules={},
                  registry=registry, domain=domain, mtls_addresses=frozenset(mtls_addresses),
                  trust_domain=trust_domain, uncaptured_addresses=frozenset(uncaptured_addresses),
                  outbound_traffic_mode=outbound_traffic_mode, root_namespace=root_namespace)
        ctx.export_defaults = {**DEFAULT_EXPORT_TO, **(export_defaults or {})}
        if previous is None or not configs_updated or previous.export_defaults != ctx.export_defaults:
            todo = set(INDEXES)
        else:
            todo = indexes_to_rebuild({c.kind for c in configs_updated})
        for index in INDEXES:
            if index in todo:
                getattr(ctx, f"_init_{index}")(config_store)
            else:
                ctx._reuse(index, previous)
            ctx.rebuilt[index] = index in todo
        return ctx

    export_defaults: dict = field(default_factory=lambda: dict(DEFAULT_EXPORT_TO))

    _REUSED_FIELDS = {
        "services": ("services", "service_index", "_by_host"),
        "virtual_services": ("virtual_services", "virtual_service_index"),
        "destination_rules": ("destination_rules", "destination_rule_index"),
        "gateways": ("gateways",),
        "authn": ("peer_authentications",),
        "sidecars": ("sidecars", "sidecar_index"),
    }

    def _reuse(self, index: str, previous: PushContext) -> None:
        for name in self._REUSED_FIELDS[index]:
            setattr(self, name, getattr(previous, name))
        if index == "sidecars":  # the scopes read this context's memo-free indexes, which are equal
            self.sidecar_index = previous.sidecar_index.rebound(self)

    # -- the indexes ---------------------------------------------------------------------------
    def _init_services(self, _store) -> None:
        """``initServiceRegistry``: hostname/namespace and visibility indexes."""
        self.services = sorted(self.registry.services(), key=lambda s: s.hostname)
        self._by_host = {}
        index = ServiceIndex()
        for s in self.services:
            self._by_host.setdefault(s.hostname, s)
            index.hostname_and_namespace.setdefault(s.hostname, {})[s.namespace] = s
            exports = self.service_export_to(s)
            if PUBLIC in exports:
                index.public.append(s)
            elif NONE in exports:
                continue
            else:
                for ns in sorted(exports):
                    if ns in (PRIVATE, s.namespace):
                        index.private_by_namespace.setdefault(s.namespace, []).append(s)
                    else:
                        index.exported_to_namespace.setdefault(ns, []).append(s)
        self.service_index = index

    def service_export_to(self, service: Service) -> frozenset[str]:
        """A service's exportTo, or MeshConfig's ``defaultServiceExportTo`` when it has none."""
        return export_set(service.export_to, self.export_defaults["service"])

    def _init_virtual_services(self, store) -> None:
        """``initVirtualServices``: by gateway, and by exportTo (default
        ``defaultVirtualServiceExportTo``)."""
        self.virtual_services = sorted(store.list(VIRTUAL_SERVICE), key=_age) if store is not None else []
        index = VirtualServiceIndex()
        for vs in self.virtual_services:
            gateways = [resolve_gateway_name(g, vs.namespace) for g in vs.spec.get("gateways") or [MESH_GATEWAY]]
            exports = export_set(vs.spec.get("exportTo"), self.export_defaults["virtual_service"])
            for gw in gateways:
                if PUBLIC in exports:
                    index.public_by_gateway.setdefault(gw, []).append(vs)
                elif NONE not in exports:
                    for ns in sorted(exports):
                        if ns in (PRIVATE, vs.namespace):
                            index.private_by_namespace_and_gateway.setdefault((vs.namespace, gw), []).append(vs)
                        else:
                            index.exported_to_namespace_by_gateway.setdefault((ns, gw), []).append(vs)
        self.virtual_service_index = index

    def _init_destination_rules(self, store) -> None:
        """``setDestinationRules``: a rule is usable in its own namespace unless exported
        elsewhere only, and exported from it unless private."""
        rules = sorted(store.list(DESTINATION_RULE), key=_age) if store is not None else []
        index = DestinationRuleIndex()
        self.destination_rules = {}
        for dr in rules:
            host = resolve_short_name(dr.spec.get("host", ""), dr.namespace, dr.domain or self.domain)
            self.destination_rules.setdefault(host, dr)  # the oldest rule for a host wins
            # a rule with a workloadSelector is never exported
            given = frozenset(dr.spec.get("exportTo") or ()) if workload_selector(dr) is None else frozenset({PRIVATE})
            if not given or given & {PUBLIC, PRIVATE, dr.namespace}:
                index.namespace_local.setdefault(dr.namespace, ConsolidatedDestRules()).merge(dr, host, given)
            private_only = (not given and PRIVATE in self.export_defaults["destination_rule"]) or (
                len(given) == 1 and given & {PRIVATE, dr.namespace})
            if not private_only:
                index.exported_by_namespace.setdefault(dr.namespace, ConsolidatedDestRules()).merge(dr, host, given)
            elif dr.namespace == self.root_namespace:
                index.root_namespace_local.merge(dr, host, given)
        self.destination_rule_index = index

    def _init_gateways(self, store) -> None:
        self.gateways = sorted(store.list(GATEWAY), key=_age) if store is not None else []

    def _init_authn(self, store) -> None:
        self.peer_authentications = sorted(store.list(PEER_AUTHENTICATION), key=_age) if store is not None else []

    def _init_sidecars(self, store) -> None:
        """``initSidecarScopes``, last: scopes read every other index."""
        from mesh.networking.sidecar import SidecarIndex  # sidecar.py builds on this module

        self.sidecars = sorted(store.list(SIDECAR), key=_age) if store is not None else []
        self.sidecar_index = SidecarIndex.build(self, self.sidecars)

    # -- lookups -------------------------------------------------------------------------------
    def services_exported_to_namespace(self, namespace: str) -> list[Service]:
        """``servicesExportedToNamespace``: private, then explicitly exported, then public."""
        idx = self.service_index
        return (idx.private_by_namespace.get(namespace, []) + idx.exported_to_namespace.get(namespace, [])
                + idx.public)

    def is_service_visible(self, service: Service, namespace: str) -> bool:
        """``IsServiceVisible``."""
        exports = self.service_export_to(service)
        return PUBLIC in exports or (PRIVATE in exports and service.namespace == namespace) or namespace in exports

    def virtual_services_for_gateway(self, namespace: str, gateway: str) -> list[Config]:
        """``VirtualServicesForGateway``: private, exported to ``namespace``, then public."""
        idx = self.virtual_service_index
        return (idx.private_by_namespace_and_gateway.get((namespace, gateway), [])
                + idx.exported_to_namespace_by_gateway.get((namespace, gateway), [])
                + idx.public_by_gateway.get(gateway, []))

    def destination_rule_for(self, proxy_namespace: str, service: Service) -> list[ConsolidatedDestRule] | None:
        """``destinationRule``: the proxy's namespace (for a proxy in the root namespace, its
        private rules), then the rules the service's namespace exports to the proxy's, then those
        the root namespace exports. A host found but not exported to the proxy ends that step.

        mesh's fast path: the answer depends on the proxy's namespace only if that namespace has
        rules of its own, is the root namespace, or is named in a rule's exportTo
        (``DestinationRuleIndex.namespaces_that_matter``); every other namespace gets the same
        answers, looked up once per push and shared (100 default scopes × 1000 services were
        100,000 lookups a push)."""
        if proxy_namespace in self.destination_rule_index.namespaces_that_matter(self.root_namespace):
            return self._destination_rule_for(proxy_namespace, service)
        key = ("destination-rule", service.hostname, service.namespace)
        try:
            return self._memo[key]
        except KeyError:
            found = self._memo[key] = self._destination_rule_for(proxy_namespace, service)
            return found

    def _destination_rule_for(self, proxy_namespace: str, service: Service) -> list[ConsolidatedDestRule] | None:
        idx = self.destination_rule_index
        local = (idx.namespace_local.get(proxy_namespace) if proxy_namespace != self.root_namespace
                 else idx.root_namespace_local)
        if local is not None:
            found = most_specific_host_match(service.hostname, local.rules)
            if found is not None:
                return found[1]
        for owner in (service.namespace, self.root_namespace):
            exported = idx.exported_by_namespace.get(owner)
            found = most_specific_host_match(service.hostname, exported.rules) if exported else None
            if found is not None:
                exports = exported.export_to.get(found[0], frozenset())
                if not exports or PUBLIC in exports or proxy_namespace in exports:
                    return found[1]
        return None

    def sidecar_scope_for(self, proxy: Proxy):
        """``getSidecarScope``: the proxy's SidecarScope in this push."""
        return self.sidecar_index.scope_for(proxy)

    def memo(self, key, build):
        """Build once per push, share across proxies: what many sidecars get alike (outbound
        clusters, a service's endpoints, routes for one namespace) is computed for the first and
        reused for the rest. A new PushContext starts empty, so a full push never sees stale
        entries; an incremental push drops what it changes (``forget_endpoints``)."""
        try:
            return self._memo[key]
        except KeyError:
            value = self._memo[key] = build()
            return value

    def memo_by_identity(self, tag, obj, build):
        """``build()`` once per push for this very object (a resource list that many proxies share):
        keyed by its id, in O(1) however long it is. The entry keeps the object alive, so no other
        object can take its id while the entry lives."""
        key = (tag, id(obj))
        entry = self._memo.get(key)
        if entry is None or entry[0] is not obj:
            entry = self._memo[key] = (obj, build())
        return entry[1]

    def forget_endpoints(self, hostnames: set[str] | None) -> None:
        """Endpoints changed (an incremental push keeps this context): drop what was memoized
        from the endpoints of those hosts (of all hosts for None)."""
        for key in list(self._memo):
            tag = key[0][0] if isinstance(key[0], tuple) else key[0]
            if tag in ("eds-set", "instances-by-ip", "response", "response-of", "encoded") or (
                    key[0] == "eds" and (hostnames is None or key[1].rsplit("|", 1)[-1] in hostnames)):
                del self._memo[key]

    def service(self, hostname: str) -> Service | None:
        return self._by_host.get(hostname)

    def destination_rule(self, hostname: str) -> Config | None:
        """The mesh-wide view (no proxy): the oldest rule for the most specific matching host."""
        found = most_specific_host_match(hostname, self.destination_rules)
        return found[1] if found is not None else None

    def destination_rule_sources(self, hostname: str) -> tuple[tuple[str, str], ...]:
        """(namespace, name) of every rule behind ``destination_rule(hostname)``: what a cache
        entry built from it is keyed by and depends on."""
        rule = self.destination_rule(hostname)
        return ((rule.namespace, rule.name),) if rule is not None else ()

    def endpoints(self, hostname: str, port: int) -> list[IstioEndpoint]:
        return self.registry.endpoints(hostname, port)

    def sidecar_virtual_services(self) -> list[Config]:
        """VirtualServices that apply to sidecars: no ``gateways`` field, or one naming ``mesh``."""
        return [vs for vs in self.virtual_services if MESH_GATEWAY in (vs.spec.get("gateways") or [MESH_GATEWAY])]

    def vs_hosts(self, vs: Config) -> list[str]:
        return [resolve_short_name(h, vs.namespace, vs.domain or self.domain) for h in vs.spec.get("hosts") or []]

    def service_instances(self, proxy: Proxy) -> list[ServiceInstance]:
        """The service ports backed by this proxy's pod (found by its IP in the endpoints)."""
        by_ip = self.memo(("instances-by-ip",), self._index_instances)
        seen, out = set(), []
        for ip in proxy.ip_addresses:
            for inst in by_ip.get(ip, []):
                if (inst.service.hostname, inst.port) not in seen:
                    seen.add((inst.service.hostname, inst.port))
                    out.append(inst)
        return out

    def _index_instances(self) -> dict[str, list[ServiceInstance]]:
        """IP → service instances, built once per push (one pass over all endpoints)."""
        index: dict[str, list[ServiceInstance]] = {}
        for svc in self.services:
            for port in svc.ports:
                for ep in self.endpoints(svc.hostname, port.port):
                    index.setdefault(ep.address, []).append(ServiceInstance(svc, port.port, ep))
        return index


def most_specific_host_match(hostname: str, rules: Mapping[str, T]) -> tuple[str, T] | None:
    """``MostSpecificHostMatch``: the exact host, else the longest wildcard covering it."""
    rule = rules.get(hostname)
    if rule is not None:
        return hostname, rule
    wildcard = [h for h in rules if h.startswith("*") and host_subset_of(hostname, h)]
    if not wildcard:
        return None
    best = max(wildcard, key=len)
    return best, rules[best]


def resolve_gateway_name(gateway: str, namespace: str) -> str:
    """``bookinfo-gateway`` in a VirtualService of ``default`` means ``default/bookinfo-gateway``;
    ``mesh`` stays ``mesh`` (``resolveGatewayName``)."""
    if gateway == MESH_GATEWAY or "/" in gateway:
        return gateway
    return f"{namespace}/{gateway}"


def _age(cfg: Config) -> tuple[str, str]:
    """``sortConfigByCreationTime`` (https://github.com/istio/istio/blob/1.19.0/pilot/pkg/model/config.go#L335-L348):
    oldest first; a tie goes by ``<name>.<namespace>``."""
    return (cfg.creation_timestamp, f"{cfg.name}.{cfg.namespace}")
