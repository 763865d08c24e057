"""WorkloadEntry auto-registration (``mesh.autoregistration``) on the virtual clock, each test
asserting what Istio 1.19.0's controller does (the Go lines are linked in each docstring).

The server replays the ``service-entries`` trace to its end: a STATIC ServiceEntry
``billing.internal`` selecting ``app: billing`` and, at t=60, the WorkloadGroup ``billing``.
"""

from __future__ import annotations

import asyncio
import dataclasses

import grpc
import pytest

from mesh.autoregistration.controller import (
    AUTO_REGISTRATION_GROUP,
    CONNECTED_AT,
    DISCONNECTED_AT,
    WORKLOAD_CONTROLLER,
    Features,
    RegistrationError,
    auto_registered_entry_name,
    format_time,
    workload_entry_from_group,
)
from mesh.bootstrap import Server, ServerArgs
from mesh.demo.ads_client import AdsClient
from mesh.model.config import Config
from mesh.model.proxy import parse_node_id
from mesh.xds.types import CLUSTER

G = "https://github.com/istio/istio/blob/1.19.0/pilot/pkg/autoregistration/controller.go"
VM_IP = "198.18.0.23"
BILLING = "billing.internal"
NO_IDENTITY_CHECK = Features(validate_identity=False)


def vm_metadata(ip: str = VM_IP, network: str = "", **extra) -> dict:
    """What a VM's pilot-agent sends with ISTIO_META_AUTO_REGISTER_GROUP=billing (and NETWORK)."""
    md = {"NAMESPACE": "default", "AUTO_REGISTER_GROUP": "billing", "SERVICE_ACCOUNT": "billing",
          "LABELS": {"version": "vm"}, **extra}
    if network:
        md["NETWORK"] = network
    return md


def vm_proxy(ip: str = VM_IP, network: str = "", **extra):
    return parse_node_id(f"sidecar~{ip}~billing-vm.default~default.svc.cluster.local",
                         {**vm_metadata(ip, network, **extra), "INSTANCE_IPS": ip})


def server(features: Features = NO_IDENTITY_CHECK, **args) -> Server:
    s = Server(ServerArgs(trace="service-entries", pod_name="istiod-1", **args))
    s.run_all()
    s.clock.advance_to(60)
    s.xds.workload_entry_controller.features = features
    return s


def entry(s: Server, name: str = f"billing-{VM_IP}") -> Config | None:
    return s.environment.config_store.get("WorkloadEntry", name, "default")


def connect_vm(s: Server):
    """The VM's proxy registered now: (controller, proxy, its connect time)."""
    controller, proxy = s.xds.workload_entry_controller, vm_proxy()
    t0 = controller.now()
    controller.register_workload(proxy, t0)
    return controller, proxy, t0


def billing_endpoints(s: Server) -> list[str]:
    return sorted(f"{e.address}:{e.endpoint_port}" for e in s.environment.service_discovery.endpoints(BILLING, 8080))


def test_entry_name_is_group_ip_and_network():
    """autoregisteredWorkloadEntryName, controller.go#L591-L614: <group>-<ip>[-<network>], IPv6
    colons as dashes, at most 253 characters kept from the end."""
    assert auto_registered_entry_name(vm_proxy()) == "billing-198.18.0.23"
    assert auto_registered_entry_name(vm_proxy(network="vm-net")) == "billing-198.18.0.23-vm-net"
    assert auto_registered_entry_name(vm_proxy("fd00::7")) == "billing-fd00--7"
    long = vm_proxy(AUTO_REGISTER_GROUP="g" * 300)
    assert auto_registered_entry_name(long) == ("g" * 300 + "-198.18.0.23")[-253:]
    assert auto_registered_entry_name(vm_proxy(AUTO_REGISTER_GROUP="")) == ""


def test_entry_from_group_merges_labels_as_go_does():
    """workloadEntryFromGroup, controller.go#L636-L689 (and TestWorkloadEntryFromGroup,
    controller_test.go#L311-L380): template labels < group metadata labels < node labels, without
    istio-locality; group annotations beside autoRegistrationGroup; the proxy's network; an owner
    reference to the group."""
    group = Config(kind="WorkloadGroup", group="networking.istio.io", version="v1alpha3", name="wg-a",
                   namespace="a", uid="u-1", labels={"grouplabel": "notonentry"},
                   spec={"metadata": {"labels": {"foo": "bar"}, "annotations": {"foo": "bar"}},
                         "template": {"ports": {"http": 80}, "labels": {"app": "a"}, "weight": 1,
                                      "network": "nw0", "serviceAccount": "sa-a"}})
    proxy = parse_node_id("sidecar~10.0.0.1~vm.a~a.svc.cluster.local",
                          {"NAMESPACE": "a", "NETWORK": "nw1", "AUTO_REGISTER_GROUP": "wg-a",
                           "LABELS": {"merge": "me", "istio-locality": "rgn2/zone2/subzone2"}})
    got = workload_entry_from_group("test-we", proxy, group)
    want_labels = {"app": "a", "foo": "bar", "merge": "me"}
    assert (got.kind, got.version, got.name, got.namespace) == ("WorkloadEntry", "v1alpha3", "test-we", "a")
    assert got.labels == want_labels
    assert got.annotations == {AUTO_REGISTRATION_GROUP: "wg-a", "foo": "bar"}
    assert got.spec == {"address": "10.0.0.1", "ports": {"http": 80}, "labels": want_labels, "network": "nw1",
                        "weight": 1, "serviceAccount": "sa-a"}
    assert got.owner_references == [{"apiVersion": "networking.istio.io/v1alpha3", "kind": "WorkloadGroup",
                                     "name": "wg-a", "uid": "u-1", "controller": True}]
    probed = vm_proxy(PROXY_CONFIG={"readinessProbe": {"httpGet": {"port": 8080}}})
    assert workload_entry_from_group("x", probed, group).annotations["proxy.istio.io/health-checks-enabled"] == "true"


def test_connect_creates_the_entry_and_the_service_entry_selects_it():
    """registerWorkload, controller.go#L279-L322: no entry yet, so one is built from the group and
    created with the connect stamp (setConnectMeta, #L171-L178); the ServiceEntry registry then
    lists it as an endpoint of the ServiceEntry whose selector it matches."""
    s = server()
    assert billing_endpoints(s) == ["198.18.0.22:8080"]  # billing-vm-2 from the trace
    controller = s.xds.workload_entry_controller
    proxy = vm_proxy()
    controller.register_workload(proxy, controller.now())
    we = entry(s)
    assert we.annotations == {AUTO_REGISTRATION_GROUP: "billing", WORKLOAD_CONTROLLER: "istiod-1",
                              CONNECTED_AT: "2023-09-05T00:01:00Z"}
    assert we.labels == {"app": "billing", "class": "vm", "version": "vm"}
    assert we.spec["address"] == VM_IP and we.spec["serviceAccount"] == "billing"
    assert (proxy.workload_entry_name, proxy.workload_entry_auto_created) == (f"billing-{VM_IP}", True)
    assert billing_endpoints(s) == ["198.18.0.22:8080", f"{VM_IP}:9080"]
    [ep] = [e for e in s.environment.service_discovery.endpoints(BILLING, 8080) if e.address == VM_IP]
    assert ep.service_account == "spiffe://cluster.local/ns/default/sa/billing" and ep.tls_mode == "istio"


def test_disconnect_then_grace_period_then_deletion():
    """QueueUnregisterWorkload → unregisterWorkload, controller.go#L402-L470: disconnectedAt
    replaces connectedAt, and PILOT_WORKLOAD_ENTRY_GRACE_PERIOD (10 s, features/pilot.go#L492-L494)
    later shouldCleanupEntry (#L506-L541) lets deleteEntry (#L562-L570) remove it."""
    s = server()
    controller, proxy, connected = connect_vm(s)
    s.clock.advance_to(75)
    controller.queue_unregister_workload(proxy, connected)
    we = entry(s)
    assert CONNECTED_AT not in we.annotations and we.annotations[DISCONNECTED_AT] == "2023-09-05T00:01:15Z"
    assert we.annotations[WORKLOAD_CONTROLLER] == "istiod-1"
    s.clock.advance_to(84.9)
    assert entry(s) is not None and f"{VM_IP}:9080" in billing_endpoints(s)
    s.clock.advance_to(85)
    assert entry(s) is None and billing_endpoints(s) == ["198.18.0.22:8080"]
    assert (controller.registered, controller.unregistered, controller.deleted) == (1, 1, 1)


def test_reconnect_within_grace_keeps_the_entry():
    """"fast reconnect" in TestAutoregistrationLifecycle (controller_test.go#L193-L202): the entry is
    stamped connected again (changeWorkloadEntryStateToConnected, #L326-L344) and the cleanup after
    the grace period finds connectedAt and leaves it (#L519-L527)."""
    s = server()
    controller, first, t0 = connect_vm(s)
    second = vm_proxy()
    s.clock.advance_to(61)
    controller.queue_unregister_workload(first, t0)
    s.clock.advance_to(66)
    t1 = controller.now()
    controller.register_workload(second, t1)
    assert entry(s).annotations[CONNECTED_AT] == format_time(t1) and DISCONNECTED_AT not in entry(s).annotations
    s.clock.advance_to(200)
    assert entry(s) is not None and controller.deleted == 0 and controller.updated == 1


def test_a_late_disconnect_of_an_older_connection_changes_nothing():
    """"same instance: connect before disconnect" (controller_test.go#L203-L210): the disconnect of
    the first stream arrives after the second connected; the entry's connectedAt is newer than the
    first stream's connect, so it stays connected (#L359-L365)."""
    s = server()
    controller, old, t0 = connect_vm(s)
    new = vm_proxy()
    s.clock.advance_to(62)
    controller.register_workload(new, controller.now())
    controller.queue_unregister_workload(old, t0)  # one of two streams left: only counted down
    controller.queue_unregister_workload(dataclasses.replace(old), t0)  # the count is per workload
    s.clock.advance_to(200)
    assert CONNECTED_AT in entry(s).annotations and DISCONNECTED_AT not in entry(s).annotations


def test_another_istiods_entry_is_not_unregistered_by_this_one():
    """changeWorkloadEntryStateToDisconnected, controller.go#L366-L369: the entry names another
    istiod as its workloadController (the VM reconnected there), so this istiod's disconnect leaves it."""
    s = server()
    controller, proxy, t0 = connect_vm(s)
    we = entry(s)
    we.annotations[WORKLOAD_CONTROLLER] = "istiod-2"
    s.environment.config_store.stores_for("WorkloadEntry")[0].update(we)
    controller.queue_unregister_workload(proxy, t0)
    s.clock.advance_to(200)
    assert entry(s).annotations[WORKLOAD_CONTROLLER] == "istiod-2" and CONNECTED_AT in entry(s).annotations


def test_refusals_name_the_reason_and_create_nothing():
    """A group that does not exist: FAILED_PRECONDITION (controller.go#L299-L304). With
    ISTIO_WORKLOAD_ENTRY_VALIDATE_IDENTITY on (the default, features/pilot.go#L671-L674) a proxy
    without a verified identity, or with another service account or namespace, is refused
    (ensureProxyCanControlEntry, #L233-L249; "unverified client", "wrong SA client",
    controller_test.go#L255-L268)."""
    s = server(features=Features())
    controller = s.xds.workload_entry_controller
    with pytest.raises(RegistrationError, match="requires a verified identity"):
        controller.register_workload(vm_proxy(), controller.now())
    wrong_sa = vm_proxy()
    wrong_sa.verified_identity = ("default", "wrong")
    with pytest.raises(RegistrationError, match="service account mismatch: 'wrong' vs 'billing'"):
        controller.register_workload(wrong_sa, controller.now())
    wrong_ns = vm_proxy()
    wrong_ns.verified_identity = ("other", "billing")
    with pytest.raises(RegistrationError, match="namespace mismatch"):
        controller.register_workload(wrong_ns, controller.now())
    assert entry(s) is None
    verified = vm_proxy()
    verified.verified_identity = ("default", "billing")
    controller.register_workload(verified, controller.now())
    assert entry(s) is not None
    with pytest.raises(RegistrationError, match="cannot find WorkloadGroup default/nope") as err:
        controller.register_workload(vm_proxy("198.18.0.24", AUTO_REGISTER_GROUP="nope"), controller.now())
    assert err.value.code == "FAILED_PRECONDITION"


def test_switched_off_auto_registration_creates_nothing():
    """RegisterWorkload, controller.go#L197: only with PILOT_ENABLE_WORKLOAD_ENTRY_AUTOREGISTRATION."""
    s = server(features=Features(auto_registration=False, validate_identity=False))
    controller = s.xds.workload_entry_controller
    proxy = vm_proxy()
    controller.register_workload(proxy, controller.now())
    assert entry(s) is None and proxy.workload_entry_name == ""


def test_periodic_cleanup_removes_what_a_lost_timer_left():
    """periodicWorkloadEntryCleanup, controller.go#L481-L504, every 10 × grace: an auto-registered
    entry left disconnected by an istiod that died before its cleanup ran is deleted by the next
    istiod's scan ("garbage collected if pilot stops after disconnect", controller_test.go#L232-L243)."""
    s = server()
    left = Config(kind="WorkloadEntry", group="networking.istio.io", version="v1alpha3", name="billing-198.18.0.30",
                  namespace="default", spec={"address": "198.18.0.30", "labels": {"app": "billing"}},
                  labels={"app": "billing"},
                  annotations={AUTO_REGISTRATION_GROUP: "billing", WORKLOAD_CONTROLLER: "istiod-0",
                               DISCONNECTED_AT: "2023-09-05T00:00:30Z"})
    s.environment.config_store.stores_for("WorkloadEntry")[0].create(left)
    controller = s.xds.workload_entry_controller
    controller.run()  # a new istiod starting: DiscoveryServer.Start → Run
    assert "198.18.0.30:8080" in billing_endpoints(s)
    s.clock.advance_to(60 + 99)
    assert entry(s, left.name) is not None
    s.clock.advance_to(60 + 100)
    assert entry(s, left.name) is None and controller.deleted == 1
    assert s.clock.next_deadline() is None or s.clock.next_deadline() > 160  # nothing re-arms forever


def test_features_from_the_environment():
    """The flags as istio's env.Register parses them: ParseBool and time.ParseDuration."""
    f = Features.from_env({"PILOT_WORKLOAD_ENTRY_GRACE_PERIOD": "1m30s",
                           "ISTIO_WORKLOAD_ENTRY_VALIDATE_IDENTITY": "false"})
    assert (f.auto_registration, f.grace_period, f.validate_identity) == (True, 90.0, False)
    assert Features.from_env({}).grace_period == 10.0
    with pytest.raises(ValueError, match="PILOT_WORKLOAD_ENTRY_GRACE_PERIOD='ten': not a duration"):
        Features.from_env({"PILOT_WORKLOAD_ENTRY_GRACE_PERIOD": "ten"})
    with pytest.raises(ValueError, match="PILOT_ENABLE_WORKLOAD_ENTRY_AUTOREGISTRATION='yes'"):
        Features.from_env({"PILOT_ENABLE_WORKLOAD_ENTRY_AUTOREGISTRATION": "yes"})


def test_through_ads_connect_and_disconnect():
    """ADS calls the controller as ads.go does: RegisterWorkload first in initializeProxy
    (ads.go#L634-L652; a refusal ends the stream with its status), QueueUnregisterWorkload last in
    closeConnection (ads.go#L564-L576)."""
    async def scenario():
        s = server(ports={"xds": 0})
        port = await s.ads.start()
        node = {"id": f"sidecar~{VM_IP}~billing-vm.default~default.svc.cluster.local", "cluster": "billing.default",
                "metadata": {**vm_metadata(), "INSTANCE_IPS": VM_IP}}
        client = AdsClient(port, node)
        try:
            client.send(CLUSTER)
            cds = await client.recv()
            assert cds.resources and entry(s) is not None
            con = s.ads.connection("billing-vm.default")
            assert {i.service.hostname for i in con.state.instances} == {BILLING}  # its own entry's service
            await client.close()
            for _ in range(100):
                if DISCONNECTED_AT in entry(s).annotations:
                    break
                await asyncio.sleep(0.02)
            assert DISCONNECTED_AT in entry(s).annotations
            s.clock.advance(10)
            assert entry(s) is None
            refused = AdsClient(port, {**node, "metadata": {**node["metadata"], "AUTO_REGISTER_GROUP": "nope"}})
            refused.send(CLUSTER)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await refused.recv()
            assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "cannot find WorkloadGroup default/nope" in err.value.details()
            await refused.close()
        finally:
            await s.ads.stop()
    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_a_health_checked_entry_is_taken_over_not_created():
    """A proxy naming an existing WorkloadEntry (``WORKLOAD_ENTRY``) whose entry carries
    proxy.istio.io/health-checks-enabled: becomeControllerOf (controller.go#L265-L275) stamps it
    connected; without the annotation it is left unchanged, a missing entry is an error
    (TestNonAutoregisteredWorkloads_*, controller_test.go#L382-L487); on disconnect it is marked,
    and, not being auto-registered, never deleted (shouldCleanupEntry, #L506-L512)."""
    s = server()
    controller = s.xds.workload_entry_controller
    crd = s.environment.config_store.stores_for("WorkloadEntry")[0]
    manual = Config(kind="WorkloadEntry", group="networking.istio.io", version="v1alpha3", name="billing-manual",
                    namespace="default", spec={"address": "198.18.0.40", "labels": {"app": "billing"}},
                    annotations={"proxy.istio.io/health-checks-enabled": "true"})
    crd.create(manual)
    crd.create(dataclasses.replace(manual, name="billing-plain", annotations={}))

    def proxy(entry_name: str):
        return parse_node_id("sidecar~198.18.0.40~billing-manual.default~default.svc.cluster.local",
                             {"NAMESPACE": "default", "WORKLOAD_ENTRY": entry_name})
    plain = proxy("billing-plain")
    controller.register_workload(plain, controller.now())
    assert entry(s, "billing-plain").annotations == {} and plain.workload_entry_name == ""
    with pytest.raises(RegistrationError, match="WorkloadEntry default/nope is not found"):
        controller.register_workload(proxy("nope"), controller.now())
    taken = proxy("billing-manual")
    t0 = controller.now()
    controller.register_workload(taken, t0)
    assert entry(s, "billing-manual").annotations == {"proxy.istio.io/health-checks-enabled": "true",
                                                      WORKLOAD_CONTROLLER: "istiod-1", CONNECTED_AT: format_time(t0)}
    assert (taken.workload_entry_name, taken.workload_entry_auto_created) == ("billing-manual", False)
    s.clock.advance_to(70)
    controller.queue_unregister_workload(taken, t0)
    assert DISCONNECTED_AT in entry(s, "billing-manual").annotations
    s.clock.advance_to(60 + 300)
    assert entry(s, "billing-manual") is not None and controller.deleted == 0


def test_the_tls_peers_identity_is_checked_against_the_node():
    """checkConnectionIdentity, https://github.com/istio/istio/blob/1.19.0/pilot/pkg/xds/auth.go#L59-L74:
    the first SPIFFE identity in the proxy's namespace with its service account is the verified one;
    none → the stream is refused (authorize, auth.go#L42-L57)."""
    from mesh.xds.auth import check_connection_identity, parse_spiffe

    assert parse_spiffe("spiffe://cluster.local/ns/default/sa/billing") == ("cluster.local", "default", "billing")
    assert parse_spiffe("spiffe://cluster.local/ns/default") is None and parse_spiffe("https://x") is None
    proxy = vm_proxy()
    ids = ("spiffe://cluster.local/ns/other/sa/billing", "spiffe://cluster.local/ns/default/sa/billing")
    assert check_connection_identity(proxy, ids) == ("default", "billing")
    with pytest.raises(ValueError, match="matched default/billing"):
        check_connection_identity(proxy, ("spiffe://cluster.local/ns/default/sa/ratings",))


def test_authorize_refuses_a_stream_whose_certificate_is_another_workloads():
    """authorize, auth.go#L42-L57, on the handlers of the TLS port (here a plain server whose
    handlers report a fixed peer identity): a certificate for another service account ends the
    stream with PERMISSION_DENIED before anything is registered; the right one is verified."""
    async def scenario():
        s = server(features=Features())  # the identity check on, as istiod's default
        peer = {"ids": ("spiffe://cluster.local/ns/default/sa/ratings",)}
        grpc_server = grpc.aio.server()
        grpc_server.add_generic_rpc_handlers(s.ads.rpc_handlers(peer_identities=lambda ctx: peer["ids"]))
        port = grpc_server.add_insecure_port("127.0.0.1:0")
        await grpc_server.start()
        node = {"id": f"sidecar~{VM_IP}~billing-vm.default~default.svc.cluster.local", "cluster": "billing.default",
                "metadata": {**vm_metadata(), "INSTANCE_IPS": VM_IP}}
        try:
            wrong = AdsClient(port, node)
            wrong.send(CLUSTER)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await wrong.recv()
            assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert "no identities (spiffe://cluster.local/ns/default/sa/ratings) matched default/billing" in err.value.details()
            await wrong.close()
            assert entry(s) is None
            peer["ids"] = ("spiffe://cluster.local/ns/default/sa/billing",)
            right = AdsClient(port, node)
            right.send(CLUSTER)
            await right.recv()
            assert s.ads.connection("billing-vm.default").state.proxy.verified_identity == ("default", "billing")
            assert entry(s) is not None  # and the WorkloadEntry controller's identity check passed
            await right.close()
        finally:
            await grpc_server.stop(0)
    asyncio.run(asyncio.wait_for(scenario(), 30))
