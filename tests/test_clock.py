import asyncio

import pytest

from mesh.clock import RealClock, VirtualClock


def test_virtual_clock_fires_timers_in_time_order_and_sets_now():
    clock = VirtualClock()
    seen = []
    clock.call_at(2.0, lambda: seen.append(("b", clock.now())))
    clock.call_at(1.0, lambda: seen.append(("a", clock.now())))
    clock.call_later(1.0, lambda: seen.append(("a2", clock.now())))  # same instant: scheduling order
    assert clock.advance_to(1.5) == 2
    assert seen == [("a", 1.0), ("a2", 1.0)]
    assert clock.now() == 1.5
    clock.advance_to(5)
    assert seen[-1] == ("b", 2.0)
    assert clock.now() == 5


def test_timers_scheduled_by_timers_fire_within_the_same_advance():
    clock = VirtualClock()
    seen = []
    clock.call_at(1, lambda: clock.call_later(0.5, lambda: seen.append(clock.now())))
    clock.advance_to(2)
    assert seen == [1.5]


def test_cancelled_timer_does_not_fire_and_run_drains_everything():
    clock = VirtualClock()
    seen = []
    timer = clock.call_at(1, lambda: seen.append("x"))
    clock.call_at(3, lambda: seen.append("y"))
    timer.cancel()
    assert clock.next_deadline() == 3
    clock.run()
    assert seen == ["y"] and clock.now() == 3 and clock.next_deadline() is None


def test_run_refuses_a_timer_that_rearms_forever():
    clock = VirtualClock()

    def again():
        clock.call_later(1, again)

    clock.call_later(1, again)
    with pytest.raises(RuntimeError, match="re-arms forever"):
        clock.run(limit=100)


def test_past_deadlines_fire_now_not_in_the_past():
    clock = VirtualClock(start=10)
    seen = []
    clock.call_at(5, lambda: seen.append(clock.now()))
    clock.advance(0)
    assert seen == [10]


def test_real_clock_runs_timers_on_the_event_loop():
    async def main():
        clock = RealClock()
        fired = asyncio.Event()
        start = clock.now()
        clock.call_later(0.05, fired.set)
        await asyncio.wait_for(fired.wait(), 2)
        return clock.now() - start

    assert asyncio.run(main()) >= 0.04
