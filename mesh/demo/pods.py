"""The demo's pods: which trace pods get an app and a sidecar, and on which loopback addresses.

A pod's identity for its Envoy is what pilot-agent is given through the downward API (the
``POD_NAME``, ``POD_NAMESPACE``, ``INSTANCE_IP`` and ``SERVICE_ACCOUNT`` variables of
https://github.com/istio/istio/blob/1.19.0/pilot/cmd/pilot-agent/options/options.go#L29-L41) plus
the pod's labels; here it comes straight from the trace's Pod object. Trace pods carry cluster
addresses (10.244.0.x); where the demo cannot give pods network namespaces it replays the trace
with loopback stand-ins (``mesh.kube.addresses.to_loopback``: 127.10.0.x, or another ``/24`` of
loopback with ``--subnet``, so two demos on one machine do not fight over addresses).

``sidecar_proxies`` models the sidecars of a replay without Envoys, for the push recorder: every pod
carrying the ``sidecar.istio.io/status`` annotation (the injector put an Envoy in it) is one, named by
the node a real mini pilot-agent would send for it (``mesh.agent.bootstrap``:
``sidecar~<ip>~<pod>.<ns>~...`` plus labels, IPs and service account in the metadata), parsed by
``parse_node_id`` as ADS parses it.
"""

from __future__ import annotations

from mesh.agent.bootstrap import PodIdentity, build_bootstrap, delta_from_env
from mesh.model.proxy import Proxy, parse_node_id
from mesh.xds.push_recorder import PushRecorder


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


def is_ingress_gateway(pod: dict) -> bool:
    """An ingress gateway pod with an IP (``istio: ingressgateway``, as the installer labels it): no
    app, an Envoy of type ``router``."""
    labels = (pod.get("metadata") or {}).get("labels") or {}
    return labels.get("istio") == "ingressgateway" and bool((pod.get("status") or {}).get("podIP"))


def pod_identity(pod: dict, domain: str = "cluster.local") -> PodIdentity:
    return PodIdentity.from_pod(pod, proxy_type="router" if is_ingress_gateway(pod) else "sidecar", domain=domain)


# -- the modelled sidecars of a replay (``mesh.xds.push_recorder``) ---------------------------------
SIDECAR_STATUS = "sidecar.istio.io/status"


def proxy_for_pod(pod: dict, domain: str = "cluster.local", captured: bool = False) -> Proxy:
    """The node this pod's sidecar would present on its first DiscoveryRequest (the mini pilot-agent's
    bootstrap), parsed as ADS parses it. By default the loopback fallback's node
    (``INTERCEPTION_MODE=NONE`` with an HTTP proxy port); ``captured``: the node of a sidecar in the
    pod's own network namespace behind istio-init's iptables, as in a cluster (``REDIRECT``, no
    HTTP proxy port — Istio's defaults)."""
    meta = pod.get("metadata") or {}
    ip = (pod.get("status") or {}).get("podIP") or ""
    identity = PodIdentity(meta["name"], meta.get("namespace", "default"), ip, dict(meta.get("labels") or {}),
                           domain=domain, service_account=(pod.get("spec") or {}).get("serviceAccountName") or "default")
    if captured:
        node = build_bootstrap(identity, "127.0.0.1", 15010, http_proxy_port=None, netns=True)["node"]
    else:
        node = build_bootstrap(identity, "127.0.0.1", 15010)["node"]  # only the node is used
    return parse_node_id(node["id"], node["metadata"])


def sidecar_proxies(kube_client, domain: str = "cluster.local") -> list[Proxy]:
    """A Proxy for every injected pod with an IP, sorted by namespace and name."""
    out = [proxy_for_pod(pod, domain) for pod in kube_client.list_objects("Pod")
           if SIDECAR_STATUS in ((pod.get("metadata") or {}).get("annotations") or {})
           and (pod.get("status") or {}).get("podIP")]
    return sorted(out, key=lambda p: (p.namespace, p.id))


def speaks_delta(pod: dict) -> bool:
    """Does this pod's sidecar use Delta xDS: ``ISTIO_DELTA_XDS`` in its istio-proxy container's
    environment, as pilot-agent reads it (``mesh.agent.bootstrap.delta_from_env``)?"""
    for container in (pod.get("spec") or {}).get("containers") or []:
        if container.get("name") == "istio-proxy":
            env = {e.get("name"): str(e.get("value", "")) for e in container.get("env") or [] if "value" in e}
            return delta_from_env(env)
    return False


def record_pushes(server, delta: bool = False) -> PushRecorder:
    """A push recorder on ``server`` whose proxies are the trace's injected pods (``sidecar_proxies``);
    those with ``ISTIO_DELTA_XDS=true`` (every one with ``delta``) are modelled as Delta streams."""
    def is_delta(proxy: Proxy) -> bool:
        if delta:
            return True
        pod = server.kube_client.get("Pod", proxy.id.rsplit(".", 1)[0], proxy.namespace)
        return pod is not None and speaks_delta(pod)
    return PushRecorder(server, lambda: sidecar_proxies(server.kube_client, server.ads.domain), is_delta)
