"""Golden outputs of ``python -m mesh inject`` (tests/golden/inject/X.yaml → X.golden.yaml).

After an intended change to the templates or the injector: ``MESH_UPDATE_GOLDEN=1 pytest
tests/test_inject_golden.py``, then review the diff of the golden files like code.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from mesh.cli import main

GOLDEN = Path(__file__).parent / "golden" / "inject"
CASES = ["deployment", "prometheus-pod", "inject-false", "reinject", "gateway"]


def run_inject(tmp_path: Path, name: str, *extra: str) -> str:
    out = tmp_path / f"{name}.out.yaml"
    assert main(["inject", "-f", str(GOLDEN / f"{name}.yaml"), "-o", str(out), *extra]) == 0
    return out.read_text(encoding="utf-8")


@pytest.mark.parametrize("name", CASES)
def test_golden(tmp_path, name):
    got = run_inject(tmp_path, name)
    golden = GOLDEN / f"{name}.golden.yaml"
    if os.environ.get("MESH_UPDATE_GOLDEN"):
        golden.write_text(got, encoding="utf-8")
    assert got == golden.read_text(encoding="utf-8"), f"{name}: output differs from {golden.name}"


def docs(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d]


def pod_of(doc: dict) -> dict:
    return doc["spec"]["template"] if doc["kind"] != "Pod" else doc


def test_deployment_gets_init_and_proxy_and_service_passes_through(tmp_path):
    service, deployment = docs(run_inject(tmp_path, "deployment"))
    source_service = docs((GOLDEN / "deployment.yaml").read_text())[0]
    assert service == source_service
    spec = pod_of(deployment)["spec"]
    assert [c["name"] for c in spec["containers"]] == ["reviews", "istio-proxy"]  # proxy last
    assert [c["name"] for c in spec["initContainers"]] == ["istio-init"]
    args = spec["initContainers"][0]["args"]
    assert args[:3] == ["istio-iptables", "-p", "15001"] and args[args.index("-d") + 1] == "15090,15021,15020"
    proxy = spec["containers"][1]
    env = {e["name"]: e.get("value") for e in proxy["env"]}
    assert env["ISTIO_META_WORKLOAD_NAME"] == "reviews-v1"
    assert env["ISTIO_META_OWNER"] == "kubernetes://apis/apps/v1/namespaces/default/deployments/reviews-v1"
    assert env["ISTIO_META_APP_CONTAINERS"] == "reviews"
    # the app's readiness probe now goes through pilot-agent, which knows the original
    assert spec["containers"][0]["readinessProbe"]["httpGet"] == {"path": "/app-health/reviews/readyz", "port": 15020}
    assert "/app-health/reviews/readyz" in env["ISTIO_KUBE_APP_PROBERS"]
    # injected volumes first, the app's own volume kept
    assert [v["name"] for v in spec["volumes"]][-1] == "tmp"
    labels = pod_of(deployment)["metadata"]["labels"]
    assert labels["service.istio.io/canonical-name"] == "reviews"
    assert labels["service.istio.io/canonical-revision"] == "v1"


def test_prometheus_annotations_are_merged_and_kept(tmp_path):
    (pod,) = docs(run_inject(tmp_path, "prometheus-pod"))
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == "15020"
    assert annotations["prometheus.io/path"] == "/stats/prometheus"
    proxy = next(c for c in pod["spec"]["containers"] if c["name"] == "istio-proxy")
    env = {e["name"]: e.get("value") for e in proxy["env"]}
    assert yaml.safe_load(env["ISTIO_PROMETHEUS_ANNOTATIONS"]) == {"scrape": "true", "path": "/metrics",
                                                                  "port": "9080"}
    assert proxy["resources"] == {"requests": {"cpu": "50m"}, "limits": {"memory": "256Mi"}}


def test_opted_out_pod_is_unchanged(tmp_path, capsys):
    (out,) = docs(run_inject(tmp_path, "inject-false"))
    source = docs((GOLDEN / "inject-false.yaml").read_text())[0]
    assert out == source
    assert "sidecar injection disabled" in capsys.readouterr().err


def test_reinjection_replaces_the_old_sidecar(tmp_path):
    (pod,) = docs(run_inject(tmp_path, "reinject"))
    (fresh,) = docs(run_inject(tmp_path, "prometheus-pod"))
    assert pod == fresh  # same as injecting the original pod once
    names = [c["name"] for c in pod["spec"]["containers"]]
    assert names.count("istio-proxy") == 1
    assert all("1.18.2" not in c["image"] for c in pod["spec"]["containers"] + pod["spec"]["initContainers"])


def test_gateway_template(tmp_path):
    (deployment,) = docs(run_inject(tmp_path, "gateway"))
    spec = pod_of(deployment)["spec"]
    assert "initContainers" not in spec  # gateways need no iptables redirection
    (proxy,) = spec["containers"]
    assert proxy["args"][:2] == ["proxy", "router"]
    assert proxy["image"] == "docker.io/istio/proxyv2:1.19.0"  # "auto" means: the injector's image
    status = yaml.safe_load(pod_of(deployment)["metadata"]["annotations"]["sidecar.istio.io/status"])
    assert status["containers"] == ["istio-proxy"] and status["initContainers"] is None


def test_bad_input_names_the_document(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec: {containers: []}\n---\n"
                   "apiVersion: v1\nkind: Pod\nmetadata: {name: b, annotations: {inject.istio.io/templates: nope}}\n"
                   "spec: {containers: []}\n")
    out = tmp_path / "out.yaml"
    assert main(["inject", "-f", str(bad), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "document 2" in err and "'nope' not found" in err
    assert not out.exists()  # nothing written


def test_custom_config_files(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("policy: enabled\ntemplates:\n  sidecar: |\n    metadata:\n      labels:\n"
                      "        injected-by: {{ values.who }}\n")
    values = tmp_path / "values.json"
    values.write_text('{"who": "test"}')
    out = run_inject(tmp_path, "prometheus-pod", "--inject-config", str(config), "--values", str(values))
    (pod,) = docs(out)
    assert pod["metadata"]["labels"]["injected-by"] == "test"


def test_every_workload_kind_and_lists(tmp_path):
    template = {"metadata": {"labels": {"app": "w"}}, "spec": {"containers": [{"name": "w", "image": "w:1"}]}}
    objects = [
        {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "nightly", "namespace": "jobs"},
         "spec": {"schedule": "@daily", "jobTemplate": {"spec": {"template": template}}}},
        {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "once", "namespace": "jobs"},
         "spec": {"template": template}},
        {"apiVersion": "v1", "kind": "List", "metadata": {"name": "list"}, "items": [
            {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": kind.lower(), "namespace": "apps"},
             "spec": {"template": template}} for kind in ("DaemonSet", "StatefulSet", "ReplicaSet")]},
    ]
    source = tmp_path / "workloads.yaml"
    source.write_text(yaml.safe_dump_all(objects))
    out = tmp_path / "out.yaml"
    assert main(["inject", "-f", str(source), "-o", str(out)]) == 0
    cron, job, listed = docs(out.read_text())
    pods = [cron["spec"]["jobTemplate"]["spec"]["template"], job["spec"]["template"]]
    pods += [item["spec"]["template"] for item in listed["items"]]
    owners = []
    for pod in pods:
        assert [c["name"] for c in pod["spec"]["containers"]] == ["w", "istio-proxy"]
        env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][1]["env"]}
        owners.append(env["ISTIO_META_OWNER"])
    assert owners == ["kubernetes://apis/batch/v1/namespaces/jobs/cronjobs/nightly",
                      "kubernetes://apis/batch/v1/namespaces/jobs/jobs/once",
                      "kubernetes://apis/apps/v1/namespaces/apps/daemonsets/daemonset",
                      "kubernetes://apis/apps/v1/namespaces/apps/statefulsets/statefulset",
                      "kubernetes://apis/apps/v1/namespaces/apps/replicasets/replicaset"]
