"""The replay API server, driven by the official ``kubernetes`` client and by plain HTTP."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from kubeobjects import bookinfo_events, ns, pod, service, virtual_service  # noqa: F401 (re-exported)
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from mesh.kube.apiserver import ApiServer
from mesh.kube.apiserver.patch import strategic_merge_patch


@pytest.fixture
def api(server: ApiServer, tmp_path: Path):
    kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig")
    api_client = config.new_client_from_config(config_file=str(kubeconfig))
    yield api_client
    api_client.close()


def http(server: ApiServer, method: str, path: str, body: bytes | dict | None = None,
         content_type: str = "application/json", accept: str = "application/json") -> tuple[int, dict, dict]:
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    request = urllib.request.Request(server.url + path, data=data, method=method,
                                     headers={"Content-Type": content_type, "Accept": accept})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), json.loads(err.read())


# -- the kubernetes client ---------------------------------------------------------------

def test_typed_list_of_pods_and_services(server, api):
    v1 = client.CoreV1Api(api)
    pods = v1.list_pod_for_all_namespaces()
    assert [p.metadata.name for p in pods.items] == ["productpage-v1", "reviews-v1"]
    assert pods.items[1].status.container_statuses[0].restart_count == 1
    assert int(pods.metadata.resource_version) >= 6
    services = v1.list_namespaced_service("bookinfo")
    assert [(s.metadata.name, s.spec.ports[0].port) for s in services.items] == [("reviews", 9080)]
    assert v1.read_namespaced_pod("productpage-v1", "bookinfo").spec.node_name == "node-2"


def test_typed_watch_sees_the_replay_advance(server, api):
    v1 = client.CoreV1Api(api)
    rv = v1.list_namespaced_pod("bookinfo").metadata.resource_version
    server.run_until(3)
    stream = watch.Watch()
    seen = []
    for event in stream.stream(v1.list_namespaced_pod, "bookinfo", resource_version=rv, timeout_seconds=5):
        seen.append((event["type"], event["object"].metadata.name, event["object"].status.phase))
        if len(seen) == 3:
            stream.stop()
    assert seen == [("ADDED", "ratings-v1", "Pending"), ("MODIFIED", "ratings-v1", "Running"),
                    ("DELETED", "reviews-v1", "Running")]


def test_typed_watch_of_services_with_label_selector(server, api):
    v1 = client.CoreV1Api(api)
    rv = v1.list_service_for_all_namespaces().metadata.resource_version
    v1.create_namespaced_service("bookinfo", {**service("details"), "metadata": {
        "name": "details", "namespace": "bookinfo", "labels": {"tier": "back"}}})
    v1.create_namespaced_service("bookinfo", service("ratings"))
    stream = watch.Watch()
    events = [(e["type"], e["object"].metadata.name) for e in stream.stream(
        v1.list_service_for_all_namespaces, resource_version=rv, label_selector="tier=back", timeout_seconds=1)]
    assert events == [("ADDED", "details")]


def test_custom_objects_list_and_watch(server, api):
    custom = client.CustomObjectsApi(api)
    listed = custom.list_namespaced_custom_object("networking.istio.io", "v1alpha3", "bookinfo", "virtualservices")
    assert [o["metadata"]["name"] for o in listed["items"]] == ["reviews"]
    assert listed["items"][0]["apiVersion"] == "networking.istio.io/v1alpha3"  # served in the asked version
    rv = listed["metadata"]["resourceVersion"]
    server.run_until(2)
    stream = watch.Watch()
    for event in stream.stream(custom.list_cluster_custom_object, "networking.istio.io", "v1beta1",
                               "virtualservices", resource_version=rv, timeout_seconds=5):
        assert (event["type"], event["object"]["metadata"]["name"]) == ("ADDED", "ratings")
        assert event["object"]["spec"]["hosts"] == ["ratings"]
        stream.stop()


def test_watch_resumes_from_a_resource_version(server, api):
    v1 = client.CoreV1Api(api)
    server.run_until(1)
    after_add = v1.read_namespaced_pod("ratings-v1", "bookinfo").metadata.resource_version
    server.run_until(3)
    stream = watch.Watch()
    seen = []
    for event in stream.stream(v1.list_namespaced_pod, "bookinfo", resource_version=after_add, timeout_seconds=5):
        seen.append((event["type"], event["object"].metadata.name))
        if len(seen) == 2:
            stream.stop()
    assert seen == [("MODIFIED", "ratings-v1"), ("DELETED", "reviews-v1")]


def test_watch_from_an_expired_version_is_410(server, api):
    v1 = client.CoreV1Api(api)
    old = v1.list_namespaced_pod("bookinfo").metadata.resource_version
    server.run_until(3)
    server.call(_compact(server))
    with pytest.raises(ApiException) as caught:
        for _ in watch.Watch().stream(v1.list_namespaced_pod, "bookinfo", resource_version=old):
            pass
    assert caught.value.status == 410
    # a fresh list gives a version to watch from again
    fresh = v1.list_namespaced_pod("bookinfo").metadata.resource_version
    assert [e["type"] for e in watch.Watch().stream(v1.list_namespaced_pod, "bookinfo", resource_version=fresh,
                                                    timeout_seconds=1)] == []


async def _compact(server: ApiServer):
    server.store.compact()


def test_create_update_patch_delete_and_dry_run(server, api):
    v1 = client.CoreV1Api(api)
    created = v1.create_namespaced_pod("bookinfo", pod("details-v1", "details"))
    assert created.metadata.uid and created.metadata.creation_timestamp
    dry = v1.create_namespaced_pod("bookinfo", pod("dry-v1", "dry"), dry_run="All")
    assert dry.metadata.name == "dry-v1"
    assert [p.metadata.name for p in v1.list_namespaced_pod("bookinfo").items] == [
        "details-v1", "productpage-v1", "reviews-v1"]
    created.metadata.labels["version"] = "v1"
    updated = v1.replace_namespaced_pod("details-v1", "bookinfo", created)
    assert int(updated.metadata.resource_version) > int(created.metadata.resource_version)
    patched = v1.patch_namespaced_pod("details-v1", "bookinfo", {"metadata": {"labels": {"track": "stable"}}})
    assert patched.metadata.labels == {"app": "details", "version": "v1", "track": "stable"}
    with pytest.raises(ApiException) as stale:
        v1.replace_namespaced_pod("details-v1", "bookinfo", created)  # created's resourceVersion is old now
    assert stale.value.status == 409
    v1.delete_namespaced_pod("details-v1", "bookinfo")
    with pytest.raises(ApiException) as gone:
        v1.read_namespaced_pod("details-v1", "bookinfo")
    assert gone.value.status == 404


def test_json_patch_and_strategic_merge_of_containers(server):
    status, _, body = http(server, "PATCH", "/api/v1/namespaces/bookinfo/pods/reviews-v1",
                           b'[{"op": "add", "path": "/metadata/labels/version", "value": "v1"}]',
                           "application/json-patch+json")
    assert status == 200 and body["metadata"]["labels"] == {"app": "reviews", "version": "v1"}
    sidecar = {"spec": {"containers": [{"name": "istio-proxy", "image": "proxyv2"},
                                       {"name": "reviews", "image": "reviews:2"}]}}
    status, _, body = http(server, "PATCH", "/api/v1/namespaces/bookinfo/pods/reviews-v1",
                           json.dumps(sidecar).encode(), "application/strategic-merge-patch+json")
    assert status == 200
    assert [(c["name"], c["image"]) for c in body["spec"]["containers"]] == [
        ("reviews", "reviews:2"), ("istio-proxy", "proxyv2")]
    status, _, body = http(server, "PATCH", "/api/v1/namespaces/bookinfo/pods/reviews-v1",
                           b'{"metadata": {"labels": {"version": null}}}', "application/merge-patch+json")
    assert status == 200 and body["metadata"]["labels"] == {"app": "reviews"}


def test_strategic_merge_directives():
    target = {"spec": {"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "1"}], "x": [1, 2]}}
    patch = {"$setElementOrder/containers": [{"name": "a"}], "spec": {
        "containers": [{"name": "b", "$patch": "delete"}], "x": [3]}}
    assert strategic_merge_patch(target, patch) == {"spec": {"containers": [{"name": "a", "image": "1"}], "x": [3]}}


# -- plain HTTP: discovery, tables, selectors, errors -------------------------------------

def test_version_and_legacy_discovery(server):
    assert http(server, "GET", "/version")[2]["minor"] == "30"
    assert http(server, "GET", "/api")[2]["versions"] == ["v1"]
    groups = {g["name"]: g for g in http(server, "GET", "/apis")[2]["groups"]}
    # Istio 1.19's CRDs: networking serves v1alpha3 and v1beta1 (v1 came in 1.22); security serves v1
    # for AuthorizationPolicy and RequestAuthentication, so kube-apiserver prefers it for the group
    assert groups["networking.istio.io"]["preferredVersion"]["version"] == "v1beta1"
    assert [v["version"] for v in groups["networking.istio.io"]["versions"]] == ["v1beta1", "v1alpha3"]
    resources = http(server, "GET", "/apis/networking.istio.io/v1alpha3")[2]["resources"]
    vs = next(r for r in resources if r["name"] == "virtualservices")
    assert vs["shortNames"] == ["vs"] and vs["namespaced"] and "watch" in vs["verbs"]
    assert http(server, "GET", "/apis/nothing.example.com/v1")[0] == 404
    assert http(server, "GET", "/apis/security.istio.io")[2]["preferredVersion"]["groupVersion"] == (
        "security.istio.io/v1")
    served_v1 = {r["kind"] for r in http(server, "GET", "/apis/security.istio.io/v1")[2]["resources"]}
    assert served_v1 == {"AuthorizationPolicy", "RequestAuthentication"}
    assert http(server, "GET", "/apis/networking.istio.io/v1")[0] == 404


@pytest.mark.parametrize("version", ["v2", "v2beta1"])
def test_aggregated_discovery_answers_the_version_asked_for(server, version):
    accept = (f"application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList,"
              "application/json")
    status, headers, body = http(server, "GET", "/apis", accept=accept)
    assert status == 200 and body["apiVersion"] == f"apidiscovery.k8s.io/{version}"
    assert f"v={version}" in headers["Content-Type"]
    istio = next(g for g in body["items"] if g["metadata"]["name"] == "networking.istio.io")
    v1alpha3 = next(v for v in istio["versions"] if v["version"] == "v1alpha3")
    assert "envoyfilters" in [r["resource"] for r in v1alpha3["resources"]]
    core = http(server, "GET", "/api", accept=accept)[2]
    pods = next(r for r in core["items"][0]["versions"][0]["resources"] if r["resource"] == "pods")
    assert pods["scope"] == "Namespaced" and pods["shortNames"] == ["po"]


def test_table_output_has_kubectl_columns(server):
    server.run_until(1)
    accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
    _, _, table = http(server, "GET", "/api/v1/pods", accept=accept)
    assert [c["name"] for c in table["columnDefinitions"]][:5] == ["Name", "Ready", "Status", "Restarts", "Age"]
    rows = {r["cells"][0]: r["cells"][1:4] for r in table["rows"]}
    assert rows["reviews-v1"] == ["1/1", "Running", "1"] and rows["ratings-v1"] == ["0/1", "Pending", "1"]
    assert table["rows"][0]["object"]["kind"] == "PartialObjectMetadata"
    _, _, vs = http(server, "GET", "/apis/networking.istio.io/v1beta1/virtualservices", accept=accept)
    assert [c["name"] for c in vs["columnDefinitions"]] == ["Name", "Gateways", "Hosts", "Age"]


def test_label_and_field_selectors(server):
    def names(query):
        return [p["metadata"]["name"] for p in http(server, "GET", "/api/v1/pods?" + query)[2]["items"]]
    assert names("labelSelector=app%3Dreviews") == ["reviews-v1"]
    assert names("labelSelector=app+in+(reviews,productpage)") == ["productpage-v1", "reviews-v1"]
    assert names("fieldSelector=spec.nodeName%3Dnode-2") == ["productpage-v1"]
    assert names("fieldSelector=metadata.name!%3Dreviews-v1,metadata.namespace%3Dbookinfo") == ["productpage-v1"]
    assert http(server, "GET", "/api/v1/pods?fieldSelector=nonsense")[0] == 400


def test_watch_bookmarks_and_timeout(trace_file):
    with ApiServer(trace_file, speed=None, bookmark_interval=0.1) as server:
        rv = http(server, "GET", "/api/v1/pods")[2]["metadata"]["resourceVersion"]
        url = f"{server.url}/api/v1/pods?watch=True&resourceVersion={rv}&allowWatchBookmarks=true&timeoutSeconds=1"
        lines = []
        threading.Timer(0.2, server.run_until, args=(1,)).start()
        with urllib.request.urlopen(url, timeout=10) as resp:  # ends by itself after timeoutSeconds
            lines = [json.loads(line) for line in resp if line.strip()]
        types = [e["type"] for e in lines]
        assert "BOOKMARK" in types
        assert [(e["type"], e["object"]["metadata"]["name"]) for e in lines if e["type"] != "BOOKMARK"] == [
            ("ADDED", "ratings-v1")]
        last_bookmark = [e for e in lines if e["type"] == "BOOKMARK"][-1]
        assert int(last_bookmark["object"]["metadata"]["resourceVersion"]) == server.store.rv


def test_watch_without_version_starts_with_current_objects(server):
    with urllib.request.urlopen(f"{server.url}/api/v1/namespaces/bookinfo/pods?watch=1&timeoutSeconds=1") as resp:
        events = [json.loads(line) for line in resp if line.strip()]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "productpage-v1"), ("ADDED", "reviews-v1")]


def test_bad_requests_get_status_errors_and_the_server_keeps_serving(server):
    cases = [
        ("GET", "/api/v1/widgets", None, "application/json", 404, "NotFound"),
        ("GET", "/api/v1/namespaces/bookinfo/pods/nope", None, "application/json", 404, "NotFound"),
        ("POST", "/api/v1/namespaces/bookinfo/pods", b"{not json", "application/json", 400, "BadRequest"),
        ("POST", "/api/v1/namespaces/bookinfo/pods", b"\x0a\x02", "application/vnd.kubernetes.protobuf", 415,
         "UnsupportedMediaType"),
        ("POST", "/api/v1/namespaces/bookinfo/pods", pod("reviews-v1", "reviews"), "application/json", 409,
         "AlreadyExists"),
        ("POST", "/api/v1/namespaces/bookinfo/pods", {"apiVersion": "v1", "kind": "Pod", "metadata": {
            "name": "Bad_Name"}, "spec": {}}, "application/json", 422, "Invalid"),
        ("POST", "/api/v1/namespaces/other/pods", pod("x", "x", namespace="bookinfo"), "application/json", 400,
         "BadRequest"),
        ("POST", "/api/v1/namespaces/missing/pods", pod("x", "x", namespace="missing"), "application/json", 404,
         "NotFound"),
        ("PATCH", "/api/v1/namespaces/bookinfo/pods/reviews-v1", b"{}", "application/apply-patch+yaml", 415,
         "UnsupportedMediaType"),
        ("GET", "/api/v1/pods?resourceVersion=1&resourceVersionMatch=Exact", None, "application/json", 410,
         "Expired"),
    ]
    for method, path, body, content_type, code, reason in cases:
        status, _, answer = http(server, method, path, body, content_type)
        assert (status, answer["kind"], answer["code"], answer["reason"]) == (code, "Status", code, reason), path
    _, _, invalid = http(server, "POST", "/api/v1/namespaces/bookinfo/pods", {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "Bad_Name"}, "spec": {}})
    assert {c["field"] for c in invalid["details"]["causes"]} == {"metadata.name", "spec.containers"}
    # and after all that, business as usual
    assert http(server, "GET", "/api/v1/namespaces/bookinfo/pods/reviews-v1")[0] == 200


def test_https_with_kubeconfig(trace_file, tmp_path):
    with ApiServer(trace_file, speed=0, tls=True) as server:
        assert server.url.startswith("https://127.0.0.1:")
        kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig")
        api_client = config.new_client_from_config(config_file=str(kubeconfig))
        names = [p.metadata.name for p in client.CoreV1Api(api_client).list_pod_for_all_namespaces().items]
        api_client.close()
        assert names == ["productpage-v1", "ratings-v1"]  # speed 0: the whole trace, at once


def test_replay_on_the_clock(trace_file):
    with ApiServer(trace_file, speed=20) as server:  # t=3 arrives after 0.15 s
        assert server.applied == 6
        deadline = threading.Event()
        for _ in range(50):
            if server.applied == 10:
                break
            deadline.wait(0.02)
        assert server.applied == 10
