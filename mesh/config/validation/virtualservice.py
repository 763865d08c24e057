"""VirtualService validation: ``ValidateVirtualService`` (https://github.com/istio/istio/blob/1.19.0/pkg/config/validation/validation.go#L2266-L2389)
and the HTTP route checks of https://github.com/istio/istio/blob/1.19.0/pkg/config/validation/virtualservice.go; TLS and TCP routes, destinations,
faults, retries, redirects.

Simplification, named: of the "unreachable rule" warnings only the exact-duplicate and match-less
cases are produced (not the prefix-overlap ones).
"""

from __future__ import annotations

import base64

from mesh.config.host import matches as host_matches
from mesh.config.validation.destination import validate_destination, validate_http_destinations
from mesh.config.validation.headers import validate_header_operations
from mesh.config.validation.primitives import (
    check_duration,
    is_dns1123_label,
    validate_duration,
    validate_export_to,
    validate_gateway_names,
    validate_labels,
    validate_percentage,
    validate_port,
    validate_regex,
    validate_string_match_regex,
    validate_wildcard_domain,
)
from mesh.config.validation.report import Report, quote
from mesh.config.validation.tlsroute import validate_tcp_route, validate_tls_route
from mesh.config.validation.unreachable import warn_unreachable_rules
from mesh.util.net import is_ip_address


def validate_virtual_service(r: Report, spec: dict, name: str, namespace: str, annotations: dict) -> None:
    """ValidateVirtualService (validation.go#L2266-L2389)."""
    hosts = [r.str(f"spec.hosts[{i}]", h) for i, h in enumerate(r.list("spec.hosts", spec.get("hosts")))]
    gateways = r.list("spec.gateways", spec.get("gateways"))
    http = r.list("spec.http", spec.get("http"))
    tls = r.list("spec.tls", spec.get("tls"))
    tcp = r.list("spec.tcp", spec.get("tcp"))
    if not hosts:  # a delegate VirtualService
        if gateways:
            r.error("spec.gateways", "delegate virtual service must have no gateways specified")
        if tls:
            r.error("spec.tls", "delegate virtual service must have no tls route specified")
        if tcp:
            r.error("spec.tcp", "delegate virtual service must have no tcp route specified")
    applies_to_mesh = not gateways or "mesh" in gateways
    if gateways:
        validate_gateway_names(r, "spec.gateways", gateways)
    if all(g == "mesh" for g in gateways):  # routing on JWT claims needs a gateway (it reads the JWT filter's output)
        _jwt_claim_routes(r, http, gateways)
    all_hosts_valid = True
    for i, host in enumerate(hosts):
        err = validate_wildcard_domain(host)
        if err and not is_ip_address(host):
            r.error(f"spec.hosts[{i}]", err)
            all_hosts_valid = False
        elif not err and applies_to_mesh and host == "*":
            r.error(f"spec.hosts[{i}]", "wildcard host * is not allowed for virtual services bound to the mesh gateway")
            all_hosts_valid = False
    if all_hosts_valid:
        for i in range(len(hosts)):
            for j in range(i + 1, len(hosts)):
                if host_matches(hosts[i], hosts[j]):
                    r.error("spec.hosts", f"duplicate hosts in virtual service: {hosts[i]} & {hosts[j]}")
    if not http and not tcp and not tls:
        r.error("spec", "http, tcp or tls must be provided in virtual service")
    gateway_semantics = annotations.get("internal.istio.io/route-semantics") == "gateway"
    for i, route in enumerate(http):
        if route is None:
            r.error(f"spec.http[{i}]", "http route may not be null")
            continue
        validate_http_route(r, f"spec.http[{i}]", r.dict(f"spec.http[{i}]", route), not hosts, gateway_semantics)
    for i, route in enumerate(tls):
        validate_tls_route(r, f"spec.tls[{i}]", r.dict(f"spec.tls[{i}]", route), hosts)
    for i, route in enumerate(tcp):
        validate_tcp_route(r, f"spec.tcp[{i}]", r.dict(f"spec.tcp[{i}]", route))
    validate_export_to(r, "spec.exportTo", namespace, r.list("spec.exportTo", spec.get("exportTo")))
    for section, routes in (("http", http), ("tcp", tcp), ("tls", tls)):
        warn_unreachable_rules(r, f"spec.{section}", routes, named=section == "http")


def _direct_response_body(r: Report, path: str, body) -> None:
    """validateHTTPDirectResponse's size limits (validation.go#L3168-L3191): over 100 KiB warns,
    over 1 MiB is refused — istiod keeps every body in memory and pushes it to every proxy."""
    body = r.dict(path, body)
    if "bytes" in body:
        try:
            size = len(base64.b64decode(r.str(f"{path}.bytes", body["bytes"]), validate=True))
        except ValueError:
            r.decode(f"{path}.bytes", "illegal base64 data")
            return
    else:
        size = len(r.str(f"{path}.string", body.get("string")).encode())
    if size > 1024 * 1024:
        r.error(path, "large direct_responses may impact control plane performance, must be less than 1MB")
    elif size > 100 * 1024:
        r.warn(path, "large direct_responses may impact control plane performance")


def _cors_policy(r: Report, path: str, cors: dict) -> None:
    """validateCORSPolicy (validation.go#L2948-L2977)."""
    for i, origin in enumerate(r.list(f"{path}.allowOrigins", cors.get("allowOrigins"))):
        here = f"{path}.allowOrigins[{i}]"
        origin = r.dict(here, origin)
        value = next((origin[k] for k in ("exact", "prefix", "regex") if k in origin), "")
        if not value:
            r.error(here, f"'{value}' is not a valid match type for CORS allow origins")
        else:
            validate_string_match_regex(r, here, origin, "corsPolicy.allowOrigins")
    for i, method in enumerate(r.list(f"{path}.allowMethods", cors.get("allowMethods"))):
        if method not in _METHODS:
            r.error(f"{path}.allowMethods[{i}]", f"{quote(method)} is not a supported HTTP method")
    for field in ("allowHeaders", "exposeHeaders"):
        for i, name in enumerate(r.list(f"{path}.{field}", cors.get(field))):
            if name == "":
                r.error(f"{path}.{field}[{i}]", "header name cannot be empty")
    if cors.get("maxAge") is not None:
        nanos = r.duration(f"{path}.maxAge", cors["maxAge"])
        if nanos is not None:
            r.error(f"{path}.maxAge", validate_duration(nanos))
            if nanos % 10**9:
                r.error(f"{path}.maxAge", "max_age duration is accurate only to seconds precision")


def _jwt_claim_routes(r: Report, http: list, gateways: list) -> None:
    """A header (or withoutHeaders) match on ``@request.auth.claims.<name>`` or ``...[<name>]`` is only
    for gateways (validation.go#L2303-L2318, jwt.ToRoutingClaim in pkg/jwt/routing.go#L37-L58)."""
    for i, route in enumerate(http):
        for j, match in enumerate((route or {}).get("match") or [] if isinstance(route, dict) else []):
            for field in ("headers", "withoutHeaders"):
                for key in ((match or {}).get(field) or {}) if isinstance(match, dict) else {}:
                    if is_routing_claim(key):
                        r.error(f"spec.http[{i}].match[{j}].{field}.{key}",
                                f"JWT claim based routing (key: {key}) is only supported for gateway, found no "
                                f"gateways: [{' '.join(gateways)}]")


def is_routing_claim(header: str) -> bool:
    if not header.lower().startswith(JWT_CLAIM_HEADER):
        return False
    rest = header[len(JWT_CLAIM_HEADER):]
    return (rest.startswith(".") and len(rest) > 1) or (rest.startswith("[") and rest.endswith("]") and len(rest) > 2)


def _authority_rewrite(r: Report, path: str, route: dict) -> None:
    """validateAuthorityRewrite (virtualservice.go#L112-L134): the authority is rewritten in one place only."""
    current = (route.get("rewrite") or {}).get("authority", "") if isinstance(route.get("rewrite"), dict) else ""
    request = ((route.get("headers") or {}).get("request") or {}) if isinstance(route.get("headers"), dict) else {}
    for op in ("set", "add"):
        for key, value in (request.get(op) or {}).items() if isinstance(request, dict) else ():
            if key.lower() not in (":authority", "host"):
                continue
            if current:
                r.error(f"{path}.headers.request.{op}.{key}", f"authority header cannot be set multiple times: have "
                                                               f"{quote(current)}, attempting to set {quote(str(value))}")
                return
            current = value


def _route_kind_conflicts(r: Report, path: str, route: dict, route_type: str) -> None:
    """validateHTTPRouteConflict (virtualservice.go#L214-L272)."""
    has = {k: route.get(k) is not None for k in ("redirect", "fault", "rewrite", "directResponse", "delegate")}
    destinations = route.get("route") or []
    name = route.get("name", "")
    if route_type == "root":
        if has["redirect"]:
            r.error(f"{path}.redirect", f"root HTTP route {name} must not specify redirect")
        if route.get("route") is not None:
            r.error(f"{path}.route", f"root HTTP route {name} must not specify route")
        return
    if route_type == "delegate" and has["delegate"]:
        r.error(f"{path}.delegate", "delegate HTTP route cannot contain delegate")
    if has["redirect"]:
        if destinations:
            r.error(path, "HTTP route cannot contain both route and redirect")
        if has["fault"]:
            r.error(path, "HTTP route cannot contain both fault and redirect")
        if has["rewrite"]:
            r.error(path, "HTTP route rule cannot contain both rewrite and redirect")
        if has["directResponse"]:
            r.error(path, "HTTP route rule cannot contain both direct_response and redirect")
    elif has["directResponse"]:
        if destinations:
            r.error(path, "HTTP route cannot contain both route and direct_response")
        if has["fault"]:
            r.error(path, "HTTP route cannot contain both fault and direct_response")
        if has["rewrite"]:
            r.error(path, "HTTP route rule cannot contain both rewrite and direct_response")
    elif not destinations:
        r.error(f"{path}.route", "HTTP route, redirect or direct_response is required")


JWT_CLAIM_HEADER = "@request.auth.claims"
_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE"}
_RETRY_ON = {"5xx", "gateway-error", "reset", "connect-failure", "retriable-4xx", "refused-stream",
             "retriable-status-codes", "retriable-headers", "envoy-ratelimited", "cancelled",
             "deadline-exceeded", "internal", "resource-exhausted", "unavailable"}
# Go's http.StatusText knows these codes; retryOn accepts them as numbers.
_HTTP_STATUS_CODES = {100, 101, 102, 103, *range(200, 209), 226, *range(300, 309), *range(400, 419),
                      *range(421, 427), 428, 429, 431, 451, *range(500, 509), 510, 511}
_GRPC_STATUS = {"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
                "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED",
                "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"}


def validate_http_route(r: Report, path: str, route: dict, delegate: bool, gateway_semantics: bool) -> None:
    """validateHTTPRoute (virtualservice.go#L45-L110)."""
    route_type = "delegate" if delegate else ("root" if route.get("delegate") is not None else "independent")
    _route_kind_conflicts(r, path, route, route_type)
    for i, match in enumerate(r.list(f"{path}.match", route.get("match"))):
        mpath = f"{path}.match[{i}]"
        match = r.dict(mpath, match)
        for hname, header in r.dict(f"{mpath}.headers", match.get("headers")).items():
            hpath = f"{mpath}.headers.{hname}"
            if header is None:
                r.error(hpath, f"header match {hname} cannot be null")
            elif "prefix" in r.dict(hpath, header) and not header.get("prefix"):
                r.error(hpath, f"header prefix match {hname} may not be empty")
            if hname == "":
                r.error(hpath, "header name cannot be empty")
            if route_type == "independent" and header is not None:
                validate_string_match_regex(r, hpath, header, "headers")
        if route_type == "independent":
            for field in ("uri", "scheme", "method", "authority"):
                if match.get(field) is not None:
                    validate_string_match_regex(r, f"{mpath}.{field}", match[field], field)
            for qname, qp in r.dict(f"{mpath}.queryParams", match.get("queryParams")).items():
                if qp is not None:
                    validate_string_match_regex(r, f"{mpath}.queryParams.{qname}", qp, "queryParams")
        else:  # delegate and root routes: only null checks (virtualservice.go#L166-L186)
            for qname, qp in r.dict(f"{mpath}.queryParams", match.get("queryParams")).items():
                if qp is None:
                    r.error(f"{mpath}.queryParams.{qname}", f"query param match {qname} cannot be null")
            for hname, header in r.dict(f"{mpath}.withoutHeaders", match.get("withoutHeaders")).items():
                if header is None:
                    r.error(f"{mpath}.withoutHeaders.{hname}", f"withoutHeaders match {hname} cannot be null")
                if hname == "":
                    r.error(f"{mpath}.withoutHeaders.{hname}", "header name cannot be empty")
        port = r.int(f"{mpath}.port", match.get("port"))
        if port:
            r.error(f"{mpath}.port", validate_port(port))
        validate_labels(r, f"{mpath}.sourceLabels", r.dict(f"{mpath}.sourceLabels", match.get("sourceLabels")))
        validate_gateway_names(r, f"{mpath}.gateways", r.list(f"{mpath}.gateways", match.get("gateways")))
        source_ns = r.str(f"{mpath}.sourceNamespace", match.get("sourceNamespace"))
        if source_ns and not is_dns1123_label(source_ns):
            r.error(f"{mpath}.sourceNamespace", f"sourceNamespace match {source_ns} is invalid")
    validate_header_operations(r, f"{path}.headers", route.get("headers"))
    cors = route.get("corsPolicy")
    if cors is not None:
        _cors_policy(r, f"{path}.corsPolicy", r.dict(f"{path}.corsPolicy", cors))
    fault = route.get("fault")
    if fault is not None:
        validate_fault(r, f"{path}.fault", r.dict(f"{path}.fault", fault))
    if route.get("mirrorPercent") is not None:  # a UInt32Value, deprecated
        value = r.int(f"{path}.mirrorPercent", route["mirrorPercent"])
        if value > 100:
            r.error(f"{path}.mirrorPercent", f"mirror_percent must have a max value of 100 (it has {value})")
        r.warn(f"{path}.mirrorPercent", 'using deprecated setting "mirrorPercent", use "mirrorPercentage" instead')
    mirror_pct = route.get("mirrorPercentage")
    if mirror_pct is not None:
        value = r.dict(f"{path}.mirrorPercentage", mirror_pct).get("value", 0)
        if isinstance(value, (int, float)) and value > 100:
            r.error(f"{path}.mirrorPercentage", f"mirror_percentage must have a max value of 100 (it has {value:f})")
        if isinstance(value, (int, float)) and value < 0:
            r.error(f"{path}.mirrorPercentage", f"mirror_percentage must have a min value of 0 (it has {value:f})")
    if route.get("mirror") is not None:
        validate_destination(r, f"{path}.mirror", r.dict(f"{path}.mirror", route["mirror"]))
    redirect = route.get("redirect")
    if redirect is not None:
        r.error(f"{path}.redirect", _redirect_error(r.dict(f"{path}.redirect", redirect)))
    direct = route.get("directResponse")
    if direct is not None:
        _direct_response_body(r, f"{path}.directResponse.body", r.dict(f"{path}.directResponse", direct).get("body"))
        status = r.int(f"{path}.directResponse.status", r.dict(f"{path}.directResponse", direct).get("status"))
        if status < 200 or status > 600:
            r.error(f"{path}.directResponse.status", f"HTTP status {status} is not in range 200-599")
    retries = route.get("retries")
    if retries is not None:
        validate_retries(r, f"{path}.retries", r.dict(f"{path}.retries", retries))
    rewrite = route.get("rewrite")
    if rewrite is not None:
        rewrite = r.dict(f"{path}.rewrite", rewrite)
        regex_rewrite = rewrite.get("uriRegexRewrite")
        if rewrite.get("uri") and regex_rewrite is not None:
            r.error(f"{path}.rewrite", "rewrite may only contain one of URI or UriRegexRewrite")
        elif not rewrite.get("uri") and regex_rewrite is None and not rewrite.get("authority"):
            r.error(f"{path}.rewrite", "rewrite must specify at least one of URI, UriRegexRewrite, or authority. "
                                       "Only one of URI or UriRegexRewrite may be specified")
        elif regex_rewrite is not None:
            regex_rewrite = r.dict(f"{path}.rewrite.uriRegexRewrite", regex_rewrite)
            if not regex_rewrite.get("match") or not regex_rewrite.get("rewrite"):
                r.error(f"{path}.rewrite.uriRegexRewrite", "UriRegexRewrite has errors\n"
                        "UriRegexRewrite requires both Rewrite and Match fields to be specified")
            else:
                err = validate_regex(regex_rewrite["match"], "HTTPRewrite.UriRegexRewrite.Match")
                if err:
                    r.error(f"{path}.rewrite.uriRegexRewrite.match", f"UriRegexRewrite has errors\n{err}")
    _authority_rewrite(r, path, route)
    validate_http_destinations(r, f"{path}.route", r.list(f"{path}.route", route.get("route")), gateway_semantics)
    if route.get("timeout") is not None:
        check_duration(r, f"{path}.timeout", route["timeout"])


def validate_fault(r: Report, path: str, fault: dict) -> None:
    abort, delay = fault.get("abort"), fault.get("delay")
    if abort is None and delay is None:
        r.error(path, "HTTP fault injection must have an abort and/or a delay")
    if abort is not None:
        abort = r.dict(f"{path}.abort", abort)
        validate_percentage(r, f"{path}.abort.percentage", abort.get("percentage"))
        if "grpcStatus" in abort and abort["grpcStatus"] not in _GRPC_STATUS:
            r.error(f"{path}.abort.grpcStatus",
                    f"gRPC status {quote(str(abort['grpcStatus']))} is not supported. See "
                    "https://github.com/grpc/grpc/blob/master/doc/statuscodes.md for a list of supported codes, "
                    "for example 'NOT_FOUND'")
        elif "http2Error" in abort:
            r.error(f"{path}.abort.http2Error", "HTTP/2 abort fault injection not supported yet")
        elif "httpStatus" in abort:
            status = r.int(f"{path}.abort.httpStatus", abort["httpStatus"])
            if status < 200 or status > 600:
                r.error(f"{path}.abort.httpStatus", f"HTTP status {status} is not in range 200-599")
    if delay is not None:
        delay = r.dict(f"{path}.delay", delay)
        validate_percentage(r, f"{path}.delay.percentage", delay.get("percentage"))
        if "fixedDelay" in delay:
            check_duration(r, f"{path}.delay.fixedDelay", delay["fixedDelay"])
        elif "exponentialDelay" in delay:
            check_duration(r, f"{path}.delay.exponentialDelay", delay["exponentialDelay"])
            r.error(f"{path}.delay.exponentialDelay", "exponentialDelay not supported yet")


def _redirect_error(redirect: dict) -> str | None:
    """validateHTTPRedirect (validation.go#L3144-L3166): returns the first problem only, as istiod."""
    if not any(redirect.get(k) for k in ("uri", "authority", "scheme")) and "port" not in redirect \
            and "derivePort" not in redirect:
        return "redirect must specify URI, authority, scheme, or port"
    code = redirect.get("redirectCode") or 0
    if code and not 300 <= code <= 399:
        return f"{code} is not a valid redirect code, must be 3xx"
    if redirect.get("scheme") and redirect["scheme"] not in ("http", "https"):
        return 'invalid redirect scheme, must be "http" or "https"'
    if isinstance(redirect.get("port"), int) and redirect["port"] > 0:
        return validate_port(redirect["port"])
    return None


def validate_retries(r: Report, path: str, retries: dict) -> None:
    attempts = r.int(f"{path}.attempts", retries.get("attempts"))
    if attempts < 0:
        r.error(f"{path}.attempts", "attempts cannot be negative")
    if attempts == 0 and (retries.get("perTryTimeout") is not None or retries.get("retryOn")
                          or retries.get("retryRemoteLocalities") is not None):
        r.error(path, "http retry policy configured when attempts are set to 0 (disabled)")
    if retries.get("perTryTimeout") is not None:
        check_duration(r, f"{path}.perTryTimeout", retries["perTryTimeout"])
    retry_on = r.str(f"{path}.retryOn", retries.get("retryOn"))
    if retry_on:
        for policy in retry_on.split(","):
            code = int(policy) if policy.isdigit() else 0
            if code not in _HTTP_STATUS_CODES and policy not in _RETRY_ON:
                r.error(f"{path}.retryOn", f"{quote(policy)} is not a valid retryOn policy")


