"""The small checks every kind's validator shares: durations, DNS names and wildcards, IPs and
subnets, ports, labels, protocols, RE2 regexes, exportTo, workload selectors, gateway names.

Go keeps these in https://github.com/istio/istio/blob/1.19.0/pkg/config/validation/validation.go beside the per-kind validators (``ValidatePort``,
``ValidateFQDN``, ``ValidateWildcardDomain``, ``validateExportTo``, ``validateWorkloadSelector``, ...).

Regexes are checked with RE2 itself (google-re2), whose syntax Go's ``regexp`` follows; the
reason in a message is RE2's wording, not Go's (a named simplification).
"""

from __future__ import annotations

import ipaddress
import re

import re2

from mesh.config.protocol import parse as parse_protocol
from mesh.config.validation.report import Report, quote
from mesh.util.net import is_ip_address

UNIX_PREFIX = "unix://"


def validate_duration(nanos: int) -> str | None:
    """ValidateDuration (validation.go#L1593-L1603): at least 1ms, whole milliseconds."""
    if nanos < 1_000_000:
        return "duration must be greater than 1ms"
    if nanos % 1_000_000:
        return "only durations to ms precision are supported"
    return None



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
        return f"domain name {quote(domain)} invalid (top level domain {quote(parts[-1])} cannot be all-numeric)"
    for i, label in enumerate(parts):
        if i == len(parts) - 1 and label == "":
            return None  # a trailing dot is allowed ("istio.io.")
        if not is_dns1123_label(label):
            return f"domain name {quote(domain)} invalid (label {quote(label)} invalid)"
    return None


def _dns1123_preconditions(name: str) -> str | None:
    if len(name) > 255:
        return f"domain name {quote(name)} too long (max 255)"
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
        return f"domain name {quote(domain)} invalid (label {quote(first)} invalid)"
    return _dns1123_labels(rest) if "." in domain else None


def validate_partial_wildcard(host: str) -> str | None:
    if "*" in host and len(host) != 1 and not host.startswith("*."):
        return f"partial wildcard {quote(host)} not allowed"
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


def validate_labels(r: Report, path: str, labels: dict) -> None:
    for key, value in labels.items():
        if not _LABEL_KEY.match(key):
            r.error(path, f"invalid tag key: {quote(key)}")
        if not isinstance(value, str) or not _LABEL_VALUE.match(value):
            r.error(f"{path}.{key}", f"invalid tag value: {quote(str(value))}")


def validate_protocol(name: str) -> str | None:
    if name and parse_protocol(name).is_unsupported():
        return f"unsupported protocol: {name}"
    return None


def validate_port_name(name: str) -> str | None:
    return None if is_dns1123_label(name) else f"invalid port name: {name}"


# --- regexes (RE2, as Go's regexp) ------------------------------------------------------------

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # report through the Problem, not on stderr


def re2_error(regex: str) -> str | None:
    """Why RE2 refuses ``regex`` (the C++ library's words), or None. Go's regexp implements the
    same syntax, so the verdicts agree; the wording differs (``bad repetition operator: ++`` where
    Go says ``invalid nested repetition operator: `++```)."""
    try:
        re2.compile(regex, _RE2_OPTIONS)
    except re2.error as err:
        reason = err.args[0] if err.args else "invalid regex"
        return reason.decode() if isinstance(reason, bytes) else str(reason)
    return None


def validate_regex(regex: str, where: str) -> str | None:
    """validateStringRegexp (validation.go#L2830-L2848): at most 1024 characters, RE2 syntax."""
    if len(regex) > 1024:
        return f"{quote(where)}: regex is too large, max length allowed is 1024"
    reason = re2_error(regex)
    if reason is None:
        return None
    return (f"{quote(where)}: error parsing regexp: {reason}; Istio uses RE2 style regex-based match "
            "(https://github.com/google/re2/wiki/Syntax)")


def validate_string_match_regex(r: Report, path: str, match, where: str) -> None:
    match = r.dict(path, match)
    if "regex" not in match:
        return
    regex = r.str(f"{path}.regex", match["regex"])
    if not regex:
        r.error(f"{path}.regex", f"{quote(where)}: regex string match should not be empty")
        return
    r.error(f"{path}.regex", validate_regex(regex, where))


# --- shared pieces ---------------------------------------------------------------------------

def validate_export_to(r: Report, path: str, namespace: str, export_to: list, service_entry: bool = False,
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


def validate_workload_selector(r: Report, path: str, selector, key: str = "matchLabels") -> None:
    """validateWorkloadSelector (validation.go#L1962-L1982): no empty keys, no wildcards."""
    if selector is None:
        return
    labels = r.dict(f"{path}.{key}", r.dict(path, selector).get(key))
    for k, v in labels.items():
        if k == "":
            r.error(f"{path}.{key}", f"empty key is not supported in selector: {quote(f'{k}={v}')}")
        if "*" in k or "*" in str(v):
            r.error(f"{path}.{key}", f"wildcard is not supported in selector: {quote(f'{k}={v}')}")
    if not labels:
        r.warn(path, "workload selector specified without labels")


def validate_gateway_names(r: Report, path: str, names: list) -> None:
    """validateGatewayNames (validation.go#L2850-L2879): ``namespace/name`` (or a legacy FQDN)."""
    for i, name in enumerate(names):
        here = f"{path}[{i}]"
        name = r.str(here, name)
        ns, slash, gw = name.partition("/")
        if not slash:
            if "." in name:
                parts = name.split(".")
                r.warn(here, f"using legacy gatewayName format {quote(name)}; prefer the <namespace>/<name> "
                             f"format: {quote(parts[1] + '/' + parts[0])}")
            r.error(here, validate_fqdn(name))
            return  # istiod stops at the first name without a slash
        if not ns or not gw:
            r.error(here, "config namespace and gateway name cannot be empty")
        if not is_dns1123_label(ns):
            r.error(here, f"invalid value for namespace: {quote(ns)}")
        if not is_dns1123_label(gw):
            r.error(here, f"invalid value for gateway name: {quote(gw)}")


def alpha_selector_ok(r: Report, selector, what: str) -> bool:
    """validateAlphaWorkloadSelector (validation.go#L774-L795) as ServiceEntry and Sidecar use it:
    an empty key or a wildcard is an error that stops validation; no labels is only a warning."""
    if selector is None:
        return True
    labels = r.dict("spec.workloadSelector.labels", r.dict("spec.workloadSelector", selector).get("labels"))
    ok = True
    for k, v in labels.items():
        if k == "":
            r.error("spec.workloadSelector.labels", f"empty key is not supported in selector: {quote(f'{k}={v}')}")
            ok = False
        if "*" in k or "*" in str(v):
            r.error("spec.workloadSelector.labels", f"wildcard is not supported in selector: {quote(f'{k}={v}')}")
            ok = False
    if ok and not labels:
        r.warn("spec.workloadSelector", f"{what}: workload selector specified without labels, will be applied to "
                                        "all services in namespace")
    return ok


def check_duration(r: Report, path: str, value) -> None:
    nanos = r.duration(path, value)
    if nanos is not None:
        r.error(path, validate_duration(nanos))


def validate_percentage(r: Report, path: str, pct) -> None:
    value = r.dict(path, pct).get("value")
    if isinstance(value, (int, float)) and (value < 0 or value > 100 or 0 < value < 0.0001):
        r.error(f"{path}.value", f"percentage {value} is neither 0.0, nor in range [0.0001, 100.0]")


def unix_address_error(addr: str) -> str | None:
    if not addr:
        return "unix address must not be empty"
    if addr.startswith("@"):
        return None
    if not addr.startswith("/") or addr.endswith("/"):
        return f"{addr} is not an absolute path to a file"
    return None


def validate_subset_name(name: str) -> str | None:
    if not name:
        return "subset name cannot be empty"
    if not is_dns1123_label(name):
        return f"subset name is invalid: {name}"
    return None
