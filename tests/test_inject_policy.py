"""The injection decision matrix: namespace label × pod label × annotation × selectors ×
hostNetwork × system namespace × policy, through the bookinfo trace's MutatingWebhookConfiguration
(kube-apiserver's part) and then the webhook's policy (istiod's part)."""

from __future__ import annotations

import dataclasses
import itertools

import pytest

from mesh.clock import VirtualClock
from mesh.config.mesh import default_mesh_config
from mesh.inject.admission import ReplayAdmission
from mesh.inject.config import InjectorConfig, InjectorConfigWatcher, load_builtin
from mesh.inject.policy import IGNORED_NAMESPACES, inject_required
from mesh.inject.webhook import Webhook
from mesh.kube.client import ReplayClient
from mesh.kube.trace import Trace, TraceEvent, load_trace

NS_LABELS = {"none": {}, "enabled": {"istio-injection": "enabled"}, "disabled": {"istio-injection": "disabled"},
             "rev": {"istio.io/rev": "default"}}
TRISTATE = (None, "true", "false")
SELECTORS = ("none", "never", "always")


def expected(ns: str, label, annotation, selector: str, host_network: bool, system: bool, policy: str) -> bool:
    """The rules, written out independently of the code under test."""
    # kube-apiserver: which webhook (if any) is called, by namespace and pod labels
    if ns in ("enabled", "rev"):
        called = label != "false"
    elif ns == "disabled":
        called = False
    else:
        called = label == "true"
    if not called or host_network or system:
        return False
    explicit = label if label is not None else annotation  # the label wins over the annotation
    if explicit is not None:
        return explicit == "true"
    if selector == "never":
        return False
    if selector == "always":
        return True
    return policy == "enabled"


def cluster(policy: str) -> tuple[ReplayClient, Webhook, ReplayAdmission]:
    bookinfo = load_trace("bookinfo")
    mwc = next(e.object for e in bookinfo.events if e.object["kind"] == "MutatingWebhookConfiguration")
    events = [TraceEvent(0, "ADDED", mwc)]
    for system in (False, True):
        for ns, labels in NS_LABELS.items():
            events.append(TraceEvent(0, "ADDED", {"apiVersion": "v1", "kind": "Namespace",
                                                  "metadata": {"name": namespace(ns, system), "labels": labels}}))
    client = ReplayClient(Trace({"trace": "mesh/v1"}, events), VirtualClock())
    config, values = load_builtin()
    config = dataclasses.replace(config, policy=policy,
                                 never_inject_selector=[{"matchLabels": {"mesh-test": "never"}}],
                                 always_inject_selector=[{"matchExpressions": [
                                     {"key": "mesh-test", "operator": "In", "values": ["always"]}]}])
    webhook = Webhook(InjectorConfigWatcher(config, values), default_mesh_config)
    return client, webhook, ReplayAdmission(client, webhook).install()


def namespace(ns: str, system: bool) -> str:
    # The four Kubernetes system namespaces get the four label variants, so the system rule is
    # seen to say no on its own, whatever the namespace labels.
    return dict(zip(NS_LABELS, IGNORED_NAMESPACES, strict=True))[ns] if system else f"apps-{ns}"


@pytest.mark.parametrize("policy", ["enabled", "disabled"])
def test_matrix(policy):
    client, webhook, _ = cluster(policy)
    wrong = []
    cases = itertools.product(NS_LABELS, TRISTATE, TRISTATE, SELECTORS, (False, True), (False, True))
    for i, (ns, label, annotation, selector, host_network, system) in enumerate(cases):
        labels = {"app": "demo"}
        if label is not None:
            labels["sidecar.istio.io/inject"] = label
        if selector != "none":
            labels["mesh-test"] = selector
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": f"p{i}", "namespace": namespace(ns, system), "labels": labels,
                            "annotations": {"sidecar.istio.io/inject": annotation} if annotation else {}},
               "spec": {"hostNetwork": host_network, "containers": [{"name": "app", "image": "app:1"}]}}
        stored = client.create(pod)
        injected = "sidecar.istio.io/status" in stored["metadata"].get("annotations", {})
        want = expected(ns, label, annotation, selector, host_network, system, policy)
        if injected != want:
            wrong.append((ns, label, annotation, selector, host_network, system, injected, webhook.decisions[-1]))
    assert not wrong, f"{len(wrong)} wrong decisions, e.g. {wrong[:3]}"
    assert len(webhook.decisions) == 4 * 3 * 3 * 3 * 2 * 2  # one recorded decision per pod


def test_reasons_name_the_rule():
    config = InjectorConfig(policy="disabled", never_inject_selector=[{"matchLabels": {"a": "b"}}],
                            always_inject_selector=[{}, {"matchLabels": {"a": "c"}}])
    meta = {"namespace": "default", "labels": {"a": "c"}}
    assert inject_required(config, {}, meta).reason == "alwaysInjectSelector[1] matches the pod labels"
    meta["labels"]["a"] = "b"
    assert inject_required(config, {}, meta).reason == "neverInjectSelector[0] matches the pod labels"
    assert not inject_required(config, {}, {"namespace": "x"})  # an empty selector matches nothing here
    assert inject_required(config, {}, {"namespace": "kube-public"}).reason == "system namespace kube-public"
    yes = {"namespace": "x", "labels": {"sidecar.istio.io/inject": "On"}, "annotations": {"sidecar.istio.io/inject": "false"}}
    assert inject_required(config, {}, yes).reason == "label sidecar.istio.io/inject=On"
    odd = InjectorConfig(policy="sometimes")
    assert not inject_required(odd, {}, {"namespace": "x", "labels": {"sidecar.istio.io/inject": "true"}})
