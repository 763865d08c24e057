"""Which admission webhooks kube-apiserver calls for a request: kube-apiserver's matching, as pure functions.

Istio never decides this itself: it only *serves* ``/inject`` and ``/validate`` and ships the
webhook configurations that say when kube-apiserver should call them
(https://github.com/istio/istio/blob/1.19.0/manifests/charts/istio-control/istio-discovery/templates/validatingwebhookconfiguration.yaml#L11-L56
and https://github.com/istio/istio/blob/1.19.0/manifests/charts/base/templates/default.yaml#L1-L48).
The matching lives in Kubernetes — Istio 1.19 builds against ``k8s.io/apiserver`` v0.28.0
(Kubernetes 1.28), where the predicates are
https://github.com/kubernetes/kubernetes/blob/v1.28.0/staging/src/k8s.io/apiserver/pkg/admission/plugin/webhook/predicates/rules/rules.go,
https://github.com/kubernetes/kubernetes/blob/v1.28.0/staging/src/k8s.io/apiserver/pkg/admission/plugin/webhook/predicates/namespace/matcher.go
and https://github.com/kubernetes/kubernetes/blob/v1.28.0/staging/src/k8s.io/apiserver/pkg/admission/plugin/webhook/predicates/object/matcher.go
— documented at
https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/#matching-requests-rules.
mesh needs it in two places — the replay client's admission plugins and the replay API server —
so it is here once, with no I/O: callers pass in what they know (the request and a way to find a
namespace's labels).

A webhook is called for a request when all three hold:

* **rules** — at least one rule matches: the operation (``CREATE``, ``UPDATE``, ``DELETE``,
  ``CONNECT`` or ``*``), the API group, the version, the resource (``pods``; ``pods/status`` for a
  subresource; ``*`` is every resource but no subresource; ``*/*`` every resource and subresource;
  ``pods/*`` pods and all its subresources; ``*/status`` one subresource of everything) and the scope (``Namespaced``, ``Cluster`` or ``*``;
  a Namespace object counts as cluster-scoped);
* **namespaceSelector** — the labels of the request's namespace match (every namespace carries
  ``kubernetes.io/metadata.name: <its name>``, added by kube-apiserver since 1.21); for a
  Namespace object, its own labels; any other cluster-scoped object always matches;
* **objectSelector** — the labels of the object *or* of the old object (on UPDATE) match.

An empty or missing selector matches everything. Webhook configurations themselves are never sent
to webhooks (:func:`is_exempt`): a broken webhook could otherwise lock everyone out of fixing it.
Simplifications, named: ``matchPolicy:
Equivalent`` (calling a webhook for a request made through another version or group of the same
resource) and ``matchConditions`` (CEL) are not evaluated; only the exact rule match is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlparse

from mesh.kube import kinds
from mesh.kube.selectors import matches_labels

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"  # kube-apiserver puts it on every namespace
ALL = "*"


@dataclass(frozen=True)
class Request:
    """What kube-apiserver knows about a write when it picks webhooks (``admission.Attributes``)."""

    operation: str  # CREATE | UPDATE | DELETE | CONNECT
    group: str  # "" for the core group
    version: str
    resource: str  # the plural: "pods", "virtualservices"
    subresource: str = ""  # "status", "exec", ... ("" for the object itself)
    namespace: str = ""  # "" for cluster-scoped objects; a Namespace object's own name
    object: dict | None = None
    old_object: dict | None = None

    @property
    def is_namespace(self) -> bool:
        return self.group == "" and self.resource == "namespaces"

    @classmethod
    def for_object(cls, operation: str, obj: dict, old_object: dict | None = None,
                   subresource: str = "") -> Request:
        """The request for writing ``obj`` (a Kubernetes object with apiVersion and kind)."""
        kind = kinds.for_object(obj)
        if kind is None:
            raise KeyError(f"unknown kind {obj.get('apiVersion')}/{obj.get('kind')}")
        _, version = kinds.split_api_version(obj.get("apiVersion", ""))
        meta = obj.get("metadata") or {}
        if kind.group == "" and kind.plural == "namespaces":
            namespace = meta.get("name", "")  # as kube-apiserver sets it for a Namespace
        else:
            namespace = meta.get("namespace", "") if kind.namespaced else ""
        return cls(operation=operation, group=kind.group, version=version or kind.version,
                   resource=kind.plural, subresource=subresource, namespace=namespace,
                   object=obj, old_object=old_object)


EXEMPT_KINDS = ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration",
                "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")


def is_exempt(obj: dict) -> bool:
    """Objects kube-apiserver never sends through admission webhooks: the webhook and policy configurations."""
    group, _ = kinds.split_api_version(obj.get("apiVersion", ""))
    return group == "admissionregistration.k8s.io" and obj.get("kind") in EXEMPT_KINDS


# -- rules ---------------------------------------------------------------------------------------
def _listed(value: str, allowed: Iterable[str] | None) -> bool:
    allowed = list(allowed or [])
    return ALL in allowed or value in allowed


def _resource_matches(patterns: Iterable[str] | None, resource: str, subresource: str) -> bool:
    # "pods" is ("pods", ""): the object only; "pods/*" pods and every subresource of pods.
    for pattern in patterns or []:
        res, _, sub = pattern.partition("/")
        if res in (ALL, resource) and (sub == subresource or sub == ALL):
            return True
    return False


def _scope_matches(scope: str | None, request: Request) -> bool:
    if scope in (None, "", ALL):
        return True
    cluster_scoped = request.is_namespace or request.namespace == ""
    if scope == "Cluster":
        return cluster_scoped
    if scope == "Namespaced":
        return not cluster_scoped
    return False  # an unknown scope matches nothing (the API server would refuse the config)


def rule_matches(rule: dict, request: Request) -> bool:
    """Does one ``RuleWithOperations`` cover the request?"""
    return (_listed(request.operation, rule.get("operations"))
            and _listed(request.group, rule.get("apiGroups"))
            and _listed(request.version, rule.get("apiVersions"))
            and _resource_matches(rule.get("resources"), request.resource, request.subresource)
            and _scope_matches(rule.get("scope"), request))


def rules_match(webhook: dict, request: Request) -> bool:
    return any(rule_matches(rule, request) for rule in webhook.get("rules") or [])


# -- selectors ------------------------------------------------------------------------------------
def namespace_labels(name: str, namespace: dict | None) -> dict[str, str]:
    """A namespace's labels as selectors see them: its own plus ``kubernetes.io/metadata.name``.

    ``namespace`` is the stored Namespace object (None if it does not exist: kube-apiserver's
    NamespaceLifecycle plugin would refuse the write before any webhook; here the namespace then
    has only its name label)."""
    labels = dict(((namespace or {}).get("metadata") or {}).get("labels") or {})
    labels[NAMESPACE_NAME_LABEL] = name
    return labels


def namespace_selector_matches(webhook: dict, request: Request,
                               find_namespace: Callable[[str], dict | None]) -> bool:
    selector = webhook.get("namespaceSelector")
    if not selector:
        return True
    if request.namespace == "" and not request.is_namespace:
        return True  # a cluster-scoped object other than a Namespace is never exempted
    if request.is_namespace and request.subresource == "" and request.operation in ("CREATE", "UPDATE"):
        labels = ((request.object or {}).get("metadata") or {}).get("labels") or {}  # not stored yet
    else:
        labels = namespace_labels(request.namespace, find_namespace(request.namespace))
    return matches_labels(selector, labels)


def object_selector_matches(webhook: dict, request: Request) -> bool:
    selector = webhook.get("objectSelector")
    if not selector:
        return True
    return any(matches_labels(selector, (obj.get("metadata") or {}).get("labels") or {})
               for obj in (request.object, request.old_object) if obj is not None)


def webhook_matches(webhook: dict, request: Request, find_namespace: Callable[[str], dict | None]) -> bool:
    """Would kube-apiserver call this webhook for the request? ``find_namespace(name)`` returns the
    stored Namespace object or None."""
    return (rules_match(webhook, request) and namespace_selector_matches(webhook, request, find_namespace)
            and object_selector_matches(webhook, request))


def matching_webhooks(configurations: Iterable[dict], request: Request,
                      find_namespace: Callable[[str], dict | None]) -> list[tuple[str, dict]]:
    """``(configuration name, webhook)`` for every webhook called, configurations sorted by name
    (kube-apiserver's order), webhooks in the order written."""
    found = []
    for config in sorted(configurations, key=lambda c: (c.get("metadata") or {}).get("name", "")):
        for webhook in config.get("webhooks") or []:
            if webhook_matches(webhook, request, find_namespace):
                found.append(((config.get("metadata") or {}).get("name", ""), webhook))
    return found


# -- where a webhook sends its requests -----------------------------------------------------------
@dataclass(frozen=True)
class Target:
    """Where a webhook's ``clientConfig`` sends requests: a Service (name, namespace) or a URL."""

    service: str = ""
    namespace: str = ""
    path: str = "/"
    url: str = ""

    def __str__(self) -> str:
        return f"service {self.namespace}/{self.service}{self.path}" if self.service else (self.url or "nothing")


def target(client_config: dict | None) -> Target:
    """Read a ``clientConfig``. A URL whose host is ``<svc>.<ns>.svc[.<domain>]`` names that Service."""
    client_config = client_config or {}
    service = client_config.get("service")
    if service is not None:
        return Target(service.get("name", ""), service.get("namespace", ""), service.get("path") or "/")
    url = client_config.get("url") or ""
    parsed = urlparse(url)
    parts = (parsed.hostname or "").split(".")
    if len(parts) >= 3 and parts[2] == "svc":
        return Target(parts[0], parts[1], parsed.path or "/", url)
    return Target(path=parsed.path or "/", url=url)


def path_served_by(path: str, route: str) -> bool:
    """Does a handler registered for ``route`` (and ``route/``, as istiod registers them) get ``path``?"""
    route = route.rstrip("/")
    return path == route or path.startswith(route + "/")


def webhooks_calling(configurations: Iterable[dict], service: str, namespace: str,
                     route: str | None = None) -> list[tuple[str, dict]]:
    """``(configuration name, webhook)`` for each webhook that sends its requests to the Service
    ``namespace/service`` (and, if ``route`` is given, to a path that route serves)."""
    found = []
    for config in sorted(configurations, key=lambda c: (c.get("metadata") or {}).get("name", "")):
        for webhook in config.get("webhooks") or []:
            where = target(webhook.get("clientConfig"))
            if (where.service, where.namespace) != (service, namespace):
                continue
            if route is not None and not path_served_by(where.path, route):
                continue
            found.append(((config.get("metadata") or {}).get("name", ""), webhook))
    return found
