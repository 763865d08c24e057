"""NetworkManager: the gateways through which each network's endpoints are reached.

Go: https://github.com/istio/istio/blob/1.19.0/pilot/pkg/model/network.go#L93-L167 — built in
``Environment.InitNetworksManager``
(https://github.com/istio/istio/blob/1.19.0/pilot/pkg/model/context.go#L203-L206). It merges
two sources: gateways written in MeshNetworks, and gateways the service registries discover
(Services labelled ``topology.istio.io/network``). When the set changes it asks for a full push
with reason ``networks``, because every proxy's EDS may now route remote endpoints differently.

Simplifications, named: gateways given by hostname are kept as "unresolved" and never resolved
(Istio resolves them with DNS; mesh never sends packets off loopback); registry gateways are
fed in by the service registry with ``set_registry_gateways``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import NamedTuple

from mesh.config.meshnetworks import NetworksWatcher
from mesh.model.push_request import PushRequest, TriggerReason
from mesh.util.net import is_ip_address

log = logging.getLogger(__name__)


class NetworkGateway(NamedTuple):
    network: str
    cluster: str
    address: str
    port: int


class NetworkManager:
    def __init__(self, networks_watcher: NetworksWatcher, config_update: Callable[[PushRequest], object] | None):
        self._watcher = networks_watcher
        self._config_update = config_update
        self._registry_gateways: set[NetworkGateway] = set()
        self.gateways: list[NetworkGateway] = []  # with IP addresses: usable in EDS
        self.unresolved: list[NetworkGateway] = []  # everything, hostnames included
        networks_watcher.add_networks_handler(self.reload_gateways)
        self.reload()

    def by_network(self) -> dict[str, list[NetworkGateway]]:
        out: dict[str, list[NetworkGateway]] = {}
        for gw in self.gateways:
            out.setdefault(gw.network, []).append(gw)
        return out

    def set_registry_gateways(self, gateways: set[NetworkGateway]) -> None:
        self._registry_gateways = set(gateways)
        self.reload_gateways()

    def reload_gateways(self) -> None:
        """Recompute; on a change, request a full push (reason ``networks``)."""
        if self.reload() and self._config_update is not None:
            log.info("network gateways changed, requesting a full push")
            self._config_update(PushRequest.of(TriggerReason.NETWORKS))

    def reload(self) -> bool:
        found: set[NetworkGateway] = set()
        for name, network in (self._watcher.networks().get("networks") or {}).items():
            for gw in network.get("gateways") or []:
                if gw.get("address"):  # registryServiceName gateways come from the registry
                    found.add(NetworkGateway(name, "", gw["address"], int(gw["port"])))
        found |= self._registry_gateways
        unresolved = sorted(found)
        resolved = [gw for gw in unresolved if is_ip_address(gw.address)]
        changed = resolved != self.gateways or unresolved != self.unresolved
        self.gateways, self.unresolved = resolved, unresolved
        return changed
