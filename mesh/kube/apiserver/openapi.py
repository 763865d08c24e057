"""The small OpenAPI v3 surface ``kubectl apply`` needs to validate.

kubectl (1.27+) validates a manifest before sending it, unless the server says it validates
itself. It asks ``/openapi/v3`` for the list of group versions, fetches the document of the
object's group version, and looks for a PATCH operation tagged with the object's
``x-kubernetes-group-version-kind`` that takes the ``fieldValidation`` query parameter. If it
is there, kubectl skips client-side validation and sends ``fieldValidation=Strict``, leaving
the checking to the server (``resources.py`` checks names, namespaces and pod containers).

kubectl 1.27 and 1.28 validate with OpenAPI **v2**, served only as protobuf, which mesh does
not serve: against a server reporting those versions (``--kube-version 1.27.3``) run
``kubectl apply --validate=false``. The default reported version (1.30) makes kubectl use v3.

So each document here holds, per kind, the item path with a PATCH operation and that one
parameter, plus a permissive schema per kind — not the full Kubernetes schemas.

istiod ships the real schemas of its CRDs in
https://github.com/istio/istio/blob/1.19.0/manifests/charts/base/crds/crd-all.gen.yaml.
"""

from __future__ import annotations

import hashlib
import json

from mesh.kube.apiserver import discovery
from mesh.kube.kinds import Kind


def _gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _item_path(kind: Kind, version: str) -> str:
    base = "/" + _gv_path(kind.group, version)
    if kind.namespaced:
        return f"{base}/namespaces/{{namespace}}/{kind.plural}/{{name}}"
    return f"{base}/{kind.plural}/{{name}}"


def document(group: str, version: str) -> dict | None:
    served = discovery.kinds_in(group, version)
    if not served:
        return None
    paths, schemas = {}, {}
    for kind in served:
        gvk = [{"group": kind.group, "version": version, "kind": kind.kind}]
        schema_name = f"{kind.group or 'core'}.{version}.{kind.kind}"
        paths[_item_path(kind, version)] = {
            "patch": {
                "operationId": f"patch{kind.kind}",
                "x-kubernetes-action": "patch",
                "x-kubernetes-group-version-kind": gvk[0],
                "parameters": [
                    {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": True}},
                    {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": True}},
                ],
                "responses": {"200": {"description": "OK", "content": {"application/json": {
                    "schema": {"$ref": f"#/components/schemas/{schema_name}"}}}}},
            },
        }
        schemas[schema_name] = {
            "type": "object",
            "x-kubernetes-group-version-kind": gvk,
            "x-kubernetes-preserve-unknown-fields": True,
            "properties": {"apiVersion": {"type": "string"}, "kind": {"type": "string"},
                           "metadata": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
        }
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes (mesh replay)", "version": "unversioned"},
            "paths": paths, "components": {"schemas": schemas}}


def root() -> dict:
    """``/openapi/v3``: where each group version's document is (with a content hash, as the real one)."""
    paths = {}
    for group, versions in discovery.groups().items():
        for version in versions:
            doc = document(group, version)
            digest = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16].upper()
            path = _gv_path(group, version)
            paths[path] = {"serverRelativeURL": f"/openapi/v3/{path}?hash={digest}"}
    return {"paths": paths}
