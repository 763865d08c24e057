"""ServiceEntry validation: ``ValidateServiceEntry`` (https://github.com/istio/istio/blob/1.19.0/pkg/config/validation/validation.go#L3348-L3544)."""

from __future__ import annotations

from mesh.config.validation.primitives import (
    UNIX_PREFIX,
    alpha_selector_ok,
    parse_protocol,
    unix_address_error,
    validate_export_to,
    validate_fqdn,
    validate_ip_subnet,
    validate_labels,
    validate_partial_wildcard,
    validate_port,
    validate_port_name,
    validate_protocol,
    validate_wildcard_domain,
)
from mesh.config.validation.report import Report, quote
from mesh.util.net import is_ip_address


def validate_service_entry(r: Report, spec: dict, name: str, namespace: str, annotations: dict) -> None:
    """ValidateServiceEntry (validation.go#L3348-L3544)."""
    selector = spec.get("workloadSelector")
    if not alpha_selector_ok(r, selector, "service entry"):
        return
    if selector is not None and spec.get("endpoints") is not None:
        r.error("spec", "only one of WorkloadSelector or Endpoints is allowed in Service Entry")
    hosts = [r.str(f"spec.hosts[{i}]", h) for i, h in enumerate(r.list("spec.hosts", spec.get("hosts")))]
    if not hosts:
        r.error("spec.hosts", "service entry must have at least one host")
    for i, host in enumerate(hosts):
        if host == "*":
            r.error(f"spec.hosts[{i}]", f"invalid host {host}")
        else:
            r.error(f"spec.hosts[{i}]", validate_wildcard_domain(host))
            r.warn(f"spec.hosts[{i}]", validate_partial_wildcard(host))
    addresses = r.list("spec.addresses", spec.get("addresses"))
    for i, address in enumerate(addresses):
        r.error(f"spec.addresses[{i}]", validate_ip_subnet(address))
    resolution = spec.get("resolution", "NONE")
    if any("/" in a for a in addresses) and resolution not in ("NONE", "STATIC"):
        r.error("spec.resolution", "CIDR addresses are allowed only for NONE/STATIC resolution types")
    ports = r.list("spec.ports", spec.get("ports"))
    port_names: set[str] = set()
    port_numbers: set[int] = set()
    for i, port in enumerate(ports):
        path = f"spec.ports[{i}]"
        if port is None:
            r.error(path, "service entry port may not be null")
            continue
        port = r.dict(path, port)
        pname, number = r.str(f"{path}.name", port.get("name")), r.int(f"{path}.number", port.get("number"))
        if pname in port_names:
            r.error(f"{path}.name", f"service entry port name {quote(pname)} already defined")
        port_names.add(pname)
        if number in port_numbers:
            r.error(f"{path}.number", f"service entry port {number} already defined")
        port_numbers.add(number)
        if port.get("targetPort"):
            r.error(f"{path}.targetPort", validate_port(r.int(f"{path}.targetPort", port["targetPort"])))
        if not addresses and port.get("protocol", "") in ("", "TCP"):
            r.warn(f"{path}.protocol", "addresses are required for ports serving TCP (or unset) protocol")
        r.error(f"{path}.name", validate_port_name(pname))
        r.error(f"{path}.protocol", validate_protocol(port.get("protocol", "")))
        r.error(f"{path}.number", validate_port(number))
    endpoints = r.list("spec.endpoints", spec.get("endpoints"))
    if resolution == "NONE":
        if endpoints:
            r.error("spec.endpoints", "no endpoints should be provided for resolution type none")
    elif resolution == "STATIC":
        unix_endpoint = False
        for path, ep, address in _endpoints(r, endpoints):
            if address.startswith(UNIX_PREFIX):
                unix_endpoint = True
                r.error(f"{path}.address", unix_address_error(address[len(UNIX_PREFIX):]))
                if ep.get("ports"):
                    r.error(f"{path}.ports", f"unix endpoint {address} must not include ports")
                validate_labels(r, f"{path}.labels", r.dict(f"{path}.labels", ep.get("labels")))
                continue
            if not is_ip_address(address):
                r.error(f"{path}.address", f"{address} is not a valid IP")
            _endpoint_ports(r, path, ep, port_names)
        if unix_endpoint and len(ports) != 1:
            r.error("spec.ports", "exactly 1 service port required for unix endpoints")
    elif resolution in ("DNS", "DNS_ROUND_ROBIN"):
        if not endpoints:
            for i, host in enumerate(hosts):
                if validate_fqdn(host):
                    r.error(f"spec.hosts[{i}]",
                            f"hosts must be FQDN if no endpoints are provided for resolution mode {resolution}")
        if resolution == "DNS_ROUND_ROBIN" and len(endpoints) > 1:
            r.error("spec.endpoints", f"there must only be 0 or 1 endpoint for resolution mode {resolution}")
        for path, ep, address in _endpoints(r, endpoints):
            if not is_ip_address(address) and validate_fqdn(address):
                r.error(f"{path}.address", f"endpoint address {quote(address)} is not a valid FQDN or an IP address")
            _endpoint_ports(r, path, ep, port_names)
        if addresses:
            for port in _non_null_ports(r, ports):
                if parse_protocol(port.get("protocol", "")).is_tcp():
                    if len(hosts) > 1:
                        r.warn("spec.hosts", "service entry can not have more than one host specified simultaneously "
                                             "with address and tcp port")
                    break
    else:
        r.error("spec.resolution", f"unsupported resolution type {resolution}")
    if resolution != "NONE" and len(hosts) > 1:
        for port in _non_null_ports(r, ports):
            proto = parse_protocol(port.get("protocol", ""))
            if not proto.is_http() and not proto.is_tls():
                r.error("spec.ports", "multiple hosts provided with non-HTTP, non-TLS ports")
                break
    validate_export_to(r, "spec.exportTo", namespace, r.list("spec.exportTo", spec.get("exportTo")), service_entry=True)


def _endpoints(r: Report, endpoints: list):
    """Each endpoint with its path and address; a null one is istiod's error and skipped."""
    for i, ep in enumerate(endpoints):
        path = f"spec.endpoints[{i}]"
        if ep is None:
            r.error(path, "endpoint cannot be nil")
            continue
        ep = r.dict(path, ep)
        yield path, ep, r.str(f"{path}.address", ep.get("address"))


def _non_null_ports(r: Report, ports: list):
    for port in ports:
        if port is None:
            r.error("spec.ports", "ports cannot be nil")
        else:
            yield port


def _endpoint_ports(r: Report, path: str, ep: dict, port_names: set[str]) -> None:
    for pname, number in r.dict(f"{path}.ports", ep.get("ports")).items():
        if pname not in port_names:
            r.error(f"{path}.ports.{pname}", f"endpoint port {number} is not defined by the service entry")
        r.error(f"{path}.ports.{pname}", validate_port_name(pname))
        r.error(f"{path}.ports.{pname}", validate_port(number if isinstance(number, int) else 0))
    validate_labels(r, f"{path}.labels", r.dict(f"{path}.labels", ep.get("labels")))


