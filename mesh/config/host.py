"""Istio hostnames: do two (possibly wildcard) hosts overlap?

Go: ``host.Name.Matches`` and ``SubsetOf`` in
https://github.com/istio/istio/blob/1.19.0/pkg/config/host/name.go#L24-L87.
``matches`` (both directions) is used where config is checked against config — validation (duplicate
hosts in a Gateway) and Gateway API conversion (listener and route hostnames). ``subset_of`` (one
direction) is what validation's SNI check and the networking builders use to ask whether a rule's
(possibly wildcard) host covers a service hostname.
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


def subset_of(a: str, b: str) -> bool:
    """One direction: is ``a`` covered by ``b``? ``foo.example.com`` ⊂ ``*.example.com`` ⊂ ``*``;
    a wildcard is never a subset of an exact name."""
    aw, bw = a.startswith("*"), b.startswith("*")
    if aw:
        return bw and len(a) >= len(b) and a[1:].endswith(b[1:])
    if bw:
        return a.endswith(b[1:])
    return a == b
