"""StatusGen over xDS: a scripted debug client (istioctl's ``GENERATOR: event`` node) reads syncz,
the connected nodes, a config dump, and the connect / NACK / disconnect events."""

from __future__ import annotations

import asyncio

import pytest
from envoy_data_plane.envoy.admin.v3 import ClustersConfigDump
from envoy_data_plane.envoy.config.core.v3 import Node
from envoy_data_plane.envoy.service.discovery.v3 import DiscoveryRequest
from test_xds_ads import NODE, make_server

from mesh.demo.ads_client import AdsClient, DeltaAdsClient, debug_node, sidecar_node
from mesh.model.push_request import PushRequest, TriggerReason
from mesh.xds.statusgen import CLIENT_CONFIG_TYPE, NODE_TYPE, REQUEST_TYPE, decode_client_configs, serves
from mesh.xds.types import (
    CLUSTER,
    CONNECT,
    DEBUG_CONFIG_DUMP,
    DEBUG_SYNCZ,
    DEBUG_TYPE,
    DISCONNECT,
    ENDPOINT,
    EXTENSION_CONFIG,
    LISTENER,
    NACK,
    ROUTE,
)

SIDECAR = {**NODE, "metadata": {**NODE["metadata"], "PROXY_CONFIG": {}}}  # a proxy, as pilot-agent sends it


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


def test_find_generator_routes_only_status_requests_to_statusgen():
    known = {CLUSTER}
    assert serves({"GENERATOR": "event"}, "istio.io/connections", known)  # StatusGen is its default
    assert serves({"GENERATOR": "event"}, CONNECT, known) and not serves({"GENERATOR": "event"}, CLUSTER, known)
    assert serves({}, DEBUG_SYNCZ, known) and not serves({}, CONNECT, known)  # no generator: the debug prefix only
    assert serves({"GENERATOR": "api"}, CONNECT, known) and not serves({"GENERATOR": "api"}, DEBUG_SYNCZ, known)
    assert not serves({"GENERATOR": "event"}, DEBUG_TYPE, known)  # DebugGen's, not served


async def _recv_type(client: AdsClient, type_url: str, timeout: float = 5.0, event: bool = False):
    """The next response of this type (pushes of other types may come first); ``event``: the next
    event (a response without a nonce: a push answers watched event types too, with nothing)."""
    while True:
        resp = await client.recv(timeout)
        if resp.type_url == type_url and (not event or not resp.nonce):
            return resp


def test_a_debug_client_reads_status_and_events():
    async def scenario():
        _, _, _, ads = make_server()
        port = await ads.start()
        debug = AdsClient(port, debug_node())
        sidecar = AdsClient(port, SIDECAR)
        try:
            debug.send(CONNECT)
            connected = await debug.recv()
            assert [Node.parse(r.value).id for r in connected.resources] == [debug_node()["id"]]
            assert connected.nonce and connected.resources[0].type_url == NODE_TYPE
            debug.ack(connected)
            for t in (DISCONNECT, NACK):  # watched like any type: an empty first answer, then events
                debug.send(t)
                first = await debug.recv()
                assert (first.type_url, len(first.resources)) == (t, 0)
                debug.ack(first)

            sidecar.send(CLUSTER)  # a proxy connects: a connect event, without version or nonce
            event = await _recv_type(debug, CONNECT, event=True)
            assert [Node.parse(r.value).id for r in event.resources] == [SIDECAR["id"]]
            assert (event.version_info, event.nonce) == ("", "")
            cds = await sidecar.recv()
            sidecar.ack(cds)
            sidecar.send(LISTENER)
            lds = await sidecar.recv()
            sidecar.nack(lds, "listener refused")
            event = await _recv_type(debug, NACK, event=True)
            [refused] = [DiscoveryRequest.parse(r.value) for r in event.resources]
            assert event.resources[0].type_url == REQUEST_TYPE
            assert (refused.node.id, refused.type_url, refused.response_nonce, refused.error_detail.message) == (
                "productpage-1.default", LISTENER, lds.nonce, "listener refused")

            debug.send(DEBUG_SYNCZ)
            syncz = await _recv_type(debug, DEBUG_SYNCZ)
            assert [r.type_url for r in syncz.resources] == [CLIENT_CONFIG_TYPE]  # the debug client is left out
            [config] = decode_client_configs(syncz.resources)
            assert config["node"]["id"] == "productpage-1.default"
            assert config["node"]["metadata"] == {"NAMESPACE": "default"}
            assert [(c["type_url"], c["config_status"]) for c in config["generic_xds_configs"]] == [
                (LISTENER, "STALE"), (ROUTE, "NOT_SENT"), (ENDPOINT, "NOT_SENT"), (CLUSTER, "SYNCED"),
                (EXTENSION_CONFIG, "NOT_SENT")]
            debug.ack(syncz)  # a debug type is answered on every request, ACK or not, and never watched
            assert (await _recv_type(debug, DEBUG_SYNCZ)).resources
            con = ads.connection("test-1.default")
            assert DEBUG_SYNCZ not in con.watched and CONNECT in con.watched

            debug.send(DEBUG_CONFIG_DUMP, ["productpage-1.default"])
            dump = await _recv_type(debug, DEBUG_CONFIG_DUMP)
            kinds = [r.type_url.rsplit(".", 1)[1] for r in dump.resources]
            assert kinds[:2] == ["BootstrapConfigDump", "ClustersConfigDump"] and "ListenersConfigDump" in kinds
            clusters = ClustersConfigDump.parse(dump.resources[1].value)
            assert "outbound|9080||reviews.default.svc.cluster.local" in {
                c.cluster.unpack().name for c in clusters.dynamic_active_clusters}
            debug.send(DEBUG_CONFIG_DUMP, ["nobody.default"])  # "like a 404": an empty answer
            assert not (await _recv_type(debug, DEBUG_CONFIG_DUMP)).resources

            debug.send("istio.io/connections")  # what istioctl version asks: no case in Generate
            none = await _recv_type(debug, "istio.io/connections")
            assert none.resources == [] and none.nonce

            ads.push(PushRequest.of(TriggerReason.CONFIG))  # a push reaches the watched status types too
            pushed = await _recv_type(debug, CONNECT)
            assert pushed.nonce and len(pushed.resources) == 2

            await sidecar.close()  # the proxy leaves: a disconnect event
            event = await _recv_type(debug, DISCONNECT, event=True)
            assert [Node.parse(r.value).id for r in event.resources] == [SIDECAR["id"]]
            assert ads.status.events_sent == 3
        finally:
            await debug.close()
            await sidecar.close()
            await ads.stop()
    run(scenario())


def test_a_delta_nack_is_reported_and_a_client_without_generator_gets_only_debug_types():
    async def scenario():
        _, _, _, ads = make_server()
        port = await ads.start()
        debug = AdsClient(port, debug_node())
        plain = AdsClient(port, sidecar_node("plain", "default", "127.10.0.9"))
        delta = DeltaAdsClient(port, sidecar_node("delta", "default", "127.10.0.7"))
        try:
            debug.send(NACK)
            debug.ack(await debug.recv())
            delta.send(CLUSTER)
            cds = await delta.recv()
            delta.nack(cds, "no thanks")
            event = await _recv_type(debug, NACK, event=True)
            [refused] = [DiscoveryRequest.parse(r.value) for r in event.resources]
            assert (refused.node.id, refused.type_url, refused.error_detail.message) == (
                "delta.default", CLUSTER, "no thanks")

            plain.send(CONNECT)  # a sidecar's istio.io/connect goes to the "api" generator mesh lacks
            assert await plain.nothing(0.3)
            plain.send(DEBUG_SYNCZ)  # but the debug prefix reaches StatusGen for anyone
            syncz = await _recv_type(plain, DEBUG_SYNCZ)
            ids = {c["node"]["id"] for c in decode_client_configs(syncz.resources)}
            assert ids == {"plain.default", "delta.default"}
        finally:
            for c in (debug, plain, delta):
                await c.close()
            await ads.stop()
    run(scenario())


def test_proxy_status_over_xds_prints_istioctls_xds_table():
    from mesh.cli import UsageError
    from mesh.cli.proxy_status import xds_rows

    async def scenario():
        _, _, _, ads = make_server()
        port = await ads.start()
        sidecar = AdsClient(port, SIDECAR)
        try:
            sidecar.send(CLUSTER)
            sidecar.ack(await sidecar.recv())
            for _ in range(100):
                con = ads.connection("productpage-1.default")
                if con is not None and con.synced():
                    break
                await asyncio.sleep(0.02)
            return await asyncio.to_thread(xds_rows, f"127.0.0.1:{port}")
        finally:
            await sidecar.close()
            await ads.stop()
    assert run(scenario()) == [{"NAME": "productpage-1.default", "CLUSTER": "", "ISTIOD": "", "VERSION": "",
                                "CDS": "SYNCED", "LDS": "NOT_SENT", "EDS": "NOT_SENT", "RDS": "NOT_SENT",
                                "ECDS": "NOT_SENT"}]
    for bad in ("10.0.0.1:15010", "nowhere", "127.0.0.1:0"):
        with pytest.raises(UsageError, match="--xds-address"):
            xds_rows(bad)
