"""The push recorder: what each debounced push would send, proxy by proxy, on a replay's virtual clock.

Used by ``python -m mesh replay TRACE --show pushes`` and notebook 16 (the views are in
``mesh.tools.push_timeline``). A replay has no Envoys, so the proxies are *modelled*: the caller
names them (``proxies``, e.g. ``mesh.demo.pods.sidecar_proxies``: one per injected pod of the trace,
with the node a real mini pilot-agent would send).

For each push that leaves the debouncer the recorder does what ADS does for one connection
(``AdsServer._push_connection`` in mesh/xds/ads.py; Go: ``pushConnection``
https://github.com/istio/istio/blob/1.19.0/pilot/pkg/xds/ads.go#L732-L764): for each type in push
order (``mesh.xds.types``) it calls the same ``AdsServer.generate`` that ADS sends from — the real
generators over the ADS server's PushContext, each resource serialized through its XdsCache exactly
as a response carries it. Counts and bytes are therefore the real ones, and the same on every run:
the clock is virtual, proxies are sorted, serialization is deterministic.

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
* **skips** — a proxy the push does not concern (``ProxyNeedsPush``,
  ``mesh.xds.proxy_dependencies``) gets nothing; the record lists it with the reason and the bytes
  per type it would have been sent without scoping (the full answer for what it watches).
* **bytes** — the serialized resources as the response carries them (``Any`` entries), not
  counting the response's own few bytes of version, type and nonce.
* **proxy updates** — a ``ProxyUpdate`` (a pod relabelled, or given a new IP) is a record of its
  own at that instant: the one modelled sidecar with that IP, pushed in full with reason ``proxy``,
  as ADS pushes its connection alone (``AdsServer.proxy_update``).
* **Delta sidecars** — a proxy for which ``delta(proxy)`` is true speaks Delta xDS: what it is
  sent is decided by ``mesh.xds.delta.delta_changes`` as for a real Delta stream (only resources
  whose version it does not hold, plus ``removed`` names), and ``Sent.delta`` marks it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from mesh.model.proxy import Proxy
from mesh.model.push_request import PushRequest, TriggerReason
from mesh.xds.debounce import DebouncedPush
from mesh.xds.delta import DeltaWatch, delta_changes, now_held
from mesh.xds.generator import ProxyState, Resource, WatchedResource
from mesh.xds.proxy_dependencies import compute_proxy_state, needs_push
from mesh.xds.types import CLUSTER, ENDPOINT, LISTENER, NAMED_TYPES, PUSH_ORDER, ROUTE, short_name

TYPES = tuple(short_name(t) for t in PUSH_ORDER)  # CDS, EDS, LDS, RDS


# -- what was sent ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Sent:
    """One response: a type, the resources in it (names, in order) and their serialized size."""

    type: str  # CDS, EDS, LDS, RDS
    names: tuple[str, ...]
    bytes: int
    resources: tuple[Resource, ...] = field(default=(), repr=False, compare=False)  # the bodies, to look at
    removed: tuple[str, ...] = ()  # Delta only: the names the response removes
    delta: bool = False  # sent over Delta xDS (``names`` are then the resources added or changed)

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


@dataclass(frozen=True)
class Skipped:
    """A proxy the push did not concern (``ProxyNeedsPush``), why, and the bytes per type it saved:
    what the push would have sent it without scoping."""

    proxy: str
    reason: str
    saved: dict[str, int] = field(default_factory=dict, compare=False)


@dataclass
class PushRecord:
    """A debounced push (or a ProxyUpdate's push) and what it became for every modelled proxy."""

    number: int
    push: DebouncedPush
    version: str  # the PushContext version the generators read
    deliveries: list[ProxyDelivery] = field(default_factory=list)
    disconnected: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)  # proxies ProxyNeedsPush left alone
    proxy_update: str = ""  # the pod IP of a ProxyUpdate (then ``push`` was never debounced)

    @property
    def pushed_to(self) -> list[str]:
        return [d.proxy for d in self.deliveries if d.step == "push"]

    def types_sent(self) -> list[str]:
        """The types the push itself carried to at least one proxy, in push order."""
        seen = {s.type for d in self.deliveries if d.step == "push" for s in d.sent}
        return [t for t in TYPES if t in seen]


class _ModelledConnection:
    """A sidecar's subscriptions, as ``Connection.watched`` would hold them."""

    def __init__(self, proxy: Proxy, delta: bool = False):
        self.proxy = proxy
        self.state = ProxyState(proxy)
        self.watched = {t: WatchedResource(t) for t in PUSH_ORDER}
        # A Delta sidecar's per-type holdings (``mesh.xds.delta``); CDS and LDS are wildcard.
        self.delta = {t: DeltaWatch(wildcard=t not in NAMED_TYPES) for t in PUSH_ORDER} if delta else None


class PushRecorder:
    """Listen to a server's debounced pushes and record, for each, what every sidecar is sent.

    Needs stage 16 (``server.ads``: its PushContext and cache, and the generators of stage 8).
    Attach before the clock moves; the recorder runs after the ADS server's own handler, so a full
    push has already rebuilt the PushContext it reads."""

    def __init__(self, server, proxies: Callable[[], Iterable[Proxy]], delta: Callable[[Proxy], bool] | None = None):
        if getattr(server, "ads", None) is None:
            raise RuntimeError("recording pushes needs stage 16 (init_discovery_service): no ADS server")
        self.server = server
        self.ads = server.ads
        self.proxies = proxies  # the modelled sidecars present now
        self.delta = delta or (lambda proxy: False)  # which of them speak Delta xDS
        self.records: list[PushRecord] = []
        self._connections: dict[str, _ModelledConnection] = {}
        # The last clusters and listeners each proxy was sent: what its EDS and RDS names follow.
        self._last: dict[str, dict[str, list[Resource]]] = {CLUSTER: {}, LISTENER: {}}
        server.xds.push_handlers.append(self._on_push)
        server.xds.proxy_update_handlers.append(self._on_proxy_update)

    # -- one push ---------------------------------------------------------------------------------
    def _on_push(self, push: DebouncedPush) -> None:
        ctx = self.ads.push_context
        record = PushRecord(len(self.records) + 1, push, ctx.version)
        present = {p.id: p for p in self.proxies()}
        for gone in sorted(set(self._connections) - set(present)):
            del self._connections[gone]
            for last in self._last.values():
                last.pop(gone, None)
            record.disconnected.append(gone)
        for proxy_id, proxy in present.items():
            con = self._connections.get(proxy_id)
            if con is None:  # a new sidecar: it asks for everything, and is not part of the push
                con = self._connections[proxy_id] = _ModelledConnection(proxy, self.delta(proxy))
                compute_proxy_state(con.state, ctx, None)
                record.deliveries.append(self._deliver(con, "connect", None))
                continue
            self._push_connection(record, con, push.request)
        self.records.append(record)

    def _on_proxy_update(self, ip: str) -> None:
        """``ProxyUpdate``: the modelled sidecar whose first IP this is, alone, gets a full push with
        reason ``proxy`` from the current PushContext, at once (a record of its own, not debounced)."""
        con = next((c for c in self._connections.values() if c.proxy.ip_addresses[0] == ip), None)
        if con is None:
            return  # not connected (yet): it will get everything when it connects
        now = self.server.xds.clock.now()
        request = PushRequest.of(TriggerReason.PROXY, start=now)
        record = PushRecord(len(self.records) + 1, DebouncedPush(now, request, 1, now), self.ads.push_context.version,
                            proxy_update=ip)
        self._push_connection(record, con, request)
        self.records.append(record)

    def _push_connection(self, record: PushRecord, con: _ModelledConnection, request: PushRequest) -> None:
        """``pushConnection`` for one modelled sidecar: refresh its state, ask ProxyNeedsPush, deliver."""
        if request.full:  # as _push_connection: a full push refreshes the proxy's state
            compute_proxy_state(con.state, self.ads.push_context, request)
        pushed, why = needs_push(con.state, request)
        if not pushed:  # ProxyNeedsPush: this proxy is left alone
            record.skipped.append(Skipped(con.proxy.id, why, self._would_send(con)))
            return
        record.deliveries.append(self._deliver(con, "push", request))
        follow_up = self._resubscribe(con)
        if follow_up.sent:
            record.deliveries.append(follow_up)

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

    def _would_send(self, con: _ModelledConnection) -> dict[str, int]:
        """Bytes per type a push of everything would have sent (EDS and RDS for the names watched);
        generating them changes nothing the proxy holds."""
        saved = {}
        for type_url in PUSH_ORDER:
            resources = self.ads.generate(con.state, type_url, con.watched[type_url], None)
            if resources:
                saved[short_name(type_url)] = sum(len(r.encoded) for r in resources)
        return saved

    def _resubscribe(self, con: _ModelledConnection) -> ProxyDelivery:
        """After a push, Envoy asks by name for what its new clusters and listeners need."""
        delivery = ProxyDelivery(con.proxy.id, "resubscribe")
        for type_url in NAMED_TYPES:
            before = set(con.watched[type_url].names)
            if not self._subscribe(con, type_url):
                continue
            only = None
            if con.delta is not None:  # Delta: unsubscribing is not answered; new names get just those
                names = con.watched[type_url].names
                for gone in before - set(names):
                    con.delta[type_url].held.pop(gone, None)
                only = [n for n in names if n not in before]
                if not only:
                    continue
            if (sent := self._send(con, type_url, None, only)) is not None:
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

    def _send(self, con: _ModelledConnection, type_url: str, request: PushRequest | None,
              only: list[str] | None = None) -> Sent | None:
        watched = con.watched[type_url]
        resources = self.ads.generate(con.state, type_url, WatchedResource(type_url, names=only) if only else watched,
                                      request)
        if resources is None:
            return None  # no generator, or this push does not concern this type: nothing is sent
        if type_url in (CLUSTER, LISTENER):
            self._last[type_url][con.proxy.id] = resources
        if con.delta is not None:
            changed, removed = delta_changes(con.delta[type_url], watched, resources, request, only)
            if not changed and not removed and request is not None:
                return None  # the proxy holds all of it already: a Delta stream sends nothing
            now_held(con.delta[type_url], watched, changed, removed)
            return Sent(short_name(type_url), tuple(r.name for r in changed), sum(len(r.encoded) for r in changed),
                        tuple(changed), tuple(removed), delta=True)
        watched.sent_names = [r.name for r in resources]
        return Sent(short_name(type_url), tuple(r.name for r in resources), sum(len(r.encoded) for r in resources),
                    tuple(resources))


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
