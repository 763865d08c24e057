"""The pod cache: which ready pod has which IP, and endpoints waiting for their pod.

Go: ``PodCache`` https://github.com/istio/istio/blob/1.19.0/pilot/pkg/serviceregistry/kube/controller/pod.go#L31-L316.

Only pods that *should be in endpoints* and are *Ready* are indexed by IP (``onEvent``,
pod.go#L145-L182): a pod still starting, finished (Succeeded/Failed), being deleted or without
an IP is left out. When a pod leaves the index it is reported to workload handlers as a delete.

An EndpointSlice can arrive before the pod it points to (informers are not ordered across
kinds). The endpoint is then skipped, and the slice is remembered under the pod's IP
(``queueEndpointEventOnPodArrival``, #L258-L263); when that pod becomes ready the slice is
processed again (``update``, #L230-L254).
"""

from __future__ import annotations

from collections.abc import Callable

PodKey = tuple[str, str]  # (namespace, name)


def pod_key(pod: dict) -> PodKey:
    meta = pod.get("metadata") or {}
    return (meta.get("namespace", ""), meta.get("name", ""))


def pod_ip(pod: dict) -> str:
    return ((pod.get("status") or {}).get("podIP")) or ""


def should_pod_be_in_endpoints(pod: dict) -> bool:
    """pod.go#L69-L86: not terminal, has an IP, not being deleted."""
    status = pod.get("status") or {}
    if status.get("phase") in ("Failed", "Succeeded"):
        return False
    if not status.get("podIP") and not status.get("podIPs"):
        return False
    return not (pod.get("metadata") or {}).get("deletionTimestamp")


def is_pod_ready(pod: dict) -> bool:
    """The Ready condition is True (pod.go#L98-L111)."""
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return condition.get("status") == "True"
    return False


class PodCache:
    def __init__(self, get_pod: Callable[[str, str], dict | None], resync_slice: Callable[[str, str], object],
                 proxy_update: Callable[[str], object]):
        self._get_pod = get_pod  # the informer's lister: (name, namespace) → pod
        self._resync_slice = resync_slice  # (slice name, namespace)
        self._proxy_update = proxy_update
        self.pods_by_ip: dict[str, PodKey] = {}
        self.ip_by_pod: dict[PodKey, str] = {}
        self.need_resync: dict[str, set[tuple[str, str]]] = {}  # ip → {(slice namespace, slice name)}

    def on_event(self, pod: dict, event: str) -> str | None:
        """Update the IP index; returns the event workload handlers should see (or None)."""
        ip = pod_ip(pod)
        if not ip:
            return None
        key = pod_key(pod)
        wanted = should_pod_be_in_endpoints(pod) and is_pod_ready(pod)
        if event == "add":
            if not wanted:
                return None
            self._update(ip, key)
        elif event == "update":
            if not wanted:
                if not self._delete_ip(ip, key):
                    return None
                event = "delete"
            else:
                self._update(ip, key)
        elif event == "delete":
            if not self._delete_ip(ip, key):
                return None
        return event

    def _delete_ip(self, ip: str, key: PodKey) -> bool:
        if self.pods_by_ip.get(ip) == key:
            del self.pods_by_ip[ip]
            self.ip_by_pod.pop(key, None)
            return True
        return False

    def _update(self, ip: str, key: PodKey) -> None:
        if self.pods_by_ip.get(ip) == key:
            return
        if key in self.ip_by_pod:  # the pod changed IP: forget the old one
            self.pods_by_ip.pop(self.ip_by_pod[key], None)
        self.pods_by_ip[ip] = key
        self.ip_by_pod[key] = ip
        for namespace, name in sorted(self.need_resync.pop(ip, set())):
            self._resync_slice(name, namespace)
        self._proxy_update(ip)

    def queue_endpoint_event_on_pod_arrival(self, slice_namespace: str, slice_name: str, ip: str) -> None:
        self.need_resync.setdefault(ip, set()).add((slice_namespace, slice_name))

    def endpoint_deleted(self, slice_namespace: str, slice_name: str, ip: str) -> None:
        waiting = self.need_resync.get(ip)
        if waiting is not None:
            waiting.discard((slice_namespace, slice_name))
            if not waiting:
                del self.need_resync[ip]

    def label_filter(self, old: dict, cur: dict) -> None:
        """A pod's labels changed: its proxy needs a push (pod.go#L134-L142)."""
        ip = pod_ip(cur)
        if ip and (old.get("metadata") or {}).get("labels") != (cur.get("metadata") or {}).get("labels"):
            self._proxy_update(ip)

    def pod_by_ip(self, ip: str) -> dict | None:
        key = self.pods_by_ip.get(ip)
        return self._get_pod(key[1], key[0]) if key else None

    def pod_by_key(self, namespace: str, name: str) -> dict | None:
        return self._get_pod(name, namespace)
