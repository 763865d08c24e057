"""The rig of the end-to-end notebook: bookinfo's apps on their pod IPs, real requests through a
sidecar, and waiting for the control plane and Envoy on real time.

Nothing here is part of the mini-istiod. Notebook 17 runs the whole server (``Server.start``, Go:
https://github.com/istio/istio/blob/1.19.0/pilot/pkg/bootstrap/server.go#L415-L476), real Envoys
through ``mesh.agent.agent.EnvoyAgent``, and these small pieces around them:

* ``start_apps``: one tiny HTTP app per bookinfo pod, listening on the pod's loopback IP and
  answering every request with its own name (``reviews-v3``), so a response says which pod served it;
* ``split``: send n requests through a sidecar's outbound HTTP proxy listener and count who answered;
* ``step_trace``: move the replayed cluster to a trace instant, then wait until the debounced push
  that the change asked for has been ACKed by every proxy (``synced``).

Everything is a coroutine for the loop the server runs on (in a notebook: the kernel's own loop,
so cells ``await`` them). Waits have generous timeouts because several Envoys may share a small
machine; measurements have none.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Iterable

import aiohttp
from aiohttp import web

from mesh.agent.bootstrap import PodIdentity
from mesh.kube.addresses import require_loopback
from mesh.xds.debug import proxy_answered as answered  # noqa: F401  (notebook 17 reads e2e.answered)
from mesh.xds.debug import proxy_synced as synced

APP_PORT = 9080  # bookinfo's service and container port


def app_name(pod: dict) -> str:
    """``<app>-<version>`` from the pod's labels: the name its app answers with."""
    labels = pod["metadata"].get("labels") or {}
    return f"{labels.get('app', pod['metadata']['name'])}-{labels.get('version', 'v1')}"


def pod_identity(pod: dict, proxy_type: str = "sidecar") -> PodIdentity:
    """What the mini pilot-agent needs to know about a pod to bootstrap its Envoy."""
    return PodIdentity.from_pod(pod, proxy_type=proxy_type)


def find_pod(pods: Iterable[dict], app: str, version: str | None = None) -> dict:
    """The pod with label ``app`` (and ``version``, if given); KeyError naming what was missing."""
    for pod in pods:
        labels = pod["metadata"].get("labels") or {}
        if labels.get("app") == app and (version is None or labels.get("version") == version):
            return pod
    raise KeyError(f"no pod with app={app}" + (f", version={version}" if version else ""))


# -- the apps ------------------------------------------------------------------------------------
async def start_app(ip: str, port: int, name: str, status: int = 200) -> web.AppRunner:
    """A pod's app: answers any path with ``{"app": name, "headers": <the request headers it saw>}``
    (and ``status``: a broken pod answers 500)."""
    async def handle(request: web.Request) -> web.Response:
        return web.json_response({"app": name, "headers": dict(request.headers)}, status=status)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, ip, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner


async def start_apps(pods: Iterable[dict], port: int = APP_PORT) -> dict[str, web.AppRunner]:
    """One app per pod on the pod's IP, keyed by ``app_name``; if one cannot start, none is left running."""
    apps: dict[str, web.AppRunner] = {}
    try:
        for pod in sorted(pods, key=app_name):
            apps[app_name(pod)] = await start_app(require_loopback(pod["status"]["podIP"]), port, app_name(pod))
    except BaseException:
        await stop_apps(apps)
        raise
    return apps


async def stop_apps(apps: dict[str, web.AppRunner]) -> None:
    for runner in apps.values():
        await runner.cleanup()
    apps.clear()


# -- traffic -------------------------------------------------------------------------------------
async def get(proxy: tuple[str, int], host: str, path: str = "/",
              session: aiohttp.ClientSession | None = None) -> tuple[int, object, dict]:
    """GET through a sidecar's HTTP proxy listener with this ``Host``; (status, json-or-text, headers)."""
    own = session is None
    session = session or aiohttp.ClientSession()
    try:
        async with session.get(f"http://{proxy[0]}:{proxy[1]}{path}", headers={"Host": host}) as resp:
            body = await resp.json() if resp.content_type == "application/json" else await resp.text()
            return resp.status, body, dict(resp.headers)
    finally:
        if own:
            await session.close()


async def split(proxy: tuple[str, int], host: str, n: int) -> Counter:
    """Send ``n`` requests at once; count the app that answered each (or the status, if not 200)."""
    async with aiohttp.ClientSession() as session:
        results = await asyncio.gather(*(get(proxy, host, session=session) for _ in range(n)))
    return Counter(body["app"] if status == 200 else status for status, body, _ in results)


def within(counts: Counter, expected: dict[str, float], n: int, points: float) -> bool:
    """Is every share (``expected``: version → fraction of traffic) met within ``points`` percent?"""
    others = set(counts) - set(expected)
    return not others and all(abs(100 * counts.get(v, 0) / n - 100 * share) <= points
                                for v, share in expected.items())


async def measure_split(proxy: tuple[str, int], host: str, n: int, expected: dict[str, float],
                        points: float = 5.0, samples: int = 3) -> Counter:
    """A split of ``n`` requests that meets ``expected`` within ``points`` — taking a fresh sample
    when one misses, at most ``samples`` times, and returning the last sample either way.

    Envoy picks each request's weighted cluster at random, so a correct 50/50 split of 400
    requests lands more than 5 points off about 4% of the time (5 points is 2 standard
    deviations there). Up to three independent samples make a correct config fail about once in
    20,000 runs, while a wrong weight (10 points off) still fails every sample.
    """
    counts = Counter()
    for _ in range(samples):
        counts = await split(proxy, host, n)
        if within(counts, expected, n, points):
            break
    return counts


# -- waiting -------------------------------------------------------------------------------------
async def wait_until(predicate: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    """Poll ``predicate`` while the loop keeps serving; TimeoutError naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(0.02)


async def wait_synced(ads, proxy_ids: Iterable[str], timeout: float = 20.0) -> None:
    ids = list(proxy_ids)
    await wait_until(lambda: all(synced(ads, p) for p in ids), timeout, f"{', '.join(ids)} to ACK the last push")


async def step_trace(server, trace_clock, t: float, proxy_ids: Iterable[str], timeout: float = 20.0) -> list:
    """Apply the trace up to ``t`` (``trace_clock`` is the replayed cluster's VirtualClock), then,
    if that asked for a push, wait for the debounced push and for every proxy to ACK it.

    Returns the pushes that left the debouncer meanwhile (``DebouncedPush``, oldest first)."""
    requests, pushes = len(server.xds.requests), len(server.xds.pushes)
    trace_clock.advance_to(t)
    if len(server.xds.requests) > requests:
        # the debounce window runs on the server's real clock: one quiet period, then one push
        await wait_until(lambda: len(server.xds.pushes) > pushes, timeout, f"the push for trace time {t:g}")
        await wait_until(lambda: not server.xds.debouncer.pending, timeout, "the debouncer to settle")
    await wait_synced(server.ads, proxy_ids, timeout)
    return server.xds.pushes[pushes:]


def weights_at(trace, name: str, t: float, namespace: str = "default") -> dict[str, int]:
    """The route weights of VirtualService ``namespace/name`` as the trace has it at time ``t``, keyed
    like the apps answer (``reviews`` subset ``v1`` → ``reviews-v1``, the subsets' version label
    in bookinfo): its first HTTP route; a lone destination without a weight counts 100."""
    spec = None
    for event in trace.events:
        meta = event.object.get("metadata", {})
        if event.t <= t and event.object.get("kind") == "VirtualService" and meta.get("name") == name \
                and meta.get("namespace") == namespace:
            spec = None if event.type == "DELETED" else event.object.get("spec", {})
    if spec is None:
        return {}
    route = (spec.get("http") or [{}])[0].get("route", [])
    weights = {}
    for d in route:
        host, subset = d["destination"]["host"].split(".")[0], d["destination"].get("subset")
        weights[f"{host}-{subset}" if subset else host] = d.get("weight", 100 if len(route) == 1 else 0)
    return weights
