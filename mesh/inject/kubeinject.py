"""Injecting workloads in files, like ``istioctl kube-inject``: Pods, and the pod templates of
Deployments, ReplicaSets, StatefulSets, DaemonSets, Jobs and CronJobs.

Go: ``IntoResourceFile`` and ``IntoObject``
https://github.com/istio/istio/blob/1.19.0/pkg/kube/inject/inject.go#L546-L787.

Two differences from the webhook are istiod's own: the policy is always ``enabled`` (you asked
for injection by running the tool, so only the pod's own ``sidecar.istio.io/inject`` and the
hard rules can say no), and the template is ``sidecar`` unless the pod names others.
The workload's metadata is the "deployment" the template sees (``ISTIO_META_WORKLOAD_NAME``,
``ISTIO_META_OWNER``).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable

from mesh.inject.config import SIDECAR_TEMPLATE, InjectorConfig
from mesh.inject.inject import InjectionParams, inject_pod, proxy_config_for
from mesh.inject.policy import inject_required

WORKLOAD_KINDS = {  # kind → path from the object to its pod template
    ("", "Pod"): (),
    ("apps", "Deployment"): ("spec", "template"),
    ("apps", "ReplicaSet"): ("spec", "template"),
    ("apps", "StatefulSet"): ("spec", "template"),
    ("apps", "DaemonSet"): ("spec", "template"),
    ("batch", "Job"): ("spec", "template"),
    ("batch", "CronJob"): ("spec", "jobTemplate", "spec", "template"),
}


class KubeInjectError(ValueError):
    pass


def _group(api_version: str) -> str:
    return api_version.rpartition("/")[0]  # "" for the core group ("v1")


def into_object(obj: dict, config: InjectorConfig, values: dict, mesh_config: dict, revision: str = "",
                warn: Callable[[str], object] = lambda message: None) -> dict:
    """The object with its pod (template) injected; kinds without pods come back unchanged."""
    if obj.get("kind") == "List":
        out = copy.deepcopy(obj)
        out["items"] = [into_object(i, config, values, mesh_config, revision, warn) for i in obj.get("items") or []]
        return out
    api_version, kind = obj.get("apiVersion", ""), obj.get("kind", "")
    path = WORKLOAD_KINDS.get((_group(api_version), kind))
    if path is None:
        return obj
    out = copy.deepcopy(obj)
    template = out
    for step in path:
        template = template.get(step)
        if not isinstance(template, dict):
            raise KubeInjectError(f"{kind} {obj['metadata'].get('name', '')}: {'.'.join(path)} is required")
    deploy_meta = copy.deepcopy(out.get("metadata") or {})
    meta = template.setdefault("metadata", {})
    spec = template.setdefault("spec", {})
    name = meta.get("name") or deploy_meta.get("name", "")
    full_name = f"{deploy_meta['namespace']}/{name}" if deploy_meta.get("namespace") else name
    if spec.get("hostNetwork"):
        warn(f'===> Skipping injection because {kind} "{full_name}" has host networking enabled')
        return obj
    pod_meta = copy.deepcopy(meta)
    if not pod_meta.get("namespace") and deploy_meta.get("namespace"):
        pod_meta["namespace"] = deploy_meta["namespace"]
    decision = inject_required(InjectorConfig(policy="enabled"), spec, pod_meta)
    if not decision:
        warn(f'===> Skipping injection because {kind} "{full_name}" has sidecar injection disabled '
             f"({decision.reason})")
        return obj
    pod = {"metadata": copy.deepcopy(meta), "spec": copy.deepcopy(spec)}
    params = InjectionParams(
        pod=pod, config=dataclasses.replace(config, aliases={}),  # kube-inject resolves no aliases
        values=values, mesh_config=mesh_config,
        proxy_config=proxy_config_for(mesh_config, meta.get("annotations")), revision=revision,
        deploy_meta=deploy_meta, type_meta={"apiVersion": api_version, "kind": kind},
        default_templates=[SIDECAR_TEMPLATE], injected_annotations={},
    )
    result = inject_pod(params)
    template["metadata"] = result.pod["metadata"]
    template["spec"] = result.pod["spec"]
    return out
