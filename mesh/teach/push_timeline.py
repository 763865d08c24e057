"""What each debounced push would send, proxy by proxy, on the virtual clock of a replay.

Used by ``python -m mesh replay TRACE --show pushes`` and notebook 16. A replay has no Envoys, so
the proxies are *modelled*: every pod of the trace that carries the ``sidecar.istio.io/status``
annotation (the sidecar injector put an Envoy in it) is one sidecar, named by the node a real
mini pilot-agent would send for it (``mesh.agent.bootstrap``: ``sidecar~<ip>~<pod>.<ns>~...`` plus
labels, IPs and service account in the metadata, parsed by ``parse_node_id`` as ADS does).

For each push that leaves the debouncer this module does what ADS does for one connection
(``AdsServer._push_connection`` and ``_send`` in mesh/xds/ads.py; Go: ``pushConnection``
https://github.com/istio/istio/blob/1.19.0/pilot/pkg/xds/ads.go#L732-L777): it runs the real
generators of stage 8 over the ADS server's PushContext, in push order CDS, EDS, LDS, RDS, asks
each whether the push concerns its type (a full push: all four; an incremental one: EDS for the
changed hosts only), and serializes what they return through the ADS server's XdsCache, exactly
as a response would carry it. Counts and bytes are therefore the real ones, and the same on
every run: the clock is virtual, proxies are sorted, serialization is deterministic.

Modelled, and named so:

* **connections** — a sidecar connects when it is first seen at a push (its pod appeared since
  the previous one): it asks for everything (``connect`` rows; not part of the push, as an
  initial request is not in istiod) and is answered from that push's PushContext. A pod that
  is gone disconnects. Real Envoys connect when their pod starts, a moment earlier or later.
* **subscriptions** — what Envoy asks for by name follows what it was sent: the EDS names are
  the EDS clusters of its last CDS, the RDS names the route configurations its listeners name.
  When a full push changes them (a DestinationRule adds subsets), the push's EDS/RDS go out for
  the old names, then Envoy's follow-up request for the new ones is answered — a
  ``resubscribe`` row, as the ACK with new names is answered in ``processRequest``.
* **bytes** — the serialized resources as the response carries them (``Any`` entries), not
  counting the response's own few bytes of version, type and nonce.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from mesh.agent.bootstrap import PodIdentity, build_bootstrap
from mesh.model.proxy import Proxy, parse_node_id
from mesh.model.push_request import PushRequest
from mesh.teach.push_view import _config_key, _kind, _reasons
from mesh.teach.views import TextView, table
from mesh.xds.debounce import DebouncedPush
from mesh.xds.fastpath import encode_resource_entry
from mesh.xds.generator import ProxyState, Resource, WatchedResource
from mesh.xds.types import CLUSTER, ENDPOINT, LISTENER, PUSH_ORDER, ROUTE, short_name

SIDECAR_STATUS = "sidecar.istio.io/status"
TYPES = tuple(short_name(t) for t in PUSH_ORDER)  # CDS, EDS, LDS, RDS


# -- the proxies ------------------------------------------------------------------------------------
def proxy_for_pod(pod: dict, domain: str = "cluster.local") -> Proxy:
    """The node this pod's sidecar would present on its first DiscoveryRequest (the mini pilot-agent's
    bootstrap), parsed as ADS parses it."""
    meta = pod.get("metadata") or {}
    ip = (pod.get("status") or {}).get("podIP") or ""
    identity = PodIdentity(meta["name"], meta.get("namespace", "default"), ip, dict(meta.get("labels") or {}),
                           domain=domain, service_account=(pod.get("spec") or {}).get("serviceAccountName") or "default")
    node = build_bootstrap(identity, "127.0.0.1", 15010)["node"]  # only the node is used
    return parse_node_id(node["id"], node["metadata"])


def sidecar_proxies(kube_client, domain: str = "cluster.local") -> list[Proxy]:
    """A Proxy for every injected pod with an IP, sorted by namespace and name."""
    out = [proxy_for_pod(pod, domain) for pod in kube_client.list_objects("Pod")
           if SIDECAR_STATUS in ((pod.get("metadata") or {}).get("annotations") or {})
           and (pod.get("status") or {}).get("podIP")]
    return sorted(out, key=lambda p: (p.namespace, p.id))


# -- what was sent ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Sent:
    """One response: a type, the resources in it (names, in order) and their serialized size."""

    type: str  # CDS, EDS, LDS, RDS
    names: tuple[str, ...]
    bytes: int
    resources: tuple[Resource, ...] = field(default=(), repr=False, compare=False)  # the bodies, to look at

    @property
    def count(self) -> int:
        return len(self.names)


@dataclass
class ProxyDelivery:
    """What one proxy got: from the push itself, on connecting, or answering a re-subscription."""

    proxy: str  # <pod>.<ns>
    step: str  # "push", "connect", "resubscribe"
    sent: list[Sent] = field(default_factory=list)

    def by_type(self) -> dict[str, Sent]:
        return {s.type: s for s in self.sent}


@dataclass
class PushRecord:
    """A debounced push and what it became for every modelled proxy."""

    number: int
    push: DebouncedPush
    version: str  # the PushContext version the generators read
    deliveries: list[ProxyDelivery] = field(default_factory=list)
    disconnected: list[str] = field(default_factory=list)

    @property
    def pushed_to(self) -> list[str]:
        return [d.proxy for d in self.deliveries if d.step == "push"]

    def types_sent(self) -> list[str]:
        """The types the push itself carried to at least one proxy, in push order."""
        seen = {s.type for d in self.deliveries if d.step == "push" for s in d.sent}
        return [t for t in TYPES if t in seen]


class _ModelledConnection:
    """A sidecar's subscriptions, as ``Connection.watched`` would hold them."""

    def __init__(self, proxy: Proxy):
        self.proxy = proxy
        self.state = ProxyState(proxy)
        self.watched = {t: WatchedResource(t) for t in PUSH_ORDER}


class PushRecorder:
    """Listen to a server's debounced pushes and record, for each, what every sidecar is sent.

    Needs stage 16 (``server.ads``: its PushContext and cache, and the generators of stage 8).
    Attach before the clock moves; the recorder runs after the ADS server's own handler, so a full
    push has already rebuilt the PushContext it reads."""

    def __init__(self, server):
        if getattr(server, "ads", None) is None:
            raise RuntimeError("recording pushes needs stage 16 (init_discovery_service): no ADS server")
        self.server = server
        self.ads = server.ads
        self.records: list[PushRecord] = []
        self._connections: dict[str, _ModelledConnection] = {}
        # The last clusters and listeners each proxy was sent: what its EDS and RDS names follow.
        self._last: dict[str, dict[str, list[Resource]]] = {CLUSTER: {}, LISTENER: {}}
        server.xds.push_handlers.append(self._on_push)

    # -- one push ---------------------------------------------------------------------------------
    def _on_push(self, push: DebouncedPush) -> None:
        ctx = self.ads.push_context
        record = PushRecord(len(self.records) + 1, push, ctx.version)
        present = {p.id: p for p in sidecar_proxies(self.server.kube_client, self.ads.domain)}
        for gone in sorted(set(self._connections) - set(present)):
            del self._connections[gone]
            for last in self._last.values():
                last.pop(gone, None)
            record.disconnected.append(gone)
        for proxy_id, proxy in present.items():
            con = self._connections.get(proxy_id)
            if con is None:  # a new sidecar: it asks for everything, and is not part of the push
                con = self._connections[proxy_id] = _ModelledConnection(proxy)
                con.state.instances = ctx.service_instances(proxy)
                record.deliveries.append(self._deliver(con, "connect", None))
                continue
            if push.request.full:  # as _push_connection: a full push refreshes the proxy's own services
                con.state.instances = ctx.service_instances(proxy)
            delivery = self._deliver(con, "push", push.request)
            record.deliveries.append(delivery)
            follow_up = self._resubscribe(con)
            if follow_up.sent:
                record.deliveries.append(follow_up)
        self.records.append(record)

    def _deliver(self, con: _ModelledConnection, step: str, request: PushRequest | None) -> ProxyDelivery:
        """Run the generators for each type, in push order. On connecting (``request`` None) Envoy
        subscribes to EDS and RDS names only after it has clusters and listeners, so those names are
        taken from what this very delivery sent."""
        delivery = ProxyDelivery(con.proxy.id, step)
        for type_url in PUSH_ORDER:
            if request is None:
                self._subscribe(con, type_url)
            sent = self._send(con, type_url, request)
            if sent is not None:
                delivery.sent.append(sent)
        return delivery

    def _resubscribe(self, con: _ModelledConnection) -> ProxyDelivery:
        """After a push, Envoy asks by name for what its new clusters and listeners need."""
        delivery = ProxyDelivery(con.proxy.id, "resubscribe")
        for type_url in (ENDPOINT, ROUTE):
            if self._subscribe(con, type_url) and (sent := self._send(con, type_url, None)) is not None:
                delivery.sent.append(sent)
        return delivery

    def _subscribe(self, con: _ModelledConnection, type_url: str) -> bool:
        """Set the names Envoy would ask for; True if they changed."""
        if type_url == ENDPOINT:
            names = eds_names(self._last[CLUSTER].get(con.proxy.id, []))
        elif type_url == ROUTE:
            names = rds_names(self._last[LISTENER].get(con.proxy.id, []))
        else:
            return False  # CDS and LDS are wildcard subscriptions
        watched = con.watched[type_url]
        changed = sorted(names) != sorted(watched.names)
        watched.names = names
        return changed

    def _send(self, con: _ModelledConnection, type_url: str, request: PushRequest | None) -> Sent | None:
        watched = con.watched[type_url]
        generator = self.ads.generators.get(type_url)
        if generator is None:
            return None  # ADS would log "no generator" and send nothing
        resources = generator.generate(con.state, self.ads.push_context, watched, request)
        if resources is None:
            return None  # this push does not concern this type: nothing is sent
        size = 0
        for r in resources:
            if r.encoded is None:  # as AdsServer._assemble: serialized through the cache, wrapped once
                r.encoded = encode_resource_entry(type_url, self.ads.cache.serialize(type_url, r.body))
            size += len(r.encoded)
        watched.sent_names = [r.name for r in resources]
        if type_url in (CLUSTER, LISTENER):
            self._last[type_url][con.proxy.id] = resources
        return Sent(short_name(type_url), tuple(r.name for r in resources), size, tuple(resources))


def eds_names(clusters: list[Resource]) -> list[str]:
    """The ClusterLoadAssignments Envoy asks for: one per EDS cluster (its ``serviceName``)."""
    out = []
    for c in clusters:
        if c.body.get("type") == "EDS":
            out.append((c.body.get("edsClusterConfig") or {}).get("serviceName") or c.name)
    return out


def rds_names(listeners: list[Resource]) -> list[str]:
    """The route configurations Envoy asks for: every ``rds.routeConfigName`` in its listeners."""
    found: list[str] = []
    for li in listeners:
        for name in _route_config_names(li.body):
            if name not in found:
                found.append(name)
    return found


def _route_config_names(node) -> Iterator[str]:
    if isinstance(node, dict):
        rds = node.get("rds")
        if isinstance(rds, dict) and rds.get("routeConfigName"):
            yield rds["routeConfigName"]
        for value in node.values():
            yield from _route_config_names(value)
    elif isinstance(node, list):
        for value in node:
            yield from _route_config_names(value)


# -- views ------------------------------------------------------------------------------------------
def _cell(sent: Sent | None) -> str:
    return f"{sent.count} / {sent.bytes} B" if sent is not None else "-"


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
        if e.t != at or _config_key(e.object, domain) not in request.configs_updated:
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
        entries.append((r.at, 0, i, (f"{r.at:7.3f}", "event", f"{_kind(r.request)} {_reasons(r.request)}",
                                     cause, "", "", "", "")))
    for rec in recorder.records:
        p = rec.push
        window = (f"{p.debounce_started:7.3f}", "debounce",
                  f"window opens: quiet {after * 1000:g} ms, at most {longest:g} s", "", "", "", "", "")
        entries.append((p.debounce_started, 1, rec.number, window))
        closed = "max wait reached" if p.at >= p.debounce_started + longest else f"quiet for {after * 1000:g} ms"
        rows = [(f"{p.at:7.3f}", f"push #{rec.number}",
                 f"{_kind(p.request)} {_reasons(p.request)}; {p.events} merged, {closed}",
                 short_configs(p.request), *_type_cells(_totals(d for d in rec.deliveries if d.step == "push")))]
        if per_proxy:
            for d in rec.deliveries:
                sent = d.by_type()
                rows.append(("", f"  {d.step}", d.proxy, "", *(_cell(sent.get(t)) for t in TYPES)))
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
        rows.append((f"{p.at:7.3f}", rec.number, _kind(p.request), _reasons(p.request), len(pushed),
                     " ".join(rec.types_sent()) or "-",
                     sum(1 for d in rec.deliveries if d.step == "connect")))
    return table(("at (s)", "push", "kind", "reason", "proxies", "types", "new connections"), rows)


def proxy_sends(recorder: PushRecorder, proxy_id: str) -> TextView:
    """Everything one proxy was sent, push by push, with the resource names."""
    rows = []
    for rec in recorder.records:
        for d in rec.deliveries:
            if d.proxy != proxy_id:
                continue
            for s in d.sent:
                rows.append((f"{rec.push.at:7.3f}", rec.number, d.step, s.type, s.count, s.bytes,
                             ", ".join(s.names[:3]) + (f" … (+{s.count - 3})" if s.count > 3 else "")))
    return table(("at (s)", "push", "step", "type", "resources", "bytes", "names"), rows)
