"""MeshNetworks: which endpoints belong to which network, and the gateways that reach each one.

Go: ``ParseMeshNetworks`` and its validation
(https://github.com/istio/istio/blob/1.19.0/pkg/config/mesh/mesh.go#L297-L309,
https://github.com/istio/istio/blob/1.19.0/pkg/config/validation/validation.go#L3754-L3798)
and the networks watcher that fires handlers only on a real change
(https://github.com/istio/istio/blob/1.19.0/pkg/config/mesh/networks_watcher.go#L106-L126).

A MeshNetworks is a dict as users write it::

    networks:
      network1:
        endpoints: [{fromRegistry: Kubernetes}]
        gateways: [{address: 127.0.0.50, port: 15443}]
"""

from __future__ import annotations

import copy
import ipaddress
import logging
import re

import yaml

from mesh.config.watcher import Watcher
from mesh.util.net import is_ip_address

log = logging.getLogger(__name__)

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", re.IGNORECASE)
_FQDN = re.compile(r"^(?=.{1,253}$)([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$",
                   re.IGNORECASE)


class MeshNetworksError(ValueError):
    pass


def empty_mesh_networks() -> dict:
    return {"networks": {}}


def parse_mesh_networks(text: str) -> dict:
    """YAML → MeshNetworks dict, validated as Istio validates it; errors name the network and field."""
    try:
        data = yaml.safe_load(text) if text and text.strip() else {}
    except yaml.YAMLError as err:
        raise MeshNetworksError(f"invalid YAML: {err}") from err
    data = data or {}
    if not isinstance(data, dict) or set(data) - {"networks"}:
        raise MeshNetworksError("expected a mapping with the single field 'networks'")
    networks = data.get("networks") or {}
    if not isinstance(networks, dict):
        raise MeshNetworksError("networks: expected a mapping of network name to network")
    problems = [p for name, net in networks.items() for p in _validate_network(name, net)]
    if problems:
        raise MeshNetworksError("; ".join(problems))
    return {"networks": copy.deepcopy(networks)}


def _validate_network(name: str, network: dict) -> list[str]:
    where = f"networks.{name}"
    if not isinstance(network, dict):
        return [f"{where}: expected a mapping"]
    problems = []
    for i, ep in enumerate(network.get("endpoints") or []):
        if "fromCidr" in ep:
            try:
                ipaddress.ip_network(ep["fromCidr"], strict=False)
            except ValueError:
                problems.append(f"{where}.endpoints[{i}].fromCidr: invalid CIDR {ep['fromCidr']!r}")
        elif "fromRegistry" in ep:
            if not _DNS1123_LABEL.match(str(ep["fromRegistry"])):
                problems.append(f"{where}.endpoints[{i}].fromRegistry: invalid registry name {ep['fromRegistry']!r}")
    for i, gw in enumerate(network.get("gateways") or []):
        if "registryServiceName" in gw:
            if not _FQDN.match(str(gw["registryServiceName"])):
                problems.append(f"{where}.gateways[{i}].registryServiceName: not a valid FQDN")
        elif "address" in gw:
            if not (is_ip_address(str(gw["address"])) or _FQDN.match(str(gw["address"]))):
                problems.append(f"{where}.gateways[{i}].address: {gw['address']!r} is not an IP address or DNS name")
        else:
            problems.append(f"{where}.gateways[{i}]: needs address or registryServiceName")
        port = gw.get("port")
        if not isinstance(port, int) or not 1 <= port <= 65535:
            problems.append(f"{where}.gateways[{i}].port: {port!r} is not a valid port")
    return problems


class NetworksWatcher(Watcher):
    """Holds the current MeshNetworks; handlers run, in the order they were added, only when it
    really changes (``mesh.NetworksWatcher``, one ``mesh.config.watcher.Watcher``)."""

    what = "mesh networks"
    error = MeshNetworksError

    def __init__(self, networks: dict | None = None, source: str = "defaults"):
        super().__init__(networks if networks is not None else empty_mesh_networks(), source)

    def parse(self, text: str) -> dict:
        return parse_mesh_networks(text)

    networks = Watcher.current
    add_networks_handler = Watcher.add_handler
    set_networks = Watcher.set
