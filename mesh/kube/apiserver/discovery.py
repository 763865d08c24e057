"""API discovery: ``/version``, ``/api``, ``/apis`` and ``/apis/<group>/<version>``.

Before kubectl can run ``get vs``, it asks the server which groups, versions and resources
exist (``vs`` → ``virtualservices.networking.istio.io``, namespaced). There are two forms:

* the legacy form — ``APIVersions``/``APIGroupList`` at ``/api`` and ``/apis``, then one
  ``APIResourceList`` per group version;
* the aggregated form (``apidiscovery.k8s.io``) — everything in two answers. A client asks
  for it in ``Accept``; kubectl 1.27–1.29 ask for ``v2beta1``, 1.30+ for ``v2``, and the
  server must answer with the version asked for (the ``Content-Type`` says which).

istiod asks a similar question: before it starts an informer on an optional CRD (Gateway API,
say) it checks that the CRD is known, or waits to be called back when it appears
(https://github.com/istio/istio/blob/1.19.0/pkg/kube/kclient/crdwatcher.go#L102-L129).
"""

from __future__ import annotations

import re
from collections import defaultdict

from mesh.kube import kinds
from mesh.kube.kinds import Kind

VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]
AGGREGATED_VERSIONS = ("v2", "v2beta1")

# What /version reports; kubectl's dispatcher on this machine picks its binary from the minor.
DEFAULT_KUBE_VERSION = "1.30.0"


def version_info(kube_version: str = DEFAULT_KUBE_VERSION) -> dict:
    major, minor, *_ = kube_version.split(".")
    return {
        "major": major, "minor": minor, "gitVersion": f"v{kube_version}",
        "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
        "buildDate": "2023-08-30T00:00:00Z", "goVersion": "go1.21.0", "compiler": "gc",
        "platform": "linux/amd64",
    }


# ``kubectl get all`` and ``kubectl get istio-io`` expand categories through discovery.
_ALL = {("", "Pod"), ("", "Service"), ("apps", "Deployment"), ("apps", "ReplicaSet"), ("apps", "StatefulSet"),
        ("apps", "DaemonSet"), ("batch", "Job"), ("batch", "CronJob")}


def categories(kind: Kind) -> list[str]:
    if (kind.group, kind.kind) in _ALL:
        return ["all"]
    if kind.group.endswith(".istio.io"):
        return ["istio-io", kind.group.replace(".", "-")]
    if kind.group == "gateway.networking.k8s.io":
        return ["gateway-api"]
    return []


def _version_priority(version: str) -> tuple:
    """Kubernetes' version order: GA before beta before alpha, higher numbers first."""
    m = re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", version)
    if not m:
        return (3, version)
    stage = {"": 0, "beta": 1, "alpha": 2}[m.group(2) or ""]
    return (stage, -int(m.group(1)), -int(m.group(3) or 0))


def groups() -> dict[str, list[str]]:
    """Every served group → its versions, preferred first."""
    found: dict[str, set[str]] = defaultdict(set)
    for kind in kinds.KINDS:
        found[kind.group].update(kind.served_versions)
    return {g: sorted(vs, key=_version_priority) for g, vs in found.items()}


def kinds_in(group: str, version: str) -> list[Kind]:
    return [k for k in kinds.KINDS if k.group == group and version in k.served_versions]


def resolve_resource(group: str, version: str, plural: str) -> Kind | None:
    """The kind served at ``/apis/<group>/<version>/<plural>`` (None if not served there)."""
    kind = kinds.lookup_plural(group, plural)
    if kind is None or version not in kind.served_versions:
        return None
    return kind


def _api_resource(kind: Kind) -> dict:
    body = {
        "name": kind.plural, "singularName": kind.singular, "namespaced": kind.namespaced,
        "kind": kind.kind, "verbs": VERBS,
    }
    if kind.short_names:
        body["shortNames"] = list(kind.short_names)
    if categories(kind):
        body["categories"] = categories(kind)
    return body


def api_versions(server_address: str) -> dict:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]}


def api_group(group: str) -> dict | None:
    versions = groups().get(group)
    if not group or not versions:
        return None
    gvs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": gvs, "preferredVersion": gvs[0]}


def api_group_list() -> dict:
    items = []
    for group in groups():
        if group:
            body = api_group(group)
            items.append({k: body[k] for k in ("name", "versions", "preferredVersion")})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": items}


def api_resource_list(group: str, version: str) -> dict | None:
    served = kinds_in(group, version)
    if not served:
        return None
    return {"kind": "APIResourceList", "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version,
            "resources": [_api_resource(k) for k in served]}


# -- aggregated discovery ------------------------------------------------------------------

def wanted_aggregated_version(accept: str) -> str | None:
    """The apidiscovery.k8s.io version a client asked for in ``Accept`` (first one wins), if any."""
    for entry in accept.split(","):
        params = dict(p.strip().split("=", 1) for p in entry.split(";")[1:] if "=" in p)
        if params.get("g") == "apidiscovery.k8s.io" and params.get("as") == "APIGroupDiscoveryList":
            if params.get("v") in AGGREGATED_VERSIONS:
                return params["v"]
    return None


def aggregated_content_type(version: str) -> str:
    return f"application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList"


def _discovery_resource(kind: Kind, version: str) -> dict:
    body = {
        "resource": kind.plural, "singularResource": kind.singular,
        "responseKind": {"group": kind.group, "version": version, "kind": kind.kind},
        "scope": "Namespaced" if kind.namespaced else "Cluster",
        "verbs": VERBS,
    }
    if kind.short_names:
        body["shortNames"] = list(kind.short_names)
    if categories(kind):
        body["categories"] = categories(kind)
    return body


def aggregated(core: bool, version: str) -> dict:
    """The APIGroupDiscoveryList for ``/api`` (``core``) or ``/apis``."""
    items = []
    for group, versions in groups().items():
        if (group == "") != core:
            continue
        items.append({
            "metadata": {"name": group, "creationTimestamp": None},
            "versions": [{"version": v, "freshness": "Current",
                          "resources": [_discovery_resource(k, v) for k in kinds_in(group, v)]}
                         for v in versions],
        })
    return {"kind": "APIGroupDiscoveryList", "apiVersion": f"apidiscovery.k8s.io/{version}",
            "metadata": {}, "items": items}
