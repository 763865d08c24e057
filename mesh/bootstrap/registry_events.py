"""Stage 15, initRegistryEventHandlers: turn registry and config changes into push requests.

Go: https://github.com/istio/istio/blob/1.19.0/pilot/pkg/bootstrap/server.go#L843-L924 (istiod
keeps it in server.go; it is long enough here to be a module of its own).

* a service added or deleted, or updated in a way a proxy can see (``serviceUpdateNeedsPush``) →
  full push, reason ``service``, ConfigsUpdated = the service as a ServiceEntry key;
* an Istio config added, deleted, or updated with a changed spec (``needsPush``) → full push,
  reason ``config``, ConfigsUpdated = that config; ServiceEntry and WorkloadEntry are left to the
  ServiceEntry registry, which pushes for them itself;
* new endpoints of a service → ``XDSServer.EDSUpdate``: an incremental (EDS-only) push, reason
  ``endpoint`` (full the first time a service has endpoints). In istiod the registry calls
  EDSUpdate directly; mesh routes it through the aggregate's ``eds_handlers`` so this stage is the
  one place where changes become pushes;
* a pod's labels or IP changed → ``XDSServer.ProxyUpdate``: a full push of that pod's proxy alone,
  reason ``proxy``, not debounced (the registry calls it directly in istiod, through the
  aggregate's ``proxy_handlers`` here).

Config handlers registered now are told about every existing config, so the first push after
startup covers it; the service registry does not replay existing services (proxies get them
anyway: a new connection is sent everything).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from mesh.configcontroller.crdclient import needs_push
from mesh.model.push_request import ConfigKey, PushRequest, TriggerReason
from mesh.serviceregistry.events import EVENT_UPDATE, service_update_needs_push

if TYPE_CHECKING:
    from mesh.bootstrap.server import Server

log = logging.getLogger("mesh.bootstrap")

# Kinds the ServiceEntry registry pushes for itself (server.go#L889-L898).
SERVICE_ENTRY_KINDS = ("ServiceEntry", "WorkloadEntry", "WorkloadGroup")


def init_registry_event_handlers(server: Server) -> None:
    xds = server.xds
    registry = server.environment.service_discovery
    if registry is not None:
        def on_service(prev, curr, event: str) -> None:
            if event == EVENT_UPDATE and not service_update_needs_push(prev, curr):
                return
            svc = curr or prev
            xds.config_update(PushRequest.of(
                TriggerReason.SERVICE, configs={ConfigKey("ServiceEntry", svc.hostname, svc.namespace)}))

        def on_endpoints(hostname: str, namespace: str, endpoints) -> None:
            xds.eds_update(hostname, namespace, endpoints)  # incremental, or full for a new service

        registry.append_service_handler(on_service)
        registry.eds_handlers.append(on_endpoints)
        registry.proxy_handlers.append(xds.proxy_update)  # a pod's labels or IP changed: its proxy alone
        # The endpoints already known are istiod's initial EndpointIndex (filled during its cache
        # sync), so the first change to them after start is incremental, not "a new service".
        for svc in registry.services():
            endpoints = [e for p in svc.ports for e in registry.endpoints(svc.hostname, p.port)]
            if endpoints:
                xds.endpoint_index[(svc.hostname, svc.namespace)] = frozenset(
                    e.service_account for e in endpoints if e.service_account)

    store = server.environment.config_store
    if store is not None:
        def on_config(prev, curr, event: str) -> None:
            if event == EVENT_UPDATE and not needs_push(prev, curr):
                log.debug("skipping push for %s/%s: spec unchanged", curr.namespace, curr.name)
                return
            cfg = curr or prev
            xds.config_update(PushRequest.of(
                TriggerReason.CONFIG, configs={ConfigKey(cfg.kind, cfg.name, cfg.namespace)}))

        for kind in store.schemas():
            if kind not in SERVICE_ENTRY_KINDS:
                store.register_event_handler(kind, on_config)
