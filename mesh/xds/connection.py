"""Connection: one Envoy's ADS stream — who it is, what it watches, what it was sent and ACKed.

Go: ``Connection`` https://github.com/istio/istio/blob/1.19.0/pilot/pkg/xds/ads.go#L70-L109 and
the ACK/NACK decision ``shouldRespond`` (ads.go#L355-L465).

State of the World, per type URL (clusters, endpoints, listeners, routes each on their own):

* istiod sends a response carrying a ``version_info`` and a fresh ``nonce``;
* Envoy answers with a request quoting that nonce: an **ACK** (``version_info`` = the new
  version) if it applied the config, a **NACK** (``error_detail`` set, ``version_info`` = the
  last version it *did* apply) if it refused it. Either way Envoy keeps running on its last
  good config; istiod records the NACK and does not send the same thing again;
* a request quoting an older nonce is **stale** — it answers a response Envoy has since been
  superseded by — and is ignored;
* a request with no nonce is a new subscription (first contact, or a reconnect) and is answered.

For EDS and RDS Envoy names the resources it wants; an ACK whose names differ from before is
also a new subscription and is answered with the new set.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from enum import Enum

from mesh.model.push_request import PushRequest
from mesh.xds.generator import SYNCED, ProxyState, WatchedResource
from mesh.xds.types import NAMED_TYPES

_connection_ids = itertools.count(1)


class RequestKind(Enum):
    INITIAL = "initial"  # no nonce: answer it
    ACK = "ack"
    ACK_NEW_NAMES = "ack+names"  # an ACK that also changes the subscription: answer it
    NACK = "nack"
    STALE = "stale"  # an old nonce: ignore


@dataclass
class ConnectionEvent:
    kind: str  # request kind or "send"
    type_url: str
    version: str
    nonce: str
    detail: str = ""  # error_detail for a NACK, "n resources" for a send
    at: float = 0.0  # time.perf_counter() when it happened (for latency figures, never printed)


@dataclass
class Connection:
    peer: str
    state: ProxyState | None = None
    watched: dict[str, WatchedResource] = field(default_factory=dict)
    events: list[ConnectionEvent] = field(default_factory=list)  # the recent past
    sends: Counter = field(default_factory=Counter)  # responses sent, by type URL, ever
    pushed: PushRequest | None = None  # pushes delivered but not yet all ACKed (convergence time)
    pending_push: PushRequest | None = None  # the one push waiting in the queue (merged)
    # The push context version this proxy has been brought up to: the types a push did not
    # concern (e.g. EDS for a VirtualService change) keep their older versions, as in istiod.
    push_version: str = ""
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    number: int = field(default_factory=lambda: next(_connection_ids))
    identities: tuple = ()  # the TLS peer's verified identities (authenticate); () on plaintext
    connected_at: object = None  # a datetime: when the WorkloadEntry controller saw it connect (``connectedAt``)
    # A Delta stream's per-type state (``mesh.xds.delta.DeltaWatch``); None on a SotW stream.
    delta: dict | None = None

    @property
    def protocol(self) -> str:
        return "sotw" if self.delta is None else "delta"

    # Requests read and waiting in the queue, and their encoded size: bounded (ads.py).
    queued_requests: int = 0
    queued_bytes: int = 0
    ended: asyncio.Event = field(default_factory=asyncio.Event)  # set once: the stream must end
    close_status: tuple | None = None  # (grpc.StatusCode, message) when the server ends it with an error
    writing: bool = False  # a response is being written (it may be stuck behind the peer's window)

    def queued(self, size: int, max_requests: int, max_bytes: int) -> bool:
        """Count one more waiting request; False if that would exceed the bounds."""
        if self.queued_requests >= max_requests or self.queued_bytes + size > max_bytes:
            return False
        self.queued_requests += 1
        self.queued_bytes += size
        return True

    def dequeued(self, size: int) -> None:
        self.queued_requests -= 1
        self.queued_bytes -= size

    def end(self, code=None, message: str = "") -> None:
        """End the stream: normally (``code`` None) or with a gRPC status. The first call wins."""
        if not self.ended.is_set():
            if code is not None:
                self.close_status = (code, message)
            self.ended.set()

    @property
    def id(self) -> str:
        """``<pod>.<ns>-<n>``, as istiod names connections (``connectionID``)."""
        return f"{self.state.proxy.id if self.state else 'unknown'}-{self.number}"

    def classify(self, type_url: str, nonce: str, names: list[str], error: str) -> RequestKind:
        """Decide what a request means, updating the watch (``shouldRespond``)."""
        watched = self.watched.get(type_url)
        if error:
            if watched is not None and nonce == watched.nonce_sent:
                watched.last_error = error
                watched.nacks += 1
            return RequestKind.NACK
        if not nonce or watched is None:
            self.watched[type_url] = WatchedResource(type_url, names=_interned(names))
            return RequestKind.INITIAL
        if nonce != watched.nonce_sent:
            return RequestKind.STALE
        watched.nonce_acked = nonce
        watched.version_acked = watched.version_sent
        watched.last_error = ""
        if type_url in NAMED_TYPES and names != watched.names and sorted(names) != sorted(watched.names):
            # (the common case, an ACK naming the same clusters, costs one list comparison)
            watched.names = _interned(names)
            return RequestKind.ACK_NEW_NAMES
        return RequestKind.ACK

    def synced(self) -> bool:
        """Has the proxy ACKed the last response of every type it watches?"""
        return all(w.status() == SYNCED for w in self.watched.values())

    def record(self, kind: str, type_url: str, version: str, nonce: str, detail: str = "") -> None:
        if kind == "send":
            self.sends[type_url] += 1
        self.events.append(ConnectionEvent(kind, type_url, version, nonce, detail, time.perf_counter()))
        del self.events[:-64]  # the recent past only: thousands of connections keep theirs


_shared_names: dict[tuple[str, ...], list[str]] = {}


def _interned(names: list[str]) -> list[str]:
    """Thousands of sidecars watch the same cluster names: keep one copy of each string, and one
    copy of each list of them (2000 sidecars watching 1000 clusters would otherwise hold 2000
    lists, and intern two million strings in a connect storm). Nothing mutates a watch's names in
    place — a new subscription replaces the list — so sharing is safe."""
    key = tuple(names)
    shared = _shared_names.get(key)
    if shared is None:
        if len(_shared_names) >= 1024:  # distinct subscriptions seen lately, not all ever
            _shared_names.clear()
        shared = _shared_names[key] = [sys.intern(n) for n in names]
    return shared
