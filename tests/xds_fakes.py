"""Tests-only, in-memory stand-ins for the service registry and the config store."""

from __future__ import annotations

from mesh.model.config import Config
from mesh.model.service import IstioEndpoint, Port, Service, ServiceProtocol


class FakeRegistry:
    def __init__(self):
        self._services: dict[str, Service] = {}
        self._endpoints: dict[tuple[str, int], list[IstioEndpoint]] = {}

    def add_service(self, name: str, namespace: str = "default", ports=((9080, "http"),), vip: str = "",
                    domain: str = "cluster.local") -> Service:
        svc = Service(hostname=f"{name}.{namespace}.svc.{domain}", namespace=namespace, name=name,
                      ports=[Port(pname, number, ServiceProtocol.HTTP if pname.startswith("http") else
                                  ServiceProtocol.TCP) for number, pname in ports], cluster_vip=vip)
        self._services[svc.hostname] = svc
        return svc

    def set_endpoints(self, hostname: str, port: int, endpoints: list[IstioEndpoint]) -> None:
        self._endpoints[(hostname, port)] = list(endpoints)

    def services(self) -> list[Service]:
        return list(self._services.values())

    def get_service(self, hostname: str) -> Service | None:
        return self._services.get(hostname)

    def endpoints(self, hostname: str, port: int) -> list[IstioEndpoint]:
        return list(self._endpoints.get((hostname, port), []))


class FakeConfigStore:
    def __init__(self):
        self._configs: dict[tuple[str, str, str], Config] = {}
        self._seq = 0

    def apply(self, kind: str, name: str, namespace: str, spec: dict) -> Config:
        old = self._configs.get((kind, namespace, name))
        if old is None:
            self._seq += 1
        cfg = Config(kind=kind, group="networking.istio.io", version="v1beta1", name=name, namespace=namespace,
                     spec=spec, creation_timestamp=old.creation_timestamp if old else f"2024-01-01T00:00:{self._seq:02d}Z")
        self._configs[cfg.key] = cfg
        return cfg

    def delete(self, kind: str, name: str, namespace: str) -> None:
        self._configs.pop((kind, namespace, name), None)

    def get(self, kind: str, name: str, namespace: str) -> Config | None:
        return self._configs.get((kind, namespace, name))

    def list(self, kind: str, namespace: str | None = None) -> list[Config]:
        return [c for c in self._configs.values() if c.kind == kind and namespace in (None, c.namespace)]

    def register_event_handler(self, kind, handler) -> None:
        pass


def endpoint(ip: str, port: int = 9080, version: str = "v1", locality: str = "", **labels) -> IstioEndpoint:
    return IstioEndpoint(address=ip, endpoint_port=port, service_port_name="http",
                         labels={"app": labels.pop("app", "reviews"), "version": version, **labels},
                         locality=locality, namespace="default")
