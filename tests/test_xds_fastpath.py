"""The push fast paths of mesh/xds/fastpath.py: they must agree with the readable path they replace."""

from __future__ import annotations

import gc
import sys

from envoy_data_plane.envoy.config.core.v3 import Node
from envoy_data_plane.envoy.service.discovery.v3 import DiscoveryRequest

from mesh.xds.connection import Connection, RequestKind
from mesh.xds.fastpath import (
    GC_YOUNG_THRESHOLD,
    collect_garbage_less_often,
    decode_discovery_request,
    decode_node,
)
from mesh.xds.types import CLUSTER, ENDPOINT

NODE = {"id": "sidecar~127.10.0.1~productpage-1.default~default.svc.cluster.local", "cluster": "productpage.default",
        "metadata": {"NAMESPACE": "default", "LABELS": {"app": "productpage", "version": "v1"},
                     "ISTIO_META_WORKLOAD_CERT": True, "CONCURRENCY": 2, "RATIO": 0.5,
                     "LIST": [1, "a", None], "NOTHING": None}}


def test_node_decoder_agrees_with_betterproto2():
    data = bytes(Node.from_dict(NODE))
    node_id, metadata = decode_node(data)
    slow = Node.parse(data)
    assert node_id == slow.id == NODE["id"]
    assert metadata == slow.to_dict()["metadata"]
    assert metadata["LABELS"] == {"app": "productpage", "version": "v1"} and metadata["NOTHING"] is None


def test_node_without_metadata_decodes_to_an_empty_dict():
    assert decode_node(bytes(Node.from_dict({"id": "router~1.2.3.4~gw.ns~ns.svc.cluster.local"}))) == (
        "router~1.2.3.4~gw.ns~ns.svc.cluster.local", {})
    assert decode_node(b"") == ("", {})


def _eds_request(names: list[str], nonce: str = "", version: str = "") -> bytes:
    return bytes(DiscoveryRequest.from_dict({"versionInfo": version, "resourceNames": names, "typeUrl": ENDPOINT,
                                             "responseNonce": nonce}))


def test_names_left_in_the_parser_compare_like_a_list():
    names = [f"outbound|9080||svc-{i}.default.svc.cluster.local" for i in range(50)]
    got = decode_discovery_request(_eds_request(names, "1-1", "1")).resource_names
    assert got == names and not got != names and sorted(got) == sorted(names) and len(got) == 50
    assert got != names[:-1] and got != [*names[:-1], "other"]


def test_acks_are_told_from_new_subscriptions_with_parser_names():
    names = ["outbound|9080||a.default.svc.cluster.local", "outbound|9080||b.default.svc.cluster.local"]
    con = Connection(peer="test")

    def classify(raw: bytes) -> RequestKind:
        req = decode_discovery_request(raw)
        return con.classify(req.type_url, req.response_nonce, req.resource_names, "")

    assert classify(_eds_request(names)) == RequestKind.INITIAL
    con.watched[ENDPOINT].nonce_sent = con.watched[ENDPOINT].version_sent = "1"
    assert classify(_eds_request(names, "1", "1")) == RequestKind.ACK
    assert classify(_eds_request(list(reversed(names)), "1", "1")) == RequestKind.ACK  # same set, other order
    assert classify(_eds_request(names[:1], "1", "1")) == RequestKind.ACK_NEW_NAMES
    assert con.watched[ENDPOINT].names == names[:1]


def test_connections_watching_the_same_names_share_one_list_of_interned_strings():
    names = [f"outbound|9080||shared-{i}.default.svc.cluster.local" for i in range(20)]
    a, b, c = Connection(peer="a"), Connection(peer="b"), Connection(peer="c")
    for con, watched in ((a, names), (b, list(names)), (c, names[:10])):
        req = decode_discovery_request(_eds_request(watched))
        con.classify(req.type_url, req.response_nonce, req.resource_names, "")
    assert a.watched[ENDPOINT].names is b.watched[ENDPOINT].names  # one list for both
    assert a.watched[ENDPOINT].names == names
    assert c.watched[ENDPOINT].names is not a.watched[ENDPOINT].names and c.watched[ENDPOINT].names == names[:10]
    assert all(n is sys.intern(n) for n in a.watched[ENDPOINT].names)
    req = decode_discovery_request(bytes(DiscoveryRequest.from_dict({"typeUrl": CLUSTER})))
    assert req.resource_names == [] and a.classify(CLUSTER, "", req.resource_names, "") == RequestKind.INITIAL


def test_garbage_is_collected_less_often_but_never_turned_back_on():
    saved = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        collect_garbage_less_often()
        assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, 10, 10)
        gc.set_threshold(0, 10, 10)  # automatic collection disabled by someone: leave it so
        collect_garbage_less_often()
        assert gc.get_threshold()[0] == 0
    finally:
        gc.set_threshold(*saved)


def test_an_idle_stream_keeps_no_request_alive():
    """After its ACK is handled, a stream waiting for the next message holds no DiscoveryRequest —
    neither the raw bytes nor the decoded fields (thousands of idle streams would each keep one)."""
    import asyncio

    from test_xds_ads import Client, make_server

    from mesh.xds.fastpath import RequestFields

    def live_requests() -> list[RequestFields]:
        gc.collect()
        return [o for o in gc.get_objects() if isinstance(o, RequestFields)]

    async def scenario():
        _, _, _, ads = make_server()
        acked = asyncio.Event()
        ads.ack_listeners.append(lambda con, type_url, version, nonce: acked.set())
        port = await ads.start()
        client = Client(port)
        try:
            client.send(CLUSTER)
            cds = await client.recv()
            client.send(CLUSTER, nonce=cds.nonce, version=cds.version_info)
            await asyncio.wait_for(acked.wait(), 5)
            await asyncio.sleep(0.05)  # let the stream go back to waiting
            assert ads.connections and live_requests() == []
        finally:
            await client.close()
            await ads.stop(grace=0)

    asyncio.run(asyncio.wait_for(scenario(), 20))
