"""The new-stream rate limit: how many xDS streams a second istiod lets start (``PILOT_MAX_REQUESTS_PER_SECOND``).

Go: the limiter ``NewDiscoveryServer`` makes, ``rate.NewLimiter(rate.Limit(features.RequestLimit), 1)``
(https://github.com/istio/istio/blob/1.19.0/pilot/pkg/xds/discovery.go#L153-L160), the feature
(https://github.com/istio/istio/blob/1.19.0/pilot/pkg/features/pilot.go#L67-L71: 25 a second),
``WaitForRequestLimit`` (https://github.com/istio/istio/blob/1.19.0/pilot/pkg/xds/discovery.go#L655-L665)
and its callers, before anything else is done for a new stream: ``Stream``
(https://github.com/istio/istio/blob/1.19.0/pilot/pkg/xds/ads.go#L267-L270) and ``StreamDeltas``
(https://github.com/istio/istio/blob/1.19.0/pilot/pkg/xds/delta.go#L68-L71). The limiter is
``golang.org/x/time/rate`` v0.3.0's token bucket (istio 1.19's go.mod), rebuilt here:

* the bucket holds at most ``burst`` tokens (1) and gains ``limit`` tokens a second; it starts full;
* a new stream *reserves* a token: the bucket may go negative, and the stream then waits until the
  reservation's time comes (the k-th of a burst of simultaneous streams waits k/25 s);
* ``WaitForRequestLimit`` allows one second: a reservation that would wait longer is not made at
  all (``Wait`` returns "rate: Wait(n=1) would exceed context deadline" at once, without taking a
  token) and the stream is refused with ``RESOURCE_EXHAUSTED`` "request rate limit exceeded: ...";
  Envoy retries, on this istiod or another;
* a stream that goes away while it waits gives its reservation back (``Reservation.Cancel``);
* ``PILOT_MAX_REQUESTS_PER_SECOND=0`` turns the limit off; a value that is not a number is
  warned about and the default used, as istiod's ``env.Register`` does.

Time is the process's monotonic clock, never the replay's virtual clock: it limits real
connections. Simplification, named: the one-second budget is compared strictly (a wait of exactly
one second is refused). istiod's deadline is set a moment before the reservation is tried, so at
the boundary it refuses too.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

log = logging.getLogger(__name__)

ENV = "PILOT_MAX_REQUESTS_PER_SECOND"
DEFAULT_LIMIT = 25.0
BURST = 1
MAX_WAIT = 1.0  # seconds WaitForRequestLimit gives a new stream
EXCEEDED = "rate: Wait(n=1) would exceed context deadline"  # x/time/rate's error, quoted by istiod


def limit_from_env(environ: Mapping[str, str] | None = None) -> float:
    """``features.RequestLimit``: the variable as a float; not a number → a warning and the default."""
    raw = (os.environ if environ is None else environ).get(ENV)
    if raw is None:
        return DEFAULT_LIMIT
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if math.isnan(value) or value < 0:
        log.warning("Invalid environment variable value `%s` for %s, expecting a non-negative "
                    "floating-point value, defaulting to %g", raw[:100], ENV, DEFAULT_LIMIT)
        return DEFAULT_LIMIT
    return value


@dataclass
class Reservation:
    """One reserved token: when its holder may act (``timeToAct``)."""

    time_to_act: float
    tokens: int = 1


class Limiter:
    """``rate.Limiter``: a token bucket of ``burst`` tokens refilled at ``limit`` per second."""

    def __init__(self, limit: float, burst: int = BURST, now: Callable[[], float] = time.monotonic):
        self.limit = limit
        self.burst = burst
        self.now = now
        self.tokens = 0.0
        self.last: float | None = None  # None: never used (the bucket is full)
        self.last_event = -math.inf

    def _advance(self, now: float) -> tuple[float, float]:
        """The bucket at ``now``: (now, tokens), without changing it."""
        if self.last is None:
            return now, float(self.burst)
        if now < self.last:
            return self.last, self.tokens
        return now, min(float(self.burst), self.tokens + (now - self.last) * self.limit)

    def reserve(self, max_wait: float) -> Reservation | None:
        """``reserveN(now, 1, max_wait)``: a token that comes within ``max_wait`` seconds, or None
        (and nothing taken)."""
        if math.isinf(self.limit):
            return Reservation(self.now())
        now, tokens = self._advance(self.now())
        tokens -= 1
        wait = -tokens / self.limit if tokens < 0 else 0.0
        if wait >= max_wait:
            return None
        self.last, self.tokens = now, tokens
        self.last_event = now + wait
        return Reservation(now + wait)

    def cancel(self, r: Reservation) -> None:
        """``Reservation.Cancel``: give back what later reservations have not already counted on."""
        now = self.now()
        if math.isinf(self.limit) or r.time_to_act < now:
            return
        restore = r.tokens - (self.last_event - r.time_to_act) * self.limit
        if restore <= 0:
            return
        now, tokens = self._advance(now)
        self.last, self.tokens = now, min(float(self.burst), tokens + restore)
        if r.time_to_act == self.last_event:
            previous = r.time_to_act - r.tokens / self.limit
            if previous >= now:
                self.last_event = previous


class RequestRateLimit:
    """``DiscoveryServer.RequestRateLimit`` with ``WaitForRequestLimit``."""

    def __init__(self, limit: float | None = None, now: Callable[[], float] = time.monotonic):
        self.limiter = Limiter(limit_from_env() if limit is None else limit, BURST, now)
        self.admitted = 0
        self.refused = 0

    @property
    def limit(self) -> float:
        return self.limiter.limit

    async def wait(self) -> str:
        """``WaitForRequestLimit``: wait for a token for a new stream; "" once it may go on, else the
        error istiod quotes in its refusal. Cancelled (the client left): the token goes back."""
        if self.limiter.limit == 0:
            return ""  # the opt-out
        r = self.limiter.reserve(MAX_WAIT)
        if r is None:
            self.refused += 1
            return EXCEEDED
        delay = r.time_to_act - self.limiter.now()
        if delay > 0:
            try:
                await asyncio.sleep(delay)
            except asyncio.CancelledError:
                self.limiter.cancel(r)
                raise
        self.admitted += 1
        return ""
