"""Tiny bookinfo apps: real HTTP servers on their pods' IPs, calling each other through their sidecars.

Istio's sample (https://github.com/istio/istio/tree/1.19.0/samples/bookinfo/src) has four
services in four languages; here each is a few lines of aiohttp that answer with their name,
version and pod, plus what they got from the services they call:

- productpage calls details and reviews,
- reviews v2 and v3 call ratings (v1 does not, as in the sample: v1 shows no stars),
- details and ratings call nobody.

Calls go to the caller's own sidecar, the HTTP proxy listener on ``<own pod IP>:15080``, with
the callee in the ``Host`` header (``reviews:9080``): there is no iptables redirect here
(DESIGN §6), so the app talks to its Envoy the way an app talks to an HTTP proxy. Which
reviews version answers is then Envoy's choice, made from the config the control plane sent.
"""

from __future__ import annotations

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
                 timeout: float = 5.0):
        self.pod_name, self.ip, self.app, self.version = pod_name, ip, app, version
        self.namespace = namespace
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
        try:
            async with self._session.get(f"http://{self.ip}:{SIDECAR_PORT}/", headers=headers) as resp:
                if resp.content_type == "application/json":
                    return await resp.json()
                return {"status": resp.status, "error": (await resp.text())[:200]}
        except (aiohttp.ClientError, TimeoutError) as err:
            return {"error": f"{type(err).__name__}: {err}"}
