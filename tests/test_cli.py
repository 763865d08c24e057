import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def mesh(*args, **kw):
    return subprocess.run([sys.executable, "-m", "mesh", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=120, **kw)


def test_help_lists_the_commands():
    out = mesh("--help")
    assert out.returncode == 0
    for command in ("serve", "replay", "diagrams"):
        assert command in out.stdout


def test_replay_prints_a_deterministic_timeline(mesh_change_trace):
    first = mesh("replay", str(mesh_change_trace), "--show", "events", "--show", "mesh")
    assert first.returncode == 0, first.stderr
    assert "MODIFIED" in first.stdout and "ConfigMap" in first.stdout
    assert "accessLogFile" in first.stdout and "'/dev/stdout'" in first.stdout
    assert "trust domain now: example.org" in first.stdout
    assert "refused:" in first.stdout  # the broken edit at t=15
    second = mesh("replay", str(mesh_change_trace), "--show", "events", "--show", "mesh")
    assert first.stdout == second.stdout


def test_replay_until_stops_the_virtual_clock(mesh_change_trace):
    out = mesh("replay", str(mesh_change_trace), "--until", "12", "--show", "mesh")
    assert "trust domain now: cluster.local" in out.stdout


def test_broken_third_line_exits_2_and_names_it(tmp_path, mesh_change_trace):
    lines = mesh_change_trace.read_text().splitlines()
    lines[2] = lines[2][:40]  # cut the JSON short
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(lines) + "\n")
    out = mesh("replay", str(bad))
    assert out.returncode == 2
    assert f"{bad}:3: json:" in out.stderr and "nothing was applied" in out.stderr
    assert "Traceback" not in out.stderr


def test_missing_trace_is_a_usage_error():
    out = mesh("replay", "no-such-trace.jsonl")
    assert out.returncode == 2 and "no such trace file" in out.stderr


def test_serve_starts_reports_ready_and_stops_cleanly_on_sigterm(tmp_path, mesh_change_trace):
    ready = tmp_path / "ready.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "mesh", "serve", "--trace", str(mesh_change_trace), "--speed", "0",
         "--debug-port", "0", "--xds-port", "0", "--secure-xds-port", "0", "--monitoring-port", "0",
         "--webhook-port", "0", "--ready-file", str(ready)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ})
    try:
        deadline = time.monotonic() + 60
        while not ready.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        assert ready.exists(), proc.stdout.read() if proc.poll() is not None else "no ready file"
        ports = json.loads(ready.read_text())
        with urllib.request.urlopen(f"http://127.0.0.1:{ports['debug']}/ready", timeout=5) as resp:
            assert resp.status == 200
        with urllib.request.urlopen(f"http://127.0.0.1:{ports['debug']}/debug/mesh", timeout=5) as resp:
            assert json.loads(resp.read())["trustDomain"] == "example.org"  # speed 0: whole trace applied
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    assert "stage  1/16 init_kube_client" in output and "stopped cleanly" in output


def test_serve_refuses_a_non_loopback_host():
    out = mesh("serve", "--host", "10.0.0.1")
    assert out.returncode == 2 and "loopback" in out.stderr


@pytest.mark.skipif(subprocess.run(["which", "dot"], capture_output=True).returncode != 0,
                    reason="graphviz dot missing")
def test_diagrams_are_generated_from_the_code(tmp_path):
    out = mesh("diagrams", "-o", str(tmp_path))
    assert out.returncode == 0, out.stderr
    dot = (tmp_path / "bootstrap-stages.dot").read_text()
    assert "initKubeClient" in dot and "initDiscoveryService" in dot
    assert (tmp_path / "bootstrap-stages.svg").read_text().lstrip().startswith("<?xml")
