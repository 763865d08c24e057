"""mesh.teach.apiserver_view: the notebook helpers that read the replay API server with the
official ``kubernetes`` client (pod lists, a watch stepped with the trace, registries compared)."""

from __future__ import annotations

import re

import pytest
from kubeobjects import bookinfo_events
from kubernetes import client, config
from tracehelpers import write_trace

from mesh.kube.apiserver import ApiServer
from mesh.teach import apiserver_view


@pytest.fixture
def server(tmp_path):
    with ApiServer(write_trace(tmp_path / "small.jsonl", bookinfo_events()), speed=None) as srv:
        yield srv


@pytest.fixture
def core(server, tmp_path):
    api_client = config.new_client_from_config(config_file=str(server.write_kubeconfig(tmp_path / "kubeconfig")))
    yield client.CoreV1Api(api_client)
    api_client.close()


def rows(view) -> list[list[str]]:
    """Table rows (after the header and the rule) split on runs of two or more spaces."""
    return [re.split(r"\s{2,}", line.strip()) for line in view.text.splitlines()[2:]]


def test_pods_table_is_titled_with_the_list_version_and_sorted(server, core):
    view = apiserver_view.pods_table(core.list_pod_for_all_namespaces())
    title, header, _rule, *lines = view.text.splitlines()
    assert title == f"PodList at resourceVersion {server.store.rv}: 2 pod(s)"
    assert header.split() == ["namespace/name", "phase", "node", "pod", "IP", "resourceVersion"]
    assert [line.split()[0] for line in lines] == ["bookinfo/productpage-v1", "bookinfo/reviews-v1"]


def test_step_through_shows_what_each_advance_delivered(server, core):
    listed = core.list_pod_for_all_namespaces()
    tap = apiserver_view.WatchTap(core.list_pod_for_all_namespaces, resource_version=listed.metadata.resource_version)
    try:
        view = apiserver_view.step_through(server, tap, [0.5, 1, 2, 3])
    finally:
        tap.stop()
    assert not tap._thread.is_alive()
    assert [r[:5] for r in rows(view)] == [
        ["0.5", "0", "-", "(nothing new)"],
        ["1", "1", "ADDED", "bookinfo/ratings-v1", "Pending"],
        ["2", "2", "MODIFIED", "bookinfo/ratings-v1", "Running"],  # 2 events applied: the pod and a VS
        ["3", "1", "DELETED", "bookinfo/reviews-v1", "Running"],
    ]
    versions = [int(r[5]) for r in rows(view) if len(r) == 6]
    assert versions == sorted(versions) and versions[-1] == apiserver_view.newest_version(server, "pods")


def test_a_resumed_watch_replays_history_and_wait_for_times_out(server, core):
    server.run_until(10)
    newest = apiserver_view.newest_version(server, "Pod")  # the DELETED of reviews-v1
    tap = apiserver_view.WatchTap(core.list_pod_for_all_namespaces, resource_version="4")
    try:
        tap.wait_for(newest)
        assert [e["type"] for e in tap.take()] == ["ADDED", "MODIFIED", "DELETED"]
        assert tap.take() == []
        with pytest.raises(TimeoutError):
            tap.wait_for(newest + 100, timeout=0.2)
    finally:
        tap.stop()


def test_newest_version_names_kinds_as_kubectl_does(server):
    assert apiserver_view.newest_version(server, "virtualservices") == apiserver_view.newest_version(server, "vs") > 0
    with pytest.raises(KeyError):
        apiserver_view.newest_version(server, "widgets")


def test_registries_compared_says_where_two_servers_differ():
    from mesh.bootstrap import Server, ServerArgs

    full = Server(ServerArgs(trace="bookinfo", speed=0)).run_until("init_controllers")
    same = Server(ServerArgs(trace="bookinfo", speed=0)).run_until("init_controllers")
    early = Server(ServerArgs(trace="bookinfo")).run_until("init_controllers")  # t = 0
    assert {r[-1] for r in rows(apiserver_view.registries_compared(full, same))} == {"yes"}
    compared = {r[0]: r for r in rows(apiserver_view.registries_compared(full, early))}
    assert compared["istiod.istio-system.svc.cluster.local"][-1] == "yes"
    assert compared["reviews.default.svc.cluster.local"][2:] == ["3", "-", "no"]
