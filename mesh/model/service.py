"""The service model every registry produces and every xDS generator reads.

Go: ``model.Service``, ``Port`` and ``IstioEndpoint`` in
https://github.com/istio/istio/blob/1.19.0/pilot/pkg/model/service.go (Service at
#L64-L118, Port at #L211-L223, IstioEndpoint at #L431). Registries (Kubernetes,
ServiceEntry) translate their sources into these; generators never look at Kubernetes objects.

Simplifications, named: one cluster (``cluster_vips`` holds one address), IPv4 only, and the
endpoint's precomputed Envoy form is left to the xDS cache.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

from mesh.config.protocol import Instance


class Resolution(Enum):
    """How a client finds the endpoints (``model.Resolution``)."""

    CLIENT_SIDE_LB = "ClientSideLB"  # EDS: istiod sends the endpoint list
    DNS_LB = "DNSLB"  # the proxy resolves the hostname
    DNS_ROUND_ROBIN_LB = "DNSRoundRobinLB"
    PASSTHROUGH = "Passthrough"  # headless: connect to the address the app asked for


# ``protocol.Instance`` lives with the rest of pkg/config (mesh/config/protocol.py); the model
# keeps the name its readers know.
ServiceProtocol = Instance


@dataclass(frozen=True)
class Port:
    name: str
    port: int
    protocol: ServiceProtocol = ServiceProtocol.TCP


@dataclass
class Service:
    hostname: str  # reviews.default.svc.cluster.local
    namespace: str
    name: str
    ports: list[Port] = field(default_factory=list)
    cluster_vip: str = ""  # the ClusterIP ("" or "None" for headless)
    resolution: Resolution = Resolution.CLIENT_SIDE_LB
    mesh_external: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    selector: dict[str, str] = field(default_factory=dict)  # LabelSelectors
    service_accounts: list[str] = field(default_factory=list)
    export_to: tuple[str, ...] = ()  # empty: MeshConfig defaultServiceExportTo decides
    registry: str = "Kubernetes"  # provider.ID
    resource_version: str = ""
    external_name: str = ""  # ExternalName services
    service_type: str = ""  # Attributes.Type: ClusterIP, NodePort, LoadBalancer, ExternalName ("" for ServiceEntry)
    creation_time: str = ""  # metadata.creationTimestamp of the source object

    @property
    def key(self) -> str:
        """``Service.Key()``: namespace/hostname."""
        return f"{self.namespace}/{self.hostname}"

    def port_by_number(self, number: int) -> Port | None:
        return next((p for p in self.ports if p.port == number), None)

    def port_by_name(self, name: str) -> Port | None:
        return next((p for p in self.ports if p.name == name), None)


class HealthStatus(Enum):
    HEALTHY = "Healthy"
    UNHEALTHY = "UnHealthy"


@dataclass
class IstioEndpoint:
    """One address:port that serves one port of a service."""

    address: str
    endpoint_port: int
    service_port_name: str
    labels: dict[str, str] = field(default_factory=dict)
    service_account: str = ""  # spiffe://<td>/ns/<ns>/sa/<sa>
    network: str = ""
    locality: str = ""  # region/zone/subzone
    lb_weight: int = 0
    tls_mode: str = "disabled"  # "istio" when a sidecar is present
    namespace: str = ""
    workload_name: str = ""
    node_name: str = ""
    health: HealthStatus = HealthStatus.HEALTHY


class ServiceDiscovery(Protocol):
    """What generators ask of the registries (``model.ServiceDiscovery``, trimmed)."""

    def services(self) -> list[Service]: ...

    def get_service(self, hostname: str) -> Service | None: ...

    def endpoints(self, hostname: str, port: int) -> list[IstioEndpoint]: ...
