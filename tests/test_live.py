"""LiveClient against the replay API server: the live code path, checked against ReplayClient."""

from __future__ import annotations

import asyncio
import copy
import threading
import time
from pathlib import Path

import pytest
from kubeobjects import pod
from tracehelpers import wait_for

from mesh.clock import VirtualClock
from mesh.kube.apiserver import ApiServer
from mesh.kube.client import ConflictError, NotFoundError, ReplayClient
from mesh.kube.live import LiveClient
from mesh.kube.trace import load_trace

KINDS = ("namespaces", "pods", "services", "virtualservices")
SERVER_FIELDS = ("uid", "creationTimestamp", "generation")  # filled in by an API server, not by a replay


def comparable(objects: list[dict]) -> list[dict]:
    out = []
    for obj in objects:
        obj = copy.deepcopy(obj)
        for name in SERVER_FIELDS:
            obj["metadata"].pop(name, None)
        out.append(obj)
    return out


@pytest.fixture
def live(server: ApiServer, tmp_path: Path):
    client = LiveClient(str(server.write_kubeconfig(tmp_path / "kubeconfig")))
    yield client
    client.close()


def test_live_reaches_the_same_informer_state_as_replay(server, live, trace_file):
    informers = {kind: live.informer(kind) for kind in KINDS}
    assert live.has_synced()
    replay = ReplayClient(load_trace(trace_file), VirtualClock())
    server.run_until(1.5)
    replay.clock.advance_to(1.5)
    wait_for(lambda: len(informers["pods"]) == 3)
    server.run_until(10)
    replay.clock.advance_to(10)
    wait_for(lambda: len(informers["pods"]) == 2 and len(informers["virtualservices"]) == 2)
    wait_for(lambda: informers["pods"].get("ratings-v1", "bookinfo")["status"]["phase"] == "Running")
    for kind in KINDS:
        assert comparable(informers[kind].list()) == comparable(replay.informer(kind).list()), kind


def test_handlers_run_on_the_given_loop(server, tmp_path):
    loop = asyncio.new_event_loop()
    loop_thread = threading.Thread(target=loop.run_forever, daemon=True)
    loop_thread.start()
    client = LiveClient(str(server.write_kubeconfig(tmp_path / "kubeconfig")), loop=loop)
    try:
        seen, threads = [], set()

        def record(what):
            def handler(*objs):
                seen.append((what, objs[-1]["metadata"]["name"]))
                threads.add(threading.current_thread())
            return handler

        pods = client.informer("pods")
        pods.add_event_handler(record("add"), record("update"), record("delete"))
        server.run_until(10)
        wait_for(lambda: len(seen) == 5)
        assert seen == [("add", "productpage-v1"), ("add", "reviews-v1"), ("add", "ratings-v1"),
                        ("update", "ratings-v1"), ("delete", "reviews-v1")]
        assert threads - {threading.current_thread()} == {loop_thread}  # watch events came via the loop
    finally:
        client.close()
        loop.call_soon_threadsafe(loop.stop)
        loop_thread.join(5)
        loop.close()


def test_410_gone_relists_and_emits_the_differences(server, live):
    pods = live.informer("pods")
    seen = []
    pods.add_event_handler(on_add=lambda o: seen.append(("add", o["metadata"]["name"])),
                           on_update=lambda a, b: seen.append(("update", b["metadata"]["name"])),
                           on_delete=lambda o: seen.append(("delete", o["metadata"]["name"])))
    seen.clear()

    async def miss_events_then_compact():
        # The watch connections end before the trace moves on, and the history they would
        # resume from is compacted away: their next watch gets 410 and must list again.
        server.store.close_watchers()
        await server.advance_to(10)
        server.store.compact()

    server.call(miss_events_then_compact())
    wait_for(lambda: ("delete", "reviews-v1") in seen and ("add", "ratings-v1") in seen)
    assert sorted(seen) == [("add", "ratings-v1"), ("delete", "reviews-v1")]
    assert [p["metadata"]["name"] for p in pods.list()] == ["productpage-v1", "ratings-v1"]
    assert pods.get("ratings-v1", "bookinfo")["status"]["phase"] == "Running"


def test_writes_and_their_errors(server, live):
    pods = live.informer("pods")
    created = live.create(pod("details-v1", "details"))
    assert created["metadata"]["resourceVersion"]
    wait_for(lambda: pods.get("details-v1", "bookinfo") is not None)
    with pytest.raises(ConflictError):
        live.create(pod("details-v1", "details"))
    created["metadata"]["labels"]["version"] = "v1"
    live.update(created)
    wait_for(lambda: pods.get("details-v1", "bookinfo")["metadata"]["labels"].get("version") == "v1")
    with pytest.raises(ConflictError):
        live.update(created)  # stale resourceVersion
    live.delete("pods", "details-v1", "bookinfo")
    wait_for(lambda: pods.get("details-v1", "bookinfo") is None)
    with pytest.raises(NotFoundError):
        live.delete("pods", "details-v1", "bookinfo")


def test_close_stops_the_watch_threads_promptly(server, tmp_path):
    client = LiveClient(str(server.write_kubeconfig(tmp_path / "kubeconfig")))
    for kind in KINDS:
        client.informer(kind)
    time.sleep(0.1)  # let every watch connect
    started = time.monotonic()
    client.close()
    assert time.monotonic() - started < 1.0
    assert not [t for t in threading.enumerate() if t.name.startswith("mesh-watch-")]


def test_serve_with_a_kubeconfig_reaches_the_same_registry_as_serve_with_the_trace(tmp_path):
    """The Done-when of the issue: the bootstrap stages cannot tell a trace from a live cluster."""
    from mesh.bootstrap.args import ServerArgs
    from mesh.bootstrap.server import Server

    replayed = Server(ServerArgs(trace="bookinfo", speed=0)).run_until("init_controllers")
    with ApiServer(load_trace("bookinfo"), speed=0) as api:
        live = Server(ServerArgs(kubeconfig=str(api.write_kubeconfig(tmp_path / "kubeconfig"))))
        live.run_until("init_controllers")
        try:
            assert live.kube_client.has_synced()
            registries = [s.environment.service_discovery for s in (replayed, live)]
            services = [r.services() for r in registries]
            assert services[0] == services[1] and len(services[0]) >= 5
            for registry in registries[1:]:
                for svc in services[0]:
                    for port in svc.ports:
                        assert registry.endpoints(svc.hostname, port.port) == registries[0].endpoints(
                            svc.hostname, port.port)
            assert live.environment.mesh_watcher.mesh() == replayed.environment.mesh_watcher.mesh()
        finally:
            live.kube_client.close()


def test_a_kind_the_server_does_not_serve_is_empty_and_synced(live):
    from mesh.kube.kinds import Kind

    widgets = live.informer(Kind("example.com", "v1", "Widget", "widgets"))
    assert widgets.has_synced() and len(widgets) == 0 and live.has_synced()
