"""VirtualService TLS and TCP routes: ``validateTLSRoute``, ``validateTLSMatch``, ``validateSniHost``,
``validateTCPRoute`` and ``validateTCPMatch``
(https://github.com/istio/istio/blob/1.19.0/pkg/config/validation/validation.go#L2726-L2815). An SNI
host must be a subset of one of the VirtualService's hosts; an IP address as SNI only warns.
"""

from __future__ import annotations

from mesh.config.host import subset_of as host_subset_of
from mesh.config.validation.destination import validate_route_destinations
from mesh.config.validation.primitives import (
    validate_gateway_names,
    validate_ip_subnet,
    validate_labels,
    validate_port,
    validate_wildcard_domain,
)
from mesh.config.validation.report import Report, quote
from mesh.util.net import is_ip_address


def _validate_l4_match(r: Report, path: str, match: dict) -> None:
    for i, subnet in enumerate(r.list(f"{path}.destinationSubnets", match.get("destinationSubnets"))):
        r.error(f"{path}.destinationSubnets[{i}]", validate_ip_subnet(subnet))
    port = r.int(f"{path}.port", match.get("port"))
    if port:
        r.error(f"{path}.port", validate_port(port))
    validate_labels(r, f"{path}.sourceLabels", r.dict(f"{path}.sourceLabels", match.get("sourceLabels")))
    validate_gateway_names(r, f"{path}.gateways", r.list(f"{path}.gateways", match.get("gateways")))


def validate_tls_route(r: Report, path: str, route: dict, hosts: list[str]) -> None:
    matches = r.list(f"{path}.match", route.get("match"))
    if not matches:
        r.error(f"{path}.match", "TLS route must have at least one match condition")
    for i, match in enumerate(matches):
        mpath = f"{path}.match[{i}]"
        if match is None:
            r.error(mpath, "TLS match may not be null")
            continue
        match = r.dict(mpath, match)
        sni_hosts = r.list(f"{mpath}.sniHosts", match.get("sniHosts"))
        if not sni_hosts:
            r.error(f"{mpath}.sniHosts", "TLS match must have at least one SNI host")
        for j, sni in enumerate(sni_hosts):
            spath = f"{mpath}.sniHosts[{j}]"
            err = validate_wildcard_domain(sni)
            if err:
                if is_ip_address(sni):
                    r.warn(spath, f"using an IP address ({quote(sni)}) goes against SNI spec and most clients do "
                                  "not support this")
                else:
                    r.error(spath, err)
            elif not any(host_subset_of(sni, h) for h in hosts):
                r.error(spath, f"SNI host {quote(sni)} is not a compatible subset of any of the virtual service "
                               f"hosts: [{', '.join(hosts)}]")
        _validate_l4_match(r, mpath, match)
    destinations = r.list(f"{path}.route", route.get("route"))
    if not destinations:
        r.error(f"{path}.route", "TLS route is required")
    validate_route_destinations(r, f"{path}.route", destinations)


def validate_tcp_route(r: Report, path: str, route: dict) -> None:
    for i, match in enumerate(r.list(f"{path}.match", route.get("match"))):
        if match is None:
            r.error(f"{path}.match[{i}]", "tcp match may not be nil")
            continue
        _validate_l4_match(r, f"{path}.match[{i}]", r.dict(f"{path}.match[{i}]", match))
    destinations = r.list(f"{path}.route", route.get("route"))
    if not destinations:
        r.error(f"{path}.route", "TCP route is required")
    validate_route_destinations(r, f"{path}.route", destinations)
