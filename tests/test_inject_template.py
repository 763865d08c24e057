"""The sidecar template's knobs, the merge rules and the helpers, one behaviour at a time."""

from __future__ import annotations

import dataclasses
import json

import pytest

from mesh.config.mesh import apply_mesh_config, default_mesh_config
from mesh.inject import merge
from mesh.inject.config import load_builtin
from mesh.inject.inject import InjectionError, InjectionParams, deploy_meta_from_pod, inject_pod
from mesh.inject.template import clean_proxy_config, exclude_inbound_port, proxy_image

CONFIG, VALUES = load_builtin()


def inject(annotations=None, labels=None, values=None, mesh=None, containers=None, **spec) -> dict:
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "app-1", "namespace": "apps", "labels": labels or {"app": "app"},
                        "annotations": annotations or {}},
           "spec": {"containers": containers or [{"name": "app", "image": "app:1", "ports": [{"containerPort": 8080}]}],
                    **spec}}
    return inject_pod(InjectionParams(pod=pod, config=CONFIG, values=values or VALUES,
                                      mesh_config=mesh or default_mesh_config())).pod


def proxy(pod: dict) -> dict:
    return merge.find_container("istio-proxy", pod["spec"]["containers"])


def env(pod: dict) -> dict:
    return {e["name"]: e.get("value") for e in proxy(pod)["env"]}


def init_args(pod: dict) -> list[str]:
    return pod["spec"]["initContainers"][0]["args"]


def test_hold_application_until_proxy_starts_puts_the_proxy_first():
    pod = inject(annotations={"proxy.istio.io/config": "holdApplicationUntilProxyStarts: true"})
    assert [c["name"] for c in pod["spec"]["containers"]] == ["istio-proxy", "app"]
    assert proxy(pod)["lifecycle"] == {"postStart": {"exec": {"command": ["pilot-agent", "wait"]}}}
    assert json.loads(env(pod)["PROXY_CONFIG"]) == {"holdApplicationUntilProxyStarts": True}


def test_mesh_wide_proxy_config_reaches_proxy_config_and_env():
    mesh = apply_mesh_config("defaultConfig:\n  proxyMetadata: {ISTIO_META_DNS_CAPTURE: 'true'}\n"
                             "  concurrency: 2\n")
    pod = inject(mesh=mesh)
    assert env(pod)["ISTIO_META_DNS_CAPTURE"] == "true"
    assert json.loads(env(pod)["PROXY_CONFIG"]) == {"proxyMetadata": {"ISTIO_META_DNS_CAPTURE": "true"},
                                                     "concurrency": 2}
    assert pod["spec"]["initContainers"][0]["env"] == [{"name": "ISTIO_META_DNS_CAPTURE", "value": "true"}]


def test_cni_uses_the_validation_container_and_annotations():
    values = json.loads(json.dumps(VALUES))
    values["istio_cni"]["enabled"] = True
    pod = inject(values=values)
    (init,) = pod["spec"]["initContainers"]
    assert init["name"] == "istio-validation" and "--run-validation" in init["args"]
    assert "add" not in init["securityContext"]["capabilities"] and init["securityContext"]["runAsUser"] == 1337
    assert pod["metadata"]["annotations"]["traffic.sidecar.istio.io/excludeInboundPorts"] == "15020"
    assert pod["metadata"]["annotations"]["sidecar.istio.io/interceptionMode"] == "REDIRECT"


def test_traffic_annotations_become_iptables_arguments():
    pod = inject(annotations={"traffic.sidecar.istio.io/excludeInboundPorts": "9000",
                              "traffic.sidecar.istio.io/excludeOutboundPorts": "5432,6379",
                              "traffic.sidecar.istio.io/includeOutboundIPRanges": "10.0.0.0/8"})
    args = init_args(pod)
    assert args[args.index("-d") + 1] == "15090,15021,9000,15020"
    assert args[args.index("-o") + 1] == "5432,6379"
    assert args[args.index("-i") + 1] == "10.0.0.0/8"
    assert "-q" not in args


def test_interception_none_means_no_init_container_and_tproxy_needs_net_admin():
    assert "initContainers" not in inject(annotations={"sidecar.istio.io/interceptionMode": "NONE"})["spec"]
    pod = inject(annotations={"sidecar.istio.io/interceptionMode": "TPROXY"})
    assert proxy(pod)["securityContext"]["capabilities"]["add"] == ["NET_ADMIN"]
    assert proxy(pod)["securityContext"]["runAsUser"] == 0
    assert init_args(pod)[init_args(pod).index("-m") + 1] == "TPROXY"


def test_status_port_zero_drops_the_readiness_probe_and_images_can_be_overridden():
    pod = inject(annotations={"status.sidecar.istio.io/port": "0", "sidecar.istio.io/proxyImage": "my.registry/proxy:x",
                              "sidecar.istio.io/logLevel": "debug"})
    assert "readinessProbe" not in proxy(pod)
    assert proxy(pod)["image"] == "my.registry/proxy:x" and pod["spec"]["initContainers"][0]["image"] == "my.registry/proxy:x"
    assert "--proxyLogLevel=debug" in proxy(pod)["args"]


def test_user_volumes_from_annotations():
    pod = inject(annotations={
        "sidecar.istio.io/userVolume": '{"certs": {"secret": {"secretName": "my-certs"}}}',
        "sidecar.istio.io/userVolumeMount": '{"certs": {"mountPath": "/etc/my-certs", "readOnly": true}}'})
    assert {"name": "certs", "secret": {"secretName": "my-certs"}} in pod["spec"]["volumes"]
    assert {"name": "certs", "mountPath": "/etc/my-certs", "readOnly": True} in proxy(pod)["volumeMounts"]


def test_a_users_istio_proxy_fields_win_and_are_remembered():
    pod = inject(containers=[{"name": "app", "image": "app:1"},
                             {"name": "istio-proxy", "image": "auto", "resources": {"limits": {"memory": "2Gi"}}}])
    assert proxy(pod)["resources"]["limits"]["memory"] == "2Gi"
    assert proxy(pod)["image"] == "docker.io/istio/proxyv2:1.19.0"
    overrides = json.loads(pod["metadata"]["annotations"]["proxy.istio.io/overrides"])
    assert overrides == {"containers": [{"name": "istio-proxy", "resources": {"limits": {"memory": "2Gi"}}}]}
    # Re-injecting the injected pod: istiod 1.19 renders a container listed in sidecar.istio.io/status
    # from the template again (reapplyOverwrittenContainers skips it), keeping the annotation.
    again = inject_pod(InjectionParams(pod=pod, config=CONFIG, values=VALUES, mesh_config=default_mesh_config()))
    assert proxy(again.pod)["resources"]["limits"]["memory"] == "1024Mi"
    assert again.pod["metadata"]["annotations"]["proxy.istio.io/overrides"] == \
        pod["metadata"]["annotations"]["proxy.istio.io/overrides"]


def test_aliases_and_unknown_templates():
    config = dataclasses.replace(CONFIG, aliases={"both": ["sidecar", "extra"]},
                                 templates={**CONFIG.templates})
    pod = {"metadata": {"name": "p", "namespace": "a", "annotations": {"inject.istio.io/templates": "both"}},
           "spec": {"containers": [{"name": "app", "image": "a"}]}}
    with pytest.raises(InjectionError, match="'extra' not found; have gateway, grpc-agent, grpc-simple, sidecar"):
        inject_pod(InjectionParams(pod=pod, config=config, values=VALUES, mesh_config=default_mesh_config()))


def test_strategic_merge():
    original = {"spec": {"containers": [{"name": "a", "env": [{"name": "X", "value": "1"}], "args": ["old"]}],
                         "volumes": [{"name": "app-vol", "emptyDir": {}}], "dnsPolicy": "ClusterFirst"}}
    patch = {"spec": {"containers": [{"name": "a", "env": [{"name": "Y", "value": "2"}, {"name": "X", "value": "3"}],
                                      "args": ["new"]}, {"name": "b"}],
                      "volumes": [{"name": "istio", "emptyDir": {}}], "dnsPolicy": None}}
    merged = merge.strategic_merge(original, patch)
    a, b = merged["spec"]["containers"]
    assert a["env"] == [{"name": "Y", "value": "2"}, {"name": "X", "value": "3"}]  # merged by name
    assert a["args"] == ["new"] and b == {"name": "b"}  # plain lists are replaced
    assert [v["name"] for v in merged["spec"]["volumes"]] == ["istio", "app-vol"]
    assert "dnsPolicy" not in merged["spec"]  # null deletes
    assert original["spec"]["containers"][0]["args"] == ["old"]  # inputs untouched


def test_helpers():
    assert exclude_inbound_port(15020, "") == "15020"
    assert exclude_inbound_port("15020", "80,15020") == "80,15020"
    assert exclude_inbound_port(0, "80") == "80"
    assert proxy_image({"global": {"hub": "h", "tag": "1.19.0-distroless"}}, {}, {}) == "h/proxyv2:1.19.0-distroless"
    assert proxy_image({"global": {"hub": "h", "tag": "1.19.0-distroless"}}, {},
                       {"sidecar.istio.io/proxyImageType": "debug"}) == "h/proxyv2:1.19.0-debug"
    assert proxy_image({"global": {"hub": "h", "tag": "1.19.0"}}, {"image": {"imageType": "default"}}, {}) == "h/proxyv2:1.19.0"
    assert clean_proxy_config(default_mesh_config()["defaultConfig"]) == {}


def test_deploy_meta_from_owner_references():
    def pod(owner_kind, owner_name, labels):
        return {"metadata": {"name": "", "generateName": owner_name + "-", "labels": labels,
                             "ownerReferences": [{"apiVersion": "apps/v1" if owner_kind != "Job" else "batch/v1",
                                                  "kind": owner_kind, "name": owner_name, "controller": True}]}}

    meta, kind = deploy_meta_from_pod(pod("ReplicaSet", "reviews-v1-55fb866f99", {"pod-template-hash": "55fb866f99"}))
    assert meta["name"] == "reviews-v1" and kind == {"apiVersion": "apps/v1", "kind": "Deployment"}
    meta, kind = deploy_meta_from_pod(pod("Job", "backup-28237480", {}))
    assert meta["name"] == "backup" and kind["kind"] == "CronJob"
    meta, kind = deploy_meta_from_pod(pod("StatefulSet", "db", {}))
    assert meta["name"] == "db" and kind == {"apiVersion": "apps/v1", "kind": "StatefulSet"}
    meta, kind = deploy_meta_from_pod({"metadata": {"name": "bare"}})
    assert meta["name"] == "bare" and kind == {"apiVersion": "v1", "kind": "Pod"}
