"""Profiles, --set paths, the effective IstioOperator and the renderer (mesh/install)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import kubernetes
import pytest
import yaml

from mesh.cli import main
from mesh.install import iop as iopmod
from mesh.install import overlay, render, tpath
from mesh.kube import kinds
from mesh.kube.trace import load_trace

ROOT = Path(__file__).resolve().parent.parent


def rendered(profile: str = "default", sets: list[str] = (), user: dict | None = None) -> dict[str, list[dict]]:
    return render.render(iopmod.generate(user, profile=profile, sets=sets))


def find(objects: list[dict], kind: str, name: str) -> dict:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind} {name}: {len(matches)} found"
    return matches[0]


def names(objects: list[dict]) -> set[tuple[str, str]]:
    return {(o["kind"], o["metadata"]["name"]) for o in objects}


# -- tpath and --set --------------------------------------------------------------------------

def test_parse_path_elements():
    elements = tpath.parse_path("components.ingressGateways[0].k8s.[name:istio.io/x].env.[3]")
    assert [str(e) for e in elements] == ["components", "ingressGateways", "[0]", "k8s", "[name:istio.io/x]",
                                          "env", "[3]"]


@pytest.mark.parametrize("bad", ["", "a..b", "a.", "a[x]", "a[0", "a]b", "a[:v]"])
def test_parse_path_rejects(bad):
    with pytest.raises(tpath.PathError):
        tpath.parse_path(bad)


@pytest.mark.parametrize("text, value", [("true", True), ("False", False), ("3", 3), ("-2", -2), ("1.5", 1.5),
                                         ("1.19.0", "1.19.0"), ("a\\,b", "a,b"), ("", "")])
def test_parse_value_like_istioctl(text, value):
    parsed = tpath.parse_value(text)
    assert parsed == value and type(parsed) is type(value)


def test_set_path_creates_maps_lists_and_selected_entries():
    tree: dict = {"gws": [{"name": "a", "on": False}]}
    tpath.set_path(tree, "x.y[0].z", 1)
    tpath.set_path(tree, "x.y[1]", "second")
    tpath.set_path(tree, "gws.[name:a].on", True)
    tpath.set_path(tree, "gws[name:b].k8s.env[0].name", "E")
    assert tree == {"gws": [{"name": "a", "on": True}, {"name": "b", "k8s": {"env": [{"name": "E"}]}}],
                    "x": {"y": [{"z": 1}, "second"]}}
    assert tpath.get_path(tree, "gws[name:b].k8s.env[0].name") == "E"
    with pytest.raises(tpath.PathError, match="past the end"):
        tpath.set_path(tree, "x.y[5]", 0)
    with pytest.raises(tpath.PathError, match="not found"):
        tpath.get_path(tree, "x.nope")


# -- profiles ---------------------------------------------------------------------------------

def test_profile_list_has_istio_profiles(capsys):
    assert main(["profile", "list"]) == 0
    listed = capsys.readouterr().out.split()
    assert {"default", "demo", "minimal", "empty"} <= set(listed)


@pytest.mark.parametrize("profile, base, pilot, ingress, egress", [
    ("default", True, True, True, False),
    ("demo", True, True, True, True),
    ("minimal", True, True, False, False),
    ("empty", False, False, False, False),
])
def test_profile_dump_components(capsys, profile, base, pilot, ingress, egress):
    assert main(["profile", "dump", profile]) == 0
    doc = yaml.safe_load(capsys.readouterr().out)
    assert doc["apiVersion"] == "install.istio.io/v1alpha1" and doc["kind"] == "IstioOperator"
    components = doc["spec"]["components"]
    assert components["base"]["enabled"] is base
    assert components["pilot"]["enabled"] is pilot
    assert [g["enabled"] for g in components["ingressGateways"]] == [ingress]
    assert [g["enabled"] for g in components["egressGateways"]] == [egress]
    assert iopmod.validate(doc) == []


def test_demo_profile_facts():
    spec = iopmod.profile_iop("demo")["spec"]
    assert spec["meshConfig"]["accessLogFile"] == "/dev/stdout"
    assert spec["meshConfig"]["enablePrometheusMerge"] is True  # from default, kept by the overlay
    assert {p["name"] for p in spec["meshConfig"]["extensionProviders"]} == {"otel", "skywalking", "otel-tracing"}
    assert spec["values"]["pilot"]["autoscaleEnabled"] is False
    assert spec["values"]["global"]["proxy"]["resources"]["requests"] == {"cpu": "10m", "memory": "40Mi"}
    # k8s.service.ports has no merge key in OverlayIOP, so demo's list replaces default's whole
    ports = spec["components"]["ingressGateways"][0]["k8s"]["service"]["ports"]
    assert [p["port"] for p in ports] == [15021, 80, 443, 31400, 15443]


def test_overlay_iop_merges_gateways_by_name_and_replaces_untagged_lists(tmp_path):
    # OverlayIOP (merge_iop.go): a user's ingress gateway joins the profile's instead of replacing it
    extra = tmp_path / "extra.yaml"
    extra.write_text("apiVersion: install.istio.io/v1alpha1\nkind: IstioOperator\nspec:\n"
                     "  components:\n    ingressGateways:\n"
                     "    - {name: istio-ingressgateway, k8s: {replicaCount: 3}}\n"
                     "    - {name: second-gateway, enabled: true}\n"
                     "  meshConfig:\n    extensionProviders:\n    - {name: mine, prometheus: {}}\n"
                     "    trustDomainAliases: [a.example]\n"
                     "  values:\n    gateways:\n      istio-ingressgateway:\n"
                     "        ports:\n        - {name: http2, port: 8080}\n")
    spec = iopmod.generate_from_files([str(extra)], profile="demo")["spec"]
    gateways = {g["name"]: g for g in spec["components"]["ingressGateways"]}
    assert list(gateways) == ["istio-ingressgateway", "second-gateway"]
    profile_gw = gateways["istio-ingressgateway"]
    assert profile_gw["enabled"] is True and profile_gw["k8s"]["replicaCount"] == 3
    assert [p["port"] for p in profile_gw["k8s"]["service"]["ports"]] == [15021, 80, 443, 31400, 15443]
    assert [p["name"] for p in spec["meshConfig"]["extensionProviders"]] == ["otel", "skywalking", "otel-tracing", "mine"]
    assert spec["meshConfig"]["trustDomainAliases"] == ["a.example"]
    assert spec["values"]["gateways"]["istio-ingressgateway"]["ports"] == [{"name": "http2", "port": 8080}]
    # an untagged list (k8s.service.ports) replaces the list under it
    base = {"spec": {"components": {"ingressGateways": [{"name": "g", "k8s": {"service": {"ports": [{"port": 1}]}}}]},
                     "meshConfig": {"trustDomainAliases": ["a", "b"]}}}
    over = {"spec": {"components": {"ingressGateways": [{"name": "g", "k8s": {"service": {"ports": [{"port": 2}]}}}]},
                     "meshConfig": {"trustDomainAliases": ["b", "c"], "accessLogFile": None}}}
    merged = iopmod.overlay_iop(base, over)["spec"]
    assert merged["components"]["ingressGateways"] == [{"name": "g", "k8s": {"service": {"ports": [{"port": 2}]}}}]
    assert merged["meshConfig"] == {"trustDomainAliases": ["a", "b", "c"]}
    assert base["spec"]["meshConfig"]["trustDomainAliases"] == ["a", "b"]  # inputs untouched


def test_profile_dump_set_and_config_path(capsys):
    assert main(["profile", "dump", "minimal", "--set", "components.pilot.k8s.replicaCount=3",
                 "--set", "components.ingressGateways[name:istio-ingressgateway].enabled=true",
                 "--config-path", "components"]) == 0
    components = yaml.safe_load(capsys.readouterr().out)
    assert components["pilot"] == {"enabled": True, "k8s": {"replicaCount": 3}}
    assert components["ingressGateways"] == [{"name": "istio-ingressgateway", "enabled": True}]


def test_profile_diff_shows_changes(capsys):
    assert main(["profile", "diff", "default", "demo"]) == 0
    out = capsys.readouterr().out
    assert "+  meshConfig:" not in out and "+    accessLogFile: /dev/stdout" in out


@pytest.mark.parametrize("flag, message", [
    ("nope.x=1", "not an IstioOperator spec field"),
    ("components.pilot.enabled=yes", "expected true or false"),
    ("components.sidecar.enabled=true", "unknown component"),
    ("components.cni.enabled=true", "no renderer for the cni component"),
    ("profile=bogus", "not a profile"),
    ("revision=Canary_1", "not a DNS label"),
    ("components.pilot.k8s.replicas=2", "k8s.replicas: unknown field"),
])
def test_bad_set_is_a_usage_error(capsys, flag, message):
    assert main(["profile", "dump", "--set", flag]) == 2
    assert message in capsys.readouterr().err


def test_iop_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: install.istio.io/v1alpha1\nkind: IstioOperator\nspec:\n  components: [\n")
    with pytest.raises(iopmod.IstioOperatorError, match=r"bad.yaml:\d+: not valid YAML"):
        iopmod.generate_from_files([str(bad)])
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("apiVersion: v1\nkind: ConfigMap\n")
    with pytest.raises(iopmod.IstioOperatorError, match="wrong.yaml: apiVersion: expected install.istio.io"):
        iopmod.generate_from_files([str(wrong)])


def test_files_layer_in_order_and_set_goes_last(tmp_path):
    a = tmp_path / "a.yaml"
    a.write_text("apiVersion: install.istio.io/v1alpha1\nkind: IstioOperator\n"
                 "spec: {profile: demo, meshConfig: {accessLogFile: /tmp/a}}\n")
    b = tmp_path / "b.yaml"
    b.write_text("apiVersion: install.istio.io/v1alpha1\nkind: IstioOperator\nspec: {meshConfig: {accessLogFile: /tmp/b}}\n")
    effective = iopmod.generate_from_files([str(a), str(b)], sets=["meshConfig.accessLogEncoding=JSON"])
    assert effective["spec"]["profile"] == "demo"
    assert effective["spec"]["meshConfig"]["accessLogFile"] == "/tmp/b"
    assert effective["spec"]["meshConfig"]["accessLogEncoding"] == "JSON"


# -- the renderer -----------------------------------------------------------------------------

def test_default_profile_renders_istiod_and_ingress():
    out = rendered("default")
    assert list(out) == ["Base", "Pilot", "IngressGateways"]
    pilot = out["Pilot"]
    assert {("ServiceAccount", "istiod"), ("ConfigMap", "istio"), ("ConfigMap", "istio-sidecar-injector"),
            ("Deployment", "istiod"), ("Service", "istiod"), ("PodDisruptionBudget", "istiod"),
            ("HorizontalPodAutoscaler", "istiod"), ("ClusterRole", "istiod-clusterrole-istio-system"),
            ("ClusterRoleBinding", "istiod-clusterrole-istio-system"), ("Role", "istiod"), ("RoleBinding", "istiod"),
            ("MutatingWebhookConfiguration", "istio-sidecar-injector"),
            ("ValidatingWebhookConfiguration", "istio-validator-istio-system")} <= names(pilot)
    svc = find(pilot, "Service", "istiod")
    assert [(p["port"], p.get("targetPort", p["port"])) for p in svc["spec"]["ports"]] == \
        [(15010, 15010), (15012, 15012), (443, 15017), (15014, 15014)]
    deployment = find(pilot, "Deployment", "istiod")
    assert "replicas" not in deployment["spec"]  # autoscaled: the HPA owns the replica count
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "docker.io/istio/pilot:1.19.0"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["PILOT_TRACE_SAMPLING"] == "1" and env["ISTIOD_ADDR"] == "istiod.istio-system.svc:15012"
    ingress = out["IngressGateways"]
    svc = find(ingress, "Service", "istio-ingressgateway")
    assert svc["spec"]["type"] == "LoadBalancer"
    assert [p["port"] for p in svc["spec"]["ports"]] == [15021, 80, 443]
    assert ("Deployment", "istio-egressgateway") not in names(render.flatten(out))


def test_demo_renders_egress_small_requests_and_k8s_overlays():
    out = rendered("demo")
    assert list(out) == ["Base", "Pilot", "IngressGateways", "EgressGateways"]
    istiod = find(out["Pilot"], "Deployment", "istiod")
    container = istiod["spec"]["template"]["spec"]["containers"][0]
    env = [e for e in container["env"] if e["name"] == "PILOT_TRACE_SAMPLING"]
    assert env == [{"name": "PILOT_TRACE_SAMPLING", "value": "100"}]  # merged by name, not appended
    assert container["resources"] == {"requests": {"cpu": "10m", "memory": "100Mi"}}
    assert istiod["spec"]["replicas"] == 1
    assert ("HorizontalPodAutoscaler", "istiod") not in names(out["Pilot"])
    ports = find(out["IngressGateways"], "Service", "istio-ingressgateway")["spec"]["ports"]
    assert [p["port"] for p in ports] == [15021, 80, 443, 31400, 15443]
    egress = find(out["EgressGateways"], "Service", "istio-egressgateway")
    assert egress["spec"]["type"] == "ClusterIP" and [p["port"] for p in egress["spec"]["ports"]] == [80, 443]
    mesh = yaml.safe_load(find(out["Pilot"], "ConfigMap", "istio")["data"]["mesh"])
    assert mesh["accessLogFile"] == "/dev/stdout"
    values = json.loads(find(out["Pilot"], "ConfigMap", "istio-sidecar-injector")["data"]["values"])
    assert values["global"]["proxy"]["resources"]["requests"] == {"cpu": "10m", "memory": "40Mi"}


def test_minimal_and_empty():
    assert list(rendered("minimal")) == ["Base", "Pilot"]
    assert rendered("empty") == {}


def test_revision_renames_and_selects():
    out = rendered("minimal", ["revision=canary"])
    pilot = out["Pilot"]
    deployment = find(pilot, "Deployment", "istiod-canary")
    assert deployment["spec"]["selector"]["matchLabels"] == {"app": "istiod", "istio.io/rev": "canary"}
    assert find(pilot, "Service", "istiod-canary")["spec"]["selector"] == {"app": "istiod", "istio.io/rev": "canary"}
    webhook = find(pilot, "MutatingWebhookConfiguration", "istio-sidecar-injector-canary")
    assert [w["name"] for w in webhook["webhooks"]] == ["rev.namespace.sidecar-injector.istio.io",
                                                        "rev.object.sidecar-injector.istio.io"]
    find(pilot, "ConfigMap", "istio-sidecar-injector-canary")
    find(pilot, "ConfigMap", "istio-canary")


def test_k8s_overlays_patch_any_path():
    user = {"apiVersion": iopmod.API_VERSION, "kind": iopmod.KIND, "spec": {"components": {"pilot": {"k8s": {
        "overlays": [{"kind": "Deployment", "name": "istiod", "patches": [
            {"path": "spec.template.spec.containers.[name:discovery].args[1]", "value": "--monitoringAddr=:9999"},
            {"path": "spec.template.spec.volumes.[name:cacerts]", "value": None}]}]}}}}}
    deployment = find(rendered("minimal", user=user)["Pilot"], "Deployment", "istiod")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["containers"][0]["args"][1] == "--monitoringAddr=:9999"
    assert "cacerts" not in {v["name"] for v in pod["volumes"]}


def test_hpa_spec_without_autoscaling_is_an_error():
    with pytest.raises(overlay.OverlayError, match="components.pilot.k8s.hpaSpec: this component renders no "
                                                   "HorizontalPodAutoscaler"):
        rendered("demo", ["components.pilot.k8s.hpaSpec.maxReplicas=3"])


def test_strategic_merge_keys():
    base = [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
    assert overlay.strategic_merge(base, [{"name": "B", "value": "3"}, {"name": "C", "value": "4"}]) == \
        [{"name": "A", "value": "1"}, {"name": "B", "value": "3"}, {"name": "C", "value": "4"}]
    assert overlay.strategic_merge(["a", "b"], ["c"]) == ["c"]
    assert overlay.strategic_merge({"a": 1, "b": 2}, {"b": None, "c": 3}) == {"a": 1, "c": 3}


# -- dry-run output against the Kubernetes API types ---------------------------------------------

_MODELS = {
    "Namespace": "V1Namespace", "ServiceAccount": "V1ServiceAccount", "ConfigMap": "V1ConfigMap",
    "Deployment": "V1Deployment", "Service": "V1Service", "ClusterRole": "V1ClusterRole",
    "ClusterRoleBinding": "V1ClusterRoleBinding", "Role": "V1Role", "RoleBinding": "V1RoleBinding",
    "PodDisruptionBudget": "V1PodDisruptionBudget", "HorizontalPodAutoscaler": "V2HorizontalPodAutoscaler",
    "MutatingWebhookConfiguration": "V1MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration": "V1ValidatingWebhookConfiguration",
    "CustomResourceDefinition": "V1CustomResourceDefinition",
}


def _round_trip(api: kubernetes.client.ApiClient, obj: dict) -> dict:
    """Deserialize into the typed model (which raises on a missing required field or a bad enum)
    and serialize back: a field the model does not know, or a wrongly shaped one, does not survive."""
    model = api.deserialize(json.dumps(obj), _MODELS[obj["kind"]], "application/json")
    return api.sanitize_for_serialization(model)


def _strip_empty(value):
    if isinstance(value, dict):
        return {k: _strip_empty(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_strip_empty(v) for v in value]
    return value


@pytest.mark.parametrize("profile", ["default", "demo"])
def test_dry_run_validates_against_kubernetes_models(profile):
    out = subprocess.run([sys.executable, "-m", "mesh", "install", "--profile", profile, "--dry-run"],
                         capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    objects = [d for d in yaml.safe_load_all(out.stdout) if d]
    assert objects and all(o["kind"] in _MODELS for o in objects)
    api = kubernetes.client.ApiClient()
    for obj in objects:
        assert kinds.for_object(obj) is not None, obj["kind"]
        assert _round_trip(api, obj) == _strip_empty(obj), f"{obj['kind']} {obj['metadata']['name']}"


def test_dry_run_orders_dependencies_first():
    objects = render.flatten(rendered("demo"))
    order = [o["kind"] for o in objects]
    assert order[0] == "Namespace" and order[1] == "CustomResourceDefinition"
    istiod_at = objects.index(find(objects, "Deployment", "istiod"))
    assert objects.index(find(objects, "ConfigMap", "istio")) < istiod_at
    assert objects.index(find(objects, "ServiceAccount", "istiod")) < istiod_at
    assert objects.index(find(objects, "MutatingWebhookConfiguration", "istio-sidecar-injector")) > istiod_at
    assert objects.index(find(objects, "Deployment", "istio-ingressgateway")) > \
        objects.index(find(objects, "ValidatingWebhookConfiguration", "istio-validator-istio-system"))


# -- the bookinfo trace is generated from mesh install ---------------------------------------------

TRACE_ONLY = "Namespace,ConfigMap/istio,ServiceAccount/istiod,Deployment/istiod,Service/istiod," \
             "MutatingWebhookConfiguration,ValidatingWebhookConfiguration"


def test_trace_source_istiod_yaml_is_mesh_install_output():
    out = subprocess.run([sys.executable, "-m", "mesh", "install", "--profile", "default", "--dry-run",
                          "--only", TRACE_ONLY], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    committed = (ROOT / "traces/src/istio-system/istiod.yaml").read_text(encoding="utf-8")
    assert [d for d in yaml.safe_load_all(committed) if d] == [d for d in yaml.safe_load_all(out.stdout) if d]


def test_injector_configmap_equals_the_bookinfo_trace():
    mine = find(rendered("default")["Pilot"], "ConfigMap", "istio-sidecar-injector")
    trace = load_trace("bookinfo")
    recorded = [e.object for e in trace.events if e.object["kind"] == "ConfigMap"
                and e.object["metadata"]["name"] == "istio-sidecar-injector"]
    assert recorded and recorded[0]["data"] == mine["data"]
    assert {k: v for k, v in recorded[0]["metadata"]["labels"].items()} == mine["metadata"]["labels"]


def test_model_check_rejects_a_malformed_deployment():
    api = kubernetes.client.ApiClient()
    deployment = find(rendered("minimal")["Pilot"], "Deployment", "istiod")
    deployment["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "http"
    with pytest.raises(ValueError):
        _round_trip(api, deployment)
    deployment = find(rendered("minimal")["Pilot"], "Deployment", "istiod")
    deployment["spec"]["template"]["spec"]["contianers"] = deployment["spec"]["template"]["spec"].pop("containers")
    with pytest.raises(ValueError):
        _round_trip(api, deployment)


@pytest.mark.parametrize("filename, components", [
    ("control-plane.yaml", ["Base", "Pilot"]),
    ("gateways.yaml", ["IngressGateways", "EgressGateways"]),
])
def test_install_demo_trace_sources_are_mesh_install_output(filename, components):
    args = [sys.executable, "-m", "mesh", "install", "--profile", "demo", "--dry-run", "--owner-labels"]
    for component in components:
        args += ["--component", component]
    out = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    committed = (ROOT / "traces/src/install-demo" / filename).read_text(encoding="utf-8")
    assert [d for d in yaml.safe_load_all(committed) if d] == [d for d in yaml.safe_load_all(out.stdout) if d]


def test_install_demo_trace_records_the_demo_install():
    trace = load_trace("install-demo")
    final: dict = {}
    for event in trace.events:
        final[kinds.object_key(event.object)] = None if event.type == "DELETED" else event.object
    objects = [o for o in final.values() if o is not None]
    owned = {(o["kind"], o["metadata"]["name"]) for o in objects  # EndpointSlices copy their Service's labels
             if (o["metadata"].get("labels") or {}).get("install.operator.istio.io/owning-resource") == "installed-state"
             and o["kind"] != "EndpointSlice"}
    assert names(render.flatten(rendered("demo"))) == owned
    deployments = [o for o in objects if o["kind"] == "Deployment"]
    assert {d["metadata"]["name"] for d in deployments} == {"istiod", "istio-ingressgateway", "istio-egressgateway"}
    first_gateway = min(e.t for e in trace.events if e.object["metadata"]["name"] == "istio-ingressgateway")
    assert first_gateway > max(e.t for e in trace.events if e.object["kind"] == "Deployment"
                               and e.object["metadata"]["name"] == "istiod")


def test_env_values_from_set_become_text():
    deployment = find(rendered("minimal", ["components.pilot.k8s.env[0].name=A", "components.pilot.k8s.env[0].value=true",
                                           "components.pilot.k8s.env[1].name=B", "components.pilot.k8s.env[1].value=7"])[
        "Pilot"], "Deployment", "istiod")
    env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env[-2:] == [{"name": "A", "value": "true"}, {"name": "B", "value": "7"}]


def test_extra_gateway_renders_from_the_chart_values_of_its_kind():
    out = rendered("default", ["components.ingressGateways[name:edge].enabled=true",
                               "components.ingressGateways[name:edge].label.istio=edge",
                               "components.ingressGateways[name:edge].k8s.service.ports[0].port=8443",
                               "components.ingressGateways[name:edge].k8s.service.ports[0].name=https"])
    ingress = out["IngressGateways"]
    assert {o["metadata"]["name"] for o in ingress if o["kind"] == "Deployment"} == {"istio-ingressgateway", "edge"}
    edge = find(ingress, "Deployment", "edge")
    assert edge["spec"]["selector"]["matchLabels"] == {"istio": "edge"}
    assert find(ingress, "Service", "edge")["spec"]["ports"] == [{"name": "https", "port": 8443}]
    ports = [p["containerPort"] for p in edge["spec"]["template"]["spec"]["containers"][0]["ports"]]
    assert ports == [8443, 15090]
    find(ingress, "ServiceAccount", "edge-service-account")


def test_demo_gateway_container_ports_follow_the_service_ports():
    deployment = find(rendered("demo")["IngressGateways"], "Deployment", "istio-ingressgateway")
    ports = [p["containerPort"] for p in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]]
    assert ports == [15021, 8080, 8443, 31400, 15443, 15090]
