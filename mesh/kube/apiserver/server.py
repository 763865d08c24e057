"""``ApiServer``: a trace replayed into a store, served as the Kubernetes REST API (aiohttp).

The replay API server lets real Kubernetes tools look at a trace: kubectl, the ``kubernetes``
Python client, and mesh's own ``LiveClient`` (so ``mesh serve --kubeconfig`` runs the
live-cluster code path against a trace). It is the counterpart of the fake client istiod's
tests use (https://github.com/istio/istio/blob/1.19.0/pkg/kube/client.go#L219-L246, which
even has to work around events lost between a list and its watch), but out of process and
over HTTP, so the client code under test is the real one.

The trace's events are applied at ``t / speed`` seconds after start (``speed=0``: all at
once before ``start()`` returns; ``speed=None``: only when ``advance_to(t)`` is called, for
notebooks and tests that want to step through a trace). Each applied event is one write with
the next resourceVersion, so watchers see the trace as a cluster's watch stream.

Two ways to run it::

    server = ApiServer("traces/bookinfo.jsonl", speed=0)     # in an asyncio program
    await server.start(); ...; await server.stop()

    with ApiServer(trace, speed=None) as server:            # anywhere else: a thread runs it
        server.write_kubeconfig("kubeconfig")
        server.advance_to(5.0)
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import os
import tempfile
import threading
from pathlib import Path

from aiohttp import web

from mesh.kube import kinds
from mesh.kube.apiserver import admission, certs, discovery, errors, openapi
from mesh.kube.apiserver.admission import Admission
from mesh.kube.apiserver.resources import Resources, Target, decode_body, truthy
from mesh.kube.apiserver.store import Store
from mesh.kube.apiserver.watch import serve_watch
from mesh.kube.trace import Trace, TraceEvent, load_trace
from mesh.util.web import serve_app

log = logging.getLogger(__name__)


def _json(body: dict, status: int = 200, content_type: str = "application/json") -> web.Response:
    return web.Response(status=status, body=json.dumps(body, separators=(",", ":")).encode(),
                        headers={"Content-Type": content_type})


@web.middleware
async def _admission_warnings(request: web.Request, handler):
    """The admission webhooks' warnings for this request, as kube-apiserver sends them:
    one ``Warning: 299 - "<text>"`` header each (RFC 7234), on success and on denial alike."""
    token = admission.WARNINGS.set([])
    try:
        response = await handler(request)
        for text in admission.WARNINGS.get() or []:
            response.headers.add("Warning", warning_header(text))
        return response
    finally:
        admission.WARNINGS.reset(token)


def warning_header(text: str) -> str:
    """``299 - "text"`` with quotes and backslashes escaped; control characters (not allowed in a
    header) become spaces."""
    clean = "".join(c if c.isprintable() else " " for c in text)
    return '299 - "' + clean.replace("\\", "\\\\").replace('"', '\\"') + '"'


@web.middleware
async def _status_errors(request: web.Request, handler):
    """Every failure leaves as a Kubernetes Status; the server itself carries on."""
    try:
        return await handler(request)
    except errors.StatusError as err:
        return _json(err.status(), err.code)
    except web.HTTPNotFound:
        return _json(errors.not_found_path(request.path).status(), 404)
    except web.HTTPMethodNotAllowed:
        return _json(errors.method_not_allowed(request.method).status(), 405)
    except Exception as err:  # a bug here must not take the server down
        log.exception("internal error serving %s %s", request.method, request.path)
        return _json(errors.StatusError(500, "InternalError", f"Internal error occurred: {err}").status(), 500)


class ApiServer:
    """The replay API server. See the module docstring."""

    def __init__(self, trace: Trace | str | Path | None = None, *, port: int = 0, speed: float | None = 0.0,
                 tls: bool = False, history: int = 10_000, kube_version: str = discovery.DEFAULT_KUBE_VERSION,
                 bookmark_interval: float = 1.0, host: str = "127.0.0.1"):
        if trace is not None and not isinstance(trace, Trace):
            trace = load_trace(trace)
        self.trace = trace
        self.requested_port = port
        self.speed = speed
        self.tls = tls
        self.kube_version = kube_version
        self.bookmark_interval = bookmark_interval
        self.host = host
        self.store = Store(history=history)
        self.admission = Admission(self.store)
        self.resources = Resources(self.store, self.admission)
        self.port: int | None = None
        self.applied = 0  # how many trace events have been applied
        self.replay_time = 0.0  # the trace time reached so far
        self.aggregated_versions_served: set[str] = set()  # apidiscovery versions clients asked for
        self._cert = certs.make_serving_cert() if tls else None
        self._runner: web.AppRunner | None = None
        self._replay_task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # -- addresses ------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    @property
    def ca_pem(self) -> bytes | None:
        return self._cert.ca_pem if self._cert else None

    def kubeconfig(self) -> str:
        return certs.kubeconfig(self.url, self.ca_pem)

    def write_kubeconfig(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(self.kubeconfig(), encoding="utf-8")
        return path

    # -- lifecycle (asyncio) --------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        app = web.Application(middlewares=[_admission_warnings, _status_errors], client_max_size=64 * 1024 * 1024)
        app.router.add_get("/version", self._version)
        app.router.add_get("/version/", self._version)
        for probe in ("/healthz", "/readyz", "/livez"):
            app.router.add_get(probe, self._ok)
        app.router.add_get("/api", self._api)
        app.router.add_get("/api/", self._api)
        app.router.add_get("/apis", self._apis)
        app.router.add_get("/apis/", self._apis)
        app.router.add_get("/openapi/v3", self._openapi_root)
        app.router.add_get("/openapi/v3/{path:.+}", self._openapi_doc)
        app.router.add_route("*", "/api/{path:.+}", self._resource)
        app.router.add_route("*", "/apis/{path:.+}", self._resource)
        ssl_context = self._ssl_context() if self.tls else None
        self._runner, self.port = await serve_app(app, self.host, self.requested_port, ssl_context,
                                                  shutdown_timeout=0.5)
        await self._start_replay()

    async def stop(self) -> None:
        if self._replay_task is not None:
            self._replay_task.cancel()
            try:
                await self._replay_task
            except asyncio.CancelledError:
                pass
            self._replay_task = None
        self.store.close_watchers()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _ssl_context(self):
        import ssl

        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        with tempfile.TemporaryDirectory() as folder:  # load_cert_chain reads files only
            cert, key = Path(folder, "tls.crt"), Path(folder, "tls.key")
            cert.write_bytes(self._cert.cert_pem + self._cert.ca_pem)
            key.write_bytes(self._cert.key_pem)
            os.chmod(key, 0o600)
            context.load_cert_chain(cert, key)
        return context

    # -- replay ---------------------------------------------------------------------------
    async def _start_replay(self) -> None:
        if self.trace is None:
            return
        if self.speed == 0:
            await self.advance_to(float("inf"))
        else:
            await self.advance_to(0.0)
            if self.speed is not None:
                self._replay_task = asyncio.get_running_loop().create_task(self._replay_on_clock())

    async def _replay_on_clock(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        for event in self.trace.events[self.applied:]:
            delay = start + event.t / self.speed - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await self.advance_to(event.t)

    async def advance_to(self, t: float) -> int:
        """Apply every trace event with time <= ``t`` not applied yet; return how many."""
        if self.trace is None:
            return 0
        count = 0
        while self.applied < len(self.trace.events) and self.trace.events[self.applied].t <= t:
            event = self.trace.events[self.applied]
            self.applied += 1
            await self.apply_event(event)
            count += 1
        self.replay_time = max(self.replay_time, min(t, self.trace.duration))
        return count

    async def apply_event(self, event: TraceEvent) -> dict:
        """One trace event as one write. Recorded objects keep their resourceVersion when it is
        newer than the store's; creates and updates go through the stored webhooks, but a trace
        records what happened, so a webhook that fails or denies does not stop the event."""
        obj = copy.deepcopy(event.object)
        kind = kinds.for_object(obj)
        if kind is not None and event.type != "DELETED":
            _, version = kinds.split_api_version(obj["apiVersion"])
            operation = "CREATE" if event.type == "ADDED" else "UPDATE"
            old = self.store.find(kind, obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
            obj = await self.admission.admit(operation, kind, version, obj, old, strict=False)
        return self.store.commit(event.type, obj, keep_version=True)

    # -- handlers -------------------------------------------------------------------------
    async def _ok(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _version(self, request: web.Request) -> web.Response:
        return _json(discovery.version_info(self.kube_version))

    def _aggregated(self, request: web.Request, core: bool) -> web.Response | None:
        version = discovery.wanted_aggregated_version(request.headers.get("Accept", ""))
        if version is None:
            return None
        self.aggregated_versions_served.add(version)
        return _json(discovery.aggregated(core, version), content_type=discovery.aggregated_content_type(version))

    async def _api(self, request: web.Request) -> web.Response:
        return self._aggregated(request, core=True) or _json(discovery.api_versions(f"{self.host}:{self.port}"))

    async def _apis(self, request: web.Request) -> web.Response:
        return self._aggregated(request, core=False) or _json(discovery.api_group_list())

    async def _openapi_root(self, request: web.Request) -> web.Response:
        return _json(openapi.root())

    async def _openapi_doc(self, request: web.Request) -> web.Response:
        parts = request.match_info["path"].split("/")
        group, version = ("", parts[1]) if parts[0] == "api" and len(parts) == 2 else (
            (parts[1], parts[2]) if parts[0] == "apis" and len(parts) == 3 else ("?", "?"))
        doc = openapi.document(group, version)
        if doc is None:
            raise errors.not_found_path(request.path)
        return _json(doc)

    def _target(self, request: web.Request) -> Target | tuple[str, str]:
        """Parse ``/api/v1/...`` or ``/apis/<g>/<v>/...`` into a Target, or (group, version)
        for a discovery request."""
        parts = [p for p in request.path.split("/") if p]
        if parts[0] == "api":
            group, version, rest = "", parts[1], parts[2:]
        else:
            if len(parts) < 3:
                raise errors.not_found_path(request.path)
            group, version, rest = parts[1], parts[2], parts[3:]
        if not rest:
            return group, version
        namespace = ""
        if rest[0] == "namespaces" and len(rest) >= 3 and rest[2] not in ("status", "finalize"):
            namespace, rest = rest[1], rest[2:]
        plural, name, sub = rest[0], rest[1] if len(rest) > 1 else "", "/".join(rest[2:])
        kind = discovery.resolve_resource(group, version, plural)
        if kind is None or (namespace and not kind.namespaced):
            raise errors.not_found_path(request.path)
        if sub not in ("", "status"):
            raise errors.not_found_path(request.path)
        return Target(kind, version, namespace, name, sub)

    async def _resource(self, request: web.Request) -> web.StreamResponse:
        parts = [p for p in request.path.split("/") if p]
        if parts[0] == "apis" and len(parts) == 2 and request.method == "GET":  # /apis/<group>
            group = discovery.api_group(parts[1])
            if group is None:
                raise errors.not_found_path(request.path)
            return _json(group)
        target = self._target(request)
        if isinstance(target, tuple):
            if request.method != "GET":
                raise errors.method_not_allowed(request.method)
            body = discovery.api_resource_list(*target)
            if body is None:
                raise errors.not_found_path(request.path)
            return _json(body)
        query = dict(request.query)
        accept = request.headers.get("Accept", "")
        content_type = request.headers.get("Content-Type", "")
        method = request.method
        if not target.name:
            if method == "GET":
                if truthy(query.get("watch")):
                    return await serve_watch(request, self.store, target, self.bookmark_interval)
                return _json(self.resources.list(target, query, accept))
            if method == "POST":
                if target.kind.namespaced and not target.namespace:
                    raise errors.method_not_allowed(method)
                status, obj = await self.resources.create(target, decode_body(await request.read(), content_type),
                                                          query)
                return _json(obj, status)
            raise errors.method_not_allowed(method)
        if target.kind.namespaced and not target.namespace:
            raise errors.not_found_path(request.path)
        if method == "GET":
            return _json(self.resources.get(target, query, accept))
        if method == "PUT":
            return _json(await self.resources.update(target, decode_body(await request.read(), content_type), query))
        if method == "PATCH":
            return _json(await self.resources.patch(target, await request.read(), content_type, query))
        if method == "DELETE":
            return _json(await self.resources.delete(target, query))
        raise errors.method_not_allowed(method)

    # -- running in a thread (tests, notebooks) -------------------------------------------
    def __enter__(self) -> ApiServer:
        return self.start_in_thread()

    def start_in_thread(self) -> ApiServer:
        """Start serving on a loop in a new thread; ``close()`` stops it. This is the way from
        a notebook or any code that makes blocking calls (kubectl, the ``kubernetes`` client,
        ``LiveClient``): those would block the very loop the server runs on."""
        ready = threading.Event()
        failure: list[BaseException] = []

        def main() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self.start())
            except BaseException as err:  # report to the starting thread
                failure.append(err)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self.stop())
            loop.close()

        self._thread = threading.Thread(target=main, name="mesh-apiserver", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            raise failure[0]
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop a server started with ``with`` (or ``__enter__``)."""
        if self._thread is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._thread = None

    def call(self, coroutine):
        """Run a coroutine on the server's loop from another thread; return its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=30)

    def run_until(self, t: float) -> int:
        """Thread-safe ``advance_to``: apply the trace up to time ``t``."""
        return self.call(self.advance_to(t))

    def objects(self) -> list[dict]:
        """A snapshot of every stored object, sorted by kind, namespace, name."""
        async def snapshot():
            return [copy.deepcopy(o) for _, o in sorted(self.store.objects.items())]
        if self._thread is not None:
            return self.call(snapshot())
        return [copy.deepcopy(o) for _, o in sorted(self.store.objects.items())]
