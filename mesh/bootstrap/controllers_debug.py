"""``/debug/configz``, ``/debug/registryz`` and ``/debug/endpointz``: what the controllers hold, as JSON.

Go: https://github.com/istio/istio/blob/1.19.0/pilot/pkg/xds/debug.go — ``registryz`` (#L298-L301:
every service of the aggregate registry), ``endpointz`` (#L350-L384: per service and port,
``<hostname>:<port name>`` and its instances; ``?brief`` gives one text line per endpoint) and
``configz`` (#L465-L478: every config of every kind, as Kubernetes-shaped objects). Field names
follow the JSON tags of ``model.Service`` and ``model.IstioEndpoint``
(https://github.com/istio/istio/blob/1.19.0/pilot/pkg/model/service.go); what mesh does not model
is left out. Every list is sorted, so the output is the same on every run.
"""

from __future__ import annotations

from mesh.model.service import IstioEndpoint, Port, Service


def port_json(p: Port) -> dict:
    return {"name": p.name, "port": p.port, "protocol": str(p.protocol)}


def service_json(svc: Service, cluster_id: str = "Kubernetes") -> dict:
    out = {
        "hostname": svc.hostname,
        "ports": [port_json(p) for p in svc.ports],
        "clusterVIPs": {"Addresses": {cluster_id: [svc.cluster_vip or "0.0.0.0"]}},
        "defaultAddress": svc.cluster_vip or "0.0.0.0",
        "Resolution": svc.resolution.value,
        "MeshExternal": svc.mesh_external,
        "Attributes": {
            "ServiceRegistry": svc.registry,
            "Name": svc.name,
            "Namespace": svc.namespace,
            "Labels": dict(sorted(svc.labels.items())) or None,
            "ExportTo": None if not svc.export_to else {ns: True for ns in svc.export_to},
            "LabelSelectors": dict(sorted(svc.selector.items())) or None,
            "ExternalName": svc.external_name,
            "Type": svc.service_type,
        },
    }
    if svc.service_accounts:
        out["serviceAccounts"] = list(svc.service_accounts)
    if svc.resource_version:
        out["ResourceVersion"] = svc.resource_version
    return out


def endpoint_json(ep: IstioEndpoint) -> dict:
    return {
        "Labels": dict(sorted(ep.labels.items())),
        "Address": ep.address,
        "ServicePortName": ep.service_port_name,
        "ServiceAccount": ep.service_account,
        "Network": ep.network,
        "Locality": {"Label": ep.locality},
        "EndpointPort": ep.endpoint_port,
        "LbWeight": ep.lb_weight,
        "TLSMode": ep.tls_mode,
        "Namespace": ep.namespace,
        "WorkloadName": ep.workload_name,
        "NodeName": ep.node_name,
        "HealthStatus": ep.health.value,
    }


def registryz(service_discovery) -> list[dict]:
    if service_discovery is None:
        return []
    return [
        service_json(s) for s in sorted(service_discovery.services(), key=lambda s: (s.hostname, s.namespace))
    ]


def endpointz(service_discovery, query: dict | None = None) -> list[dict] | str:
    if service_discovery is None:
        return []
    services = sorted(service_discovery.services(), key=lambda s: (s.hostname, s.namespace))
    if query and "brief" in query:
        lines = []
        for svc in services:
            for p in svc.ports:
                for ep in service_discovery.endpoints(svc.hostname, p.port):
                    labels = " ".join(f"{k}:{v}" for k, v in sorted(ep.labels.items()))
                    lines.append(
                        f"{svc.hostname}:{p.name} {ep.address}:{ep.endpoint_port} map[{labels}] "
                        f"{ep.service_account}"
                    )
        return "\n".join(lines) + ("\n" if lines else "")
    return [
        {
            "svc": f"{svc.hostname}:{p.name}",
            "ep": [
                {"servicePort": port_json(p), "endpoint": endpoint_json(ep)}
                for ep in service_discovery.endpoints(svc.hostname, p.port)
            ],
        }
        for svc in services
        for p in svc.ports
    ]


def configz(config_store) -> list[dict]:
    if config_store is None:
        return []
    return [c.to_object() for c in config_store.all_configs()]


def routes(env) -> dict:
    """The routes stage 7 adds, reading the Environment's stores at request time."""
    return {
        "/debug/configz": lambda q: configz(env.config_store),
        "/debug/registryz": lambda q: registryz(env.service_discovery),
        "/debug/endpointz": lambda q: endpointz(env.service_discovery, q),
    }
