from mesh.clock import VirtualClock
from mesh.model.push_request import ConfigKey, PushRequest
from mesh.xds.debounce import Debouncer
from mesh.xds.discovery import DiscoveryServer

VS = ConfigKey("VirtualService", "reviews", "default")
DR = ConfigKey("DestinationRule", "reviews", "default")


def test_merge_semantics():
    a = PushRequest.of("config", configs={VS}, start=1.0)
    b = PushRequest.of("config", full=False, configs={DR}, start=2.0)
    merged = a.merge(b)
    assert merged.full is True and merged.configs_updated == {VS, DR}
    assert merged.reason["config"] == 2 and merged.start == 1.0
    everything = a.merge(PushRequest.of("global"))  # empty configs = all configs
    assert everything.configs_updated == set()
    assert a.configs_updated == {VS}  # inputs untouched


def _debouncer(**kw):
    clock = VirtualClock()
    pushes = []
    return clock, pushes, Debouncer(clock, pushes.append, **kw)


def test_a_burst_becomes_one_push_after_the_quiet_period():
    clock, pushes, d = _debouncer()
    for t in (0.0, 0.05, 0.09):
        clock.advance_to(t)
        d.submit(PushRequest.of("config", configs={VS}))
    clock.advance_to(0.18)
    assert pushes == []  # 0.09 + 0.1 not reached
    clock.advance_to(0.2)
    assert len(pushes) == 1
    push = pushes[0]
    assert push.events == 3 and abs(push.at - 0.19) < 1e-9 and push.request.reason["config"] == 3


def test_debounce_max_caps_the_wait_under_a_steady_trickle():
    clock, pushes, d = _debouncer(debounce_after=0.1, debounce_max=1.0)
    for i in range(60):  # one event every 50 ms for 3 s: never 100 ms of quiet
        clock.advance_to(i * 0.05)
        d.submit(PushRequest.of("endpoint", full=False))
    clock.run()
    assert len(pushes) >= 2
    assert all(p.waited <= 1.0 + 0.1 + 1e-9 for p in pushes)
    assert sum(p.events for p in pushes) == 60


def test_eds_skips_debounce_when_disabled():
    clock, pushes, d = _debouncer(enable_eds_debounce=False)
    d.submit(PushRequest.of("endpoint", full=False))
    assert len(pushes) == 1 and pushes[0].at == 0.0
    d.submit(PushRequest.of("config"))
    assert len(pushes) == 1  # full pushes still wait


def test_request_without_reason_counts_as_unknown():
    clock, pushes, d = _debouncer()
    d.submit(PushRequest())
    clock.run()
    assert pushes[0].request.reason["unknown"] == 1


def test_discovery_server_queues_until_started():
    clock = VirtualClock()
    xds = DiscoveryServer(clock)
    xds.config_update(PushRequest.of("global"))
    clock.run()
    assert xds.pushes == [] and len(xds.queued) == 1 and len(xds.requests) == 1
    xds.start()
    clock.run()
    assert len(xds.pushes) == 1 and xds.queued == []
