"""Merging a rendered template into a pod: strategic merge patch, for the fields a Pod has.

Go: ``applyOverlayYAML`` https://github.com/istio/istio/blob/1.19.0/pkg/kube/inject/webhook.go#L931-L976
calls Kubernetes' strategic merge (``k8s.io/apimachinery/pkg/util/strategicpatch``) with the Pod
struct as the schema, and ``modifyContainers``
https://github.com/istio/istio/blob/1.19.0/pkg/kube/inject/webhook.go#L239-L296 moves containers.

Strategic merge differs from a plain JSON merge in one way that matters here: some lists are
keyed. Two ``containers`` entries with the same ``name`` are the same container and are merged
field by field; a ``volumes`` entry with a new ``name`` is added. The keys below are the
``patchMergeKey`` tags of ``k8s.io/api/core/v1`` for the lists a Pod has; every other list is
replaced whole, maps merge recursively, and ``null`` in the patch deletes the field.

Templates may use the ``$patch`` directive as in a strategic merge patch: ``$patch: replace`` in a
map replaces the pod's map instead of merging into it, ``$patch: delete`` removes it, and in a
keyed list ``{name: x, $patch: delete}`` removes item ``x`` and ``{$patch: replace}`` replaces the
list. Simplifications, named: the rarer directives (``$setElementOrder``, ``$retainKeys``,
``$deleteFromPrimitiveList``) are not supported. Merged keyed lists are ordered as Kubernetes orders them (see
``_merge_keyed_list``): the injected volumes come before the app's own, and a user's
``istio-proxy`` volume mount re-applied over the injected container stays after the injected ones.
"""

from __future__ import annotations

import json

# path of field names (list indices dropped) → merge key of that list
MERGE_KEYS: dict[tuple[str, ...], str] = {
    ("metadata", "ownerReferences"): "uid",
    ("spec", "volumes"): "name",
    ("spec", "imagePullSecrets"): "name",
    ("spec", "hostAliases"): "ip",
}
for _kind in ("containers", "initContainers", "ephemeralContainers"):
    MERGE_KEYS[("spec", _kind)] = "name"
    MERGE_KEYS[("spec", _kind, "env")] = "name"
    MERGE_KEYS[("spec", _kind, "ports")] = "containerPort"
    MERGE_KEYS[("spec", _kind, "volumeMounts")] = "mountPath"
    MERGE_KEYS[("spec", _kind, "volumeDevices")] = "devicePath"


def strategic_merge(original: dict, patch: dict) -> dict:
    """A new dict: ``patch`` merged onto ``original`` with Pod strategic-merge rules."""
    return _merge_into(clone(original), patch, ())


def clone(value):
    # Pods are JSON; a JSON round trip copies them several times faster than copy.deepcopy.
    return json.loads(json.dumps(value))


PATCH = "$patch"  # strategic merge's directive key: "replace" or "delete" (a map or a list item)


def _plain(value):
    """A copy of patch data with the directives taken out (new data carries none into the pod)."""
    text = json.dumps(value)
    return json.loads(text) if PATCH not in text else _strip(value)  # the common case stays one copy


def _strip(value):
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k != PATCH}
    if isinstance(value, list):
        return [_strip(v) for v in value if not (isinstance(v, dict) and PATCH in v and len(v) == 1)]
    return value


def _merge_into(target: dict, patch: dict, path: tuple[str, ...]) -> dict:
    for key, value in patch.items():
        here = path + (key,)
        directive = value.get(PATCH) if isinstance(value, dict) else None
        if value is None or directive == "delete":
            target.pop(key, None)
        elif directive == "replace":
            target[key] = _plain(value)  # this map instead of the original's, not merged into it
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge_into(target[key], value, here)
        elif isinstance(value, list) and here in MERGE_KEYS and isinstance(target.get(key), list):
            if any(isinstance(i, dict) and i.get(PATCH) == "replace" for i in value):
                target[key] = _plain(value)  # [{$patch: replace}, ...]: the list is replaced whole
            else:
                target[key] = _merge_keyed_list(target[key], value, MERGE_KEYS[here], here)
        else:
            target[key] = _plain(value)
    return target


def _merge_keyed_list(original: list, patch: list, key: str, path: tuple[str, ...]) -> list:
    """Merge by ``key``, then order as Kubernetes' ``mergeSortedSlice`` does: the patch's items in
    patch order and the original's other items in their order, interleaved so that two items both
    found in the original keep their original order — a patch item the original lacks goes first.

    (``normalizeElementOrder``/``mergeSortedSlice`` in
    https://github.com/kubernetes/apimachinery/blob/v0.28.0/pkg/util/strategicpatch/patch.go)
    """
    by_key = {item.get(key): item for item in original if isinstance(item, dict)}
    position = {k: i for i, k in enumerate(by_key)}
    merged, used = [], set()
    for item in patch:
        k = item.get(key) if isinstance(item, dict) else None
        if isinstance(item, dict) and item.get(PATCH) == "delete":
            used.add(k)  # {name: x, $patch: delete}: the original's item x goes
            continue
        if k is not None and k in by_key:
            merged.append((position[k], _merge_into(by_key[k], item, path)))
            used.add(k)
        else:
            merged.append((None, _plain(item)))
    rest = [(position.get(i.get(key)) if isinstance(i, dict) else None, i)
            for i in original if not (isinstance(i, dict) and i.get(key) in used)]
    out = []
    while merged or rest:
        if rest and (not merged or (rest[0][0] is not None and merged[0][0] is not None
                                    and rest[0][0] < merged[0][0])):
            out.append(rest.pop(0)[1])
        else:
            out.append(merged.pop(0)[1])
    return out


MOVE_FIRST, MOVE_LAST, REMOVE = "first", "last", "remove"


def modify_containers(containers: list[dict], name: str, how: str) -> list[dict]:
    """Move the container called ``name`` first or last, or remove it (``modifyContainers``)."""
    others = [c for c in containers if c.get("name") != name]
    match = [c for c in containers if c.get("name") == name]
    if not match:
        return others
    if how == MOVE_FIRST:
        return match[:1] + others
    if how == MOVE_LAST:
        return others + match[:1]
    return others


def find_container(name: str, containers: list[dict] | None) -> dict | None:
    for c in containers or []:
        if c.get("name") == name:
            return c
    return None
