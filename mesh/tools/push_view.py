"""Plain-text views for stage 15: who listens for changes, which changes asked for a push, and
how the debouncer merged those requests into pushes.

Nothing here is part of the mini-istiod; notebook 15 uses it to look at what
``Server.init_registry_event_handlers`` wired (Go:
https://github.com/istio/istio/blob/1.19.0/pilot/pkg/bootstrap/server.go#L843-L924) and at what
``DiscoveryServer`` recorded (``requests``: every ``ConfigUpdate``; ``pushes``: what left the debounce
loop, https://github.com/istio/istio/blob/1.19.0/pilot/pkg/xds/discovery.go#L337-L419). Like
``views``, every table is in a fixed order — the virtual clock's, or sorted — and shows no wall-clock
time, port, path or memory address.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from mesh.model.push_request import ConfigKey, PushRequest
from mesh.tools.textview import TextView, table
from mesh.tools.timeline import describe_object, dict_diff

SERVICE_EVENTS = "service events"
ENDPOINT_UPDATES = "endpoint updates (EDS)"


# -- who listens ---------------------------------------------------------------------------------
def handler_counts(server) -> dict[tuple[str, str], int]:
    """How many handlers listen, per (source, what): the service registry's service handlers and
    EDS handlers, then each config store's handlers per kind. Read-only: counting registers nothing."""
    counts: dict[tuple[str, str], int] = {}
    registry = server.environment.service_discovery
    if registry is not None:
        counts[("service registry", SERVICE_EVENTS)] = len(registry.service_handlers)
        counts[("service registry", ENDPOINT_UPDATES)] = len(registry.eds_handlers)
    store = server.environment.config_store
    for sub in getattr(store, "stores", []) if store is not None else []:
        name = f"config store: {getattr(sub, 'name', None) or type(sub).__name__}"
        per_kind = getattr(sub, "handler_count", None)  # CrdClient counts them
        if per_kind is None:  # the converted (Ingress, Gateway API) stores keep the handlers
            per_kind = {k: len(v) for k, v in getattr(sub, "handlers", {}).items()}
        for kind in sub.schemas():
            counts[(name, kind)] = per_kind.get(kind, 0)
    return counts


def handlers_table(before: dict[tuple[str, str], int], after: dict[tuple[str, str], int]) -> TextView:
    """Handler counts side by side (e.g. before and after stage 15), in the order ``after`` lists them."""
    rows = []
    for key in list(after) + [k for k in before if k not in after]:
        b, a = before.get(key, 0), after.get(key, 0)
        rows.append((key[0], key[1], b, a, f"+{a - b}" if a > b else ("-" if a == b else str(a - b))))
    return table(("source", "kind / events", "handlers before", "after", "added"), rows)


# -- requests and pushes ---------------------------------------------------------------------------
def reasons_of(request: PushRequest) -> str:
    return ", ".join(f"{k}×{n}" if n > 1 else k for k, n in sorted(request.reason.items())) or "-"


def _configs(request: PushRequest) -> list[str]:
    return sorted(str(c) for c in request.configs_updated) or ["(all)"]


def kind_of(request: PushRequest) -> str:
    return "full" if request.full else "incremental"


def push_timeline(requests: Iterable, pushes: Iterable, since: float | None = None,
                  until: float | None = None) -> TextView:
    """Requests (``DiscoveryServer.requests``) and the debounced pushes they became
    (``DiscoveryServer.pushes``) on one virtual-clock timeline. A push's configs are listed one per
    line under it; at the same instant requests come before the push they feed."""
    entries: list[tuple[float, int, int, object]] = []
    for i, r in enumerate(requests):
        entries.append((r.at, 0, i, r))
    for i, p in enumerate(pushes):
        entries.append((p.at, 1, i, p))
    rows = []
    for at, is_push, _, item in sorted(entries, key=lambda e: e[:3]):
        if since is not None and at < since or until is not None and at > until:
            continue
        req = item.request
        configs = _configs(req)
        if is_push:
            step = f"PUSH ({item.events} merged, waited {item.waited:.3f} s)"
        else:
            step = "request"
        rows.append((f"{at:7.3f}", step, kind_of(req), reasons_of(req), configs[0]))
        if is_push:
            rows += [("", "", "", "", c) for c in configs[1:]]
    return table(("at (s)", "step", "push", "reason", "configs updated"), rows)


def pushes_table(pushes: Iterable) -> TextView:
    """One row per debounced push: when, how many requests it merged, how long the first waited."""
    rows = [(f"{p.at:7.3f}", f"{p.debounce_started:7.3f}", p.events, f"{p.waited:.3f}", kind_of(p.request),
             reasons_of(p.request), len(p.request.configs_updated) or "all") for p in pushes]
    return table(("pushed at", "burst began", "requests merged", "waited (s)", "push", "reason",
                  "configs"), rows)


# -- which edits asked for a push --------------------------------------------------------------------
_WATCHED = ("labels", "annotations")


def _visible(obj: dict) -> dict:
    """The parts of an object an edit is about: labels, annotations and the content (``spec``, or an
    EndpointSlice's ``endpoints`` and ``ports``); bookkeeping such as resourceVersion is left out."""
    meta = obj.get("metadata") or {}
    content = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")}
    return {"metadata": {k: meta.get(k) or {} for k in _WATCHED}, **content}


def _summary(obj: dict) -> str:
    if obj.get("kind") == "EndpointSlice":  # the count tells the story; the addresses only widen the table
        return f"{sum(len(e.get('addresses') or []) for e in obj.get('endpoints') or [])} endpoints"
    return describe_object(obj) or "-"


def config_key(obj: dict, domain_suffix: str) -> ConfigKey:
    meta = obj.get("metadata") or {}
    name, ns = meta.get("name", ""), meta.get("namespace", "")
    if obj.get("kind") == "EndpointSlice":  # endpoints are pushed under their Service's host
        name = (meta.get("labels") or {}).get("kubernetes.io/service-name", name)
    if obj.get("kind") in ("Service", "EndpointSlice"):  # a Kubernetes Service is pushed as its ServiceEntry host
        return ConfigKey("ServiceEntry", f"{name}.{ns}.svc.{domain_suffix}", ns)
    return ConfigKey(obj.get("kind", ""), name, ns)


def edits_table(applied: Sequence, requests: Iterable, kinds: Sequence[str] = ("Service",),
                since: float | None = None, domain_suffix: str = "cluster.local", summary: bool = False) -> TextView:
    """Each trace event of ``kinds`` (``ReplayClient.applied``), what it changed compared with the
    object's previous version, and the push requested for that object at that instant (if any).
    ``summary`` adds a column with the object in one line (e.g. a VirtualService's weights)."""
    by_instant: dict[tuple[float, ConfigKey], list[PushRequest]] = {}
    for r in requests:
        for key in r.request.configs_updated:
            by_instant.setdefault((r.at, key), []).append(r.request)
    last: dict[tuple, dict] = {}  # each object's previous version, by kind/namespace/name
    rows = []
    for e in applied:
        kind = e.object.get("kind")
        if kind not in kinds:
            continue
        meta = e.object.get("metadata") or {}
        ident = (kind, meta.get("namespace", ""), meta.get("name", ""))
        before = last.get(ident)
        last[ident] = e.object
        key = config_key(e.object, domain_suffix)  # what a push for this object names
        if since is not None and e.t < since:
            continue
        if e.type == "MODIFIED" and before is not None:
            paths = [path for path, _, _ in dict_diff(_visible(before), _visible(e.object))]
            # status is the controllers' report, not an edit: one word is enough for it
            paths = list(dict.fromkeys("status" if p.startswith("status.") else p for p in paths))
            changed = ", ".join(paths) or "nothing"
        else:
            changed = {"ADDED": "(new)", "DELETED": "(gone)"}.get(e.type, "")
        asked = by_instant.get((e.t, key), [])
        pushed = "; ".join(f"{kind_of(r)}, {reasons_of(r)}" for r in asked) or "no push"
        row = (f"{e.t:7.3f}", e.type, kind, f"{meta.get('namespace', '')}/{meta.get('name', '')}", changed)
        rows.append(row + ((_summary(e.object),) if summary else ()) + (pushed,))
    headers = ("at (s)", "event", "kind", "namespace/name", "changed")
    return table(headers + (("object",) if summary else ()) + ("push requested",), rows)
