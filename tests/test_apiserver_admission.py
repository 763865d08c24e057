"""Admission webhooks called by the replay API server over HTTPS, as kube-apiserver calls them."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from pathlib import Path

import pytest
from aiohttp import web
from kubeobjects import ns, pod
from test_apiserver import http
from tracehelpers import write_trace

from mesh.kube.apiserver import ApiServer
from mesh.kube.apiserver.certs import make_serving_cert
from mesh.util.web import serve_app


class WebhookServer:
    """An HTTPS AdmissionReview server: /mutate adds a label, /validate denies label deny=yes,
    /slow answers after 3 s. Every review it gets is kept in ``reviews``. With ``app``, that
    aiohttp app is served instead (e.g. mesh's own validation webhook)."""

    def __init__(self, hosts=("127.0.0.1", "istiod.istio-system.svc"), app: web.Application | None = None):
        self.app = app
        self.cert = make_serving_cert(hosts)
        self.reviews: list[tuple[str, dict]] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @property
    def ca_bundle(self) -> str:
        return base64.b64encode(self.cert.ca_pem).decode()

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.port}{path}"

    async def _answer(self, request: web.Request) -> web.Response:
        review = await request.json()
        self.reviews.append((request.path, review["request"]))
        req = review["request"]
        response = {"uid": req["uid"], "allowed": True}
        if request.path == "/mutate":
            patch = [{"op": "add", "path": "/metadata/labels/injected", "value": "yes"}]
            response |= {"patchType": "JSONPatch", "patch": base64.b64encode(json.dumps(patch).encode()).decode()}
        elif request.path == "/validate":
            if (req["object"]["metadata"].get("labels") or {}).get("deny") == "yes":
                response = {"uid": req["uid"], "allowed": False,
                            "status": {"code": 403, "reason": "Forbidden", "message": "pods labelled deny=yes"}}
        elif request.path == "/slow":
            await asyncio.sleep(3)
        return web.json_response({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                                  "response": response})

    async def _start(self):
        import ssl
        import tempfile

        app = self.app
        if app is None:
            app = web.Application()
            app.router.add_post("/{name}", self._answer)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        with tempfile.TemporaryDirectory() as folder:
            Path(folder, "c").write_bytes(self.cert.cert_pem)
            Path(folder, "k").write_bytes(self.cert.key_pem)
            context.load_cert_chain(Path(folder, "c"), Path(folder, "k"))
        self._runner, self.port = await serve_app(app, "127.0.0.1", 0, context, shutdown_timeout=0.1)

    def __enter__(self):
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc):
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


def webhook(name: str, client_config: dict, policy: str = "Fail", timeout: int = 5, operations=("CREATE",),
            namespace_selector: dict | None = None, object_selector: dict | None = None) -> dict:
    return {"name": name, "clientConfig": client_config, "failurePolicy": policy, "timeoutSeconds": timeout,
            "admissionReviewVersions": ["v1"], "sideEffects": "None",
            "rules": [{"operations": list(operations), "apiGroups": [""], "apiVersions": ["v1"],
                       "resources": ["pods"]}],
            "namespaceSelector": namespace_selector or {}, "objectSelector": object_selector or {}}


def configuration(kind: str, name: str, *webhooks: dict) -> dict:
    return {"apiVersion": "admissionregistration.k8s.io/v1", "kind": kind, "metadata": {"name": name},
            "webhooks": list(webhooks)}


def injector(hook: WebhookServer, **kwargs) -> dict:
    return configuration("MutatingWebhookConfiguration", "istio-sidecar-injector", webhook(
        "sidecar-injector.istio.io", {"url": hook.url("/mutate"), "caBundle": hook.ca_bundle},
        namespace_selector={"matchLabels": {"istio-injection": "enabled"}},
        object_selector={"matchExpressions": [{"key": "sidecar.istio.io/inject", "operator": "NotIn",
                                               "values": ["false"]}]}, **kwargs))


def plain_pod(name: str, namespace: str = "bookinfo", labels: dict | None = None) -> dict:
    body = pod(name, name, namespace=namespace)
    body["metadata"]["labels"] = labels or {"app": name}
    del body["status"]
    return body


@pytest.fixture
def hook():
    with WebhookServer() as server:
        yield server


@pytest.fixture
def cluster(tmp_path: Path, hook: WebhookServer):
    trace = write_trace(tmp_path / "t.jsonl", [(0, "ADDED", ns("bookinfo", {"istio-injection": "enabled"})),
                                               (0, "ADDED", ns("plain")), (0, "ADDED", injector(hook))])
    with ApiServer(trace, speed=0) as server:
        yield server


def create(server: ApiServer, body: dict, query: str = "") -> tuple[int, dict]:
    status, _, answer = http(server, "POST", f"/api/v1/namespaces/{body['metadata']['namespace']}/pods{query}",
                             body)
    return status, answer


def test_mutating_webhook_patches_matching_pods_only(cluster, hook):
    status, created = create(cluster, plain_pod("reviews"))
    assert status == 201 and created["metadata"]["labels"] == {"app": "reviews", "injected": "yes"}
    path, request = hook.reviews[-1]
    assert (path, request["operation"], request["namespace"], request["kind"]["kind"]) == (
        "/mutate", "CREATE", "bookinfo", "Pod")
    calls = len(hook.reviews)
    assert create(cluster, plain_pod("other", namespace="plain"))[1]["metadata"]["labels"] == {"app": "other"}
    opted_out = plain_pod("opted-out", labels={"sidecar.istio.io/inject": "false"})
    assert "injected" not in create(cluster, opted_out)[1]["metadata"]["labels"]
    assert len(hook.reviews) == calls  # namespaceSelector and objectSelector kept both away


def test_rules_limit_operations_and_dry_run_is_passed_on(cluster, hook):
    status, created = create(cluster, plain_pod("reviews"), "?dryRun=All")
    assert status == 201 and created["metadata"]["labels"]["injected"] == "yes"
    assert hook.reviews[-1][1]["dryRun"] is True
    assert http(cluster, "GET", "/api/v1/namespaces/bookinfo/pods/reviews")[0] == 404
    create(cluster, plain_pod("reviews"))
    calls = len(hook.reviews)
    status, _, patched = http(cluster, "PATCH", "/api/v1/namespaces/bookinfo/pods/reviews",
                              b'{"metadata": {"labels": {"injected": "no"}}}', "application/merge-patch+json")
    assert status == 200 and patched["metadata"]["labels"]["injected"] == "no"  # UPDATE is not in the rules
    assert len(hook.reviews) == calls


def test_validating_webhook_denies(cluster, hook):
    config = configuration("ValidatingWebhookConfiguration", "deny", webhook(
        "deny.example.com", {"url": hook.url("/validate"), "caBundle": hook.ca_bundle}))
    assert http(cluster, "POST", "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations",
                config)[0] == 201
    status, answer = create(cluster, plain_pod("bad", labels={"deny": "yes"}))
    assert (status, answer["reason"]) == (403, "Forbidden")
    assert answer["message"] == 'admission webhook "deny.example.com" denied the request: pods labelled deny=yes'
    # the validating webhook saw the object after the mutating one changed it
    assert hook.reviews[-1][1]["object"]["metadata"]["labels"]["injected"] == "yes"
    assert create(cluster, plain_pod("good"))[0] == 201


@pytest.mark.parametrize("policy, expected", [("Fail", 500), ("Ignore", 201)])
def test_failure_policy_when_the_webhook_is_unreachable(tmp_path, hook, policy, expected):
    broken = [
        webhook("closed-port.example.com", {"url": "https://127.0.0.1:9/mutate", "caBundle": hook.ca_bundle},
                policy),
        webhook("wrong-ca.example.com", {"url": hook.url("/mutate"),
                                         "caBundle": base64.b64encode(make_serving_cert().ca_pem).decode()},
                policy),
        webhook("not-loopback.example.com", {"url": "https://192.0.2.1/mutate"}, policy),
    ]
    for index, hook_config in enumerate(broken):
        trace = write_trace(tmp_path / f"t{index}.jsonl", [
            (0, "ADDED", ns("bookinfo")),
            (0, "ADDED", configuration("MutatingWebhookConfiguration", "broken", hook_config))])
        with ApiServer(trace, speed=0) as server:
            status, answer = create(server, plain_pod("reviews"))
            assert status == expected, hook_config["name"]
            if expected == 500:
                assert f'failed calling webhook "{hook_config["name"]}"' in answer["message"]
            else:
                assert "injected" not in answer["metadata"]["labels"]
    assert hook.reviews == []  # the wrong-CA call never got past TLS


def test_timeout_seconds(tmp_path, hook):
    trace = write_trace(tmp_path / "t.jsonl", [(0, "ADDED", ns("bookinfo")), (0, "ADDED", configuration(
        "MutatingWebhookConfiguration", "slow",
        webhook("slow.example.com", {"url": hook.url("/slow"), "caBundle": hook.ca_bundle}, "Ignore", timeout=1)))])
    with ApiServer(trace, speed=0) as server:
        started = time.monotonic()
        assert create(server, plain_pod("reviews"))[0] == 201
        assert 0.9 < time.monotonic() - started < 2.5


def test_service_reference_on_a_loopback_cluster_ip(tmp_path, hook):
    istiod = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "istiod", "namespace": "istio-system"},
              "spec": {"clusterIP": "127.0.0.1", "ports": [{"port": hook.port}]}}
    config = configuration("MutatingWebhookConfiguration", "svc", webhook(
        "svc.example.com", {"service": {"name": "istiod", "namespace": "istio-system", "port": hook.port,
                                        "path": "/mutate"}, "caBundle": hook.ca_bundle}))
    trace = write_trace(tmp_path / "t.jsonl", [(0, "ADDED", ns("bookinfo")), (0, "ADDED", ns("istio-system")),
                                               (0, "ADDED", istiod), (0, "ADDED", config)])
    with ApiServer(trace, speed=0) as server:
        status, created = create(server, plain_pod("reviews"))
        assert status == 201 and created["metadata"]["labels"]["injected"] == "yes"


def test_trace_pods_go_through_the_webhooks_the_trace_installed(tmp_path, hook):
    trace = write_trace(tmp_path / "t.jsonl", [
        (0, "ADDED", ns("bookinfo", {"istio-injection": "enabled"})), (0, "ADDED", injector(hook)),
        (1, "ADDED", plain_pod("reviews")),
        (2, "ADDED", plain_pod("details", labels={"deny": "yes"})),
    ])
    with ApiServer(trace, speed=0) as server:
        stored = {o["metadata"]["name"]: o for o in server.objects() if o["kind"] == "Pod"}
    assert stored["reviews"]["metadata"]["labels"]["injected"] == "yes"
    assert stored["details"]["metadata"]["labels"]["injected"] == "yes"
    assert [p for p, _ in hook.reviews] == ["/mutate", "/mutate"]
