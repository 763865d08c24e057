"""HTTP servers under hostile clients: slowloris, slow bodies, wrongly typed reviews, SIGTERM
mid-upload; and `serve` itself: a taken xDS port, an IPv6 loopback host."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from test_inject_webhook import make_webhook, pod, review

from mesh.inject.webhook import add_routes as add_inject_routes
from mesh.util.web import serve_app
from mesh.webhooks.validation import add_routes as add_validate_routes

ROOT = Path(__file__).resolve().parent.parent


def run(coro, timeout=60):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def start(**timeouts):
    app = web.Application()
    add_inject_routes(app, make_webhook())
    add_validate_routes(app)
    return await serve_app(app, "127.0.0.1", 0, **timeouts)


def test_slowloris_connections_are_closed_by_the_header_timeout():
    async def scenario():
        served, port = await start(header_timeout=0.5)
        conns = []
        try:
            for _ in range(200):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(b"POST /inject HTTP/1.1\r\nHost: x\r\n")  # ...and the rest never comes
                conns.append((reader, writer))
            await asyncio.sleep(0.2)
            for _, writer in conns[:20]:
                writer.write(b"X-Slow: 1\r\n")  # a trickle does not extend the deadline
            closed = await asyncio.wait_for(asyncio.gather(*(r.read() for r, _ in conns)), 5)
            assert closed == [b""] * 200 and served.header_timeouts == 200
            async with aiohttp.ClientSession() as session:  # and the server still serves
                async with session.post(f"http://127.0.0.1:{port}/validate", data=b"{}",
                                        headers={"Content-Type": "application/json"}) as resp:
                    assert resp.status == 200
        finally:
            for _, writer in conns:
                writer.close()
            await served.cleanup()
    run(scenario())


def test_a_body_that_never_arrives_gets_408():
    async def scenario():
        served, port = await start(body_timeout=0.5)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"POST /inject HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 100000\r\n\r\n{\"a\":")
            answer = await asyncio.wait_for(reader.readline(), 5)
            assert answer.startswith(b"HTTP/1.1 408") and served.body_timeouts == 1
            writer.close()
        finally:
            await served.cleanup()
    run(scenario())


DEEP = "DEEP-PLACEHOLDER"


async def post_review(path: str, body: str) -> dict:
    """POST one AdmissionReview to a fresh server; it must answer 200 with a review."""
    served, port = await start()
    try:
        async with aiohttp.ClientSession() as session, session.post(
                f"http://127.0.0.1:{port}{path}", data=body, headers={"Content-Type": "application/json"}) as resp:
            assert resp.status == 200
            return await resp.json()
    finally:
        await served.cleanup()


INJECT_CASES = [
    ("containers", {"spec": {"containers": "x"}}, "request.object.spec.containers: must be a list"),
    ("labels", {"metadata": {"name": "p", "labels": 5}}, "request.object.metadata.labels: must be a mapping"),
    ("probe", {"spec": {"containers": [{"name": "c", "readinessProbe": 7}]}},
     "request.object.spec.containers[0].readinessProbe: must be a mapping"),
    ("apiVersion", {"apiVersion": 5}, "request.object.apiVersion: must be a string"),
    ("kind", {"kind": []}, "request.object.kind: must be a string"),
    ("deep", {"spec": {"affinity": DEEP}}, "nested more than 100 levels"),
]


@pytest.mark.parametrize("name, change, message", INJECT_CASES, ids=[c[0] for c in INJECT_CASES])
def test_wrongly_typed_pods_get_a_denial_naming_the_field(name, change, message):
    obj = pod()
    for key, value in change.items():
        obj[key] = {**obj[key], **value} if isinstance(obj.get(key), dict) and isinstance(value, dict) else value

    body = json.dumps(review(obj)).replace(f'"{DEEP}"', '{"a":' * 5000 + "1" + "}" * 5000)
    answer = run(post_review("/inject", body))
    assert answer["response"]["allowed"] is False
    assert message in answer["response"]["status"]["message"]


VS = {"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
      "metadata": {"name": "r", "namespace": "default"}, "spec": {"hosts": ["r"], "http": [{"route": [
          {"destination": {"host": "r"}}]}]}}
VALIDATE_CASES = [
    ("apiVersion", {"apiVersion": 5}, "object.apiVersion: must be a string"),
    ("kind", {"kind": []}, "object.kind: must be a string"),
    ("labels", {"metadata": {"name": "r", "labels": 5}}, "object.metadata.labels: must be a mapping"),
    ("spec", {"spec": "x"}, "object.spec: must be a mapping"),
    ("http", {"spec": {"hosts": ["r"], "http": "x"}}, ""),
    ("hosts", {"spec": {"hosts": 5}}, ""),
    ("route", {"spec": {"hosts": ["r"], "http": [{"route": [{"destination": 7}]}]}}, ""),
]


@pytest.mark.parametrize("name, change, message", VALIDATE_CASES, ids=[c[0] for c in VALIDATE_CASES])
def test_wrongly_typed_configs_are_denied_not_500(name, change, message):
    obj = {**VS, **change}

    body = review(obj) | {"request": {**review(obj)["request"], "kind": {"kind": "VirtualService"}}}
    answer = run(post_review("/validate", json.dumps(body)))
    assert answer["response"]["allowed"] is False
    assert message in answer["response"]["status"]["message"]


# -- `serve` as a process ----------------------------------------------------------------------------------
def serve(tmp_path: Path, name: str, *extra: str) -> tuple[subprocess.Popen, Path]:
    ready = tmp_path / f"{name}.json"
    ports = [arg for p in ("debug", "secure-xds", "monitoring", "webhook") for arg in (f"--{p}-port", "0")]
    args = [*ports, *extra] if "--xds-port" in extra else [*ports, "--xds-port", "0", *extra]
    proc = subprocess.Popen([sys.executable, "-m", "mesh", "serve", "--speed", "0", "--ready-file", str(ready), *args],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ})
    return proc, ready


def wait_ready(proc: subprocess.Popen, ready: Path) -> dict:
    deadline = time.monotonic() + 60
    while not ready.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    assert ready.exists(), proc.stderr.read() if proc.poll() is not None else "no ready file"
    return json.loads(ready.read_text())


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


@pytest.mark.slow
def test_sigterm_during_an_upload_exits_within_5s(tmp_path):
    import ssl

    proc, ready = serve(tmp_path, "a")
    try:
        ports = wait_ready(proc, ready)
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        sock = context.wrap_socket(socket.create_connection(("127.0.0.1", ports["webhook"])))
        sock.sendall(b"POST /inject HTTP/1.1\r\nHost: istiod\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 900000\r\n\r\n{\"apiVersion\": ")  # the upload stalls here
        time.sleep(0.5)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
        took = time.monotonic() - t0
        sock.close()
        assert proc.returncode == 0 and took < 5, took
    finally:
        stop(proc)


@pytest.mark.slow
def test_a_second_server_on_the_same_xds_port_fails_clearly(tmp_path):
    first, ready = serve(tmp_path, "a")
    try:
        port = wait_ready(first, ready)["xds"]
        second, _ = serve(tmp_path, "b", "--xds-port", str(port))
        _, err = second.communicate(timeout=60)
        assert second.returncode == 2
        assert f"cannot listen on 127.0.0.1:{port} for xDS" in err and "Traceback" not in err
    finally:
        stop(first)


@pytest.mark.slow
def test_serve_on_ipv6_loopback(tmp_path):
    proc, ready = serve(tmp_path, "a", "--host", "::1")
    try:
        ports = wait_ready(proc, ready)
        import urllib.request
        with urllib.request.urlopen(f"http://[::1]:{ports['debug']}/ready", timeout=5) as resp:
            assert resp.status == 200
    finally:
        stop(proc)


def test_injection_decision_log_is_bounded_by_bytes_and_keeps_summaries(monkeypatch):
    from mesh.inject import webhook as webhook_module

    monkeypatch.setattr(webhook_module, "MAX_KEPT_BYTES", 60_000)
    hook = make_webhook()
    big = {"big": "x" * 10_000}
    for i in range(20):
        obj = pod(name=f"p{i}", annotations=big)
        status, _, _ = hook.serve(json.dumps(review(obj)).encode(), "application/json")
        assert status == 200
    assert len(hook.decisions) == 20 and hook.kept_bytes <= 60_000
    assert hook.decisions[0].review is None and hook.decisions[0].pod == "p0"  # summary row kept
    assert hook.decisions[-1].review is not None and hook.decisions[-1].after is not None
