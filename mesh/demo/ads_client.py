"""A tiny ADS client for the notebooks and tests: one stream, requests in, responses out.

It stands where Envoy stands on the State-of-the-World stream (the other side of
https://github.com/istio/istio/blob/1.19.0/pilot/pkg/xds/ads.go#L240-L349), so a notebook can
send exactly the request it wants to show — the first request with the node, an ACK, a NACK, a
stale nonce — and read what istiod answers. It is not a proxy: it applies nothing.
``DeltaAdsClient`` does the same on the Delta stream (``DeltaAggregatedResources``,
https://github.com/istio/istio/blob/1.19.0/pilot/pkg/xds/delta.go#L41-L150).
"""

from __future__ import annotations

import asyncio

import grpc
from envoy_data_plane.envoy.service.discovery.v3 import (
    DeltaDiscoveryRequest,
    DeltaDiscoveryResponse,
    DiscoveryRequest,
    DiscoveryResponse,
)

from mesh.xds.ads import ADS_METHOD, ADS_SERVICE
from mesh.xds.delta import DELTA_METHOD


def sidecar_node(pod: str, namespace: str, ip: str, labels: dict | None = None) -> dict:
    """The ``node`` of a sidecar's first request, as pilot-agent fills it in (id and the metadata
    mesh reads; ``PROXY_CONFIG`` marks it as a proxy, not a debug client, for StatusGen's syncz)."""
    return {"id": f"sidecar~{ip}~{pod}.{namespace}~{namespace}.svc.cluster.local",
            "cluster": f"{pod}.{namespace}",
            "metadata": {"NAMESPACE": namespace, "LABELS": dict(labels or {}),
                         "PROXY_CONFIG": {"discoveryAddress": "istiod.istio-system.svc:15012"}}}


def debug_node(ip: str = "127.0.0.1", namespace: str = "istio-system") -> dict:
    """The ``node`` of istioctl's debug client (``istioctl x proxy-status --xds-address``): adsc's id
    for workload ``test-1`` and metadata ``GENERATOR: event``, which sends its requests to StatusGen
    (https://github.com/istio/istio/blob/1.19.0/istioctl/pkg/xds/client.go#L42-L73)."""
    return {"id": f"sidecar~{ip}~test-1.default~default.svc.cluster.local",
            "metadata": {"GENERATOR": "event", "NAMESPACE": namespace}}


class AdsClient:
    """Send DiscoveryRequests on one ADS stream and read DiscoveryResponses (raw protobuf over
    ``grpc.aio``). The node goes on the first request only, as Envoy sends it."""

    method, response = ADS_METHOD, DiscoveryResponse

    def __init__(self, port: int, node: dict, host: str = "127.0.0.1"):
        self.channel = grpc.aio.insecure_channel(f"{host}:{port}")
        self.outbox: asyncio.Queue = asyncio.Queue()
        call = self.channel.stream_stream(self.method, request_serializer=bytes,
                                          response_deserializer=self.response.parse)

        async def requests():
            while (msg := await self.outbox.get()) is not None:
                yield msg
        self.call = call(requests())
        self.node = node
        self.first = True
        self._pending: asyncio.Future | None = None

    def send(self, type_url: str, names=(), nonce: str = "", version: str = "", error: str | None = None) -> None:
        d = {"typeUrl": type_url, "resourceNames": list(names), "responseNonce": nonce, "versionInfo": version}
        if self.first:
            d["node"], self.first = self.node, False
        if error:
            d["errorDetail"] = {"code": 3, "message": error}
        self.outbox.put_nowait(DiscoveryRequest.from_dict(d))

    def ack(self, resp: DiscoveryResponse, names=()) -> None:
        self.send(resp.type_url, names, nonce=resp.nonce, version=resp.version_info)

    def nack(self, resp: DiscoveryResponse, error: str, last_good_version: str = "", names=()) -> None:
        self.send(resp.type_url, names, nonce=resp.nonce, version=last_good_version, error=error)

    def _read(self) -> asyncio.Future:
        # One read in flight at a time: a read that timed out in nothing() is the next recv().
        if self._pending is None:
            self._pending = asyncio.ensure_future(self.call.read())
        return self._pending

    async def recv(self, timeout: float = 5.0) -> DiscoveryResponse:
        result = await asyncio.wait_for(asyncio.shield(self._read()), timeout)
        self._pending = None
        if result is grpc.aio.EOF:
            raise EOFError("the server ended the stream")
        return result

    async def nothing(self, wait: float = 0.3) -> bool:
        """True when no response arrives within ``wait`` seconds."""
        try:
            await asyncio.wait_for(asyncio.shield(self._read()), wait)
        except TimeoutError:
            return True
        return False

    async def close(self) -> None:
        """End the stream from the client side, as an Envoy that goes away does."""
        if self._pending is not None:
            self._pending.cancel()
        self.outbox.put_nowait(None)
        await self.channel.close()


class DeltaAdsClient(AdsClient):
    """The same on the Delta stream: DeltaDiscoveryRequests out (subscribe, unsubscribe, initial
    versions, nonce, error), DeltaDiscoveryResponses in."""

    method, response = f"/{ADS_SERVICE}/{DELTA_METHOD}", DeltaDiscoveryResponse

    def send(self, type_url: str, subscribe=(), unsubscribe=(), nonce: str = "", initial: dict | None = None,
             error: str | None = None) -> None:
        d = {"typeUrl": type_url, "resourceNamesSubscribe": list(subscribe),
             "resourceNamesUnsubscribe": list(unsubscribe), "responseNonce": nonce,
             "initialResourceVersions": dict(initial or {})}
        if self.first:
            d["node"], self.first = self.node, False
        if error:
            d["errorDetail"] = {"code": 3, "message": error}
        self.outbox.put_nowait(DeltaDiscoveryRequest.from_dict(d))

    def ack(self, resp: DeltaDiscoveryResponse, names=()) -> None:
        """A Delta ACK quotes the nonce alone (``names``: subscribe to these at the same time)."""
        self.send(resp.type_url, names, nonce=resp.nonce)

    def nack(self, resp: DeltaDiscoveryResponse, error: str, last_good_version: str = "", names=()) -> None:
        self.send(resp.type_url, names, nonce=resp.nonce, error=error)
