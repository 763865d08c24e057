"""Should this pod get a sidecar? The injection policy, as istiod 1.19 decides it — with the reason.

Go: ``injectRequired`` https://github.com/istio/istio/blob/1.19.0/pkg/kube/inject/inject.go#L187-L297
and the system namespaces it skips, ``IgnoredNamespaces``
https://github.com/istio/istio/blob/1.19.0/pkg/kube/inject/initializer.go#L29-L42.

The order of the checks is the whole story:

1. ``hostNetwork: true`` → never (iptables would rewrite the node's routing, not the pod's);
2. a Kubernetes system namespace → never;
3. the pod's ``sidecar.istio.io/inject`` *label* (or, if there is no label, the annotation of
   the same name): ``y``/``yes``/``true``/``on`` (any case) inject, any other non-empty value
   means no, and either way the decision is made;
4. otherwise the config's ``neverInjectSelector`` list, then ``alwaysInjectSelector`` (the first
   non-empty selector that matches the pod labels decides);
5. otherwise the policy: ``enabled`` injects, ``disabled`` does not.

The namespace-level switches (``istio-injection=enabled``, ``istio.io/rev``) are not here: they
are selectors in the MutatingWebhookConfiguration, so kube-apiserver never even calls the
webhook for a pod outside those namespaces (see ``mesh/inject/admission.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

from mesh.inject.config import InjectorConfig
from mesh.kube.selectors import matches_labels

IGNORED_NAMESPACES = ("kube-system", "kube-public", "kube-node-lease", "local-path-storage")
INJECT_KEY = "sidecar.istio.io/inject"  # both the label and the (older) annotation
_YES = ("y", "yes", "true", "on")


@dataclass(frozen=True)
class Decision:
    inject: bool
    reason: str

    def __bool__(self) -> bool:
        return self.inject


def inject_required(config: InjectorConfig, pod_spec: dict, metadata: dict,
                    ignored_namespaces: tuple[str, ...] = IGNORED_NAMESPACES) -> Decision:
    """Decide like ``injectRequired``; ``reason`` says which rule decided."""
    if pod_spec.get("hostNetwork"):
        return Decision(False, "hostNetwork pod")
    namespace = metadata.get("namespace", "")
    if namespace in ignored_namespaces:
        return Decision(False, f"system namespace {namespace}")

    labels = metadata.get("labels") or {}
    annotations = metadata.get("annotations") or {}
    source, value = None, ""
    if INJECT_KEY in annotations:
        source, value = "annotation", str(annotations[INJECT_KEY])
    if INJECT_KEY in labels:  # the label is the newer API and wins over the annotation
        source, value = "label", str(labels[INJECT_KEY])
    explicit = None
    if value.lower() in _YES:
        explicit = Decision(True, f"{source} {INJECT_KEY}={value}")
    elif value != "":
        explicit = Decision(False, f"{source} {INJECT_KEY}={value}")

    if explicit is None:
        for i, selector in enumerate(config.never_inject_selector):
            if _non_empty(selector) and matches_labels(selector, labels):
                explicit = Decision(False, f"neverInjectSelector[{i}] matches the pod labels")
                break
    if explicit is None:
        for i, selector in enumerate(config.always_inject_selector):
            if _non_empty(selector) and matches_labels(selector, labels):
                explicit = Decision(True, f"alwaysInjectSelector[{i}] matches the pod labels")
                break

    if config.policy not in ("enabled", "disabled"):
        return Decision(False, f"invalid policy {config.policy!r}: auto-injection off")
    if explicit is not None:
        return explicit
    return Decision(config.policy == "enabled", f"policy {config.policy}")


def _non_empty(selector: dict) -> bool:
    # An empty LabelSelector selects everything in Kubernetes; istiod skips it here on purpose.
    return bool(selector.get("matchLabels") or selector.get("matchExpressions"))
