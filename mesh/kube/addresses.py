"""A trace's cluster addresses, and their loopback stand-ins for machines without pod namespaces.

Traces carry a real cluster's addresses (DESIGN §4): pods in 10.244.0.0/16, Service ClusterIPs in
10.96.0.0/12, hosts outside the cluster (ServiceEntry endpoints) in 198.18.0.0/15. Those carry
traffic only inside the network namespaces ``mesh.cni`` creates. Where a real Envoy or app runs in
the root network namespace instead (not root, the loopback demo, the tests' real Envoys),
``to_loopback`` rewrites the trace first, so nothing ever sends to a trace's own addresses:

    pods       10.244.a.b   → 127.10.a.b   (or <subnet>.b with a /24 of loopback, for parallel runs)
    Services   10.(96+k).a.b → 127.(96+k).a.b
    outside    198.(18+k).a.b → 127.(30+k).a.b

Only whole string values that are such an address change (pod IPs, host IPs, endpoint addresses,
clusterIPs, ServiceEntry addresses); CIDRs such as a Node's ``podCIDR`` stay as they are.
"""

from __future__ import annotations

import ipaddress
import json

from mesh.kube.trace import Trace, TraceEvent

POD_CIDR = ipaddress.ip_network("10.244.0.0/16")
SERVICE_CIDR = ipaddress.ip_network("10.96.0.0/12")
EXTERNAL_CIDR = ipaddress.ip_network("198.18.0.0/15")
LOOPBACK_PODS = "127.10"  # the first two octets of a pod's loopback stand-in


def check_subnet(subnet: str) -> str:
    """``127.10.7`` (three octets of loopback) or raise ValueError saying why not."""
    parts = subnet.split(".")
    if len(parts) != 3 or not all(p.isdigit() and int(p) < 256 for p in parts):
        raise ValueError(f"subnet {subnet!r}: expected three octets such as 127.10.7")
    if not ipaddress.ip_address(f"{subnet}.1").is_loopback:
        raise ValueError(f"subnet {subnet!r}: mesh only uses loopback addresses (127.0.0.0/8)")
    return subnet


def loopback_address(address: str, subnet: str | None = None) -> str | None:
    """The loopback stand-in of a cluster address, or None when ``address`` is not one."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    if ip.version != 4:
        return None
    a, b, c, d = (int(x) for x in str(ip).split("."))
    if ip in POD_CIDR:
        if subnet is not None:
            if c != 0:
                raise ValueError(f"pod address {address}: --subnet holds pods 10.244.0.x only")
            return f"{subnet}.{d}"
        return f"{LOOPBACK_PODS}.{c}.{d}"
    if ip in SERVICE_CIDR:
        return f"127.{b}.{c}.{d}"
    if ip in EXTERNAL_CIDR:
        return f"127.{30 + b - 18}.{c}.{d}"
    return None


def to_loopback(trace: Trace, subnet: str | None = None) -> Trace:
    """A copy of ``trace`` with every cluster address replaced by its loopback stand-in."""
    if subnet is not None:
        check_subnet(subnet)

    def fix(value):
        if isinstance(value, str):
            return loopback_address(value, subnet) or value
        if isinstance(value, dict):
            return {k: fix(v) for k, v in value.items()}
        if isinstance(value, list):
            return [fix(v) for v in value]
        return value

    events = [TraceEvent(t=e.t, type=e.type, object=fix(json.loads(json.dumps(e.object))), line=e.line)
              for e in trace.events]
    return Trace(header={**trace.header, "addresses": "loopback"}, events=events, path=trace.path)


def require_loopback(address: str, what: str = "a real Envoy or app in the root network namespace") -> str:
    """``address`` if it is loopback; else ValueError: a trace's cluster address must not be used by
    anything running in the root namespace (replay with ``to_loopback`` / ``loopback_addresses``)."""
    if not ipaddress.ip_address(address).is_loopback:
        raise ValueError(f"{address} is not a loopback address: {what} must not use a trace's cluster "
                         "addresses; replay the trace with to_loopback() or ServerArgs(loopback_addresses=True)")
    return address
