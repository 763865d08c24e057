"""Plain-text views for the end-to-end notebook (17): what ``Server.start`` opened, the pods and
their apps, ``istioctl proxy-status``, the pushes each trace step caused, and the traffic split
measured through a real Envoy, with a bar per version.

Nothing here is part of the mini-istiod. The proxy-status table has istioctl's columns and rules
(Go: https://github.com/istio/istio/blob/1.19.0/istioctl/pkg/writer/pilot/status.go#L118-L156), from
``mesh.xds.debug.proxy_status``. Like ``views``, every table is sorted or in the order things
happened, and prints no wall-clock time, port, nonce, path or memory address: only what is the
same on every run — except ``split_table``, whose numbers are measured and differ a little each
time (the notebook marks that cell so and checks the numbers with an ``assert``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from mesh.teach.views import TextView, table
from mesh.xds import debug
from mesh.xds.types import PUSH_ORDER, short_name

STATUS_COLUMNS = ("NAME", "CLUSTER", "CDS", "LDS", "EDS", "RDS", "ISTIOD", "VERSION")
BAR_WIDTH = 40


def started(server) -> TextView:
    """After ``await server.start()``: start funcs in the order they ran, the listeners in the order
    they opened (names only: ports are chosen by the OS), and whether ADS accepts streams."""
    funcs = table(("#", "start func"), [(i, name) for i, name in enumerate((n for n, _ in server.start_funcs), 1)])
    ports = table(("#", "listener open"), list(enumerate(server.bound_ports, 1)))
    facts = (f"informer caches synced: {'yes' if server.has_synced() else 'no'}"
             f" | ADS accepts streams: {'yes' if server.ads.is_ready() else 'no'}")
    return TextView(f"{funcs}\n\n{ports}\n\n{facts}")


def pods_table(pods: Iterable[dict]) -> TextView:
    rows = []
    for pod in sorted(pods, key=lambda p: p["metadata"]["name"]):
        labels = pod["metadata"].get("labels") or {}
        rows.append((pod["metadata"]["name"], pod["status"].get("podIP"), labels.get("app"), labels.get("version"),
                     pod["spec"].get("serviceAccountName", "default")))
    return table(("pod", "pod IP", "app", "version", "service account"), rows)


def apps_table(apps: dict, pods: Iterable[dict]) -> TextView:
    """The small apps standing in for bookinfo's containers: which pod IP each listens on."""
    from mesh.demo.e2e import APP_PORT, app_name

    by_name = {app_name(p): p for p in pods}
    return table(("app", "listens on (pod IP, app port)"),
                 [(name, f"{by_name[name]['status']['podIP']}:{APP_PORT}") for name in sorted(apps)])


def proxy_status(ads) -> TextView:
    """``istioctl proxy-status``: one row per connected proxy, sorted by name."""
    rows = sorted(debug.proxy_status(ads), key=lambda r: (r["CLUSTER"], r["NAME"]))
    return table(STATUS_COLUMNS, [[r[c] for c in STATUS_COLUMNS] for r in rows])


def reach_table(answers: dict[str, Counter]) -> TextView:
    """Host asked for → which apps answered (sorted) and how many requests failed."""
    rows = []
    for host, counts in answers.items():
        ok = sorted(str(k) for k in counts if isinstance(k, str))
        failed = sum(n for k, n in counts.items() if not isinstance(k, str))
        rows.append((host, sum(counts.values()), ", ".join(ok) or "-", failed))
    return table(("Host header", "requests", "answered by", "failed"), rows)


def _weights(weights: dict[str, int]) -> str:
    return " ".join(f"{name.rsplit('-', 1)[-1]}={w}" for name, w in sorted(weights.items())) or "(no route)"


def steps_table(steps: Sequence[tuple[float, dict[str, int]]]) -> TextView:
    """The trace steps to replay: trace time → the VirtualService's weights then."""
    return table(("trace t (s)", "reviews weights"), [(f"{t:g}", _weights(w)) for t, w in steps])


def _push_rows(push, lead: tuple = ()) -> list[tuple]:
    """One row per config the push names; the push's own fields on the first row only."""
    request = push.request
    reasons = ", ".join(f"{r}×{n}" if n > 1 else r for r, n in sorted(request.reason.items()))
    configs = sorted(str(c) for c in request.configs_updated) or ["(all)"]
    first = (*lead, "full" if request.full else "incremental", push.events, reasons, configs[0])
    blank = ("",) * (len(first) - 1)
    return [first] + [(*blank, c) for c in configs[1:]]


def pushes_table(pushes: Iterable) -> TextView:
    """Debounced pushes, in order, without times: full or not, requests merged, reasons, configs."""
    return table(("push", "requests merged", "reason", "configs updated"),
                 [row for p in pushes for row in _push_rows(p)])


def step_pushes_table(steps: Sequence[tuple[float, Sequence]]) -> TextView:
    """For each trace step: the pushes its changes caused."""
    rows = [row for t, pushes in steps for p in pushes for row in _push_rows(p, (f"{t:g}",))]
    return table(("trace t (s)", "push", "requests merged", "reason", "configs updated"), rows)


def bar(share: float, width: int = BAR_WIDTH) -> str:
    """A horizontal bar, ``share`` of ``width`` filled (0 ≤ share ≤ 1)."""
    filled = round(max(0.0, min(1.0, share)) * width)
    return "█" * filled + "·" * (width - filled)


def split_table(measured: Sequence[tuple[float, dict[str, int], Counter]], versions: Sequence[str]) -> TextView:
    """Per trace step and version: the weight asked for, the share measured, and a bar of it."""
    rows = []
    for t, weights, counts in measured:
        total = sum(counts.values()) or 1
        for version in versions:
            share = counts.get(version, 0) / total
            rows.append((f"{t:g}", version, f"{weights.get(version, 0)}%", counts.get(version, 0),
                         f"{100 * share:.1f}%", bar(share)))
    return table(("trace t (s)", "version", "weight", "answered", "measured", "share of requests"), rows)


def split_check_table(measured: Sequence[tuple[float, dict[str, int], Counter]], points: float) -> TextView:
    """The outcome of the split check, without the measured numbers (they vary from run to run)."""
    rows = []
    for t, weights, counts in measured:
        total = sum(counts.values())
        ok = all(abs(100 * counts.get(v, 0) / total - w) <= points for v, w in weights.items())
        rows.append((f"{t:g}", _weights(weights), total, f"yes (≤ {points:g} points)" if ok else "NO"))
    return table(("trace t (s)", "weights", "requests", "every version within"), rows)


def xds_state(ads, proxy_ids: Iterable[str]) -> TextView:
    """Per proxy and xDS type: istioctl's status, whether the last response was NACKed, and
    how many NACKs this connection has sent for that type."""
    rows = []
    status = {r["NAME"]: r for r in debug.proxy_status(ads)}
    for proxy_id in sorted(proxy_ids):
        con = ads.connection(proxy_id)
        for type_url in PUSH_ORDER:
            w = con.watched.get(type_url) if con else None
            if w is None:
                continue
            name = short_name(type_url)
            rows.append((proxy_id, name, status.get(proxy_id, {}).get(name, "-"),
                         "yes" if w.last_error else "no", w.nacks))
    return table(("proxy", "type", "status", "last response NACKed", "NACKs"), rows)
