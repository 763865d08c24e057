"""Injection beyond the default sidecar: other templates, more workload kinds, native sidecars,
annotation checks — each behaviour as istiod 1.19 has it (and as Istio's own test data pins it,
see tests/test_inject_istio_testdata.py for the comparison with its goldens)."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from mesh.cli import main
from mesh.config.mesh import default_mesh_config
from mesh.inject import merge
from mesh.inject.config import load_builtin, parse_injector_config
from mesh.inject.inject import InjectionError, InjectionParams, inject_pod
from mesh.inject.kubeinject import into_object
from mesh.inject.template import append_multus_network
from mesh.inject.validate import AnnotationError, validate_annotations

CONFIG, VALUES = load_builtin()
APP = {"name": "app", "image": "app:1", "ports": [{"containerPort": 8080, "name": "grpc"}]}


def pod(annotations=None, containers=None, init=None) -> dict:
    spec = {"containers": containers or [dict(APP)]}
    if init:
        spec["initContainers"] = init
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "app-1", "namespace": "apps", "labels": {"app": "app", "version": "v2"},
                         "annotations": annotations or {}}, "spec": spec}


def inject(p: dict, config=CONFIG) -> dict:
    return inject_pod(InjectionParams(pod=p, config=config, values=VALUES, mesh_config=default_mesh_config())).pod


def names(containers) -> list[str]:
    return [c["name"] for c in containers or []]


def status(p: dict) -> dict:
    return json.loads(p["metadata"]["annotations"]["sidecar.istio.io/status"])


# -- templates --------------------------------------------------------------------------------------
def test_grpc_agent_runs_the_agent_without_envoy_and_points_the_app_at_it():
    out = inject(pod({"inject.istio.io/templates": "grpc-agent"}))
    spec = out["spec"]
    assert names(spec["containers"]) == ["app", "istio-proxy"] and "initContainers" not in spec  # no iptables
    proxy = merge.find_container("istio-proxy", spec["containers"])
    env = {e["name"]: e.get("value") for e in proxy["env"]}
    assert env["DISABLE_ENVOY"] == "true" and env["ISTIO_META_GENERATOR"] == "grpc"
    assert proxy["readinessProbe"]["httpGet"]["port"] == 15020  # the agent, not Envoy's 15021
    app = spec["containers"][0]
    assert {"name": "GRPC_XDS_BOOTSTRAP", "value": "/etc/istio/proxy/grpc-bootstrap.json"} in app["env"]
    assert "/etc/istio/proxy" in [m["mountPath"] for m in app["volumeMounts"]]
    assert "security.istio.io/tlsMode" not in out["metadata"]["labels"]  # the app opts into mTLS itself
    assert out["metadata"]["labels"]["service.istio.io/canonical-revision"] == "v2"
    assert out["metadata"]["annotations"]["sidecar.istio.io/rewriteAppHTTPProbers"] == "false"
    assert status(out)["containers"] == ["istio-proxy", "app"]


def test_grpc_simple_adds_only_a_bootstrap_init_container():
    out = inject(pod({"inject.istio.io/templates": "grpc-simple"}))
    spec = out["spec"]
    assert names(spec["initContainers"]) == ["grpc-bootstrap-init"] and names(spec["containers"]) == ["app"]
    assert "dns:///istiod.${ISTIO_NAMESPACE}.svc:15010" in spec["initContainers"][0]["command"][2]
    assert {"name": "GRPC_XDS_BOOTSTRAP", "value": "/var/lib/grpc/data/bootstrap.json"} in spec["containers"][0]["env"]
    assert names(spec["volumes"]) == ["grpc-io-proxyless-bootstrap"]


def test_templates_are_merged_in_order_and_custom_ones_come_from_the_config():
    text = yaml.safe_dump({"templates": {**CONFIG.raw_templates, "custom": (
        "metadata:\n  labels:\n    custom: 'yes'\nspec:\n  containers:\n"
        "{% for c in spec.containers %}\n  - name: {{ c.name }}\n    env:\n    - {name: CUSTOM, value: '1'}\n"
        "{% endfor %}\n")}})
    config = parse_injector_config(text, "test")
    out = inject(pod({"inject.istio.io/templates": "sidecar,custom"}), config)
    assert out["metadata"]["labels"]["custom"] == "yes"
    assert names(out["spec"]["containers"]) == ["app", "istio-proxy"]
    app, proxy = out["spec"]["containers"]
    assert {"name": "CUSTOM", "value": "1"} in app["env"]
    # every template sees the pod as it came in, so the custom one does not know of the proxy
    assert "CUSTOM" not in [e["name"] for e in proxy["env"]]
    assert out["spec"]["containers"][1]["image"].endswith("/proxyv2:1.19.0")


def test_canonical_service_labels_fall_back_in_istios_order():
    def labels(pod_labels):
        p = pod()
        p["metadata"]["labels"] = pod_labels
        return inject(p)["metadata"]["labels"]
    got = labels({"app.kubernetes.io/name": "k8s-name", "app": "app", "app.kubernetes.io/version": "3"})
    assert (got["service.istio.io/canonical-name"], got["service.istio.io/canonical-revision"]) == ("k8s-name", "3")
    got = labels({"service.istio.io/canonical-name": "mine", "app": "app"})
    assert (got["service.istio.io/canonical-name"], got["service.istio.io/canonical-revision"]) == ("mine", "latest")


# -- native sidecars --------------------------------------------------------------------------------
def test_native_sidecar_is_an_init_container_that_restarts_always(monkeypatch):
    monkeypatch.setenv("ENABLE_NATIVE_SIDECARS", "true")
    out = inject(pod(init=[{"name": "setup", "image": "setup:1"}]))
    spec = out["spec"]
    assert names(spec["containers"]) == ["app"]
    assert names(spec["initContainers"]) == ["istio-init", "istio-proxy", "setup"]  # proxy up before the app's
    proxy = spec["initContainers"][1]
    assert proxy["restartPolicy"] == "Always"
    assert "startupProbe" in proxy and "readinessProbe" not in proxy
    assert status(out)["initContainers"] == ["istio-init", "istio-proxy"] and status(out)["containers"] is None


def test_native_sidecar_takes_the_users_proxy_customisation_along(monkeypatch):
    monkeypatch.setenv("ENABLE_NATIVE_SIDECARS", "true")
    custom = {"name": "istio-proxy", "image": "auto", "args": ["-c", "mine.yaml"]}
    out = inject(pod(containers=[dict(APP), custom]))
    assert names(out["spec"]["containers"]) == ["app"]
    proxy = merge.find_container("istio-proxy", out["spec"]["initContainers"])
    assert proxy["args"] == ["-c", "mine.yaml"] and proxy["image"].endswith("/proxyv2:1.19.0")
    overrides = json.loads(out["metadata"]["annotations"]["proxy.istio.io/overrides"])
    assert names(overrides["initContainers"]) == ["istio-proxy"]


def test_without_the_flag_the_proxy_is_an_ordinary_container(monkeypatch):
    monkeypatch.delenv("ENABLE_NATIVE_SIDECARS", raising=False)
    proxy = merge.find_container("istio-proxy", inject(pod())["spec"]["containers"])
    assert "restartPolicy" not in proxy and "readinessProbe" in proxy


def test_users_proxy_volume_mount_stays_after_the_injected_ones():
    custom = {"name": "istio-proxy", "image": "auto", "volumeMounts": [{"name": "certs", "mountPath": "/etc/certs"}]}
    out = inject(pod(containers=[dict(APP), custom]))
    mounts = names(merge.find_container("istio-proxy", out["spec"]["containers"])["volumeMounts"])
    assert mounts[0] == "workload-socket" and mounts[-1] == "certs"


# -- annotations ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "value", "words"), [
    ("traffic.sidecar.istio.io/includeOutboundIPRanges", "10.0.0.0/8,bad", "includeIPRanges invalid"),
    ("traffic.sidecar.istio.io/excludeOutboundIPRanges", "*", "excludeIPRanges invalid"),
    ("traffic.sidecar.istio.io/includeInboundPorts", "80,http", "includeInboundPorts invalid"),
    ("traffic.sidecar.istio.io/excludeInboundPorts", "70000", "excludeInboundPorts invalid"),
    ("traffic.sidecar.istio.io/excludeOutboundPorts", "-1", "excludeOutboundPorts invalid"),
    ("sidecar.istio.io/interceptionMode", "IPVS", "use REDIRECT,TPROXY,NONE"),
    ("status.sidecar.istio.io/port", "x", "failed parsing port"),
    ("readiness.status.sidecar.istio.io/periodSeconds", "-2", "invalid syntax"),
    ("sidecar.istio.io/enableCoreDump", "yes", "ParseBool"),
])
def test_bad_annotation_values_fail_the_injection(name, value, words):
    with pytest.raises(InjectionError, match=re.escape(f"invalid value '{value}' for annotation '{name}'")) as err:
        inject(pod({name: value}))
    assert words in str(err.value)


def test_good_annotation_values_pass_and_every_bad_one_is_listed():
    validate_annotations({"traffic.sidecar.istio.io/includeOutboundIPRanges": "*",
                          "traffic.sidecar.istio.io/excludeOutboundIPRanges": "10.1.2.3/8,::1/128",
                          "traffic.sidecar.istio.io/includeInboundPorts": "*",
                          "traffic.sidecar.istio.io/excludeInboundPorts": " 80, 443 ",
                          "sidecar.istio.io/enableCoreDump": "True", "unrelated": "anything"})
    with pytest.raises(AnnotationError) as err:
        validate_annotations({"sidecar.istio.io/interceptionMode": "x", "prometheus.istio.io/merge-metrics": "y"})
    assert "interceptionMode" in str(err.value) and "merge-metrics" in str(err.value)


def test_multus_network_is_appended_once_in_either_spelling():
    assert append_multus_network("", "default/istio-cni") == "default/istio-cni"
    assert append_multus_network("alt", "default/istio-cni") == "alt, default/istio-cni"
    assert append_multus_network("alt, default/istio-cni", "default/istio-cni") == "alt, default/istio-cni"
    assert append_multus_network('[{"name": "alt"}]', "default/istio-cni") == \
        '[{"name": "alt"}, {"name": "default/istio-cni"}]'
    assert append_multus_network('[{"name": "default/istio-cni"}]', "default/istio-cni") == \
        '[{"name": "default/istio-cni"}]'
    assert append_multus_network("[broken]", "default/istio-cni") == "[broken]"  # not JSON: left alone
    assert append_multus_network("[alt", "default/istio-cni") == "[alt, default/istio-cni"  # no "]": a plain list


def test_cni_without_chaining_adds_the_multus_annotation():
    values = {**VALUES, "istio_cni": {"enabled": True, "chained": False}}
    p = pod({"k8s.v1.cni.cncf.io/networks": "alt"})
    out = inject_pod(InjectionParams(pod=p, config=CONFIG, values=values, mesh_config=default_mesh_config())).pod
    assert out["metadata"]["annotations"]["k8s.v1.cni.cncf.io/networks"] == "alt, default/istio-cni"
    assert names(out["spec"]["initContainers"]) == ["istio-validation"]


# -- workload kinds ---------------------------------------------------------------------------------
TEMPLATE = {"metadata": {"labels": {"app": "w"}}, "spec": {"containers": [{"name": "w", "image": "w:1"}]}}


@pytest.mark.parametrize(("api_version", "kind"), [
    ("v1", "ReplicationController"), ("apps.openshift.io/v1", "DeploymentConfig"),
    ("extensions/v1beta1", "Deployment"), ("apps/v1beta2", "DaemonSet"),
])
def test_kinds_with_a_pod_template_under_any_api_version(api_version, kind):
    obj = {"apiVersion": api_version, "kind": kind, "metadata": {"name": "w", "namespace": "ns"},
           "spec": {"template": TEMPLATE}}
    out = into_object(obj, CONFIG, VALUES, default_mesh_config())
    spec = out["spec"]["template"]["spec"]
    assert names(spec["containers"]) == ["w", "istio-proxy"]
    env = {e["name"]: e.get("value") for e in spec["containers"][1]["env"]}
    assert env["ISTIO_META_OWNER"] == f"kubernetes://apis/{api_version}/namespaces/ns/{kind.lower()}s/w"


def test_cronjob_pod_metadata_is_the_job_templates():
    obj = {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "c", "namespace": "ns"},
           "spec": {"schedule": "@daily", "jobTemplate": {
               "metadata": {"annotations": {"sidecar.istio.io/inject": "false"}}, "spec": {"template": TEMPLATE}}}}
    assert into_object(obj, CONFIG, VALUES, default_mesh_config()) == obj  # the jobTemplate's opt-out counts
    del obj["spec"]["jobTemplate"]["metadata"]
    out = into_object(obj, CONFIG, VALUES, default_mesh_config())
    job = out["spec"]["jobTemplate"]
    assert job["metadata"]["labels"]["security.istio.io/tlsMode"] == "istio"  # injected labels land here
    assert "sidecar.istio.io/status" in job["metadata"]["annotations"]
    assert job["spec"]["template"]["metadata"] == TEMPLATE["metadata"]
    assert names(job["spec"]["template"]["spec"]["containers"]) == ["w", "istio-proxy"]


def test_v1_list_without_a_name_through_the_cli(tmp_path):
    source = tmp_path / "list.yaml"
    source.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"ports": [{"port": 80}]}},
        {"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "rc"},
         "spec": {"template": TEMPLATE}}]}))
    out = tmp_path / "out.yaml"
    assert main(["inject", "-f", str(source), "-o", str(out)]) == 0
    (listed,) = yaml.safe_load_all(out.read_text())
    service, rc = listed["items"]
    assert "template" not in service["spec"]
    assert names(rc["spec"]["template"]["spec"]["containers"]) == ["w", "istio-proxy"]


def test_bad_annotation_through_the_cli_names_the_document_and_writes_nothing(tmp_path, capsys):
    source = tmp_path / "bad.yaml"
    bad = dict(TEMPLATE, metadata={"annotations": {"traffic.sidecar.istio.io/excludeInboundPorts": "*"}})
    source.write_text(yaml.safe_dump_all([
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "good"}, "spec": {"template": TEMPLATE}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "bad"}, "spec": {"template": bad}}]))
    out = tmp_path / "out.yaml"
    assert main(["inject", "-f", str(source), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "document 2" in err and "Deployment bad" in err and "excludeInboundPorts invalid" in err
    assert not out.exists()


# -- strategic merge directives in templates ----------------------------------------------------------
def test_patch_replace_in_a_template_replaces_the_pods_map():
    """Istio's TestStrategicMerge: ``$patch: replace`` on labels drops the pod's own labels."""
    config = parse_injector_config(yaml.safe_dump({"templates": {"sidecar": (
        "metadata:\n  labels:\n    $patch: replace\n    foo: bar\n"
        "spec:\n  containers:\n  - name: injected\n    image: injected:1.1\n")}}), "test")
    p = pod()
    p["metadata"]["labels"] = {"key": "value"}
    out = inject(p, config)
    assert out["metadata"]["labels"] == {"foo": "bar"}
    assert names(out["spec"]["containers"]) == ["injected", "app"]


def test_patch_delete_directives():
    original = {"spec": {"containers": [{"name": "a"}, {"name": "b"}], "dnsConfig": {"options": []},
                         "volumes": [{"name": "v"}]}}
    patch = {"spec": {"containers": [{"name": "a", "$patch": "delete"}, {"name": "c"}],
                      "dnsConfig": {"$patch": "delete"}, "volumes": [{"$patch": "replace"}, {"name": "w"}]}}
    merged = merge.strategic_merge(original, patch)
    assert names(merged["spec"]["containers"]) == ["c", "b"]
    assert "dnsConfig" not in merged["spec"]
    assert merged["spec"]["volumes"] == [{"name": "w"}]
    assert "$patch" not in json.dumps(merged)


def test_multiple_templates_and_an_alias_give_the_same_pod():
    """Istio's TestMultipleInjectionTemplates: ``sidecar,init`` and an alias ``both`` for them."""
    config = parse_injector_config(yaml.safe_dump({
        "templates": {"sidecar": "spec:\n  containers:\n  - name: istio-proxy\n    image: proxy\n",
                      "init": "spec:\n  initContainers:\n  - name: istio-init\n    image: proxy\n"},
        "aliases": {"both": ["sidecar", "init"]}}), "test")
    listed, aliased = (inject(pod({"inject.istio.io/templates": t}), config) for t in ("sidecar,init", "both"))
    for out in (listed, aliased):
        assert names(out["spec"]["initContainers"]) == ["istio-init"]
        assert names(out["spec"]["containers"]) == ["app", "istio-proxy"]
        assert status(out)["initContainers"] == ["istio-init"] and status(out)["containers"] == ["istio-proxy"]
    assert listed["spec"] == aliased["spec"]
