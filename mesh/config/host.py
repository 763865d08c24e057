"""Istio hostnames: do two (possibly wildcard) hosts overlap?

Go: ``host.Name.Matches`` in https://github.com/istio/istio/blob/1.19.0/pkg/config/host/name.go.
Used where config is checked against config — validation (duplicate hosts in a Gateway) and Gateway
API conversion (listener and route hostnames). The networking builders match one concrete hostname
against a pattern instead (``mesh.networking.push_context.host_matches``).
"""

from __future__ import annotations


def matches(a: str, b: str) -> bool:
    """Bidirectional: ``*.example.com`` matches ``foo.example.com`` and ``*.com``; two exact names
    must be equal."""
    aw, bw = a.startswith("*"), b.startswith("*")
    if aw and bw:
        return b[1:].endswith(a[1:]) if len(a) < len(b) else a[1:].endswith(b[1:])
    if aw:
        return b.endswith(a[1:])
    if bw:
        return a.endswith(b[1:])
    return a == b
