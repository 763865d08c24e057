"""The ServiceEntry registry: ServiceEntries (and the Pods and WorkloadEntries they select) → services
and endpoints.

Go: https://github.com/istio/istio/blob/1.19.0/pilot/pkg/serviceregistry/serviceentry/controller.go —
``workloadEntryHandler`` (#L218-L339), ``serviceEntryHandler`` (#L361-L473),
``WorkloadInstanceHandler`` (#L476-L616, Pods arriving from the Kubernetes registry),
``Services``/``GetService``/``InstancesByPort`` (#L645-L695), ``makeConfigKey`` (#L1002-L1008).

Unlike the Kubernetes registry, this one pushes by itself (it holds the XDSUpdater):

* a ServiceEntry add or delete, or an update that changes its services, is a **full push**
  (reason ``service``) naming ``ServiceEntry/<ns>/<host>`` for each changed host;
* an update that only changes endpoints is an **EDS update** for each host — except for DNS
  ServiceEntries, whose endpoints are hostnames in the CDS cluster, so they need a full push;
* a WorkloadEntry or Pod change re-selects: each selecting ServiceEntry's hosts get an EDS
  update (a full push, reason ``endpoint``, if the ServiceEntry resolves by DNS).
  WorkloadEntries are also handed to the Kubernetes registry, whose Services may select them.

Simplifications, named: instead of Go's incremental instance indexes, the endpoints of an
affected ServiceEntry are recomputed from scratch and compared; no IP auto-allocation
(``ISTIO_META_DNS_AUTO_ALLOCATE``); WorkloadEntry health checks are not modelled (every entry
is healthy). WorkloadGroups are not read here: the WorkloadEntries that
``mesh.autoregistration`` creates from them for connecting VMs
(https://github.com/istio/istio/blob/1.19.0/pilot/pkg/autoregistration/controller.go#L191-L230)
arrive through the store like any other WorkloadEntry.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

from mesh.kube.selectors import matches_labels
from mesh.model.config import Config, ConfigStore
from mesh.model.push_request import ConfigKey, PushRequest, TriggerReason
from mesh.model.service import IstioEndpoint, Service
from mesh.serviceregistry.events import (
    EVENT_ADD,
    EVENT_DELETE,
    EVENT_UPDATE,
    WorkloadHandler,
    WorkloadInstance,
    XdsUpdater,
    services_equal,
)
from mesh.serviceregistry.serviceentry import conversion as conv

log = logging.getLogger(__name__)

NamespacedName = tuple[str, str]  # (namespace, name)


def config_key(svc: Service) -> ConfigKey:
    """``makeConfigKey``: how a ServiceEntry host is named in a PushRequest."""
    return ConfigKey("ServiceEntry", svc.hostname, svc.namespace)


class ServiceEntryRegistry:
    provider = "External"

    def __init__(
        self,
        store: ConfigStore,
        updater: XdsUpdater,
        trust_domain: Callable[[], str] = lambda: "cluster.local",
        cluster_id: str = "Kubernetes",
    ):
        self.store = store
        self.updater = updater
        self.trust_domain = trust_domain
        self.cluster_id = cluster_id
        self.entries: dict[NamespacedName, Config] = {}
        self.services_by_entry: dict[NamespacedName, list[Service]] = {}
        self.endpoints_by_entry: dict[NamespacedName, dict[str, list[IstioEndpoint]]] = {}  # host → endpoints
        self.workload_instances: dict[tuple[str, str, str], WorkloadInstance] = {}  # (kind, ns, name)
        self.workload_handlers: list[WorkloadHandler] = []
        self.service_handlers: list = []  # Go's AppendServiceHandler is a no-op here: it pushes itself
        self.running = False

    def run(self) -> None:
        """Subscribe to WorkloadEntries, then ServiceEntries; existing ones arrive as adds."""
        if self.running:
            return
        self.running = True
        self.store.register_event_handler("WorkloadEntry", self._on_workload_entry)
        self.store.register_event_handler("ServiceEntry", self._on_service_entry)

    # -- ServiceDiscovery ---------------------------------------------------------------------
    def services(self) -> list[Service]:
        out = [svc for key in sorted(self.services_by_entry) for svc in self.services_by_entry[key]]
        return sorted(out, key=lambda s: (s.hostname, s.namespace))

    def get_service(self, hostname: str) -> Service | None:
        return next((s for s in self.services() if s.hostname == hostname), None)

    def all_endpoints(self, hostname: str, namespace: str | None = None) -> list[IstioEndpoint]:
        out: list[IstioEndpoint] = []
        for (ns, _), by_host in sorted(self.endpoints_by_entry.items()):
            if namespace is None or ns == namespace:
                out += by_host.get(hostname, [])
        return out

    def endpoints(self, hostname: str, port: int) -> list[IstioEndpoint]:
        svc = self.get_service(hostname)
        svc_port = svc.port_by_number(port) if svc else None
        if svc_port is None:
            return []
        return [
            ep for ep in self.all_endpoints(hostname, svc.namespace) if ep.service_port_name == svc_port.name
        ]

    def append_service_handler(self, handler) -> None:
        self.service_handlers.append(handler)

    def append_workload_handler(self, handler: WorkloadHandler) -> None:
        self.workload_handlers.append(handler)

    def has_synced(self) -> bool:
        return True

    # -- ServiceEntry events ------------------------------------------------------------------
    def _on_service_entry(self, old: Config | None, curr: Config | None, event: str) -> None:
        cfg = curr if curr is not None else old
        key = (cfg.namespace, cfg.name)
        before = self.services_by_entry.get(key, [])
        if event == EVENT_DELETE:
            now: list[Service] = []
            self.entries.pop(key, None)
            self.services_by_entry.pop(key, None)
            self.endpoints_by_entry.pop(key, None)
        else:
            now = conv.convert_services(cfg)
            self.entries[key] = cfg
            self.services_by_entry[key] = now
            self.endpoints_by_entry[key] = self._build_endpoints(cfg, now)

        old_by_host = {s.hostname: s for s in before}
        new_by_host = {s.hostname: s for s in now}
        changed = [s for h, s in new_by_host.items() if not services_equal(old_by_host.get(h), s)]
        deleted = [s for h, s in old_by_host.items() if h not in new_by_host]
        unchanged = [s for h, s in new_by_host.items() if services_equal(old_by_host.get(h), s)]
        configs = {config_key(s) for s in changed + deleted}
        for svc in changed:
            self.updater.svc_update(
                svc.hostname, svc.namespace, EVENT_ADD if svc.hostname not in old_by_host else EVENT_UPDATE
            )
        for svc in deleted:
            self.updater.svc_update(svc.hostname, svc.namespace, EVENT_DELETE)
        if unchanged and conv.is_dns(cfg.spec):
            configs |= {config_key(s) for s in unchanged}  # DNS endpoints live in CDS: full push

        if not configs:  # only endpoints may have changed: incremental
            for svc in unchanged:
                self.updater.eds_update(
                    svc.hostname, svc.namespace, self.all_endpoints(svc.hostname, svc.namespace)
                )
            return
        for svc in changed + unchanged:
            if not conv.is_dns(cfg.spec):
                self.updater.eds_cache_update(
                    svc.hostname, svc.namespace, self.all_endpoints(svc.hostname, svc.namespace)
                )
        self.updater.config_update(PushRequest.of(TriggerReason.SERVICE, configs=configs))

    def _build_endpoints(self, cfg: Config, services: list[Service]) -> dict[str, list[IstioEndpoint]]:
        spec = cfg.spec
        ports = spec.get("ports") or []
        out: dict[str, list[IstioEndpoint]] = {}
        for svc in services:
            eps: list[IstioEndpoint] = []
            if spec.get("workloadSelector") is not None:
                for wi in self._selected(cfg):
                    for port in ports:
                        eps.append(_instance_endpoint(wi, port))
            elif not spec.get("endpoints") and conv.is_dns(spec):
                eps = conv.dns_endpoints(svc, spec)
            else:
                for we in spec.get("endpoints") or []:
                    for port in ports:
                        eps.append(
                            conv.convert_endpoint(
                                cfg.namespace, port, we, self.trust_domain(), self.cluster_id
                            )
                        )
            out[svc.hostname] = eps
        return out

    def _selected(self, cfg: Config) -> list[WorkloadInstance]:
        selector = (cfg.spec.get("workloadSelector") or {}).get("labels") or {}
        dns = conv.is_dns(cfg.spec)
        return [
            wi
            for _, wi in sorted(self.workload_instances.items())
            if wi.namespace == cfg.namespace
            and matches_labels(selector, wi.endpoint.labels)
            and (dns or not wi.dns_service_entry_only)
        ]

    # -- workloads: WorkloadEntries and Pods -------------------------------------------------------
    def _on_workload_entry(self, old: Config | None, curr: Config | None, event: str) -> None:
        cfg = curr if curr is not None else old
        instance = conv.workload_entry_instance(cfg, self.trust_domain(), self.cluster_id)
        if not instance.dns_service_entry_only:
            for handler in list(self.workload_handlers):  # Kubernetes Services may select it
                handler(instance, event)
        if old is not None and curr is not None and old.labels != curr.labels:
            self.updater.proxy_update(instance.endpoint.address)
        self._workload_changed(instance, event, TriggerReason.ENDPOINT)

    def workload_instance_handler(self, instance: WorkloadInstance, event: str) -> None:
        """Pods reported by the Kubernetes registry (``WorkloadInstanceHandler``)."""
        if instance.kind != "Pod":
            return
        self._workload_changed(instance, event, TriggerReason.ENDPOINT)

    def _workload_changed(self, instance: WorkloadInstance, event: str, reason: str) -> None:
        key = (instance.kind, instance.namespace, instance.name)
        previous = self.workload_instances.get(key)
        if event == EVENT_DELETE:
            self.workload_instances.pop(key, None)
        else:
            self.workload_instances[key] = instance
        configs: set[ConfigKey] = set()
        eds: list[Service] = []
        for entry_key, cfg in sorted(self.entries.items()):
            selector = (cfg.spec.get("workloadSelector") or {}).get("labels")
            if selector is None or cfg.namespace != instance.namespace:
                continue
            if not any(
                w is not None and matches_labels(selector, w.endpoint.labels) for w in (instance, previous)
            ):
                continue
            services = self.services_by_entry.get(entry_key, [])
            self.endpoints_by_entry[entry_key] = self._build_endpoints(cfg, services)
            if conv.is_dns(cfg.spec):
                configs |= {config_key(s) for s in services}
            else:
                eds += services
        if configs:
            self.updater.config_update(PushRequest.of(reason, configs=configs))
        for svc in eds:
            self.updater.eds_update(
                svc.hostname, svc.namespace, self.all_endpoints(svc.hostname, svc.namespace)
            )


def _instance_endpoint(wi: WorkloadInstance, port: dict) -> IstioEndpoint:
    """``convertWorkloadInstanceToServiceInstance`` for one port."""
    return dataclasses.replace(
        wi.endpoint,
        service_port_name=port.get("name", ""),
        endpoint_port=conv.endpoint_port(port, wi.port_map),
    )
