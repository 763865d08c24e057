"""Address checks (istio's ``pkg/util/net``, https://github.com/istio/istio/blob/1.19.0/pkg/util/net/ip.go).

``is_loopback`` guards mesh's one network rule: everything that carries traffic stays on
127.0.0.0/8 (or ::1).
"""

from __future__ import annotations

import ipaddress


def is_ip_address(text: str) -> bool:
    """An IPv4 or IPv6 address (not a CIDR, not a hostname)."""
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


def is_loopback(host: str) -> bool:
    """``localhost`` or an address in 127.0.0.0/8 or ::1."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_port(host: str, port: int) -> str:
    """``host:port``, an IPv6 literal in brackets (``::1`` → ``[::1]:15010``), as gRPC and URLs want it."""
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


class PortInUse(OSError):
    """A port mesh must listen on is taken (mesh binds its ports exclusively: no SO_REUSEPORT)."""
