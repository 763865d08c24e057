"""The new-stream rate limit (``PILOT_MAX_REQUESTS_PER_SECOND``, burst 1): x/time/rate's token bucket,
``WaitForRequestLimit``'s one second, and the refusal istiod gives on the real gRPC server, SotW and Delta."""

from __future__ import annotations

import asyncio
import logging
import math
import time

import grpc
import pytest
from test_xds_ads import make_server

from mesh.demo.ads_client import AdsClient, DeltaAdsClient, sidecar_node
from mesh.xds.debug import proxy_status
from mesh.xds.ratelimit import EXCEEDED, Limiter, RequestRateLimit, limit_from_env
from mesh.xds.types import CLUSTER

REFUSAL = f"request rate limit exceeded: {EXCEEDED}"


class FakeTime:
    def __init__(self):
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_simultaneous_streams_wait_k_over_limit_and_those_past_one_second_are_refused():
    clock = FakeTime()
    limiter = Limiter(25, 1, clock)
    got = [limiter.reserve(1.0) for _ in range(40)]
    admitted = [r for r in got if r is not None]
    assert len(admitted) == 25 and got[25:] == [None] * 15
    assert [round(r.time_to_act - clock.t, 6) for r in admitted] == [round(k / 25, 6) for k in range(25)]
    clock.t += 1.0  # a second later the bucket has paid back what was reserved, but holds no extra
    assert limiter.reserve(1.0).time_to_act == pytest.approx(clock.t)
    assert limiter.reserve(1.0).time_to_act == pytest.approx(clock.t + 0.04)


def test_a_refusal_takes_no_token_and_a_cancelled_wait_gives_its_token_back():
    clock = FakeTime()
    limiter = Limiter(2, 1, clock)
    first, second = limiter.reserve(1.0), limiter.reserve(1.0)
    assert second.time_to_act == pytest.approx(clock.t + 0.5)
    assert limiter.reserve(1.0) is None and limiter.reserve(1.0) is None  # refusals change nothing
    assert limiter.reserve(1.0 + 1e-9).time_to_act == pytest.approx(clock.t + 1.0)  # would fit a longer budget
    limiter2 = Limiter(2, 1, clock)
    limiter2.reserve(1.0)
    waiting = limiter2.reserve(1.0)
    limiter2.cancel(waiting)  # the stream went away while it waited
    assert limiter2.reserve(1.0).time_to_act == pytest.approx(clock.t + 0.5)  # its slot is free again
    assert first.time_to_act == clock.t


def test_limit_from_env_as_istiod_reads_it(caplog):
    assert limit_from_env({}) == 25.0
    assert limit_from_env({"PILOT_MAX_REQUESTS_PER_SECOND": "100"}) == 100.0
    assert limit_from_env({"PILOT_MAX_REQUESTS_PER_SECOND": "0"}) == 0.0
    assert math.isinf(limit_from_env({"PILOT_MAX_REQUESTS_PER_SECOND": "Inf"}))
    with caplog.at_level(logging.WARNING):
        assert limit_from_env({"PILOT_MAX_REQUESTS_PER_SECOND": "lots"}) == 25.0
    assert "PILOT_MAX_REQUESTS_PER_SECOND" in caplog.text and "lots" in caplog.text


def test_zero_turns_the_limit_off():
    limit = RequestRateLimit(0)
    assert all(asyncio.run(limit.wait()) == "" for _ in range(100))


async def _storm(clients: list[AdsClient]) -> tuple[list, float]:
    t0 = time.monotonic()
    for c in clients:
        c.send(CLUSTER)
    results = await asyncio.gather(*(c.recv(10) for c in clients), return_exceptions=True)
    return results, time.monotonic() - t0


def _check_storm(results: list, limit: float, spread: float) -> list[int]:
    """Every stream is either served or refused with istiod's code and message; the number served
    is what the bucket allows in the time the streams took to arrive."""
    admitted = [i for i, r in enumerate(results) if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, BaseException)]
    for err in refused:
        assert isinstance(err, grpc.aio.AioRpcError), err
        assert (err.code(), err.details()) == (grpc.StatusCode.RESOURCE_EXHAUSTED, REFUSAL)
    assert refused, "a storm larger than the bucket refuses some streams"
    assert limit <= len(admitted) <= limit + 1 + math.ceil(spread * limit), (len(admitted), spread)
    return admitted


@pytest.mark.parametrize("protocol", ["sotw", "delta"])
def test_a_connect_storm_on_the_real_server(monkeypatch, protocol):
    monkeypatch.setenv("PILOT_MAX_REQUESTS_PER_SECOND", "5")  # read when the DiscoveryServer is made

    async def scenario():
        _, _, discovery, ads = make_server()
        assert discovery.request_rate_limit.limit == 5
        port = await ads.start()
        client_class = AdsClient if protocol == "sotw" else DeltaAdsClient
        clients = [client_class(port, sidecar_node(f"storm-{i}", "default", f"127.10.1.{i + 1}")) for i in range(15)]
        try:
            results, spread = await _storm(clients)
            admitted = _check_storm(results, 5, spread)
            assert ads.closed_by_server["RESOURCE_EXHAUSTED"] == 15 - len(admitted)
            assert discovery.request_rate_limit.refused == 15 - len(admitted)
            for i in admitted:  # the admitted ones sync
                clients[i].ack(results[i])
            for _ in range(100):
                rows = proxy_status(ads)
                if len(rows) == len(admitted) and all(r["CDS"] == "SYNCED" for r in rows):
                    break
                await asyncio.sleep(0.02)
            assert sorted(r["NAME"] for r in rows) == sorted(f"storm-{i}.default" for i in admitted)
            assert all(r["CDS"] == "SYNCED" for r in rows)
        finally:
            for c in clients:
                await c.close()
            await ads.stop()
    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_a_stream_that_waits_for_its_token_is_served_late(monkeypatch):
    monkeypatch.setenv("PILOT_MAX_REQUESTS_PER_SECOND", "4")

    async def scenario():
        _, _, discovery, ads = make_server()
        port = await ads.start()
        first = AdsClient(port, sidecar_node("first", "default", "127.10.1.1"))
        second = AdsClient(port, sidecar_node("second", "default", "127.10.1.2"))
        try:
            t0 = time.monotonic()
            first.send(CLUSTER)
            second.send(CLUSTER)  # one token in the bucket: the second stream waits 1/4 s for the next
            await first.recv()
            await second.recv()
            assert time.monotonic() - t0 >= 0.2
            assert (discovery.request_rate_limit.admitted, discovery.request_rate_limit.refused) == (2, 0)
        finally:
            await first.close()
            await second.close()
            await ads.stop()
    asyncio.run(asyncio.wait_for(scenario(), 30))
