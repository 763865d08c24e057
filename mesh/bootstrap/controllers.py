"""Stage 7, initControllers: build the config store and the service registries.

Go: ``initControllers`` https://github.com/istio/istio/blob/1.19.0/pilot/pkg/bootstrap/server.go#L1104-L1122
calls ``initConfigController``
(https://github.com/istio/istio/blob/1.19.0/pilot/pkg/bootstrap/configcontroller.go#L61-L133) and
``initServiceControllers``
(https://github.com/istio/istio/blob/1.19.0/pilot/pkg/bootstrap/servicecontroller.go#L31-L67).

Config sources, in istiod's order of precedence:

1. ``configSources`` in the mesh config (``k8s://`` → the CRD store, ``fs:///dir`` → a file
   source; other addresses — MCP over xDS — are not modelled and are logged);
2. else ``--configDir`` → a file source;
3. else the CRD store over the kube client, followed by the Gateway API controller
   (``PILOT_ENABLE_GATEWAY_API``, on by default) —
   https://github.com/istio/istio/blob/1.19.0/pilot/pkg/bootstrap/configcontroller.go#L135-L148;

then the Ingress controller when Kubernetes is a registry and ``ingressControllerMode`` is not
OFF; all of them wrapped into one aggregate store (``MakeCache``).

Service registries: the ServiceEntry registry over that store first, then one per
``--registries`` entry (only ``Kubernetes`` exists), all in the aggregate controller.

Last, as at the end of ``initConfigController`` (configcontroller.go#L203), the WorkloadEntry
controller over the CRD store (the one store that can be written) becomes the DiscoveryServer's
``workload_entry_controller`` (``mesh.autoregistration``); with only file sources there is none.

Simplification, named: istiod starts the controllers later, in ``Server.Start`` ("config
controller" and "service controllers" start functions). mesh runs them at the end of this stage,
so that after ``run_until("init_controllers")`` the stores and registries already hold the
trace's objects.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mesh.autoregistration.controller import WorkloadEntryController
from mesh.configcontroller.aggregate import (
    AggregateConfigStore,
    ConvertedStore,
    gateway_api_store,
    ingress_store,
)
from mesh.configcontroller.crdclient import CrdClient
from mesh.configcontroller.filesource import FileSource
from mesh.serviceregistry.aggregate import AggregateRegistry
from mesh.serviceregistry.kube.controller import KubeRegistry
from mesh.serviceregistry.serviceentry.controller import ServiceEntryRegistry

if TYPE_CHECKING:
    from mesh.bootstrap.server import Server

log = logging.getLogger("mesh.bootstrap")


@dataclass
class Controllers:
    """Everything stage 7 built, for later stages and notebooks to reach."""

    config_store: AggregateConfigStore
    service_discovery: AggregateRegistry
    crd_client: CrdClient | None = None
    file_sources: list[FileSource] = field(default_factory=list)
    ingress: ConvertedStore | None = None
    gateway_api: ConvertedStore | None = None
    service_entry_registry: ServiceEntryRegistry | None = None
    kube_registry: KubeRegistry | None = None


def init_config_controller(server: Server) -> tuple[AggregateConfigStore, dict]:
    args, env = server.args, server.environment
    mesh = env.mesh()
    domain = env.domain_suffix
    parts: dict = {"crd_client": None, "file_sources": [], "ingress": None, "gateway_api": None}
    stores: list = []
    if mesh.get("configSources"):
        for source in mesh["configSources"]:
            address = source.get("address", "")
            if address == "k8s://":
                if server.kube_client is None:
                    raise ValueError(
                        "configSources: k8s:// needs a Kubernetes client (a trace or a kubeconfig)"
                    )
                parts["crd_client"] = CrdClient(server.kube_client, domain, args.revision)
                stores.append(parts["crd_client"])
            elif address.startswith("fs://"):
                fs = FileSource(address.removeprefix("fs://"), domain)
                parts["file_sources"].append(fs)
                stores.append(fs)
            else:
                log.warning(
                    "config source %s is not supported by mesh (MCP over xDS is not modelled)", address
                )
    elif args.config_dir:
        fs = FileSource(args.config_dir, domain)
        parts["file_sources"].append(fs)
        stores.append(fs)
    elif server.kube_client is not None:
        parts["crd_client"] = CrdClient(server.kube_client, domain, args.revision)
        stores.append(parts["crd_client"])
        parts["gateway_api"] = gateway_api_store(server.kube_client, domain)
        stores.append(parts["gateway_api"])
    if (
        server.kube_client is not None
        and "Kubernetes" in args.registries
        and mesh.get("ingressControllerMode", "STRICT") != "OFF"
    ):
        parts["ingress"] = ingress_store(server.kube_client, env.mesh, domain)
        stores.append(parts["ingress"])
    return AggregateConfigStore(stores), parts


def init_service_controllers(server: Server, config_store: AggregateConfigStore) -> dict:
    args, env = server.args, server.environment

    def trust_domain() -> str:
        return server.trust_domain or "cluster.local"

    registry = AggregateRegistry(clock=server.clock, push=server.xds.config_update)
    service_entries = ServiceEntryRegistry(config_store, registry, trust_domain=trust_domain)
    registry.add_registry(service_entries)
    kube = None
    seen: set[str] = set()
    for name in args.registries:
        if name in seen:
            log.warning("%s registry specified multiple times", name)
            continue
        seen.add(name)
        if name != "Kubernetes":
            raise ValueError(f"service registry {name} is not supported (mesh knows: Kubernetes)")
        if server.kube_client is None:
            raise ValueError("the Kubernetes registry needs a Kubernetes client: run init_kube_client first")
        kube = KubeRegistry(
            server.kube_client,
            registry,
            env.domain_suffix,
            trust_domain=trust_domain,
            mesh_networks=env.networks,
            system_namespace=args.namespace,
        )
        registry.add_registry(kube)
        # Pods feed ServiceEntry workload selectors; WorkloadEntries feed Kubernetes Service selectors.
        kube.append_workload_handler(service_entries.workload_instance_handler)
        service_entries.append_workload_handler(kube.workload_instance_handler)
    return {"service_discovery": registry, "service_entry_registry": service_entries, "kube_registry": kube}


def init_controllers(server: Server) -> Controllers:
    config_store, config_parts = init_config_controller(server)
    if config_parts["crd_client"] is not None:
        server.xds.workload_entry_controller = WorkloadEntryController(
            config_parts["crd_client"], server.clock, instance_id=server.args.pod_name)
    service_parts = init_service_controllers(server, config_store)
    controllers = Controllers(config_store=config_store, **config_parts, **service_parts)
    # Start (see the module docstring): Kubernetes first, so Pods are known when ServiceEntries select.
    if controllers.kube_registry is not None:
        controllers.kube_registry.run()
    controllers.service_entry_registry.run()
    return controllers
