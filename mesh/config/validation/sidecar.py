"""Sidecar validation: ``ValidateSidecar`` (https://github.com/istio/istio/blob/1.19.0/pkg/config/validation/validation.go#L1112-L1283)."""

from __future__ import annotations

from mesh.config.validation.gateway import namespace_slash_host_errors
from mesh.config.validation.primitives import (
    alpha_selector_ok,
    validate_port,
    validate_port_name,
    validate_protocol,
)
from mesh.config.validation.report import Report


def validate_sidecar(r: Report, spec: dict, name: str, namespace: str, annotations: dict) -> None:
    """ValidateSidecar (validation.go#L1112-L1283), its main rules."""
    if not alpha_selector_ok(r, spec.get("workloadSelector"), "sidecar"):
        return
    ingress = r.list("spec.ingress", spec.get("ingress"))
    egress = r.list("spec.egress", spec.get("egress"))
    if not ingress and not egress and spec.get("outboundTrafficPolicy") is None:
        r.error("spec", "sidecar: empty configuration provided")
        return
    seen_ports: set[int] = set()
    for i, listener in enumerate(ingress):
        path = f"spec.ingress[{i}]"
        listener = r.dict(path, listener)
        port = listener.get("port")
        if port is None:
            r.error(f"{path}.port", "sidecar: port is required for ingress listeners")
            continue
        _sidecar_port(r, f"{path}.port", r.dict(f"{path}.port", port))
        number = port.get("number", 0)
        if number in seen_ports:
            r.error(f"{path}.port", "sidecar: ports on IP bound listeners must be unique")
        seen_ports.add(number)
    seen_ports = set()
    for i, listener in enumerate(egress):
        path = f"spec.egress[{i}]"
        listener = r.dict(path, listener)
        port = listener.get("port")
        if port is None:
            if i != len(egress) - 1:
                r.error(path, "sidecar: the egress listener with empty port should be the last listener in the list")
        else:
            port = r.dict(f"{path}.port", port)
            _sidecar_port(r, f"{path}.port", port)
            if port.get("number"):
                if port["number"] in seen_ports:
                    r.error(f"{path}.port", "sidecar: ports on IP bound listeners must be unique")
                seen_ports.add(port["number"])
        hosts = r.list(f"{path}.hosts", listener.get("hosts"))
        if not hosts:
            r.error(f"{path}.hosts", "sidecar: egress listener must contain at least one host")
        for j, host in enumerate(hosts):
            for err in namespace_slash_host_errors(r.str(f"{path}.hosts[{j}]", host), False):
                r.error(f"{path}.hosts[{j}]", err)


def _sidecar_port(r: Report, path: str, port: dict) -> None:
    if port.get("name"):
        r.error(f"{path}.name", validate_port_name(port["name"]))
    r.error(f"{path}.protocol", validate_protocol(r.str(f"{path}.protocol", port.get("protocol"))))
    r.error(f"{path}.number", validate_port(r.int(f"{path}.number", port.get("number"))))


