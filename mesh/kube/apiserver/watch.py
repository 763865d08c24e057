"""Watch: a long HTTP response of JSON lines, one event each, until timeout or disconnect.

``GET /api/v1/pods?watch=true&resourceVersion=N`` streams every change after version N —
this is what client-go's reflector (and so every istiod informer) runs after its first list
(the ``WatchFunc`` of https://github.com/istio/istio/blob/1.19.0/pkg/config/schema/kubeclient/common.go#L78-L103).
The rules that matter to clients:

* ``resourceVersion`` unset or ``"0"``: start with a synthetic ADDED for every current object;
  ``N``: only changes after N; N older than the kept history: one ``ERROR`` event carrying
  a ``410 Expired`` Status (the client must list again);
* ``allowWatchBookmarks``: a ``BOOKMARK`` now and then, carrying only the newest version, so
  a client can resume from there without replaying;
* ``timeoutSeconds``: the server ends the stream after that long;
* selectors apply to the change: an object leaving the selection is a DELETED for this watch.
"""

from __future__ import annotations

import asyncio
import json
import time

from aiohttp import web

from mesh.kube.apiserver import errors, tables
from mesh.kube.apiserver.resources import Target, in_version, truthy
from mesh.kube.apiserver.store import Store, Watcher, make_predicate


def _event(event_type: str, obj: dict) -> bytes:
    return json.dumps({"type": event_type, "object": obj}, separators=(",", ":")).encode() + b"\n"


async def serve_watch(request: web.Request, store: Store, target: Target, bookmark_interval: float) -> web.StreamResponse:
    query = request.query
    predicate = make_predicate(target.namespace or None, query.get("labelSelector"), query.get("fieldSelector"))
    table_version = tables.wants_table(request.headers.get("Accept", ""))
    include_object = query.get("includeObject", "Metadata")
    timeout = float(query["timeoutSeconds"]) if query.get("timeoutSeconds", "").isdigit() else None
    bookmarks = truthy(query.get("allowWatchBookmarks"))
    rv_param = query.get("resourceVersion", "")
    if rv_param not in ("", "0") and not rv_param.isdigit():
        raise errors.bad_request(f'invalid resourceVersion "{rv_param}"')

    # Subscribe and read the backlog with no await in between: nothing can slip through.
    watcher = Watcher(target.kind, predicate)
    backlog: list[tuple[str, dict]] = []
    error: errors.StatusError | None = None
    if rv_param in ("", "0") or truthy(query.get("sendInitialEvents")):
        backlog = [("ADDED", o) for o in store.list(target.kind, predicate)]
    else:
        try:
            replay = Watcher(target.kind, predicate, asyncio.Queue())
            for change in store.changes_since(int(rv_param), target.kind):
                replay.offer(change)
            while not replay.queue.empty():
                backlog.append(replay.queue.get_nowait())
        except errors.StatusError as err:
            error = err
    if error is None:
        store.subscribe(watcher)

    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.enable_chunked_encoding()

    def encode(event_type: str, obj: dict) -> bytes:
        obj = in_version(obj, target)
        if table_version is not None:
            obj = tables.table(target.kind, [obj], obj["metadata"].get("resourceVersion", ""), table_version,
                               include_object)
        return _event(event_type, obj)

    try:
        await response.prepare(request)
        if error is not None:
            await response.write(_event("ERROR", error.status()))
            return response
        for event_type, obj in backlog:
            await response.write(encode(event_type, obj))
        if truthy(query.get("sendInitialEvents")):
            await response.write(_bookmark(target, store.rv, initial_end=True))
        deadline = time.monotonic() + timeout if timeout is not None else None
        while True:
            wait = bookmark_interval if bookmarks else None
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                wait = min(wait, left) if wait is not None else left
            try:
                item = await asyncio.wait_for(watcher.queue.get(), wait)
            except TimeoutError:
                if bookmarks:
                    await response.write(_bookmark(target, store.rv))
                continue
            if item is None:  # the server is stopping
                break
            await response.write(encode(*item))
    except ConnectionResetError:
        pass  # the client went away
    finally:
        store.unsubscribe(watcher)
    return response


def _bookmark(target: Target, rv: int, initial_end: bool = False) -> bytes:
    meta: dict = {"resourceVersion": str(rv)}
    if initial_end:
        meta["annotations"] = {"k8s.io/initial-events-end": "true"}
    return _event("BOOKMARK", {"kind": target.kind.kind, "apiVersion": target.api_version, "metadata": meta})

