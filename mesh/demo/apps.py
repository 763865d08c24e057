"""Tiny bookinfo apps: real HTTP servers on their pods' IPs, calling each other through their sidecars.

Istio's sample (https://github.com/istio/istio/tree/1.19.0/samples/bookinfo/src) has four
services in four languages; here each is a few lines of aiohttp that answer with their name,
version and pod, plus what they got from the services they call:

- productpage calls details and reviews,
- reviews v2 and v3 call ratings (v1 does not, as in the sample: v1 shows no stars),
- details and ratings call nobody.

How a call leaves the app depends on where the pod runs (DESIGN §6a):

- in its own network namespace (``capture=True``), the app calls ``http://reviews:9080/`` as a
  Kubernetes app does: the pod's hosts file gives the ClusterIP and istio-init's iptables rules
  capture the connection into the sidecar (``python -m mesh.demo.apps`` runs one app so, as a
  process inside its pod);
- in the loopback fallback, the app calls its own sidecar's HTTP proxy listener on ``<own pod
  IP>:15080`` with the callee in the ``Host`` header (``reviews:9080``): nothing captures traffic
  there, so the app talks to its Envoy the way an app talks to an HTTP proxy.

Either way, which reviews version answers is Envoy's choice, made from the config the control
plane sent.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import aiohttp
from aiohttp import web

APP_PORT = 9080
SIDECAR_PORT = 15080  # EnvoyAgent's outbound HTTP proxy listener

# Who calls whom, by (app, version); a version of None means every version.
CALLS: dict[tuple[str, str | None], tuple[str, ...]] = {
    ("productpage", None): ("details", "reviews"),
    ("reviews", "v2"): ("ratings",),
    ("reviews", "v3"): ("ratings",),
}


def callees(app: str, version: str) -> tuple[str, ...]:
    return CALLS.get((app, version)) or CALLS.get((app, None)) or ()


class BookinfoApp:
    """One pod's app. ``start()`` listens on ``ip:9080``; ``stop()`` closes it."""

    def __init__(self, pod_name: str, ip: str, app: str, version: str, namespace: str = "default",
                 timeout: float = 5.0, capture: bool = False):
        self.pod_name, self.ip, self.app, self.version = pod_name, ip, app, version
        self.namespace = namespace
        self.capture = capture  # True: call Services by name, captured by iptables; False: via the proxy
        self.timeout = timeout
        self.requests = 0  # how many requests this pod served
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> BookinfoApp:
        web_app = web.Application()
        web_app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(web_app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.ip, APP_PORT).start()
        return self

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        body = {"app": self.app, "version": self.version, "pod": self.pod_name}
        calls = {}
        for callee in callees(self.app, self.version):
            calls[callee] = await self._call(callee, request)
        if calls:
            body["calls"] = calls
        return web.json_response(body)

    async def _call(self, callee: str, incoming: web.Request) -> dict:
        """GET ``callee`` through this pod's sidecar; an error becomes part of the answer, as
        bookinfo's productpage shows "reviews are unavailable" rather than failing."""
        if self._session is None:
            # No proxy settings from the environment: the sidecar is the only way out.
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout),
                                                  trust_env=False)
        headers = {"Host": f"{callee}:{APP_PORT}"}
        # Propagate the request id, as Istio asks apps to (for tracing).
        if "x-request-id" in incoming.headers:
            headers["x-request-id"] = incoming.headers["x-request-id"]
        url = f"http://{callee}:{APP_PORT}/" if self.capture else f"http://{self.ip}:{SIDECAR_PORT}/"
        try:
            async with self._session.get(url, headers=headers) as resp:
                if resp.content_type == "application/json":
                    return await resp.json()
                return {"status": resp.status, "error": (await resp.text())[:200]}
        except (aiohttp.ClientError, TimeoutError) as err:
            return {"error": f"{type(err).__name__}: {err}"}


async def ready_until_signalled() -> None:
    """An app process in its pod, once it serves: say ``ready`` (what ``mesh.demo.podmode`` waits
    for), then wait for SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    await stop.wait()


async def _run_in_pod(app: BookinfoApp | None) -> None:
    """Serve until signalled; ``None``: serve nothing (the sleep sample's ``sleep infinity``)."""
    if app is not None:
        await app.start()
    await ready_until_signalled()
    if app is not None:
        await app.stop()


def main(argv: list[str] | None = None) -> int:
    """One app as a process inside its pod's network namespace (``mesh.demo.podmode`` starts it)."""
    parser = argparse.ArgumentParser(prog="python -m mesh.demo.apps")
    parser.add_argument("--pod", required=True)
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--ip", required=True)
    parser.add_argument("--app", required=True)
    parser.add_argument("--version", default="v1")
    args = parser.parse_args(argv)
    # sleep (Istio's samples/sleep, a client pod whose container runs `sleep infinity`) listens nowhere
    app = None if args.app == "sleep" else BookinfoApp(args.pod, args.ip, args.app, args.version, args.namespace,
                                                       capture=True)
    asyncio.run(_run_in_pod(app))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
