"""Proxy: who is asking for config — a sidecar or a router (gateway), where, with what labels.

Go: ``model.Proxy`` (https://github.com/istio/istio/blob/1.19.0/pilot/pkg/model/context.go#L294)
and its node id parser ``ParseServiceNodeWithMetadata``
(https://github.com/istio/istio/blob/1.19.0/pilot/pkg/model/context.go#L1038-L1073).
An Envoy names itself with a node id of four ``~``-separated parts::

    sidecar~10.244.0.5~reviews-v1-7d5f8c9b4-x2k9p.default~default.svc.cluster.local
    <type>  ~<ip>      ~<pod name>.<namespace>          ~<DNS domain>
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mesh.util.net import is_ip_address

NODE_TYPES = ("sidecar", "router")
# How the pod's traffic reaches its proxy (node metadata ``INTERCEPTION_MODE``, which the
# injector sets from ``sidecar.istio.io/interceptionMode``): iptables REDIRECT (the default),
# TPROXY, or NONE (no capture: the app talks to the proxy's listeners itself).
# https://github.com/istio/istio/blob/1.19.0/pilot/pkg/model/context.go#L1182-L1197
INTERCEPTION_REDIRECT = "REDIRECT"
INTERCEPTION_TPROXY = "TPROXY"
INTERCEPTION_NONE = "NONE"


class NodeIdError(ValueError):
    pass


@dataclass
class Proxy:
    type: str  # sidecar | router
    ip_addresses: list[str]
    id: str  # <pod>.<namespace>
    dns_domain: str
    metadata: dict = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    service_account: str = ""
    istio_version: str = ""
    # Set when the WorkloadEntry controller takes the proxy on (``RegisterWorkload``): the entry it
    # stands for, and whether the controller created that entry (auto-registration).
    workload_entry_name: str = ""
    workload_entry_auto_created: bool = False
    # (namespace, service account) of the authenticated peer (``VerifiedIdentity``); mesh's ADS
    # authenticates no peer, so it stays None, as istiod leaves it on the plaintext port.
    verified_identity: tuple[str, str] | None = None

    @property
    def pod_name(self) -> str:
        return self.id.rsplit(".", 1)[0]

    @property
    def namespace(self) -> str:
        return self.metadata.get("NAMESPACE") or (self.id.rsplit(".", 1)[1] if "." in self.id else "")

    @property
    def interception_mode(self) -> str:
        """``GetInterceptionMode``: REDIRECT unless the metadata says TPROXY or NONE."""
        mode = str(self.metadata.get("INTERCEPTION_MODE") or "")
        return mode if mode in (INTERCEPTION_TPROXY, INTERCEPTION_NONE) else INTERCEPTION_REDIRECT

    @property
    def captured(self) -> bool:
        """Does iptables send the pod's traffic to this proxy (any mode but NONE)?"""
        return self.interception_mode != INTERCEPTION_NONE

    @property
    def node_id(self) -> str:
        return f"{self.type}~{self.ip_addresses[0]}~{self.id}~{self.dns_domain}"


# Node metadata fields mesh reads, and the JSON type each must have. istiod unmarshals the Struct
# into its NodeMetadata Go struct and answers a wrongly typed field with INVALID_ARGUMENT
# (``initProxyMetadata``, https://github.com/istio/istio/blob/1.19.0/pilot/pkg/xds/ads.go#L586-L594).
METADATA_TYPES = {"INSTANCE_IPS": str, "NAMESPACE": str, "ISTIO_VERSION": str, "CLUSTER_ID": str,
                  "NETWORK": str, "MESH_WORKLOAD_CERT": str, "INTERCEPTION_MODE": str, "HTTP_PROXY_PORT": str,
                  "AUTO_REGISTER_GROUP": str, "WORKLOAD_ENTRY": str, "LABELS": dict}


def check_metadata_types(metadata: dict) -> None:
    """Raise NodeIdError naming the first known metadata field that has the wrong JSON type."""
    for name, expected in METADATA_TYPES.items():
        value = metadata.get(name)
        if value is not None and not isinstance(value, expected):
            raise NodeIdError(f"node.metadata.{name}: expected a {'string' if expected is str else 'mapping'}, "
                              f"got {type(value).__name__}")
    for key, value in (metadata.get("LABELS") or {}).items():
        if not isinstance(value, str):
            raise NodeIdError(f"node.metadata.LABELS.{key[:100]}: expected a string, got {type(value).__name__}")


def parse_node_id(node_id: str, metadata: dict | None = None) -> Proxy:
    """Parse an Istio node id; raise NodeIdError naming what is wrong."""
    metadata = dict(metadata or {})
    check_metadata_types(metadata)
    parts = node_id.split("~")
    if len(parts) != 4:
        raise NodeIdError(f"missing parts in the service node {node_id!r}: expected type~ip~pod.ns~domain")
    node_type, ip, ident, domain = parts
    if node_type not in NODE_TYPES:
        raise NodeIdError(f"invalid node type {node_type!r} in {node_id!r} (valid types: sidecar, router)")
    ips = [a for a in (metadata.get("INSTANCE_IPS") or "").split(",") if is_ip_address(a)]
    if not ips and is_ip_address(ip):
        ips = [ip]  # backward compatibility: the IP from the node id
    if not ips:
        raise NodeIdError(f"no valid IP address in the service node id or metadata: {node_id!r}")
    return Proxy(type=node_type, ip_addresses=ips, id=ident, dns_domain=domain, metadata=metadata,
                 labels=dict(metadata.get("LABELS") or {}), istio_version=metadata.get("ISTIO_VERSION", ""))
