"""Checking a pod's injection annotations before any template runs.

Go: ``AnnotationValidation`` and ``validateAnnotations``
https://github.com/istio/istio/blob/1.19.0/pkg/kube/inject/validate.go#L36-L71, the checks
https://github.com/istio/istio/blob/1.19.0/pkg/kube/inject/validate.go#L73-L184, called first thing
in ``RunTemplate`` https://github.com/istio/istio/blob/1.19.0/pkg/kube/inject/inject.go#L358-L368.

A bad value (an IP range that is not a CIDR, a port that is not a number) fails the injection of
that pod — the webhook then answers with the error and, since the webhook fails closed, the pod is
not created — rather than rendering iptables rules that would break it at run time. Every bad
annotation is reported, not just the first.

Simplifications, named: ``proxy.istio.io/config`` is checked to be a YAML mapping (in
``mesh/inject/inject.py``), not run through ProxyConfig's validation, which mesh does not have.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable


class AnnotationError(ValueError):
    """One or more injection annotations with a value istiod refuses."""


def _uint(text: str, bits: int) -> int:
    # strconv.ParseUint: decimal digits only, no sign, no spaces (the callers trim where Go does).
    if not re.fullmatch(r"[0-9]+", text) or int(text) >= 1 << bits:
        raise ValueError(f"strconv.ParseUint: parsing {text!r}: invalid syntax" if not text.isdigit()
                         else f"strconv.ParseUint: parsing {text!r}: value out of range")
    return int(text)


def parse_port(text: str) -> int:
    try:
        return _uint(text.strip(), 16)
    except ValueError as err:
        raise ValueError(f"failed parsing port '{text}': {err}") from None


def parse_ports(text: str) -> list[int]:
    text = text.strip()
    if not text:
        return []
    ports = []
    for part in text.split(","):
        try:
            ports.append(parse_port(part))
        except ValueError as err:
            raise ValueError(f"failed parsing port '{part}': {err}") from None
    return ports


def _cidr_list(text: str) -> None:
    for cidr in text.split(",") if text else []:
        # netip.ParsePrefix: an address, "/", and a prefix length; host bits may be set.
        address, slash, bits = cidr.partition("/")
        try:
            if not slash or not re.fullmatch(r"[0-9]{1,3}", bits):
                raise ValueError("no '/'" if not slash else "bad bits")
            ipaddress.ip_network(f"{ipaddress.ip_address(address)}/{bits}", strict=False)
        except ValueError as err:
            raise ValueError(f"failed parsing cidr '{cidr}': {err}") from None


def _include_ip_ranges(v: str) -> None:
    if v != "*":
        try:
            _cidr_list(v)
        except ValueError as err:
            raise ValueError(f"includeIPRanges invalid: {err}") from None


def _exclude_ip_ranges(v: str) -> None:
    try:
        _cidr_list(v)
    except ValueError as err:
        raise ValueError(f"excludeIPRanges invalid: {err}") from None


def _port_list(name: str) -> Callable[[str], None]:
    def check(v: str) -> None:
        if name == "includeInboundPorts" and v == "*":
            return
        try:
            parse_ports(v)
        except ValueError as err:
            raise ValueError(f"{name} invalid: {err}") from None
    return check


def _interception_mode(v: str) -> None:
    if v not in ("REDIRECT", "TPROXY", "NONE"):
        raise ValueError(f"interceptionMode invalid, use REDIRECT,TPROXY,NONE: {v}")


def _status_port(v: str) -> None:
    try:
        parse_port(v)
    except ValueError as err:
        raise ValueError(f"excludeInboundPorts invalid: {err}") from None  # sic: istiod's wording


def _uint32(v: str) -> None:
    _uint(v, 32)


def _bool(v: str) -> None:
    if v not in ("1", "t", "T", "TRUE", "true", "True", "0", "f", "F", "FALSE", "false", "False"):
        raise ValueError(f"strconv.ParseBool: parsing {v!r}: invalid syntax")


ANNOTATION_CHECKS: dict[str, Callable[[str], None]] = {
    "sidecar.istio.io/interceptionMode": _interception_mode,
    "sidecar.istio.io/enableCoreDump": _bool,
    "status.sidecar.istio.io/port": _status_port,
    "readiness.status.sidecar.istio.io/initialDelaySeconds": _uint32,
    "readiness.status.sidecar.istio.io/periodSeconds": _uint32,
    "readiness.status.sidecar.istio.io/failureThreshold": _uint32,
    "traffic.sidecar.istio.io/includeOutboundIPRanges": _include_ip_ranges,
    "traffic.sidecar.istio.io/excludeOutboundIPRanges": _exclude_ip_ranges,
    "traffic.sidecar.istio.io/includeInboundPorts": _port_list("includeInboundPorts"),
    "traffic.sidecar.istio.io/excludeInboundPorts": _port_list("excludeInboundPorts"),
    "traffic.sidecar.istio.io/excludeOutboundPorts": _port_list("excludeOutboundPorts"),
    "prometheus.istio.io/merge-metrics": _bool,
}


def validate_annotations(annotations: dict | None) -> None:
    """Raise AnnotationError listing every annotation whose value istiod would refuse."""
    problems = []
    for name in sorted(annotations or {}):
        check = ANNOTATION_CHECKS.get(name)
        if check is None:
            continue
        value = str(annotations[name])
        try:
            check(value)
        except ValueError as err:
            problems.append(f"invalid value '{value}' for annotation '{name}': {err}")
    if problems:
        raise AnnotationError("; ".join(problems))
