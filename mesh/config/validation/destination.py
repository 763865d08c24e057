"""Route destinations: ``validateDestination``, ``validateHTTPRouteDestinations`` and
``validateRouteDestinations``
(https://github.com/istio/istio/blob/1.19.0/pkg/config/validation/validation.go#L2881-L2946 and
#L3071-L3111). Weights are relative: none may be negative, and with several destinations they may
not all be 0; there is no "must add up to 100" rule.
"""

from __future__ import annotations

from mesh.config.validation.headers import validate_header_operations
from mesh.config.validation.primitives import validate_port, validate_subset_name, validate_wildcard_domain
from mesh.config.validation.report import Report


def validate_destination(r: Report, path: str, destination: dict) -> None:
    """validateDestination (validation.go#L3071-L3090)."""
    host = r.str(f"{path}.host", destination.get("host"))
    if host == "*":
        r.error(f"{path}.host", f"invalid destination host {host}")
    else:
        r.error(f"{path}.host", validate_wildcard_domain(host))
    subset = r.str(f"{path}.subset", destination.get("subset"))
    if subset:
        r.error(f"{path}.subset", validate_subset_name(subset))
    if destination.get("port") is not None:
        number = r.int(f"{path}.port.number", r.dict(f"{path}.port", destination["port"]).get("number"))
        r.error(f"{path}.port.number", validate_port(number))


def validate_http_destinations(r: Report, path: str, destinations: list, gateway_semantics: bool) -> None:
    """validateHTTPRouteDestinations (validation.go#L2881-L2926): weights are relative, none negative;
    with gateway semantics (Gateway API routes) the destination host is not checked."""
    _validate_weighted(r, path, destinations, http=True, check_destination=not gateway_semantics)


def validate_route_destinations(r: Report, path: str, destinations: list) -> None:
    """validateRouteDestinations (validation.go#L2928-L2946): the TCP/TLS form, without headers."""
    _validate_weighted(r, path, destinations, http=False, check_destination=True)


def _validate_weighted(r: Report, path: str, destinations: list, http: bool, check_destination: bool) -> None:
    total = 0
    for i, dest in enumerate(destinations):
        here = f"{path}[{i}]"
        if dest is None:
            r.error(here, "weight may not be nil")
            continue
        dest = r.dict(here, dest)
        if dest.get("destination") is None:
            r.error(f"{here}.destination", "destination is required")
        if http:
            validate_header_operations(r, f"{here}.headers", dest.get("headers"), destination=True)
        if check_destination and dest.get("destination") is not None:
            validate_destination(r, f"{here}.destination", r.dict(f"{here}.destination", dest["destination"]))
        weight = r.int(f"{here}.weight", dest.get("weight"))
        if weight < 0:
            r.error(f"{here}.weight", f"weight {weight} < 0")
        total += weight
    if len(destinations) > 1 and total == 0:
        r.error(path, "total destination weight = 0")
