"""The applier: rendered objects into a cluster, in dependency order, owned, waited for, pruned.

istioctl and the operator share one applier, the ``HelmReconciler``
(https://github.com/istio/istio/blob/1.19.0/operator/pkg/helmreconciler/apply.go#L40-L146):
components go in dependency order (Base, then Pilot, then the gateways:
https://github.com/istio/istio/blob/1.19.0/operator/pkg/helmreconciler/common.go#L74-L86), each
component's objects in kind order, every object stamped with labels naming the IstioOperator
that owns it (https://github.com/istio/istio/blob/1.19.0/operator/pkg/helmreconciler/reconciler.go#L394-L424),
and afterwards whatever carries those labels but is no longer rendered is deleted — the prune
(https://github.com/istio/istio/blob/1.19.0/operator/pkg/helmreconciler/prune.go#L118-L133).
Then ``istioctl install`` waits until the Deployments are ready
(https://github.com/istio/istio/blob/1.19.0/operator/pkg/helmreconciler/wait.go#L56-L155).

mesh writes with create-or-update through a ``KubeClient`` instead of server-side apply. An
update lays the rendered object over the live one, so fields other writers own (istiod's
``caBundle`` patch, a Service's ``clusterIP``) survive, and an object already equal to what is
rendered is left alone — "update on drift". Waiting needs a Deployment controller to fill in
``status``; a cluster without one (the replay API server, a ``ReplayClient``) is recognised and
reported instead of waited on forever.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from mesh.install import render
from mesh.install.overlay import strategic_merge
from mesh.kube import kinds
from mesh.kube.client import ConflictError, KubeClient, NotFoundError

VERSION = "1.19.0"
OWNING_RESOURCE = "install.operator.istio.io/owning-resource"
OWNING_NAMESPACE = "install.operator.istio.io/owning-resource-namespace"
COMPONENT = "operator.istio.io/component"
MANAGED = "operator.istio.io/managed"
VERSION_LABEL = "operator.istio.io/version"
REVISION = "istio.io/rev"
INSTALLED_STATE = "installed-state"  # the name istioctl gives the IstioOperator it installs

# Every kind the renderer can produce: what a prune looks through.
PRUNABLE = ("Namespace", "CustomResourceDefinition", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role",
            "RoleBinding", "ConfigMap", "Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler",
            "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")
# Never pruned: deleting the namespace would delete everything in it, CRDs every Istio object.
_NEVER_PRUNED = ("Namespace", "CustomResourceDefinition")


class ApplyError(RuntimeError):
    pass


@dataclass
class Owner:
    """The IstioOperator the objects belong to."""

    name: str = INSTALLED_STATE
    namespace: str = "istio-system"
    revision: str = ""

    def labels(self, component: str) -> dict[str, str]:
        return {MANAGED: "Reconcile", OWNING_RESOURCE: self.name, OWNING_NAMESPACE: self.namespace,
                VERSION_LABEL: VERSION, REVISION: self.revision or "default", COMPONENT: component}


@dataclass
class ApplyResult:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # waiting outcomes, things skipped

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated or self.deleted)

    def summary(self) -> str:
        return (f"{len(self.created)} created, {len(self.updated)} updated, {len(self.unchanged)} unchanged, "
                f"{len(self.deleted)} deleted")


def owned(obj: dict, owner: Owner, component: str) -> dict:
    """The object with the owner's labels set over the rendered ones (the charts write
    ``owning-resource: unknown``; the applier knows better), as ``applyLabelsAndAnnotations`` does
    (https://github.com/istio/istio/blob/1.19.0/operator/pkg/helmreconciler/reconciler.go#L448-L461).
    Pod templates keep the chart's labels: changing them would roll the pods."""
    obj = copy.deepcopy(obj)
    meta = obj.setdefault("metadata", {})
    meta["labels"] = {**(meta.get("labels") or {}), **owner.labels(component)}
    return obj


def is_subset(desired: object, live: object) -> bool:
    """True when every field of ``desired`` has the same value in ``live`` (server-added fields
    in ``live`` do not count as drift)."""
    if isinstance(desired, dict):
        return isinstance(live, dict) and all(k in live and is_subset(v, live[k]) for k, v in desired.items())
    if isinstance(desired, list):
        return isinstance(live, list) and len(desired) == len(live) and all(map(is_subset, desired, live))
    if isinstance(desired, int | float) and isinstance(live, int | float) and not isinstance(desired, bool):
        return desired == live
    return desired == live


def _ref(obj: dict) -> str:
    return str(kinds.object_key(obj))


def apply_object(client: KubeClient, obj: dict, result: ApplyResult) -> dict:
    """Create ``obj``, or update it when the live object drifted from it."""
    kind = kinds.for_object(obj)
    if kind is None:
        raise ApplyError(f"{_ref(obj)}: mesh does not know the kind {obj.get('apiVersion')}/{obj.get('kind')}")
    key = kinds.object_key(obj)
    live = client.get(kind, key.name, key.namespace)
    if live is None:
        try:
            created = client.create(obj)
            result.created.append(_ref(obj))
            return created
        except ConflictError:  # the cache had not seen it yet: read it again and update instead
            live = _wait_for_cache(client, kind, key.name, key.namespace)
            if live is None:
                raise
    if is_subset(obj, live):
        result.unchanged.append(_ref(obj))
        return live
    merged = strategic_merge(live, obj)
    merged["metadata"]["resourceVersion"] = live["metadata"].get("resourceVersion", "")
    updated = client.update(merged)
    result.updated.append(_ref(obj))
    return updated


def _wait_for_cache(client: KubeClient, kind, name: str, namespace: str, seconds: float = 2.0) -> dict | None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = client.get(kind, name, namespace)
        if found is not None:
            return found
        time.sleep(0.05)
    return None


def prune(client: KubeClient, owner: Owner, keep: set, result: ApplyResult) -> None:
    """Delete what carries the owner's label but was not rendered this time, in reverse apply order."""
    doomed = []
    for kind_name in PRUNABLE:
        if kind_name in _NEVER_PRUNED:
            continue
        kind = kinds.resolve(kind_name)
        for obj in client.informer(kind).list(selector={OWNING_RESOURCE: owner.name}):
            labels = obj["metadata"].get("labels") or {}
            if labels.get(OWNING_NAMESPACE, owner.namespace) != owner.namespace:
                continue
            if kinds.object_key(obj) not in keep:
                doomed.append(obj)
    for obj in sorted(doomed, key=render.apply_priority, reverse=True):
        key = kinds.object_key(obj)
        try:
            client.delete(kinds.for_object(obj), key.name, key.namespace)
            result.deleted.append(_ref(obj))
        except NotFoundError:
            pass


def deployment_state(obj: dict | None) -> tuple[str, str]:
    """(``ready`` | ``waiting`` | ``no-controller``, a description) for a Deployment."""
    if obj is None:
        return "waiting", "not found"
    status = obj.get("status") or {}
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Available" and condition.get("status") == "True":
            return "ready", "Available"
    if not status or "observedGeneration" not in status:
        return "no-controller", "no status: no Deployment controller has looked at it"
    return "waiting", f"{status.get('availableReplicas', 0)}/{status.get('replicas', 0)} replicas available"


def wait_for_deployments(client: KubeClient, deployments: list[tuple[str, str]], timeout: float,
                         no_controller_grace: float = 3.0, sleep: Callable[[float], None] = time.sleep,
                         now: Callable[[], float] = time.monotonic) -> list[str]:
    """Wait until each (namespace, name) Deployment is Available. Returns notes; raises ApplyError
    on timeout. A Deployment that still has no status after ``no_controller_grace`` seconds means
    no controller runs: say so and stop waiting rather than time out."""
    start = now()
    pending = list(deployments)
    notes = []
    while pending:
        still = []
        for namespace, name in pending:
            state, why = deployment_state(client.get("Deployment", name, namespace))
            if state == "ready":
                notes.append(f"Deployment {namespace}/{name} is Available")
            elif state == "no-controller" and now() - start >= no_controller_grace:
                notes.append(f"not waiting for Deployment {namespace}/{name}: {why} in {no_controller_grace:g}s "
                             f"(a cluster without controllers, such as the replay API server, never makes it Available)")
            else:
                still.append((namespace, name, why))
        if not still:
            break
        if now() - start >= timeout:
            waiting = ", ".join(f"Deployment {ns}/{n} ({why})" for ns, n, why in still)
            raise ApplyError(f"timed out after {timeout:g}s waiting for {waiting} to be Available")
        pending = [(ns, n) for ns, n, _ in still]
        sleep(0.2)
    return notes


def apply_rendered(client: KubeClient, rendered: dict[str, list[dict]], owner: Owner, wait: bool = True,
                   timeout: float = 300.0, no_controller_grace: float = 3.0, prune_others: bool = True,
                   progress: Callable[[str], None] | None = None) -> ApplyResult:
    """Apply every component in dependency order; wait for each component's Deployments before
    the next (what depends on istiod needs it up); then prune what the owner no longer renders."""
    result = ApplyResult()
    keep = set()
    for component in render.COMPONENT_ORDER:
        objects = render.sort_for_apply(rendered.get(component, []))
        if not objects:
            continue
        before = len(result.created) + len(result.updated)
        for obj in objects:
            desired = owned(obj, owner, component)
            keep.add(kinds.object_key(desired))
            apply_object(client, desired, result)
        if progress:
            changed = len(result.created) + len(result.updated) - before
            progress(f"{component}: {len(objects)} objects, {changed} created or updated")
        deployments = [(o["metadata"]["namespace"], o["metadata"]["name"]) for o in objects if o["kind"] == "Deployment"]
        if wait and deployments:
            for note in wait_for_deployments(client, deployments, timeout, no_controller_grace):
                result.notes.append(note)
                if progress:
                    progress(note)
                if "no Deployment controller" in note:  # known now: later components need not wait to see it
                    no_controller_grace = 0.0
    if prune_others:
        prune(client, owner, keep, result)
    return result


def saved_iop(effective: dict, owner: Owner) -> dict:
    """The copy of the installed IstioOperator ``istioctl install`` saves in the cluster
    (``installed-state``, https://github.com/istio/istio/blob/1.19.0/operator/cmd/mesh/install.go#L270-L296),
    annotated so that an operator does not reconcile it."""
    saved = copy.deepcopy(effective)
    meta = saved.setdefault("metadata", {}) or {}
    saved["metadata"] = meta
    meta["name"] = owner.name
    meta["namespace"] = owner.namespace
    meta["annotations"] = {**(meta.get("annotations") or {}), "install.istio.io/ignoreReconcile": "true"}
    return saved
