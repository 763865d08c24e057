"""``replay --show pushes``, mesh.xds.push_recorder and its views (mesh.tools.push_timeline): debounced pushes on the virtual clock, with what
the real generators would send every injected sidecar of the trace."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from tracehelpers import replay_with_recorder

from mesh.bootstrap import Server, ServerArgs
from mesh.demo.pods import record_pushes, sidecar_proxies
from mesh.model.push_request import ConfigKey
from mesh.tools import push_timeline
from mesh.xds import push_recorder
from mesh.xds.resources import from_bytes
from mesh.xds.types import ROUTE

ROOT = Path(__file__).resolve().parent.parent
REVIEWS = "reviews.default.svc.cluster.local"


def _replay(trace: str) -> tuple[Server, push_recorder.PushRecorder]:
    return replay_with_recorder(trace)


@pytest.fixture(scope="module")
def canary():
    server, recorder = _replay("canary")
    yield server, recorder
    server.close()


@pytest.fixture(scope="module")
def scale_out():
    server, recorder = _replay("scale-out")
    yield server, recorder
    server.close()


def _reviews_weights(sent: push_recorder.Sent) -> dict[str, int]:
    """The weighted clusters of the reviews virtual host, read back from the serialized bytes."""
    (config,) = [r for r in sent.resources if r.name == "http_proxy"]
    entry = config.encoded
    body = from_bytes(ROUTE, _any_value(entry))
    (host,) = [h for h in body["virtualHosts"] if h["name"] == f"{REVIEWS}:9080"]
    route = host["routes"][0]["route"]
    if "cluster" in route:
        return {route["cluster"].split("|")[2] or "(all)": 100}
    return {c["name"].split("|")[2]: c.get("weight", 0) for c in route["weightedClusters"]["clusters"]}


def _any_value(entry: bytes) -> bytes:
    """The ``value`` of the ``Any`` inside one ``resources`` entry (field 2 → Any field 2)."""
    from mesh.xds.fastpath import _fields

    (_, _, any_bytes), = list(_fields(entry))
    return next(v for n, _, v in _fields(any_bytes) if n == 2)


def test_sidecars_are_the_injected_pods_with_istio_node_identity(canary):
    server, _ = canary
    proxies = sidecar_proxies(server.kube_client)
    assert [p.pod_name.split("-")[0] for p in proxies] == ["details", "productpage", "ratings", "reviews",
                                                             "reviews", "reviews"]
    assert all(p.type == "sidecar" and p.namespace == "default" for p in proxies)
    assert all(p.ip_addresses[0].startswith("10.244.") for p in proxies)
    productpage = proxies[1]
    assert productpage.labels["app"] == "productpage"
    assert productpage.node_id.startswith("sidecar~10.244.0.8~productpage-v1-")
    # istiod itself is not injected: not a proxy
    assert not any(p.namespace == "istio-system" for p in proxies)


def test_canary_one_full_push_per_virtual_service_change(canary):
    server, recorder = canary
    vs = ConfigKey("VirtualService", "reviews", "default")
    later = [r for r in recorder.records if r.push.at > 15]
    edits = [e.t for e in server.kube_client.applied if e.object.get("kind") == "VirtualService"
             and e.type == "MODIFIED"]
    assert edits == [20.0, 30.0, 40.0]
    assert [round(r.push.at, 6) for r in later] == [round(t + 0.1, 6) for t in edits]  # after the 100 ms window
    for rec in later:
        assert rec.push.request.full and rec.push.request.configs_updated == {vs}
        assert rec.push.events == 1 and dict(rec.push.request.reason) == {"config": 1}
        # a VirtualService changes no endpoints: no EDS (istiod's skippedEdsConfigs)
        assert len(rec.pushed_to) == 6 and rec.types_sent() == ["CDS", "LDS", "RDS"]
    first_config = next(r for r in recorder.records if r.push.request.reason["config"])
    assert first_config.push.request.configs_updated == {vs, ConfigKey("DestinationRule", "reviews", "default")}


def test_canary_routes_carry_the_new_weights_to_every_sidecar(canary):
    _, recorder = canary
    weights = []
    for rec in recorder.records[1:]:
        per_proxy = {d.proxy: _reviews_weights(d.by_type()["RDS"]) for d in rec.deliveries if d.step == "push"}
        assert len(set(map(tuple, (sorted(w.items()) for w in per_proxy.values())))) == 1  # all alike
        weights.append(next(iter(per_proxy.values())))
    # a zero-weight destination is left out of the route, as Istio leaves it out
    assert weights == [{"v1": 100}, {"v1": 90, "v3": 10}, {"v1": 50, "v3": 50}, {"v3": 100}]


def test_canary_new_subsets_make_envoy_ask_for_their_endpoints(canary):
    _, recorder = canary
    dr_push = recorder.records[1]
    follow_ups = [d for d in dr_push.deliveries if d.step == "resubscribe"]
    assert len(follow_ups) == 6
    eds = follow_ups[0].by_type()["EDS"]
    assert {f"outbound|9080|{s}|{REVIEWS}" for s in ("v1", "v2", "v3")} <= set(eds.names)
    assert [s.type for s in follow_ups[0].sent] == ["EDS"]  # listeners name the same routes: no RDS


def test_first_push_connects_every_sidecar_with_full_config(canary):
    _, recorder = canary
    first = recorder.records[0]
    assert first.push.at == pytest.approx(5.1) and first.push.events == 8
    assert first.pushed_to == [] and len([d for d in first.deliveries if d.step == "connect"]) == 6
    for d in first.deliveries:
        sent = d.by_type()
        assert list(sent) == ["CDS", "EDS", "LDS", "RDS"]
        assert all(s.bytes > 0 for s in sent.values())
        eds_clusters = [n for n in sent["CDS"].names if n.startswith("outbound|")]
        assert sorted(sent["EDS"].names) == sorted(eds_clusters)  # Envoy asks for every EDS cluster
        assert sent["RDS"].names == ("http_proxy",)


def test_scale_out_reaches_sidecars_by_eds_alone_for_reviews_only(scale_out):
    _, recorder = scale_out
    later = [r for r in recorder.records if r.push.at > 6]
    assert [round(r.push.at, 6) for r in later] == [10.1, 20.1]
    for rec in later:
        assert not rec.push.request.full
        assert rec.types_sent() == ["EDS"]
        for d in rec.deliveries:
            if d.step == "push":
                assert [s.type for s in d.sent] == ["EDS"]
                assert d.by_type()["EDS"].names == (f"outbound|9080||{REVIEWS}",)
    grow, shrink = later
    assert len(grow.pushed_to) == 6
    assert sorted(d.proxy.split("-")[0] for d in grow.deliveries if d.step == "connect") == ["reviews"] * 4
    assert len(shrink.disconnected) == 3 and len(shrink.pushed_to) == 7


def test_scale_out_assignment_lists_the_new_endpoints(scale_out):
    _, recorder = scale_out
    from mesh.xds.types import ENDPOINT

    def endpoint_count(rec) -> int:
        (cla,) = next(d for d in rec.deliveries if d.step == "push").by_type()["EDS"].resources
        body = from_bytes(ENDPOINT, _any_value(cla.encoded))
        return sum(len(group.get("lbEndpoints", [])) for group in body.get("endpoints", []))

    grow, shrink = [r for r in recorder.records if r.push.at > 6]
    assert (endpoint_count(grow), endpoint_count(shrink)) == (7, 4)


def test_recorder_needs_stage_16():
    server = Server(ServerArgs(trace="bookinfo")).run_until("init_registry_event_handlers")
    with pytest.raises(RuntimeError, match="stage 16"):
        record_pushes(server)
    server.close()


def test_timeline_view_shows_events_windows_and_pushes(canary):
    server, recorder = canary
    text = push_timeline.timeline(server, recorder, since=15).text
    lines = text.splitlines()
    assert lines[0].split()[:4] == ["at", "(s)", "step", "what"]
    assert " 20.000  event" in text and "MODIFIED VirtualService default/reviews" in text
    assert " 20.000  debounce" in text and "quiet 100 ms" in text
    assert " 20.100  push #3" in text and "VirtualService default/reviews" in text
    assert not any(line.startswith("  5.") for line in lines)
    summary = push_timeline.pushes_summary(recorder).text
    # the DestinationRule push (subsets: new clusters) carries EDS; the three VirtualService pushes do not
    assert "incremental" not in summary and summary.count("CDS EDS LDS RDS") == 1
    assert summary.count("CDS LDS RDS") == 3


def _mesh(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mesh", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)


def test_replay_show_pushes_is_identical_on_every_run():
    first = _mesh("replay", "scale-out", "--show", "pushes")
    assert first.returncode == 0, first.stderr
    out = first.stdout
    assert "push #2" in out and "incremental endpoint" in out and "connect" in out and "disconnect" in out
    assert "0x" not in out and "/tmp/" not in out
    second = _mesh("replay", "scale-out", "--show", "pushes")
    assert second.stdout == out


def test_delta_sidecars_get_only_changes_and_removals():
    """The same pushes to SotW and to Delta sidecars: the scale-out as one changed assignment, the
    deleted Service as a removal, unchanged listeners not sent at all."""
    server = Server(ServerArgs(trace="delete-service")).run_all()
    sotw, delta = record_pushes(server), record_pushes(server, delta=True)
    server.xds.start()
    server.clock.run()
    try:
        (_, _, gone_s), (_, grow_d, gone_d) = sotw.records, delta.records
        ratings = "outbound|9080||ratings.default.svc.cluster.local"
        for d in gone_d.deliveries:
            if d.step == "push":
                sent = d.by_type()
                assert sent["CDS"].delta and sent["CDS"].names == () and sent["CDS"].removed == (ratings,)
                assert "LDS" not in sent  # the listeners did not change: nothing to send
        for d in gone_s.deliveries:
            if d.step == "push":
                assert ratings not in d.by_type()["CDS"].names and d.by_type()["CDS"].count >= 9
                assert "LDS" in d.by_type()
        grow = [d.by_type()["EDS"] for d in grow_d.deliveries if d.step == "push"]
        assert grow and all(s.delta and s.count == 1 and s.removed == () for s in grow)
        view = push_timeline.timeline(server, delta).text
        assert "push (delta)" in view and "+0 -1 / 0 B" in view
        [proxy] = [d.proxy for d in gone_d.deliveries if d.step == "push"][:1]
        assert ratings in push_timeline.proxy_sends(delta, proxy).text
    finally:
        server.close()


def test_replay_delta_flag_marks_delta_pushes():
    out = _mesh("replay", "delete-service", "--show", "pushes", "--delta", "--width", "220")
    assert out.returncode == 0, out.stderr
    assert "push (delta)" in out.stdout and "connect (delta)" in out.stdout and "-1 /" in out.stdout


@pytest.mark.parametrize("env, delta", [([{"name": "ISTIO_DELTA_XDS", "value": "true"}], True),
                                        ([{"name": "ISTIO_DELTA_XDS", "value": "false"}], False), ([], False)])
def test_a_pod_speaks_delta_when_its_sidecar_env_says_so(env, delta):
    from mesh.demo.pods import speaks_delta

    pod = {"spec": {"containers": [{"name": "app"}, {"name": "istio-proxy", "env": env}]}}
    assert speaks_delta(pod) is delta
