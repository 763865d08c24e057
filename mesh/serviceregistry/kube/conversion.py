"""Kubernetes Service → model Service, and port name/appProtocol → protocol.

Go:
- ``ConvertProtocol`` https://github.com/istio/istio/blob/1.19.0/pkg/config/kube/conversion.go#L46-L86
  with ``protocol.Parse`` https://github.com/istio/istio/blob/1.19.0/pkg/config/protocol/instance.go#L64-L94;
- ``ConvertService`` https://github.com/istio/istio/blob/1.19.0/pilot/pkg/serviceregistry/kube/conversion.go#L46-L164
  and ``ServiceHostname`` (#L194-L197).

How a port's protocol is decided, in order:

1. ``protocol: UDP`` wins outright;
2. otherwise the ``appProtocol`` if set (``kubernetes.io/h2c`` means HTTP2), else the port name;
3. a name starting ``grpc-web`` is GRPC-Web (checked first because it contains a dash);
4. otherwise the part before the first ``-`` is parsed, ignoring case (``http-api`` → HTTP,
   ``tcp`` → TCP, ``redis-main`` → Redis);
5. an unknown prefix is "unsupported" — sniffed at runtime — except on the well-known ports
   25, 53, 3306 and 27017, which default to TCP because sniffing would break them.

Simplifications, named: one cluster, so ``cluster_vip`` is one address; a headless or
ExternalName service has ``cluster_vip == ""`` where Go keeps ``0.0.0.0``; NodePort/LoadBalancer
gateway addresses are not modelled.
"""

from __future__ import annotations

from mesh.config.protocol import parse as parse_protocol
from mesh.model.service import Port, Resolution, Service, ServiceProtocol

WELL_KNOWN_TCP_PORTS = frozenset({25, 53, 3306, 27017})  # SMTP, DNS, MySQL, MongoDB

# Service annotations ConvertService reads (istio.io/api annotation names).
CANONICAL_SERVICE_ACCOUNTS = "alpha.istio.io/canonical-serviceaccounts"
KUBERNETES_SERVICE_ACCOUNTS = "alpha.istio.io/kubernetes-serviceaccounts"
EXPORT_TO = "networking.istio.io/exportTo"


def convert_protocol(
    port: int, port_name: str, proto: str = "TCP", app_protocol: str | None = None
) -> ServiceProtocol:
    """``kube.ConvertProtocol``: the protocol of a Service port (see the module docstring)."""
    if proto == "UDP":
        return ServiceProtocol.UDP
    name = port_name or ""
    if app_protocol is not None:
        name = app_protocol
        if name == "kubernetes.io/h2c":
            return ServiceProtocol.HTTP2
    if name[: len("grpc-web")].lower() == "grpc-web":
        return ServiceProtocol.GRPC_WEB
    prefix = name.split("-", 1)[0]
    found = parse_protocol(prefix)
    if found is ServiceProtocol.UNSUPPORTED and port in WELL_KNOWN_TCP_PORTS:
        return ServiceProtocol.TCP
    return found


def service_hostname(name: str, namespace: str, domain_suffix: str) -> str:
    """``<name>.<namespace>.svc.<domain suffix>``."""
    return f"{name}.{namespace}.svc.{domain_suffix}"


def spiffe_uri(trust_domain: str, namespace: str, service_account: str) -> str:
    """``spiffe.MustGenSpiffeURI``: the identity a workload's certificate carries."""
    return f"spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}"


def convert_port(port: dict) -> Port:
    return Port(
        name=port.get("name", ""),
        port=int(port.get("port", 0)),
        protocol=convert_protocol(
            int(port.get("port", 0)),
            port.get("name", ""),
            port.get("protocol", "TCP"),
            port.get("appProtocol"),
        ),
    )


def convert_service(svc: dict, domain_suffix: str, trust_domain: str = "cluster.local") -> Service:
    """``ConvertService``: one Kubernetes Service object (a dict) → one model Service."""
    meta = svc.get("metadata") or {}
    spec = svc.get("spec") or {}
    name, namespace = meta.get("name", ""), meta.get("namespace", "")
    annotations = meta.get("annotations") or {}
    resolution = Resolution.CLIENT_SIDE_LB
    external_name = ""
    if spec.get("type") == "ExternalName" and spec.get("externalName"):
        resolution = Resolution.DNS_LB  # the proxy resolves the external name itself
        external_name = spec["externalName"]
    vip = ""
    cluster_ip = spec.get("clusterIP", "")
    if cluster_ip == "None":  # headless: no load balancing, connect to what the app resolved
        resolution = Resolution.PASSTHROUGH
    elif cluster_ip:
        vip = cluster_ip

    service_accounts: list[str] = []
    if annotations.get(CANONICAL_SERVICE_ACCOUNTS):
        service_accounts += annotations[CANONICAL_SERVICE_ACCOUNTS].split(",")
    if annotations.get(KUBERNETES_SERVICE_ACCOUNTS):
        service_accounts += [
            spiffe_uri(trust_domain, namespace, sa)
            for sa in annotations[KUBERNETES_SERVICE_ACCOUNTS].split(",")
        ]
    export_to: tuple[str, ...] = ()  # unset: MeshConfig defaultServiceExportTo applies
    if annotations.get(EXPORT_TO):
        export_to = tuple(e.strip() for e in annotations[EXPORT_TO].split(",") if e.strip())

    return Service(
        hostname=service_hostname(name, namespace, domain_suffix),
        namespace=namespace,
        name=name,
        ports=[convert_port(p) for p in spec.get("ports") or []],
        cluster_vip=vip,
        resolution=resolution,
        mesh_external=bool(external_name),
        labels=dict(meta.get("labels") or {}),
        selector=dict(spec.get("selector") or {}),
        service_accounts=service_accounts,
        export_to=export_to,
        registry="Kubernetes",
        resource_version=str(meta.get("resourceVersion", "")),
        external_name=external_name,
        service_type=spec.get("type", "ClusterIP"),
        creation_time=meta.get("creationTimestamp", ""),
    )
