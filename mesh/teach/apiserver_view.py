"""Notebook helpers for the replay API server: the ``kubernetes`` client's view of a trace.

Nothing here is part of the mini-istiod. Notebook 01 uses it to show a trace served as a
Kubernetes API (``mesh.kube.apiserver.ApiServer``) through the official ``kubernetes`` package:
a pod list, a watch stream that receives events only when the notebook advances the trace, and
the registries that ``Server(ServerArgs(kubeconfig=...))`` and ``Server(ServerArgs(trace=...))``
build from the same trace. As in ``views``, rows are sorted or in the order they happened, and
nothing printed carries a port, a path or a wall-clock time.

Go counterpart, for orientation: the watch stream read here is what client-go's reflector reads
under every istiod informer, through the list and watch functions of
https://github.com/istio/istio/blob/1.19.0/pkg/config/schema/kubeclient/common.go#L78-L103.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from mesh.teach.views import TextView, table


def _meta(obj) -> tuple[str, str, str]:
    """(namespace/name, phase, resourceVersion) of a typed ``V1Pod`` (or any typed object)."""
    meta = obj.metadata
    name = f"{meta.namespace}/{meta.name}" if meta.namespace else meta.name
    status = getattr(obj, "status", None)
    phase = getattr(status, "phase", None) or "-"
    return name, phase, meta.resource_version or ""


def pods_table(pod_list) -> TextView:
    """A typed ``V1PodList`` (from ``CoreV1Api.list_pod_for_all_namespaces``) as a table, sorted by
    namespace/name, titled with the list's own resourceVersion (the version a watch resumes from)."""
    rows = sorted((*_meta(p)[:2], p.spec.node_name or "-", p.status.pod_ip if p.status else "-",
                   _meta(p)[2]) for p in pod_list.items)
    title = f"PodList at resourceVersion {pod_list.metadata.resource_version}: {len(rows)} pod(s)"
    return table(("namespace/name", "phase", "node", "pod IP", "resourceVersion"), rows, title=title)


def newest_version(api, kind: str = "Pod") -> int:
    """The resourceVersion of the newest change of ``kind`` the server's store has committed (0 if
    none): once a watch of that kind has delivered it, the watch has caught up with the trace."""
    from mesh.kube import kinds

    wanted = kinds.resolve(kind)  # "Pod", "pods", "vs", ...: resolved as kubectl does
    if wanted is None:
        raise KeyError(f"unknown kind {kind!r}")

    async def newest() -> int:
        return max((c.rv for c in api.store.changes_since(api.store.compacted, wanted)), default=0)

    return api.call(newest())


class WatchTap:
    """A ``kubernetes.watch.Watch`` stream read on a daemon thread.

    ``WatchTap(core.list_pod_for_all_namespaces, resource_version=rv)`` opens the watch at once;
    the events it delivers pile up until ``take()`` hands them over. ``wait_for(rv)`` blocks
    until an event at or past ``rv`` has arrived, so a notebook can advance the API server's trace
    and then show exactly the events that advance caused. ``stop()`` ends the stream (the
    ``Watch`` shuts its socket down) and joins the thread.
    """

    def __init__(self, list_function, **kwargs):
        import kubernetes

        self.watch = kubernetes.watch.Watch()
        self.events: list[dict] = []  # the kubernetes client's event dicts: type, object, raw_object
        self.error: BaseException | None = None
        self._stopping = False
        self._taken = 0
        # a watch from version N delivers only later changes: it has "caught up" to N already
        start = str(kwargs.get("resource_version") or "0")
        self._newest = int(start) if start.isdigit() else 0
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(list_function, kwargs), daemon=True,
                                        name="mesh-notebook-watch")
        self._thread.start()

    def _read(self, list_function, kwargs) -> None:
        try:
            for event in self.watch.stream(list_function, **kwargs):
                with self._changed:
                    self.events.append(event)
                    version = event["raw_object"].get("metadata", {}).get("resourceVersion", "0")
                    self._newest = max(self._newest, int(version))
                    self._changed.notify_all()
        except Exception as err:  # the stream ended: stop() (socket shut down) or a real failure
            if not self._stopping:
                self.error = err
        finally:
            with self._changed:
                self._changed.notify_all()

    def wait_for(self, version: int, timeout: float = 10.0) -> None:
        """Block until an event with resourceVersion >= ``version`` has arrived."""
        with self._changed:
            arrived = self._changed.wait_for(
                lambda: self._newest >= version or self.error is not None or not self._thread.is_alive(), timeout)
        if self.error is not None:
            raise self.error
        if not arrived or self._newest < version:
            raise TimeoutError(f"the watch did not deliver resourceVersion {version}")

    def take(self) -> list[dict]:
        """The events that arrived since the last ``take()``."""
        with self._changed:
            fresh = self.events[self._taken:]
            self._taken = len(self.events)
        return fresh

    def stop(self) -> None:
        self._stopping = True
        self.watch.stop()
        self._thread.join(timeout=5)


def step_through(api, tap: WatchTap, times: Iterable[float], kind: str = "Pod") -> TextView:
    """Advance the API server's trace to each time in turn; after each step, wait until ``tap``
    (a watch of ``kind``) has caught up, and list what it received. The first row of a step says
    how many trace events (of every kind) that advance applied."""
    rows = []
    for t in times:
        applied = api.run_until(t)
        tap.wait_for(newest_version(api, kind))
        events = tap.take()
        step = (f"{t:g}", applied)
        if not events:
            rows.append((*step, "-", "(nothing new)", "", ""))
        for i, event in enumerate(events):
            name, phase, version = _meta(event["object"])
            rows.append((*(step if i == 0 else ("", "")), event["type"], name, phase, version))
    return table(("advance_to (s)", "trace events applied", "watch event", "pod", "phase", "resourceVersion"),
                 rows)


def registries_compared(replayed, live) -> TextView:
    """Per service: ports and endpoints in two servers' registries (a trace and a kubeconfig), and
    whether the two agree on the service and on every endpoint of every port."""
    left, right = replayed.environment.service_discovery, live.environment.service_discovery
    theirs = {s.hostname: s for s in right.services()}
    hostnames = sorted({s.hostname for s in left.services()} | set(theirs))
    ours = {s.hostname: s for s in left.services()}
    rows = []
    for hostname in hostnames:
        a, b = ours.get(hostname), theirs.get(hostname)
        same = a == b and all(left.endpoints(hostname, p.port) == right.endpoints(hostname, p.port)
                              for p in (a.ports if a else ()))

        def count(reg, svc) -> str:
            return "-" if svc is None else str(sum(len(reg.endpoints(svc.hostname, p.port)) for p in svc.ports))

        rows.append((hostname, ", ".join(str(p.port) for p in (a or b).ports), count(left, a), count(right, b),
                     same))
    return table(("service", "ports", "endpoints (trace)", "endpoints (kubeconfig)", "same"), rows)
