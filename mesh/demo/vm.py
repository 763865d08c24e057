"""A VM joining the mesh: a process with its own Envoy in its own network namespace, auto-registered.

Go: none for the VM itself (Istio's VM guide: https://istio.io/v1.19/docs/setup/install/virtual-machine/);
what runs on it is ``istio-start.sh``: the capture rules
(https://github.com/istio/istio/blob/1.19.0/tools/packaging/common/istio-start.sh#L77-L84), then
pilot-agent (#L128-L142); what istiod does when it connects is ``mesh.autoregistration``.

``VirtualMachine`` needs the demo's network-namespace mode (root): the VM is a namespace on the
node's bridge like a pod's, but on an address of the external range 198.18.0.0/15
(``mesh.cni.node.Node.add_vm``: a /32, default route via the bridge's 198.18.0.1; the root
namespace only gains a blackhole route for that range). In it, in a VM's order:

1. istio-iptables with the sidecar's default arguments (``VM_ISTIO_IPTABLES``; ``istio-start.sh``
   runs ``pilot-agent istio-iptables`` from its environment, whose defaults are these), so the
   app's outbound calls are captured into its Envoy and inbound traffic goes through 15006;
2. the app (``python -m mesh.demo.apps``), on the VM's address, port 9080;
3. pilot-agent and a real Envoy with the VM's identity: node id ``sidecar~<vm-ip>~<name>.<ns>~...``,
   its labels, the WorkloadGroup's service account (the workload certificate is issued for it,
   from the CA on 15012 with a token for that account), and the metadata a VM's
   ``cluster.env`` gives as ``ISTIO_META_*``: ``AUTO_REGISTER_GROUP`` (the WorkloadGroup) and
   ``NETWORK``.

When the agent's XDS proxy connects, istiod creates ``<group>-<ip>[-<network>]`` from the group;
when the VM stops, the entry is marked disconnected and removed after the grace period.

Its agent reaches istiod on the secure port (15012) over mutual TLS with that certificate, as a
VM's does: istiod verifies the identity (``mesh/xds/auth.py``), and the WorkloadEntry controller's
identity check passes with its default on.

Simplifications, named: no ``cluster.env``/``mesh.yaml`` files (their values are arguments), no
``/etc/hosts`` entry for istiod (the agent dials istiod's loopback port from the root namespace,
as every mesh agent does), no DNS proxy (the VM's hosts file lists the Services, as the pods' do).
"""

from __future__ import annotations

from mesh.agent.agent import EnvoyAgent
from mesh.agent.bootstrap import PodIdentity
from mesh.cni.pod import PodSandbox
from mesh.demo.podmode import InPodApp, NetnsPods
from mesh.demo.runner import workload_certs

# The sidecar injector's istio-init arguments, which are also istio-iptables' defaults for a VM:
# outbound to 15001, inbound to 15006, Envoy's uid/gid 1337 exempt, every port captured except
# Envoy's own 15090/15021 and the agent's 15020.
VM_ISTIO_IPTABLES = ["istio-iptables", "-p", "15001", "-z", "15006", "-u", "1337", "-m", "REDIRECT",
                     "-i", "*", "-x", "", "-b", "*", "-d", "15090,15021,15020"]


class VmApp(InPodApp):
    """The VM's app process, in the VM's namespace instead of a pod's."""

    async def _make_sandbox(self) -> PodSandbox:
        return await self.pods.add_vm(self.ident, VM_ISTIO_IPTABLES)


class VirtualMachine:
    """One VM of ``group`` (a WorkloadGroup in ``namespace``) at ``ip``, serving ``app``; started
    against a running server and the demo's ``NetnsPods``."""

    def __init__(self, pods: NetnsPods, name: str, namespace: str, ip: str, group: str, service_account: str,
                 app: str, version: str = "vm", network: str = "", domain: str = "cluster.local"):
        metadata = {"AUTO_REGISTER_GROUP": group, **({"NETWORK": network} if network else {})}
        self.ident = PodIdentity(name, namespace, ip, {"app": app, "version": version}, domain=domain,
                                 service_account=service_account, extra_metadata=metadata)
        self.app = VmApp(pods, {}, self.ident)
        self.agent: EnvoyAgent | None = None

    async def start(self, server, log_level: str = "warning", secure: bool = True) -> VirtualMachine:
        """Namespace and capture rules, the app, then the agent and Envoy (until Envoy is LIVE).
        ``secure``: the agent dials istiod's secure port with its workload certificate, as a VM's
        pilot-agent does, so istiod verifies its identity; else the plaintext port (no identity:
        istiod then refuses to auto-register it unless ISTIO_WORKLOAD_ENTRY_VALIDATE_IDENTITY is off)."""
        try:
            await self.app.start()
            ca = workload_certs(server, self.ident.namespace, self.ident.service_account)
            port = server.bound_ports["secure_xds" if secure else "xds"]
            self.agent = EnvoyAgent(self.ident, server.args.host, port, http_proxy_port=None, certs=ca,
                                    log_level=log_level, netns=self.app.sandbox.netns, xds_tls=secure)
            await self.agent.start()
            await self.agent.wait_ready(timeout=30)
        except BaseException:
            await self.stop()
            raise
        return self

    @property
    def proxy_id(self) -> str:
        return f"{self.ident.name}.{self.ident.namespace}"

    async def stop(self) -> None:
        """Envoy and the agent (the stream closes: istiod marks the entry disconnected), the app,
        the namespace."""
        if self.agent is not None:
            await self.agent.stop()
            self.agent.cleanup()
            self.agent = None
        await self.app.stop()
        if self.app.sandbox is not None:
            await self.app.pods.remove_pod(self.app.sandbox.key)
            self.app.sandbox = None
