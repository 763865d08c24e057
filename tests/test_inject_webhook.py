"""The /inject webhook over real HTTP on 127.0.0.1: good, non-injected and malformed reviews."""

from __future__ import annotations

import asyncio
import base64
import json

import aiohttp
import jsonpatch
import pytest
from aiohttp import web

from mesh.config.mesh import default_mesh_config
from mesh.inject.config import InjectorConfigWatcher, load_builtin
from mesh.inject.webhook import Webhook, add_routes, describe_decisions, parse_inject_envs
from mesh.util.web import serve_app


def make_webhook() -> Webhook:
    config, values = load_builtin()
    return Webhook(InjectorConfigWatcher(config, values), default_mesh_config)


def pod(name="details-v1-abc", labels=None, annotations=None, host_network=False) -> dict:
    spec = {"containers": [{"name": "details", "image": "docker.io/istio/examples-bookinfo-details-v1:1.17.0",
                            "ports": [{"containerPort": 9080}]}]}
    if host_network:
        spec["hostNetwork"] = True
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": labels or {"app": "details"}, "annotations": annotations or {}},
            "spec": spec}


def review(obj: dict, uid="1234-abcd", version="admission.k8s.io/v1") -> dict:
    return {"apiVersion": version, "kind": "AdmissionReview",
            "request": {"uid": uid, "kind": {"group": "", "version": "v1", "kind": "Pod"},
                        "namespace": "default", "operation": "CREATE", "object": obj}}


async def with_server(webhook: Webhook, body):
    app = web.Application()
    add_routes(app, webhook)
    runner, port = await serve_app(app, "127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{port}") as session:
            return await body(session)
    finally:
        await runner.cleanup()


async def post(session, path, payload, content_type="application/json"):
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    async with session.post(path, data=data, headers={"Content-Type": content_type}) as resp:
        text = await resp.text()
        return resp.status, (json.loads(text) if resp.content_type == "application/json" else text)


@pytest.mark.parametrize("version", ["admission.k8s.io/v1", "admission.k8s.io/v1beta1"])
def test_good_review_is_patched(version):
    webhook = make_webhook()
    original = pod()

    async def body(session):
        return await post(session, "/inject", review(original, version=version))

    status, answer = asyncio.run(with_server(webhook, body))
    assert status == 200
    assert answer["apiVersion"] == version and answer["kind"] == "AdmissionReview"
    response = answer["response"]
    assert response["uid"] == "1234-abcd" and response["allowed"] is True
    assert response["patchType"] == "JSONPatch"
    patched = jsonpatch.apply_patch(original, json.loads(base64.b64decode(response["patch"])))
    assert [c["name"] for c in patched["spec"]["containers"]] == ["details", "istio-proxy"]
    assert [c["name"] for c in patched["spec"]["initContainers"]] == ["istio-init"]
    assert "sidecar.istio.io/status" in patched["metadata"]["annotations"]
    assert patched["metadata"]["labels"]["security.istio.io/tlsMode"] == "istio"
    (decision,) = webhook.decisions
    assert decision.injected and decision.namespace == "default" and decision.after["spec"] == patched["spec"]


@pytest.mark.parametrize("obj, reason", [
    (pod(labels={"app": "x", "sidecar.istio.io/inject": "false"}), "label sidecar.istio.io/inject=false"),
    (pod(annotations={"sidecar.istio.io/inject": "no"}), "annotation sidecar.istio.io/inject=no"),
    (pod(host_network=True), "hostNetwork pod"),
])
def test_not_injected_is_allowed_without_patch(obj, reason):
    webhook = make_webhook()

    async def body(session):
        return await post(session, "/inject", review(obj, uid="u-2"))

    status, answer = asyncio.run(with_server(webhook, body))
    assert status == 200
    assert answer["response"] == {"uid": "u-2", "allowed": True}
    assert describe_decisions(webhook.decisions)[0]["reason"] == reason
    assert describe_decisions(webhook.decisions)[0]["injected"] == "no"


def test_malformed_reviews_get_a_status_and_the_server_stays_up():
    webhook = make_webhook()

    async def body(session):
        results = [
            await post(session, "/inject", b"{not json"),
            await post(session, "/inject", {"apiVersion": "v1", "kind": "Pod"}),
            await post(session, "/inject", ["a", "list"]),
            await post(session, "/inject", review("not a pod")),
            await post(session, "/inject", b"", "application/json"),
            await post(session, "/inject", b"<xml/>", "application/xml"),
            await post(session, "/inject", review(pod(), uid="after")),  # still serving
        ]
        return results

    results = asyncio.run(with_server(webhook, body))
    for status, answer in results[:3]:
        assert status == 200
        assert answer["response"]["allowed"] is False and answer["response"]["status"]["message"]
    assert results[3][0] == 200
    assert results[3][1]["response"]["status"]["message"] == ("could not unmarshal raw object: request.object: "
                                                               "must be a mapping, got 'not a pod'")
    assert results[3][1]["response"]["uid"] == "1234-abcd"
    assert results[4][0] == 400 and "no body" in results[4][1]
    assert results[5][0] == 415
    status, answer = results[6]
    assert status == 200 and answer["response"]["uid"] == "after" and answer["response"]["patch"]


def test_path_parameters_set_cluster_and_network():
    webhook = make_webhook()
    original = pod()

    async def body(session):
        return await post(session, "/inject/cluster/east/net/network1", review(original))

    _, answer = asyncio.run(with_server(webhook, body))
    patched = jsonpatch.apply_patch(original, json.loads(base64.b64decode(answer["response"]["patch"])))
    proxy = patched["spec"]["containers"][-1]
    env = {e["name"]: e.get("value") for e in proxy["env"]}
    assert env["ISTIO_META_CLUSTER_ID"] == "east" and env["ISTIO_META_NETWORK"] == "network1"
    assert [e["name"] for e in proxy["env"]][-2:] == ["ISTIO_META_CLUSTER_ID", "ISTIO_META_NETWORK"]
    assert patched["metadata"]["labels"]["topology.istio.io/network"] == "network1"


def test_parse_inject_envs():
    assert parse_inject_envs("/inject") == {}
    assert parse_inject_envs("/inject/") == {}
    assert parse_inject_envs("/inject/cluster/c1/net/n1") == {"ISTIO_META_CLUSTER_ID": "c1", "ISTIO_META_NETWORK": "n1"}
    assert parse_inject_envs("/inject/my_var/a--slash--b/odd") == {"MY_VAR": "a/b"}
    assert parse_inject_envs("/inject/:ENV:cluster=c2:ENV:net=:ENV:=bad") == {"ISTIO_META_CLUSTER_ID": "c2",
                                                                             "ISTIO_META_NETWORK": ""}


def test_template_error_is_a_failed_admission():
    webhook = make_webhook()
    answer = webhook.review(review(pod(annotations={"inject.istio.io/templates": "missing"})))
    assert answer["response"]["allowed"] is False
    assert "'missing' not found" in answer["response"]["status"]["message"]
    assert webhook.decisions[-1].error and webhook.counts["failed"] == 1
