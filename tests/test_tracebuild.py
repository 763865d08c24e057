"""The trace builder (mesh.kube.tracebuild + simcluster), the committed traces it made, and
``python -m mesh trace``."""

from __future__ import annotations

import ipaddress
import json
import shutil
from pathlib import Path

import pytest
import yaml

from mesh.cli import main
from mesh.kube import kinds
from mesh.kube.selectors import matches_labels
from mesh.kube.trace import builtin_traces, load_trace, parse_trace
from mesh.kube.tracebuild import SOURCE_DIR, TRACES_DIR, ScenarioError, build_text, top_level_scenarios

SCENARIOS = top_level_scenarios()
# A real cluster's addresses (pods, Services, hosts outside the cluster: mesh.kube.addresses), never
# anything that could be someone's on a network.
CLUSTER_RANGES = tuple(ipaddress.ip_network(n) for n in ("10.244.0.0/16", "10.96.0.0/12", "198.18.0.0/15"))


def states_by_time(trace) -> list[tuple[float, dict]]:
    """The cluster after all events of each instant: [(t, {ObjectKey: object})]."""
    state: dict = {}
    out: list[tuple[float, dict]] = []
    for index, event in enumerate(trace.events):
        if event.type == "DELETED":
            state.pop(event.key)
        else:
            state[event.key] = event.object
        if index + 1 == len(trace.events) or trace.events[index + 1].t != event.t:
            out.append((event.t, dict(state)))
    return out


def of_kind(state: dict, kind: str) -> list[dict]:
    return [o for k, o in state.items() if k.kind == kind]


def strings(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)
    elif isinstance(value, str):
        yield value


def test_the_four_scenarios_are_there_and_shipped_as_builtin_traces():
    names = {p.stem for p in SCENARIOS}
    assert names >= {"bookinfo", "canary", "scale-out", "mesh-config-change"}
    assert names <= set(builtin_traces())


@pytest.mark.parametrize("name", sorted(builtin_traces()))
def test_every_shipped_trace_loads_and_validates(name):
    trace = load_trace(name)
    assert trace.events and trace.header["trace"] == "mesh/v1"


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda p: p.stem)
def test_committed_trace_equals_a_fresh_rebuild(scenario):
    committed = TRACES_DIR / f"{scenario.stem}.jsonl"
    assert committed.read_text(encoding="utf-8") == build_text(scenario), "run: make traces"


@pytest.mark.parametrize("name", [p.stem for p in SCENARIOS])
def test_every_trace_loads_and_looks_right(name):
    trace = load_trace(name)
    assert trace.header["name"] == name and trace.domain_suffix == "cluster.local"
    uids: dict[str, kinds.ObjectKey] = {}
    for event in trace.events:
        meta = event.object["metadata"]
        if event.type == "ADDED":
            assert meta["uid"] not in uids, f"uid of {event.key} reused from {uids.get(meta['uid'])}"
            uids[meta["uid"]] = event.key
        for text in strings(event.object):
            try:
                address = ipaddress.ip_address(text)
            except ValueError:
                continue
            assert any(address in net for net in CLUSTER_RANGES), f"line {event.line}: {text} is not a cluster address"
    versions = [int(e.object["metadata"]["resourceVersion"]) for e in trace.events]
    assert versions == sorted(set(versions)), "resourceVersion must grow with every write"
    for _, state in states_by_time(trace):
        for pod in of_kind(state, "Pod"):
            assert ipaddress.ip_address(pod["status"]["podIP"]) in ipaddress.ip_network("10.244.0.0/16")
            assert pod["status"]["phase"] == "Running"
        for svc in of_kind(state, "Service"):
            assert ipaddress.ip_address(svc["spec"]["clusterIP"]) in ipaddress.ip_network("10.96.0.0/12")


@pytest.mark.parametrize("name", [p.stem for p in SCENARIOS])
def test_owner_references_chain_pod_replicaset_deployment(name):
    trace = load_trace(name)
    for _, state in states_by_time(trace):
        by_uid = {o["metadata"]["uid"]: o for o in state.values()}
        pods = of_kind(state, "Pod")
        assert pods
        for pod in pods:
            (ref,) = pod["metadata"]["ownerReferences"]
            rs = by_uid[ref["uid"]]
            assert (rs["kind"], rs["metadata"]["name"]) == ("ReplicaSet", ref["name"]) and ref["controller"]
            template_hash = rs["metadata"]["labels"]["pod-template-hash"]
            assert pod["metadata"]["labels"]["pod-template-hash"] == template_hash
            assert pod["metadata"]["name"].startswith(rs["metadata"]["name"] + "-")
            (dep_ref,) = rs["metadata"]["ownerReferences"]
            dep = by_uid[dep_ref["uid"]]
            assert dep["kind"] == "Deployment" and rs["metadata"]["name"] == f"{dep['metadata']['name']}-{template_hash}"
            assert matches_labels(dep["spec"]["selector"], pod["metadata"]["labels"])


def test_endpointslices_follow_the_ready_pods_through_every_scale_step():
    trace = load_trace("scale-out")
    replicas_seen = []
    for _, state in states_by_time(trace):
        for svc in of_kind(state, "Service"):
            meta = svc["metadata"]
            ready_ips = sorted(
                p["status"]["podIP"] for p in of_kind(state, "Pod")
                if p["metadata"]["namespace"] == meta["namespace"]
                and matches_labels(svc["spec"]["selector"], p["metadata"]["labels"])
                and any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"]["conditions"]))
            (slice_,) = [s for s in of_kind(state, "EndpointSlice")
                         if s["metadata"]["namespace"] == meta["namespace"]
                         and s["metadata"]["labels"]["kubernetes.io/service-name"] == meta["name"]]
            assert slice_["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] == \
                "endpointslice-controller.k8s.io"
            assert slice_["addressType"] == "IPv4"
            assert sorted(a for ep in slice_["endpoints"] or [] for a in ep["addresses"]) == ready_ips
            for ep in slice_["endpoints"] or []:
                pod = state[kinds.ObjectKey("", "Pod", meta["namespace"], ep["targetRef"]["name"])]
                assert ep["targetRef"]["uid"] == pod["metadata"]["uid"]
                assert ep["nodeName"] == pod["spec"]["nodeName"] and ep["conditions"]["ready"] is True
            assert [p["name"] for p in slice_["ports"]] == [p["name"] for p in svc["spec"]["ports"]]
        v3 = state.get(kinds.ObjectKey("apps", "Deployment", "default", "reviews-v3"))
        if v3 is None:  # t=0: only istiod so far
            continue
        v3_pods = [p for p in of_kind(state, "Pod") if p["metadata"]["labels"].get("app") == "reviews"
                   and p["metadata"]["labels"].get("version") == "v3"]
        assert len(v3_pods) == v3["spec"]["replicas"] == v3["status"]["readyReplicas"]
        replicas_seen.append(v3["spec"]["replicas"])
    assert replicas_seen[-3:] == [1, 5, 2]


def test_scale_down_updates_the_slice_before_the_pods_go():
    trace = load_trace("scale-out")
    at_20 = [e for e in trace.events if e.t == 20]
    deleted = [i for i, e in enumerate(at_20) if e.type == "DELETED"]
    slice_update = next(i for i, e in enumerate(at_20) if e.object["kind"] == "EndpointSlice")
    assert len(deleted) == 3 and all(slice_update < i for i in deleted)
    for i in deleted:
        assert at_20[i].object["kind"] == "Pod" and at_20[i].object["metadata"]["deletionTimestamp"]
    pod_events = {}
    for e in trace.events:
        if e.object["kind"] == "Pod":
            pod_events.setdefault(e.key, []).append(e.type)
    assert set(map(tuple, pod_events.values())) <= {("ADDED",), ("ADDED", "DELETED")}


def test_canary_shifts_reviews_weights_over_time():
    trace = load_trace("canary")
    vs_events = [e for e in trace.events if e.object["kind"] == "VirtualService"]
    weights = [tuple(r["weight"] for r in e.object["spec"]["http"][0]["route"]) for e in vs_events]
    assert [(e.t, e.type) for e in vs_events] == [(10, "ADDED"), (20, "MODIFIED"), (30, "MODIFIED"), (40, "MODIFIED")]
    assert weights == [(100, 0), (90, 10), (50, 50), (0, 100)]
    assert [e.object["metadata"]["generation"] for e in vs_events] == [1, 2, 3, 4]
    assert len({e.object["metadata"]["uid"] for e in vs_events}) == 1
    dr = next(e.object for e in trace.events if e.object["kind"] == "DestinationRule")
    assert dr["apiVersion"] == "networking.istio.io/v1beta1"
    assert [s["labels"]["version"] for s in dr["spec"]["subsets"]] == ["v1", "v2", "v3"]


def test_mesh_config_change_edits_the_istio_configmap():
    trace = load_trace("mesh-config-change")
    edits = [(e.t, yaml.safe_load(e.object["data"]["mesh"])) for e in trace.events
             if e.object["kind"] == "ConfigMap" and e.object["metadata"]["name"] == "istio"]
    assert [t for t, _ in edits] == [0, 10, 20]
    (_, first), (_, second), (_, third) = edits
    assert "accessLogFile" not in first and first["trustDomain"] == "cluster.local"
    assert second["accessLogFile"] == "/dev/stdout" and second["trustDomain"] == "cluster.local"
    assert third["accessLogFile"] == "/dev/stdout" and third["trustDomain"] == "example.org"
    assert {k: v for k, v in third.items() if k not in ("accessLogFile", "trustDomain")} == \
        {k: v for k, v in first.items() if k != "trustDomain"}


def test_bookinfo_holds_the_istio_install_and_the_app():
    state = states_by_time(load_trace("bookinfo"))[-1][1]
    mesh = yaml.safe_load(state[kinds.ObjectKey("", "ConfigMap", "istio-system", "istio")]["data"]["mesh"])
    assert mesh["defaultConfig"]["discoveryAddress"] == "istiod.istio-system.svc:15012"
    assert mesh["enablePrometheusMerge"] is True and mesh["rootNamespace"] == "istio-system"
    injector = state[kinds.ObjectKey("", "ConfigMap", "istio-system", "istio-sidecar-injector")]["data"]
    folder = SOURCE_DIR / "istio-system"
    assert injector["config"] == (folder / "injector-config.yaml").read_text().rstrip("\n")
    assert json.loads(injector["values"]) == json.loads((folder / "injector-values.json").read_text())
    webhook = state[kinds.ObjectKey("admissionregistration.k8s.io", "MutatingWebhookConfiguration", "",
                                    "istio-sidecar-injector")]
    names = [w["name"] for w in webhook["webhooks"]]
    assert {"namespace.sidecar-injector.istio.io", "object.sidecar-injector.istio.io"} <= set(names)
    for hook in webhook["webhooks"]:
        assert hook["clientConfig"]["service"] == {"name": "istiod", "namespace": "istio-system",
                                                   "path": "/inject", "port": 443}
        assert not hook["clientConfig"].get("caBundle")
    default_ns = state[kinds.ObjectKey("", "Namespace", "", "default")]
    assert default_ns["metadata"]["labels"]["istio-injection"] == "enabled"
    istiod = state[kinds.ObjectKey("", "Service", "istio-system", "istiod")]
    assert [(p["port"], p["targetPort"]) for p in istiod["spec"]["ports"]] == \
        [(15010, 15010), (15012, 15012), (443, 15017), (15014, 15014)]
    deployments = {d["metadata"]["name"] for d in of_kind(state, "Deployment")
                   if d["metadata"]["namespace"] == "default"}
    assert deployments == {"productpage-v1", "details-v1", "ratings-v1", "reviews-v1", "reviews-v2", "reviews-v3"}
    for pod in of_kind(state, "Pod"):
        assert "sidecar.istio.io/status" not in pod["metadata"].get("annotations", {})
        assert [c["name"] for c in pod["spec"]["containers"]] in (["discovery"], ["istio-proxy"],
                                                                   [pod["metadata"]["labels"]["app"]])
    # the default profile's ingress gateway, its pod after bookinfo's (bookinfo keeps 10.244.0.3-8)
    gateway = state[kinds.ObjectKey("", "Service", "istio-system", "istio-ingressgateway")]
    assert [(p["port"], p["targetPort"]) for p in gateway["spec"]["ports"]] == [(15021, 15021), (80, 8080), (443, 8443)]
    ips = {p["metadata"]["labels"].get("app"): p["status"]["podIP"] for p in of_kind(state, "Pod")}
    assert ips["istio-ingressgateway"] == "10.244.0.9" and ips["productpage"] == "10.244.0.8"
    # and Istio's bookinfo-gateway.yaml: the Gateway on 8080, the VirtualService bound to it
    bound = state[kinds.ObjectKey("networking.istio.io", "VirtualService", "default", "bookinfo")]["spec"]
    assert bound["gateways"] == ["bookinfo-gateway"] and bound["http"][0]["match"][0] == {"uri": {"exact": "/productpage"}}
    (node,) = of_kind(state, "Node")
    assert {"topology.kubernetes.io/region", "topology.kubernetes.io/zone"} <= set(node["metadata"]["labels"])


# ---- scenarios written in the test ------------------------------------------------------------

def scenario(tmp_path: Path, text: str, name: str = "demo") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


APP = """
name: demo
steps:
  - t: 0
    apply:
      - {apiVersion: v1, kind: Namespace, metadata: {name: shop}}
      - apiVersion: v1
        kind: Service
        metadata: {name: web, namespace: shop}
        spec: {selector: {app: web}, ports: [{name: http, port: 80, targetPort: web}]}
      - apiVersion: apps/v1
        kind: Deployment
        metadata: {name: web, namespace: shop}
        spec:
          replicas: 2
          selector: {matchLabels: {app: web}}
          template:
            metadata: {labels: {app: web}}
            spec: {containers: [{name: web, image: "nginx:1.25", ports: [{name: web, containerPort: 8080}]}]}
"""


def final_state(text: str) -> dict:
    return states_by_time(parse_trace(text))[-1][1]


def test_same_scenario_gives_byte_identical_traces(tmp_path):
    path = scenario(tmp_path, APP)
    assert build_text(path) == build_text(path)


def test_named_target_ports_resolve_and_a_new_template_rolls_out(tmp_path):
    path = scenario(tmp_path, APP + """
  - t: 10
    modify:
      - ref: deploy shop/web
        merge: {spec: {template: {spec: {containers: [{name: web, image: "nginx:1.26",
                                                       ports: [{name: web, containerPort: 8080}]}]}}}}
""")
    text = build_text(path)
    before = states_by_time(parse_trace(text))[0][1]
    after = final_state(text)
    (slice_,) = of_kind(after, "EndpointSlice")
    assert slice_["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    old_rs = {r["metadata"]["name"] for r in of_kind(before, "ReplicaSet")}
    replicasets = {r["metadata"]["name"]: r["spec"]["replicas"] for r in of_kind(after, "ReplicaSet")}
    (new_rs,) = set(replicasets) - old_rs
    assert replicasets == {**{name: 0 for name in old_rs}, new_rs: 2}
    pods = of_kind(after, "Pod")
    assert len(pods) == 2 and all(p["metadata"]["name"].startswith(new_rs) for p in pods)
    assert all(p["spec"]["containers"][0]["image"] == "nginx:1.26" for p in pods)
    dep = after[kinds.ObjectKey("apps", "Deployment", "shop", "web")]
    assert dep["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
    assert sorted(a for ep in slice_["endpoints"] for a in ep["addresses"]) == sorted(
        p["status"]["podIP"] for p in pods)


def test_deleting_a_deployment_and_service_collects_their_children(tmp_path):
    path = scenario(tmp_path, APP + """
  - t: 10
    delete: [deploy shop/web, svc shop/web]
""")
    after = final_state(build_text(path))
    assert not [k for k in after if k.kind in ("ReplicaSet", "Pod", "EndpointSlice", "Deployment", "Service")]


def test_a_deleted_pod_is_replaced_and_a_bare_pod_joins_the_slice(tmp_path):
    first = scenario(tmp_path, APP.replace("name: demo", "name: first"), "first")
    victim = next(p for p in of_kind(final_state(build_text(first)), "Pod"))["metadata"]["name"]
    path = scenario(tmp_path, APP + f"""
  - t: 10
    delete: [pod shop/{victim}]
    apply:
      - apiVersion: v1
        kind: Pod
        metadata: {{name: debug, namespace: shop, labels: {{app: web}}}}
        spec: {{containers: [{{name: web, image: "nginx:1.25", ports: [{{name: web, containerPort: 8080}}]}}]}}
""")
    trace = parse_trace(build_text(path))
    after = final_state(build_text(path))
    pods = {p["metadata"]["name"]: p for p in of_kind(after, "Pod")}
    assert victim not in pods and len(pods) == 3 and "ownerReferences" not in pods["debug"]["metadata"]
    (slice_,) = of_kind(after, "EndpointSlice")
    assert sorted(ep["targetRef"]["name"] for ep in slice_["endpoints"]) == sorted(pods)
    assert [e.type for e in trace.events if e.object["metadata"]["name"] == victim] == ["ADDED", "DELETED"]


def test_include_plays_the_included_steps_first(tmp_path):
    scenario(tmp_path, APP.replace("name: demo\n", ""), "base")
    path = scenario(tmp_path, "name: demo\ninclude: base.yaml\nsteps:\n"
                              "  - t: 3\n    scale: {deployment: shop/web, replicas: 1}\n")
    trace = parse_trace(build_text(path))
    assert trace.events[0].object["kind"] == "Node" and trace.duration == 3
    assert len(of_kind(final_state(build_text(path)), "Pod")) == 1


@pytest.mark.parametrize(("text", "expected"), [
    ("name: demo\nsteps:\n  - t: 5\n    delete: [cm x]\n  - t: 1\n    delete: [cm y]\n",
     "demo.yaml:5: steps[1].t: time goes backwards"),
    ("name: demo\nsteps:\n  - t: 0\n    apply:\n      - {apiVersion: v9, kind: Gizmo, metadata: {name: g}}\n",
     "demo.yaml:5: steps[0].apply[0]: unknown kind 'Gizmo'"),
    ("name: demo\nsteps:\n  - t: 0\n    modify:\n      - {ref: ConfigMap istio-system/istio, merge: {data: {}}}\n",
     "demo.yaml:5: steps[0].modify[0]: ConfigMap istio-system/istio does not exist"),
    ("name: demo\nsteps:\n  - t: 0\n    apply:\n      - {apiVersion: v1, kind: ConfigMap, metadata: {name: c, namespace: nope}}\n",
     "demo.yaml:5: steps[0].apply[0]: namespace 'nope' does not exist"),
    ("name: demo\nsteps:\n  - t: 0\n    sclae: {deployment: a, replicas: 1}\n",
     "demo.yaml:3: steps[0].sclae: unknown key"),
    ("name: other\nsteps: []\n", "demo.yaml:1: name: 'other' must match the file name"),
    ("name: demo\nsteps:\n  - t: 0\n    delete: [Bogus default/x]\n", "demo.yaml:3: steps[0].delete[0]: unknown kind"),
])
def test_scenario_errors_name_file_line_and_field(tmp_path, text, expected):
    with pytest.raises(ScenarioError) as caught:
        build_text(scenario(tmp_path, text))
    assert expected in str(caught.value)


def test_reapply_keeps_server_fields_and_writes_nothing_when_unchanged(tmp_path):
    service = APP[APP.index("      - apiVersion: v1\n        kind: Service"):APP.index("      - apiVersion: apps/v1")]
    changed = service.replace("port: 80,", "port: 81,")
    path = scenario(tmp_path, APP + "  - t: 5\n    apply:\n" + service + "  - t: 6\n    apply:\n" + changed)
    trace = parse_trace(build_text(path))
    writes = [e for e in trace.events if e.object["kind"] == "Service"]
    assert [(e.t, e.type) for e in writes] == [(0, "ADDED"), (6, "MODIFIED")]
    first, second = (e.object for e in writes)
    assert second["spec"]["clusterIP"] == first["spec"]["clusterIP"]
    assert second["metadata"]["uid"] == first["metadata"]["uid"]
    assert second["spec"]["ports"][0]["port"] == 81 and "generation" not in second["metadata"]


def test_errors_inside_a_manifest_file_name_that_file_and_line(tmp_path):
    (tmp_path / "objs.yaml").write_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n"
                                        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, uid: x}\n")
    with pytest.raises(ScenarioError) as caught:
        build_text(scenario(tmp_path, "name: demo\nsteps:\n  - t: 0\n    apply:\n      - file: objs.yaml\n"))
    assert f"{tmp_path / 'objs.yaml'}:5: steps[0].apply[0] (file): metadata.uid is set by the server" in str(
        caught.value)


def test_a_yaml_syntax_error_names_the_line(tmp_path):
    with pytest.raises(ScenarioError, match=r"demo.yaml:3: not valid YAML \(mapping values"):
        build_text(scenario(tmp_path, "name: demo\ndescription: x\nsteps: a: b\n"))


def test_an_include_cycle_is_refused(tmp_path):
    scenario(tmp_path, "include: demo.yaml\n", "a")
    with pytest.raises(ScenarioError, match="include cycle"):
        build_text(scenario(tmp_path, "name: demo\ninclude: a.yaml\n"))


# ---- the CLI ----------------------------------------------------------------------------------

def test_trace_check_exits_2_naming_the_broken_third_line(tmp_path, capsys):
    lines = (TRACES_DIR / "bookinfo.jsonl").read_text().splitlines()
    lines[2] = lines[2][: len(lines[2]) // 2]
    broken = tmp_path / "broken.jsonl"
    broken.write_text("\n".join(lines) + "\n")
    assert main(["trace", "check", str(broken)]) == 2
    assert f"{broken}:3: json:" in capsys.readouterr().err


def test_trace_check_accepts_good_traces(capsys):
    assert main(["trace", "check", "bookinfo", str(TRACES_DIR / "canary.jsonl")]) == 0
    assert "canary.jsonl: ok" in capsys.readouterr().out


def test_trace_new_writes_the_trace_and_rejects_bad_scenarios(tmp_path, capsys):
    out = tmp_path / "demo.jsonl"
    assert main(["trace", "new", str(scenario(tmp_path, APP)), "-o", str(out)]) == 0
    assert load_trace(out).name == "demo"
    assert main(["trace", "new", str(scenario(tmp_path, "name: demo\nsteps: 3\n"))]) == 2
    assert "demo.yaml:1: steps: expected a list" in capsys.readouterr().err


def test_build_all_rebuilds_top_level_scenarios_and_check_spots_stale_traces(tmp_path, capsys):
    src = tmp_path / "src"
    shutil.copytree(SOURCE_DIR, src)
    (src / "fragment.yaml").write_text("steps: []\n")  # no name: include-only, not built
    assert main(["trace", "build-all", "--src", str(src)]) == 0
    built = sorted(p.name for p in tmp_path.glob("*.jsonl"))
    assert built == sorted(f"{p.stem}.jsonl" for p in SCENARIOS)
    assert (tmp_path / "canary.jsonl").read_text() == (TRACES_DIR / "canary.jsonl").read_text()
    assert main(["trace", "build-all", "--src", str(src), "--check"]) == 0
    (tmp_path / "canary.jsonl").write_text("stale\n")
    assert main(["trace", "build-all", "--src", str(src), "--check"]) == 1
    assert "canary.jsonl: differs" in capsys.readouterr().out
    assert (tmp_path / "canary.jsonl").read_text() == "stale\n"
