"""Traces: recorded Kubernetes watch events in JSON Lines (DESIGN.md §4), loaded and validated.

A trace stands in for a cluster. istiod learns about a cluster only through list and watch
(https://github.com/istio/istio/blob/1.19.0/pkg/kube/client.go), so a file of watch events,
replayed in order, is all the cluster a control plane needs to see. Format::

    {"trace": "mesh/v1", "name": "bookinfo", "description": "...", "domain_suffix": "cluster.local"}
    {"t": 0.0, "type": "ADDED", "object": {"apiVersion": "v1", "kind": "Namespace", ...}}
    {"t": 5.0, "type": "MODIFIED", "object": {...}}

Loading is all-or-nothing: every line is checked, every problem is reported as
``file:line: field: message``, and a trace with any problem yields no events at all, so a
half-applied trace can never leave a store in a state no cluster was ever in. Reading is
bounded (``mesh/util/safeinput.py``): binary, mis-encoded, oversized and over-deep input is one
problem line too.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from mesh.kube import kinds
from mesh.util import safeinput

TRACE_FORMAT = "mesh/v1"
EVENT_TYPES = ("ADDED", "MODIFIED", "DELETED")
DEFAULT_TRACE = "bookinfo"


@dataclass(frozen=True)
class TraceEvent:
    t: float  # seconds since the start of the trace
    type: str  # ADDED | MODIFIED | DELETED
    object: dict
    line: int = 0  # where it came from, for messages

    @property
    def key(self) -> kinds.ObjectKey:
        return kinds.object_key(self.object)


@dataclass
class Trace:
    header: dict
    events: list[TraceEvent]
    path: str = "<memory>"

    @property
    def name(self) -> str:
        return self.header.get("name", Path(self.path).stem)

    @property
    def domain_suffix(self) -> str:
        return self.header.get("domain_suffix", "cluster.local")

    @property
    def duration(self) -> float:
        return self.events[-1].t if self.events else 0.0


@dataclass(frozen=True)
class TraceProblem:
    path: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.field}: {self.message}"


class TraceError(ValueError):
    """A trace that cannot be replayed. ``problems`` lists every defect found."""

    def __init__(self, problems: list[TraceProblem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


@dataclass
class _Checker:
    path: str
    problems: list[TraceProblem] = field(default_factory=list)

    def fail(self, line: int, field_name: str, message: str) -> None:
        self.problems.append(TraceProblem(self.path, line, field_name, message))


def builtin_traces() -> dict[str, Path]:
    """Traces shipped inside the package (``traces/`` in a checkout), by name."""
    folder = resources.files("mesh") / "traces"
    return {Path(p.name).stem: Path(str(p)) for p in folder.iterdir() if p.name.endswith(".jsonl")}


def resolve_trace_path(name_or_path: str | Path | None) -> Path:
    """A path as given, or the name of a built-in trace (``bookinfo``); None means the default."""
    if name_or_path is None:
        name_or_path = DEFAULT_TRACE
    path = Path(name_or_path)
    if path.exists():
        return path
    builtin = builtin_traces()
    if str(name_or_path) in builtin:
        return builtin[str(name_or_path)]
    raise FileNotFoundError(f"{name_or_path}: no such trace file (built-in traces: {', '.join(sorted(builtin))})")


def load_trace(name_or_path: str | Path | None = None) -> Trace:
    """Read and validate a trace file; raise TraceError naming every bad line."""
    path = resolve_trace_path(name_or_path)
    try:
        text = safeinput.read_text(path)  # bounded; binary and mis-encoded files are refused
    except safeinput.InputError as err:
        raise TraceError([TraceProblem(str(path), err.line or 1, "file", err.message)]) from None
    return parse_trace(text, str(path))


def parse_trace(text: str, path: str = "<memory>") -> Trace:
    check = _Checker(path)
    header: dict | None = None
    events: list[TraceEvent] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            record = safeinput.parse_json(raw, path, number)  # depth-bounded
        except safeinput.InputError as err:
            check.fail(number, "json", err.message)
            continue
        if not isinstance(record, dict):
            check.fail(number, "json", f"expected a JSON object, got {type(record).__name__}")
            continue
        if header is None:
            header = record
            if record.get("trace") != TRACE_FORMAT:
                check.fail(number, "trace", f'the first line must be a header with "trace": "{TRACE_FORMAT}"')
            continue
        event = _parse_event(record, number, check)
        if event is not None:
            events.append(event)
    if header is None:
        check.fail(1, "trace", "empty file: expected a header line")
        header = {}
    _check_order_and_history(events, check)
    if check.problems:
        raise TraceError(check.problems)
    return Trace(header=header, events=events, path=path)


def _parse_event(record: dict, line: int, check: _Checker) -> TraceEvent | None:
    before = len(check.problems)
    t = record.get("t")
    if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t) or t < 0:
        check.fail(line, "t", f"must be a non-negative number of seconds, got {t!r}")
    kind_of_event = record.get("type")
    if kind_of_event not in EVENT_TYPES:
        check.fail(line, "type", f"must be one of {', '.join(EVENT_TYPES)}, got {kind_of_event!r}")
    obj = record.get("object")
    if not isinstance(obj, dict):
        check.fail(line, "object", "missing, or not a JSON object")
    else:
        _check_object(obj, line, check)
    if len(check.problems) > before:
        return None
    return TraceEvent(t=float(t), type=kind_of_event, object=obj, line=line)


def _check_object(obj: dict, line: int, check: _Checker) -> None:
    for name in ("apiVersion", "kind"):
        if not isinstance(obj.get(name), str) or not obj.get(name):
            check.fail(line, f"object.{name}", "missing or empty")
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        check.fail(line, "object.metadata", "missing, or not an object")
        return
    if not isinstance(meta.get("name"), str) or not meta.get("name"):
        check.fail(line, "object.metadata.name", "missing or empty")
    if meta.get("namespace") is not None and not isinstance(meta["namespace"], str):
        check.fail(line, "object.metadata.namespace", f"must be a string, got {type(meta['namespace']).__name__}")
        return
    for name in ("labels", "annotations"):
        value = meta.get(name)
        if value is not None and (not isinstance(value, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in value.items())):
            check.fail(line, f"object.metadata.{name}", "must be a map of strings to strings")
    if not isinstance(obj.get("apiVersion"), str) or not isinstance(obj.get("kind"), str):
        return
    kind = kinds.for_object(obj)
    if kind is not None and kind.namespaced and not meta.get("namespace"):
        check.fail(line, "object.metadata.namespace", f"{kind.kind} is namespaced; namespace is missing")
    if kind is not None and not kind.namespaced and meta.get("namespace"):
        check.fail(line, "object.metadata.namespace", f"{kind.kind} is cluster-scoped; remove the namespace")


def _check_order_and_history(events: list[TraceEvent], check: _Checker) -> None:
    """Time never goes backwards, and objects are added before they change or go."""
    last_t = 0.0
    alive: set[kinds.ObjectKey] = set()
    for event in events:
        if event.t < last_t:
            check.fail(event.line, "t", f"time goes backwards ({event.t} after {last_t})")
        last_t = max(last_t, event.t)
        key = event.key
        if event.type == "ADDED":
            if key in alive:
                check.fail(event.line, "type", f"ADDED {key}, which already exists (use MODIFIED)")
            alive.add(key)
        elif key not in alive:
            check.fail(event.line, "type", f"{event.type} {key}, which was never ADDED (or already DELETED)")
        elif event.type == "DELETED":
            alive.discard(key)


def dump_event(event: TraceEvent) -> str:
    """One JSON line, keys in a stable order, the way traces are written."""
    return json.dumps({"t": event.t, "type": event.type, "object": event.object}, sort_keys=False,
                      separators=(",", ":"))
