"""mesh.kube.webhookmatch: kube-apiserver's choice of webhooks, on Istio's own configurations and
on hand-made rules for every form of the resource, scope and selector fields."""

from __future__ import annotations

import pytest
import yaml

from mesh.kube import webhookmatch
from mesh.kube.trace import load_trace
from mesh.kube.tracebuild import SOURCE_DIR
from mesh.kube.webhookmatch import Request, rule_matches


def vs(name="reviews", namespace="default", labels=None):
    meta = {"name": name, "namespace": namespace}
    if labels is not None:
        meta["labels"] = labels
    return {"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService", "metadata": meta,
            "spec": {"hosts": ["reviews"]}}


def pod(namespace="default", labels=None):
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": namespace, "labels": labels or {}}}


def namespace_obj(name, labels=None):
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels or {}}}


def no_namespaces(_name):
    return None


# -- requests -----------------------------------------------------------------------------------
def test_request_for_object_reads_group_version_resource_and_namespace():
    r = Request.for_object("CREATE", vs())
    assert (r.group, r.version, r.resource, r.namespace) == ("networking.istio.io", "v1beta1", "virtualservices",
                                                             "default")
    node = Request.for_object("UPDATE", {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}})
    assert (node.group, node.resource, node.namespace) == ("", "nodes", "")
    ns = Request.for_object("CREATE", namespace_obj("shop"))
    assert ns.is_namespace and ns.namespace == "shop"  # a Namespace request carries its own name
    with pytest.raises(KeyError, match="Gizmo"):
        Request.for_object("CREATE", {"apiVersion": "x/v1", "kind": "Gizmo", "metadata": {"name": "g"}})


# -- rules --------------------------------------------------------------------------------------
RULE = {"operations": ["CREATE", "UPDATE"], "apiGroups": ["networking.istio.io"], "apiVersions": ["*"],
        "resources": ["*"]}


@pytest.mark.parametrize(("change", "expected"), [
    ({}, True),
    ({"operations": ["DELETE"]}, False),
    ({"operations": ["*"]}, True),
    ({"apiGroups": ["security.istio.io"]}, False),
    ({"apiGroups": ["*"]}, True),
    ({"apiVersions": ["v1alpha3"]}, False),
    ({"apiVersions": ["v1beta1"]}, True),
    ({"resources": ["destinationrules"]}, False),
    ({"resources": ["virtualservices"]}, True),
    ({"resources": ["*/*"]}, True),
    ({"resources": ["virtualservices/*"]}, True),
    ({"resources": ["*/status"]}, False),
    ({"scope": "Namespaced"}, True),
    ({"scope": "Cluster"}, False),
    ({"scope": "*"}, True),
])
def test_each_rule_field_narrows_the_match(change, expected):
    assert rule_matches({**RULE, **change}, Request.for_object("CREATE", vs())) is expected


@pytest.mark.parametrize(("resources", "subresource", "expected"), [
    (["pods"], "", True), (["pods"], "status", False),
    (["*"], "", True), (["*"], "status", False),
    (["*/*"], "status", True), (["pods/*"], "status", True), (["pods/*"], "", True),
    (["*/status"], "status", True), (["*/status"], "exec", False), (["pods/status"], "status", True),
    (["services/*"], "status", False), ([], "", False),
])
def test_resource_patterns_and_subresources(resources, subresource, expected):
    rule = {"operations": ["*"], "apiGroups": [""], "apiVersions": ["v1"], "resources": resources}
    assert rule_matches(rule, Request.for_object("UPDATE", pod(), subresource=subresource)) is expected


def test_a_namespace_object_counts_as_cluster_scoped():
    rule = {"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["*"]}
    ns = Request.for_object("CREATE", namespace_obj("shop"))
    assert rule_matches({**rule, "scope": "Cluster"}, ns)
    assert not rule_matches({**rule, "scope": "Namespaced"}, ns)
    assert rule_matches({**rule, "scope": "Namespaced"}, Request.for_object("CREATE", pod()))
    assert not rule_matches({**rule, "scope": "Cluster"}, Request.for_object("CREATE", pod()))


# -- selectors ----------------------------------------------------------------------------------
ANY_POD_RULE = [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}]


def test_namespace_selector_sees_stored_labels_plus_the_name_label():
    stored = {"shop": namespace_obj("shop", {"team": "a"})}
    hook = {"rules": ANY_POD_RULE, "namespaceSelector": {"matchLabels": {"team": "a"}}}
    assert webhookmatch.webhook_matches(hook, Request.for_object("CREATE", pod("shop")), stored.get)
    assert not webhookmatch.webhook_matches(hook, Request.for_object("CREATE", pod("other")), stored.get)
    by_name = {"rules": ANY_POD_RULE, "namespaceSelector": {"matchExpressions": [
        {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system"]}]}}
    assert webhookmatch.webhook_matches(by_name, Request.for_object("CREATE", pod("shop")), stored.get)
    assert not webhookmatch.webhook_matches(by_name, Request.for_object("CREATE", pod("kube-system")), stored.get)
    assert webhookmatch.namespace_labels("gone", None) == {"kubernetes.io/metadata.name": "gone"}


def test_cluster_scoped_objects_ignore_the_namespace_selector_but_namespaces_use_their_own_labels():
    hook = {"rules": [{"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*"]}],
            "namespaceSelector": {"matchLabels": {"team": "a"}}}
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}}
    assert webhookmatch.webhook_matches(hook, Request.for_object("CREATE", node), no_namespaces)
    assert webhookmatch.webhook_matches(hook, Request.for_object("CREATE", namespace_obj("x", {"team": "a"})),
                                        no_namespaces)
    # on CREATE the namespace is not stored yet: its own labels count, not the (absent) stored ones
    assert not webhookmatch.webhook_matches(hook, Request.for_object("CREATE", namespace_obj("x")),
                                            {"x": namespace_obj("x", {"team": "a"})}.get)


def test_object_selector_matches_the_object_or_the_old_object():
    hook = {"rules": [{**RULE, "operations": ["*"]}],
            "objectSelector": {"matchExpressions": [{"key": "istio.io/rev", "operator": "In", "values": ["default"]}]}}
    labelled, plain = vs(labels={"istio.io/rev": "default"}), vs()
    assert webhookmatch.webhook_matches(hook, Request.for_object("CREATE", labelled), no_namespaces)
    assert not webhookmatch.webhook_matches(hook, Request.for_object("CREATE", plain), no_namespaces)
    # removing the label on UPDATE is still seen by the webhook that selected the old object
    assert webhookmatch.webhook_matches(hook, Request.for_object("UPDATE", plain, old_object=labelled), no_namespaces)
    assert webhookmatch.webhook_matches({"rules": [RULE], "objectSelector": {}}, Request.for_object("CREATE", plain),
                                        no_namespaces)


# -- Istio's own configurations --------------------------------------------------------------------
def istio_configurations():
    """The webhook configurations Istio 1.19's default install creates, as the traces hold them."""
    docs = list(yaml.safe_load_all((SOURCE_DIR / "istio-system" / "istiod.yaml").read_text()))
    base = yaml.safe_load((SOURCE_DIR / "istio-base.yaml").read_text())
    docs += base["steps"][0]["apply"]
    validating = [d for d in docs if d and d["kind"] == "ValidatingWebhookConfiguration"]
    mutating = [d for d in docs if d and d["kind"] == "MutatingWebhookConfiguration"]
    return validating, mutating


def names(found):
    return [f"{config}/{hook['name']}" for config, hook in found]


def test_istio_validators_split_objects_by_the_revision_label():
    validating, _ = istio_configurations()
    found = webhookmatch.matching_webhooks(validating, Request.for_object("CREATE", vs()), no_namespaces)
    assert names(found) == ["istiod-default-validator/validation.istio.io"]
    labelled = vs(labels={"istio.io/rev": "default"})
    found = webhookmatch.matching_webhooks(validating, Request.for_object("UPDATE", labelled), no_namespaces)
    assert names(found) == ["istio-validator-istio-system/rev.validation.istio.io",
                            "istiod-default-validator/validation.istio.io"]
    assert webhookmatch.matching_webhooks(validating, Request.for_object("DELETE", vs()), no_namespaces) == []
    assert webhookmatch.matching_webhooks(validating, Request.for_object("CREATE", pod()), no_namespaces) == []


def test_istio_injector_webhooks_follow_namespace_and_pod_labels():
    _, mutating = istio_configurations()
    state = {e.object["metadata"]["name"]: e.object for e in load_trace("bookinfo").events
             if e.object["kind"] == "Namespace"}
    assert state["default"]["metadata"]["labels"]["istio-injection"] == "enabled"
    in_default = webhookmatch.matching_webhooks(mutating, Request.for_object("CREATE", pod("default")), state.get)
    assert [hook["name"] for _, hook in in_default] == ["namespace.sidecar-injector.istio.io"]
    opted_in = pod("istio-system", {"sidecar.istio.io/inject": "true"})
    found = webhookmatch.matching_webhooks(mutating, Request.for_object("CREATE", opted_in), state.get)
    assert [hook["name"] for _, hook in found] == ["object.sidecar-injector.istio.io"]
    assert webhookmatch.matching_webhooks(mutating, Request.for_object("CREATE", pod("istio-system")), state.get) == []


# -- where webhooks send requests -------------------------------------------------------------------
@pytest.mark.parametrize(("client_config", "expected"), [
    ({"service": {"name": "istiod", "namespace": "istio-system", "path": "/validate"}},
     ("istiod", "istio-system", "/validate")),
    ({"service": {"name": "istiod", "namespace": "istio-system"}}, ("istiod", "istio-system", "/")),
    ({"url": "https://istiod-canary.istio-system.svc:443/validate"}, ("istiod-canary", "istio-system", "/validate")),
    ({"url": "https://istiod.istio-system.svc.cluster.local/inject/net/n1"}, ("istiod", "istio-system",
                                                                              "/inject/net/n1")),
    ({"url": "https://127.0.0.1:15017/validate"}, ("", "", "/validate")),
    (None, ("", "", "/")),
])
def test_target_reads_service_references_and_service_urls(client_config, expected):
    where = webhookmatch.target(client_config)
    assert (where.service, where.namespace, where.path) == expected


def test_webhooks_calling_finds_the_validators_of_one_istiod():
    validating, mutating = istio_configurations()
    everything = validating + mutating
    calling = webhookmatch.webhooks_calling(everything, "istiod", "istio-system", "/validate")
    assert names(calling) == ["istio-validator-istio-system/rev.validation.istio.io",
                              "istiod-default-validator/validation.istio.io"]
    injectors = webhookmatch.webhooks_calling(everything, "istiod", "istio-system", "/inject")
    assert len(injectors) == len(mutating[0]["webhooks"]) == 4
    assert webhookmatch.webhooks_calling(everything, "istiod-canary", "istio-system") == []
    assert len(webhookmatch.webhooks_calling(everything, "istiod", "istio-system")) == 6


@pytest.mark.parametrize(("path", "route", "expected"), [
    ("/validate", "/validate", True), ("/validate/", "/validate", True), ("/validate/x", "/validate", True),
    ("/validatex", "/validate", False), ("/inject", "/validate", False), ("/", "/validate", False),
])
def test_path_served_by_mirrors_istiods_two_registrations(path, route, expected):
    assert webhookmatch.path_served_by(path, route) is expected


def test_webhook_configurations_are_exempt_from_webhooks():
    validating, mutating = istio_configurations()
    assert all(webhookmatch.is_exempt(c) for c in validating + mutating)
    assert not webhookmatch.is_exempt(vs()) and not webhookmatch.is_exempt(pod())
    assert not webhookmatch.is_exempt({"apiVersion": "v1", "kind": "ValidatingWebhookConfiguration"})
