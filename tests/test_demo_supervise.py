"""Supervised sidecars: kubelet's back-off, and a kill -9'd Envoy in the demo comes back SYNCED."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from mesh.demo.supervise import Backoff, exit_reason
from mesh.xds.debug import proxy_status


def test_backoff_doubles_to_the_cap_and_resets_after_a_long_run():
    b = Backoff(10.0)  # kubelet's numbers: 10 s, doubling, 5 min at most, reset after 10 min of running
    assert [b.after_exit(1) for _ in range(7)] == [10, 20, 40, 80, 160, 300, 300]
    assert b.after_exit(600) == 10 and b.after_exit(1) == 20


def test_exit_reasons_read_like_kubectl():
    assert exit_reason(-signal.SIGKILL) == "killed by SIGKILL"
    assert exit_reason(1) == "exited with status 1"


@pytest.mark.envoy
@pytest.mark.slow
def test_a_killed_envoy_is_restarted_and_synced_again():
    from envoy_harness import LoopThread
    from test_demo import subnet

    from mesh.demo.runner import BookinfoDemo, DemoOptions

    lt = LoopThread()
    demo = BookinfoDemo(DemoOptions(speed=0, subnet=subnet(), restart_backoff=0.2,
                                    ports=dict.fromkeys(("xds", "secure_xds", "monitoring", "webhook", "debug"), 0)))
    try:
        lt.run(demo.start(), timeout=120)
        pod = demo.pod("ratings")
        old_pid = pod.agent.process.pid
        os.kill(old_pid, signal.SIGKILL)

        async def back_and_synced():
            for _ in range(600):
                rows = {r["NAME"]: r for r in proxy_status(demo.server.ads)}
                row = rows.get(pod.proxy_id)
                if pod.restarts == 1 and pod.supervisor.running and row is not None and demo.all_synced() \
                        and pod.agent.process.pid != old_pid:
                    return row
                await asyncio.sleep(0.1)
            raise AssertionError(f"not back: restarts={pod.restarts} last_exit={pod.supervisor.last_exit!r}")

        row = lt.run(back_and_synced(), timeout=90)
        assert pod.supervisor.last_exit == "killed by SIGKILL"
        assert all(row[t] == "SYNCED" for t in ("CDS", "LDS"))
    finally:
        lt.run(demo.stop(), timeout=60)
        lt.close()
