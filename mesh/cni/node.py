"""The run's node: a mesh-owned network namespace with a bridge, and the pods plugged into it.

What a CNI ``bridge`` plugin sets up on a Kubernetes node (a bridge, and per pod a veth pair with
one end on the bridge and the other as the pod's ``eth0``, the pod's IP and a default route via
the bridge's address), except that the "node" is itself a network namespace that mesh creates
and that has **no link to the root namespace**: no uplink, no NAT, no forwarding out. Pod-to-pod
traffic crosses the bridge; anything else (a ClusterIP nobody captured, an outside address) ends
in the node namespace at a ``prohibit`` route, and the connect fails at once.

Containment, in the root namespace (checked before the first pod, and by the tests):

- blackhole routes for 10.244.0.0/16, 10.96.0.0/12 and 198.18.0.0/15 (outside hosts and VMs)
  are installed first, so a packet the root namespace sends to a pod, Service or VM address
  fails at once instead of leaving the machine;
- no other address or route of those ranges may be there (``Node.start`` refuses to run);
- the veth pairs are created inside the node namespace with their peer moved straight into the
  pod's, so not even a transient link appears in the root namespace.

``stop`` deletes the pods' and the node's namespaces, their ``/etc/netns`` files and the state
file; the blackhole routes go when the last live mesh run stops, and only if a mesh run added
them. ``start`` first removes what runs whose process is gone left behind (``mesh.cni.state``).
"""

from __future__ import annotations

import ipaddress
import itertools
import logging
import os
import shutil

from mesh.cni import state
from mesh.cni.ip import (
    CONTAINED,
    EXTERNAL_CIDR,
    POD_CIDR,
    SERVICE_CIDR,
    NetError,
    ip,
    ip_json,
    netns_names,
    root_exposure,
)
from mesh.cni.pod import ETC_NETNS, PodSandbox

log = logging.getLogger(__name__)

BRIDGE = "br0"
GATEWAY = "10.244.0.1"  # the bridge's address: the pods' default route (.1, which the pod pool skips)
VM_GATEWAY = "198.18.0.1"  # the bridge's address for VMs (a /32): their default route
_counter = itertools.count()


class ContainmentError(RuntimeError):
    """The root namespace has an address or route of the pod/Service ranges: mesh will not start."""


def _delete_netns(name: str) -> None:
    ip("netns", "del", name, check=False)
    shutil.rmtree(ETC_NETNS / name, ignore_errors=True)


def _installed_blackholes() -> set[str]:
    return {r["dst"] for r in ip_json("-4", "route", "show", "type", "blackhole")}


def _release_blackholes_if_last() -> None:
    """Under the lock: with no live run left, remove the blackhole routes a mesh run added."""
    if any(state.is_live(run, st) for run, st in state.runs().items()):
        return
    present = _installed_blackholes()
    for dst in state.blackholes():
        if dst in present:
            ip("route", "del", "blackhole", dst, check=False)
    state.set_blackholes([])


def clean_stale() -> list[str]:
    """Remove what dead runs left: their namespaces, /etc/netns files and state files (and the
    blackhole routes when no run is left). Returns the namespaces removed."""
    removed = []
    with state.locked():
        runs = state.runs()
        dead = {run for run, st in runs.items() if not state.is_live(run, st)}
        for name in netns_names():
            match = state.NETNS_NAME.match(name)
            if not match:
                continue
            run = f"mesh{match.group(1)}.{match.group(2)}"
            if run in dead or (run not in runs and not state.alive(int(match.group(1)))):
                _delete_netns(name)
                removed.append(name)
        for entry in ETC_NETNS.glob("mesh*") if ETC_NETNS.exists() else ():
            match = state.NETNS_NAME.match(entry.name)
            if match and (f"mesh{match.group(1)}.{match.group(2)}" in dead or not state.alive(int(match.group(1)))):
                shutil.rmtree(entry, ignore_errors=True)
        for run in dead:
            state.path(run).unlink(missing_ok=True)
        _release_blackholes_if_last()
    if removed:
        log.info("removed %d namespaces left by runs that are gone: %s", len(removed), ", ".join(removed))
    return removed


def claim_blackholes(save_state) -> None:
    """Check the root namespace is contained, install the blackhole routes that are missing
    (recording them as mesh's), and ``save_state()`` — all under the lock, after removing what dead
    runs left, so the routes are there before any namespace of this run exists."""
    clean_stale()
    with state.locked():
        exposure = root_exposure()
        if exposure:
            raise ContainmentError("the root network namespace already has addresses or routes of the pod/"
                                   f"Service ranges {', '.join(CONTAINED)}: {'; '.join(exposure)}")
        present = _installed_blackholes()
        added = [dst for dst in CONTAINED if dst not in present]
        for dst in added:
            ip("route", "add", "blackhole", dst)
        if added:
            state.set_blackholes(sorted(set(state.blackholes()) | set(added)))
        save_state()  # before the first namespace exists, so a crash leaves it findable


class Guard:
    """A run that holds only the blackhole routes, no namespaces: the test suite takes one as root,
    so a trace address that slipped into the root namespace fails at once instead of leaving."""

    def __init__(self):
        self.run = f"mesh{os.getpid()}.{next(_counter)}"

    def start(self) -> Guard:
        claim_blackholes(lambda: state.write(self.run, {"pid": os.getpid(), "started": state.start_time(os.getpid()),
                                                         "netns": [], "pods": {}}))
        return self

    def stop(self) -> None:
        with state.locked():
            state.path(self.run).unlink(missing_ok=True)
            _release_blackholes_if_last()


class Node:
    """One run's node namespace and pods. ``start()`` before ``add_pod``; ``stop()`` removes all."""

    def __init__(self):
        self.run = f"mesh{os.getpid()}.{next(_counter)}"
        self.netns = f"{self.run}-node"
        self.pods: dict[str, PodSandbox] = {}
        self._veths = itertools.count()
        self._started = False

    def _save(self) -> None:
        state.write(self.run, {"pid": os.getpid(), "started": state.start_time(os.getpid()),
                               "netns": [self.netns, *(p.netns for p in self.pods.values())],
                               "pods": {k: {"netns": p.netns, "ip": p.ip} for k, p in self.pods.items()}})

    def start(self) -> Node:
        claim_blackholes(self._save)
        self._started = True
        try:
            ip("netns", "add", self.netns)
            ip("link", "set", "lo", "up", netns=self.netns)
            ip("link", "add", BRIDGE, "type", "bridge", netns=self.netns)
            ip("addr", "add", f"{GATEWAY}/{POD_CIDR.split('/')[1]}", "dev", BRIDGE, netns=self.netns)
            ip("addr", "add", f"{VM_GATEWAY}/32", "dev", BRIDGE, netns=self.netns)
            ip("link", "set", BRIDGE, "up", netns=self.netns)
            # A packet no sidecar captured (a ClusterIP, an outside address) reaches the node and
            # must fail at once, not time out: forwarding on here (only here) turns a "prohibit"
            # route into ICMP "administratively prohibited", which TCP treats as fatal.
            ip("netns", "exec", self.netns, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1",
               "net.ipv4.icmp_ratelimit=0")  # every refused connect gets its answer, not one a second
            ip("route", "add", "prohibit", SERVICE_CIDR, netns=self.netns)
            ip("route", "add", "prohibit", "default", netns=self.netns)
        except NetError:
            self.stop()
            raise
        log.info("node %s: bridge %s %s, blackholes for %s in the root namespace", self.netns, BRIDGE, GATEWAY,
                 " and ".join(CONTAINED))
        return self

    def netns_for(self, name: str, namespace: str) -> str:
        return f"{self.run}-{name}.{namespace}"

    def add_pod(self, name: str, namespace: str, pod_ip: str, services: list[dict] | None = None,
                domain: str = "cluster.local") -> PodSandbox:
        """The pod's sandbox: namespace, lo up, eth0 on the bridge with ``pod_ip``, a default route
        via the bridge, and its hosts file. Raises ValueError for an address outside the pod range."""
        if not self._started:
            raise RuntimeError("Node.start() first")
        if ipaddress.ip_address(pod_ip) not in ipaddress.ip_network(POD_CIDR) or pod_ip == GATEWAY:
            raise ValueError(f"pod {name}.{namespace}: IP {pod_ip} is not a pod address in {POD_CIDR}")
        return self._add_sandbox(name, namespace, pod_ip, services, domain, vm=False)

    def add_vm(self, name: str, namespace: str, vm_ip: str, services: list[dict] | None = None,
               domain: str = "cluster.local") -> PodSandbox:
        """A VM outside the cluster: a namespace like a pod's on the same bridge, but its address
        (a /32) is in the external range (``EXTERNAL_CIDR``), its default route the bridge's
        ``VM_GATEWAY``, and the node routes that one address onto the bridge. Pods and the VM reach
        each other through the node; nothing else changes (the root namespace keeps only its
        blackhole routes, one of them for this range)."""
        if not self._started:
            raise RuntimeError("Node.start() first")
        if ipaddress.ip_address(vm_ip) not in ipaddress.ip_network(EXTERNAL_CIDR) or vm_ip == VM_GATEWAY:
            raise ValueError(f"VM {name}.{namespace}: IP {vm_ip} is not a VM address in {EXTERNAL_CIDR}")
        return self._add_sandbox(name, namespace, vm_ip, services, domain, vm=True)

    def _add_sandbox(self, name: str, namespace: str, pod_ip: str, services: list[dict] | None,
                     domain: str, vm: bool) -> PodSandbox:
        pod = PodSandbox(name, namespace, pod_ip, self.netns_for(name, namespace), f"v{next(self._veths)}")
        if pod.key in self.pods:
            raise ValueError(f"pod {pod.key} already has a sandbox")
        self.pods[pod.key] = pod
        with state.locked():
            self._save()
        try:
            ip("netns", "add", pod.netns)
            ip("link", "set", "lo", "up", netns=pod.netns)
            # Created in the node namespace, the peer goes straight into the pod's: the root
            # namespace never holds either end.
            ip("link", "add", pod.veth, "type", "veth", "peer", "name", "eth0", "netns", pod.netns, netns=self.netns)
            ip("link", "set", pod.veth, "master", BRIDGE, "up", netns=self.netns)
            prefix = "32" if vm else POD_CIDR.split("/")[1]
            ip("addr", "add", f"{pod_ip}/{prefix}", "dev", "eth0", netns=pod.netns)
            ip("link", "set", "eth0", "up", netns=pod.netns)
            if vm:
                ip("route", "add", VM_GATEWAY, "dev", "eth0", "scope", "link", netns=pod.netns)
                ip("route", "add", f"{pod_ip}/32", "dev", BRIDGE, netns=self.netns)
            ip("route", "add", "default", "via", VM_GATEWAY if vm else GATEWAY, "dev", "eth0", netns=pod.netns)
            pod.write_hosts(services or [], domain)
        except (NetError, OSError):
            self.remove_pod(pod.key)
            raise
        return pod

    def remove_pod(self, key: str) -> None:
        pod = self.pods.pop(key, None)
        if pod is None:
            return
        _delete_netns(pod.netns)  # deleting the namespace deletes eth0 and with it the veth's other end
        with state.locked():
            self._save()

    def update_hosts(self, services: list[dict], domain: str = "cluster.local") -> None:
        for pod in self.pods.values():
            pod.write_hosts(services, domain)

    def stop(self) -> None:
        """Remove every pod, the node namespace, the state file; the blackholes if this is the last run."""
        if not self._started:
            return
        for key in list(self.pods):
            self.remove_pod(key)
        _delete_netns(self.netns)
        with state.locked():
            state.path(self.run).unlink(missing_ok=True)
            _release_blackholes_if_last()
        self._started = False

    def __enter__(self) -> Node:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def find_pod(query: str, run: str | None = None) -> tuple[str, dict]:
    """``<pod>[.<ns>]`` (or a unique prefix of a pod name, such as ``productpage``) among live runs'
    pods (or run ``run``'s only, when two demos run side by side) → (its netns, its state). Raises
    LookupError naming the candidates."""
    name, _, namespace = query.partition(".")
    namespace = namespace or "default"
    hits = []
    with state.locked():
        for name_of_run, st in state.runs().items():
            if not state.is_live(name_of_run, st) or run not in (None, name_of_run):
                continue
            for key, pod in (st.get("pods") or {}).items():
                pod_name, _, pod_ns = key.rpartition(".")
                if pod_ns == namespace and (pod_name == name or pod_name.startswith(name + "-")):
                    hits.append((pod_name == name, key, pod))
    exact = [h for h in hits if h[0]]
    hits = exact or hits
    if not hits:
        raise LookupError(f"no running pod {name} in namespace {namespace} (is `mesh demo` running as root?)")
    if len(hits) > 1:
        raise LookupError(f"{query} matches several pods: {', '.join(sorted(h[1] for h in hits))}")
    return hits[0][2]["netns"], hits[0][2]
