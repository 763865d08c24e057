"""Where the demo's pods run: in network namespaces (as root), or on loopback stand-ins.

``choose(requested)`` picks the mode, and the demo logs it in one line:

- ``netns`` — each pod is a network namespace made by ``mesh.cni`` on its trace IP (10.244.0.x),
  its ``istio-init`` args (from the injected pod) applied with ``mesh.iptables``, its app a process
  inside it that calls Services by name (captured by iptables into the sidecar; the tcp-echo
  trace's server is Istio's TCP echo, ``mesh.demo.tcp_echo``). Envoy runs in the
  pod's namespace as uid and gid 1337 (``mesh.agent``'s ``netns``), with istiod's REDIRECT layout and a
  workload certificate from istiod's CA (auto-mTLS), and reaches istiod through pilot-agent's XDS
  proxy on a Unix socket. An ingress gateway pod (``InPodGateway``) is a sandbox without app or
  istio-init, its Envoy a ``router``; the demo port-forwards 127.0.0.1 to its 8080.
- ``loopback`` — not root (or no iproute2/iptables): the trace is replayed with loopback
  stand-ins (``mesh.kube.addresses.to_loopback``: 127.10.0.x), apps run in this process on their
  stand-in address and call through their sidecar's HTTP proxy listener; nothing captures traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
import sys
from dataclasses import dataclass

from mesh.agent.agent import die_with_parent
from mesh.cni.ip import unavailable
from mesh.cni.node import Node
from mesh.cni.pod import PodSandbox
from mesh.cni.portforward import PortForward
from mesh.cni.state import STATE_DIR
from mesh.demo.apps import BookinfoApp
from mesh.kube.addresses import to_loopback

log = logging.getLogger(__name__)

MODES = ("auto", "netns", "loopback")


@dataclass(frozen=True)
class Mode:
    name: str  # "netns" or "loopback"
    reason: str

    def describe(self) -> str:
        if self.name == "netns":
            return f"pods: network namespaces on their trace IPs (10.244.0.x), istio-init's iptables capture ({self.reason})"
        return f"pods: loopback stand-ins 127.10.0.x, sidecars as HTTP proxies, no capture ({self.reason})"


def choose(requested: str = "auto", subnet: str | None = None) -> Mode:
    if requested not in MODES:
        raise ValueError(f"pods mode {requested!r}: expected one of {', '.join(MODES)}")
    if requested == "loopback" or subnet is not None:
        return Mode("loopback", "asked for" if requested == "loopback" else "--subnet is a loopback option")
    why_not = unavailable()
    if requested == "netns":
        if why_not:
            raise RuntimeError(f"--pods netns: {why_not}")
        return Mode("netns", "asked for")
    if why_not:
        return Mode("loopback", why_not)
    return Mode("netns", "root, iproute2 and iptables present")


class InPodApp:
    """A bookinfo app as a process inside its pod (``python -m mesh.demo.apps``); ``start`` first
    makes the pod: its sandbox (``mesh.cni``) and istio-init's rules."""

    def __init__(self, pods: NetnsPods, pod: dict, ident):
        self.pods, self.pod, self.ident = pods, pod, ident
        self.app, self.version = ident.labels["app"], ident.labels.get("version", "v1")
        self.pod_name, self.ip, self.namespace = ident.name, ident.ip, ident.namespace
        self.sandbox: PodSandbox | None = None
        self.process: subprocess.Popen | None = None

    async def start(self) -> InPodApp:
        self.sandbox = await self._make_sandbox()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        # die_with_parent: a demo killed without its stop (a crashed notebook kernel) leaves no app behind
        self.process = self.sandbox.spawn([*die_with_parent(), *self.app_command()], stdout=subprocess.PIPE,
                                          env=env, text=True)
        line = await asyncio.to_thread(self.process.stdout.readline)
        if line.strip() != "ready":
            await self.stop()
            raise RuntimeError(f"app {self.app} in pod {self.sandbox.key} did not start")
        return self

    async def _make_sandbox(self) -> PodSandbox:
        return await self.pods.add_pod(self.pod, self.ident)

    def app_command(self) -> list[str]:
        """The app container: Istio's tcp-echo server with its container's args
        (``mesh.demo.tcp_echo``), else a tiny bookinfo app (``mesh.demo.apps``; ``sleep`` idles)."""
        if self.app == "tcp-echo":
            container = next(c for c in self.pod["spec"]["containers"] if c["name"] == "tcp-echo")
            return [sys.executable, "-m", "mesh.demo.tcp_echo", *container.get("args", [])]
        return [sys.executable, "-m", "mesh.demo.apps", "--pod", self.pod_name, "--namespace", self.namespace,
                "--ip", self.ip, "--app", self.app, "--version", self.version]

    async def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            await asyncio.to_thread(self.process.wait, 5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            await asyncio.to_thread(self.process.wait)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.process = None


class InPodGateway:
    """An ingress gateway's pod: its sandbox only (no app, no istio-init: gateways are not injected);
    the demo runs its Envoy there as a ``router``."""

    def __init__(self, pods: NetnsPods, pod: dict, ident):
        self.pods, self.pod, self.ident = pods, pod, ident
        self.app, self.version = ident.labels.get("app", "istio-ingressgateway"), ident.labels.get("version", "")
        self.pod_name, self.ip, self.namespace = ident.name, ident.ip, ident.namespace
        self.sandbox: PodSandbox | None = None

    async def start(self) -> InPodGateway:
        self.sandbox = await self.pods.add_pod(self.pod, self.ident)
        return self

    async def stop(self) -> None:
        pass


class LoopbackPods:
    """Today's fallback: stand-in addresses, apps in this process."""

    mode = "loopback"

    def __init__(self, subnet: str | None = None):
        self.subnet = subnet

    def prepare(self, trace):
        return to_loopback(trace, self.subnet)

    async def start(self) -> None:
        pass

    def make_app(self, pod: dict, ident) -> BookinfoApp:
        labels = ident.labels
        return BookinfoApp(ident.name, ident.ip, labels["app"], labels.get("version", "v1"), ident.namespace)

    def services_changed(self, services: list[dict], domain: str) -> None:
        pass

    async def stop(self) -> None:
        pass


class NetnsPods:
    """Pods as network namespaces (``mesh.cni``), istio-init applied, apps inside them."""

    mode = "netns"

    def __init__(self):
        self.node = Node()
        self.services: list[dict] = []
        self.domain = "cluster.local"
        self.forwards: list[PortForward] = []

    def prepare(self, trace):
        return trace

    async def start(self) -> None:
        await asyncio.to_thread(self.node.start)

    def make_app(self, pod: dict, ident) -> InPodApp | InPodGateway:
        return InPodGateway(self, pod, ident) if ident.proxy_type == "router" else InPodApp(self, pod, ident)

    async def add_pod(self, pod: dict, ident) -> PodSandbox:
        """What kubelet, the CNI plugin and istio-init do before the pod's containers start."""
        sandbox = await asyncio.to_thread(self.node.add_pod, ident.name, ident.namespace, ident.ip,
                                          self.services, self.domain)
        init = istio_init_args(pod)
        if init is not None:
            await asyncio.to_thread(sandbox.istio_init, init)
        return sandbox

    async def add_vm(self, ident, istio_init: list[str]) -> PodSandbox:
        """A VM's namespace on the node's bridge (``Node.add_vm``) with istio-iptables' rules, as
        the VM's ``istio-start.sh`` applies them before starting pilot-agent."""
        sandbox = await asyncio.to_thread(self.node.add_vm, ident.name, ident.namespace, ident.ip,
                                          self.services, self.domain)
        await asyncio.to_thread(sandbox.istio_init, istio_init)
        return sandbox

    def sandbox(self, key: str) -> PodSandbox | None:
        return self.node.pods.get(key)

    def services_changed(self, services: list[dict], domain: str) -> None:
        self.services, self.domain = services, domain
        self.node.update_hosts(services, domain)

    async def forward(self, key: str, port: int, local_port: int = 0) -> PortForward:
        """``127.0.0.1:<local_port>`` → the pod's ``<ip>:<port>`` (kubectl port-forward)."""
        sandbox = self.node.pods[key]
        path = STATE_DIR / f"{self.node.run}-pf{len(self.forwards)}.sock"
        forward = await PortForward(sandbox, port, path, local_port).start()
        self.forwards.append(forward)
        return forward

    async def remove_pod(self, key: str) -> None:
        await asyncio.to_thread(self.node.remove_pod, key)

    async def stop(self) -> None:
        for forward in self.forwards:
            with contextlib.suppress(Exception):
                await forward.stop()
        self.forwards = []
        await asyncio.to_thread(self.node.stop)


def istio_init_args(pod: dict) -> list[str] | None:
    """The ``istio-init`` container's args of an injected pod (None: not injected, or istio-cni)."""
    for container in (pod.get("spec") or {}).get("initContainers") or []:
        if container.get("name") == "istio-init":
            return list(container.get("args") or [])
    return None


def runtime(mode: Mode, subnet: str | None = None):
    return NetnsPods() if mode.name == "netns" else LoopbackPods(subnet)
