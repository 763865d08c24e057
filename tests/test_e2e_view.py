"""The end-to-end notebook's rig (mesh.demo.e2e) and views (mesh.teach.e2e_view), without Envoy:
apps answer with their name, ``split`` counts who answered, ``step_trace`` waits for the debounced
push of a real-clock server, and the tables show only what does not vary between runs."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from mesh.bootstrap import Server, ServerArgs
from mesh.bootstrap.args import DEFAULT_PORTS
from mesh.clock import RealClock, VirtualClock
from mesh.demo import e2e
from mesh.kube.addresses import to_loopback
from mesh.kube.client import ReplayClient
from mesh.kube.trace import load_trace
from mesh.teach import e2e_view
from mesh.xds.generator import WatchedResource
from mesh.xds.types import CLUSTER, ROUTE


def _pod(name: str, app: str, version: str, ip: str = "127.0.0.1") -> dict:
    return {"metadata": {"name": name, "namespace": "default", "labels": {"app": app, "version": version}},
            "spec": {"serviceAccountName": f"bookinfo-{app}"}, "status": {"podIP": ip}}


def test_weights_follow_the_canary_trace():
    trace = load_trace("canary")
    assert e2e.weights_at(trace, "reviews", 5) == {}
    assert e2e.weights_at(trace, "reviews", 10) == {"reviews-v1": 100, "reviews-v3": 0}
    assert e2e.weights_at(trace, "reviews", 29.9) == {"reviews-v1": 90, "reviews-v3": 10}
    assert e2e.weights_at(trace, "reviews", 40) == {"reviews-v1": 0, "reviews-v3": 100}
    assert e2e.weights_at(trace, "ratings", 40) == {}


def test_pod_helpers_name_and_identify_pods():
    pods = [_pod("reviews-v2-x", "reviews", "v2"), _pod("productpage-v1-y", "productpage", "v1", "127.10.0.8")]
    assert e2e.app_name(pods[0]) == "reviews-v2"
    assert e2e.find_pod(pods, "reviews")["metadata"]["name"] == "reviews-v2-x"
    with pytest.raises(KeyError, match="app=reviews, version=v9"):
        e2e.find_pod(pods, "reviews", "v9")
    identity = e2e.pod_identity(pods[1])
    assert (identity.name, identity.ip, identity.service_account) == ("productpage-v1-y", "127.10.0.8",
                                                                      "bookinfo-productpage")
    assert identity.node_id.startswith("sidecar~127.10.0.8~productpage-v1-y.default~")


def test_apps_answer_with_their_name_and_split_counts_them():
    async def run():
        runner = await e2e.start_app("127.0.0.1", 0, "reviews-v3")
        try:
            address = runner.addresses[0][:2]
            status, body, _ = await e2e.get(address, "reviews:9080", "/any/path")
            counts = await e2e.split(address, "reviews:9080", 25)
        finally:
            await runner.cleanup()
        return status, body, counts

    status, body, counts = asyncio.run(run())
    assert status == 200 and body["app"] == "reviews-v3" and body["headers"]["Host"] == "reviews:9080"
    assert counts == Counter({"reviews-v3": 25})


def test_start_apps_leaves_nothing_running_when_one_cannot_bind():
    async def run():
        blocker = await e2e.start_app("127.0.0.1", 0, "blocker")
        port = blocker.addresses[0][1]
        pods = [_pod("a-1", "a", "v1"), _pod("b-1", "b", "v1")]
        try:
            with pytest.raises(OSError):
                await e2e.start_apps(pods, port=port)  # "a-v1" cannot bind: the port is taken
            apps = await e2e.start_apps(pods[1:], port=0)
            assert list(apps) == ["b-v1"]
            await e2e.stop_apps(apps)
            assert apps == {}
        finally:
            await blocker.cleanup()

    asyncio.run(run())


def test_wait_until_names_what_it_waited_for():
    with pytest.raises(TimeoutError, match="the moon"):
        asyncio.run(e2e.wait_until(lambda: False, timeout=0.05, what="the moon"))


def test_step_trace_waits_for_the_debounced_push_on_the_real_clock():
    async def run():
        trace_clock = VirtualClock()
        cluster = ReplayClient(to_loopback(load_trace("canary")), trace_clock)  # real Envoys: loopback only
        server = Server(ServerArgs(clock=RealClock(), ports={name: 0 for name in DEFAULT_PORTS}), kube_client=cluster)
        server.run_all()
        await server.start()
        try:
            started = e2e_view.started(server).text
            bookinfo = await e2e.step_trace(server, trace_clock, 5, proxy_ids=[])
            quiet = await e2e.step_trace(server, trace_clock, 9, proxy_ids=[])  # nothing happens in 5 < t <= 9
            canary = await e2e.step_trace(server, trace_clock, 10, proxy_ids=[])
        finally:
            await server.stop()
        return started, bookinfo, quiet, canary

    started, bookinfo, quiet, canary = asyncio.run(run())
    assert "1  secure gRPC" in started and "4  xds" in started and "ADS accepts streams: yes" in started
    assert [(p.request.full, p.events) for p in bookinfo] == [(True, 8)]
    assert quiet == []
    assert [dict(p.request.reason) for p in canary] == [{"config": 2}]
    rows = e2e_view.pushes_table(canary).text.splitlines()
    assert rows[2].split()[:4] == ["full", "2", "config×2", "DestinationRule/default/reviews"]
    assert rows[3].split() == ["VirtualService/default/reviews"]  # one row per config, fields only once


def test_split_tables_show_bars_and_check_the_tolerance():
    measured = [(20, {"reviews-v1": 90, "reviews-v3": 10}, Counter({"reviews-v1": 356, "reviews-v3": 44})),
                (30, {"reviews-v1": 50, "reviews-v3": 50}, Counter({"reviews-v1": 230, "reviews-v3": 170}))]
    lines = e2e_view.split_table(measured, ("reviews-v1", "reviews-v2", "reviews-v3")).text.splitlines()
    assert len(lines) == 2 + 6
    assert lines[2].split()[:5] == ["20", "reviews-v1", "90%", "356", "89.0%"]
    assert lines[2].endswith("█" * 36 + "·" * 4)
    assert lines[3].split()[2:5] == ["0%", "0", "0.0%"]
    check = e2e_view.split_check_table(measured, 5).text.splitlines()
    assert check[2].endswith("yes (≤ 5 points)") and check[3].endswith("NO")  # 57.5% is 7.5 points off
    assert e2e_view.bar(0.5, 4) == "██··" and e2e_view.bar(1.7, 2) == "██"


def test_steps_and_reach_tables():
    steps = e2e_view.steps_table([(10, {"reviews-v1": 100, "reviews-v3": 0})]).text.splitlines()
    assert steps[2].split() == ["10", "v1=100", "v3=0"]
    reach = e2e_view.reach_table({"reviews:9080": Counter({"reviews-v2": 3, "reviews-v1": 2, 503: 1})}).text
    assert reach.splitlines()[2].split() == ["reviews:9080", "6", "reviews-v1,", "reviews-v2", "1"]


class _FakeProxy:
    def __init__(self, proxy_id):
        self.id, self.namespace, self.type, self.istio_version = proxy_id, "default", "sidecar", "1.19.0"
        self.metadata = {"CLUSTER_ID": "Kubernetes"}


class _FakeConnection:
    def __init__(self, number, proxy_id, watched):
        self.number, self.watched = number, watched
        self.state = type("State", (), {"proxy": _FakeProxy(proxy_id)})()


class _FakeAds:
    def __init__(self, connections):
        self.connections = {c.number: c for c in connections}

    def connection(self, proxy_id):
        return next((c for c in self.connections.values() if c.state.proxy.id == proxy_id), None)


def test_proxy_status_and_xds_state_show_a_nack_as_stale():
    nacked = WatchedResource(ROUTE, nonce_sent="7-2", nonce_acked="6-1", last_error="bad regex", nacks=1)
    ads = _FakeAds([
        _FakeConnection(2, "b.default", {CLUSTER: WatchedResource(CLUSTER, nonce_sent="7-1", nonce_acked="7-1"),
                                         ROUTE: nacked}),
        _FakeConnection(1, "a.default", {CLUSTER: WatchedResource(CLUSTER, nonce_sent="7-1", nonce_acked="7-1")}),
    ])
    status = e2e_view.proxy_status(ads).text.splitlines()
    assert status[0].split() == list(e2e_view.STATUS_COLUMNS)
    assert status[2].split() == ["a.default", "Kubernetes", "SYNCED", "NOT", "SENT", "NOT", "SENT", "NOT", "SENT",
                                 "mesh", "1.19.0"]
    assert status[3].split()[:6] == ["b.default", "Kubernetes", "SYNCED", "NOT", "SENT", "NOT"]
    assert "STALE" in status[3] and "7-2" not in "\n".join(status)  # nonces are never shown
    assert e2e.answered(ads, "b.default")  # the NACK answered the route response
    ads.connection("a.default").watched[CLUSTER].nonce_sent = "8-1"  # sent, not yet answered
    assert not e2e.answered(ads, "a.default") and not e2e.answered(ads, "c.default")
    ads.connection("a.default").watched[CLUSTER].nonce_sent = "7-1"
    state = e2e_view.xds_state(ads, ["b.default", "a.default"]).text.splitlines()
    assert state[2].split() == ["a.default", "CDS", "SYNCED", "no", "0"]
    assert state[4].split() == ["b.default", "RDS", "STALE", "yes", "1"]
