"""The aggregate controller: one ServiceDiscovery over every registry, and the registries' XDSUpdater.

Go: https://github.com/istio/istio/blob/1.19.0/pilot/pkg/serviceregistry/aggregate/controller.go —
``addRegistry`` (#L142-L153) subscribes to each registry's service handlers;
``Services`` (#L225-L264) concatenates, keeping one service per hostname for Kubernetes;
``GetService`` (#L266-L285) returns the first non-Kubernetes match at once;
``InstancesByPort`` (#L313-L321) concatenates.

Registries are asked in the order they were added. istiod adds the ServiceEntry registry
first (https://github.com/istio/istio/blob/1.19.0/pilot/pkg/bootstrap/servicecontroller.go#L35-L39)
and the Kubernetes one after, so a ServiceEntry for a Kubernetes hostname shadows it in
``get_service``.

In istiod the registries' XDSUpdater is the DiscoveryServer itself. Here the aggregate stands
in between so the reader can see what was reported: every ``eds_update`` is recorded in
``eds_updates`` and passed to the ``eds_handlers`` (stage 15 connects one that requests an
incremental push), every ``eds_cache_update`` to the ``eds_cache_handlers`` (refresh only);
``config_update`` goes to ``push`` (set by stage 7 to the DiscoveryServer's ``config_update``),
every ``proxy_update`` to the ``proxy_handlers`` (stage 15 connects the DiscoveryServer's);
service events go to ``service_handlers`` (stage 15 turns them into full pushes, as
``initRegistryEventHandlers`` does).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from mesh.clock import Clock
from mesh.model.push_request import PushRequest
from mesh.model.service import IstioEndpoint, Service
from mesh.serviceregistry.events import ServiceHandler

log = logging.getLogger(__name__)

EdsHandler = Callable[[str, str, list[IstioEndpoint]], object]  # (hostname, namespace, endpoints)


@dataclass(frozen=True)
class EdsUpdate:
    """One report from a registry: the endpoints of a host are now these."""

    at: float
    hostname: str
    namespace: str
    endpoints: tuple[IstioEndpoint, ...]
    push: bool = True  # False: EDSCacheUpdate (refresh the cache, no push)


@dataclass(frozen=True)
class ServiceEvent:
    at: float
    hostname: str
    namespace: str
    event: str


@dataclass
class AggregateRegistry:
    """``aggregate.Controller``: implements ServiceDiscovery and the registries' XDSUpdater."""

    clock: Clock | None = None
    push: Callable[[PushRequest], object] | None = None  # the DiscoveryServer's config_update
    registries: list = field(default_factory=list)
    service_handlers: list[ServiceHandler] = field(default_factory=list)
    eds_handlers: list[EdsHandler] = field(default_factory=list)
    eds_cache_handlers: list[EdsHandler] = field(default_factory=list)  # EDSCacheUpdate: refresh, no push
    eds_updates: list[EdsUpdate] = field(default_factory=list)
    service_events: list[ServiceEvent] = field(default_factory=list)
    proxy_updates: list[str] = field(default_factory=list)
    proxy_handlers: list[Callable[[str], object]] = field(default_factory=list)  # ProxyUpdate(ip)

    def add_registry(self, registry) -> None:
        self.registries.append(registry)
        registry.append_service_handler(self._notify_service_handlers)

    def registry(self, provider: str):
        return next((r for r in self.registries if r.provider == provider), None)

    # -- ServiceDiscovery ---------------------------------------------------------------------
    def services(self) -> list[Service]:
        out: list[Service] = []
        seen_kube: set[str] = set()
        for registry in self.registries:
            for svc in registry.services():
                if registry.provider == "Kubernetes":
                    if svc.hostname in seen_kube:
                        continue  # the same host from a second cluster: mesh has one cluster
                    seen_kube.add(svc.hostname)
                out.append(svc)
        return out

    def get_service(self, hostname: str) -> Service | None:
        for registry in self.registries:
            svc = registry.get_service(hostname)
            if svc is not None:
                return svc
        return None

    def endpoints(self, hostname: str, port: int) -> list[IstioEndpoint]:
        """``InstancesByPort`` for the service with this hostname: endpoints of service port ``port``."""
        out: list[IstioEndpoint] = []
        for registry in self.registries:
            out += registry.endpoints(hostname, port)
        return out

    def all_endpoints(self, hostname: str) -> list[IstioEndpoint]:
        out: list[IstioEndpoint] = []
        for registry in self.registries:
            out += registry.all_endpoints(hostname)
        return out

    def instances(self, hostname: str) -> dict[int, list[IstioEndpoint]]:
        """Every port of a service with its endpoints: {service port: endpoints}."""
        svc = self.get_service(hostname)
        return {p.port: self.endpoints(hostname, p.port) for p in svc.ports} if svc else {}

    def pod_by_ip(self, ip: str) -> dict | None:
        kube = self.registry("Kubernetes")
        return kube.pod_by_ip(ip) if kube is not None else None

    def pod_by_proxy(self, pod_name: str, namespace: str, ip: str) -> dict | None:
        kube = self.registry("Kubernetes")
        return kube.pod_by_proxy(pod_name, namespace, ip) if kube is not None else None

    def proxy_workload_labels(self, proxy) -> dict[str, str] | None:
        """``GetProxyWorkloadLabels``: the first registry that knows the proxy's workload."""
        for registry in self.registries:
            find = getattr(registry, "proxy_workload_labels", None)  # the ServiceEntry registry has none yet
            labels = find(proxy) if find is not None else None
            if labels is not None:
                return labels
        return None

    def has_synced(self) -> bool:
        return all(r.has_synced() for r in self.registries)

    def append_service_handler(self, handler: ServiceHandler) -> None:
        self.service_handlers.append(handler)

    def _notify_service_handlers(self, prev: Service | None, curr: Service | None, event: str) -> None:
        for handler in list(self.service_handlers):
            handler(prev, curr, event)

    # -- XDSUpdater (what registries report) -----------------------------------------------------
    def _now(self) -> float:
        return self.clock.now() if self.clock is not None else 0.0

    def on_endpoints_changed(self, hostname: str, namespace: str, endpoints: list[IstioEndpoint]) -> None:
        """``EDSUpdate``: record, then tell every EDS handler (an incremental push, once stage 15
        connects one)."""
        self.eds_updates.append(EdsUpdate(self._now(), hostname, namespace, tuple(endpoints)))
        for handler in list(self.eds_handlers):
            handler(hostname, namespace, list(endpoints))

    eds_update = on_endpoints_changed

    def eds_cache_update(self, hostname: str, namespace: str, endpoints: list[IstioEndpoint]) -> None:
        """``EDSCacheUpdate``: the endpoints changed along with the service; no push of its own."""
        self.eds_updates.append(EdsUpdate(self._now(), hostname, namespace, tuple(endpoints), push=False))
        for handler in list(self.eds_cache_handlers):
            handler(hostname, namespace, list(endpoints))

    def config_update(self, request: PushRequest) -> None:
        if self.push is not None:
            self.push(request)
        else:
            log.info("no discovery server connected: dropping %s", request.describe())

    def svc_update(self, hostname: str, namespace: str, event: str) -> None:
        self.service_events.append(ServiceEvent(self._now(), hostname, namespace, event))

    def proxy_update(self, ip: str) -> None:
        """``ProxyUpdate``: the pod with this IP changed in a way its own proxy sees (labels, a new
        IP): record it and tell the proxy handlers (stage 15 connects the DiscoveryServer's)."""
        self.proxy_updates.append(ip)
        del self.proxy_updates[:-1000]  # the recent ones, for the views
        for handler in list(self.proxy_handlers):
            handler(ip)
