"""WorkloadEntry and WorkloadGroup validation: ``ValidateWorkloadEntry`` and ``ValidateWorkloadGroup``
with its readiness probe (https://github.com/istio/istio/blob/1.19.0/pkg/config/validation/validation.go#L3220-L3346).

A WorkloadEntry does not say whether it will back a DNS or a STATIC ServiceEntry, so its address
may be an IP, a ``unix://`` socket (then without ports) or an FQDN. A WorkloadGroup's template
is *not* checked as a WorkloadEntry: its address is filled in when a workload registers.
"""

from __future__ import annotations

from mesh.config.validation.primitives import (
    UNIX_PREFIX,
    unix_address_error,
    validate_fqdn,
    validate_labels,
    validate_port,
    validate_port_name,
)
from mesh.config.validation.report import Report, quote
from mesh.util.net import is_ip_address


def validate_workload_entry(r: Report, spec: dict, name: str, namespace: str, annotations: dict) -> None:
    """validateWorkloadEntry (validation.go#L3229-L3263)."""
    address = r.str("spec.address", spec.get("address"))
    network = r.str("spec.network", spec.get("network"))
    if not address:
        if not network:
            r.error("spec.address", "address must be set")
            return  # istiod returns at once
        r.warn("spec.address", f"address is unset with network {quote(network)}")
    ports = r.dict("spec.ports", spec.get("ports"))
    if address.startswith(UNIX_PREFIX):
        r.error("spec.address", unix_address_error(address[len(UNIX_PREFIX):]))
        if ports:
            r.error("spec.ports", f"unix endpoint {address} must not include ports")
    elif address and not is_ip_address(address) and validate_fqdn(address):
        r.error("spec.address", f"endpoint address {quote(address)} is not a valid FQDN or an IP address")
    validate_labels(r, "spec.labels", r.dict("spec.labels", spec.get("labels")))
    for pname, number in ports.items():
        r.error(f"spec.ports.{pname}", validate_port_name(pname))
        r.error(f"spec.ports.{pname}", validate_port(r.int(f"spec.ports.{pname}", number)))


def validate_workload_group(r: Report, spec: dict, name: str, namespace: str, annotations: dict) -> None:
    """ValidateWorkloadGroup (validation.go#L3266-L3286): a template is required; labels in
    metadata must be valid (istiod stops at the first such error); then the probe."""
    if spec.get("template") is None:
        r.error("spec.template", "template is required")
        return
    r.dict("spec.template", spec["template"])
    metadata = r.dict("spec.metadata", spec.get("metadata"))
    labels = Report()
    validate_labels(labels, "spec.metadata.labels", r.dict("spec.metadata.labels", metadata.get("labels")))
    if labels.problems:
        r.error("spec.metadata.labels", f"invalid labels: {_joined([p.message for p in labels.problems])}")
        return
    if spec.get("probe") is not None:
        validate_readiness_probe(r, "spec.probe", r.dict("spec.probe", spec["probe"]))


def _joined(messages: list[str]) -> str:
    """How go-multierror prints from inside %v."""
    if len(messages) == 1:
        return f"1 error occurred:\n\t* {messages[0]}\n\n"
    return f"{len(messages)} errors occurred:\n\t* " + "\n\t* ".join(messages) + "\n\n"


_PROBE_COUNTS = ("periodSeconds", "initialDelaySeconds", "timeoutSeconds", "successThreshold", "failureThreshold")


def validate_readiness_probe(r: Report, path: str, probe: dict) -> None:
    """validateReadinessProbe (validation.go#L3288-L3346): counts not negative, exactly one
    well-formed health check method."""
    for key in _PROBE_COUNTS:
        if r.int(f"{path}.{key}", probe.get(key)) < 0:
            r.error(f"{path}.{key}", f"{key} must be non-negative")
    if "httpGet" in probe:
        http = probe["httpGet"]
        if http is None:
            r.error(f"{path}.httpGet", "httpGet may not be nil")
            return
        http = r.dict(f"{path}.httpGet", http)
        r.error(f"{path}.httpGet.port", validate_port(r.int(f"{path}.httpGet.port", http.get("port"))))
        scheme = r.str(f"{path}.httpGet.scheme", http.get("scheme"))
        if scheme and scheme not in ("HTTP", "HTTPS"):
            r.error(f"{path}.httpGet.scheme", 'httpGet.scheme must be one of "http", "https"')
        for i, header in enumerate(r.list(f"{path}.httpGet.httpHeaders", http.get("httpHeaders"))):
            if header is None:
                r.error(f"{path}.httpGet.httpHeaders[{i}]", "invalid nil header")
            elif not r.dict(f"{path}.httpGet.httpHeaders[{i}]", header).get("name"):
                r.error(f"{path}.httpGet.httpHeaders[{i}].name", "header name cannot be empty")
    elif "tcpSocket" in probe:
        if probe["tcpSocket"] is None:
            r.error(f"{path}.tcpSocket", "tcpSocket may not be nil")
            return
        tcp = r.dict(f"{path}.tcpSocket", probe["tcpSocket"])
        r.error(f"{path}.tcpSocket.port", validate_port(r.int(f"{path}.tcpSocket.port", tcp.get("port"))))
    elif "exec" in probe:
        if probe["exec"] is None:
            r.error(f"{path}.exec", "exec may not be nil")
            return
        if not r.list(f"{path}.exec.command", r.dict(f"{path}.exec", probe["exec"]).get("command")):
            r.error(f"{path}.exec.command", "exec.command is required")
    else:
        r.error(path, "unknown health check method <nil>")

