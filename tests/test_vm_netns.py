"""A VM that is a process with its own Envoy in its own network namespace (``mesh.demo.vm``), end to
end: the demo's bookinfo pods as network namespaces replaying the ``service-entries`` trace, then a
VM on 198.18.0.23 whose agent names the WorkloadGroup ``billing``. istiod auto-registers it
(https://github.com/istio/istio/blob/1.19.0/pilot/pkg/autoregistration/controller.go#L279-L322),
the STATIC ServiceEntry ``billing.internal`` selects it, and productpage's app reaches the VM's app
through both sidecars (captured on 8080, sent by EDS to the entry's named port 9080); the VM
reaches a pod's Service through its own sidecar. Stopping the VM marks the entry disconnected
(controller.go#L348-L387) and after the grace period it is gone. Containment holds, and nothing
is left.

Needs root (CI runs as root); elsewhere skipped with the reason."""

from __future__ import annotations

import json
import time

import pytest
from envoy_harness import LoopThread
from test_demo_capture import ZERO_PORTS, mesh_exec, root_links

from mesh.autoregistration.controller import AUTO_REGISTRATION_GROUP, CONNECTED_AT, DISCONNECTED_AT
from mesh.cni.ip import netns_names, root_exposure, unavailable
from mesh.demo.runner import BookinfoDemo, DemoOptions
from mesh.demo.vm import VirtualMachine
from mesh.xds.debug import proxy_synced

REASON = unavailable()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"a VM as a network namespace: {REASON}")

VM_IP = "198.18.0.23"
ENTRY = f"billing-{VM_IP}-vm-net"


def wait(predicate, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what} never happened"
        time.sleep(0.2)


def test_vm_auto_registers_and_serves_through_a_service_entry(monkeypatch):
    # The VM's agent dials the secure port with its certificate: istiod's identity check (on by
    # default, controller.go#L233-L249) passes. Only the grace period is shortened.
    monkeypatch.delenv("ISTIO_WORKLOAD_ENTRY_VALIDATE_IDENTITY", raising=False)
    monkeypatch.setenv("PILOT_WORKLOAD_ENTRY_GRACE_PERIOD", "2s")
    links_before = root_links()
    runner = LoopThread()
    demo = BookinfoDemo(DemoOptions(trace="service-entries", speed=20, pods="netns", ports=dict(ZERO_PORTS)))
    demo.runner = runner
    vm = None
    try:
        runner.run(demo.start(timeout=90), timeout=120)
        server, client = demo.server, demo.server.kube_client
        store = server.environment.config_store
        wait(lambda: store.get("WorkloadGroup", "billing", "default") is not None, "the trace's t=60 (3 s at speed 20)")
        for name in ("billing-vm-2", "ratings-vm"):  # the trace's address-only VMs: nothing runs behind them
            client.delete("WorkloadEntry", name, "default")
        vm = VirtualMachine(demo.runtime, "billing-vm", "default", VM_IP, group="billing",
                            service_account="billing", app="billing", network="vm-net")
        runner.run(vm.start(server), timeout=60)

        def entry():
            return store.get("WorkloadEntry", ENTRY, "default")

        wait(lambda: entry() is not None, "auto-registration")
        # authenticated on the secure port: the certificate's identity is the proxy's verified one
        assert server.ads.connection(vm.proxy_id).state.proxy.verified_identity == ("default", "billing")
        we = entry()
        assert we.annotations[AUTO_REGISTRATION_GROUP] == "billing" and CONNECTED_AT in we.annotations
        assert we.spec["address"] == VM_IP and we.spec["network"] == "vm-net"
        assert we.labels == {"app": "billing", "class": "vm", "version": "vm"}
        eps = server.environment.service_discovery.endpoints("billing.internal", 8080)
        assert [(e.address, e.endpoint_port) for e in eps] == [(VM_IP, 9080)]
        wait(lambda: demo.all_synced() and proxy_synced(server.ads, vm.proxy_id), "every sidecar and the VM synced")
        assert root_exposure() == []  # the root namespace still holds only blackhole routes

        # A pod reaches the VM's app through the ServiceEntry: nothing listens on 8080 in the VM;
        # only productpage's sidecar, routing billing.internal:8080 to the entry's port 9080, gets there.
        out = mesh_exec(demo, "productpage", "curl", "-s", "--max-time", "10",
                        "--resolve", f"billing.internal:8080:{VM_IP}", "http://billing.internal:8080/")
        assert json.loads(out) == {"app": "billing", "version": "vm", "pod": "billing-vm"}
        # The VM reaches a pod's Service through its own sidecar (its hosts file has the ClusterIPs).
        out = vm.app.sandbox.run(["curl", "-s", "--max-time", "10", "http://details:9080/"],
                                 capture_output=True, text=True, timeout=30).stdout
        assert json.loads(out)["app"] == "details"

        # The VM goes away: disconnectedAt at once, the entry gone after the grace period.
        runner.run(vm.stop(), timeout=30)
        vm = None
        wait(lambda: entry() is None or DISCONNECTED_AT in entry().annotations, "the disconnect", 10)
        wait(lambda: entry() is None, "the cleanup after the grace period", 15)
        assert server.environment.service_discovery.endpoints("billing.internal", 8080) == []
    finally:
        if vm is not None:
            runner.run(vm.stop(), timeout=30)
        runner.run(demo.stop())
        runner.close()
    assert root_links() == links_before
    assert {n for n in netns_names() if n.startswith(demo.runtime.node.run)} == set()
