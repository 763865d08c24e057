"""What registries tell the rest of istiod: service events, workload instances, and the XDSUpdater.

Go: ``model.XDSUpdater`` https://github.com/istio/istio/blob/1.19.0/pilot/pkg/model/push_context.go#L311-L338
(implemented by the DiscoveryServer), ``model.WorkloadInstance``
https://github.com/istio/istio/blob/1.19.0/pilot/pkg/model/service.go#L307-L316, and the
service/workload handler lists of ``model.ControllerHandlers`` and ``model.Event``
https://github.com/istio/istio/blob/1.19.0/pilot/pkg/model/controller.go#L67-L133.

A registry never pushes config itself. It reports through two channels:

* the **XDSUpdater** (``eds_update``: "these are now the endpoints of host H" — an incremental
  EDS push; ``config_update``: a full push, e.g. for headless services; ``svc_update`` and
  ``proxy_update``: bookkeeping);
* **service handlers** ``(prev, curr, event)``, which initRegistryEventHandlers (stage 15)
  turns into full pushes.

In mesh the aggregate controller plays the XDSUpdater for its registries (see
``mesh.serviceregistry.aggregate``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from mesh.model.push_request import PushRequest
from mesh.model.service import IstioEndpoint, Service

EVENT_ADD = "add"
EVENT_UPDATE = "update"
EVENT_DELETE = "delete"

ServiceHandler = Callable[[Service | None, Service | None, str], object]  # (prev, curr, event)


@dataclass
class WorkloadInstance:
    """A Pod or WorkloadEntry as a candidate endpoint for selector-based services."""

    name: str
    namespace: str
    kind: str  # "Pod" | "WorkloadEntry"
    endpoint: IstioEndpoint  # port-less: address, labels, identity, locality
    port_map: dict[str, int] = field(default_factory=dict)  # named container / WorkloadEntry ports
    dns_service_entry_only: bool = False  # address is a hostname: only DNS ServiceEntries may select it


WorkloadHandler = Callable[[WorkloadInstance, str], object]


class XdsUpdater(Protocol):
    """What registries call when something changes (``model.XDSUpdater``, trimmed)."""

    def eds_update(self, hostname: str, namespace: str, endpoints: list[IstioEndpoint]) -> None: ...

    def eds_cache_update(self, hostname: str, namespace: str, endpoints: list[IstioEndpoint]) -> None: ...

    def config_update(self, request: PushRequest) -> None: ...

    def svc_update(self, hostname: str, namespace: str, event: str) -> None: ...

    def proxy_update(self, ip: str) -> None: ...


def services_equal(a: Service | None, b: Service | None) -> bool:
    """``Service.Equals`` (https://github.com/istio/istio/blob/1.19.0/pilot/pkg/model/service.go#L1183-L1213):
    the same service for the proxies. Resource version and creation time do not count — and,
    as in istiod, neither does the resolution."""
    if a is None or b is None:
        return a is b
    return (a.hostname, a.namespace, a.name, a.ports, a.service_accounts, a.cluster_vip, a.mesh_external,
            a.labels, a.selector, a.export_to, a.registry, a.external_name, a.service_type) == (
        b.hostname, b.namespace, b.name, b.ports, b.service_accounts, b.cluster_vip, b.mesh_external,
        b.labels, b.selector, b.export_to, b.registry, b.external_name, b.service_type)


def service_update_needs_push(prev: Service | None, curr: Service | None) -> bool:
    """``serviceUpdateNeedsPush`` (https://github.com/istio/istio/blob/1.19.0/pilot/pkg/bootstrap/server.go#L1347-L1355),
    for the service handler stage 15 registers: an update that changes nothing a proxy sees is skipped."""
    return prev is None or not services_equal(prev, curr)
