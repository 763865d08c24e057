"""Environment: the shared state every part of istiod reads — mesh config, networks, registries.

Go: ``model.Environment`` (https://github.com/istio/istio/blob/1.19.0/pilot/pkg/model/context.go#L70-L121),
created first thing in ``NewServer``
(https://github.com/istio/istio/blob/1.19.0/pilot/pkg/bootstrap/server.go#L208-L217). Stages fill
it in: initMeshConfiguration sets the mesh watcher, initMeshNetworks the networks watcher,
InitNetworksManager the network manager, initControllers the service registries and config store.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mesh.config.mesh import MeshWatcher
from mesh.config.meshnetworks import NetworksWatcher
from mesh.model.network import NetworkManager
from mesh.trustbundle import TrustBundle


@dataclass
class Environment:
    domain_suffix: str = "cluster.local"
    mesh_watcher: MeshWatcher | None = None
    networks_watcher: NetworksWatcher | None = None
    network_manager: NetworkManager | None = None
    service_discovery: Any = None  # the aggregate service registry (initControllers)
    config_store: Any = None  # the aggregate config store (initControllers)
    trust_bundle: TrustBundle = field(default_factory=TrustBundle)  # filled by initWorkloadTrustBundle
    extras: dict[str, Any] = field(default_factory=dict)

    def mesh(self) -> dict:
        if self.mesh_watcher is None:
            raise RuntimeError("mesh config is not initialised yet: run init_mesh_configuration first")
        return self.mesh_watcher.mesh()

    def networks(self) -> dict:
        if self.networks_watcher is None:
            raise RuntimeError("mesh networks are not initialised yet: run init_mesh_networks first")
        return self.networks_watcher.networks()
