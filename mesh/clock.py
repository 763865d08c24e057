"""Time for mesh: a virtual clock for replay, the real clock for ``serve`` — one interface.

istiod measures its debounce windows and push throttles with Go's timers and ``time.Now()``
(e.g. https://github.com/istio/istio/blob/1.19.0/pilot/pkg/xds/discovery.go#L378-L444).
mesh's code asks a ``Clock`` instead, so the same debounce code runs

* on a ``VirtualClock`` during replay: time jumps from one scheduled instant to the next, and
  a notebook's timeline is identical on every run (DESIGN.md §5);
* on a ``RealClock`` in ``serve``: timers are asyncio timers on the running event loop.

Timers due at the same instant fire in the order they were scheduled.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(order=True)
class Timer:
    when: float
    seq: int
    fn: Callable[[], object] = field(compare=False)
    cancelled: bool = field(default=False, compare=False)
    _handle: asyncio.TimerHandle | None = field(default=None, compare=False, repr=False)

    def cancel(self) -> None:
        self.cancelled = True
        if self._handle is not None:
            self._handle.cancel()


class Clock:
    """What mesh needs of time: now, and call me back later."""

    def now(self) -> float:
        raise NotImplementedError

    def call_at(self, when: float, fn: Callable[[], object]) -> Timer:
        raise NotImplementedError

    def call_later(self, delay: float, fn: Callable[[], object]) -> Timer:
        return self.call_at(self.now() + max(0.0, delay), fn)


class VirtualClock(Clock):
    """A clock that only moves when told to, firing due timers on the way."""

    def __init__(self, start: float = 0.0):
        self._now = start
        self._queue: list[Timer] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self._now

    def call_at(self, when: float, fn: Callable[[], object]) -> Timer:
        timer = Timer(max(when, self._now), next(self._seq), fn)
        heapq.heappush(self._queue, timer)
        return timer

    def next_deadline(self) -> float | None:
        """When the earliest pending timer fires, or None."""
        self._drop_cancelled()
        return self._queue[0].when if self._queue else None

    def advance_to(self, t: float) -> int:
        """Move time to ``t``, firing every timer due on the way (including ones they schedule).
        Returns how many fired."""
        fired = 0
        while True:
            self._drop_cancelled()
            if not self._queue or self._queue[0].when > t:
                break
            timer = heapq.heappop(self._queue)
            self._now = timer.when
            timer.fn()
            fired += 1
        self._now = max(self._now, t)
        return fired

    def advance(self, seconds: float) -> int:
        return self.advance_to(self._now + seconds)

    def run(self, limit: int = 1_000_000) -> int:
        """Fire timers until none are left (``limit`` guards against a timer that re-arms forever)."""
        fired = 0
        while (deadline := self.next_deadline()) is not None:
            fired += self.advance_to(deadline)
            if fired >= limit:
                raise RuntimeError(f"VirtualClock.run: more than {limit} timers fired; a timer re-arms forever?")
        return fired

    def _drop_cancelled(self) -> None:
        while self._queue and self._queue[0].cancelled:
            heapq.heappop(self._queue)


class RealClock(Clock):
    """Wall time, measured from creation; timers run on the asyncio event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None):
        self._loop = loop
        self._start = self._get_loop().time()
        self._seq = itertools.count()

    def _get_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            try:
                self._loop = asyncio.get_running_loop()
            except RuntimeError:
                self._loop = asyncio.new_event_loop()
        return self._loop

    def now(self) -> float:
        return self._get_loop().time() - self._start

    def call_at(self, when: float, fn: Callable[[], object]) -> Timer:
        timer = Timer(when, next(self._seq), fn)
        timer._handle = self._get_loop().call_at(self._start + when, fn)
        return timer
