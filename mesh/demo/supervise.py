"""Supervised sidecars: a dead Envoy in the demo is restarted with back-off, as kubelet restarts a container.

Go: none in istiod. In Istio 1.19 pilot-agent does not restart Envoy: when Envoy exits, the
agent's ``Run`` returns and pilot-agent exits with it
(https://github.com/istio/istio/blob/1.19.0/pkg/envoy/agent.go#L87-L111), so the
``istio-proxy`` container ends and **kubelet** restarts it — with its crash-loop back-off:
10 s after the first exit, doubling each time, at most 5 minutes, and back to 10 s once a
container has run for 10 minutes (kubelet's ``backOffPeriod`` / ``MaxContainerBackOff``). That is
what this module models: the pod's agent + Envoy as one container, restarted whole (a fresh
Envoy, a fresh SDS server and workload certificate), the reason logged, the restarts counted
(kubectl's RESTARTS column). The new Envoy connects to istiod like any proxy; once it has ACKed
everything, ``proxy-status`` shows it SYNCED again.

Simplifications, named: the first back-off defaults to 1 s rather than kubelet's 10 s, so a
demo recovers while you watch (``DemoOptions.restart_backoff``); the cap and the reset after a
long healthy run keep kubelet's ratios (cap = 30 × first, reset after 60 × first).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from dataclasses import dataclass

from mesh.agent.agent import EnvoyAgent, EnvoyError

log = logging.getLogger(__name__)

KUBELET_INITIAL_BACKOFF = 10.0  # seconds (kubelet)
KUBELET_MAX_BACKOFF = 300.0  # seconds (kubelet's MaxContainerBackOff)


def exit_reason(returncode: int | None) -> str:
    """``exited with status 1`` / ``killed by SIGKILL``, as kubectl describes a terminated container."""
    if returncode is None:
        return "exited"
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with status {returncode}"


@dataclass
class Backoff:
    """Kubelet's crash-loop back-off for one container."""

    initial: float = KUBELET_INITIAL_BACKOFF
    cap: float | None = None  # default: 30 × initial (10 s → 300 s, as kubelet)
    reset_after: float | None = None  # a run this long resets it; default 60 × initial (10 min)

    def __post_init__(self) -> None:
        self.cap = self.cap if self.cap is not None else self.initial * 30
        self.reset_after = self.reset_after if self.reset_after is not None else self.initial * 60
        self._next = self.initial

    def after_exit(self, ran_for: float) -> float:
        """The delay before the next start, given how long the last run lasted."""
        if ran_for >= self.reset_after:
            self._next = self.initial
        delay, self._next = self._next, min(self._next * 2, self.cap)
        return delay


class EnvoySupervisor:
    """Watch one pod's agent; when its Envoy dies, start it again after the back-off."""

    def __init__(self, name: str, agent: EnvoyAgent, backoff: Backoff, ready_timeout: float = 30.0):
        self.name = name
        self.agent = agent
        self.backoff = backoff
        self.ready_timeout = ready_timeout
        self.restarts = 0
        self.last_exit = ""  # why the Envoy last stopped running
        self.running = True  # Envoy up and LIVE (False while waiting to restart)
        self._task: asyncio.Task | None = None

    def start(self) -> EnvoySupervisor:
        self._task = asyncio.get_running_loop().create_task(self._watch())
        return self

    async def stop(self) -> None:
        """Stop watching (before the agent is stopped on purpose)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            process = self.agent.process
            if process is not None:
                await process.wait()
                self.last_exit = exit_reason(process.returncode)
            else:
                self.last_exit = "failed to start"
            self.running = False
            delay = self.backoff.after_exit(loop.time() - started)
            log.warning("pod %s: envoy %s after %.1fs; restarting it in %.1fs (restart %d), as kubelet would",
                        self.name, self.last_exit, loop.time() - started, delay, self.restarts + 1)
            await self.agent.stop()  # the rest of the "container": SDS server, log file
            await asyncio.sleep(delay)
            self.restarts += 1
            try:
                await self.agent.start()
                await self.agent.wait_ready(timeout=self.ready_timeout)
            except EnvoyError as err:
                log.error("pod %s: envoy did not come back: %s", self.name, str(err).splitlines()[0])
                continue  # the next round sees the dead or missing process and backs off again
            self.running = True
            log.info("pod %s: envoy restarted (pid %d, %d restart(s))", self.name, self.agent.process.pid,
                     self.restarts)
