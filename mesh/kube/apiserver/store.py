"""The replay API server's storage: objects, one global resourceVersion, a window of history.

kube-apiserver keeps objects in etcd, where every write gets the next revision of one global
counter; that revision is the ``resourceVersion`` clients list and watch from, and etcd
compacts old revisions away (a watch from before the compaction gets ``410 Expired``). Its
watch cache serves watchers from a bounded ring of recent events. This module is the same
idea in a few dicts: ``objects`` is etcd's current state, ``history`` the watch cache's ring,
``compacted`` the oldest version a watch can still start from.

istiod only ever sees this through informers, each built on a list function and a watch
function (https://github.com/istio/istio/blob/1.19.0/pkg/config/schema/kubeclient/common.go#L78-L103):
they list once and then watch from the list's resourceVersion — exactly what the history
window serves.

Everything here runs on the server's event loop thread; nothing locks.
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from mesh.kube import kinds
from mesh.kube.apiserver import errors
from mesh.kube.kinds import Kind, ObjectKey
from mesh.kube.selectors import matches_labels

# Matches an object against a watch's selectors.
Predicate = Callable[[dict], bool]


@dataclass(frozen=True)
class Change:
    """One committed write, as a watch event: ``rv`` is the version it created."""

    rv: int
    type: str  # ADDED | MODIFIED | DELETED
    object: dict
    old: dict | None = None  # the object before the write (None for ADDED)


@dataclass(eq=False)
class Watcher:
    """A watch connection's subscription: changes of one kind that pass ``predicate``."""

    kind: Kind
    predicate: Predicate
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)

    def offer(self, change: Change) -> None:
        """Translate a change into what this watcher sees: an object leaving the selection
        is a DELETED for it, one entering is an ADDED (as kube-apiserver's watch cache does)."""
        now = self.predicate(change.object)
        before = change.old is not None and self.predicate(change.old)
        if change.type == "MODIFIED":
            if now and before:
                self.queue.put_nowait(("MODIFIED", change.object))
            elif now:
                self.queue.put_nowait(("ADDED", change.object))
            elif before:
                self.queue.put_nowait(("DELETED", change.object))
        elif now:
            self.queue.put_nowait((change.type, change.object))

    def close(self) -> None:
        self.queue.put_nowait(None)


def field_value(obj: dict, path: str) -> str:
    """The string value of a dotted field path (``spec.nodeName``); "" when absent."""
    value: object = obj
    for part in path.split("."):
        if not isinstance(value, dict):
            return ""
        value = value.get(part)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parse_field_selector(text: str) -> list[tuple[str, str, str]]:
    """``"metadata.name=a,spec.nodeName!=b"`` → ``[(path, op, value), ...]``, op "=" or "!="."""
    terms = []
    for term in filter(None, (t.strip() for t in text.split(","))):
        if "!=" in term:
            path, value = term.split("!=", 1)
            terms.append((path.strip(), "!=", value.strip()))
        elif "=" in term:
            path, value = term.split("==", 1) if "==" in term else term.split("=", 1)
            terms.append((path.strip(), "=", value.strip()))
        else:
            raise errors.bad_request(f'invalid field selector: "{term}": expected field=value or field!=value')
    return terms


def make_predicate(namespace: str | None, label_selector: str | None, field_selector: str | None) -> Predicate:
    """One test for list and watch filtering; a malformed selector is a 400 now, not later."""
    try:
        if label_selector:
            matches_labels(label_selector, {})
    except ValueError as err:
        raise errors.bad_request(f"unable to parse requirement: {err}") from err
    fields = parse_field_selector(field_selector or "")

    def predicate(obj: dict) -> bool:
        meta = obj.get("metadata") or {}
        if namespace and meta.get("namespace", "") != namespace:
            return False
        if label_selector and not matches_labels(label_selector, meta.get("labels") or {}):
            return False
        for path, op, value in fields:
            if (field_value(obj, path) == value) != (op == "="):
                return False
        return True

    return predicate


def _now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Store:
    """Objects by key, a global resourceVersion, and the last ``history`` changes."""

    def __init__(self, history: int = 10_000):
        self.objects: dict[ObjectKey, dict] = {}
        self.rv = 0
        self.history: deque[Change] = deque()
        self.history_limit = history
        self.compacted = 0  # a watch may start from any version >= this
        self.watchers: set[Watcher] = set()

    # -- reads ----------------------------------------------------------------------------
    def get(self, kind: Kind, namespace: str, name: str) -> dict:
        found = self.objects.get(self.key(kind, namespace, name))
        if found is None:
            raise errors.not_found(kind, name)
        return found

    def find(self, kind: Kind, namespace: str, name: str) -> dict | None:
        return self.objects.get(self.key(kind, namespace, name))

    def list(self, kind: Kind, predicate: Predicate | None = None) -> list[dict]:
        """Objects of one kind passing ``predicate``, sorted by namespace then name (etcd key order)."""
        found = [o for k, o in self.objects.items()
                 if (k.group, k.kind) == (kind.group, kind.kind) and (predicate is None or predicate(o))]
        return sorted(found, key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))

    def changes_since(self, rv: int, kind: Kind) -> list[Change]:
        """The changes of ``kind`` after version ``rv``; 410 Expired when the window lost some."""
        if rv < self.compacted:
            raise errors.expired(f"too old resource version: {rv} ({self.compacted})")
        return [c for c in self.history if c.rv > rv and self._same_kind(c.object, kind)]

    @staticmethod
    def key(kind: Kind, namespace: str, name: str) -> ObjectKey:
        return ObjectKey(kind.group, kind.kind, namespace if kind.namespaced else "", name)

    @staticmethod
    def _same_kind(obj: dict, kind: Kind) -> bool:
        group, _ = kinds.split_api_version(obj.get("apiVersion", ""))
        return (group, obj.get("kind")) == (kind.group, kind.kind)

    # -- writes ---------------------------------------------------------------------------
    def commit(self, event_type: str, obj: dict, keep_version: bool = False) -> dict:
        """Store one change and tell the watchers. Returns the stored object.

        The change gets the next resourceVersion, unless ``keep_version`` and the object
        carries a numeric version newer than every version so far (a recorded trace replayed:
        its versions are kept, so a recording replays to the very same store).
        """
        key = kinds.object_key(obj)
        old = self.objects.get(key)
        if event_type == "DELETED" and old is not None and set(obj) <= {"apiVersion", "kind", "metadata"}:
            obj = old  # a hand-written DELETED names the object; watchers get its last state, as from etcd
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        recorded = str(meta.get("resourceVersion", ""))
        if keep_version and recorded.isdigit() and int(recorded) > self.rv:
            self.rv = int(recorded)
        else:
            self.rv += 1
        meta["resourceVersion"] = str(self.rv)
        if event_type == "DELETED":
            self.objects.pop(key, None)
        else:
            # Fields the server owns: kept from the stored object when a write leaves them out.
            old_meta = (old or {}).get("metadata") or {}
            meta.setdefault("uid", old_meta.get("uid") or str(uuid.uuid5(uuid.NAMESPACE_URL, f"mesh:{key}:{self.rv}")))
            meta.setdefault("creationTimestamp", old_meta.get("creationTimestamp") or _now_rfc3339())
            meta.setdefault("generation", old_meta.get("generation", 1))
            self.objects[key] = obj
        change = Change(self.rv, event_type, obj, old)
        self.history.append(change)
        while len(self.history) > self.history_limit:
            self.compacted = self.history.popleft().rv
        for watcher in list(self.watchers):
            if self._same_kind(obj, watcher.kind):
                watcher.offer(change)
        return obj

    def compact(self) -> None:
        """Forget all history, as an etcd compaction does: older watches now get 410."""
        self.history.clear()
        self.compacted = self.rv

    # -- watchers -------------------------------------------------------------------------
    def subscribe(self, watcher: Watcher) -> None:
        self.watchers.add(watcher)

    def unsubscribe(self, watcher: Watcher) -> None:
        self.watchers.discard(watcher)

    def close_watchers(self) -> None:
        for watcher in list(self.watchers):
            watcher.close()
        self.watchers.clear()
