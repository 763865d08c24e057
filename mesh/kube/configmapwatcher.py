"""Watch one ConfigMap by name: call back with it on add and update, and with None on delete.

Go: ``configmapwatcher.NewController``
(https://github.com/istio/istio/blob/1.19.0/pkg/kube/watcher/configmapwatcher/configmapwatcher.go#L43-L62),
which istiod uses for the mesh config (``istio``) and the injector config
(``istio-sidecar-injector``) alike.
"""

from __future__ import annotations

from collections.abc import Callable

from mesh.kube.client import KubeClient


def watch_configmap(client: KubeClient, namespace: str, name: str,
                    on_change: Callable[[dict | None], object]) -> None:
    """Call ``on_change(cm)`` now if the ConfigMap exists, then on every change; ``None`` when deleted."""
    def ours(cm: dict) -> bool:
        meta = cm.get("metadata", {})
        return meta.get("name") == name and meta.get("namespace") == namespace

    client.informer("configmaps").add_event_handler(
        on_add=lambda cm: ours(cm) and on_change(cm),
        on_update=lambda old, cm: ours(cm) and on_change(cm),
        on_delete=lambda cm: ours(cm) and on_change(None),
    )
