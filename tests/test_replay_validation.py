"""Replayed validation (mesh.webhooks.replay): stage 14 puts istiod's /validate in front of the
replayed cluster, as kube-apiserver's validating webhooks would be, on the bad-config trace and on
small traces written here."""

from __future__ import annotations

import json
import logging

import pytest

from mesh.bootstrap import Server, ServerArgs
from mesh.cli import main
from mesh.clock import VirtualClock
from mesh.kube import kinds
from mesh.kube.client import AdmissionDenied, ReplayClient
from mesh.kube.trace import dump_event, load_trace, parse_trace
from mesh.webhooks import validation
from mesh.webhooks.replay import ReplayValidation, describe_decisions

BAD = {("VirtualService", "ratings"), ("VirtualService", "details"), ("VirtualService", "ratings-by-path"),
       ("DestinationRule", "ratings"), ("Gateway", "bookinfo-gateway"), ("ServiceEntry", "httpbin-ext")}
# productpage is refused at t=40 and accepted at t=90, once fixed
ISTIO_KINDS = ("VirtualService", "DestinationRule", "Gateway", "ServiceEntry")


@pytest.fixture(scope="module")
def replayed():
    server = Server(ServerArgs(trace="bad-config")).run_until("init_config_validation")
    trace = load_trace("bad-config")
    server.clock.advance_to(trace.duration)
    yield server, trace
    server.close()


def istio_writes(trace):
    return [e for e in trace.events if e.object["kind"] in ISTIO_KINDS]


def test_exactly_the_bad_objects_are_refused_and_missing_from_the_informers(replayed):
    server, trace = replayed
    client = server.kube_client
    refused = {(e.object["kind"], e.object["metadata"]["name"]) for e, _ in client.denied}
    assert refused == BAD | {("VirtualService", "productpage")}
    assert [e.t for e, _ in client.denied] == [20, 30, 40, 50, 60, 70, 80]
    stored = {(k, o["metadata"]["name"]) for k in ISTIO_KINDS for o in client.informer(k).list()}
    assert stored == {("DestinationRule", "reviews"), ("VirtualService", "reviews"), ("VirtualService", "productpage")}
    assert not stored & BAD
    # the config store built on those informers (stage 7) sees only what was admitted
    names = {(c.kind, c.name) for k in ISTIO_KINDS for c in server.environment.config_store.list(k)}
    assert names == stored


def test_the_fix_is_a_create_because_the_bad_version_was_never_stored(replayed):
    server, trace = replayed
    (fixed_event,) = [e for e in trace.events if e.t == 90 and e.object["kind"] == "VirtualService"]
    assert fixed_event.type == "MODIFIED"  # the trace recorded a cluster without validation
    productpage = [d for d in server.config_validation.decisions if d.name == "productpage"]
    assert [(d.t, d.operation, d.outcome) for d in productpage] == [(40, "CREATE", "denied"), (90, "CREATE", "allowed")]
    stored = server.kube_client.informer("VirtualService").get("productpage", "default")
    assert stored["spec"]["http"][0]["timeout"] == "5s"


def test_decisions_carry_istiods_own_message_for_each_write(replayed):
    server, trace = replayed
    decisions = server.config_validation.decisions
    writes = istio_writes(trace)
    assert len(decisions) == len(writes) == 10
    for decision, event in zip(decisions, writes, strict=True):
        assert (decision.kind, decision.name, decision.t) == (event.object["kind"], event.object["metadata"]["name"],
                                                              event.t)
        assert decision.webhook == "istiod-default-validator/validation.istio.io"
        expected = validation.admit({"operation": "CREATE", "object": event.object, "namespace": "default",
                                     "kind": {"kind": event.object["kind"]}})
        assert decision.allowed is expected["allowed"]
        assert decision.message == (expected.get("status") or {}).get("message", "")
    messages = {d.name: d.message for d in decisions if d.kind == "VirtualService"}
    assert messages["ratings"] == "configuration is invalid: weight -10 < 0"
    assert messages["details"] == "configuration is invalid: total destination weight = 0"
    assert "bad Duration" in [d.message for d in decisions if d.name == "productpage"][0]
    reasons = dict(((e.object["kind"], e.object["metadata"]["name"]), r) for e, r in server.kube_client.denied)
    assert reasons[("Gateway", "bookinfo-gateway")] == ('admission webhook "validation.istio.io" denied the request: '
                                                      "configuration is invalid: server config must contain at "
                                                      "least one host")


def test_every_review_is_an_admission_review_answered_for_its_uid(replayed):
    server, _ = replayed
    checker = server.config_validation
    assert [d.uid for d in checker.decisions] == list(checker.exchanges)
    for decision in checker.decisions:
        review, answer = checker.exchanges[decision.uid]
        request = review["request"]
        assert review["apiVersion"] == answer["apiVersion"] == "admission.k8s.io/v1"
        assert answer["response"]["uid"] == request["uid"] == decision.uid
        assert request["resource"]["resource"] == kinds.lookup("networking.istio.io", decision.kind).plural
        assert request["object"]["metadata"]["name"] == request["name"] == decision.name
        assert answer["response"]["allowed"] is decision.allowed


def test_debug_validation_route_lists_the_decisions(replayed):
    server, _ = replayed
    listed = server.debug_routes["/debug/validation"]({})
    assert listed == describe_decisions(server.config_validation.decisions)
    json.dumps(listed)  # served as JSON
    assert [row["outcome"] for row in listed].count("denied") == 7


def test_a_trace_without_the_validating_configuration_stores_everything(tmp_path):
    trace = load_trace("bad-config")
    lines = [json.dumps(trace.header)] + [dump_event(e) for e in trace.events
                                          if e.object["kind"] != "ValidatingWebhookConfiguration"]
    path = tmp_path / "unvalidated.jsonl"
    path.write_text("\n".join(lines) + "\n")
    server = Server(ServerArgs(trace=str(path))).run_until("init_config_validation")
    server.clock.advance_to(trace.duration)
    client = server.kube_client
    assert client.denied == [] and server.config_validation.decisions == []
    stored = {(k, o["metadata"]["name"]) for k in ISTIO_KINDS for o in client.informer(k).list()}
    assert stored == {(e.object["kind"], e.object["metadata"]["name"]) for e in istio_writes(trace)}
    assert BAD <= stored


def test_before_stage_14_nothing_is_validated():
    server = Server(ServerArgs(trace="bad-config")).run_until("init_sidecar_injector")
    server.clock.advance_to(90)
    assert server.kube_client.denied == []
    assert server.kube_client.informer("Gateway").get("bookinfo-gateway", "default") is not None


# -- small traces -------------------------------------------------------------------------------------
def validator(name="v", service="istiod", path="/validate", policy="Fail", object_selector=None):
    hook = {"name": f"{name}.example", "clientConfig": {"service": {"name": service, "namespace": "istio-system",
                                                                      "path": path}},
            "rules": [{"operations": ["CREATE", "UPDATE"], "apiGroups": ["networking.istio.io"],
                       "apiVersions": ["*"], "resources": ["*"]}],
            "failurePolicy": policy, "sideEffects": "None", "admissionReviewVersions": ["v1"]}
    if object_selector:
        hook["objectSelector"] = object_selector
    return {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": name}, "webhooks": [hook]}


def gateway(hosts, name="gw"):
    server = {"port": {"number": 80, "name": "http", "protocol": "HTTP"}}
    if hosts:
        server["hosts"] = hosts
    return {"apiVersion": "networking.istio.io/v1beta1", "kind": "Gateway",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"selector": {"istio": "ingressgateway"}, "servers": [server]}}


def replay(at_start, later, **kwargs):
    """A ReplayClient over t=0 objects and (t, type, object) events, with ReplayValidation installed."""
    header = {"trace": "mesh/v1", "name": "t", "description": "", "domain_suffix": "cluster.local"}
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}}
    events = [{"t": 0, "type": "ADDED", "object": o} for o in [ns, *at_start]]
    events += [{"t": t, "type": kind, "object": o} for t, kind, o in later]
    client = ReplayClient(parse_trace("\n".join(json.dumps(r) for r in [header, *events])), VirtualClock())
    checker = ReplayValidation(client, **kwargs).install()
    client.clock.advance_to(max([0] + [t for t, _, _ in later]))
    return client, checker


def test_a_bad_update_is_refused_and_the_stored_version_stays():
    client, checker = replay([validator()], [(1, "ADDED", gateway(["a.example.com"])),
                                             (2, "MODIFIED", gateway([]))])
    assert [(d.operation, d.outcome) for d in checker.decisions] == [("CREATE", "allowed"), ("UPDATE", "denied")]
    review, _ = checker.exchanges[checker.decisions[1].uid]
    assert review["request"]["oldObject"]["spec"]["servers"][0]["hosts"] == ["a.example.com"]
    assert client.informer("Gateway").get("gw", "default")["spec"]["servers"][0]["hosts"] == ["a.example.com"]


def test_objects_present_at_start_were_admitted_by_the_recorded_cluster():
    client, checker = replay([validator(), gateway([])], [])
    assert checker.decisions == [] and client.informer("Gateway").get("gw", "default") is not None


def broken_review(_review):
    raise RuntimeError("istiod is not serving yet")


@pytest.mark.parametrize(("policy", "stored"), [("Ignore", True), ("Fail", False)])
def test_failure_policy_decides_when_the_webhook_errors(policy, stored):
    client, checker = replay([validator(policy=policy)], [(1, "ADDED", gateway(["a.example.com"]))],
                             review=broken_review)
    (decision,) = checker.decisions
    assert decision.outcome == "error" and decision.allowed is stored
    assert "istiod is not serving yet" in decision.message
    assert (client.informer("Gateway").get("gw", "default") is not None) is stored
    if not stored:
        (_, reason), = client.denied
        assert reason.startswith('Internal error occurred: failed calling webhook "v.example"')


def test_a_denial_refuses_even_with_failure_policy_ignore():
    client, checker = replay([validator(policy="Ignore")], [(1, "ADDED", gateway([]))])
    assert checker.decisions[0].outcome == "denied" and client.informer("Gateway").list() == []


def test_a_path_istiod_does_not_serve_is_a_webhook_error():
    client, checker = replay([validator(path="/inject", policy="Fail")], [(1, "ADDED", gateway(["a.example.com"]))])
    (decision,) = checker.decisions
    assert decision.outcome == "error" and "/inject" in decision.message and client.denied


def test_webhooks_of_another_revision_are_not_called():
    configs = [validator("canary", service="istiod-canary"), validator("stable")]
    client, checker = replay(configs, [(1, "ADDED", gateway([]))])
    assert [(d.webhook, d.outcome) for d in checker.decisions] == [("canary/canary.example", "not called"),
                                                                    ("stable/stable.example", "denied")]
    client, checker = replay(configs, [(1, "ADDED", gateway([]))], revision="canary")
    assert [(d.webhook, d.outcome) for d in checker.decisions] == [("canary/canary.example", "denied"),
                                                                    ("stable/stable.example", "not called")]


def test_object_selector_keeps_unlabelled_config_away_from_the_revision_validator():
    rev_only = validator(object_selector={"matchLabels": {"istio.io/rev": "default"}})
    labelled = gateway([], name="labelled")
    labelled["metadata"]["labels"] = {"istio.io/rev": "default"}
    client, checker = replay([rev_only], [(1, "ADDED", gateway([])), (2, "ADDED", labelled)])
    assert [d.name for d in checker.decisions] == ["labelled"]
    assert [g["metadata"]["name"] for g in client.informer("Gateway").list()] == ["gw"]


def test_webhook_configurations_never_go_through_webhooks():
    catch_all = validator(policy="Fail")
    catch_all["webhooks"][0]["rules"][0].update(apiGroups=["*"], resources=["*"])
    patched = validator("other")
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "default"}}
    client, checker = replay([catch_all], [(1, "ADDED", patched), (2, "ADDED", config_map)], review=broken_review)
    assert client.informer("ValidatingWebhookConfiguration").get("other") is not None
    assert [(d.kind, d.outcome) for d in checker.decisions] == [("ConfigMap", "error")]
    assert client.informer("ConfigMap").get("c", "default") is None


def test_a_server_write_that_is_refused_raises_to_the_caller():
    client, _ = replay([validator()], [])
    with pytest.raises(AdmissionDenied, match="server config must contain at least one host"):
        client.create(gateway([]))


# -- the CLI ------------------------------------------------------------------------------------------
@pytest.fixture
def mesh_log_level():
    """``replay`` quietens the ``mesh`` logger for its run; give later tests their logs back."""
    logger = logging.getLogger("mesh")
    level = logger.level
    yield
    logger.setLevel(level)


def test_replay_show_validation_prints_the_table(capsys, mesh_log_level):
    assert main(["replay", "bad-config", "--show", "validation", "--width", "250"]) == 0
    out = capsys.readouterr().out
    assert "validation webhook decisions" in out
    rows = [line for line in out.splitlines() if "istiod-default-validator/validation.istio.io" in line]
    assert len(rows) == 10
    assert sum(" denied " in row for row in rows) == 7 and sum(" allowed " in row for row in rows) == 3
    assert any("default/ratings " in row and "weight -10 < 0" in row for row in rows)
    assert "refused by admission: 7 writes (never stored)" in out


def test_replay_show_validation_on_a_trace_without_validators(capsys, mesh_log_level):
    assert main(["replay", "canary", "--show", "validation"]) == 0
    out = capsys.readouterr().out
    # canary's objects carry no istio.io/rev label: only istio-validator-istio-system exists, so none match
    assert "no object went through a validating webhook" in out
