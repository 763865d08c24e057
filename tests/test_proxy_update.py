"""ProxyUpdate and computeProxyState: a relabelled pod's proxy alone is pushed (reason ``proxy``), its
labels re-read from the registry, and its SidecarScope follows the selector it now matches."""

from __future__ import annotations

import asyncio

import pytest
from tracehelpers import replay_with_recorder

from mesh.bootstrap import Server, ServerArgs
from mesh.bootstrap.args import DEFAULT_PORTS
from mesh.clock import RealClock, VirtualClock
from mesh.demo.ads_client import AdsClient, sidecar_node
from mesh.kube.client import ReplayClient
from mesh.kube.trace import load_trace
from mesh.model.proxy import parse_node_id
from mesh.model.push_request import ConfigKey, PushRequest, TriggerReason
from mesh.xds.generator import ProxyState
from mesh.xds.proxy_dependencies import compute_proxy_state
from mesh.xds.types import CLUSTER, LISTENER

PRODUCTPAGE = "productpage-v1-74bf455775-fvvbv"
DETAILS_HOST, REVIEWS_HOST = "details.default.svc.cluster.local", "reviews.default.svc.cluster.local"


@pytest.fixture(scope="module")
def replay():
    server, recorder = replay_with_recorder("proxy-update")
    yield server, {r.push.at: r for r in recorder.records}
    server.close()


def _outbound_hosts(rec, pod: str) -> set[str]:
    [d] = [d for d in rec.deliveries if d.step == "push" and d.proxy == f"{pod}.default"]
    return {n.rsplit("|", 1)[1] for n in d.by_type()["CDS"].names if n.startswith("outbound|")}


def test_a_sidecar_that_selects_nobody_pushes_nobody(replay):
    _, records = replay
    rec = records[10.1]
    assert rec.pushed_to == [] and len(rec.skipped) == 6


def test_relabel_pushes_that_proxy_alone_with_reason_proxy(replay):
    server, records = replay
    rec = records[20.0]  # the pod's MODIFIED event itself: not debounced
    assert rec.proxy_update == "10.244.0.8"
    assert dict(rec.push.request.reason) == {TriggerReason.PROXY: 1} and rec.push.request.full
    assert rec.pushed_to == [f"{PRODUCTPAGE}.default"] and rec.skipped == []
    # the workload-selected Sidecar now applies: egress to details and istio-system only
    hosts = _outbound_hosts(rec, PRODUCTPAGE)
    assert DETAILS_HOST in hosts and "istiod.istio-system.svc.cluster.local" in hosts
    assert all(h.endswith(".istio-system.svc.cluster.local") for h in hosts - {DETAILS_HOST})
    # a ProxyUpdate is not a ConfigUpdate: nothing was queued for the debouncer at t=20
    assert not [r for r in server.xds.requests if r.at == 20.0]


def test_an_edit_of_the_sidecar_now_reaches_the_relabelled_proxy_only(replay):
    _, records = replay
    rec = records[30.1]
    assert rec.pushed_to == [f"{PRODUCTPAGE}.default"] and len(rec.skipped) == 5
    assert REVIEWS_HOST in _outbound_hosts(rec, PRODUCTPAGE)


def test_removing_the_label_gives_the_proxy_the_whole_mesh_again(replay):
    _, records = replay
    rec = records[40.0]
    assert rec.proxy_update and rec.pushed_to == [f"{PRODUCTPAGE}.default"]
    assert {DETAILS_HOST, REVIEWS_HOST, "ratings.default.svc.cluster.local",
            "productpage.default.svc.cluster.local"} <= _outbound_hosts(rec, PRODUCTPAGE)


def test_labels_are_read_from_the_registry_on_connect_and_on_proxy_updates_only(replay):
    server, _ = replay
    ads = server.ads
    pod = server.kube_client.get("Pod", PRODUCTPAGE, "default")
    node = sidecar_node(PRODUCTPAGE, "default", "10.244.0.8", {"app": "stale"})
    node["metadata"].update({"CLUSTER_ID": "Kubernetes", "STATIC_LABELS": {"from-agent": "yes"}})
    state = ProxyState(parse_node_id(node["id"], node["metadata"]))
    compute_proxy_state(state, ads.push_context, None)  # connecting: the pod's labels win over the node's
    labels = state.proxy.labels
    assert labels["app"] == "productpage" and labels["from-agent"] == "yes"
    assert labels["topology.istio.io/cluster"] == "Kubernetes"  # setTopologyLabels
    assert {k: labels[k] for k in pod["metadata"]["labels"]} == pod["metadata"]["labels"]
    state.proxy.labels = {"app": "changed-by-hand"}
    compute_proxy_state(state, ads.push_context, PushRequest.of(TriggerReason.CONFIG,
                                                                 configs={ConfigKey("Sidecar", "canary", "default")}))
    assert state.proxy.labels == {"app": "changed-by-hand"}  # a config push does not re-read them
    compute_proxy_state(state, ads.push_context, PushRequest.of(TriggerReason.CONFIG).merge(
        PushRequest.of(TriggerReason.PROXY)))  # merged with a ProxyUpdate: it does
    assert state.proxy.labels["app"] == "productpage"
    vm = ProxyState(parse_node_id("sidecar~10.244.0.8~vm.default~default.svc.cluster.local",
                                  {"LABELS": {"istio.io/test-vm": "x", "app": "vm"}}))
    compute_proxy_state(vm, ads.push_context, None)
    assert vm.proxy.labels["app"] == "vm"  # IsVM: its metadata labels stay


def test_unknown_pod_keeps_the_node_metadata_labels(replay):
    server, _ = replay
    node = sidecar_node("nobody", "default", "10.244.9.9", {"app": "own"})
    state = ProxyState(parse_node_id(node["id"], node["metadata"]))
    compute_proxy_state(state, server.ads.push_context, None)
    assert state.proxy.labels == {"app": "own"}


def test_relabel_pushes_only_that_stream_on_a_real_ads_server():
    """The same on gRPC: two connected sidecars; the relabel reaches one stream, with fewer clusters."""
    async def scenario():
        trace_clock = VirtualClock()
        cluster = ReplayClient(load_trace("proxy-update"), trace_clock)
        trace_clock.advance_to(15.0)  # bookinfo and the Sidecar that selects nobody yet
        server = Server(ServerArgs(clock=RealClock(), ports={name: 0 for name in DEFAULT_PORTS}), kube_client=cluster)
        server.run_all()
        await server.start()
        clients = {}
        try:
            for app in ("productpage", "details"):
                pod = next(p for p in cluster.list_objects("Pod") if p["metadata"]["labels"].get("app") == app)
                meta = pod["metadata"]
                c = clients[app] = AdsClient(server.bound_ports["xds"],
                                             sidecar_node(meta["name"], "default", pod["status"]["podIP"], meta["labels"]))
                c.send(CLUSTER)
                cds = await c.recv()
                c.ack(cds)
                c.send(LISTENER)
                c.ack(await c.recv())
                c.before = len(cds.resources)
            assert await clients["productpage"].nothing(0.3) and await clients["details"].nothing(0.01)
            trace_clock.advance_to(20.0)  # the pod relabelled: the kube registry calls ProxyUpdate
            pushed = await clients["productpage"].recv()
            assert pushed.type_url == CLUSTER and len(pushed.resources) < clients["productpage"].before
            clients["productpage"].ack(pushed)
            assert (await clients["productpage"].recv()).type_url == LISTENER
            assert await clients["details"].nothing(0.5), "the other proxy is not pushed"
            con = server.ads.connection(f"{PRODUCTPAGE}.default")
            assert con.state.proxy.labels["canary"] == "true"
            assert con.state.sidecar_scope.name == "canary"
        finally:
            for c in clients.values():
                await c.close()
            await server.stop()
    asyncio.run(asyncio.wait_for(scenario(), 30))
