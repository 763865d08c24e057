"""Server-side printing: the ``Table`` answers behind ``kubectl get``'s columns.

kubectl does not know what a Pod's READY column means; it asks the server for
``application/json;as=Table;g=meta.k8s.io;v=v1`` and prints the columns it gets. Built-in
kinds have hand-written printers in kube-apiserver; a CRD gets NAME/AGE plus its
``additionalPrinterColumns``. Here: pods (READY, STATUS, RESTARTS, AGE), services,
deployments, namespaces, the Istio CRDs' printer columns, and NAME/AGE for everything else.

Istio's CRDs declare their printer columns in
https://github.com/istio/istio/blob/1.19.0/manifests/charts/base/crds/crd-all.gen.yaml
(e.g. VirtualService's Gateways and Hosts).
"""

from __future__ import annotations

import datetime

from mesh.kube.kinds import Kind

TABLE_API_VERSIONS = ("v1", "v1beta1")


def wants_table(accept: str) -> str | None:
    """The meta.k8s.io version of Table asked for in ``Accept``, if any (first entry wins)."""
    for entry in accept.split(","):
        params = dict(p.strip().split("=", 1) for p in entry.split(";")[1:] if "=" in p)
        if params.get("as") == "Table" and params.get("g") == "meta.k8s.io":
            if params.get("v") in TABLE_API_VERSIONS:
                return params["v"]
    return None


def human_duration(seconds: float) -> str:
    """kubectl's AGE format (apimachinery's HumanDuration): 45s, 3m20s, 5h, 3d4h, 2y."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d{hours % 24}h" if hours % 24 else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y{days}d" if days else f"{hours // 24 // 365}y"
    return f"{hours // 24 // 365}y"


def age(obj: dict, now: datetime.datetime | None = None) -> str:
    stamp = (obj.get("metadata") or {}).get("creationTimestamp")
    if not stamp:
        return "<unknown>"
    created = datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
    now = now or datetime.datetime.now(datetime.UTC)
    return human_duration((now - created).total_seconds())


# -- per-kind printers ---------------------------------------------------------------------

def _pod_status(pod: dict) -> str:
    """What kubectl shows in STATUS: a waiting/terminated container's reason beats the phase."""
    status = pod.get("status") or {}
    reason = status.get("reason") or status.get("phase") or "Unknown"
    for cs in status.get("containerStatuses") or []:
        state = cs.get("state") or {}
        if (state.get("waiting") or {}).get("reason"):
            reason = state["waiting"]["reason"]
        elif (state.get("terminated") or {}).get("reason"):
            reason = state["terminated"]["reason"]
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        reason = "Terminating"
    return reason


def _pod_row(pod: dict) -> list:
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    statuses = status.get("containerStatuses") or []
    ready = sum(1 for c in statuses if c.get("ready"))
    restarts = sum(int(c.get("restartCount") or 0) for c in statuses)
    return [f"{ready}/{len(spec.get('containers') or [])}", _pod_status(pod), str(restarts), age(pod),
            status.get("podIP") or "<none>", spec.get("nodeName") or "<none>"]


def _ports(svc: dict) -> str:
    ports = (svc.get("spec") or {}).get("ports") or []
    shown = []
    for p in ports:
        text = f"{p.get('port')}"
        if p.get("nodePort"):
            text += f":{p['nodePort']}"
        shown.append(f"{text}/{p.get('protocol', 'TCP')}")
    return ",".join(shown) or "<none>"


def _service_row(svc: dict) -> list:
    spec = svc.get("spec") or {}
    external = ",".join(spec.get("externalIPs") or []) or (
        spec.get("externalName") or ("<pending>" if spec.get("type") == "LoadBalancer" else "<none>"))
    selector = ",".join(f"{k}={v}" for k, v in sorted((spec.get("selector") or {}).items())) or "<none>"
    return [spec.get("type", "ClusterIP"), spec.get("clusterIP") or "<none>", external, _ports(svc), age(svc),
            selector]


def _deployment_row(d: dict) -> list:
    spec, status = d.get("spec") or {}, d.get("status") or {}
    return [f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 1)}", status.get("updatedReplicas", 0),
            status.get("availableReplicas", 0), age(d)]


def _joined(value) -> str:
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return "" if value is None else str(value)


def _spec(field: str):
    return lambda obj: _joined((obj.get("spec") or {}).get(field))


def _col(name: str, kind: str = "string", priority: int = 0, fmt: str = "") -> dict:
    return {"name": name, "type": kind, "format": fmt, "description": name, "priority": priority}


# (columns after NAME, function giving the cells after the name)
_PRINTERS = {
    ("", "Pod"): ([_col("Ready"), _col("Status"), _col("Restarts"), _col("Age"), _col("IP", priority=1),
                   _col("Node", priority=1)], _pod_row),
    ("", "Service"): ([_col("Type"), _col("Cluster-IP"), _col("External-IP"), _col("Port(s)"), _col("Age"),
                       _col("Selector", priority=1)], _service_row),
    ("apps", "Deployment"): ([_col("Ready"), _col("Up-to-date", "integer"), _col("Available", "integer"),
                              _col("Age")], _deployment_row),
    ("", "Namespace"): ([_col("Status"), _col("Age")],
                        lambda o: [(o.get("status") or {}).get("phase", "Active"), age(o)]),
    ("networking.istio.io", "VirtualService"): ([_col("Gateways"), _col("Hosts"), _col("Age")],
                                                lambda o: [_spec("gateways")(o), _spec("hosts")(o), age(o)]),
    ("networking.istio.io", "DestinationRule"): ([_col("Host"), _col("Age")],
                                                 lambda o: [_spec("host")(o), age(o)]),
    ("networking.istio.io", "ServiceEntry"): ([_col("Hosts"), _col("Location"), _col("Resolution"), _col("Age")],
                                              lambda o: [_spec("hosts")(o), _spec("location")(o),
                                                         _spec("resolution")(o), age(o)]),
}


def table(kind: Kind, objects: list[dict], resource_version: str, table_version: str = "v1",
          include_object: str = "Metadata") -> dict:
    """A ``meta.k8s.io`` Table of ``objects``; each row carries the object (or its metadata)."""
    extra, cells = _PRINTERS.get((kind.group, kind.kind), ([_col("Age")], lambda o: [age(o)]))
    columns = [_col("Name", fmt="name")] + extra
    rows = []
    for obj in objects:
        row = {"cells": [obj["metadata"]["name"], *cells(obj)]}
        if include_object == "Object":
            row["object"] = obj
        elif include_object != "None":
            row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                             "metadata": obj.get("metadata", {})}
        rows.append(row)
    return {"kind": "Table", "apiVersion": f"meta.k8s.io/{table_version}",
            "metadata": {"resourceVersion": resource_version}, "columnDefinitions": columns, "rows": rows}
