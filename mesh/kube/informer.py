"""Informers and listers: a local cache of one kind, kept current by list + watch, with handlers.

istiod never reads the API server on a hot path: each controller registers handlers on a shared
informer and reads from its lister (client-go's ``SharedIndexInformer``, wrapped by Istio in
https://github.com/istio/istio/blob/1.19.0/pkg/kube/kclient/client.go). mesh keeps the same
shape, minus the goroutines: a client (replay or live) feeds events with ``apply``; the
informer updates its cache, then calls handlers in registration order.

Simplifications, named: one index (namespace/name) instead of client-go's indexers; handlers
run synchronously on the thread that delivers the event (the event loop for live clients);
a handler added late receives an ADD for every cached object, as client-go does.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from mesh.kube.kinds import Kind, ObjectKey, object_key
from mesh.kube.selectors import matches_labels

log = logging.getLogger(__name__)

AddFn = Callable[[dict], object]
UpdateFn = Callable[[dict, dict], object]
DeleteFn = Callable[[dict], object]


@dataclass
class EventHandler:
    on_add: AddFn | None = None
    on_update: UpdateFn | None = None
    on_delete: DeleteFn | None = None


class Informer:
    """The cache of one kind. ``list``/``get`` are the lister; handlers get changes."""

    def __init__(self, kind: Kind):
        self.kind = kind
        self._items: dict[ObjectKey, dict] = {}
        self._handlers: list[EventHandler] = []
        self._synced = False

    # -- lister -------------------------------------------------------------------------
    def get(self, name: str, namespace: str = "") -> dict | None:
        ns = namespace if self.kind.namespaced else ""
        return self._items.get(ObjectKey(self.kind.group, self.kind.kind, ns, name))

    def list(self, namespace: str | None = None, selector: dict[str, str] | str | None = None) -> list[dict]:
        """Objects sorted by namespace/name; ``selector`` is a label map or a selector string."""
        found = [
            obj for key, obj in self._items.items()
            if (namespace is None or key.namespace == namespace)
            and (selector is None or matches_labels(selector, obj.get("metadata", {}).get("labels") or {}))
        ]
        return sorted(found, key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))

    def __len__(self) -> int:
        return len(self._items)

    def has_synced(self) -> bool:
        return self._synced

    # -- handlers -----------------------------------------------------------------------
    def add_event_handler(self, on_add: AddFn | None = None, on_update: UpdateFn | None = None,
                          on_delete: DeleteFn | None = None) -> EventHandler:
        handler = EventHandler(on_add, on_update, on_delete)
        self._handlers.append(handler)
        if on_add is not None:
            for obj in self.list():
                on_add(obj)
        return handler

    # -- fed by the client ----------------------------------------------------------------
    def replace(self, objects: Iterable[dict]) -> None:
        """A (re-)list: make the cache equal to ``objects`` and tell handlers the difference,
        as a reflector does after a list or a 410 Gone re-list."""
        fresh = {object_key(o): o for o in objects}
        for key in [k for k in self._items if k not in fresh]:
            self.apply("DELETED", self._items[key])
        for obj in fresh.values():
            key = object_key(obj)
            if key not in self._items:
                self.apply("ADDED", obj)
            elif self._items[key].get("metadata", {}).get("resourceVersion") != obj["metadata"].get("resourceVersion"):
                self.apply("MODIFIED", obj)
        self._synced = True

    def mark_synced(self) -> None:
        self._synced = True

    def apply(self, event_type: str, obj: dict) -> None:
        key = object_key(obj)
        old = self._items.get(key)
        if event_type == "DELETED":
            if old is None:
                return
            del self._items[key]
            self._dispatch(lambda h: h.on_delete and h.on_delete(old))
            return
        obj = copy.deepcopy(obj)  # the cache owns its copy; handlers must not mutate it
        self._items[key] = obj
        if old is None:
            self._dispatch(lambda h: h.on_add and h.on_add(obj))
        else:
            self._dispatch(lambda h: h.on_update and h.on_update(old, obj))

    def _dispatch(self, call: Callable[[EventHandler], object]) -> None:
        for handler in list(self._handlers):
            try:
                call(handler)
            except Exception:  # a broken handler must not stop the others, as in client-go
                log.exception("%s handler failed", self.kind.kind)
