"""What happened during a replay, as rows: trace events, mesh config changes, push requests.

Shared by ``python -m mesh replay`` and the notebooks, so a timeline reads the same in both.
Every value is derived from the virtual clock and the trace, so rows are identical on every run.
"""

from __future__ import annotations

from dataclasses import dataclass

from mesh.kube.trace import TraceEvent


def describe_object(obj: dict) -> str:
    """A one-line summary a Kubernetes user would recognise."""
    kind = obj.get("kind")
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    if kind == "Pod":
        parts = [status.get("phase", "Pending")]
        if status.get("podIP"):
            parts.append(f"ip {status['podIP']}")
        containers = [c.get("name") for c in spec.get("containers") or []]
        if containers:
            parts.append("containers " + ",".join(containers))
        return " ".join(parts)
    if kind in ("Deployment", "ReplicaSet", "StatefulSet"):
        return f"replicas {spec.get('replicas', 1)}"
    if kind == "Service":
        ports = ",".join(f"{p.get('name', '')}:{p.get('port')}" for p in spec.get("ports") or [])
        return f"{spec.get('clusterIP', '')} ports {ports}".strip()
    if kind == "EndpointSlice":
        addresses = [a for e in obj.get("endpoints") or [] for a in e.get("addresses") or []]
        return f"{len(addresses)} endpoints " + ",".join(addresses)
    if kind in ("ConfigMap", "Secret"):
        return "keys " + ",".join(sorted((obj.get("data") or {}).keys()))
    if kind == "Namespace":
        labels = (obj.get("metadata") or {}).get("labels") or {}
        shown = {k: v for k, v in labels.items() if not k.startswith("kubernetes.io/")}
        return ",".join(f"{k}={v}" for k, v in sorted(shown.items()))
    if kind == "VirtualService":
        weights = [
            f"{d.get('destination', {}).get('subset', d.get('destination', {}).get('host'))}={d.get('weight', 100)}"
            for http in spec.get("http") or [] for d in http.get("route") or []
        ]
        return " ".join(weights)
    return ""


def event_rows(events: list[TraceEvent]) -> list[tuple[str, str, str, str, str]]:
    """(t, type, kind, namespace/name, summary) for each applied event."""
    rows = []
    for e in events:
        meta = e.object.get("metadata") or {}
        name = f"{meta['namespace']}/{meta['name']}" if meta.get("namespace") else meta.get("name", "")
        rows.append((f"{e.t:.3f}", e.type, e.object.get("kind", ""), name, describe_object(e.object)))
    return rows


def dict_diff(old: object, new: object, path: str = "") -> list[tuple[str, object, object]]:
    """Leaf-level differences between two JSON-like values: (path, old, new)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in list(old) + [k for k in new if k not in old]:
            sub = f"{path}.{key}" if path else str(key)
            out += dict_diff(old.get(key, _MISSING), new.get(key, _MISSING), sub)
        return out
    if old != new:
        return [(path, None if old is _MISSING else old, None if new is _MISSING else new)]
    return []


_MISSING = object()


@dataclass
class MeshChange:
    at: float
    changes: list[tuple[str, object, object]]
    trust_domain: str


class MeshChangeRecorder:
    """Attach to a server after ``init_mesh_handlers`` to record each mesh config change."""

    def __init__(self, server):
        self.server = server
        self.changes: list[MeshChange] = []
        self._last = server.environment.mesh()
        server.environment.mesh_watcher.add_mesh_handler(self._on_change)

    def _on_change(self) -> None:
        current = self.server.environment.mesh()
        self.changes.append(MeshChange(self.server.clock.now(), dict_diff(self._last, current),
                                       current.get("trustDomain", "")))
        self._last = current
