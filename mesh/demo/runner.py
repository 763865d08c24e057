"""Start and stop the whole demo: the mini istiod, an app and a real Envoy for every bookinfo pod.

The order is a cluster's: the control plane first (``mesh serve``'s server, in this process,
https://github.com/istio/istio/blob/1.19.0/pilot/cmd/pilot-discovery/app/cmd.go#L93-L115), then
the pods, each an app plus a sidecar that connects to istiod's plaintext xDS port (as
pilot-agent's ``Agent.Run`` does, https://github.com/istio/istio/blob/1.19.0/pkg/istio-agent/agent.go#L337-L400),
then wait until every sidecar has ACKed what it was sent. Pods the trace adds later (a scale-out)
get an app and a sidecar when they appear, and lose both when they are deleted.

Where the pods run — network namespaces with istio-init's capture, or loopback stand-ins — is
``mesh.demo.podmode``'s choice, logged in one line at start.

Each sidecar is supervised (``supervise.py``): an Envoy that dies is restarted with kubelet's
back-off, and comes back SYNCED. Stopping goes the other way: Envoys first (SIGTERM, then SIGKILL; each Envoy also dies with this
process, see ``mesh.agent.agent``), then the apps, the pods' namespaces, then the server. Nothing
is left running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from mesh.agent.agent import EnvoyAgent
from mesh.agent.certs import WorkloadCertConfig
from mesh.bootstrap import Server, ServerArgs
from mesh.bootstrap.args import DEFAULT_PORTS
from mesh.clock import RealClock
from mesh.demo import podmode
from mesh.demo.apps import APP_PORT, BookinfoApp
from mesh.demo.pods import is_ingress_gateway, is_mesh_pod, pod_identity
from mesh.demo.supervise import Backoff, EnvoySupervisor
from mesh.kube.client import ReplayClient
from mesh.kube.trace import load_trace
from mesh.xds.debug import proxy_synced

log = logging.getLogger(__name__)

INGRESS_HTTP_PORT = 8080  # the ingress gateway container's HTTP port (its Service maps 80 to it)


@dataclass
class DemoPod:
    """One running pod of the demo: its app and its sidecar."""

    name: str
    namespace: str
    ip: str
    app: BookinfoApp | podmode.InPodApp
    agent: EnvoyAgent | None = None
    ready: bool = False  # its Envoy is LIVE
    starting: asyncio.Task | None = None  # the task bringing it up, awaited before tearing it down
    supervisor: EnvoySupervisor | None = None  # restarts its Envoy if it dies (supervise.py)

    @property
    def restarts(self) -> int:
        return self.supervisor.restarts if self.supervisor else 0

    @property
    def proxy_id(self) -> str:
        return f"{self.name}.{self.namespace}"


# ``--speed 0`` ("all at once") for a demo: an event at t is due t/10⁶ s after start (t=10 after
# 10 µs), on the clock, so after istiod's stages have run. A ReplayClient at speed 0 would apply
# the whole trace at construction, before istiod exists: pods would be admitted before the
# injection webhook is registered and start without istio-init (nothing captured) — true to
# Kubernetes, but not what a demo of the mesh wants.
ALL_AT_ONCE = 1e6


def replay_speed(speed: float) -> float:
    return ALL_AT_ONCE if speed <= 0 else speed


@dataclass
class DemoOptions:
    trace: str = "bookinfo"
    speed: float = 1.0
    subnet: str | None = None  # loopback mode: pods on <subnet>.x instead of 127.10.0.x
    pods: str = "auto"  # where pods run: "auto", "netns" or "loopback" (mesh.demo.podmode)
    ports: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_PORTS))
    envoy_log_level: str = "warning"
    restart_backoff: float = 1.0  # first delay before restarting a dead Envoy (kubelet: 10 s; supervise.py)
    delta: bool | None = None  # Delta xDS for every sidecar (None: ISTIO_DELTA_XDS from the environment)


class BookinfoDemo:
    def __init__(self, options: DemoOptions | None = None):
        self.options = options or DemoOptions()
        self.server: Server | None = None
        self.trace = None  # the trace replayed (with loopback stand-ins in loopback mode), once started
        self.mode: podmode.Mode | None = None
        self.runtime = None  # podmode.LoopbackPods or NetnsPods
        self.forwards: dict[str, object] = {}  # netns mode: name → PortForward from 127.0.0.1
        self.pods: dict[str, DemoPod] = {}  # by "<name>.<namespace>"
        self._tasks: set[asyncio.Task] = set()  # pods starting or stopping
        self._failures: list[BaseException] = []  # what those tasks raised, until a wait reports it
        self._stopping = False

    # -- start ------------------------------------------------------------------------------
    async def start(self, timeout: float = 90.0) -> BookinfoDemo:
        """Everything up and every sidecar synced; on failure nothing is left running."""
        try:
            await self._start(timeout)
        except BaseException:
            await self.stop()
            raise
        return self

    async def _start(self, timeout: float) -> None:
        opts = self.options
        self.mode = podmode.choose(opts.pods, opts.subnet)
        log.info("%s", self.mode.describe())
        self.runtime = podmode.runtime(self.mode, opts.subnet)
        self.trace = self.runtime.prepare(load_trace(opts.trace))
        expected = first_workload_wave(self.trace)
        if not expected:
            raise ValueError(f"trace {opts.trace}: it has no pods with an app label and an IP to run")
        if self.mode.name == "netns":  # and the ingress gateways, whose port-forward is the way in
            expected |= ingress_gateways(self.trace)
        await self.runtime.start()
        await self._start_server(dict(opts.ports))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        await self._wait(lambda: expected <= {k for k, p in self.pods.items() if p.ready},
                         deadline, f"the pods {sorted(expected)} to start")
        await self._wait(self.all_synced, deadline, "every sidecar to ACK its config")
        if self.mode.name == "netns":  # the way in from the root namespace: loopback only (kubectl port-forward)
            with contextlib.suppress(KeyError):
                entry = self.pod("productpage")
                self.forwards["productpage"] = await self.runtime.forward(entry.proxy_id, APP_PORT)
            for gateway in (p for p in self.pods.values() if p.agent and p.agent.pod.proxy_type == "router"):
                self.forwards[gateway.app.app] = await self.runtime.forward(gateway.proxy_id, INGRESS_HTTP_PORT)

    async def _start_server(self, ports: dict[str, int]) -> None:
        opts = self.options
        clock = RealClock()
        client = ReplayClient(self.trace, clock, speed=replay_speed(opts.speed))
        # ``trace`` is named too, so the server treats the cluster as its config source as well.
        self.server = Server(ServerArgs(trace=opts.trace, clock=clock, ports=ports, speed=replay_speed(opts.speed)),
                             kube_client=client)
        self.server.run_all()
        await self.server.start()
        # Pods' hosts files follow the Services (cluster DNS); apps and sidecars follow the pods.
        services = client.informer("services")

        def refresh(*_):
            self.runtime.services_changed(services.list(), self.server.environment.domain_suffix or "cluster.local")
        services.add_event_handler(on_add=refresh, on_update=refresh, on_delete=refresh)
        client.informer("pods").add_event_handler(on_add=self._pod_added, on_delete=self._pod_deleted)

    async def restart_server(self, timeout: float = 60.0) -> None:
        """Stop the control plane and start a fresh one on the same ports, as a restarted istiod
        (a new process, empty state) comes back behind the same Service. The apps and Envoys keep
        running on their last config meanwhile; each Envoy reconnects by itself and is sent
        everything again. The new server replays the trace from its start."""
        ports = dict(self.server.bound_ports)
        await self.server.stop()
        self.server = None
        await self._start_server({name: ports.get(name, 0) for name in self.options.ports})
        deadline = asyncio.get_running_loop().time() + timeout
        await self._wait(self.all_synced, deadline, "every sidecar to reconnect and ACK")

    async def _wait(self, predicate, deadline: float, what: str) -> None:
        loop = asyncio.get_running_loop()
        while not predicate():
            if loop.time() > deadline:
                raise TimeoutError(f"demo: timed out waiting for {what}")
            if self._failures:
                raise self._failures.pop(0)
            await asyncio.sleep(0.05)

    def _pod_added(self, pod: dict) -> None:
        if self._stopping or not (is_mesh_pod(pod) or (self.mode.name == "netns" and is_ingress_gateway(pod))):
            return
        self._spawn(self._start_pod(pod))

    def _pod_deleted(self, pod: dict) -> None:
        key = f"{pod['metadata']['name']}.{pod['metadata'].get('namespace', '')}"
        demo_pod = self.pods.pop(key, None)
        if demo_pod is not None:
            self._spawn(self._stop_pod(demo_pod))

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("demo: a pod failed to start or stop: %s", task.exception())
            self._failures.append(task.exception())

    async def _start_pod(self, pod: dict) -> None:
        ident = pod_identity(pod, self.server.environment.domain_suffix or "cluster.local")
        key = f"{ident.name}.{ident.namespace}"
        if key in self.pods:
            return
        app = self.runtime.make_app(pod, ident)
        demo_pod = DemoPod(ident.name, ident.namespace, ident.ip, app, starting=asyncio.current_task())
        self.pods[key] = demo_pod
        await app.start()
        # netns: Envoy runs in the pod's namespace (uid/gid 1337, REDIRECT layout) behind the agent's XDS
        # proxy on a Unix socket; loopback: in this namespace, on the pod's stand-in address.
        netns = app.sandbox.netns if self.mode.name == "netns" else None
        # Captured pods need no HTTP proxy listener (Istio's default: no proxyHttpPort); loopback apps use it.
        agent = EnvoyAgent(ident, self.server.args.host, self.server.bound_ports["xds"],
                           http_proxy_port=None if netns else 15080, certs=self._workload_certs(ident) if netns else None,
                           log_level=self.options.envoy_log_level, delta=self.options.delta, netns=netns)
        demo_pod.agent = agent
        await agent.start()
        await agent.wait_ready(timeout=30)
        demo_pod.supervisor = EnvoySupervisor(key, agent, Backoff(self.options.restart_backoff)).start()
        demo_pod.ready = True
        if netns:
            log.info("pod %s: app on %s:%d, sidecar in network namespace %s (capture: 15001/15006)",
                     key, ident.ip, APP_PORT, netns)
        else:
            log.info("pod %s: app on %s:%d, sidecar on %s:%d", key, ident.ip, APP_PORT, *agent.proxy_address)

    def _workload_certs(self, ident) -> WorkloadCertConfig:
        """netns mode, as in a real mesh: every agent gets a workload certificate from istiod's CA
        (secure port, the pod's service-account token), so sidecars talk auto-mTLS and
        PeerAuthentication decides what the inbound side accepts."""
        return workload_certs(self.server, ident.namespace, ident.service_account)

    async def _stop_pod(self, demo_pod: DemoPod) -> None:
        # A pod deleted while it starts: let the start finish (or fail) so no Envoy escapes.
        if demo_pod.starting is not None and demo_pod.starting is not asyncio.current_task():
            await asyncio.wait([demo_pod.starting])
        if demo_pod.supervisor is not None:
            await demo_pod.supervisor.stop()  # stopping on purpose: no restart
        if demo_pod.agent is not None:
            await demo_pod.agent.stop()
            demo_pod.agent.cleanup()
        await demo_pod.app.stop()
        if self.mode is not None and self.mode.name == "netns":
            await self.runtime.remove_pod(demo_pod.proxy_id)

    # -- state ------------------------------------------------------------------------------
    def all_synced(self) -> bool:
        """Is every sidecar caught up (``mesh.xds.debug.proxy_synced``: proxy-status's SYNCED)?"""
        return bool(self.pods) and all(proxy_synced(self.server.ads, p.proxy_id) for p in self.pods.values())

    def pod(self, app: str) -> DemoPod:
        """The first pod (by name) of ``app``."""
        for key in sorted(self.pods):
            if self.pods[key].app.app == app:
                return self.pods[key]
        raise KeyError(f"no {app} pod in the demo")

    def entry_pod(self) -> DemoPod:
        """Where the printed commands send traffic from: productpage, else the first pod."""
        try:
            return self.pod("productpage")
        except KeyError:
            return self.pods[min(self.pods)]

    def curl_commands(self) -> list[str]:
        """Commands that send traffic through a sidecar: to productpage (which calls details and
        reviews, which may call ratings) and straight to reviews and ratings; in netns mode, a line
        to tcp-echo's TCP port when the trace has it."""
        entry = self.entry_pod()
        hosts = [h for h in ("productpage", "reviews", "ratings", "details")
                 if any(p.app.app == h for p in self.pods.values())]
        if self.mode.name == "netns":  # from inside the pod, as the app calls: captured by iptables
            commands = [f"python -m mesh exec {entry.proxy_id} -- curl -s http://{host}:{APP_PORT}/" for host in hosts]
            if any(p.app.app == "tcp-echo" for p in self.pods.values()):  # the tcp-echo trace: a line over TCP
                commands.append(f"python -m mesh exec {entry.proxy_id} -- bash -c "
                                f"'exec 3<>/dev/tcp/tcp-echo/9000; echo world >&3; head -1 <&3'")
            return commands
        proxy = f"http://{entry.ip}:{entry.agent.http_proxy_port}/"
        return [f"curl -s -H 'Host: {host}:{APP_PORT}' {proxy}" for host in hosts]

    def forward_urls(self) -> dict[str, str]:
        return {name: f"http://127.0.0.1:{fwd.local_port}/" for name, fwd in self.forwards.items()}

    def status_commands(self) -> list[str]:
        port = self.server.bound_ports["debug"]
        flag = "" if port == DEFAULT_PORTS["debug"] else f" --debug-port {port}"
        entry = self.entry_pod()
        return [f"python -m mesh proxy-status{flag}",
                f"python -m mesh proxy-config clusters {entry.proxy_id}{flag}",
                f"python -m mesh proxy-config routes {entry.proxy_id}{flag}"]

    # -- stop -------------------------------------------------------------------------------
    async def stop(self) -> None:
        """Envoys, then apps, then the server; safe to call twice and after a failed start."""
        self._stopping = True
        for task in list(self._tasks):
            if not task.done():
                task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        self._tasks.clear()
        pods, self.pods = list(self.pods.values()), {}
        results = await asyncio.gather(*(self._stop_pod(p) for p in pods), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                log.warning("stopping a pod failed: %s", result)
        self.forwards = {}
        if self.runtime is not None:
            await self.runtime.stop()  # the pods' namespaces, the node, the forwards
        if self.server is not None:
            await self.server.stop()
            self.server = None


def workload_certs(server: Server, namespace: str, service_account: str) -> WorkloadCertConfig:
    """How an agent gets its workload certificate from ``server``'s CA: the secure port, a token
    for ``namespace``/``service_account``, the mesh's trust domain."""
    return WorkloadCertConfig(
        f"{server.args.host}:{server.bound_ports['secure_xds']}", server.ca.root_pem,
        lambda: server.service_account_tokens.issue(namespace, service_account),
        trust_domain=server.environment.mesh().get("trustDomain") or "cluster.local")


def ingress_gateways(trace) -> set[str]:
    """``<name>.<ns>`` of the ingress gateway pods the trace creates (bookinfo's and the gateways trace's one)."""
    return {f"{e.object['metadata']['name']}.{e.object['metadata']['namespace']}" for e in trace.events
            if e.type == "ADDED" and e.object.get("kind") == "Pod" and is_ingress_gateway(e.object)}


def first_workload_wave(trace) -> set[str]:
    """``<name>.<ns>`` of the mesh pods the trace creates first (bookinfo's six at t=5): the demo is
    up when these run and are synced."""
    waves: dict[float, set[str]] = {}
    for event in trace.events:
        obj = event.object
        if event.type == "ADDED" and obj.get("kind") == "Pod" and is_mesh_pod(obj):
            waves.setdefault(event.t, set()).add(f"{obj['metadata']['name']}.{obj['metadata']['namespace']}")
    return waves[min(waves)] if waves else set()
