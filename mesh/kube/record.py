"""The recorder: list and watch a cluster, write what happened as a mesh/v1 trace.

A trace is what an informer sees (DESIGN.md §4): the objects a first list returns, then the
watch events. Recording is therefore an informer that writes instead of caching — per kind,
list (every object becomes an ADDED at t=0), then watch from the list's resourceVersion, and
on ``410 Gone`` list again and write the differences (DELETED for what vanished, ADDED or
MODIFIED for what appeared or changed), as client-go's reflector does for istiod's informers
(the ``ListFunc``/``WatchFunc`` pair of
https://github.com/istio/istio/blob/1.19.0/pkg/config/schema/kubeclient/common.go#L78-L103).

Choices, named:

* objects are the API's raw JSON, minus ``metadata.managedFields`` (server bookkeeping that
  no control plane reads and that dwarfs the rest);
* events are written in resourceVersion order — the order the API server committed them, the
  one true order across kinds, even though each kind is watched on its own connection (a
  deletion noticed by a re-list is placed at the re-list's version);
  times are seconds since the start (rounded to the millisecond), made non-decreasing;
* Secrets are recorded only when asked for by ``kinds`` — a trace is meant to be shared.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from mesh.kube import kinds
from mesh.kube.kinds import Kind, ObjectKey
from mesh.kube.live import ApiError, Gone, RawApi, shutdown_response
from mesh.kube.trace import TRACE_FORMAT, Trace, TraceEvent, dump_event, parse_trace

log = logging.getLogger(__name__)

DEFAULT_EXCLUDED = ("Secret",)


def default_kinds() -> list[Kind]:
    return [k for k in kinds.KINDS if k.kind not in DEFAULT_EXCLUDED]


def resolve_kinds(names: list[str]) -> list[Kind]:
    """``["pods,services", "vs"]`` → Kinds; ValueError naming an unknown one."""
    found = []
    for name in (n.strip() for group in names for n in group.split(",")):
        if not name:
            continue
        kind = kinds.resolve(name)
        if kind is None:
            raise ValueError(f"unknown kind {name!r} (try a plural, short name or Kind, e.g. pods, vs)")
        if kind not in found:
            found.append(kind)
    return found


def _clean(obj: dict) -> dict:
    meta = dict(obj.get("metadata") or {})
    meta.pop("managedFields", None)
    return {**obj, "metadata": meta}


def _rv(obj: dict) -> int | None:
    value = str((obj.get("metadata") or {}).get("resourceVersion", ""))
    return int(value) if value.isdigit() else None


@dataclass
class _Recorded:
    t: float
    type: str
    object: dict
    order: int | None  # the resourceVersion this event is sorted by


class Recorder:
    """Records ``kinds`` from the cluster of ``kubeconfig`` between ``start()`` and ``stop()``."""

    def __init__(self, kubeconfig: str, kinds_to_record: list[Kind] | None = None, context: str | None = None):
        self.api = RawApi(kubeconfig, context)
        self.kinds = kinds_to_record or default_kinds()
        self.skipped: list[tuple[Kind, str]] = []  # kinds the server does not serve, and why
        self._events: list[_Recorded] = []
        self._state: dict[ObjectKey, dict] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._responses: set = set()
        self._start = 0.0

    def _now(self) -> float:
        return round(time.monotonic() - self._start, 3)

    def _record(self, event_type: str, obj: dict, t: float | None = None, order: int | None = None) -> None:
        obj = _clean(obj)
        with self._lock:
            key = kinds.object_key(obj)
            if event_type == "DELETED":
                if self._state.pop(key, None) is None:
                    return
            else:
                if event_type == "ADDED" and key in self._state:
                    event_type = "MODIFIED"
                elif event_type == "MODIFIED" and key not in self._state:
                    event_type = "ADDED"
                self._state[key] = obj
            self._events.append(_Recorded(self._now() if t is None else t, event_type, obj,
                                          order if order is not None else _rv(obj)))

    def start(self) -> None:
        """List every kind (its objects are the trace's t=0), then watch each in a thread."""
        self._start = time.monotonic()
        listed = []
        for kind in self.kinds:
            try:
                items, rv = self.api.list(kind)
            except ApiError as err:
                if err.status in (403, 404):
                    self.skipped.append((kind, f"HTTP {err.status}"))
                    log.warning("not recording %s: HTTP %s", kind, err.status)
                    continue
                raise
            listed.extend(items)
            thread = threading.Thread(target=self._watch, args=(kind, rv), daemon=True,
                                      name=f"mesh-record-{kind.plural}")
            self._threads.append(thread)
        for obj in sorted(listed, key=lambda o: _rv(o) or 0):
            self._record("ADDED", obj, t=0.0)
        for thread in self._threads:
            thread.start()

    def _watch(self, kind: Kind, rv: str) -> None:
        while not self._stop.is_set():
            try:
                for event_type, obj in self.api.watch(kind, rv, self._track):
                    rv = str((obj.get("metadata") or {}).get("resourceVersion") or rv)
                    if event_type in ("ADDED", "MODIFIED", "DELETED"):
                        self._record(event_type, obj)
            except Gone:
                if self._stop.is_set():
                    return
                rv = self._relist(kind)
            except Exception as err:  # a dropped connection: watch again from where we were
                if self._stop.is_set():
                    return
                log.debug("watch %s ended (%s); retrying", kind, err)
                self._stop.wait(0.2)

    def _relist(self, kind: Kind) -> str:
        """After 410: list again and record the differences from what was recorded."""
        items, rv = self.api.list(kind)
        fresh = {kinds.object_key(o): _clean(o) for o in items}
        with self._lock:
            known = {k: o for k, o in self._state.items() if (k.group, k.kind) == (kind.group, kind.kind)}
        # A deletion seen only through a re-list happened at some version up to the list's:
        # it is sorted there (its object keeps the last version it was seen with).
        list_rv = int(rv) if rv.isdigit() else None
        for key, obj in known.items():
            if key not in fresh:
                self._record("DELETED", obj, order=list_rv)
        for key, obj in fresh.items():
            if key not in known:
                self._record("ADDED", obj)
            elif _rv(known[key]) != _rv(obj):
                self._record("MODIFIED", obj)
        return rv

    def _track(self, resp) -> None:
        with self._lock:
            self._responses.add(resp)
        if self._stop.is_set():
            shutdown_response(resp)

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            responses = list(self._responses)
        for resp in responses:
            shutdown_response(resp)
        for thread in self._threads:
            thread.join(5)
        self.api.close()

    def events(self) -> list[TraceEvent]:
        """What was recorded, in resourceVersion order, times non-decreasing."""
        with self._lock:
            recorded = list(self._events)
        if all(e.order is not None for e in recorded):
            recorded.sort(key=lambda e: e.order)  # stable: events of one version keep their arrival order
        events, last_t = [], 0.0
        for e in recorded:
            last_t = max(last_t, e.t)
            events.append(TraceEvent(t=last_t, type=e.type, object=e.object))
        return events

    def trace(self, name: str = "recording", description: str = "") -> Trace:
        header = {"trace": TRACE_FORMAT, "name": name,
                  "description": description or "recorded with python -m mesh record",
                  "domain_suffix": "cluster.local",
                  "recorded_kinds": [str(k) for k in self.kinds if k not in {s for s, _ in self.skipped}]}
        return Trace(header=header, events=self.events())

    def write(self, path: str | Path, name: str | None = None) -> Trace:
        """Write the trace to ``path`` (validated by reading it back first, so a bad recording
        never lands on disk)."""
        import json

        path = Path(path)
        trace = self.trace(name or path.stem)
        text = json.dumps(trace.header) + "\n" + "".join(dump_event(e) + "\n" for e in trace.events)
        parse_trace(text, str(path))  # raises TraceError if the recording is not a valid trace
        path.write_text(text, encoding="utf-8")
        return trace
