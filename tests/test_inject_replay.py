"""Stage 13 on replayed clusters: the ConfigMap watcher, pods injected on admission, and the record."""

from __future__ import annotations

import copy
import json

import pytest
from tracehelpers import write_trace

from mesh.bootstrap import Server, ServerArgs
from mesh.inject.config import InjectorConfigError, InjectorConfigWatcher, parse_injector_config
from mesh.inject.webhook import describe_decisions, format_decisions
from mesh.kube.trace import load_trace


def bookinfo_objects() -> dict[str, dict]:
    trace = load_trace("bookinfo")
    found = {}
    for e in trace.events:
        meta = e.object["metadata"]
        if e.object["kind"] == "MutatingWebhookConfiguration":
            found["mwc"] = e.object
        elif e.object["kind"] == "ConfigMap" and meta["name"] == "istio-sidecar-injector":
            found["injector"] = e.object
        elif e.object["kind"] == "Namespace" and meta["name"] == "default":
            found["default"] = e.object
        elif e.object["kind"] == "Pod" and meta["name"].startswith("details"):
            found["pod"] = e.object
    return found


def run(trace_path, until="init_sidecar_injector") -> Server:
    server = Server(ServerArgs(trace=str(trace_path)))
    server.run_until(until)
    server.clock.run()
    return server


def pod_named(server: Server, name: str) -> dict:
    return next(p for p in server.kube_client.list_objects("Pod") if p["metadata"]["name"] == name)


def containers(pod: dict) -> list[str]:
    return [c["name"] for c in pod["spec"]["containers"]]


def test_bookinfo_pods_are_injected_on_replay():
    server = Server(ServerArgs(trace="bookinfo"))
    server.run_until("init_sidecar_injector")
    assert "init_sidecar_injector" in server.completed
    server.clock.run()
    rows = describe_decisions(server.injection_webhook.decisions)
    bookinfo = [p for p in server.kube_client.list_objects("Pod") if p["metadata"]["namespace"] == "default"]
    apps = [r for r in rows if r["pod"].startswith("default/")]
    assert len(apps) == len(bookinfo) >= 6
    assert all(r["injected"] == "yes" and r["via"].endswith("/namespace.sidecar-injector.istio.io") for r in apps)
    # the ingress gateway's pod (istio-system, not labelled for injection) is asked about and left alone
    (gateway,) = [r for r in rows if r not in apps]
    assert gateway["pod"].startswith("istio-system/istio-ingressgateway-") and gateway["injected"] == "no"
    for pod in bookinfo:
        assert containers(pod)[-1] == "istio-proxy"
        assert [c["name"] for c in pod["spec"]["initContainers"]] == ["istio-init"]
    assert server.debug_routes["/debug/injection"]({}) == rows
    assert len(server.http_route_adders) >= 1
    table = format_decisions(server.injection_webhook.decisions)
    assert table.splitlines()[0].split()[:4] == ["t", "pod", "injected", "reason"]
    decision = server.injection_webhook.decisions[0]
    assert decision.review["request"]["operation"] == "CREATE" and decision.response["response"]["patch"]


def test_recorded_pods_modified_pods_and_config_changes(tmp_path):
    o = bookinfo_objects()
    recorded = copy.deepcopy(o["pod"])
    recorded["metadata"]["name"] = "recorded"
    recorded["metadata"].setdefault("annotations", {})["sidecar.istio.io/status"] = "{}"
    later = copy.deepcopy(o["pod"])
    later["metadata"]["name"] = "later"
    running = copy.deepcopy(o["pod"])
    running["status"] = {"phase": "Running", "podIP": "127.0.10.9"}
    disabled = copy.deepcopy(o["injector"])
    disabled["data"]["config"] = disabled["data"]["config"].replace("policy: enabled", "policy: disabled")
    broken = copy.deepcopy(disabled)
    broken["data"]["config"] += "\n  extra: |\n    {% if %}\n"
    path = write_trace(tmp_path / "t.jsonl", [
        (0, "ADDED", o["mwc"]), (0, "ADDED", o["injector"]), (0, "ADDED", o["default"]),
        (1, "ADDED", o["pod"]), (1, "ADDED", recorded),
        (2, "MODIFIED", running),  # a status update written without the sidecar
        (3, "MODIFIED", broken),  # a template that does not compile: refused
        (4, "MODIFIED", disabled),
        (5, "ADDED", later),
    ])
    server = run(path)
    webhook = server.injection_webhook
    details = pod_named(server, o["pod"]["metadata"]["name"])
    assert containers(details)[-1] == "istio-proxy" and details["status"]["podIP"] == "127.0.10.9"
    assert containers(pod_named(server, "recorded")) == containers(o["pod"])
    assert containers(pod_named(server, "later")) == containers(o["pod"])  # policy disabled by then
    rows = describe_decisions(webhook.decisions)
    assert [(r["t"], r["pod"].split("/")[1], r["injected"]) for r in rows] == [
        (1.0, o["pod"]["metadata"]["name"], "yes"), (1.0, "recorded", "no"), (5.0, "later", "no")]
    assert rows[1]["reason"].startswith("recorded with sidecar.istio.io/status")
    assert rows[2]["reason"] == "policy disabled"
    assert any("templates.extra: line 1" in e for e in webhook.watcher.errors)


def test_webhook_for_another_revision_is_not_ours(tmp_path):
    o = bookinfo_objects()
    mwc = copy.deepcopy(o["mwc"])
    for hook in mwc["webhooks"]:
        hook["clientConfig"]["service"]["name"] = "istiod-canary"
    path = write_trace(tmp_path / "t.jsonl", [(0, "ADDED", mwc), (0, "ADDED", o["injector"]),
                                              (0, "ADDED", o["default"]), (1, "ADDED", o["pod"])])
    server = run(path)
    (row,) = describe_decisions(server.injection_webhook.decisions)
    assert row["injected"] == "no" and "istio-system/istiod-canary/inject, not this istiod" in row["reason"]


def test_no_injector_configmap_means_no_injection(tmp_path):
    o = bookinfo_objects()
    path = write_trace(tmp_path / "t.jsonl", [(0, "ADDED", o["mwc"]), (1, "ADDED", o["pod"])])
    server = run(path)
    assert server.injection_webhook is None
    assert containers(server.kube_client.list_objects("Pod")[0]) == containers(o["pod"])


def test_bad_configmap_at_startup_stops_the_stage(tmp_path):
    o = bookinfo_objects()
    bad = copy.deepcopy(o["injector"])
    bad["data"]["config"] = "policy: [enabled"
    path = write_trace(tmp_path / "t.jsonl", [(0, "ADDED", bad)])
    server = Server(ServerArgs(trace=str(path)))
    with pytest.raises(InjectorConfigError, match="istio-system/istio-sidecar-injector key config: invalid YAML"):
        server.run_until("init_sidecar_injector")


def test_config_files_win_over_the_configmap(tmp_path):
    o = bookinfo_objects()
    config = tmp_path / "config"
    config.write_text("policy: disabled\ntemplates: {sidecar: 'metadata: {}'}\n")
    path = write_trace(tmp_path / "t.jsonl", [(0, "ADDED", o["injector"])])
    args = ServerArgs(trace=str(path))
    args.inject_config_file = str(config)  # what --inject-config would set
    server = Server(args)
    server.run_until("init_sidecar_injector")
    assert server.injection_webhook.watcher.config.policy == "disabled"
    assert server.injection_webhook.watcher.source == f"file {config}"


@pytest.mark.parametrize("text, message", [
    ("policy: 3\n", "policy: expected str"),
    ("templates: {sidecar: [1]}\n", "templates.sidecar: expected the template text"),
    ("neverInjectSelector: [{app: x}]\n", "neverInjectSelector[0]: expected a label selector"),
    ("aliases: {both: sidecar}\n", "aliases.both: expected a list"),
    ("templates:\n  sidecar: |\n    ok\n    {{ broken\n", "templates.sidecar: line 2"),
])
def test_config_errors_name_the_field(text, message):
    with pytest.raises(InjectorConfigError, match=message.replace("[", r"\[").replace(".", r"\.")):
        parse_injector_config(text, "cfg.yaml")


def test_watcher_keeps_the_last_good_config():
    watcher = InjectorConfigWatcher()
    calls = []
    watcher.add_handler(lambda: calls.append(watcher.config.policy))
    cm = {"metadata": {"name": "istio-sidecar-injector", "namespace": "istio-system"},
          "data": {"config": "policy: disabled\n", "values": json.dumps({"global": {}})}}
    assert watcher.handle_configmap(cm) and calls == ["disabled"]
    assert not watcher.handle_configmap(cm)  # no change, no handler call
    assert not watcher.handle_configmap({**cm, "data": {"values": "{}"}})
    assert not watcher.handle_configmap({**cm, "data": {"config": "policy: enabled\n", "values": "[1"}})
    assert watcher.config.policy == "disabled" and len(watcher.errors) == 2
    assert "missing key 'config'" in watcher.errors[0]
