"""Views of the push recorder (``mesh.xds.push_recorder``): the push timeline of
``python -m mesh replay TRACE --show pushes`` and notebook 16 — events, debounce windows and each
push with what every modelled proxy was sent, in ``resources / bytes`` per type — and which proxies
``ProxyNeedsPush`` skipped, why, and the bytes per type each skip saved. A Delta sidecar's cells
read ``+added -removed / bytes`` and its rows are marked ``(delta)``.
"""

from __future__ import annotations

from collections.abc import Iterable

from mesh.model.push_request import PushRequest
from mesh.tools.push_view import config_key, kind_of, reasons_of
from mesh.tools.textview import TextView, table
from mesh.xds.push_recorder import TYPES, ProxyDelivery, PushRecorder, Sent


# -- views ------------------------------------------------------------------------------------------
def _cell(sent: Sent | None) -> str:
    if sent is None:
        return "-"
    if sent.delta:
        return f"+{sent.count} -{len(sent.removed)} / {sent.bytes} B"
    return f"{sent.count} / {sent.bytes} B"


def _totals(deliveries: Iterable[ProxyDelivery]) -> dict[str, tuple[int, int]]:
    out: dict[str, tuple[int, int]] = {}
    for d in deliveries:
        for s in d.sent:
            n, b = out.get(s.type, (0, 0))
            out[s.type] = (n + s.count, b + s.bytes)
    return out


# Which watch events stand behind a request: the registry turns a Service into a ``service`` request
# and an EndpointSlice into an ``endpoint`` one, both named by the service's host.
_KINDS_OF_REASON = {"service": ("Service",), "endpoint": ("EndpointSlice", "Endpoints")}


def _causes(applied, at: float, request: PushRequest, domain: str) -> list[str]:
    """The watch events at this instant that a request names."""
    registry_kinds = {k for reason in request.reason for k in _KINDS_OF_REASON.get(reason, ())}
    out = []
    for e in applied:
        kind = e.object.get("kind")
        if e.t != at or config_key(e.object, domain) not in request.configs_updated:
            continue
        if kind in ("Service", "EndpointSlice", "Endpoints") and kind not in registry_kinds:
            continue
        meta = e.object.get("metadata") or {}
        out.append(f"{e.type} {kind} {meta.get('namespace', '')}/{meta.get('name', '')}")
    return out


def short_configs(request: PushRequest) -> str:
    """ConfigsUpdated in a few words, grouped by kind: ``ServiceEntry details.default, reviews.default``."""
    if not request.configs_updated:
        return "(all)"
    by_kind: dict[str, list[str]] = {}
    for key in sorted(request.configs_updated):
        if key.kind == "ServiceEntry" and ".svc." in key.name:  # a Kubernetes service's host
            name = key.name.split(".svc.", 1)[0]
        else:
            name = f"{key.namespace}/{key.name}" if key.namespace else key.name
        by_kind.setdefault(key.kind, []).append(name)
    return "; ".join(f"{kind} {', '.join(names)}" for kind, names in by_kind.items())


def timeline(server, recorder: PushRecorder, since: float | None = None, until: float | None = None,
             per_proxy: bool = True) -> TextView:
    """Events (the push requests, with the watch events behind them), each debounce window, and each
    push with what every proxy was sent, on one virtual-clock timeline. Type columns read
    ``resources / bytes``."""
    xds = server.xds
    after, longest = xds.debouncer.debounce_after, xds.debouncer.debounce_max
    domain = getattr(server.kube_client, "domain_suffix", "cluster.local")
    applied = server.kube_client.applied if server.kube_client is not None else []
    entries: list[tuple[float, int, int, tuple]] = []
    for i, r in enumerate(xds.requests):
        cause = ", ".join(_causes(applied, r.at, r.request, domain)) or (
            "mesh config changed" if "global" in r.request.reason else "-")
        entries.append((r.at, 0, i, (f"{r.at:7.3f}", "event", f"{kind_of(r.request)} {reasons_of(r.request)}",
                                     cause, "", "", "", "")))
    for rec in recorder.records:
        p = rec.push
        if rec.proxy_update:  # ProxyUpdate: one proxy, at once
            what, configs = f"{kind_of(p.request)} {reasons_of(p.request)}; not debounced", f"pod IP {rec.proxy_update}"
        else:
            window = (f"{p.debounce_started:7.3f}", "debounce",
                      f"window opens: quiet {after * 1000:g} ms, at most {longest:g} s", "", "", "", "", "")
            entries.append((p.debounce_started, 1, rec.number, window))
            closed = "max wait reached" if p.at >= p.debounce_started + longest else f"quiet for {after * 1000:g} ms"
            what = f"{kind_of(p.request)} {reasons_of(p.request)}; {p.events} merged, {closed}"
            configs = short_configs(p.request)
        rows = [(f"{p.at:7.3f}", f"push #{rec.number}", what, configs,
                 *_type_cells(_totals(d for d in rec.deliveries if d.step == "push")))]
        if per_proxy:
            for d in rec.deliveries:
                sent = d.by_type()
                step = f"  {d.step} (delta)" if any(s.delta for s in d.sent) else f"  {d.step}"
                rows.append(("", step, d.proxy, "", *(_cell(sent.get(t)) for t in TYPES)))
            rows += [("", "  skip", s.proxy, s.reason, *(f"saved {s.saved[t]} B" if t in s.saved else "-" for t in TYPES))
                     for s in rec.skipped]
            rows += [("", "  disconnect", gone, "", "", "", "", "") for gone in rec.disconnected]
        entries.append((p.at, 2, rec.number, tuple(rows)))
    out = []
    for at, kind, _, item in sorted(entries, key=lambda e: e[:3]):
        if since is not None and at < since or until is not None and at > until:
            continue
        out += list(item) if kind == 2 else [item]
    return table(("at (s)", "step", "what", "configs / watch events", *TYPES), out)


def _type_cells(totals: dict[str, tuple[int, int]]) -> list[str]:
    return [f"{totals[t][0]} / {totals[t][1]} B" if t in totals else "-" for t in TYPES]


def pushes_summary(recorder: PushRecorder) -> TextView:
    """One row per push: full or incremental, reason, how many proxies, which types."""
    rows = []
    for rec in recorder.records:
        p = rec.push
        pushed = rec.pushed_to
        rows.append((f"{p.at:7.3f}", rec.number, kind_of(p.request), reasons_of(p.request), len(pushed),
                     " ".join(rec.types_sent()) or "-",
                     sum(1 for d in rec.deliveries if d.step == "connect"), len(rec.skipped),
                     sum(sum(s.saved.values()) for s in rec.skipped)))
    return table(("at (s)", "push", "kind", "reason", "proxies", "types", "new connections", "skipped",
                  "bytes saved"), rows)


def proxy_sends(recorder: PushRecorder, proxy_id: str) -> TextView:
    """Everything one proxy was sent, push by push, with the resource names."""
    rows = []
    for rec in recorder.records:
        for d in rec.deliveries:
            if d.proxy != proxy_id:
                continue
            for s in d.sent:
                rows.append((f"{rec.push.at:7.3f}", rec.number, d.step, s.type, s.count, s.bytes,
                             ", ".join(s.names[:3]) + (f" … (+{s.count - 3})" if s.count > 3 else ""),
                             ", ".join(s.removed)))
    columns = ("at (s)", "push", "step", "type", "resources", "bytes", "names", "removed")
    if not any(row[-1] for row in rows):  # a SotW proxy removes by leaving out: no column for it
        columns, rows = columns[:-1], [row[:-1] for row in rows]
    return table(columns, rows)
