"""The recorder: a recording of the replay API server replays to the very same store."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.request

from kubeobjects import pod, service
from tracehelpers import wait_for

from mesh.cli import main
from mesh.kube.apiserver import ApiServer
from mesh.kube.live import LiveClient
from mesh.kube.record import Recorder, resolve_kinds
from mesh.kube.trace import load_trace

KINDS = resolve_kinds(["namespaces,pods,services", "vs"])


def test_record_then_replay_gives_the_same_store(trace_file, tmp_path):
    with ApiServer(trace_file, speed=None) as server:
        kubeconfig = str(server.write_kubeconfig(tmp_path / "kubeconfig"))
        recorder = Recorder(kubeconfig, KINDS)
        recorder.start()
        server.run_until(1.5)
        writer = LiveClient(kubeconfig)  # writes from a client, between trace events
        created = writer.create(service("details"))
        created["spec"]["ports"][0]["port"] = 9081
        writer.update(created)
        server.run_until(10)
        writer.delete("services", "reviews", "bookinfo")
        writer.close()
        wait_for(lambda: len(recorder.events()) == 6 + 4 + 1 + 1 + 1)
        recorder.stop()
        recording = recorder.write(tmp_path / "recording.jsonl")
        final = server.objects()
    reloaded = load_trace(tmp_path / "recording.jsonl")  # a valid trace
    assert [e.type for e in reloaded.events] == [e.type for e in recording.events]
    assert [e.t for e in reloaded.events] == sorted(e.t for e in reloaded.events)
    assert all(round(e.t, 3) == e.t for e in reloaded.events)
    assert "managedFields" not in json.dumps(reloaded.events[0].object)
    with ApiServer(tmp_path / "recording.jsonl", speed=0) as replayed:
        assert replayed.objects() == final  # resourceVersions, uids and all


def test_recorder_relists_after_410_and_writes_the_differences(trace_file, tmp_path):
    with ApiServer(trace_file, speed=None) as server:
        recorder = Recorder(str(server.write_kubeconfig(tmp_path / "kubeconfig")), resolve_kinds(["pods"]))
        recorder.start()
        time.sleep(0.1)

        async def miss_events_then_compact():
            server.store.close_watchers()
            await server.advance_to(10)
            server.store.compact()

        server.call(miss_events_then_compact())
        wait_for(lambda: len(recorder.events()) == 4)
        recorder.stop()
        events = [(e.type, e.object["metadata"]["name"]) for e in recorder.events()]
        trace = recorder.write(tmp_path / "recording.jsonl")
        final = server.objects()
    # the ratings pod was added and then modified while nobody watched: one ADDED, its last state
    assert sorted(events) == [("ADDED", "productpage-v1"), ("ADDED", "ratings-v1"), ("ADDED", "reviews-v1"),
                              ("DELETED", "reviews-v1")]
    assert trace.events[-1].t >= trace.events[0].t
    with ApiServer(tmp_path / "recording.jsonl", speed=0) as replayed:
        pods = [o for o in final if o["kind"] == "Pod"]
        assert [o for o in replayed.objects() if o["kind"] == "Pod"] == pods


def test_record_command(trace_file, tmp_path, capsys):
    with ApiServer(trace_file, speed=0) as server:
        kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig")
        out = tmp_path / "out.jsonl"
        assert main(["record", "--kubeconfig", str(kubeconfig), "-o", str(out), "--duration", "0.2",
                     "--kinds", "pods", "vs"]) == 0
        assert "wrote 4 events" in capsys.readouterr().out
        names = [(e.object["kind"], e.object["metadata"]["name"]) for e in load_trace(out).events]
        assert sorted(names) == [("Pod", "productpage-v1"), ("Pod", "ratings-v1"),
                                 ("VirtualService", "ratings"), ("VirtualService", "reviews")]
        assert main(["record", "--kubeconfig", str(kubeconfig), "-o", str(out), "--kinds", "widgets"]) == 2
        assert "unknown kind 'widgets'" in capsys.readouterr().err


def test_apiserver_command(trace_file, tmp_path):
    ready, kubeconfig = tmp_path / "ready.json", tmp_path / "kubeconfig"
    proc = subprocess.Popen([sys.executable, "-m", "mesh", "apiserver", "--trace", str(trace_file), "--port", "0",
                             "--speed", "0", "--ready-file", str(ready), "--kubeconfig-out", str(kubeconfig)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(ready.exists, timeout=20)
        port = json.loads(ready.read_text())["port"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/namespaces/bookinfo/pods") as resp:
            names = [p["metadata"]["name"] for p in json.loads(resp.read())["items"]]
        assert names == ["productpage-v1", "ratings-v1"]
        assert f"http://127.0.0.1:{port}" in kubeconfig.read_text()
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert f"on http://127.0.0.1:{port}" in out


def test_apiserver_command_refuses_a_missing_trace(tmp_path, capsys):
    assert main(["apiserver", "--trace", str(tmp_path / "none.jsonl")]) == 2
    assert "none.jsonl" in capsys.readouterr().err


def test_recording_a_pod_created_mid_way(trace_file, tmp_path):
    """A create through the API shows up in the recording with the server's version."""
    with ApiServer(trace_file, speed=0) as server:
        kubeconfig = str(server.write_kubeconfig(tmp_path / "kubeconfig"))
        recorder = Recorder(kubeconfig, resolve_kinds(["pods"]))
        recorder.start()
        writer = LiveClient(kubeconfig)
        created = writer.create(pod("details-v1", "details"))
        writer.close()
        wait_for(lambda: len(recorder.events()) == 3)
        recorder.stop()
    last = recorder.events()[-1]
    assert (last.type, last.object["metadata"]["resourceVersion"]) == (
        "ADDED", created["metadata"]["resourceVersion"])
    assert threading.active_count() < 50
