"""``LiveClient``: the kube client on a real API server, with the official ``kubernetes`` package.

istiod's ``kube.Client`` (https://github.com/istio/istio/blob/1.19.0/pkg/kube/client.go#L98-L144)
hands out shared informers; each runs client-go's reflector: **list** the kind, then **watch**
from the list's resourceVersion, and when the server answers ``410 Gone`` (the version was
compacted away) list again and tell the handlers what changed in between. ``LiveClient`` does
the same with one thread per kind (Istio's informers are built on such a list function and
watch function, https://github.com/istio/istio/blob/1.19.0/pkg/config/schema/kubeclient/common.go#L78-L103):

* ``informer(kind)`` lists synchronously, so the informer has synced when it returns;
* a daemon thread then watches from that version and hands each event to the informer — on
  the asyncio loop with ``call_soon_threadsafe`` when a loop was given (the handlers then run
  on the loop thread, like everything else in ``mesh serve``), otherwise directly, under a
  lock;
* on 410 it re-lists and calls ``Informer.replace``, which emits the differences;
* ``close()`` stops every watch promptly by shutting its socket down.

Objects stay raw JSON (``ApiClient.call_api`` without the typed models): informers, traces
and the recorder all speak the API's own JSON, and the typed models would drop unknown fields.

Do not call ``informer()`` on the event loop that also runs an in-process ``ApiServer``: the
list is a blocking HTTP call and would wait for a loop it is blocking. Run the server in its
own thread (``with ApiServer(...)``) or process.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator

import kubernetes

from mesh.kube import kinds
from mesh.kube.client import ConflictError, KubeClient, NotFoundError, as_kind
from mesh.kube.informer import Informer
from mesh.kube.kinds import Kind

log = logging.getLogger(__name__)

WATCH_TIMEOUT_SECONDS = 300  # each watch request asks the server to end after this; then it is renewed
NOT_SERVED_RETRY = 5.0  # seconds between lists of a kind the server does not serve (a CRD not installed)


class ApiError(Exception):
    """A non-2xx answer; ``status`` is the HTTP code and ``body`` the Status object, if any."""

    def __init__(self, status: int, body: dict | None, what: str):
        self.status = status
        self.body = body or {}
        super().__init__(f"{what}: HTTP {status}: {self.body.get('message', '')}".rstrip(": "))


class Gone(Exception):
    """The watch's resourceVersion is too old (410): list again."""


def collection_path(kind: Kind, namespace: str = "") -> str:
    base = f"/apis/{kind.group}/{kind.version}" if kind.group else f"/api/{kind.version}"
    if kind.namespaced and namespace:
        return f"{base}/namespaces/{namespace}/{kind.plural}"
    return f"{base}/{kind.plural}"


def item_path(kind: Kind, name: str, namespace: str = "") -> str:
    return f"{collection_path(kind, namespace)}/{urllib.parse.quote(name, safe='')}"


class RawApi:
    """Raw-JSON REST calls through a ``kubernetes.client.ApiClient`` (its auth, TLS and proxy
    settings come from the kubeconfig)."""

    POOL_SIZE = 128  # one connection per watched kind, plus writes: urllib3's default of 10 is too few

    def __init__(self, kubeconfig: str, context: str | None = None):
        configuration = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(config_file=str(kubeconfig), context=context,
                                           client_configuration=configuration)
        configuration.connection_pool_maxsize = self.POOL_SIZE
        self.api_client = kubernetes.client.ApiClient(configuration)

    def request(self, method: str, path: str, query: list[tuple[str, str]] | None = None, body: dict | None = None,
                content_type: str = "application/json", timeout: float | tuple | None = 30):
        """Send one request; return the urllib3 response (not read yet)."""
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        method, url, headers, body, _ = self.api_client.param_serialize(
            method=method, resource_path=path, query_params=query or [], header_params=headers, body=body,
            auth_settings=["BearerToken"])
        return self.api_client.call_api(method, url, header_params=headers, body=body,
                                        _request_timeout=timeout).response

    def json(self, method: str, path: str, query: list[tuple[str, str]] | None = None, body: dict | None = None,
             content_type: str = "application/json") -> dict:
        """Send one request and decode the JSON answer; ApiError for a non-2xx status."""
        resp = self.request(method, path, query, body, content_type)
        data = resp.data
        try:
            decoded = json.loads(data) if data else {}
        except ValueError:
            decoded = {"message": data[:200].decode(errors="replace")}
        if not 200 <= resp.status < 300:
            raise ApiError(resp.status, decoded if isinstance(decoded, dict) else None, f"{method} {path}")
        return decoded

    def list(self, kind: Kind) -> tuple[list[dict], str]:
        """Every object of ``kind`` in all namespaces, with apiVersion/kind filled in (list items
        of built-in kinds come without them), and the list's resourceVersion."""
        body = self.json("GET", collection_path(kind))
        items = [{**item, "apiVersion": kind.api_version, "kind": kind.kind} for item in body.get("items") or []]
        return items, str((body.get("metadata") or {}).get("resourceVersion", ""))

    def watch(self, kind: Kind, resource_version: str, on_response=None) -> Iterator[tuple[str, dict]]:
        """Yield (type, object) from one watch request; BOOKMARKs come through too. Raises Gone on 410."""
        query = [("watch", "true"), ("resourceVersion", resource_version), ("allowWatchBookmarks", "true"),
                 ("timeoutSeconds", str(WATCH_TIMEOUT_SECONDS))]
        resp = self.request("GET", collection_path(kind), query, timeout=(10, WATCH_TIMEOUT_SECONDS + 30))
        if on_response is not None:
            on_response(resp)
        try:
            if resp.status == 410:
                raise Gone()
            if not 200 <= resp.status < 300:
                raise ApiError(resp.status, _try_json(resp.data), f"watch {kind}")
            buffer = b""
            for chunk in resp.stream(amt=None, decode_content=False):
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    obj = event.get("object") or {}
                    if event.get("type") == "ERROR":
                        if obj.get("code") == 410:
                            raise Gone()
                        raise ApiError(int(obj.get("code") or 500), obj, f"watch {kind}")
                    obj.setdefault("apiVersion", kind.api_version)
                    obj.setdefault("kind", kind.kind)
                    yield event["type"], obj
        finally:
            resp.release_conn()

    def close(self) -> None:
        self.api_client.close()


def _try_json(data: bytes) -> dict | None:
    try:
        decoded = json.loads(data)
        return decoded if isinstance(decoded, dict) else None
    except ValueError:
        return None


def shutdown_response(resp) -> None:
    """Unblock a thread reading a streaming response, from another thread."""
    try:
        sock = getattr(getattr(resp, "connection", None), "sock", None)
        if sock is not None:
            sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class LiveClient(KubeClient):
    """The kube client of a real (or replay) API server. See the module docstring."""

    def __init__(self, kubeconfig: str, loop: asyncio.AbstractEventLoop | None = None, context: str | None = None,
                 domain_suffix: str = "cluster.local"):
        self.api = RawApi(kubeconfig, context)
        self.loop = loop
        self.domain_suffix = domain_suffix
        self._informers: dict[tuple[str, str], Informer] = {}
        self._lock = threading.RLock()  # guards the informers when no loop is given
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._responses: set = set()  # open watch responses, shut down by close()

    # -- informers ------------------------------------------------------------------------
    def informer(self, kind: Kind | str) -> Informer:
        kind = as_kind(kind)
        key = (kind.group, kind.kind)
        with self._lock:
            if key in self._informers:
                return self._informers[key]
            informer = Informer(kind)
            rv: str | None
            try:
                items, rv = self.api.list(kind)
                informer.replace(items)
            except ApiError as err:
                if err.status != 404:
                    raise
                # A CRD that is not installed (yet): empty and synced, as istiod treats a CRD
                # it does not know; the watch thread keeps listing until it appears.
                log.info("%s is not served by the cluster; will look again every %ss", kind, NOT_SERVED_RETRY)
                informer.mark_synced()
                rv = None
            self._informers[key] = informer
        thread = threading.Thread(target=self._watch_loop, args=(kind, informer, rv), daemon=True,
                                  name=f"mesh-watch-{kind.plural}")
        self._threads.append(thread)
        thread.start()
        return informer

    def has_synced(self) -> bool:
        with self._lock:
            return all(i.has_synced() for i in self._informers.values())

    def _deliver(self, fn, *args) -> bool:
        """Run ``fn(*args)`` where informer code runs: on the loop, or here under the lock."""
        if self.loop is not None:
            try:
                self.loop.call_soon_threadsafe(fn, *args)
            except RuntimeError:  # the loop is closed: nothing left to tell
                return False
            return True
        with self._lock:
            fn(*args)
        return True

    def _watch_loop(self, kind: Kind, informer: Informer, rv: str | None) -> None:
        """Watch from ``rv``; ``rv=None`` means "list first" (after a 410, or a kind not served)."""
        backoff = 0.1
        while not self._stop.is_set():
            try:
                if rv is None:
                    items, rv = self.api.list(kind)
                    if not self._deliver(informer.replace, items):
                        return
                for event_type, obj in self.api.watch(kind, rv, self._track):
                    rv = str(obj.get("metadata", {}).get("resourceVersion") or rv)
                    if event_type != "BOOKMARK" and not self._deliver(informer.apply, event_type, obj):
                        return
                    backoff = 0.1
            except Gone:
                log.info("watch %s: resourceVersion %s expired (410), listing again", kind, rv)
                rv = None
            except ApiError as err:
                if err.status == 404:  # not served (any more): look again later
                    rv = None
                    self._stop.wait(NOT_SERVED_RETRY)
                    continue
                log.warning("watch %s: %s; retrying in %.1fs", kind, err, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
            except Exception as err:  # connection dropped, server restarting...: watch again
                if self._stop.is_set():
                    return
                log.debug("watch %s ended (%s); retrying in %.1fs", kind, err, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                self._untrack()

    def _track(self, resp) -> None:
        with self._lock:
            self._responses.add(resp)
            threading.current_thread().mesh_response = resp  # type: ignore[attr-defined]
        if self._stop.is_set():
            shutdown_response(resp)

    def _untrack(self) -> None:
        resp = getattr(threading.current_thread(), "mesh_response", None)
        if resp is not None:
            with self._lock:
                self._responses.discard(resp)

    # -- writes ---------------------------------------------------------------------------
    def create(self, obj: dict) -> dict:
        kind = self._kind_of(obj)
        meta = obj.get("metadata") or {}
        try:
            return self.api.json("POST", collection_path(kind, meta.get("namespace", "")), body=obj)
        except ApiError as err:
            raise _translate(err) from err

    def update(self, obj: dict) -> dict:
        kind = self._kind_of(obj)
        meta = obj.get("metadata") or {}
        try:
            return self.api.json("PUT", item_path(kind, meta.get("name", ""), meta.get("namespace", "")), body=obj)
        except ApiError as err:
            raise _translate(err) from err

    def patch(self, kind: Kind | str, name: str, namespace: str, patch: dict | list,
              patch_type: str = "application/merge-patch+json") -> dict:
        k = as_kind(kind)
        try:
            return self.api.json("PATCH", item_path(k, name, namespace), body=patch, content_type=patch_type)
        except ApiError as err:
            raise _translate(err) from err

    def delete(self, kind: Kind | str, name: str, namespace: str = "") -> None:
        k = as_kind(kind)
        try:
            self.api.json("DELETE", item_path(k, name, namespace))
        except ApiError as err:
            raise _translate(err) from err

    @staticmethod
    def _kind_of(obj: dict) -> Kind:
        kind = kinds.for_object(obj)
        if kind is None:
            raise KeyError(f"unknown kind {obj.get('apiVersion')}/{obj.get('kind')}")
        return kind

    # -- shutdown -------------------------------------------------------------------------
    def close(self, timeout: float = 5.0) -> None:
        """Stop every watch thread (promptly: their sockets are shut down) and wait for them."""
        self._stop.set()
        with self._lock:
            responses = list(self._responses)
        for resp in responses:
            shutdown_response(resp)
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._threads = [t for t in self._threads if t.is_alive()]
        self.api.close()


def _translate(err: ApiError) -> Exception:
    if err.status == 404:
        return NotFoundError(str(err))
    if err.status == 409:
        return ConflictError(str(err))
    return err


__all__ = ["LiveClient", "RawApi", "ApiError", "Gone"]
