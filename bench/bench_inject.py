"""Injections per second through the /inject webhook, over HTTP on 127.0.0.1 and in-process.

istiod's own figure is the ``sidecar_injection_time_seconds`` histogram
(https://github.com/istio/istio/blob/1.19.0/pkg/kube/inject/monitoring.go). Run:
``.venv/bin/python bench/bench_inject.py [--requests N] [--concurrency C]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import aiohttp
from aiohttp import web

from mesh.config.mesh import default_mesh_config
from mesh.inject.config import InjectorConfigWatcher, load_builtin
from mesh.inject.webhook import Webhook, add_routes
from mesh.util.web import serve_app


def review(i: int) -> bytes:
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": f"reviews-v1-{i}", "namespace": "default", "labels": {"app": "reviews", "version": "v1"},
                        "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "9080"}},
           "spec": {"serviceAccountName": "bookinfo-reviews",
                    "containers": [{"name": "reviews", "image": "docker.io/istio/examples-bookinfo-reviews-v1:1.17.0",
                                    "ports": [{"containerPort": 9080}],
                                    "readinessProbe": {"httpGet": {"path": "/health", "port": 9080}}}],
                    "volumes": [{"name": "kube-api-access", "projected": {"sources": []}}]}}
    return json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                       "request": {"uid": f"uid-{i}", "namespace": "default", "operation": "CREATE",
                                   "object": pod}}).encode()


def make_webhook() -> Webhook:
    config, values = load_builtin()
    return Webhook(InjectorConfigWatcher(config, values), default_mesh_config)


async def over_http(requests: int, concurrency: int) -> float:
    webhook = make_webhook()
    app = web.Application()
    add_routes(app, webhook)
    runner, port = await serve_app(app, "127.0.0.1", 0)
    bodies = [review(i) for i in range(requests)]
    queue = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)

    async def worker(session):
        while not queue.empty():
            body = queue.get_nowait()
            async with session.post("/inject", data=body, headers={"Content-Type": "application/json"}) as resp:
                answer = await resp.json()
                assert answer["response"]["patch"], answer

    start = time.perf_counter()
    async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{port}") as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    await runner.cleanup()
    assert webhook.counts["injected"] == requests
    return requests / elapsed


def in_process(requests: int) -> float:
    webhook = make_webhook()
    bodies = [review(i) for i in range(requests)]
    start = time.perf_counter()
    for body in bodies:
        status, _, _ = webhook.serve(body, "application/json")
        assert status == 200
    return requests / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    in_process(20)  # warm up: template compilation caches, imports
    print(f"in-process (Webhook.serve):        {in_process(args.requests):8.1f} injections/s")
    rate = asyncio.run(over_http(args.requests, args.concurrency))
    print(f"HTTP /inject on 127.0.0.1 (c={args.concurrency}):  {rate:8.1f} injections/s")


if __name__ == "__main__":
    main()
