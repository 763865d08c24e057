"""The REST resource handlers: list, get, create, update, patch, delete — one kind at a time.

kube-apiserver serves every resource through one generic handler set
(``k8s.io/apiserver/pkg/endpoints/handlers``): decode the body, default and validate it, run
admission, write to storage, encode the answer in the version that was asked for. This
module does the same over ``Store``, for all kinds in ``mesh/kube/kinds.py``.

Istio writes through these paths (the ``Create``/``Update``/``UpdateStatus``/``Delete`` of its
kube client, https://github.com/istio/istio/blob/1.19.0/pkg/kube/kclient/client.go#L85-L106);
informers read through list and watch (``watch.py``).

Simplifications, named: ``limit``/``continue`` are accepted and everything is returned in
one page; deletion is immediate (no graceful deletion, finalizers or garbage collection);
the ``status`` subresource is updated like the main resource; validation checks names,
namespaces and a Pod's containers, not every field of every kind.
"""

from __future__ import annotations

import copy
import json
import random
import re
import string
from dataclasses import dataclass

import yaml

from mesh.kube import kinds
from mesh.kube.apiserver import errors, patch, tables
from mesh.kube.apiserver.admission import Admission
from mesh.kube.apiserver.store import Store, make_predicate
from mesh.kube.kinds import Kind

NAMESPACE = kinds.lookup("", "Namespace")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


@dataclass(frozen=True)
class Target:
    """What a URL addresses: a kind in a version, maybe a namespace, name and subresource."""

    kind: Kind
    version: str
    namespace: str = ""
    name: str = ""
    subresource: str = ""

    @property
    def api_version(self) -> str:
        return f"{self.kind.group}/{self.version}" if self.kind.group else self.version


def truthy(value: str | None) -> bool:
    """Query booleans as clients send them: true, True (the kubernetes 37.x client), 1."""
    return (value or "").lower() in ("true", "1")


def in_version(obj: dict, target: Target) -> dict:
    """The object as seen through the requested API version. The versions mesh serves for one
    kind share one schema, so converting is relabelling."""
    if obj.get("apiVersion") == target.api_version:
        return obj
    return {**obj, "apiVersion": target.api_version}


def decode_body(body: bytes, content_type: str) -> dict:
    """A create/update body: JSON (or YAML), else 415; malformed → 400."""
    media = content_type.split(";")[0].strip().lower()
    if media not in ("application/json", "application/yaml", ""):
        raise errors.unsupported_media_type(content_type)
    try:
        obj = yaml.safe_load(body) if media == "application/yaml" else json.loads(body or b"")
    except (ValueError, yaml.YAMLError) as err:
        raise errors.bad_request(f"the body of the request could not be decoded: {err}") from err
    if not isinstance(obj, dict):
        raise errors.bad_request("the body of the request must be a JSON object")
    return obj


class Resources:
    """The generic handlers, bound to one store and one admission chain."""

    def __init__(self, store: Store, admission: Admission):
        self.store = store
        self.admission = admission

    # -- reads ----------------------------------------------------------------------------
    def list(self, target: Target, query: dict, accept: str) -> dict:
        rv_param = query.get("resourceVersion", "")
        if rv_param not in ("", "0"):
            if not rv_param.isdigit():
                raise errors.bad_request(f'invalid resourceVersion "{rv_param}"')
            wanted = int(rv_param)
            if query.get("resourceVersionMatch") == "Exact" and wanted != self.store.rv:
                raise errors.expired(f"resource version {wanted} is not the current one ({self.store.rv}); "
                                     "the replay API server keeps no old snapshots")
            if wanted > self.store.rv:
                raise errors.StatusError(504, "Timeout", f"Too large resource version: {wanted}, "
                                         f"current: {self.store.rv}")
        predicate = make_predicate(target.namespace or None, query.get("labelSelector"),
                                   query.get("fieldSelector"))
        items = [in_version(o, target) for o in self.store.list(target.kind, predicate)]
        rv = str(self.store.rv)
        if (table_version := tables.wants_table(accept)) is not None:
            return tables.table(target.kind, items, rv, table_version, query.get("includeObject", "Metadata"))
        return {"kind": f"{target.kind.kind}List", "apiVersion": target.api_version,
                "metadata": {"resourceVersion": rv}, "items": items}

    def get(self, target: Target, query: dict, accept: str) -> dict:
        obj = in_version(self.store.get(target.kind, target.namespace, target.name), target)
        if (table_version := tables.wants_table(accept)) is not None:
            return tables.table(target.kind, [obj], str(self.store.rv), table_version,
                                query.get("includeObject", "Metadata"))
        return obj

    # -- writes ---------------------------------------------------------------------------
    async def create(self, target: Target, body: dict, query: dict) -> tuple[int, dict]:
        obj = self._check_identity(target, body, creating=True)
        meta = obj["metadata"]
        if self.store.find(target.kind, target.namespace, meta["name"]) is not None:
            raise errors.already_exists(target.kind, meta["name"])
        for drop in ("resourceVersion", "uid", "creationTimestamp", "deletionTimestamp"):
            meta.pop(drop, None)
        if target.kind.kind == "Pod":  # what the pod strategy sets on create
            obj.setdefault("status", {}).setdefault("phase", "Pending")
        dry_run = query.get("dryRun") == "All"
        obj = await self.admission.admit("CREATE", target.kind, target.version, obj, None, dry_run)
        self._validate(target, obj)
        name = obj["metadata"].get("name", "")
        if self.store.find(target.kind, target.namespace, name) is not None:
            raise errors.already_exists(target.kind, name)  # created while the webhooks ran
        if dry_run:
            return 201, in_version(obj, target)
        return 201, in_version(self.store.commit("ADDED", obj), target)

    async def update(self, target: Target, body: dict, query: dict) -> dict:
        obj = self._check_identity(target, body, creating=False)
        old = self.store.get(target.kind, target.namespace, target.name)
        sent_rv = obj["metadata"].get("resourceVersion")
        if sent_rv and sent_rv != old["metadata"]["resourceVersion"]:
            raise errors.conflict(target.kind, target.name, "the object has been modified; please apply your "
                                  "changes to the latest version and try again")
        return await self._replace(target, old, obj, query)

    async def patch(self, target: Target, body: bytes, content_type: str, query: dict) -> dict:
        old = self.store.get(target.kind, target.namespace, target.name)
        media = content_type.split(";")[0].strip().lower()
        patched = patch.apply_patch(in_version(copy.deepcopy(old), target), media, body)
        if not isinstance(patched, dict):
            raise errors.bad_request("the patch did not produce an object")
        obj = self._check_identity(target, patched, creating=False)
        return await self._replace(target, old, obj, query)

    async def delete(self, target: Target, query: dict) -> dict:
        old = self.store.get(target.kind, target.namespace, target.name)
        if query.get("dryRun") == "All":
            return in_version(old, target)
        return in_version(self.store.commit("DELETED", old), target)

    async def _replace(self, target: Target, old: dict, obj: dict, query: dict) -> dict:
        meta, old_meta = obj["metadata"], old["metadata"]
        for keep in ("uid", "creationTimestamp", "generation"):  # set by the server, not the client
            if keep in old_meta:
                meta[keep] = old_meta[keep]
        if obj.get("spec") != old.get("spec"):
            meta["generation"] = int(old_meta.get("generation", 1)) + 1
        dry_run = query.get("dryRun") == "All"
        obj = await self.admission.admit("UPDATE", target.kind, target.version, obj, old, dry_run)
        self._validate(target, obj)
        if self.store.find(target.kind, target.namespace, target.name) is not old:  # changed while webhooks ran
            raise errors.conflict(target.kind, target.name, "the object has been modified; please apply your "
                                  "changes to the latest version and try again")
        if dry_run:
            return in_version(obj, target)
        return in_version(self.store.commit("MODIFIED", obj), target)

    # -- checks ---------------------------------------------------------------------------
    def _check_identity(self, target: Target, body: dict, creating: bool) -> dict:
        """The body is the object the URL addresses: kind, version, namespace and name agree."""
        obj = copy.deepcopy(body)
        obj.setdefault("apiVersion", target.api_version)
        obj.setdefault("kind", target.kind.kind)
        group, version = kinds.split_api_version(obj["apiVersion"])
        if (group, obj["kind"]) != (target.kind.group, target.kind.kind) or version not in target.kind.served_versions:
            raise errors.bad_request(f"the object {obj['apiVersion']}/{obj['kind']} does not match the "
                                     f"resource addressed ({target.api_version}, {target.kind.plural})")
        obj["apiVersion"] = target.api_version
        meta = obj.get("metadata")
        if meta is None:
            meta = obj["metadata"] = {}
        if not isinstance(meta, dict):
            raise errors.bad_request("metadata must be an object")
        if target.kind.namespaced:
            if meta.get("namespace") and meta["namespace"] != target.namespace:
                raise errors.bad_request("the namespace of the provided object does not match the namespace "
                                         "sent on the request")
            meta["namespace"] = target.namespace
        else:
            meta.pop("namespace", None)
        if creating:
            if not meta.get("name") and meta.get("generateName"):
                suffix = "".join(random.choices(string.ascii_lowercase + string.digits, k=5))
                meta["name"] = meta["generateName"] + suffix
        elif meta.get("name") != target.name:
            raise errors.bad_request(f'the name of the object ({meta.get("name")}) does not match the name on '
                                     f'the URL ({target.name})')
        return obj

    def _validate(self, target: Target, obj: dict) -> None:
        """422 with causes for what is wrong; 404 when the namespace does not exist."""
        meta, name = obj["metadata"], obj["metadata"].get("name") or ""
        causes = []
        if not name:
            causes.append(("metadata.name", "Required value: name or generateName is required"))
        elif len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
            causes.append(("metadata.name", f'Invalid value: "{name}": a lowercase RFC 1123 subdomain must '
                           "consist of lower case alphanumeric characters, '-' or '.'"))
        if target.kind.kind == "Pod" and not (obj.get("spec") or {}).get("containers"):
            causes.append(("spec.containers", "Required value"))
        if causes:
            raise errors.invalid(target.kind, name, causes)
        if target.kind.namespaced and self.store.find(NAMESPACE, "", meta["namespace"]) is None:
            raise errors.not_found(NAMESPACE, meta["namespace"])
