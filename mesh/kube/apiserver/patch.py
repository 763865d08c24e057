"""PATCH bodies: JSON patch, JSON merge patch, and an approximation of strategic merge patch.

kube-apiserver accepts three patch types (plus server-side apply, not served here: a 415):

* ``application/json-patch+json`` — RFC 6902 operations (done by the ``jsonpatch`` library);
* ``application/merge-patch+json`` — RFC 7386: maps merge, ``null`` deletes, lists replace;
* ``application/strategic-merge-patch+json`` — like a merge patch, but some lists of objects
  merge by a key (containers by ``name``, ports by ``containerPort``...), as declared by
  ``patchMergeKey`` tags in the Go types.

**The approximation, named:** mesh has no Go type tags, so it merges by key only the lists in
``MERGE_KEYS`` below (the common pod/service ones), honours ``$patch: delete`` and
``$patch: replace`` inside those lists' items and maps, and drops the other ``$``-directives
kubectl may send (``$setElementOrder/...``, ``$retainKeys``, ``$deleteFromPrimitiveList/...``).
Every other list is replaced, as in a merge patch. For the objects the traces hold, that
gives the same result as kube-apiserver.

Istio's config client builds the first two kinds of patch from an old and a new object
(https://github.com/istio/istio/blob/1.19.0/pilot/pkg/config/kube/crdclient/client.go#L300-L321).
"""

from __future__ import annotations

import copy
import json

import jsonpatch

from mesh.kube.apiserver import errors
from mesh.kube.mergepatch import merge_patch

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH)

# list field name → the key its items are merged by (strategic merge patch only)
MERGE_KEYS = {
    "containers": "name", "initContainers": "name", "ephemeralContainers": "name", "volumes": "name",
    "env": "name", "volumeMounts": "mountPath", "imagePullSecrets": "name", "hostAliases": "ip",
    "tolerations": "key", "conditions": "type", "containerStatuses": "name", "ownerReferences": "uid",
    "finalizers": None,  # a set of strings: merged as a union
}


def strategic_merge_patch(target, patch, field_name: str = ""):
    """The approximation described in the module docstring."""
    if isinstance(patch, list) and field_name in MERGE_KEYS and isinstance(target, list):
        return _merge_list(target, patch, MERGE_KEYS[field_name])
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$"):
            continue  # $setElementOrder/..., $retainKeys, $deleteFromPrimitiveList/...: dropped
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict) and value.get("$patch") == "delete":
            result.pop(key, None)
        else:
            result[key] = strategic_merge_patch(result.get(key), value, key)
    return result


def _merge_list(target: list, patch: list, merge_key: str | None) -> list:
    if merge_key is None:  # a set of scalars
        return target + [v for v in patch if v not in target]
    if any(isinstance(item, dict) and item.get("$patch") == "replace" for item in patch):
        return [copy.deepcopy(i) for i in patch if not (isinstance(i, dict) and "$patch" in i)]
    result = copy.deepcopy(target)
    for item in patch:
        if not isinstance(item, dict) or merge_key not in item:
            result.append(copy.deepcopy(item))
            continue
        index = next((i for i, old in enumerate(result)
                      if isinstance(old, dict) and old.get(merge_key) == item[merge_key]), None)
        if item.get("$patch") == "delete":
            if index is not None:
                del result[index]
        elif index is None:
            result.append(strategic_merge_patch({}, item))
        else:
            result[index] = strategic_merge_patch(result[index], item)
    return result


def apply_patch(obj: dict, content_type: str, body: bytes) -> dict:
    """The object after applying ``body`` of type ``content_type``; Status errors on bad input."""
    if content_type == APPLY_PATCH:
        raise errors.StatusError(415, "UnsupportedMediaType",
                                 "server-side apply is not supported by the mesh replay API server; "
                                 "use kubectl apply without --server-side")
    if content_type not in PATCH_TYPES:
        raise errors.unsupported_media_type(content_type)
    try:
        patch = json.loads(body or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise errors.bad_request(f"error decoding patch: {err}") from err
    if content_type == JSON_PATCH:
        if not isinstance(patch, list):
            raise errors.bad_request("json patch must be a list of operations")
        try:
            return jsonpatch.apply_patch(obj, patch)
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as err:
            raise errors.StatusError(422, "Invalid", f"the JSON patch could not be applied: {err}") from err
    if not isinstance(patch, dict):
        raise errors.bad_request("a merge patch must be a JSON object")
    if content_type == MERGE_PATCH:
        return merge_patch(obj, patch)
    return strategic_merge_patch(obj, patch)
