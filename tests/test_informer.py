import json

import pytest

from mesh.clock import VirtualClock
from mesh.kube.client import AdmissionDenied, ConflictError, NotFoundError, ReplayClient
from mesh.kube.informer import Informer
from mesh.kube.kinds import lookup, resolve
from mesh.kube.selectors import matches_labels, parse_selector
from mesh.kube.trace import parse_trace


def pod(name, ns="default", labels=None, rv=None, ip="127.10.0.1"):
    meta = {"name": name, "namespace": ns, "labels": labels or {}}
    if rv:
        meta["resourceVersion"] = rv
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "status": {"podIP": ip}}


def trace_of(*events):
    lines = [json.dumps({"trace": "mesh/v1", "name": "t"})]
    lines += [json.dumps({"t": t, "type": ty, "object": o}) for t, ty, o in events]
    return parse_trace("\n".join(lines))


def test_replay_client_applies_t0_at_construction_and_the_rest_on_the_clock():
    trace = trace_of((0, "ADDED", pod("a", labels={"app": "x"})), (5, "ADDED", pod("b", labels={"app": "y"})),
                     (7, "DELETED", pod("a")))
    clock = VirtualClock()
    client = ReplayClient(trace, clock)
    pods = client.informer("pods")
    assert [p["metadata"]["name"] for p in pods.list()] == ["a"]
    assert pods.has_synced() and client.has_synced()
    events = []
    pods.add_event_handler(on_add=lambda o: events.append(("add", o["metadata"]["name"], clock.now())),
                           on_delete=lambda o: events.append(("del", o["metadata"]["name"], clock.now())))
    assert events == [("add", "a", 0.0)]  # a late handler is told about what is cached
    clock.advance_to(6)
    assert events[-1] == ("add", "b", 5.0)
    clock.run()
    assert events[-1] == ("del", "a", 7.0)
    assert [p["metadata"]["name"] for p in pods.list(selector={"app": "y"})] == ["b"]


def test_informer_created_late_lists_current_state():
    trace = trace_of((0, "ADDED", pod("a")), (1, "ADDED", pod("b")))
    clock = VirtualClock()
    client = ReplayClient(trace, clock)
    clock.advance_to(2)
    assert [p["metadata"]["name"] for p in client.informer("po").list()] == ["a", "b"]


def test_update_handler_gets_old_and_new_and_resource_versions_increase():
    trace = trace_of((0, "ADDED", pod("a", labels={"v": "1"})), (1, "MODIFIED", pod("a", labels={"v": "2"})))
    clock = VirtualClock()
    client = ReplayClient(trace, clock)
    seen = []
    client.informer("pods").add_event_handler(on_update=lambda old, new: seen.append(
        (old["metadata"]["labels"]["v"], new["metadata"]["labels"]["v"])))
    clock.run()
    assert seen == [("1", "2")]
    rv = int(client.informer("pods").get("a", "default")["metadata"]["resourceVersion"])
    created = client.create(pod("c"))
    assert int(created["metadata"]["resourceVersion"]) > rv


def test_writes_go_through_informers_and_refuse_conflicts():
    client = ReplayClient(trace_of((0, "ADDED", pod("a"))), VirtualClock())
    pods = client.informer("pods")
    with pytest.raises(ConflictError):
        client.create(pod("a"))
    with pytest.raises(NotFoundError):
        client.update(pod("zzz"))
    client.delete("pods", "a", "default")
    assert pods.get("a", "default") is None


def test_admission_plugins_see_objects_before_they_are_stored():
    client = ReplayClient(trace_of(), VirtualClock())
    client.admission.append(lambda ty, obj: {**obj, "metadata": {**obj["metadata"], "labels": {"seen": ty}}})
    client.create(pod("a"))
    assert client.informer("pods").get("a", "default")["metadata"]["labels"] == {"seen": "ADDED"}


def test_a_failing_handler_does_not_stop_the_others():
    informer = Informer(lookup("", "Pod"))
    seen = []
    informer.add_event_handler(on_add=lambda o: 1 / 0)
    informer.add_event_handler(on_add=lambda o: seen.append(o["metadata"]["name"]))
    informer.apply("ADDED", pod("a"))
    assert seen == ["a"]


def test_replace_emits_the_differences_like_a_relist():
    informer = Informer(lookup("", "Pod"))
    informer.replace([pod("a", rv="1"), pod("b", rv="1")])
    seen = []
    informer.add_event_handler(on_add=lambda o: seen.append(("add", o["metadata"]["name"])),
                               on_update=lambda old, new: seen.append(("upd", new["metadata"]["name"])),
                               on_delete=lambda o: seen.append(("del", o["metadata"]["name"])))
    seen.clear()
    informer.replace([pod("b", rv="2"), pod("c", rv="1")])
    assert sorted(seen) == [("add", "c"), ("del", "a"), ("upd", "b")]


@pytest.mark.parametrize("selector,labels,expected", [
    ("app=reviews", {"app": "reviews"}, True),
    ("app=reviews,version!=v1", {"app": "reviews", "version": "v1"}, False),
    ("version in (v1, v2)", {"version": "v2"}, True),
    ("version notin (v1,v2)", {"version": "v2"}, False),
    ("canary", {"canary": "x"}, True),
    ("!canary", {"canary": "x"}, False),
    ({"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {"a": "1"}, True),
    ({"matchLabels": {"a": "1"}, "matchExpressions": [{"key": "b", "operator": "DoesNotExist"}]},
     {"a": "1", "b": "2"}, False),
    (None, {"a": "1"}, True),
])
def test_label_selectors(selector, labels, expected):
    assert matches_labels(selector, labels) is expected


def test_bad_selector_is_an_error():
    with pytest.raises(ValueError, match="invalid label selector"):
        parse_selector("a=b,(oops")


def test_kind_resolution_like_kubectl():
    assert resolve("vs").kind == "VirtualService"
    assert resolve("gateways.gateway.networking.k8s.io").group == "gateway.networking.k8s.io"
    assert resolve("gateways").group == "networking.istio.io"
    assert resolve("nosuchthing") is None


def test_admission_denial_stores_nothing_and_is_recorded():
    trace = trace_of((0, "ADDED", pod("a")), (1, "ADDED", pod("bad")), (2, "MODIFIED", pod("a", labels={"x": "1"})))
    clock = VirtualClock()
    client = ReplayClient(trace, clock)

    def refuse_bad(event_type, obj):
        if obj["metadata"]["name"] == "bad" or obj["metadata"].get("labels"):
            raise AdmissionDenied("not allowed")
        return obj

    client.admission.append(refuse_bad)
    clock.run()
    pods = client.informer("pods")
    assert [p["metadata"]["name"] for p in pods.list()] == ["a"]
    assert pods.get("a", "default")["metadata"]["labels"] == {}  # the refused update left it as it was
    assert [(e.t, e.type, e.object["metadata"]["name"], why) for e, why in client.denied] == [
        (1.0, "ADDED", "bad", "not allowed"), (2.0, "MODIFIED", "a", "not allowed")]
    with pytest.raises(AdmissionDenied):
        client.create(pod("bad"))
