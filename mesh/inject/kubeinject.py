"""Injecting workloads in files, like ``istioctl kube-inject``: Pods, and the pod templates of
Deployments, ReplicaSets, ReplicationControllers, StatefulSets, DaemonSets, Jobs, CronJobs and
OpenShift DeploymentConfigs, also as the items of a ``v1 List``.

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

# kind → (path to the pod's metadata, path to its spec). istioctl's scheme registers these kinds
# as "unversioned", so a kind is recognised under any apiVersion (extensions/v1beta1 Deployment,
# batch/v1beta1 CronJob): https://github.com/istio/istio/blob/1.19.0/pkg/kube/inject/initializer.go#L44-L75
WORKLOAD_KINDS = {
    "Pod": ((), ()),
    "ReplicationController": (("spec", "template"), ("spec", "template")),
    "Deployment": (("spec", "template"), ("spec", "template")),
    "DaemonSet": (("spec", "template"), ("spec", "template")),
    "ReplicaSet": (("spec", "template"), ("spec", "template")),
    "StatefulSet": (("spec", "template"), ("spec", "template")),
    "Job": (("spec", "template"), ("spec", "template")),
    "DeploymentConfig": (("spec", "template"), ("spec", "template")),  # OpenShift's apps.openshift.io/v1
    # A CronJob's pod metadata is taken from its jobTemplate, not from the pod template inside it:
    # that is what IntoObject reads, so annotations and injected labels land on the jobTemplate.
    "CronJob": (("spec", "jobTemplate"), ("spec", "jobTemplate", "spec", "template")),
}


class KubeInjectError(ValueError):
    pass


def _walk(obj: dict, path: tuple[str, ...], kind: str) -> dict:
    node = obj
    for step in path:
        node = node.get(step)
        if not isinstance(node, dict):
            raise KubeInjectError(f"{kind} {(obj.get('metadata') or {}).get('name', '')}: "
                                  f"{'.'.join(path)} is required")
    return node


def into_object(obj: dict, config: InjectorConfig, values: dict, mesh_config: dict, revision: str = "",
                warn: Callable[[str], object] = lambda message: None) -> dict:
    """The object with its pod (template) injected; kinds without pods come back unchanged."""
    if obj.get("kind") == "List":
        out = copy.deepcopy(obj)
        out["items"] = [into_object(i, config, values, mesh_config, revision, warn) for i in obj.get("items") or []]
        return out
    api_version, kind = obj.get("apiVersion", ""), obj.get("kind", "")
    paths = WORKLOAD_KINDS.get(kind)
    if paths is None:
        return obj
    out = copy.deepcopy(obj)
    meta_holder, spec_holder = _walk(out, paths[0], kind), _walk(out, paths[1], kind)
    deploy_meta = copy.deepcopy(out.get("metadata") or {})
    meta = meta_holder.setdefault("metadata", {})
    spec = spec_holder.setdefault("spec", {})
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
    meta_holder["metadata"] = result.pod["metadata"]
    spec_holder["spec"] = result.pod["spec"]
    return out
