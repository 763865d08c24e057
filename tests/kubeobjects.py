"""Small Kubernetes objects and a small bookinfo trace for the API server, live client and recorder tests."""

from __future__ import annotations


def ns(name: str, labels: dict | None = None) -> dict:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels or {}}}


def pod(name: str, app: str, node: str = "node-1", ready: bool = True, namespace: str = "bookinfo") -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": {"app": app}},
            "spec": {"nodeName": node, "containers": [{"name": app, "image": f"{app}:1"}]},
            "status": {"phase": "Running" if ready else "Pending", "podIP": "127.0.1.1",
                       "containerStatuses": [{"name": app, "ready": ready, "restartCount": 1, "image": f"{app}:1",
                                              "imageID": "", "state": {"running": {}}}]}}


def service(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "bookinfo"},
            "spec": {"clusterIP": "127.0.2.1", "selector": {"app": name},
                     "ports": [{"name": "http", "port": 9080, "protocol": "TCP"}]}}


def virtual_service(name: str) -> dict:
    return {"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
            "metadata": {"name": name, "namespace": "bookinfo"},
            "spec": {"hosts": [name], "http": [{"route": [{"destination": {"host": name}}]}]}}


def bookinfo_events() -> list:
    return [
        (0, "ADDED", ns("default")), (0, "ADDED", ns("bookinfo", {"istio-injection": "enabled"})),
        (0, "ADDED", pod("reviews-v1", "reviews")), (0, "ADDED", pod("productpage-v1", "productpage", "node-2")),
        (0, "ADDED", service("reviews")), (0, "ADDED", virtual_service("reviews")),
        (1, "ADDED", pod("ratings-v1", "ratings", ready=False)),
        (2, "MODIFIED", pod("ratings-v1", "ratings", ready=True)),
        (2, "ADDED", virtual_service("ratings")),
        (3, "DELETED", pod("reviews-v1", "reviews")),
    ]
