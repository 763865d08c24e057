"""Plain-text views for the notebooks: stage tables, event timelines, mesh config diffs, push requests.

Nothing here is part of the mini-istiod. Each function takes objects that ``mesh`` built and
returns a ``TextView``: fixed-width text that Jupyter prints as it is (no HTML, no colour), so a
notebook's committed output is exactly what ``pytest --nbval`` compares on the next run. Every
view lists things in a fixed order (sorted, or in the order they happened on the virtual clock) and
prints no wall-clock time, port, path or memory address.

Go counterparts, for orientation: these tables show what istiod exposes as JSON on its debug mux,
e.g. ``/debug/push_status``, ``/debug/mesh`` and ``/debug/networkz``
(https://github.com/istio/istio/blob/1.19.0/pilot/pkg/xds/debug.go#L200-L207).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

import yaml

from mesh.bootstrap.stages import STAGES
from mesh.tools.textview import TextView, as_yaml, table  # noqa: F401 -- as_yaml: re-exported for the notebooks


# -- the bootstrap stages -----------------------------------------------------------------------
def _stage_state(name: str, server, implemented: set[str]) -> str:
    if server is not None:
        return "done" if name in server.completed else "pending"
    return "implemented" if name in implemented else "planned"


def stage_table(server=None) -> TextView:
    """NewServer's 16 stages from ``mesh.bootstrap.stages.STAGES``.

    Without a server the state column says whether mesh implements the stage; with one, whether
    that server has run it. The Markdown rendering links each Go function at 1.19.0.
    """
    from mesh.tools.diagrams import implemented_stages

    implemented = implemented_stages()
    headers = ("#", "Go (NewServer calls)", "mesh.bootstrap.Server", "state", "issue", "notebook")
    rows = [(s.number, s.go_name, f"{s.name}()", _stage_state(s.name, server, implemented),
             f"#{s.issue}", s.notebook) for s in STAGES]
    text = table(headers, rows)
    md = ["| # | Go (NewServer calls) | mesh.bootstrap.Server | state | notebook |",
          "|---|---|---|---|---|"]
    for s in STAGES:
        md.append(f"| {s.number} | [`{s.go_name}`]({s.go_url}) | `{s.name}()` | "
                  f"{_stage_state(s.name, server, implemented)} | `{s.notebook}` |")
    return TextView(text.text, "\n".join(md))


def stage_summaries() -> TextView:
    """One line per stage, in our words: what it is for."""
    return table(("#", "stage", "what it does"), [(s.number, s.name, s.summary) for s in STAGES])


def package_map_table() -> TextView:
    """istio/istio Go package → mesh module, from ``mesh.tools.packagemap.PACKAGE_MAP``."""
    from mesh.tools.packagemap import PACKAGE_MAP, module_exists

    rows = [(go, py, what, "here" if module_exists(py) else "planned") for go, py, what in PACKAGE_MAP]
    return table(("istio/istio (Go)", "mesh (Python)", "what", "in this checkout"), rows)


# -- Kubernetes objects and trace events --------------------------------------------------------
def object_name(obj: dict) -> str:
    meta = obj.get("metadata", {})
    ns = meta.get("namespace")
    return f"{ns}/{meta.get('name')}" if ns else str(meta.get("name"))


def objects_table(objects: Iterable[dict]) -> TextView:
    """Kind, namespace/name and resourceVersion of each object (sorted by kind, then name)."""
    rows = sorted((o["kind"], object_name(o), o["metadata"].get("resourceVersion", "")) for o in objects)
    return table(("kind", "namespace/name", "resourceVersion"), rows)


def kind_counts(objects: Iterable[dict]) -> TextView:
    """How many objects of each kind."""
    counts: dict[str, int] = {}
    for o in objects:
        kind = f"{o['kind']} ({o['apiVersion']})"
        counts[kind] = counts.get(kind, 0) + 1
    return table(("kind (apiVersion)", "objects"), sorted(counts.items()))


def events_table(events: Iterable, since: float | None = None, until: float | None = None,
                 kinds: Sequence[str] | None = None) -> TextView:
    """Trace events (``TraceEvent``: from a trace or ``ReplayClient.applied``) as a timeline."""
    rows = []
    for e in events:
        if since is not None and e.t < since or until is not None and e.t > until:
            continue
        if kinds is not None and e.object.get("kind") not in kinds:
            continue
        rows.append((f"{e.t:7.3f}", e.type, e.object.get("kind"), object_name(e.object),
                     e.object.get("metadata", {}).get("resourceVersion", "")))
    return table(("t (s)", "event", "kind", "namespace/name", "resourceVersion"), rows)


def informers_table(client) -> TextView:
    """The informers a client has started: kind, cached objects, synced."""
    informers = getattr(client, "_informers", {}).values()  # both clients keep them by kind
    rows = sorted((str(inf.kind), len(inf), inf.has_synced()) for inf in informers)
    return table(("informer (kind.group)", "objects cached", "synced"), rows)


# -- mesh config --------------------------------------------------------------------------------
def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts → ``{"a.b.c": leaf}``; lists stay whole (they are replaced as a unit)."""
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: value}


def short(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()


def mesh_diff(before: dict, after: dict) -> TextView:
    """Field-by-field difference of two MeshConfigs (dotted paths, sorted)."""
    a, b = flatten(before), flatten(after)

    def grew(path: str, side: dict, other: dict) -> bool:
        # {} on one side, nested fields under the same path on the other: the fields tell it all
        return side.get(path) == {} and any(k.startswith(path + ".") for k in other)

    rows = []
    for path in sorted(set(a) | set(b)):
        if grew(path, a, b) or grew(path, b, a):
            continue
        if path not in b:
            rows.append((path, short(a[path]), "(unset)"))
        elif path not in a:
            rows.append((path, "(unset)", short(b[path])))
        elif a[path] != b[path]:
            rows.append((path, short(a[path]), short(b[path])))
    return table(("field", "before", "after"), rows)


def mesh_fields(mesh: dict, fields: Sequence[str]) -> TextView:
    """Selected MeshConfig fields by dotted path, e.g. ``defaultConfig.discoveryAddress``."""
    flat = flatten(mesh)
    rows = []
    for path in fields:
        if path in flat:
            rows.append((path, short(flat[path])))
        else:
            sub = {k: v for k, v in flat.items() if k.startswith(path + ".")}
            rows.append((path, short(mesh.get(path)) if path in mesh else
                         ("(unset)" if not sub else f"{len(sub)} nested fields")))
    return table(("field", "value"), rows)


# -- mesh networks ------------------------------------------------------------------------------
def networks_table(networks: dict) -> TextView:
    """MeshNetworks: one row per network with its endpoint sources and gateways."""
    rows = []
    for name, net in sorted((networks.get("networks") or {}).items()):
        endpoints = ", ".join(
            f"cidr {ep['fromCidr']}" if "fromCidr" in ep else f"registry {ep.get('fromRegistry')}"
            for ep in net.get("endpoints") or []) or "-"
        gateways = ", ".join(
            f"{gw.get('address') or gw.get('registryServiceName')}:{gw.get('port')}"
            for gw in net.get("gateways") or []) or "-"
        rows.append((name, endpoints, gateways))
    return table(("network", "endpoints from", "gateways"), rows)


def gateways_table(gateways: Iterable) -> TextView:
    """``NetworkGateway`` tuples: network, cluster, address, port."""
    rows = sorted((g.network, g.cluster or "-", g.address, g.port) for g in gateways)
    return table(("network", "cluster", "address", "port"), rows)


# -- push requests -------------------------------------------------------------------------------
def push_requests_table(requests: Iterable, since: float | None = None) -> TextView:
    """``DiscoveryServer.requests``: when a push was asked for, how big, and why."""
    rows = []
    for r in requests:
        if since is not None and r.at < since:
            continue
        req = r.request
        reasons = ", ".join(f"{k}×{n}" if n > 1 else k for k, n in sorted(req.reason.items())) or "-"
        configs = ", ".join(sorted(str(c) for c in req.configs_updated)) or "(all)"
        rows.append((f"{r.at:7.3f}", "full" if req.full else "incremental", reasons, configs))
    return table(("at (s)", "push", "reason", "configs updated"), rows)


# -- logs ----------------------------------------------------------------------------------------
class LogBook(logging.Handler):
    """Collects ``mesh`` log records in memory so a notebook shows them when it chooses,
    as ``LEVEL logger: message`` lines (no timestamps, so output reproduces)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []
        self._shown = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname:<7} {record.name}: {record.getMessage()}")

    def new(self) -> TextView:
        """Lines logged since the last call (or since capture began)."""
        fresh, self._shown = self.lines[self._shown:], len(self.lines)
        return TextView("\n".join(fresh) or "(no new log lines)")

    def clear(self) -> None:
        self.lines.clear()
        self._shown = 0


def capture_logs(logger: str = "mesh", level: int = logging.INFO) -> LogBook:
    """Route ``mesh`` logging into a fresh ``LogBook`` instead of stderr. Safe to call again:
    an earlier book on the same logger is replaced, never doubled."""
    log = logging.getLogger(logger)
    for handler in list(log.handlers):
        if isinstance(handler, LogBook):
            log.removeHandler(handler)
    book = LogBook()
    book.setLevel(level)
    log.addHandler(book)
    log.setLevel(level)
    log.propagate = False
    return book


# -- small traces written in a notebook -----------------------------------------------------------
_SCRATCH: Any = None  # a TemporaryDirectory, removed when the kernel exits


def inline_trace(records: Sequence[dict], name: str = "inline.jsonl") -> str:
    """Validate a trace given as Python dicts (header first) and write it to a scratch file.

    Returns the file's path, for ``ServerArgs(trace=...)``. The trace is checked with
    ``mesh.kube.trace.parse_trace`` first, so a defect is reported as ``name:line: field: ...``
    (never the scratch path), and the path itself is not meant to be printed.
    """
    import json
    import tempfile
    from pathlib import Path

    from mesh.kube.trace import parse_trace

    global _SCRATCH
    text = "\n".join(json.dumps(r) for r in records) + "\n"
    parse_trace(text, name)  # raises TraceError naming name:line
    if _SCRATCH is None:
        _SCRATCH = tempfile.TemporaryDirectory(prefix="mesh-notebook-")
    path = Path(_SCRATCH.name) / Path(name).name
    path.write_text(text, encoding="utf-8")
    return str(path)
