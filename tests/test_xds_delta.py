"""Delta xDS without Envoy: a scripted gRPC client speaks DeltaAggregatedResources to our server."""

from __future__ import annotations

import asyncio

import grpc
from envoy_data_plane.envoy.service.discovery.v3 import DeltaDiscoveryRequest, DeltaDiscoveryResponse
from test_xds_ads import NODE, REVIEWS, Client, make_server, run
from xds_fakes import endpoint

from mesh.demo.ads_client import DeltaAdsClient
from mesh.model.push_request import ConfigKey, PushRequest, TriggerReason
from mesh.xds.ads import ADS_SERVICE
from mesh.xds.debug import adsz, proxy_status, syncz
from mesh.xds.delta import assemble_delta_response, decode_delta_request
from mesh.xds.fastpath import encode_resource_entry
from mesh.xds.resources import from_bytes
from mesh.xds.types import CLUSTER, ENDPOINT, LISTENER

DELTA = f"/{ADS_SERVICE}/DeltaAggregatedResources"
REVIEWS_CLUSTER = f"outbound|9080||{REVIEWS}"
RATINGS = "ratings.default.svc.cluster.local"
RATINGS_CLUSTER = f"outbound|9080||{RATINGS}"


class DeltaClient(DeltaAdsClient):
    """The notebooks' Delta ADS client (``mesh.demo.ads_client``), as productpage-1."""

    def __init__(self, port: int):
        super().__init__(port, NODE)


def names(resp: DeltaDiscoveryResponse) -> list[str]:
    return [r.name for r in resp.resources]


def versions(resp: DeltaDiscoveryResponse) -> dict[str, str]:
    return {r.name: r.version for r in resp.resources}


def test_delta_wire_encoding_matches_the_protobuf_parser():
    class R:
        name, version, delta_encoded = "c1", "abc", None
        encoded = encode_resource_entry(CLUSTER, b"\x0a\x02c1")
    from mesh.xds.delta import delta_entry
    data = assemble_delta_response("7", CLUSTER, "7-1", [delta_entry(R)], ["gone"])
    resp = DeltaDiscoveryResponse.parse(data)
    assert (resp.system_version_info, resp.type_url, resp.nonce, resp.removed_resources) == ("7", CLUSTER, "7-1", ["gone"])
    [res] = resp.resources
    assert (res.name, res.version, res.resource.type_url, res.resource.value) == ("c1", "abc", CLUSTER, b"\x0a\x02c1")
    req = DeltaDiscoveryRequest.from_dict({"typeUrl": ENDPOINT, "resourceNamesSubscribe": ["a", "b"],
                                           "resourceNamesUnsubscribe": ["c"], "responseNonce": "n",
                                           "initialResourceVersions": {"a": "1"}, "node": NODE,
                                           "errorDetail": {"code": 3, "message": "bad"}})
    fields = decode_delta_request(bytes(req))
    assert (fields.type_url, list(fields.subscribe), list(fields.unsubscribe), fields.response_nonce) == (
        ENDPOINT, ["a", "b"], ["c"], "n")
    assert fields.initial_versions == {"a": "1"} and (fields.error_code, fields.error_message) == (3, "bad")
    assert fields.node is not None


def test_delta_conversation_wildcard_subscribe_removal_nack_and_stale_nonce():
    async def scenario():
        reg, store, discovery, ads = make_server()
        reg.add_service("ratings")
        reg.set_endpoints(RATINGS, 9080, [endpoint("127.10.0.5", app="ratings")])
        port = await ads.start()
        client = DeltaClient(port)
        try:
            client.send(CLUSTER)  # subscribing to nothing: wildcard
            cds = await client.recv()
            assert {REVIEWS_CLUSTER, RATINGS_CLUSTER} <= set(names(cds)) and cds.removed_resources == []
            assert all(r.version for r in cds.resources)
            client.send(CLUSTER, nonce=cds.nonce)  # ACK
            client.send(ENDPOINT, [REVIEWS_CLUSTER])
            eds = await client.recv()
            assert names(eds) == [REVIEWS_CLUSTER]
            client.send(ENDPOINT, nonce=eds.nonce)
            assert await client.nothing()  # an ACK gets no answer
            # A new subscription is answered with just the new name.
            client.send(ENDPOINT, [RATINGS_CLUSTER], nonce=eds.nonce)
            eds2 = await client.recv()
            assert names(eds2) == [RATINGS_CLUSTER]
            client.send(ENDPOINT, nonce=eds2.nonce)
            # An incremental push for one service: one ClusterLoadAssignment, nothing removed.
            reg.set_endpoints(REVIEWS, 9080, [endpoint("127.10.0.2"), endpoint("127.10.0.3")])
            ads.push(PushRequest.of(TriggerReason.ENDPOINT, full=False, configs={ConfigKey("ServiceEntry", REVIEWS, "default")}))
            inc = await client.recv()
            assert inc.type_url == ENDPOINT and names(inc) == [REVIEWS_CLUSTER] and inc.removed_resources == []
            assert len(from_bytes(ENDPOINT, inc.resources[0].resource.value)["endpoints"][0]["lbEndpoints"]) == 2
            client.send(ENDPOINT, nonce=inc.nonce)
            # The same endpoints again: the proxy holds that version, nothing is sent.
            ads.push(PushRequest.of(TriggerReason.ENDPOINT, full=False, configs={ConfigKey("ServiceEntry", REVIEWS, "default")}))
            assert await client.nothing()
            # Unsubscribing is not answered; the name leaves the watch.
            client.send(ENDPOINT, unsubscribe=[RATINGS_CLUSTER])
            assert await client.nothing()
            con = ads.connection("productpage-1.default")
            assert con.watched[ENDPOINT].names == [REVIEWS_CLUSTER] and RATINGS_CLUSTER not in con.delta[ENDPOINT].held
            # Deleting a service: a full push sends only its clusters' removal for CDS.
            del reg._services[RATINGS]
            ads.push(PushRequest.of(TriggerReason.SERVICE, configs={ConfigKey("ServiceEntry", RATINGS, "default")}))
            gone = await client.recv()
            assert gone.type_url == CLUSTER and names(gone) == [] and gone.removed_resources == [RATINGS_CLUSTER]
            # NACK it: recorded, shown by proxy-status, and not re-sent by the next push.
            client.send(CLUSTER, nonce=gone.nonce, error="cluster is bad")
            assert await client.nothing()
            assert con.watched[CLUSTER].last_error == "cluster is bad" and ads.rejects["CDS"] == 1
            [row] = proxy_status(ads)
            assert row["CDS"].startswith("STALE")
            ads.push(PushRequest.of(TriggerReason.SERVICE, configs={ConfigKey("ServiceEntry", RATINGS, "default")}))
            assert await client.nothing()  # nothing changed since: the NACKed answer is not sent again
            # A stale nonce is not an ACK.
            client.send(CLUSTER, nonce="no-such-nonce")
            assert await client.nothing()
            assert con.watched[CLUSTER].nonce_acked == cds.nonce
            [s] = syncz(ads)
            assert adsz(ads)["clients"][0]["protocol"] == "delta" and s["cluster_sent"] == gone.nonce and s["cluster_acked"] == cds.nonce
            assert ads.metrics.registry.get_sample_value("pilot_xds_pushes_total", {"type": "eds", "protocol": "delta"}) == 3
            assert ads.metrics.registry.get_sample_value("mesh_xds_sent_bytes_total",
                                                         {"type": "cds", "protocol": "delta"}) > 0
        finally:
            await client.close()
            await ads.stop()
    run(scenario())


def test_delta_reconnect_with_initial_versions_resends_only_what_changed():
    async def scenario():
        reg, store, discovery, ads = make_server()
        reg.add_service("ratings")
        port = await ads.start()
        first = DeltaClient(port)
        try:
            first.send(CLUSTER)
            cds = await first.recv()
            held = versions(cds)
            first.send(CLUSTER, nonce=cds.nonce)
        finally:
            await first.close()
        # While it was away: ratings is gone, details is new, reviews unchanged.
        del reg._services[RATINGS]
        reg.add_service("details")
        ads.push(PushRequest.of(TriggerReason.SERVICE))
        again = DeltaClient(port)
        try:
            again.send(CLUSTER, initial=held)
            resp = await again.recv()
            sent = set(names(resp))
            assert "outbound|9080||details.default.svc.cluster.local" in sent
            assert REVIEWS_CLUSTER not in sent  # held at the current version: not re-sent
            assert resp.removed_resources == [RATINGS_CLUSTER]
            # A SotW stream on the same server keeps being served as before.
            sotw = Client(port)
            try:
                sotw.send(LISTENER)
                lds = await sotw.recv()
                assert lds.type_url == LISTENER and lds.resources
            finally:
                await sotw.close()
        finally:
            await again.close()
            await ads.stop()
    run(scenario())


def test_istiod_serves_delta_on_both_xds_ports():
    """Stage 16 registers the one ADS service on 15010 and on the TLS server of 15012: Delta too."""
    from test_secure_servers import ISTIOD, serve

    async def scenario(server):
        server.clock.advance(10)  # bookinfo's Services arrive at t=5
        server.clock.run()
        got = {}
        for port_name in ("xds", "secure_xds"):
            target = f"127.0.0.1:{server.bound_ports[port_name]}"
            if port_name == "xds":
                channel = grpc.aio.insecure_channel(target)
            else:
                channel = grpc.aio.secure_channel(target, grpc.ssl_channel_credentials(server.ca.root_pem.encode()),
                                                  options=[("grpc.ssl_target_name_override", ISTIOD)])
            async with channel:
                call = channel.stream_stream(DELTA, request_serializer=bytes,
                                             response_deserializer=DeltaDiscoveryResponse.parse)()
                await call.write(bytes(DeltaDiscoveryRequest.from_dict({"node": NODE, "typeUrl": CLUSTER})))
                resp = await asyncio.wait_for(call.read(), 10)
                got[port_name] = set(names(resp))
                call.cancel()
        return got

    got = serve(scenario)
    reviews = "outbound|9080||reviews.default.svc.cluster.local"
    assert reviews in got["xds"] and got["xds"] == got["secure_xds"]


def test_a_malformed_delta_request_ends_only_its_stream():
    async def scenario():
        _, _, _, ads = make_server()
        port = await ads.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                call = channel.stream_stream(DELTA)()
                await call.write(b"\xff\xff\xff")  # not a protobuf message
                code, details = await call.code(), await call.details()
            good = DeltaClient(port)
            try:
                good.send(CLUSTER)
                assert names(await good.recv())  # the server still serves other streams
            finally:
                await good.close()
            return code, details
        finally:
            await ads.stop()
    code, details = run(scenario())
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("bad DeltaDiscoveryRequest")
