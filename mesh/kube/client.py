"""The Kubernetes client: one interface, two implementations.

istiod talks to Kubernetes through ``kube.Client``
(https://github.com/istio/istio/blob/1.19.0/pkg/kube/client.go#L99-L144): a bundle of typed
clients plus shared informer factories. Everything istiod knows about the cluster arrives
through informers, so mesh's client interface is small:

* ``informer(kind)`` — the shared informer (cache + handlers) for one kind;
* ``create`` / ``update`` / ``delete`` — the few writes istiod makes (CA secret, root-cert
  ConfigMaps, webhook caBundle patches, status);
* ``has_synced()`` — every informer has listed once.

``ReplayClient`` (here) feeds informers from a trace on a clock; ``LiveClient``
(``mesh/kube/live.py``) lists and watches a real API server with the official ``kubernetes``
package. The stages above cannot tell them apart — that is the point.
"""

from __future__ import annotations

import collections
import copy
import logging
from collections.abc import Callable

from mesh.clock import Clock, RealClock, VirtualClock
from mesh.kube import kinds
from mesh.kube.informer import Informer
from mesh.kube.kinds import Kind, ObjectKey
from mesh.kube.trace import Trace, TraceEvent

log = logging.getLogger(__name__)

APPLY_CHUNK = 100  # trace events applied per event-loop turn on the real clock (ReplayClient._drain)

# An admission plugin sees (event type, object) before it is stored and returns the object to
# store — how a trace's MutatingWebhookConfiguration gets to inject pods on replay (DESIGN §4).
AdmissionPlugin = Callable[[str, dict], dict]


class NotFoundError(KeyError):
    pass


class AdmissionDenied(Exception):
    """Raised by an admission plugin to refuse an object, as a validating webhook's denial makes
    kube-apiserver refuse a request: the object is not stored and no informer hears of it."""


class ConflictError(ValueError):
    pass


def as_kind(kind: Kind | str) -> Kind:
    if isinstance(kind, Kind):
        return kind
    found = kinds.resolve(kind)
    if found is None:
        raise KeyError(f"unknown kind {kind!r}")
    return found


class KubeClient:
    """What the bootstrap stages need from Kubernetes."""

    domain_suffix: str = "cluster.local"

    def informer(self, kind: Kind | str) -> Informer:
        raise NotImplementedError

    def has_synced(self) -> bool:
        raise NotImplementedError

    def get(self, kind: Kind | str, name: str, namespace: str = "") -> dict | None:
        return self.informer(kind).get(name, namespace)

    def create(self, obj: dict) -> dict:
        raise NotImplementedError

    def update(self, obj: dict) -> dict:
        raise NotImplementedError

    def delete(self, kind: Kind | str, name: str, namespace: str = "") -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Stop watching. Safe to call twice."""


class ReplayClient(KubeClient):
    """A cluster that is a trace: events are applied when the clock reaches their time.

    The cluster state before istiod starts is every event with ``t <= now`` (normally the
    events at t=0), applied at construction. Later events are scheduled on the clock at
    ``t / speed`` (``speed=0`` applies the whole trace at once). An informer created at any
    moment lists the current state and then sees every later event — list + watch.
    """

    def __init__(self, trace: Trace, clock: Clock | None = None, speed: float = 1.0):
        self.trace = trace
        self.clock = clock or VirtualClock()
        self.speed = speed
        self.domain_suffix = trace.domain_suffix
        self.admission: list[AdmissionPlugin] = []
        self.applied: list[TraceEvent] = []  # what happened, in order, with the time it happened
        self.denied: list[tuple[TraceEvent, str]] = []  # events admission refused, with the reason
        self._objects: dict[ObjectKey, dict] = {}
        # The same objects by (group, kind): admission plugins list one kind on every event, and a
        # scan of everything would make N arriving objects cost N².
        self._by_kind: dict[tuple[str, str], dict[ObjectKey, dict]] = {}
        self._informers: dict[tuple[str, str], Informer] = {}
        self._resource_version = 0
        self._timers = []
        self._closed = False
        self._backlog: collections.deque[TraceEvent] = collections.deque()
        self._draining = False
        start = self.clock.now()
        # One timer per distinct time, applying its events in trace order: asyncio does not keep
        # timers due at the same instant in the order they were scheduled, and a pod applied
        # before its namespace would miss the namespace's injection label.
        batches: dict[float, list[TraceEvent]] = {}
        for event in trace.events:
            due = start + (event.t / speed if speed > 0 else 0.0)
            if due <= start:
                self._apply(event)
            else:
                batches.setdefault(due, []).append(event)
        for due, batch in batches.items():
            self._timers.append(self.clock.call_at(due, lambda b=batch: self._apply_batch(b)))

    # -- the interface --------------------------------------------------------------------
    def informer(self, kind: Kind | str) -> Informer:
        kind = as_kind(kind)
        key = (kind.group, kind.kind)
        if key not in self._informers:
            informer = Informer(kind)
            informer.replace(self._by_kind.get(key, {}).values())
            self._informers[key] = informer
        return self._informers[key]

    def has_synced(self) -> bool:
        return all(i.has_synced() for i in self._informers.values())

    def list_objects(self, kind: Kind | str | None = None) -> list[dict]:
        """Every object in the replayed cluster now (of one kind, if given), sorted."""
        k = as_kind(kind) if kind is not None else None
        found = list(self._objects.values() if k is None else self._by_kind.get((k.group, k.kind), {}).values())
        return sorted(found, key=lambda o: (o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]))

    def create(self, obj: dict) -> dict:
        if kinds.object_key(obj) in self._objects:
            raise ConflictError(f"{kinds.object_key(obj)} already exists")
        return self._write("ADDED", obj)

    def update(self, obj: dict) -> dict:
        if kinds.object_key(obj) not in self._objects:
            raise NotFoundError(str(kinds.object_key(obj)))
        return self._write("MODIFIED", obj)

    def delete(self, kind: Kind | str, name: str, namespace: str = "") -> None:
        k = as_kind(kind)
        key = ObjectKey(k.group, k.kind, namespace if k.namespaced else "", name)
        if key not in self._objects:
            raise NotFoundError(str(key))
        self._write("DELETED", self._objects[key])

    def close(self) -> None:
        self._closed = True
        for timer in self._timers:
            timer.cancel()

    # -- internals ------------------------------------------------------------------------
    def _apply_batch(self, events: list[TraceEvent]) -> None:
        """Apply a batch in order. On the real clock, at most ``APPLY_CHUNK`` events at a time,
        then the event loop gets a turn (3000 Services arriving at one instant would otherwise
        keep every other request waiting); later batches queue behind, so order is kept. On the
        virtual clock the whole batch is applied at its instant, as before."""
        self._backlog.extend(events)
        if not self._draining:
            self._drain()

    def _drain(self) -> None:
        self._draining = True
        chunk = APPLY_CHUNK if isinstance(self.clock, RealClock) else len(self._backlog)
        while self._backlog and chunk > 0 and not self._closed:
            self._apply(self._backlog.popleft())
            chunk -= 1
        if self._backlog and not self._closed:
            self.clock.call_later(0, self._drain)
        else:
            self._draining = False

    def _write(self, event_type: str, obj: dict) -> dict:
        event = TraceEvent(t=self.clock.now(), type=event_type, object=copy.deepcopy(obj), line=0)
        return self._apply(event, assign_version=True)

    def _apply(self, event: TraceEvent, assign_version: bool = False) -> dict:
        if self._closed:
            return event.object
        obj = copy.deepcopy(event.object)
        if event.type != "DELETED":
            try:
                for plugin in self.admission:
                    obj = plugin(event.type, obj)
            except AdmissionDenied as denied:
                log.info("admission denied %s %s: %s", event.type, kinds.object_key(obj), denied)
                self.denied.append((TraceEvent(t=self.clock.now(), type=event.type, object=obj, line=event.line),
                                    str(denied)))
                if event.line == 0:  # a write by the server itself: tell the caller, as a 4xx would
                    raise
                return obj
        meta = obj.setdefault("metadata", {})
        recorded = str(meta.get("resourceVersion", ""))
        if recorded.isdigit() and not assign_version:
            self._resource_version = max(self._resource_version, int(recorded))
        else:
            self._resource_version += 1
            meta["resourceVersion"] = str(self._resource_version)
        key = kinds.object_key(obj)
        same_kind = self._by_kind.setdefault((key.group, key.kind), {})
        if event.type == "DELETED":
            self._objects.pop(key, None)
            same_kind.pop(key, None)
        else:
            self._objects[key] = same_kind[key] = obj
        self.applied.append(TraceEvent(t=self.clock.now(), type=event.type, object=obj, line=event.line))
        informer = self._informers.get((key.group, key.kind))
        if informer is not None:
            informer.apply(event.type, obj)
        return obj
