"""SidecarScope: what one sidecar can see — services, VirtualServices, DestinationRules — and
which config changes it depends on.

Go: https://github.com/istio/istio/blob/1.19.0/pilot/pkg/model/sidecar.go —
``DefaultSidecarScopeForNamespace`` (#L177-L254: every service exported to the namespace, every
mesh VirtualService it can see), ``ConvertToSidecarScope`` (#L257-L441: a Sidecar resource's egress
listeners and the union of their services), ``convertIstioListenerToWrapper`` (#L443-L470: ``ns/host``, ``.`` is the Sidecar's
namespace), ``selectServices`` and ``matchingService`` (#L648-L714), ``DependsOnConfig``
(#L532-L548) and the kinds it knows (#L41-L57); ``SelectVirtualServices``
https://github.com/istio/istio/blob/1.19.0/pilot/pkg/model/virtualservice.go#L35-L85; choosing a
proxy's scope ``getSidecarScope``
https://github.com/istio/istio/blob/1.19.0/pilot/pkg/model/push_context.go#L1043-L1108 (a Sidecar
with a matching ``workloadSelector`` first, then the namespace's Sidecar without one, then the
root namespace's, then the default).

A scope records ``config_dependencies``: the ServiceEntry (one per visible hostname),
VirtualService, DestinationRule and Sidecar keys it was built from. ``depends_on_config`` answers
"could this change alter this proxy's config?" — the question ``ProxyNeedsPush`` asks before
pushing (``mesh/xds/proxy_dependencies.py``).

**Listeners.** A scope keeps each egress listener (``EgressListener``, Go's
``IstioEgressListenerWrapper``, #L140-L170) with the services and VirtualServices *it* imports;
the scope's ``services`` are their union (what CDS builds). LDS builds a listener per egress
listener — one with a ``port`` only that port, in the protocol the Sidecar declares, for each of
its services; the catch-all (no port) every other port (``mesh/networking/listener.py``). RDS
answers a route name from the listener on that port or the catch-all (``egress_listener_for_rds``,
``GetEgressListenerForRDS``, #L472-L504), so route ``9080`` of a Sidecar with an explicit 9080
listener holds that listener's hosts only. ``bind`` and ``captureMode: NONE`` make a listener bind
a real address (``networking/listener.py``). ``ingress`` listeners (``HasIngressListener``,
#L506-L517) replace the inbound side built from the pod's Service ports
(``networking/listener_inbound.py``, ``networking/cluster.py``).

**DestinationRules.** Per visible host the scope keeps the list ``destinationRule`` returns
(merged rules, ``mesh/networking/push_context.py``); ``destination_rule(labels, host)`` is
``SidecarScope.DestinationRule`` (#L570-L596): outbound, a rule of the scope's namespace whose
``workloadSelector`` matches the proxy, else the rule without a selector.

``ScopedPush`` is how the builders read a scope: the PushContext with ``services``,
``service(host)``, ``destination_rule(host)`` (for this proxy's labels), ``sidecar_virtual_services()``
and ``outbound_traffic_mode`` answered from the proxy's scope, and ``memo`` keyed by the scope's
content (its listeners included, and which workload-selected rules this proxy gets), so proxies
whose scopes are alike (every namespace without a Sidecar, when nothing is exported to one
namespace only) still share one built resource.

Simplifications, named: only the Sidecar's ``outboundTrafficPolicy.mode`` is read (not its egress
proxy); delegate VirtualServices are not followed; ingress ``tls`` is ignored (as istiod does unless
``ENABLE_TLS_ON_SIDECAR_INGRESS``); privileged ports are not skipped for unprivileged proxies
(``CanBindToPort``); Unix-socket egress listeners are not built.

mesh's own fast paths (istiod has none of them; the scopes they give are the same): within one
push, scopes of equal content share one ``ScopeKey`` (hashed by identity, so a memo lookup does not
hash thousands of ids), and what a scope derives from its services (hostnames, dependencies,
DestinationRules) is computed once for all namespaces whose rule lookups cannot differ
(``_services_index``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from mesh.config.host import matches as host_matches
from mesh.config.host import subset_of as host_subset_of
from mesh.config.protocol import parse as protocol_parse
from mesh.model.config import Config
from mesh.model.proxy import Proxy
from mesh.model.push_request import ConfigKey
from mesh.model.service import Service, ServiceProtocol
from mesh.networking.push_context import (
    DESTINATION_RULE,
    MESH_GATEWAY,
    SIDECAR,
    VIRTUAL_SERVICE,
    ConsolidatedDestRule,
    PushContext,
    resolve_short_name,
)

DEFAULT_SIDECAR = "default-sidecar"  # the name of a scope made without a Sidecar resource
WILDCARD_NAMESPACE, CURRENT_NAMESPACE = "*", "."
SERVICE_ENTRY = "ServiceEntry"
# Kinds whose dependencies a scope records; other kinds are "unknown here" and always affect it.
SIDECAR_SCOPED_KINDS = frozenset({SERVICE_ENTRY, VIRTUAL_SERVICE, DESTINATION_RULE, SIDECAR})
# Kinds that apply to a namespace when made in it, and to every namespace in the root namespace.
CLUSTER_SCOPED_KINDS = frozenset({"EnvoyFilter", "AuthorizationPolicy", "RequestAuthentication", "WasmPlugin"})


@dataclass(eq=False)
class EgressListener:
    """``IstioEgressListenerWrapper`` (sidecar.go#L140-L170): one ``egress`` entry of a Sidecar
    (``spec`` None for the default scope's catch-all ``*/*``) with the services and mesh
    VirtualServices it imports. LDS builds this listener's ports from ``services`` and RDS its
    virtual hosts from ``services`` and ``virtual_services`` — not from the scope's union."""

    spec: dict | None
    services: list[Service] = field(default_factory=list)
    virtual_services: list[Config] = field(default_factory=list)

    @property
    def port(self) -> int | None:
        """The listener's port number (0 for a Unix socket); None for a catch-all listener."""
        port = (self.spec or {}).get("port")
        return None if port is None else int(port.get("number") or 0)

    @property
    def protocol(self) -> ServiceProtocol:
        return protocol_parse(((self.spec or {}).get("port") or {}).get("protocol") or "")

    @property
    def port_name(self) -> str:
        return ((self.spec or {}).get("port") or {}).get("name") or ""

    @property
    def bind(self) -> str:
        return (self.spec or {}).get("bind") or ""

    @property
    def capture_mode(self) -> str:
        return (self.spec or {}).get("captureMode") or "DEFAULT"

    def needs_port_match(self) -> bool:
        """``needsPortMatch``: a listener with a port takes only services on it, except an
        HTTP_PROXY listener, which is a generic egress proxy for every port."""
        return bool(self.port) and self.protocol != ServiceProtocol.HTTP_PROXY

    def key(self, scope: SidecarScope) -> tuple:
        """Its part of the scope's content key; a default scope's one listener holds the scope's
        own lists, which the key has already (no second copy to hash on every memo lookup)."""
        if self.services is scope.services and self.virtual_services is scope.virtual_services:
            return (self.port, "scope")
        return (self.port, self.protocol.value, self.bind, self.capture_mode,
                tuple(map(id, self.services)), tuple(map(id, self.virtual_services)))


@dataclass
class SidecarScope:
    name: str
    namespace: str
    root_namespace: str
    config: Config | None = None  # the Sidecar resource (None for a default scope)
    services: list[Service] = field(default_factory=list)
    virtual_services: list[Config] = field(default_factory=list)
    # service hostname → its rules (``destinationRule``'s list: one entry per workloadSelector)
    destination_rules: dict[str, list[ConsolidatedDestRule]] = field(default_factory=dict)
    selector_hosts: frozenset[str] = frozenset()  # hosts whose rule depends on the proxy's labels
    outbound_traffic_mode: str = "ALLOW_ANY"
    config_dependencies: set[ConfigKey] = field(default_factory=set)
    services_by_hostname: dict[str, Service] = field(default_factory=dict)
    egress_listeners: list[EgressListener] = field(default_factory=list)
    key: object = ()  # the scope's content (a ScopeKey), for sharing built resources between alike scopes

    @property
    def ingress(self) -> list[dict]:
        """The Sidecar's ``ingress`` listeners (``HasIngressListener`` when not empty)."""
        return list((self.config.spec.get("ingress") or []) if self.config is not None else [])

    def egress_listener_for_rds(self, port: int, bind: str) -> EgressListener | None:
        """``GetEgressListenerForRDS`` (sidecar.go#L472-L504): the listener on ``port`` (for
        port 0, a Unix socket, the one whose ``bind`` is the route name), or the catch-all — the
        first listener without a port ends the search; None when there is neither."""
        for listener in self.egress_listeners:
            if listener.port is None:
                return listener
            if listener.port == port and (port or listener.bind == bind):
                return listener
        return None

    def depends_on_config(self, config: ConfigKey) -> bool:
        """``DependsOnConfig``."""
        if config.kind in CLUSTER_SCOPED_KINDS:
            return config.namespace in (self.root_namespace, self.namespace)
        if config.kind not in SIDECAR_SCOPED_KINDS:
            return True
        return config in self.config_dependencies

    def service(self, hostname: str) -> Service | None:
        return self.services_by_hostname.get(hostname)

    def destination_rule(self, labels: dict[str, str], hostname: str,
                         outbound: bool = True) -> ConsolidatedDestRule | None:
        """``SidecarScope.DestinationRule``: outbound, a rule of this namespace whose
        workloadSelector matches the proxy's labels; else the rule without a selector."""
        catch_all = None
        for entry in self.destination_rules.get(hostname, ()):
            selector = entry.selector
            if selector is None:
                catch_all = entry
            elif outbound and entry.rule.namespace == self.namespace and all(
                    labels.get(k) == v for k, v in selector.items()):
                return entry
        return catch_all

    def describe(self) -> dict:
        """What a notebook or ``replay --show`` prints about a scope."""
        return {"name": self.name, "namespace": self.namespace, "services": [s.hostname for s in self.services],
                "virtualServices": [f"{vs.namespace}/{vs.name}" for vs in self.virtual_services],
                "destinationRules": {h: ", ".join("+".join(f"{ns}/{n}" for ns, n in c.sources) for c in rules)
                                     for h, rules in sorted(self.destination_rules.items())},
                "outboundTrafficPolicy": self.outbound_traffic_mode}


def parse_egress_hosts(hosts: list[str], namespace: str) -> dict[str, list[str]]:
    """``ns/host`` entries by namespace; ``.`` is the Sidecar's own namespace. Entries without a
    slash are skipped, as Istio logs and skips them (validation rejects them first)."""
    out: dict[str, list[str]] = {}
    for h in hosts:
        ns, slash, name = h.partition("/")
        if not slash:
            continue
        out.setdefault(namespace if ns == CURRENT_NAMESPACE else ns, []).append(name)
    return out


def _matching_service(imported: list[str], service: Service, port: int | None) -> Service | None:
    """``matchingService``: the service, trimmed to the listener's port when it names one."""
    for h in imported:
        if host_subset_of(service.hostname, h):
            if port is None:
                return service
            return _trim_to_ports(service, {port})
    return None


def _trim_to_ports(service: Service, ports: set[int]) -> Service | None:
    kept = [p for p in service.ports if p.port in ports]
    if not kept:
        return None
    return service if len(kept) == len(service.ports) else replace(service, ports=kept)


def select_services(services: list[Service], namespace: str, hosts: dict[str, list[str]],
                    port: int | None) -> list[Service]:
    """``selectServices``: imports of ``ns/…`` first, then ``*/…``; one namespace per hostname
    (the Sidecar's own when it has one)."""
    imported = []
    for s in services:
        found = _matching_service(hosts[s.namespace], s, port) if s.namespace in hosts else None
        if found is None and WILDCARD_NAMESPACE in hosts:
            found = _matching_service(hosts[WILDCARD_NAMESPACE], s, port)
        if found is not None:
            imported.append(found)
    chosen: dict[str, str] = {}
    for s in imported:
        if s.hostname not in chosen or s.namespace == namespace:
            chosen[s.hostname] = s.namespace
    return [s for s in imported if chosen[s.hostname] == s.namespace]


def select_virtual_services(push: PushContext, namespace: str, hosts: dict[str, list[str]]) -> list[Config]:
    """``SelectVirtualServices``: mesh VirtualServices visible in ``namespace`` with a host that
    matches an imported host of the VirtualService's namespace (or of ``*``)."""
    out, seen = [], set()
    for vs in push.virtual_services_for_gateway(namespace, MESH_GATEWAY):
        if vs.key in seen:
            continue
        imported = hosts.get(vs.namespace, []) + hosts.get(WILDCARD_NAMESPACE, [])
        # hosts made fully qualified first, as initVirtualServices does before indexing
        if any(host_matches(h, ih) for ih in imported for h in push.vs_hosts(vs)):
            out.append(vs)
            seen.add(vs.key)
    return out


def virtual_service_destinations(push: PushContext, vs: Config) -> dict[str, set[int]]:
    """``virtualServiceDestinations``: FQDN host → destination ports (0: every port)."""
    out: dict[str, set[int]] = {}
    for section in ("http", "tcp", "tls"):
        for route in vs.spec.get(section) or []:
            for dest in route.get("route") or []:
                d = dest.get("destination") or {}
                host = resolve_short_name(d.get("host", ""), vs.namespace, vs.domain or push.domain)
                out.setdefault(host, set()).add(int((d.get("port") or {}).get("number") or 0))
    return out


def build_scope(push: PushContext, namespace: str, sidecar: Config | None) -> SidecarScope:
    """``ConvertToSidecarScope`` (``DefaultSidecarScopeForNamespace`` when ``sidecar`` is None)."""
    scope = SidecarScope(name=sidecar.name if sidecar else DEFAULT_SIDECAR, namespace=namespace,
                         root_namespace=push.root_namespace, config=sidecar,
                         outbound_traffic_mode=push.outbound_traffic_mode)
    exported = push.services_exported_to_namespace(namespace)
    if sidecar is None:
        scope.services = list(exported)
        scope.virtual_services = push.virtual_services_for_gateway(namespace, MESH_GATEWAY)
        scope.egress_listeners = [EgressListener(None, scope.services, scope.virtual_services)]
    else:
        scope.config_dependencies.add(ConfigKey(SIDECAR, sidecar.name, sidecar.namespace))
        spec = sidecar.spec
        egress = spec.get("egress") or [{"hosts": ["*/*"]}]
        added: dict[str, int] = {}

        def add(s: Service | None) -> None:
            if s is None:
                return
            if s.hostname not in added:
                added[s.hostname] = len(scope.services)
                scope.services.append(s)
                return
            i = added[s.hostname]  # the same service from another listener: merge its ports
            have = scope.services[i]
            if have.namespace == s.namespace:
                extra = [p for p in s.ports if p.port not in {q.port for q in have.ports}]
                if extra:
                    scope.services[i] = replace(have, ports=have.ports + extra)

        for listener_spec in egress:  # convertIstioListenerToWrapper
            hosts = parse_egress_hosts(listener_spec.get("hosts") or [], namespace)
            listener = EgressListener(listener_spec)
            port = listener.port if listener.needs_port_match() else None
            listener.services = select_services(exported, namespace, hosts, port)
            listener.virtual_services = vss = select_virtual_services(push, namespace, hosts)
            scope.egress_listeners.append(listener)
            for s in listener.services:
                add(s)
            for vs in vss:
                if vs.key not in {v.key for v in scope.virtual_services}:
                    scope.virtual_services.append(vs)
                for h, ports in virtual_service_destinations(push, vs).items():
                    by_ns = push.service_index.hostname_and_namespace.get(h, {})
                    target = by_ns.get(namespace) or next(
                        (by_ns[n] for n in sorted(by_ns) if push.is_service_visible(by_ns[n], namespace)), None)
                    if target is None:
                        continue
                    if port is not None:
                        add(_trim_to_ports(target, {port}))
                    else:
                        add(target if not ports or 0 in ports else _trim_to_ports(target, ports))
        mode = (spec.get("outboundTrafficPolicy") or {}).get("mode")
        if mode:
            scope.outbound_traffic_mode = mode
    by_hostname, dependencies, rules = _services_index(push, namespace, scope.services)
    scope.services_by_hostname.update(by_hostname)
    scope.config_dependencies.update(dependencies)
    scope.destination_rules.update(rules)
    for vs in scope.virtual_services:
        scope.config_dependencies.add(ConfigKey(VIRTUAL_SERVICE, vs.name, vs.namespace))
    content = (tuple(map(id, scope.services)), tuple(map(id, scope.virtual_services)),
               tuple((h, tuple(map(id, r))) for h, r in sorted(scope.destination_rules.items())),
               scope.outbound_traffic_mode, tuple(el.key(scope) for el in scope.egress_listeners))
    # One small object per distinct content in this push: every memo lookup of every proxy adds the
    # key to its own, and hashing the content (thousands of ids) each time cost more than the lookup.
    scope.key = push.memo(("scope-key", content), ScopeKey)
    scope.selector_hosts = frozenset(h for h, rules in scope.destination_rules.items()
                                     if any(e.selector is not None and e.rule.namespace == namespace for e in rules))
    return scope


def _services_index(push: PushContext, namespace: str, services: list[Service]) -> tuple:
    """What a scope derives from its services: hostname → service (the first, oldest, of a hostname
    wins), the ServiceEntry and DestinationRule keys it depends on, hostname → rules.

    mesh's fast path: in every namespace whose DestinationRule lookups cannot differ from another's
    (``PushContext.destination_rule_for``) the same services give the same answers, so they are
    derived once per push and copied (100 default scopes of 1000 services were 100,000 passes)."""
    matters = namespace in push.destination_rule_index.namespaces_that_matter(push.root_namespace)
    key = ("scope-services", namespace if matters else None, tuple(map(id, services)))
    return push.memo(key, lambda: _index_services(push, namespace, services))


def _index_services(push: PushContext, namespace: str, services: list[Service]) -> tuple:
    by_hostname: dict[str, Service] = {}
    dependencies: set[ConfigKey] = set()
    rules_by_host: dict[str, list] = {}
    for s in services:
        if s.hostname in by_hostname:
            continue  # the first (oldest) service of a hostname wins
        by_hostname[s.hostname] = s
        dependencies.add(ConfigKey(SERVICE_ENTRY, s.hostname, s.namespace))
        rules = push.destination_rule_for(namespace, s)
        if rules:
            rules_by_host[s.hostname] = rules
            for entry in rules:
                for ns, name in entry.sources:
                    dependencies.add(ConfigKey(DESTINATION_RULE, name, ns))
    return by_hostname, dependencies, rules_by_host


class ScopeKey:
    """A scope's content as a memo key: alike scopes of one push share one (``build_scope``), so it
    hashes and compares by identity."""

    __slots__ = ()


def _selector(sidecar: Config) -> dict[str, str]:
    return dict(((sidecar.spec.get("workloadSelector") or {}).get("labels")) or {})


class SidecarIndex:
    """``sidecarIndex``: Sidecars by namespace (those with a selector first, each group oldest
    first), the root namespace's Sidecar without selector, and scopes computed per namespace."""

    def __init__(self, push: PushContext, sidecars: list[Config]):
        self.push = push
        self.sidecars = sidecars
        self.by_namespace: dict[str, list[SidecarScope]] = {}
        with_selector = [s for s in sidecars if _selector(s)]
        without = [s for s in sidecars if not _selector(s)]
        for sc in with_selector + without:
            self.by_namespace.setdefault(sc.namespace, []).append(build_scope(push, sc.namespace, sc))
        self.root_sidecar = next((s for s in without if s.namespace == push.root_namespace), None)
        self.computed: dict[str, SidecarScope] = {}  # namespace → root-namespace or default scope
        self.gateway_defaults: dict[str, SidecarScope] = {}

    @classmethod
    def build(cls, push: PushContext, sidecars: list[Config]) -> SidecarIndex:
        return cls(push, sidecars)

    def rebound(self, push: PushContext) -> SidecarIndex:
        """The same scopes, read through a new PushContext whose indexes they were built from."""
        out = SidecarIndex.__new__(SidecarIndex)
        out.__dict__.update(self.__dict__)
        out.push = push
        return out

    def scope_for(self, proxy: Proxy) -> SidecarScope:
        """``getSidecarScope``: gateways always get their namespace's default scope."""
        ns = proxy.namespace
        if proxy.type == "router":
            if ns not in self.gateway_defaults:
                self.gateway_defaults[ns] = build_scope(self.push, ns, None)
            return self.gateway_defaults[ns]
        for scope in self.by_namespace.get(ns, []):
            selector = _selector(scope.config)
            if all(proxy.labels.get(k) == v for k, v in selector.items()):
                return scope
        if ns not in self.computed:
            self.computed[ns] = build_scope(self.push, ns, self.root_sidecar)
        return self.computed[ns]


class ScopedPush:
    """A PushContext as one proxy's SidecarScope sees it (see the module docstring)."""

    # Built once per push for everyone: keyed by what they are built from, not by the scope.
    UNSCOPED_MEMO = frozenset({"instances-by-ip", "response"})

    def __init__(self, push: PushContext, scope: SidecarScope, proxy: Proxy | None = None):
        self._push = push
        self.scope = scope
        self.services = scope.services
        self.outbound_traffic_mode = scope.outbound_traffic_mode
        self._labels = proxy.labels if proxy is not None else {}
        self._memo_key = scope.key
        if scope.selector_hosts:  # which workload-selected rules this proxy gets: part of what it shares
            self._memo_key = (scope.key, *((h, id(self.consolidated_rule(h))) for h in sorted(scope.selector_hosts)))

    def __getattr__(self, name):
        return getattr(self._push, name)

    def service(self, hostname: str) -> Service | None:
        return self.scope.service(hostname)

    def consolidated_rule(self, hostname: str) -> ConsolidatedDestRule | None:
        return self.scope.destination_rule(self._labels, hostname)

    def destination_rule(self, hostname: str) -> Config | None:
        entry = self.consolidated_rule(hostname)
        return entry.rule if entry is not None else None

    def destination_rule_sources(self, hostname: str) -> tuple[tuple[str, str], ...]:
        entry = self.consolidated_rule(hostname)
        return entry.sources if entry is not None else ()

    def sidecar_virtual_services(self) -> list[Config]:
        return self.scope.virtual_services

    def memo(self, key, build):
        if key[0] in self.UNSCOPED_MEMO:
            return self._push.memo(key, build)
        return self._push.memo(key + (self._memo_key,), build)


def egress_listeners_of(push) -> list[EgressListener]:
    """The egress listeners LDS and RDS build from: a ``ScopedPush``'s scope's, or for a bare
    PushContext (no proxy) one catch-all over the mesh-wide view."""
    scope = getattr(push, "scope", None)
    if scope is not None:
        return scope.egress_listeners
    return [EgressListener(None, push.services, push.sidecar_virtual_services())]
