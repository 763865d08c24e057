"""Validation of Istio config objects, giving the verdicts istiod 1.19 gives.

istiod validates every networking.istio.io / security.istio.io object twice: once when the
validating webhook sees it (``mesh.webhooks.validation``) and again when its config store reads
it. Both call the per-kind functions of
https://github.com/istio/istio/blob/1.19.0/pkg/config/validation/validation.go and
https://github.com/istio/istio/blob/1.19.0/pkg/config/validation/virtualservice.go.

Before validating, istiod *decodes* the spec into the protobuf type
(https://github.com/istio/istio/blob/1.19.0/pilot/pkg/config/kube/crd/conversion.go#L93-L124).
Decoding is where a malformed duration fails: durations are read with Go's
``time.ParseDuration``, so ``"1m"`` and ``"500ms"`` are fine and ``"5 seconds"`` is
``bad Duration: time: ...``. Such problems are reported with ``stage="decode"``.

Each problem names the field it is about (``spec.http[0].route[1].weight``), carries istiod's
message text, and is an error or a warning (warnings do not reject the object).

Some facts worth knowing because they surprise people:

- a VirtualService without ``hosts`` is valid: it is a *delegate* VirtualService and only then
  must not name gateways or carry tls/tcp routes (validation.go#L2266-L2288);
- weights are relative: there is no "must sum to 100" rule, only "no weight < 0" and, with
  more than one destination, "total destination weight = 0" (validation.go#L2881-L2926);
- a subset name must be a DNS-1123 *label* (upper case allowed, dots not) (validation.go#L3092-L3100);
- ``*`` alone is not a valid VirtualService host when the VirtualService applies to sidecars
  (the ``mesh`` gateway) (validation.go#L2321-L2332), and partial wildcards like ``*foo.com``
  are rejected for Gateway and Sidecar hosts (validation.go#L4049-L4054).

Simplifications (named, as xv6 does): regexes are checked with Python's ``re`` plus a list of
constructs RE2 refuses (look-around, back-references), so messages differ from Go's; of the
"unreachable rule" warnings only the exact-duplicate and match-less cases are produced (not the
prefix-overlap ones); EnvoyFilter, WasmPlugin,
Telemetry and ProxyConfig validation are not implemented; proto decoding only checks the
types of the fields validated here.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass

from mesh.config.host import matches as host_matches
from mesh.config.host import subset_of as host_subset_of
from mesh.config.protocol import parse as parse_protocol
from mesh.util.net import is_ip_address

ISTIO_GROUPS = ("networking.istio.io", "security.istio.io")
UNIX_PREFIX = "unix://"


@dataclass(frozen=True)
class Problem:
    path: str  # e.g. "spec.http[0].route[1].weight"
    message: str  # istiod's wording
    severity: str = "error"  # "error" | "warning"
    stage: str = "validate"  # "decode" when istiod fails while reading the spec into its proto

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    def __str__(self) -> str:
        prefix = "warning: " if self.severity == "warning" else ""
        return f"{self.path}: {prefix}{self.message}"


class _Report:
    """Collects problems while walking a spec."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def error(self, path: str, message: str | None) -> None:
        if message:
            self.problems.append(Problem(path, message))

    def warn(self, path: str, message: str | None) -> None:
        if message:
            self.problems.append(Problem(path, message, "warning"))

    def decode(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message, stage="decode"))

    # typed accessors: a wrong JSON type is a decoding failure in istiod
    def _typed(self, path: str, value, types, want: str, default):
        if value is None:
            return default
        if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
            self.decode(path, f"cannot decode {json.dumps(value)} as {want}")
            return default
        if not isinstance(value, types):
            self.decode(path, f"cannot decode {json.dumps(value)} as {want}")
            return default
        return value

    def list(self, path: str, value) -> list:
        return self._typed(path, value, list, "a list", [])

    def dict(self, path: str, value) -> dict:
        return self._typed(path, value, dict, "an object", {})

    def str(self, path: str, value) -> str:
        return self._typed(path, value, str, "a string", "")

    def int(self, path: str, value) -> int:
        return self._typed(path, value, int, "an integer", 0)

    def duration(self, path: str, value) -> int | None:
        """Nanoseconds, or None (absent or undecodable)."""
        if value is None:
            return None
        if not isinstance(value, str):
            self.decode(path, f"bad Duration: {json.dumps(value)} is not a string")
            return None
        nanos, err = parse_go_duration(value)
        if err:
            self.decode(path, f"bad Duration: {err}")
            return None
        return nanos


def _q(s: str) -> str:
    """Go's %q for the strings that matter here."""
    return json.dumps(s)


# --- Go time.ParseDuration -------------------------------------------------------------------

_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000, "s": 10**9, "m": 60 * 10**9,
          "h": 3600 * 10**9}
_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)([^\d.]*)")


def parse_go_duration(text: str) -> tuple[int | None, str | None]:
    """Parse like Go's ``time.ParseDuration``: ``"1h2m3.5s"``, ``"-10ms"``, ``"0"``."""
    orig, s, sign = text, text, 1
    if s[:1] in "+-" and s:
        sign, s = (-1 if s[0] == "-" else 1), s[1:]
    if s == "0":
        return 0, None
    if not s:
        return None, f"time: invalid duration {_q(orig)}"
    total, pos = 0.0, 0
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        if not m:
            return None, f"time: invalid duration {_q(orig)}"
        number, unit = m.group(1), m.group(2)
        if not unit:
            return None, f"time: missing unit in duration {_q(orig)}"
        if unit not in _UNITS:
            return None, f"time: unknown unit {_q(unit)} in duration {_q(orig)}"
        total += float(number) * _UNITS[unit]
        pos = m.end()
    return sign * int(round(total)), None


def validate_duration(nanos: int) -> str | None:
    """ValidateDuration (validation.go#L1593-L1603): at least 1ms, whole milliseconds."""
    if nanos < 1_000_000:
        return "duration must be greater than 1ms"
    if nanos % 1_000_000:
        return "only durations to ms precision are supported"
    return None


# --- names, hosts, addresses ---------------------------------------------------------------

_DNS1123_LABEL = re.compile(r"^[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?$")
_WILDCARD_LABEL = re.compile(r"^(\*|(\*|\*-)?[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?)$")
_QUALIFIED = r"(?:[A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_KEY = re.compile(r"^([a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?)*/)?("
                        + _QUALIFIED + r")$")
_LABEL_VALUE = re.compile(r"^(" + _QUALIFIED + r")?$")


def is_dns1123_label(value: str) -> bool:
    return len(value) <= 63 and bool(_DNS1123_LABEL.match(value))


def is_wildcard_dns1123_label(value: str) -> bool:
    return len(value) <= 63 and bool(_WILDCARD_LABEL.match(value))


def _dns1123_labels(domain: str) -> str | None:
    parts = domain.split(".")
    if parts[-1].isdigit():
        return f"domain name {_q(domain)} invalid (top level domain {_q(parts[-1])} cannot be all-numeric)"
    for i, label in enumerate(parts):
        if i == len(parts) - 1 and label == "":
            return None  # a trailing dot is allowed ("istio.io.")
        if not is_dns1123_label(label):
            return f"domain name {_q(domain)} invalid (label {_q(label)} invalid)"
    return None


def _dns1123_preconditions(name: str) -> str | None:
    if len(name) > 255:
        return f"domain name {_q(name)} too long (max 255)"
    if not name:
        return "empty domain name not allowed"
    return None


def validate_fqdn(fqdn: str) -> str | None:
    return _dns1123_preconditions(fqdn) or _dns1123_labels(fqdn)


def validate_wildcard_domain(domain: str) -> str | None:
    """ValidateWildcardDomain (validation.go#L266-L279): a wildcard only in the first label."""
    err = _dns1123_preconditions(domain)
    if err:
        return err
    first, _, rest = domain.partition(".")
    if not is_wildcard_dns1123_label(first):
        return f"domain name {_q(domain)} invalid (label {_q(first)} invalid)"
    return _dns1123_labels(rest) if "." in domain else None


def validate_partial_wildcard(host: str) -> str | None:
    if "*" in host and len(host) != 1 and not host.startswith("*."):
        return f"partial wildcard {_q(host)} not allowed"
    return None




def validate_ip_subnet(subnet: str) -> str | None:
    if subnet.count("/") == 1:
        try:
            ipaddress.ip_network(subnet, strict=False)
            return None
        except ValueError:
            return f"{subnet} is not a valid CIDR block"
    return None if is_ip_address(subnet) else f"{subnet} is not a valid IP"


def validate_port(port: int) -> str | None:
    return None if 1 <= port <= 65535 else f"port number {port} must be in the range 1..65535"


def validate_labels(r: _Report, path: str, labels: dict) -> None:
    for key, value in labels.items():
        if not _LABEL_KEY.match(key):
            r.error(path, f"invalid tag key: {_q(key)}")
        if not isinstance(value, str) or not _LABEL_VALUE.match(value):
            r.error(f"{path}.{key}", f"invalid tag value: {_q(str(value))}")


def validate_protocol(name: str) -> str | None:
    if name and parse_protocol(name).is_unsupported():
        return f"unsupported protocol: {name}"
    return None


def validate_port_name(name: str) -> str | None:
    return None if is_dns1123_label(name) else f"invalid port name: {name}"


# --- regexes (RE2 approximated) --------------------------------------------------------------

_RE2_UNSUPPORTED = [
    (re.compile(r"\(\?[=!]"), "invalid or unsupported Perl syntax: `(?=` look-ahead"),
    (re.compile(r"\(\?<[=!]"), "invalid or unsupported Perl syntax: `(?<` look-behind"),
    (re.compile(r"(?<!\\)\\[1-9]"), "invalid escape sequence: back-reference"),
]


def validate_regex(regex: str, where: str) -> str | None:
    """validateStringRegexp (validation.go#L2830-L2848): at most 1024 characters, RE2 syntax."""
    if len(regex) > 1024:
        return f"{_q(where)}: regex is too large, max length allowed is 1024"
    reason = None
    for pattern, why in _RE2_UNSUPPORTED:
        if pattern.search(regex):
            reason = why
            break
    if reason is None:
        try:
            re.compile(regex)
        except re.error as err:
            reason = str(err)
    if reason is None:
        return None
    return (f"{_q(where)}: error parsing regexp: {reason}; Istio uses RE2 style regex-based match "
            "(https://github.com/google/re2/wiki/Syntax)")


def validate_string_match_regex(r: _Report, path: str, match, where: str) -> None:
    match = r.dict(path, match)
    if "regex" not in match:
        return
    regex = r.str(f"{path}.regex", match["regex"])
    if not regex:
        r.error(f"{path}.regex", f"{_q(where)}: regex string match should not be empty")
        return
    r.error(f"{path}.regex", validate_regex(regex, where))


# --- shared pieces ---------------------------------------------------------------------------

def validate_export_to(r: _Report, path: str, namespace: str, export_to: list, service_entry: bool = False,
                       dr_with_selector: bool = False) -> None:
    """validateExportTo (validation.go#L710-L772)."""
    if not export_to:
        return
    seen: set[str] = set()
    for i, entry in enumerate(export_to):
        key = namespace if entry == "." else entry
        here = f"{path}[{i}]"
        if key in seen:
            if key != entry:
                r.error(here, f"duplicate entries in exportTo: . and current namespace {namespace}")
            else:
                r.error(here, f"duplicate entries in exportTo for entry {entry}")
            continue
        if service_entry and entry == "~":
            seen.add(key)
        elif key == "~":
            r.error(here, "exportTo ~ (none) is not allowed for Istio configuration objects")
        elif key not in (".", "*") and not is_dns1123_label(key):
            r.error(here, "only .,*, or a valid DNS 1123 label is allowed as exportTo entry")
        else:
            seen.add(key)
    if dr_with_selector and seen:
        if namespace in seen:
            if len(seen) > 1:
                r.error(path, "destination rule with workload selector cannot have multiple entries in exportTo")
        else:
            r.error(path, "destination rule with workload selector cannot have exportTo beyond current namespace")
    if "*" in seen and len(export_to) > 1:
        r.error(path, "cannot have both public (*) and non-public exportTo values for a resource")
    if "~" in seen and len(export_to) > 1:
        r.error(path, "cannot export service entry to no one (~) and someone")


def validate_workload_selector(r: _Report, path: str, selector, key: str = "matchLabels") -> None:
    """validateWorkloadSelector (validation.go#L1962-L1982): no empty keys, no wildcards."""
    if selector is None:
        return
    labels = r.dict(f"{path}.{key}", r.dict(path, selector).get(key))
    for k, v in labels.items():
        if k == "":
            r.error(f"{path}.{key}", f"empty key is not supported in selector: {_q(f'{k}={v}')}")
        if "*" in k or "*" in str(v):
            r.error(f"{path}.{key}", f"wildcard is not supported in selector: {_q(f'{k}={v}')}")
    if not labels:
        r.warn(path, "workload selector specified without labels")


def validate_gateway_names(r: _Report, path: str, names: list) -> None:
    """validateGatewayNames (validation.go#L2850-L2879): ``namespace/name`` (or a legacy FQDN)."""
    for i, name in enumerate(names):
        here = f"{path}[{i}]"
        name = r.str(here, name)
        ns, slash, gw = name.partition("/")
        if not slash:
            if "." in name:
                parts = name.split(".")
                r.warn(here, f"using legacy gatewayName format {_q(name)}; prefer the <namespace>/<name> "
                             f"format: {_q(parts[1] + '/' + parts[0])}")
            r.error(here, validate_fqdn(name))
            return  # istiod stops at the first name without a slash
        if not ns or not gw:
            r.error(here, "config namespace and gateway name cannot be empty")
        if not is_dns1123_label(ns):
            r.error(here, f"invalid value for namespace: {_q(ns)}")
        if not is_dns1123_label(gw):
            r.error(here, f"invalid value for gateway name: {_q(gw)}")


# --- VirtualService --------------------------------------------------------------------------

def validate_virtual_service(r: _Report, spec: dict, name: str, namespace: str, annotations: dict) -> None:
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


def warn_unreachable_rules(r: _Report, path: str, routes: list, named: bool) -> None:
    """analyzeUnreachableHTTPRules and friends (validation.go#L2555-L2680), minus the prefix-overlap
    analysis: a rule after a match-less rule, and matches identical to an earlier rule's, are warned about."""
    def rule_name(route: dict, i: int) -> str:
        return _q(route["name"]) if named and route.get("name") else f"#{i}"

    seen: dict[str, int] = {}
    empty_seen = False
    for i, route in enumerate(routes):
        if not isinstance(route, dict):
            continue
        matches = route.get("match") or []
        if not matches:
            if empty_seen:
                r.warn(f"{path}[{i}]", f"virtualService rule {rule_name(route, i)} not used (only the last rule can "
                                       "have no matches)")
            empty_seen = True
            continue
        duplicates = 0
        for j, match in enumerate(matches):
            key = json.dumps({k: v for k, v in (match or {}).items() if not (named and k == "name")}, sort_keys=True)
            if key in seen:
                match_name = _q(match["name"]) if named and (match or {}).get("name") else f"#{j}"
                r.warn(f"{path}[{i}].match[{j}]", f"virtualService rule {rule_name(route, i)} match {match_name} is "
                       f"not used (duplicate/overlapping match in rule {rule_name(routes[seen[key]], seen[key])})")
                duplicates += 1
            else:
                seen[key] = i
        if duplicates == len(matches):
            r.warn(f"{path}[{i}]", f"virtualService rule {rule_name(route, i)} not used (all matches used by prior rules)")


def _route_kind_conflicts(r: _Report, path: str, route: dict, route_type: str) -> None:
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


def _header_name_errors(name: str, op: str) -> str | None:
    """ValidateHTTPHeader*OperationName: no empty names, no pseudo-headers, Host only where allowed."""
    if name == "":
        return "header name cannot be empty"
    internal = name.startswith(":") or name.lower() == "host"
    if op == "set-request":  # request add/set may target the authority
        if internal and name.lower() not in (":authority", "host"):
            return f'invalid header {_q(name)}: header cannot have ":" prefix'
        return None
    if op == "set-destination-request":
        if internal and name.lower() != "host":
            return f'invalid header {_q(name)}: header cannot have ":" prefix'
        return None
    if name.lower() == "host":
        return f'invalid header {_q(name)}: cannot set Host header'
    if internal:
        return f'invalid header {_q(name)}: header cannot have ":" prefix'
    return None


def _validate_headers(r: _Report, path: str, headers, destination: bool = False) -> None:
    headers = r.dict(path, headers)
    for side in ("request", "response"):
        ops = r.dict(f"{path}.{side}", headers.get(side))
        for op in ("add", "set"):
            for name, value in r.dict(f"{path}.{side}.{op}", ops.get(op)).items():
                kind = ("set-destination-request" if destination else "set-request") if side == "request" else "other"
                r.error(f"{path}.{side}.{op}.{name}", _header_name_errors(name, kind))
                if isinstance(value, str) and re.search(r"[\x00-\x08\x0a-\x1f\x7f]", value):
                    r.error(f"{path}.{side}.{op}.{name}", f"header value configuration {value} is invalid")
        for i, name in enumerate(r.list(f"{path}.{side}.remove", ops.get("remove"))):
            r.error(f"{path}.{side}.remove[{i}]", _header_name_errors(name, "other"))


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


def _check_duration(r: _Report, path: str, value) -> None:
    nanos = r.duration(path, value)
    if nanos is not None:
        r.error(path, validate_duration(nanos))


def _validate_percentage(r: _Report, path: str, pct) -> None:
    value = r.dict(path, pct).get("value")
    if isinstance(value, (int, float)) and (value < 0 or value > 100 or 0 < value < 0.0001):
        r.error(f"{path}.value", f"percentage {value} is neither 0.0, nor in range [0.0001, 100.0]")


def validate_http_route(r: _Report, path: str, route: dict, delegate: bool, gateway_semantics: bool) -> None:
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
                continue
            if "prefix" in r.dict(hpath, header) and not header.get("prefix"):
                r.error(hpath, f"header prefix match {hname} may not be empty")
            if route_type == "independent":
                validate_string_match_regex(r, hpath, header, "headers")
        if route_type == "independent":
            for field in ("uri", "scheme", "method", "authority"):
                if match.get(field) is not None:
                    validate_string_match_regex(r, f"{mpath}.{field}", match[field], field)
            for qname, qp in r.dict(f"{mpath}.queryParams", match.get("queryParams")).items():
                validate_string_match_regex(r, f"{mpath}.queryParams.{qname}", qp, "queryParams")
        port = r.int(f"{mpath}.port", match.get("port"))
        if port:
            r.error(f"{mpath}.port", validate_port(port))
        validate_labels(r, f"{mpath}.sourceLabels", r.dict(f"{mpath}.sourceLabels", match.get("sourceLabels")))
        validate_gateway_names(r, f"{mpath}.gateways", r.list(f"{mpath}.gateways", match.get("gateways")))
        source_ns = r.str(f"{mpath}.sourceNamespace", match.get("sourceNamespace"))
        if source_ns and not is_dns1123_label(source_ns):
            r.error(f"{mpath}.sourceNamespace", f"sourceNamespace match {source_ns} is invalid")
    _validate_headers(r, f"{path}.headers", route.get("headers"))
    cors = route.get("corsPolicy")
    if cors is not None:
        cors = r.dict(f"{path}.corsPolicy", cors)
        for i, method in enumerate(r.list(f"{path}.corsPolicy.allowMethods", cors.get("allowMethods"))):
            if method not in _METHODS:
                r.error(f"{path}.corsPolicy.allowMethods[{i}]", f"{_q(method)} is not a supported HTTP method")
        if cors.get("maxAge") is not None:
            _check_duration(r, f"{path}.corsPolicy.maxAge", cors["maxAge"])
    fault = route.get("fault")
    if fault is not None:
        validate_fault(r, f"{path}.fault", r.dict(f"{path}.fault", fault))
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
    validate_http_destinations(r, f"{path}.route", r.list(f"{path}.route", route.get("route")), gateway_semantics)
    if route.get("timeout") is not None:
        _check_duration(r, f"{path}.timeout", route["timeout"])


def validate_fault(r: _Report, path: str, fault: dict) -> None:
    abort, delay = fault.get("abort"), fault.get("delay")
    if abort is None and delay is None:
        r.error(path, "HTTP fault injection must have an abort and/or a delay")
    if abort is not None:
        abort = r.dict(f"{path}.abort", abort)
        _validate_percentage(r, f"{path}.abort.percentage", abort.get("percentage"))
        if "grpcStatus" in abort and abort["grpcStatus"] not in _GRPC_STATUS:
            r.error(f"{path}.abort.grpcStatus",
                    f"gRPC status {_q(str(abort['grpcStatus']))} is not supported. See "
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
        _validate_percentage(r, f"{path}.delay.percentage", delay.get("percentage"))
        if "fixedDelay" in delay:
            _check_duration(r, f"{path}.delay.fixedDelay", delay["fixedDelay"])
        elif "exponentialDelay" in delay:
            _check_duration(r, f"{path}.delay.exponentialDelay", delay["exponentialDelay"])
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


def validate_retries(r: _Report, path: str, retries: dict) -> None:
    attempts = r.int(f"{path}.attempts", retries.get("attempts"))
    if attempts < 0:
        r.error(f"{path}.attempts", "attempts cannot be negative")
    if attempts == 0 and (retries.get("perTryTimeout") is not None or retries.get("retryOn")
                          or retries.get("retryRemoteLocalities") is not None):
        r.error(path, "http retry policy configured when attempts are set to 0 (disabled)")
    if retries.get("perTryTimeout") is not None:
        _check_duration(r, f"{path}.perTryTimeout", retries["perTryTimeout"])
    retry_on = r.str(f"{path}.retryOn", retries.get("retryOn"))
    if retry_on:
        for policy in retry_on.split(","):
            code = int(policy) if policy.isdigit() else 0
            if code not in _HTTP_STATUS_CODES and policy not in _RETRY_ON:
                r.error(f"{path}.retryOn", f"{_q(policy)} is not a valid retryOn policy")


def validate_destination(r: _Report, path: str, destination: dict) -> None:
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


def validate_subset_name(name: str) -> str | None:
    if not name:
        return "subset name cannot be empty"
    if not is_dns1123_label(name):
        return f"subset name is invalid: {name}"
    return None


def validate_http_destinations(r: _Report, path: str, destinations: list, gateway_semantics: bool) -> None:
    """validateHTTPRouteDestinations (validation.go#L2881-L2926): weights are relative, none negative."""
    total = 0
    for i, dest in enumerate(destinations):
        here = f"{path}[{i}]"
        if dest is None:
            r.error(here, "weight may not be nil")
            continue
        dest = r.dict(here, dest)
        if dest.get("destination") is None:
            r.error(f"{here}.destination", "destination is required")
        _validate_headers(r, f"{here}.headers", dest.get("headers"), destination=True)
        if not gateway_semantics and dest.get("destination") is not None:
            validate_destination(r, f"{here}.destination", r.dict(f"{here}.destination", dest["destination"]))
        weight = r.int(f"{here}.weight", dest.get("weight"))
        if weight < 0:
            r.error(f"{here}.weight", f"weight {weight} < 0")
        total += weight
    if len(destinations) > 1 and total == 0:
        r.error(path, "total destination weight = 0")


def validate_route_destinations(r: _Report, path: str, destinations: list) -> None:
    total = 0
    for i, dest in enumerate(destinations):
        here = f"{path}[{i}]"
        if dest is None:
            r.error(here, "weight may not be nil")
            continue
        dest = r.dict(here, dest)
        if dest.get("destination") is None:
            r.error(f"{here}.destination", "destination is required")
        else:
            validate_destination(r, f"{here}.destination", r.dict(f"{here}.destination", dest["destination"]))
        weight = r.int(f"{here}.weight", dest.get("weight"))
        if weight < 0:
            r.error(f"{here}.weight", f"weight {weight} < 0")
        total += weight
    if len(destinations) > 1 and total == 0:
        r.error(path, "total destination weight = 0")


def _validate_l4_match(r: _Report, path: str, match: dict) -> None:
    for i, subnet in enumerate(r.list(f"{path}.destinationSubnets", match.get("destinationSubnets"))):
        r.error(f"{path}.destinationSubnets[{i}]", validate_ip_subnet(subnet))
    port = r.int(f"{path}.port", match.get("port"))
    if port:
        r.error(f"{path}.port", validate_port(port))
    validate_labels(r, f"{path}.sourceLabels", r.dict(f"{path}.sourceLabels", match.get("sourceLabels")))
    validate_gateway_names(r, f"{path}.gateways", r.list(f"{path}.gateways", match.get("gateways")))


def validate_tls_route(r: _Report, path: str, route: dict, hosts: list[str]) -> None:
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
                    r.warn(spath, f"using an IP address ({_q(sni)}) goes against SNI spec and most clients do "
                                  "not support this")
                else:
                    r.error(spath, err)
            elif not any(host_subset_of(sni, h) for h in hosts):
                r.error(spath, f"SNI host {_q(sni)} is not a compatible subset of any of the virtual service "
                               f"hosts: [{', '.join(hosts)}]")
        _validate_l4_match(r, mpath, match)
    destinations = r.list(f"{path}.route", route.get("route"))
    if not destinations:
        r.error(f"{path}.route", "TLS route is required")
    validate_route_destinations(r, f"{path}.route", destinations)


def validate_tcp_route(r: _Report, path: str, route: dict) -> None:
    for i, match in enumerate(r.list(f"{path}.match", route.get("match"))):
        if match is None:
            r.error(f"{path}.match[{i}]", "tcp match may not be nil")
            continue
        _validate_l4_match(r, f"{path}.match[{i}]", r.dict(f"{path}.match[{i}]", match))
    destinations = r.list(f"{path}.route", route.get("route"))
    if not destinations:
        r.error(f"{path}.route", "TCP route is required")
    validate_route_destinations(r, f"{path}.route", destinations)


# --- Gateway ---------------------------------------------------------------------------------

def _gateway_or_sidecar_host_part(host: str, is_gateway: bool) -> list[str]:
    errs = []
    if host != "*" and "." not in host:
        errs.append("short names (non FQDN) are not allowed")
    err = validate_wildcard_domain(host)
    if err:
        if not is_gateway:
            errs.append(err)
        if not is_ip_address(host):
            errs.append(err)
    partial = validate_partial_wildcard(host)
    if partial:
        errs.append(partial)
    return errs


def namespace_slash_host_errors(host: str, is_gateway: bool) -> list[str]:
    """validateNamespaceSlashWildcardHostname (validation.go#L1077-L1109)."""
    ns, slash, dns = host.partition("/")
    if not slash:
        if is_gateway:
            return _gateway_or_sidecar_host_part(host, True)
        return ["host must be of form namespace/dnsName"]
    errs = []
    if not ns or not dns:
        errs.append("config namespace and dnsName in host entry cannot be empty")
    allowed = ("*", ".") if is_gateway else ("*", ".", "~")
    if ns not in allowed and not is_dns1123_label(ns):
        errs.append(f"invalid namespace value {_q(ns)} in {'gateway' if is_gateway else 'sidecar'}")
    return errs + _gateway_or_sidecar_host_part(dns, is_gateway)


def validate_gateway(r: _Report, spec: dict, name: str, namespace: str, annotations: dict) -> None:
    """ValidateGateway and validateServer (validation.go#L466-L547)."""
    if not is_dns1123_label(name):
        r.error("metadata.name", f"invalid gateway name: {_q(name)}")
    servers = r.list("spec.servers", spec.get("servers"))
    if not servers:
        r.error("spec.servers", "gateway must have at least one server")
    port_names: set[str] = set()
    for i, server in enumerate(servers):
        path = f"spec.servers[{i}]"
        if server is None:
            r.error(path, "server may not be nil")
            continue
        server = r.dict(path, server)
        hosts = r.list(f"{path}.hosts", server.get("hosts"))
        if not hosts:
            r.error(f"{path}.hosts", "server config must contain at least one host")
        for j, host in enumerate(hosts):
            for err in namespace_slash_host_errors(r.str(f"{path}.hosts[{j}]", host), True):
                r.error(f"{path}.hosts[{j}]", err)
        port = server.get("port")
        port_ok = port is not None
        if port is None:
            r.error(f"{path}.port", "port is required")
        else:
            port = r.dict(f"{path}.port", port)
            proto = r.str(f"{path}.port.protocol", port.get("protocol"))
            if parse_protocol(proto).is_unsupported():
                r.error(f"{path}.port.protocol", f"invalid protocol {_q(proto)}, supported protocols are HTTP, HTTP2, "
                                                 "GRPC, GRPC-WEB, MONGO, REDIS, MYSQL, TCP")
                port_ok = False
            number = r.int(f"{path}.port.number", port.get("number"))
            if number > 0 and validate_port(number):
                r.error(f"{path}.port.number", validate_port(number))
                port_ok = False
            if not port.get("name"):
                r.error(f"{path}.port.name", "port name must be set: " + _go_port(port))
                port_ok = False
        bind = r.str(f"{path}.bind", server.get("bind"))
        if bind.startswith(UNIX_PREFIX):
            r.error(f"{path}.bind", _unix_address_error(bind[len(UNIX_PREFIX):]))
            if port and port.get("number"):
                r.error(f"{path}.bind", "port number must be 0 for unix domain socket: " + _go_port(port))
        elif bind and not is_ip_address(bind):
            r.error(f"{path}.bind", f"{bind} is not a valid IP")
        tls = server.get("tls")
        if tls is not None:
            validate_server_tls(r, f"{path}.tls", r.dict(f"{path}.tls", tls))
        if port_ok:
            proto = parse_protocol(port.get("protocol", ""))
            if proto.is_tls() and tls is None:
                r.error(f"{path}.tls", "server must have TLS settings for HTTPS/TLS protocols")
            elif not proto.is_tls() and tls is not None:
                if proto.is_http():
                    passthrough = tls.get("mode", "PASSTHROUGH") in ("PASSTHROUGH", "AUTO_PASSTHROUGH")
                    certs = any(tls.get(k) for k in ("caCertificates", "privateKey", "serverCertificate"))
                    if not passthrough or certs:
                        r.error(f"{path}.tls", "server cannot have TLS settings for plain text HTTP ports")
                else:
                    r.error(f"{path}.tls", "server cannot have TLS settings for non HTTPS/TLS ports")
        if port is not None:
            pname = port.get("name", "")
            if pname in port_names:
                r.error(f"{path}.port.name", f"port names in servers must be unique: duplicate name {pname}")
            port_names.add(pname)
            if not parse_protocol(port.get("protocol", "")).is_http() and (tls or {}).get("httpsRedirect"):
                r.warn(f"{path}.tls.httpsRedirect", "tls.httpsRedirect should only be used with http servers")


def _go_port(port: dict) -> str:
    """How Go's %v prints a networking.Port proto (its text format)."""
    parts = []
    if port.get("number"):
        parts.append(f"number:{port['number']}")
    if port.get("protocol"):
        parts.append(f"protocol:{_q(port['protocol'])}")
    if port.get("name"):
        parts.append(f"name:{_q(port['name'])}")
    return "  ".join(parts)


def _unix_address_error(addr: str) -> str | None:
    if not addr:
        return "unix address must not be empty"
    if addr.startswith("@"):
        return None
    if not addr.startswith("/") or addr.endswith("/"):
        return f"{addr} is not an absolute path to a file"
    return None


def validate_server_tls(r: _Report, path: str, tls: dict) -> None:
    """validateTLSOptions (validation.go#L578-L658), the error part."""
    mode = tls.get("mode", "PASSTHROUGH")
    has = {k: bool(tls.get(k)) for k in ("serverCertificate", "privateKey", "caCertificates", "credentialName")}
    if mode == "ISTIO_MUTUAL":
        for key, what in (("serverCertificate", "server certificate"), ("privateKey", "private key"),
                          ("caCertificates", "CA bundle"), ("credentialName", "credentialName")):
            if has[key]:
                r.error(f"{path}.{key}", f"ISTIO_MUTUAL TLS cannot have associated {what}")
        return
    if mode in ("PASSTHROUGH", "AUTO_PASSTHROUGH") and any(has.values()):
        r.warn(path, f"{mode} mode does not use certificates, they will be ignored")
    if mode in ("SIMPLE", "MUTUAL", "OPTIONAL_MUTUAL") and has["credentialName"]:
        return  # certificates come from the secret
    if mode == "SIMPLE":
        if not has["serverCertificate"]:
            r.error(f"{path}.serverCertificate", "SIMPLE TLS requires a server certificate")
        if not has["privateKey"]:
            r.error(f"{path}.privateKey", "SIMPLE TLS requires a private key")
    elif mode in ("MUTUAL", "OPTIONAL_MUTUAL"):
        if not has["serverCertificate"]:
            r.error(f"{path}.serverCertificate", "MUTUAL TLS requires a server certificate")
        if not has["privateKey"]:
            r.error(f"{path}.privateKey", "MUTUAL TLS requires a private key")
        if not has["caCertificates"]:
            r.error(f"{path}.caCertificates", "MUTUAL TLS requires a client CA bundle")


# --- DestinationRule -------------------------------------------------------------------------

def validate_destination_rule(r: _Report, spec: dict, name: str, namespace: str, annotations: dict) -> None:
    """ValidateDestinationRule (validation.go#L661-L708), with PILOT_ENABLE_DESTINATION_RULE_INHERITANCE
    at its 1.19 default (false), so ``host`` is always required."""
    r.error("spec.host", validate_wildcard_domain(r.str("spec.host", spec.get("host"))))
    if spec.get("trafficPolicy") is not None:
        validate_traffic_policy(r, "spec.trafficPolicy", r.dict("spec.trafficPolicy", spec["trafficPolicy"]))
    for i, subset in enumerate(r.list("spec.subsets", spec.get("subsets"))):
        path = f"spec.subsets[{i}]"
        if subset is None:
            r.error(path, "subset may not be null")
            continue
        subset = r.dict(path, subset)
        r.error(f"{path}.name", validate_subset_name(r.str(f"{path}.name", subset.get("name"))))
        validate_labels(r, f"{path}.labels", r.dict(f"{path}.labels", subset.get("labels")))
        if subset.get("trafficPolicy") is not None:
            validate_traffic_policy(r, f"{path}.trafficPolicy", r.dict(f"{path}.trafficPolicy", subset["trafficPolicy"]))
    selector = spec.get("workloadSelector")
    validate_export_to(r, "spec.exportTo", namespace, r.list("spec.exportTo", spec.get("exportTo")),
                       dr_with_selector=selector is not None)
    validate_workload_selector(r, "spec.workloadSelector", selector)


_POLICY_FIELDS = ("outlierDetection", "connectionPool", "loadBalancer", "tls", "portLevelSettings", "tunnel")


def validate_traffic_policy(r: _Report, path: str, policy: dict, port_level: bool = False) -> None:
    """validateTrafficPolicy (validation.go#L1360-L1375) and the settings it checks."""
    fields = _POLICY_FIELDS[:4] if port_level else _POLICY_FIELDS
    if all(policy.get(f) is None for f in fields):
        r.error(path, "port traffic policy must have at least one field" if port_level
                else "traffic policy must have at least one field")
        return
    outlier = policy.get("outlierDetection")
    if outlier is not None:
        outlier = r.dict(f"{path}.outlierDetection", outlier)
        for key in ("baseEjectionTime", "interval"):
            if outlier.get(key) is not None:
                _check_duration(r, f"{path}.outlierDetection.{key}", outlier[key])
        if outlier.get("consecutiveErrors"):
            r.warn(f"{path}.outlierDetection.consecutiveErrors", "outlier detection consecutive errors is "
                   "deprecated, use consecutiveGatewayErrors or consecutive5xxErrors instead")
        for key in ("maxEjectionPercent", "minHealthPercent"):
            value = r.int(f"{path}.outlierDetection.{key}", outlier.get(key))
            if value < 0 or value > 100:
                r.error(f"{path}.outlierDetection.{key}", f"percentage {value} is not in range 0..100")
    pool = policy.get("connectionPool")
    if pool is not None:
        pool = r.dict(f"{path}.connectionPool", pool)
        if pool.get("http") is None and pool.get("tcp") is None:
            r.error(f"{path}.connectionPool", "connection pool must have at least one field")
        http = r.dict(f"{path}.connectionPool.http", pool.get("http"))
        for key, what in (("http1MaxPendingRequests", "http1 max pending requests"),
                          ("http2MaxRequests", "http2 max requests"),
                          ("maxRequestsPerConnection", "max requests per connection"),
                          ("maxRetries", "max retries")):
            if r.int(f"{path}.connectionPool.http.{key}", http.get(key)) < 0:
                r.error(f"{path}.connectionPool.http.{key}", f"{what} must be non-negative")
        if http.get("idleTimeout") is not None:
            _check_duration(r, f"{path}.connectionPool.http.idleTimeout", http["idleTimeout"])
        tcp = r.dict(f"{path}.connectionPool.tcp", pool.get("tcp"))
        if r.int(f"{path}.connectionPool.tcp.maxConnections", tcp.get("maxConnections")) < 0:
            r.error(f"{path}.connectionPool.tcp.maxConnections", "max connections must be non-negative")
        for key in ("connectTimeout", "maxConnectionDuration"):
            if tcp.get(key) is not None:
                _check_duration(r, f"{path}.connectionPool.tcp.{key}", tcp[key])
    lb = policy.get("loadBalancer")
    if lb is not None:
        consistent = r.dict(f"{path}.loadBalancer.consistentHash", r.dict(f"{path}.loadBalancer", lb).get("consistentHash"))
        cookie = consistent.get("httpCookie")
        if cookie is not None:
            cookie = r.dict(f"{path}.loadBalancer.consistentHash.httpCookie", cookie)
            if not cookie.get("name"):
                r.error(f"{path}.loadBalancer.consistentHash.httpCookie.name", "name required for HttpCookie")
            if cookie.get("ttl") is None:
                r.error(f"{path}.loadBalancer.consistentHash.httpCookie.ttl", "ttl required for HttpCookie")
            else:
                r.duration(f"{path}.loadBalancer.consistentHash.httpCookie.ttl", cookie["ttl"])
    tls = policy.get("tls")
    if tls is not None:
        tls = r.dict(f"{path}.tls", tls)
        mode = tls.get("mode", "DISABLE")
        if mode in ("SIMPLE", "MUTUAL") and tls.get("credentialName"):
            if tls.get("clientCertificate") or tls.get("caCertificates") or tls.get("privateKey"):
                r.error(f"{path}.tls", "cannot specify client certificates or CA certificate If credentialName is set")
        elif mode == "MUTUAL":
            if not tls.get("clientCertificate"):
                r.error(f"{path}.tls.clientCertificate", "client certificate required for mutual tls")
            if not tls.get("privateKey"):
                r.error(f"{path}.tls.privateKey", "private key required for mutual tls")
    if not port_level:
        for i, pls in enumerate(r.list(f"{path}.portLevelSettings", policy.get("portLevelSettings"))):
            here = f"{path}.portLevelSettings[{i}]"
            if pls is None:
                r.error(here, "traffic policy may not be null")
                continue
            pls = r.dict(here, pls)
            if pls.get("port") is None:
                r.error(f"{here}.port", "portTrafficPolicy must have valid port")
            validate_traffic_policy(r, here, pls, port_level=True)


def _alpha_selector_ok(r: _Report, selector, what: str) -> bool:
    """validateAlphaWorkloadSelector (validation.go#L774-L795) as ServiceEntry and Sidecar use it:
    an empty key or a wildcard is an error that stops validation; no labels is only a warning."""
    if selector is None:
        return True
    labels = r.dict("spec.workloadSelector.labels", r.dict("spec.workloadSelector", selector).get("labels"))
    ok = True
    for k, v in labels.items():
        if k == "":
            r.error("spec.workloadSelector.labels", f"empty key is not supported in selector: {_q(f'{k}={v}')}")
            ok = False
        if "*" in k or "*" in str(v):
            r.error("spec.workloadSelector.labels", f"wildcard is not supported in selector: {_q(f'{k}={v}')}")
            ok = False
    if ok and not labels:
        r.warn("spec.workloadSelector", f"{what}: workload selector specified without labels, will be applied to "
                                        "all services in namespace")
    return ok


# --- ServiceEntry ----------------------------------------------------------------------------

def validate_service_entry(r: _Report, spec: dict, name: str, namespace: str, annotations: dict) -> None:
    """ValidateServiceEntry (validation.go#L3348-L3544)."""
    selector = spec.get("workloadSelector")
    if not _alpha_selector_ok(r, selector, "service entry"):
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
            r.error(f"{path}.name", f"service entry port name {_q(pname)} already defined")
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
        for i, ep in enumerate(endpoints):
            path = f"spec.endpoints[{i}]"
            ep = r.dict(path, ep)
            address = r.str(f"{path}.address", ep.get("address"))
            if address.startswith(UNIX_PREFIX):
                r.error(f"{path}.address", _unix_address_error(address[len(UNIX_PREFIX):]))
            elif not is_ip_address(address):
                r.error(f"{path}.address", f"{address} is not a valid IP")
            _endpoint_ports(r, path, ep, port_names)
    elif resolution in ("DNS", "DNS_ROUND_ROBIN"):
        if not endpoints:
            for i, host in enumerate(hosts):
                if validate_fqdn(host):
                    r.error(f"spec.hosts[{i}]",
                            f"hosts must be FQDN if no endpoints are provided for resolution mode {resolution}")
        if resolution == "DNS_ROUND_ROBIN" and len(endpoints) > 1:
            r.error("spec.endpoints", f"there must only be 0 or 1 endpoint for resolution mode {resolution}")
        for i, ep in enumerate(endpoints):
            path = f"spec.endpoints[{i}]"
            ep = r.dict(path, ep)
            address = r.str(f"{path}.address", ep.get("address"))
            if not is_ip_address(address) and validate_fqdn(address):
                r.error(f"{path}.address", f"endpoint address {_q(address)} is not a valid FQDN or an IP address")
            _endpoint_ports(r, path, ep, port_names)
    else:
        r.error("spec.resolution", f"unsupported resolution type {resolution}")
    if resolution != "NONE" and len(hosts) > 1:
        for port in ports:
            proto = parse_protocol((port or {}).get("protocol", ""))
            if not proto.is_http() and not proto.is_tls():
                r.error("spec.ports", "multiple hosts provided with non-HTTP, non-TLS ports")
                break
    validate_export_to(r, "spec.exportTo", namespace, r.list("spec.exportTo", spec.get("exportTo")), service_entry=True)


def _endpoint_ports(r: _Report, path: str, ep: dict, port_names: set[str]) -> None:
    for pname, number in r.dict(f"{path}.ports", ep.get("ports")).items():
        if pname not in port_names:
            r.error(f"{path}.ports.{pname}", f"endpoint port {number} is not defined by the service entry")
        r.error(f"{path}.ports.{pname}", validate_port_name(pname))
        r.error(f"{path}.ports.{pname}", validate_port(number if isinstance(number, int) else 0))
    validate_labels(r, f"{path}.labels", r.dict(f"{path}.labels", ep.get("labels")))


# --- Sidecar ---------------------------------------------------------------------------------

def validate_sidecar(r: _Report, spec: dict, name: str, namespace: str, annotations: dict) -> None:
    """ValidateSidecar (validation.go#L1112-L1283), its main rules."""
    if not _alpha_selector_ok(r, spec.get("workloadSelector"), "sidecar"):
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


def _sidecar_port(r: _Report, path: str, port: dict) -> None:
    if port.get("name"):
        r.error(f"{path}.name", validate_port_name(port["name"]))
    r.error(f"{path}.protocol", validate_protocol(r.str(f"{path}.protocol", port.get("protocol"))))
    r.error(f"{path}.number", validate_port(r.int(f"{path}.number", port.get("number"))))


# --- security.istio.io -----------------------------------------------------------------------

def validate_peer_authentication(r: _Report, spec: dict, name: str, namespace: str, annotations: dict) -> None:
    """ValidatePeerAuthentication (validation.go#L2233-L2263)."""
    selector = spec.get("selector")
    match_labels = r.dict("spec.selector", selector).get("matchLabels") or {}
    port_mtls = spec.get("portLevelMtls")
    if not match_labels and port_mtls:
        r.error("spec.portLevelMtls", "mesh/namespace peer authentication cannot have port level mTLS")
    if port_mtls is not None and len(port_mtls) == 0:
        r.error("spec.portLevelMtls", "port level mTLS, if defined, must have at least one element")
    for port in r.dict("spec.portLevelMtls", port_mtls):
        if str(port) == "0":
            r.error(f"spec.portLevelMtls.{port}", "port cannot be 0")
    mode = r.dict("spec.mtls", spec.get("mtls")).get("mode")
    if mode is not None and mode not in ("UNSET", "DISABLE", "PERMISSIVE", "STRICT"):
        r.decode("spec.mtls.mode", f"unknown value {_q(str(mode))} for enum istio.security.v1beta1."
                                   "PeerAuthentication_MutualTLS_Mode")
    validate_workload_selector(r, "spec.selector", selector)


_AUTHZ_ACTIONS = ("ALLOW", "DENY", "AUDIT", "CUSTOM")
_SOURCE_FIELDS = ("principals", "requestPrincipals", "namespaces", "ipBlocks", "remoteIpBlocks", "notPrincipals",
                  "notRequestPrincipals", "notNamespaces", "notIpBlocks", "notRemoteIpBlocks")
_OPERATION_FIELDS = ("ports", "methods", "paths", "hosts", "notPorts", "notMethods", "notPaths", "notHosts")


def _authz_clauses(r, path: str, i: int, rule: dict, outer: str, inner: str, fields):
    """An AuthorizationPolicy rule's ``from`` (``source``) or ``to`` (``operation``) clauses: the
    checks both share, yielding each clause's path and body for its own checks; the empty-value check
    runs after those, as in istiod."""
    if rule.get(outer) is not None and len(rule[outer]) == 0:
        r.error(f"{path}.{outer}", f"`{outer}` must not be empty, found at rule {i}")
    for j, item in enumerate(r.list(f"{path}.{outer}", rule.get(outer))):
        cpath = f"{path}.{outer}[{j}].{inner}"
        clause = r.dict(f"{path}.{outer}[{j}]", item).get(inner)
        if clause is None:
            r.error(cpath, f"`{outer}.{inner}` must not be nil, found at rule {i}")
            continue
        clause = r.dict(cpath, clause)
        if not any(clause.get(f) for f in fields):
            r.error(cpath, f"`{outer}.{inner}` must not be empty, found at rule {i}")
        yield cpath, clause
        _empty_values(r, cpath, clause, fields)


def validate_authorization_policy(r: _Report, spec: dict, name: str, namespace: str, annotations: dict) -> None:
    """ValidateAuthorizationPolicy (validation.go#L1985-L2154), its main rules.

    istiod prefixes every error with ``invalid policy <name>.<namespace>:``; see :func:`istiod_message`.
    """
    validate_workload_selector(r, "spec.selector", spec.get("selector"))
    action = spec.get("action", "ALLOW")
    if action not in _AUTHZ_ACTIONS:
        r.decode("spec.action", f"unknown value {_q(str(action))} for enum istio.security.v1beta1."
                                "AuthorizationPolicy_Action")
        return
    rules = spec.get("rules")
    if action == "CUSTOM":
        if rules is None:
            r.error("spec.rules", "CUSTOM action without `rules` is meaningless as it will never be triggered, "
                                  "add an empty rule `{}` if you want it be triggered for every request")
        elif not (r.dict("spec.provider", spec.get("provider")).get("name")):
            r.error("spec.provider.name", "`provider.name` must not be empty")
    if spec.get("provider") is not None and action != "CUSTOM":
        r.error("spec.provider", f"`provider` must not be with non CUSTOM action, found {action}")
    if action == "DENY" and rules is None:
        r.error("spec.rules", "DENY action without `rules` is meaningless as it will never be triggered, "
                              "add an empty rule `{}` if you want it be triggered for every request")
    for i, rule in enumerate(r.list("spec.rules", rules)):
        path = f"spec.rules[{i}]"
        if rule is None:
            r.error(path, f"`rule` must not be nil, found at rule {i}")
            continue
        rule = r.dict(path, rule)
        for spath, source in _authz_clauses(r, path, i, rule, "from", "source", _SOURCE_FIELDS):
            for field in ("ipBlocks", "notIpBlocks", "remoteIpBlocks", "notRemoteIpBlocks"):
                for ip in r.list(f"{spath}.{field}", source.get(field)):
                    if "/" in ip and validate_ip_subnet(ip):
                        r.error(f"{spath}.{field}", f"bad CIDR range ({ip})")
                    elif "/" not in ip and not is_ip_address(ip):
                        r.error(f"{spath}.{field}", f"bad IP address ({ip})")
        for opath, operation in _authz_clauses(r, path, i, rule, "to", "operation", _OPERATION_FIELDS):
            for field in ("ports", "notPorts"):
                for port in r.list(f"{opath}.{field}", operation.get(field)):
                    if not str(port).isdigit() or int(port) > 65535:
                        r.error(f"{opath}.{field}", f"bad port ({port})")
        for j, cond in enumerate(r.list(f"{path}.when", rule.get("when"))):
            cpath = f"{path}.when[{j}]"
            cond = r.dict(cpath, cond)
            if not cond.get("key"):
                r.error(f"{cpath}.key", "`key` must not be empty")
            elif not cond.get("values") and not cond.get("notValues"):
                r.error(cpath, f"at least one of `values` or `notValues` must be set for key {cond['key']}")


def _empty_values(r: _Report, path: str, obj: dict, fields: tuple[str, ...]) -> None:
    for field in fields:
        if any(v == "" for v in r.list(f"{path}.{field}", obj.get(field))):
            go_name = field[0].upper() + field[1:]
            r.error(f"{path}.{field}", f"empty value not allowed, found in {go_name}")


def validate_request_authentication(r: _Report, spec: dict, name: str, namespace: str, annotations: dict) -> None:
    """ValidateRequestAuthentication (validation.go#L2157-L2230), its main rules."""
    validate_workload_selector(r, "spec.selector", spec.get("selector"))
    for i, rule in enumerate(r.list("spec.jwtRules", spec.get("jwtRules"))):
        path = f"spec.jwtRules[{i}]"
        rule = r.dict(path, rule)
        if not rule.get("issuer"):
            r.error(f"{path}.issuer", "issuer must be set")
        if any(a == "" for a in r.list(f"{path}.audiences", rule.get("audiences"))):
            r.error(f"{path}.audiences", "audience must be non-empty string")
        for j, header in enumerate(r.list(f"{path}.fromHeaders", rule.get("fromHeaders"))):
            if not r.dict(f"{path}.fromHeaders[{j}]", header).get("name"):
                r.error(f"{path}.fromHeaders[{j}].name", "location header name must be non-empty string")


# --- entry points ----------------------------------------------------------------------------

VALIDATORS = {
    ("networking.istio.io", "VirtualService"): validate_virtual_service,
    ("networking.istio.io", "DestinationRule"): validate_destination_rule,
    ("networking.istio.io", "Gateway"): validate_gateway,
    ("networking.istio.io", "ServiceEntry"): validate_service_entry,
    ("networking.istio.io", "Sidecar"): validate_sidecar,
    ("security.istio.io", "PeerAuthentication"): validate_peer_authentication,
    ("security.istio.io", "AuthorizationPolicy"): validate_authorization_policy,
    ("security.istio.io", "RequestAuthentication"): validate_request_authentication,
}
# Kinds istiod knows and mesh accepts without checks of its own (named simplification).
UNCHECKED_KINDS = {
    ("networking.istio.io", "WorkloadEntry"), ("networking.istio.io", "WorkloadGroup"),
    ("networking.istio.io", "EnvoyFilter"), ("networking.istio.io", "ProxyConfig"),
    ("telemetry.istio.io", "Telemetry"), ("extensions.istio.io", "WasmPlugin"),
}
API_VERSIONS = {
    "networking.istio.io": ("v1alpha3", "v1beta1"),  # the versions 1.19 serves
    "security.istio.io": ("v1beta1",),
    "telemetry.istio.io": ("v1alpha1",),
    "extensions.istio.io": ("v1alpha1",),
}


class UnknownKind(ValueError):
    """istiod has no schema for this group/version/kind: the webhook says "unrecognized type"."""


def is_known(obj: dict) -> bool:
    group, _, version = (obj.get("apiVersion") or "").rpartition("/")
    key = (group, obj.get("kind"))
    return (key in VALIDATORS or key in UNCHECKED_KINDS) and version in API_VERSIONS.get(group, ())


def validate(obj: dict) -> list[Problem]:
    """Validate one Istio object (a dict as kubectl would send it); errors and warnings, in order.

    Raises :class:`UnknownKind` for an object istiod would not recognise.
    """
    group, _, version = (obj.get("apiVersion") or "").rpartition("/")
    kind = obj.get("kind") or ""
    if not is_known(obj):
        raise UnknownKind(f"unrecognized type {group}/{version}, Kind={kind}")
    validator = VALIDATORS.get((group, kind))
    r = _Report()
    meta = r.dict("metadata", obj.get("metadata"))
    spec = r.dict("spec", obj.get("spec"))
    if validator is not None:
        validator(r, spec, meta.get("name") or "", meta.get("namespace") or "", meta.get("annotations") or {})
    return r.problems


def errors(problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if p.is_error]


def _multierror(messages: list[str]) -> str:
    """hashicorp/go-multierror's text: one error stays as it is, several become a bullet list."""
    if len(messages) == 1:
        return messages[0]
    bullets = "\n\t* ".join(messages)
    return f"{len(messages)} errors occurred:\n\t* {bullets}\n\n"


def istiod_message(obj: dict, problems: list[Problem]) -> str | None:
    """The message istiod's webhook puts in a denied AdmissionResponse, or None if it allows the object."""
    decode = [p.message for p in problems if p.stage == "decode"]
    if decode:
        return f"error decoding configuration: {decode[0]}"
    errs = [p.message for p in errors(problems)]
    if not errs:
        return None
    if obj.get("kind") == "AuthorizationPolicy":
        meta = obj.get("metadata") or {}
        prefix = f"invalid policy {meta.get('name')}.{meta.get('namespace')}:"
        errs = [f"{prefix} {m}" for m in errs]
    return f"configuration is invalid: {_multierror(errs)}"
