"""ADS without Envoy: a gRPC client speaks State-of-the-World to our server and checks the rules."""

from __future__ import annotations

import asyncio

import betterproto2
import grpc
import pytest
from envoy_data_plane.envoy.config.core.v3 import Node
from envoy_data_plane.envoy.service.discovery.v3 import DiscoveryRequest, DiscoveryResponse
from xds_fakes import FakeConfigStore, FakeRegistry, endpoint

from mesh.clock import VirtualClock
from mesh.demo.ads_client import AdsClient
from mesh.model.push_request import ConfigKey, PushRequest, TriggerReason
from mesh.xds.ads import AdsServer
from mesh.xds.cache import XdsCache
from mesh.xds.connection import Connection, RequestKind
from mesh.xds.debug import adsz, proxy_status, xds_status
from mesh.xds.discovery import DiscoveryServer
from mesh.xds.fastpath import decode_discovery_request, encode_discovery_response
from mesh.xds.resources import from_bytes
from mesh.xds.types import CLUSTER, ENDPOINT, LISTENER, ROUTE

NODE = {"id": "sidecar~127.10.0.1~productpage-1.default~default.svc.cluster.local", "cluster": "productpage.default",
        "metadata": {"NAMESPACE": "default", "LABELS": {"app": "productpage"}}}
REVIEWS = "reviews.default.svc.cluster.local"


def test_wire_encoding_matches_the_protobuf_parser():
    data = encode_discovery_response("7", CLUSTER, "7-1", [b"\x0a\x03abc", b""])
    resp = DiscoveryResponse.parse(data)
    assert (resp.version_info, resp.type_url, resp.nonce) == ("7", CLUSTER, "7-1")
    assert [(r.type_url, r.value) for r in resp.resources] == [(CLUSTER, b"\x0a\x03abc"), (CLUSTER, b"")]
    big = encode_discovery_response("1", ENDPOINT, "n", [b"x" * 300])  # a length needing two varint bytes
    assert DiscoveryResponse.parse(big).resources[0].value == b"x" * 300


def test_cache_serializes_equal_resources_once():
    cache = XdsCache(max_entries=2)
    a = {"name": "a", "type": "EDS"}
    first = cache.serialize(CLUSTER, a)
    assert cache.serialize(CLUSTER, {"type": "EDS", "name": "a"}) is first  # same content, other key order
    assert (cache.hits, cache.misses) == (1, 1)
    assert from_bytes(CLUSTER, first)["name"] == "a"
    cache.serialize(CLUSTER, {"name": "b"})
    cache.serialize(CLUSTER, {"name": "c"})
    assert len(cache) == 2  # least recently used dropped


def test_classify_ack_nack_stale_and_new_names():
    con = Connection(peer="test")
    assert con.classify(ENDPOINT, "", ["a"], "") == RequestKind.INITIAL
    w = con.watched[ENDPOINT]
    w.nonce_sent, w.version_sent = "n1", "1"
    assert con.classify(ENDPOINT, "old", ["a"], "") == RequestKind.STALE
    assert con.classify(ENDPOINT, "n1", ["a"], "") == RequestKind.ACK and w.version_acked == "1"
    w.nonce_sent, w.version_sent = "n2", "2"
    assert con.classify(ENDPOINT, "n2", ["a"], "bad thing") == RequestKind.NACK
    assert (w.version_acked, w.last_error, w.nacks) == ("1", "bad thing", 1)
    w.nonce_sent, w.version_sent = "n3", "3"
    assert con.classify(ENDPOINT, "n3", ["a", "b"], "") == RequestKind.ACK_NEW_NAMES
    assert w.names == ["a", "b"] and w.last_error == ""


class Client(AdsClient):
    """The notebooks' ADS client (``mesh.demo.ads_client``), as productpage-1."""

    def __init__(self, port: int):
        super().__init__(port, NODE)


def make_server():
    reg, store = FakeRegistry(), FakeConfigStore()
    reg.add_service("reviews")
    reg.set_endpoints(REVIEWS, 9080, [endpoint("127.10.0.2")])
    discovery = DiscoveryServer(VirtualClock())
    return reg, store, discovery, AdsServer(discovery, None, reg, store)


def names(resp: DiscoveryResponse) -> list[str]:
    return [from_bytes(resp.type_url, r.value).get("name") or from_bytes(resp.type_url, r.value).get("clusterName")
            for r in resp.resources]


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 20))


def test_sotw_conversation_ack_nack_and_pushes():
    async def scenario():
        reg, store, discovery, ads = make_server()
        port = await ads.start()
        client = Client(port)
        try:
            client.send(CLUSTER)
            cds = await client.recv()
            assert f"outbound|9080||{REVIEWS}" in names(cds) and cds.version_info == "1"
            client.send(CLUSTER, nonce=cds.nonce, version=cds.version_info)  # ACK
            eds_name = f"outbound|9080||{REVIEWS}"
            client.send(ENDPOINT, [eds_name])
            eds = await client.recv()
            assert names(eds) == [eds_name]
            client.send(ENDPOINT, [eds_name], nonce=eds.nonce, version=eds.version_info)
            assert await client.nothing()  # an ACK gets no answer
            client.send(LISTENER)
            lds = await client.recv()
            client.send(LISTENER, nonce=lds.nonce, version=lds.version_info)
            client.send(ROUTE, ["http_proxy"])
            rds = await client.recv()
            assert names(rds) == ["http_proxy"]
            # NACK: recorded, counted, not answered with the same thing again.
            client.send(ROUTE, ["http_proxy"], nonce=rds.nonce, version="", error="route is bad")
            assert await client.nothing()
            con = ads.connection("productpage-1.default")
            assert ads.rejects["RDS"] == 1 and con.watched[ROUTE].last_error == "route is bad"
            [row] = proxy_status(ads)
            assert {k: row[k] for k in ("CDS", "EDS", "LDS", "RDS")} == {
                "CDS": "SYNCED", "EDS": "SYNCED", "LDS": "SYNCED", "RDS": "STALE (Never Acknowledged)"}
            assert adsz(ads)["clients"][0]["nacks"] == {ROUTE: "route is bad"}
            # A stale nonce is ignored.
            client.send(CLUSTER, nonce="no-such-nonce", version="1")
            assert await client.nothing()
            # A full push sends, in push order and with a new version, every watched type that
            # depends on what changed: a VirtualService changes no endpoints, so no EDS (istiod's
            # skippedEdsConfigs).
            store.apply("VirtualService", "reviews", "default", {"hosts": ["reviews"], "http": [
                {"route": [{"destination": {"host": "reviews"}}]}]})
            ads.push(PushRequest.of(TriggerReason.CONFIG, configs={ConfigKey("VirtualService", "reviews", "default")}))
            pushed = [await client.recv() for _ in range(3)]
            assert [p.type_url for p in pushed] == [CLUSTER, LISTENER, ROUTE]
            assert {p.version_info for p in pushed} == {"2"}
            for p in pushed:
                client.send(p.type_url, [eds_name] if p.type_url == ENDPOINT else
                            ["http_proxy"] if p.type_url == ROUTE else [], nonce=p.nonce, version=p.version_info)
            # An incremental push: EDS only, only the changed service.
            reg.set_endpoints(REVIEWS, 9080, [endpoint("127.10.0.2"), endpoint("127.10.0.3")])
            ads.push(PushRequest.of(TriggerReason.ENDPOINT, full=False,
                                    configs={ConfigKey("ServiceEntry", REVIEWS, "default")}))
            inc = await client.recv()
            assert inc.type_url == ENDPOINT
            assert ads.metrics.registry.get_sample_value("pilot_xds_pushes_total", {"type": "eds", "protocol": "sotw"}) == 2
            cla = from_bytes(ENDPOINT, inc.resources[0].value)
            assert len(cla["endpoints"][0]["lbEndpoints"]) == 2
            assert await client.nothing()
            # A push about a kind no xDS type depends on sends nothing (a WorkloadGroup is in every
            # skipped list; an AuthorizationPolicy is not: istiod rebuilds listeners for its RBAC filters).
            ads.push(PushRequest.of(TriggerReason.CONFIG, configs={ConfigKey("WorkloadGroup", "x", "default")}))
            assert await client.nothing()
        finally:
            await client.close()
            await ads.stop()
    run(scenario())


def test_debounced_pushes_reach_the_ads_server():
    reg, store, discovery, ads = make_server()
    discovery.start()
    discovery.config_update(PushRequest.of(TriggerReason.CONFIG, start=0.0))
    discovery.config_update(PushRequest.of(TriggerReason.SERVICE, start=0.0))
    before = ads.push_context.version
    discovery.clock.run()
    assert len(discovery.pushes) == 1 and ads.push_context.version != before


def test_bad_node_id_ends_the_stream_with_invalid_argument():
    async def scenario():
        _, _, _, ads = make_server()
        port = await ads.start()
        client = Client(port)
        client.first = False
        client.outbox.put_nowait(DiscoveryRequest.from_dict({"typeUrl": CLUSTER, "node": {"id": "not-a-node-id"}}))
        try:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await client.recv()
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        finally:
            await client.close()
            await ads.stop()
    run(scenario())


def test_not_ready_server_answers_unavailable():
    async def scenario():
        reg, store, discovery, _ = make_server()
        ads = AdsServer(discovery, None, reg, store, is_ready=lambda: False)
        port = await ads.start()
        client = Client(port)
        client.send(CLUSTER)
        try:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await client.recv()
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        finally:
            await client.close()
            await ads.stop()
    run(scenario())


def test_request_decoder_agrees_with_the_protobuf_parser():
    req = DiscoveryRequest.from_dict({"versionInfo": "3", "node": NODE, "resourceNames": ["a", "b" * 200],
                                      "typeUrl": ENDPOINT, "responseNonce": "3-9",
                                      "errorDetail": {"code": 3, "message": "nope"}})
    got = decode_discovery_request(bytes(req))
    assert (got.version_info, got.resource_names, got.type_url, got.response_nonce) == ("3", ["a", "b" * 200], ENDPOINT, "3-9")
    assert (got.error_code, got.error_message) == (3, "nope")
    assert Node.parse(got.node).id == NODE["id"]
    ack = decode_discovery_request(bytes(DiscoveryRequest.from_dict({"typeUrl": CLUSTER, "responseNonce": "1"})))
    assert ack.node is None and ack.error_code == 0 and ack.resource_names == []


def test_route_configs_are_serialized_per_virtual_host():
    from envoy_data_plane.envoy.config.route.v3 import RouteConfiguration

    def rc(timeout):
        return {"name": "http_proxy", "validateClusters": False, "virtualHosts": [
            {"name": f"h{i}:80", "domains": [f"h{i}"], "routes": [
                {"match": {"prefix": "/"}, "route": {"cluster": f"c{i}", "timeout": timeout if i == 0 else "0s"}}]}
            for i in range(3)]}

    cache = XdsCache()
    first = cache.serialize(ROUTE, rc("1s"))
    assert RouteConfiguration.parse(first).to_dict() == RouteConfiguration.from_dict(rc("1s")).to_dict()
    misses = cache.misses
    second = cache.serialize(ROUTE, rc("2s"))  # one virtual host changed
    assert cache.misses == misses + 1
    assert from_bytes(ROUTE, second)["virtualHosts"][0]["routes"][0]["route"]["timeout"] == "2s"


def test_fast_serialization_equals_the_validated_one(monkeypatch):
    from mesh.xds import fastpath, resources

    cluster = {"name": "outbound|9080||r", "type": "EDS", "connectTimeout": "10s", "lbPolicy": "ROUND_ROBIN",
               "edsClusterConfig": {"edsConfig": {"ads": {}, "resourceApiVersion": "V3"}, "serviceName": "x"},
               "circuitBreakers": {"thresholds": [{"maxConnections": 4294967295, "trackRemaining": True}]}}
    original = betterproto2.Message._is_pydantic
    fast = resources.to_bytes(CLUSTER, cluster)
    assert betterproto2.Message._is_pydantic is original  # the switch is put back
    monkeypatch.setattr(fastpath, "VALIDATE_IN_PYTHON", True)
    assert resources.to_bytes(CLUSTER, cluster) == fast


def test_xds_status_follows_istioctl():
    assert xds_status("", "") == "NOT SENT"
    assert xds_status("1-1", "1-1") == "SYNCED"
    assert xds_status("1-2", "1-1") == "STALE"
    assert xds_status("1-2", "") == "STALE (Never Acknowledged)"


def test_pushes_to_a_busy_proxy_merge_into_one():
    async def scenario():
        reg, store, discovery, ads = make_server()
        con = Connection(peer="test")
        ads.connections[con.number] = con
        ads.push(PushRequest.of(TriggerReason.ENDPOINT, full=False, configs={ConfigKey("ServiceEntry", "a", "x")}))
        ads.push(PushRequest.of(TriggerReason.CONFIG, configs={ConfigKey("VirtualService", "v", "x")}))
        assert con.queue.qsize() == 1
        merged = con.pending_push
        assert merged.full and merged.reason == {"endpoint": 1, "config": 1}
        assert merged.configs_updated == {ConfigKey("ServiceEntry", "a", "x"), ConfigKey("VirtualService", "v", "x")}
    run(scenario())
