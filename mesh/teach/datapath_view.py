"""Views for notebook 20 (the sidecar's data path): a pod's iptables rules as applied, and
excerpts of a real Envoy's ``/config_dump`` (Envoy's own snake_case JSON) by resource name.

No Go counterpart: these are the teaching side of ``istioctl proxy-config`` and of reading
``iptables-save`` inside a pod. Outputs hold only what the trace fixes (pod and Service
addresses, ports, names), never a run's namespace names, ports or pids.
"""

from __future__ import annotations

import subprocess
from typing import Any

from mesh.cni.ip import unavailable
from mesh.teach.views import TextView, as_yaml


def require_netns() -> None:
    """Stop the notebook with one clear sentence where pods cannot be network namespaces."""
    why_not = unavailable()
    if why_not:
        raise RuntimeError(f"notebook 20 runs bookinfo's pods as network namespaces and needs root, "
                           f"iproute2 and iptables: {why_not}. Run it as root (CI does), or read its "
                           f"committed outputs.")


def nat_rules(netns: str | None) -> list[str]:
    """The nat table of a network namespace (None: this one) as ``iptables-save`` prints it, without
    its comment lines and chain counters (they change between runs)."""
    argv = ["iptables-save", "-t", "nat"]
    if netns is not None:
        argv = ["ip", "netns", "exec", netns, *argv]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return [line.split(" [")[0] for line in out.splitlines() if not line.startswith("#")]


def rules_view(rules: list[str], *chains: str) -> TextView:
    """The rules (``-A`` lines) of the named chains, in order."""
    picked = [r for r in rules if r.startswith("-A ") and r.split()[1] in chains]
    return TextView("\n".join(picked) or "(none)")


def _section(dump: dict, key: str, inner: str, name_of) -> dict[str, dict]:
    out = {}
    for section in dump.get("configs", []):
        for entry in section.get(key, []):
            body = entry.get(inner, entry) if inner else entry
            out[name_of(entry, body)] = body
    return out


def listeners(dump: dict) -> dict[str, dict]:
    return {name: entry["active_state"]["listener"]
            for name, entry in _section(dump, "dynamic_listeners", "", lambda e, _b: e["name"]).items()}


def clusters(dump: dict) -> dict[str, dict]:
    return _section(dump, "dynamic_active_clusters", "cluster", lambda _e, b: b["name"])


def routes(dump: dict) -> dict[str, dict]:
    return _section(dump, "dynamic_route_configs", "route_config", lambda _e, b: b["name"])


def endpoints(dump: dict) -> dict[str, dict]:
    """EDS (``/config_dump?include_eds``): cluster name → its ClusterLoadAssignment."""
    return _section(dump, "dynamic_endpoint_configs", "endpoint_config", lambda _e, b: b["cluster_name"])


def virtual_host(dump: dict, route: str, name: str) -> dict:
    return next(vh for vh in routes(dump)[route]["virtual_hosts"] if vh["name"] == name)


def endpoint_addresses(assignment: dict) -> list[str]:
    return sorted(f"{lb['endpoint']['address']['socket_address']['address']}:"
                  f"{lb['endpoint']['address']['socket_address']['port_value']}"
                  for group in assignment.get("endpoints", []) for lb in group.get("lb_endpoints", []))


def pick(obj: dict, *paths: str) -> dict[str, Any]:
    """The values at dotted ``paths`` (``a.b.0.c``), as a small dict: an excerpt of a big resource."""
    out = {}
    for path in paths:
        value: Any = obj
        for part in path.split("."):
            value = value[int(part)] if isinstance(value, list) else value.get(part)
            if value is None:
                break
        out[path] = value
    return out


def excerpt(obj: dict, *paths: str) -> TextView:
    return as_yaml(pick(obj, *paths))
