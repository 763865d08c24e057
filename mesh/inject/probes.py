"""Rewriting the app's HTTP/TCP/gRPC probes so the kubelet asks pilot-agent, not the app.

Go: https://github.com/istio/istio/blob/1.19.0/pkg/kube/inject/app_probe.go#L67-L246 (and the call in
``applyRewrite`` https://github.com/istio/istio/blob/1.19.0/pkg/kube/inject/webhook.go#L720-L774).

With mTLS on, the kubelet (outside the mesh) cannot reach the app's port through the sidecar. So
each probe is rewritten to ``/app-health/<container>/{readyz,livez,startupz}`` on the agent's
status port (15020), and the original probes travel to the agent in ``ISTIO_KUBE_APP_PROBERS``
(JSON), which performs them from inside the pod.
"""

from __future__ import annotations

import copy
import json

PROXY = "istio-proxy"
ENV_NAME = "ISTIO_KUBE_APP_PROBERS"
_KINDS = (("readinessProbe", "readyz"), ("livenessProbe", "livez"), ("startupProbe", "startupz"))


def should_rewrite(annotations: dict, values: dict) -> bool:
    value = (annotations or {}).get("sidecar.istio.io/rewriteAppHTTPProbers")
    if value is not None and value.lower() in ("1", "t", "true", "0", "f", "false"):
        return value.lower() in ("1", "t", "true")
    return bool(((values or {}).get("sidecarInjectorWebhook") or {}).get("rewriteAppHTTPProbe", False))


def _app_containers(pod: dict) -> list[dict]:
    spec = pod.get("spec") or {}
    return [c for c in (spec.get("initContainers") or []) + (spec.get("containers") or []) if c.get("name") != PROXY]


def dump_app_probers(pod: dict, status_port: int) -> str:
    """``DumpAppProbers``: the probes to hand to the agent, keyed by their new URL path."""
    out = {}
    for c in _app_containers(pod):
        named = {p["name"]: p["containerPort"] for p in c.get("ports") or [] if p.get("name")}
        for field, suffix in _KINDS:
            probe = c.get(field)
            if not probe:
                continue
            prober = {}
            if "httpGet" in probe:
                prober["httpGet"] = copy.deepcopy(probe["httpGet"])
            elif "tcpSocket" in probe:
                prober["tcpSocket"] = copy.deepcopy(probe["tcpSocket"])
            elif "grpc" in probe:
                prober["grpc"] = copy.deepcopy(probe["grpc"])
            else:
                continue
            if probe.get("timeoutSeconds"):
                prober["timeoutSeconds"] = probe["timeoutSeconds"]
            action = prober.get("httpGet") or prober.get("tcpSocket")
            if action is not None:
                port = action.get("port")
                if isinstance(port, str) and not port.isdigit():
                    if port not in named:
                        continue  # a named port the container does not declare: leave it
                    action["port"] = named[port]
                elif port is not None and int(port) == status_port:
                    continue  # already pointing at the agent
            out[f"/app-health/{c['name']}/{suffix}"] = prober
    return json.dumps(out, separators=(",", ":"), sort_keys=True) if out else ""


def rewrite_probes(pod: dict, status_port: int) -> None:
    """``patchRewriteProbe``: point every app probe at the agent's status port (in place)."""
    port = int((pod.get("metadata", {}).get("annotations") or {}).get("status.sidecar.istio.io/port", status_port))
    for c in _app_containers(pod):
        for field, suffix in _KINDS:
            probe = c.get(field)
            if not probe or not any(k in probe for k in ("httpGet", "tcpSocket", "grpc")):
                continue
            http = dict(probe.get("httpGet") or {})
            http["port"] = port
            http["path"] = f"/app-health/{c['name']}/{suffix}"
            if http.get("scheme") == "HTTPS":
                http["scheme"] = "HTTP"
            probe.pop("tcpSocket", None)
            probe.pop("grpc", None)
            probe["httpGet"] = http


def merge_or_append(env: list[dict], probers: str, previously_injected: bool) -> list[dict]:
    """Add ``ISTIO_KUBE_APP_PROBERS``; on re-injection merge with the old value (old entries win)."""
    if not previously_injected:
        return env + [{"name": ENV_NAME, "value": probers}]
    for i, var in enumerate(env):
        if var.get("name") == ENV_NAME:
            try:
                merged = {**json.loads(probers), **json.loads(var.get("value") or "{}")}
            except json.JSONDecodeError:
                return env
            env[i] = {"name": ENV_NAME, "value": json.dumps(merged, separators=(",", ":"), sort_keys=True)}
            return env
    return env
