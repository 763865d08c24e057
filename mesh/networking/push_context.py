"""PushContext: one consistent snapshot of the mesh that every generator of one push reads.

Go: ``PushContext`` https://github.com/istio/istio/blob/1.19.0/pilot/pkg/model/push_context.go#L200
built by ``InitContext`` (#L1236); VirtualServices are indexed by ``initVirtualServices``
(#L1539) and DestinationRules by ``initDestinationRules`` (#L1746). Short host names are made
fully qualified as ``ResolveShortnameToFQDN`` does
(https://github.com/istio/istio/blob/1.19.0/pilot/pkg/model/config.go#L226-L258).

Why a snapshot: a push builds config for many proxies over some time while registries keep
changing. Reading one frozen view keeps every proxy of that push consistent with each other.

Simplifications, named: istiod lives in ``pilot/pkg/model`` and its PushContext also indexes
Sidecars, policies, EnvoyFilters and export rules; mesh's holds services, VirtualServices,
DestinationRules, Gateways and PeerAuthentications (DESIGN §3 puts the model-level one in ``mesh/model``;
this is the part the networking builders need), ignores ``exportTo``, and when several
DestinationRules name one host it takes the oldest (Istio merges them).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mesh.config.host import subset_of as host_subset_of
from mesh.model.config import Config, ConfigStore
from mesh.model.proxy import Proxy
from mesh.model.service import IstioEndpoint, Service, ServiceDiscovery
from mesh.util.net import is_ip_address

VIRTUAL_SERVICE = "VirtualService"
DESTINATION_RULE = "DestinationRule"
GATEWAY = "Gateway"
PEER_AUTHENTICATION = "PeerAuthentication"


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


@dataclass
class PushContext:
    version: str
    services: list[Service]
    virtual_services: list[Config]
    destination_rules: dict[str, Config]  # FQDN host → rule
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
    _by_host: dict[str, Service] = field(default_factory=dict, repr=False)
    _memo: dict = field(default_factory=dict, repr=False)

    @classmethod
    def build(cls, registry: ServiceDiscovery, config_store: ConfigStore | None, version: str = "0",
              domain: str = "cluster.local", mtls_addresses: frozenset[str] = frozenset(),
              trust_domain: str = "cluster.local", uncaptured_addresses: frozenset[str] = frozenset(),
              outbound_traffic_mode: str = "ALLOW_ANY") -> PushContext:
        services = sorted(registry.services(), key=lambda s: s.hostname)
        vss: list[Config] = []
        drs: dict[str, Config] = {}
        gateways: list[Config] = []
        peer_authns: list[Config] = []
        if config_store is not None:
            vss = sorted(config_store.list(VIRTUAL_SERVICE), key=_age)
            peer_authns = sorted(config_store.list(PEER_AUTHENTICATION), key=_age)
            gateways = sorted(config_store.list(GATEWAY), key=_age)
            for dr in sorted(config_store.list(DESTINATION_RULE), key=_age):
                host = resolve_short_name(dr.spec.get("host", ""), dr.namespace, dr.domain or domain)
                drs.setdefault(host, dr)  # the oldest rule for a host wins
        ctx = cls(version=version, services=services, virtual_services=vss, destination_rules=drs,
                  registry=registry, domain=domain, gateways=gateways, peer_authentications=peer_authns,
                  mtls_addresses=frozenset(mtls_addresses), trust_domain=trust_domain,
                  uncaptured_addresses=frozenset(uncaptured_addresses), outbound_traffic_mode=outbound_traffic_mode)
        ctx._by_host = {s.hostname: s for s in services}
        return ctx

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

    def forget_endpoints(self, hostnames: set[str] | None) -> None:
        """Endpoints changed (an incremental push keeps this context): drop what was memoized
        from the endpoints of those hosts (of all hosts for None)."""
        for key in list(self._memo):
            if key[0] in ("eds-set", "instances-by-ip", "response") or (
                    key[0] == "eds" and (hostnames is None or key[1].rsplit("|", 1)[-1] in hostnames)):
                del self._memo[key]

    def service(self, hostname: str) -> Service | None:
        return self._by_host.get(hostname)

    def destination_rule(self, hostname: str) -> Config | None:
        rule = self.destination_rules.get(hostname)
        if rule is not None:
            return rule
        wildcard = [h for h in self.destination_rules if h.startswith("*") and host_subset_of(hostname, h)]
        return self.destination_rules[max(wildcard, key=len)] if wildcard else None  # most specific

    def endpoints(self, hostname: str, port: int) -> list[IstioEndpoint]:
        return self.registry.endpoints(hostname, port)

    def sidecar_virtual_services(self) -> list[Config]:
        """VirtualServices that apply to sidecars: no ``gateways`` field, or one naming ``mesh``."""
        return [vs for vs in self.virtual_services if "mesh" in (vs.spec.get("gateways") or ["mesh"])]

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


def _age(cfg: Config) -> tuple[str, str, str]:
    return (cfg.creation_timestamp, cfg.namespace, cfg.name)
