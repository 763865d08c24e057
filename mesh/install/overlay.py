"""A component's ``k8s`` settings laid over its rendered objects.

In an IstioOperator, ``components.pilot.k8s.env`` or ``components.ingressGateways[0].k8s.service``
are not chart values: after the chart is rendered, the translator maps each ``k8s`` field to a
place in one rendered object (``[Deployment:istiod].spec.template.spec.containers.[name:discovery].env``,
https://github.com/istio/istio/blob/1.19.0/operator/pkg/translate/translate.go#L172-L189) and
merges it there the way ``kubectl apply`` merges — a strategic merge, where lists of containers,
env vars, volumes and ports merge entry by entry on their key instead of being replaced
(https://github.com/istio/istio/blob/1.19.0/operator/pkg/translate/translate.go#L195-L306).
``k8s.overlays`` go further: any path in any object of the component, with a value or ``null``
to delete (https://github.com/istio/istio/blob/1.19.0/operator/pkg/patch/patch.go#L1-L80).
"""

from __future__ import annotations

import copy

from mesh.install import tpath

# k8s field → (object kind, path inside it); {kind} and {container} are the component's.
_TARGETS = {
    "affinity": ("{kind}", "spec.template.spec.affinity"),
    "env": ("{kind}", "spec.template.spec.containers.[name:{container}].env"),
    "hpaSpec": ("HorizontalPodAutoscaler", "spec"),
    "imagePullPolicy": ("{kind}", "spec.template.spec.containers.[name:{container}].imagePullPolicy"),
    "nodeSelector": ("{kind}", "spec.template.spec.nodeSelector"),
    "podDisruptionBudget": ("PodDisruptionBudget", "spec"),
    "podAnnotations": ("{kind}", "spec.template.metadata.annotations"),
    "priorityClassName": ("{kind}", "spec.template.spec.priorityClassName"),
    "readinessProbe": ("{kind}", "spec.template.spec.containers.[name:{container}].readinessProbe"),
    "replicaCount": ("{kind}", "spec.replicas"),
    "resources": ("{kind}", "spec.template.spec.containers.[name:{container}].resources"),
    "strategy": ("{kind}", "spec.strategy"),
    "tolerations": ("{kind}", "spec.template.spec.tolerations"),
    "serviceAnnotations": ("Service", "metadata.annotations"),
    "service": ("Service", "spec"),
    "securityContext": ("{kind}", "spec.template.spec.securityContext"),
    "volumes": ("{kind}", "spec.template.spec.volumes"),
    "volumeMounts": ("{kind}", "spec.template.spec.containers.[name:{container}].volumeMounts"),
}
# Fields whose value replaces what is there rather than merging into it (as the patch strategy
# ``replace`` of those Kubernetes fields, and the translator's own choice for resources).
_REPLACE = {"resources", "replicaCount", "imagePullPolicy", "priorityClassName", "readinessProbe"}
# The merge keys of the lists a strategic merge merges (the patchMergeKey of the Kubernetes types).
_MERGE_KEYS = ("name", "containerPort", "port", "mountPath")


def strategic_merge(base: object, patch: object) -> object:
    """Maps merge key by key (``None`` deletes); lists of maps that all carry one merge key merge
    entry by entry on it, keeping the base's order and appending new entries; anything else replaces."""
    if isinstance(patch, dict) and isinstance(base, dict):
        out = copy.deepcopy(base)
        for key, value in patch.items():
            if value is None:
                out.pop(key, None)
            else:
                out[key] = strategic_merge(out.get(key), value)
        return out
    if isinstance(patch, list) and isinstance(base, list) and patch and base:
        key = _merge_key(base + patch)
        if key is not None:
            out = copy.deepcopy(base)
            for entry in patch:
                same = [i for i, existing in enumerate(out) if existing.get(key) == entry.get(key)]
                if same:
                    out[same[0]] = strategic_merge(out[same[0]], entry)
                else:
                    out.append(copy.deepcopy(entry))
            return out
    return copy.deepcopy(patch)


def _merge_key(entries: list) -> str | None:
    if not all(isinstance(e, dict) for e in entries):
        return None
    for key in _MERGE_KEYS:
        if all(key in e for e in entries):
            return key
    return None


class OverlayError(ValueError):
    pass


def _find(objects: list[dict], kind: str, name: str) -> dict | None:
    for obj in objects:
        if obj.get("kind") == kind and obj.get("metadata", {}).get("name") == name:
            return obj
    return None


def apply_k8s(objects: list[dict], k8s: dict, kind: str, name: str, container: str, where: str) -> list[dict]:
    """The objects with ``k8s`` laid over them; OverlayError (naming ``where``) for a setting whose
    target was not rendered (an ``hpaSpec`` with autoscaling off, an overlay of a missing object)."""
    objects = copy.deepcopy(objects)
    for field, value in k8s.items():
        if field == "overlays" or value is None:
            continue
        target_kind, path = _TARGETS[field]
        target_kind = target_kind.format(kind=kind)
        obj = _find(objects, target_kind, name)
        if obj is None:
            raise OverlayError(f"{where}.{field}: this component renders no {target_kind} {name}")
        elements = tpath.parse_path(path.format(container=container))
        try:
            current = tpath.get_path(obj, elements)
        except tpath.PathError:
            current = None
        if field == "env":  # an EnvVar's value is text; --set turns "true" and "100" into a bool and an int
            value = [{**e, "value": _text(e["value"])} if "value" in e else e for e in value]
        merged = copy.deepcopy(value) if field in _REPLACE or current is None else strategic_merge(current, value)
        tpath.set_path(obj, elements, merged)
    for i, overlay in enumerate(k8s.get("overlays") or []):
        obj = _find(objects, overlay["kind"], overlay["name"])
        if obj is None:
            raise OverlayError(f"{where}.overlays[{i}]: this component renders no {overlay['kind']} {overlay['name']}")
        for j, patch in enumerate(overlay.get("patches") or []):
            try:
                if patch.get("value") is None:
                    _delete(obj, patch["path"])
                else:
                    tpath.set_path(obj, patch["path"], copy.deepcopy(patch["value"]))
            except tpath.PathError as err:
                raise OverlayError(f"{where}.overlays[{i}].patches[{j}]: {err}") from None
    return objects


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _delete(obj: dict, path: str) -> None:
    elements = tpath.parse_path(path)
    parent = tpath.get_path(obj, elements[:-1]) if len(elements) > 1 else obj
    last = elements[-1]
    if last.key is not None and isinstance(parent, dict):
        parent.pop(last.key, None)
    elif isinstance(parent, list):
        if last.index is not None and last.index < len(parent):
            del parent[last.index]
        elif last.match is not None:
            parent[:] = [e for e in parent if not (isinstance(e, dict) and str(e.get(last.match[0])) == last.match[1])]
