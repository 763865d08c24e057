"""The demo's pods: which trace pods get an app and a sidecar, and who they are to their Envoy.

A pod's identity for its Envoy is what pilot-agent is given through the downward API (the
``POD_NAME``, ``POD_NAMESPACE``, ``INSTANCE_IP`` and ``SERVICE_ACCOUNT`` variables of
https://github.com/istio/istio/blob/1.19.0/pilot/cmd/pilot-agent/options/options.go#L29-L41) plus
the pod's labels; here it comes straight from the trace's Pod object. Trace pods carry cluster
addresses (10.244.0.x); where the demo cannot give pods network namespaces it replays the trace
with loopback stand-ins (``mesh.kube.addresses.to_loopback``: 127.10.0.x, or another ``/24`` of
loopback with ``--subnet``, so two demos on one machine do not fight over addresses).
"""

from __future__ import annotations

from mesh.agent.bootstrap import PodIdentity


def is_mesh_pod(pod: dict) -> bool:
    """A running pod of the workload namespaces with an IP: istiod itself and pods that opt out of
    injection get neither an app nor a sidecar."""
    meta = pod.get("metadata", {})
    labels = meta.get("labels") or {}
    if meta.get("namespace") in ("istio-system", "kube-system"):
        return False
    if labels.get("sidecar.istio.io/inject") == "false":
        return False
    return bool((pod.get("status") or {}).get("podIP")) and "app" in labels


def pod_identity(pod: dict, domain: str = "cluster.local") -> PodIdentity:
    return PodIdentity.from_pod(pod, domain=domain)
