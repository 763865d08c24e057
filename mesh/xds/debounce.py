"""Debouncing: turn a burst of change events into one push.

Go: ``debounce`` in https://github.com/istio/istio/blob/1.19.0/pilot/pkg/xds/discovery.go#L336-L419.
Every ``ConfigUpdate`` lands here. The first request of a burst starts a timer of
``debounce_after`` (``PILOT_DEBOUNCE_AFTER``, 100 ms); each later request is merged into the
pending one and pushes the quiet period back. The push happens when either

* nothing has arrived for ``debounce_after`` (the burst is over), or
* ``debounce_max`` (``PILOT_DEBOUNCE_MAX``, 10 s) has passed since the burst began,
  so a never-ending trickle of events cannot starve proxies forever.

Incremental (EDS-only) requests skip the wait when ``enable_eds_debounce`` is off
(``PILOT_ENABLE_EDS_DEBOUNCE``, on by default).

The Go version is a goroutine selecting on channels; here it is two callbacks on a ``Clock``,
so the same code runs on the virtual clock (deterministic timelines) and the real one. A push
runs synchronously, so the Go ``free`` flag (one push at a time) is always true when a timer fires.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from mesh.clock import Clock, Timer
from mesh.model.push_request import PushRequest, TriggerReason

log = logging.getLogger(__name__)

DEBOUNCE_AFTER = 0.100  # PILOT_DEBOUNCE_AFTER
DEBOUNCE_MAX = 10.0  # PILOT_DEBOUNCE_MAX


@dataclass
class DebouncedPush:
    """One push that left the debouncer: what it carried and how long it waited."""

    at: float
    request: PushRequest
    events: int  # how many requests were merged into it
    debounce_started: float

    @property
    def waited(self) -> float:
        return self.at - self.debounce_started


class Debouncer:
    def __init__(self, clock: Clock, push: Callable[[DebouncedPush], object],
                 debounce_after: float = DEBOUNCE_AFTER, debounce_max: float = DEBOUNCE_MAX,
                 enable_eds_debounce: bool = True):
        self.clock = clock
        self._push = push
        self.debounce_after = debounce_after
        self.debounce_max = debounce_max
        self.enable_eds_debounce = enable_eds_debounce
        self._pending: PushRequest | None = None
        self._events = 0
        self._start = 0.0
        self._last = 0.0
        self._timer: Timer | None = None

    @property
    def pending(self) -> PushRequest | None:
        return self._pending

    def submit(self, request: PushRequest) -> None:
        if not request.reason:
            request.reason[TriggerReason.UNKNOWN] += 1
        now = self.clock.now()
        if not self.enable_eds_debounce and not request.full:
            self._push(DebouncedPush(now, request, 1, now))  # EDS goes straight out
            return
        self._last = now
        if self._events == 0:
            self._start = now
            self._arm(self.debounce_after)
        self._events += 1
        self._pending = request if self._pending is None else self._pending.merge(request)

    def _arm(self, delay: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.clock.call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        now = self.clock.now()
        # Compare instants, not differences: in floats (5.0 + 0.1) - 5.0 < 0.1, and re-arming for
        # that rounding error would fire again at the very same virtual instant, forever.
        quiet_until = self._last + self.debounce_after
        if now >= self._start + self.debounce_max or now >= quiet_until:
            if self._pending is not None:
                push = DebouncedPush(now, self._pending, self._events, self._start)
                self._pending, self._events = None, 0
                log.debug("push debounce stable: %d events, %s", push.events, push.request.describe())
                self._push(push)
        else:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self.clock.call_at(quiet_until, self._on_timer)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
