"""ServiceEntry → model Services; WorkloadEntry → WorkloadInstance; both → IstioEndpoints.

Go: https://github.com/istio/istio/blob/1.19.0/pilot/pkg/serviceregistry/serviceentry/conversion.go —
``convertServices`` (#L152-L239), ``convertEndpoint`` (#L255-L302), the DNS-without-endpoints
case of ``convertServiceEntryToInstances`` (#L318-L359), ``getTLSModeFromWorkloadEntry``
(#L361-L372), ``convertWorkloadInstanceToServiceInstance`` (#L376-L406) and
``convertWorkloadEntryToWorkloadInstance`` (#L410-L453).

The rules worth knowing:

* one model Service per *host* × *address* (no addresses: one per host, no VIP); its
  ``name`` is the host, its registry ``External``;
* ``resolution``: NONE (the default) → Passthrough, STATIC → ClientSideLB (EDS),
  DNS → DNSLB, DNS_ROUND_ROBIN → DNSRoundRobinLB; ``location`` MESH_EXTERNAL (the default)
  marks the service external;
* a port's protocol is ``protocol.Parse(port.protocol)``: an empty or unknown name is
  "unsupported" (sniffed);
* an endpoint's port is the WorkloadEntry's named port, else the ServicePort's targetPort, else
  its number; tlsMode is the ``security.istio.io/tlsMode`` label, else "istio" when the entry has
  a service account, else "disabled";
* a DNS ServiceEntry with neither endpoints nor a workloadSelector gets one endpoint per port
  whose address is the host itself — the proxy resolves it. Nothing is looked up here.
"""

from __future__ import annotations

import ipaddress

from mesh.model.config import Config
from mesh.model.service import IstioEndpoint, Port, Resolution, Service
from mesh.serviceregistry.events import WorkloadInstance
from mesh.serviceregistry.kube.conversion import parse_protocol, spiffe_uri
from mesh.serviceregistry.kube.endpoints import TLS_MODE_LABEL, augment_labels

RESOLUTIONS = {
    "NONE": Resolution.PASSTHROUGH,
    "STATIC": Resolution.CLIENT_SIDE_LB,
    "DNS": Resolution.DNS_LB,
    "DNS_ROUND_ROBIN": Resolution.DNS_ROUND_ROBIN_LB,
}
UNIX_PREFIX = "unix://"


def is_dns(spec: dict) -> bool:
    return spec.get("resolution", "NONE") in ("DNS", "DNS_ROUND_ROBIN")


def convert_port(port: dict) -> Port:
    return Port(name=port.get("name", ""), port=int(port.get("number", 0)),
                protocol=parse_protocol(port.get("protocol", "")))


def _host_addresses(spec: dict) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for host in spec.get("hosts") or []:
        addresses = spec.get("addresses") or []
        if not addresses:
            out.append((host, ""))  # no VIP (Go: 0.0.0.0)
        for address in addresses:
            try:
                out.append((host, str(ipaddress.ip_address(address))))
                continue
            except ValueError:
                pass
            try:
                net = ipaddress.ip_network(address, strict=False)
            except ValueError:
                continue  # neither an IP nor a CIDR: ignored
            single = net.prefixlen == net.max_prefixlen
            out.append((host, str(net.network_address) if single else address))
    return out


def convert_services(cfg: Config) -> list[Service]:
    """``convertServices``: the model services a ServiceEntry declares."""
    spec = cfg.spec
    ports = [convert_port(p) for p in spec.get("ports") or []]
    selector = dict((spec.get("workloadSelector") or {}).get("labels") or {})
    export_to = tuple(spec.get("exportTo") or ())  # empty: the mesh default
    return [
        Service(
            hostname=host,
            namespace=cfg.namespace,
            name=host,
            ports=list(ports),
            cluster_vip=address,
            resolution=RESOLUTIONS.get(spec.get("resolution", "NONE"), Resolution.PASSTHROUGH),
            mesh_external=spec.get("location", "MESH_EXTERNAL") == "MESH_EXTERNAL",
            labels=dict(cfg.labels),
            selector=selector,
            service_accounts=list(spec.get("subjectAltNames") or []),
            export_to=export_to,
            registry="External",
            resource_version=cfg.resource_version,
            creation_time=cfg.creation_timestamp,
        )
        for host, address in _host_addresses(spec)
    ]


def tls_mode_of_workload_entry(we: dict) -> str:
    labels = we.get("labels") or {}
    if TLS_MODE_LABEL in labels:
        return labels[TLS_MODE_LABEL]
    return "istio" if we.get("serviceAccount") else "disabled"


def endpoint_port(port: dict, named_ports: dict) -> int:
    """The WorkloadEntry's named port, else the targetPort, else the port number."""
    named = named_ports.get(port.get("name", ""))
    if named:
        return int(named)
    return int(port.get("targetPort") or port.get("number", 0))


def convert_endpoint(
    namespace: str,
    port: dict,
    we: dict,
    trust_domain: str,
    cluster_id: str,
    workload_name: str = "",
    network: str = "",
) -> IstioEndpoint:
    """``convertEndpoint``: one WorkloadEntry spec (inline in a ServiceEntry, or a WorkloadEntry
    object's spec) serving one ServicePort."""
    address = we.get("address", "")
    if address.startswith(UNIX_PREFIX):
        number, address = 0, address.removeprefix(UNIX_PREFIX)
    else:
        number = endpoint_port(port, we.get("ports") or {})
    network = we.get("network") or network
    sa = spiffe_uri(trust_domain, namespace, we["serviceAccount"]) if we.get("serviceAccount") else ""
    return IstioEndpoint(
        address=address,
        endpoint_port=number,
        service_port_name=port.get("name", ""),
        labels=augment_labels(we.get("labels") or {}, cluster_id, we.get("locality", ""), "", network),
        service_account=sa,
        network=network,
        locality=we.get("locality", ""),
        lb_weight=int(we.get("weight") or 0),
        tls_mode=tls_mode_of_workload_entry(we),
        namespace=namespace if workload_name else "",
        workload_name=workload_name,
    )


def dns_endpoints(service: Service, spec: dict) -> list[IstioEndpoint]:
    """A DNS ServiceEntry without endpoints: the host itself, resolved by the proxy."""
    return [
        IstioEndpoint(
            address=service.hostname,
            endpoint_port=int(p.get("targetPort") or p.get("number", 0)),
            service_port_name=p.get("name", ""),
            tls_mode="disabled",
        )
        for p in spec.get("ports") or []
    ]


def workload_entry_instance(cfg: Config, trust_domain: str, cluster_id: str) -> WorkloadInstance:
    """``convertWorkloadEntryToWorkloadInstance``: a WorkloadEntry as a selectable workload."""
    we = cfg.spec  # labels: the spec's, overridden by the object's own (ConvertWorkloadEntry)
    address = we.get("address", "")
    dns_only = address.startswith(UNIX_PREFIX)
    if address and not dns_only:
        try:
            ipaddress.ip_address(address)
        except ValueError:
            dns_only = True  # a hostname: only DNS ServiceEntries may use it
    endpoint = convert_endpoint(
        cfg.namespace,
        {},
        {**we, "labels": {**(we.get("labels") or {}), **cfg.labels}},
        trust_domain,
        cluster_id,
        workload_name=cfg.name,
    )
    endpoint.namespace = cfg.namespace
    return WorkloadInstance(
        name=cfg.name,
        namespace=cfg.namespace,
        kind="WorkloadEntry",
        endpoint=endpoint,
        port_map={k: int(v) for k, v in (we.get("ports") or {}).items()},
        dns_service_entry_only=dns_only,
    )
