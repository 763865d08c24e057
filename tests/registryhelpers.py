"""Kubernetes and Istio objects for registry and config store tests, built in memory."""

from __future__ import annotations

import json

from mesh.clock import VirtualClock
from mesh.kube.client import ReplayClient
from mesh.kube.trace import parse_trace


def replay(*objects: dict, clock: VirtualClock | None = None) -> ReplayClient:
    """A replayed cluster holding ``objects`` at t=0."""
    lines = [json.dumps({"trace": "mesh/v1", "name": "inline", "domain_suffix": "cluster.local"})]
    lines += [json.dumps({"t": 0, "type": "ADDED", "object": o}) for o in objects]
    return ReplayClient(parse_trace("\n".join(lines)), clock or VirtualClock())


def namespace(name: str, labels: dict | None = None) -> dict:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels or {}}}


def node(name: str, region: str = "", zone: str = "", subzone: str = "") -> dict:
    labels = {k: v for k, v in (("topology.kubernetes.io/region", region), ("topology.kubernetes.io/zone", zone),
                                ("topology.istio.io/subzone", subzone)) if v}
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}}


def service(name: str, ns: str = "default", ports: list[dict] | None = None, cluster_ip: str = "10.0.0.1",
            selector: dict | None = None, **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
            "spec": {"clusterIP": cluster_ip, "ports": ports or [{"name": "http", "port": 80}],
                     "selector": selector if selector is not None else {"app": name}, **spec}}


def pod(name: str, ip: str, ns: str = "default", labels: dict | None = None, ready: bool = True,
        node_name: str = "", sa: str = "default", annotations: dict | None = None, phase: str = "Running") -> dict:
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels or {}, "annotations": annotations or {}},
        "spec": {"serviceAccountName": sa, "nodeName": node_name,
                 "containers": [{"name": "app", "ports": [{"name": "http-web", "containerPort": 8080,
                                                           "protocol": "TCP"}]}]},
        "status": {"phase": phase, "podIP": ip,
                   "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


def endpoint_slice(name: str, service_name: str, endpoints: list[tuple[str, str | None, bool | None]],
                   ns: str = "default", ports: list[dict] | None = None) -> dict:
    """``endpoints``: (ip, pod name or None, ready or None)."""
    eps = []
    for ip, pod_name, ready in endpoints:
        ep: dict = {"addresses": [ip]}
        if ready is not None:
            ep["conditions"] = {"ready": ready}
        if pod_name:
            ep["targetRef"] = {"kind": "Pod", "name": pod_name, "namespace": ns}
        eps.append(ep)
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name, "namespace": ns, "labels": {"kubernetes.io/service-name": service_name}},
            "addressType": "IPv4", "endpoints": eps, "ports": ports or [{"name": "http", "port": 8080}]}


def istio(kind: str, name: str, spec: dict, ns: str = "default", version: str = "v1beta1",
          group: str = "networking.istio.io", labels: dict | None = None, annotations: dict | None = None) -> dict:
    meta: dict = {"name": name, "namespace": ns}
    if labels:
        meta["labels"] = labels
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": f"{group}/{version}", "kind": kind, "metadata": meta, "spec": spec}
