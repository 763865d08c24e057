"""Views for notebook 13 (sidecar injection): decision tables, webhook selectors, AdmissionReviews,
JSONPatches and before/after pod diffs — as fixed-width text that reproduces under nbval.

Nothing here injects anything; it only shows what ``mesh.inject`` did. Go counterparts, for
orientation: istiod logs the same decisions (``Sidecar injection request for ...``, ``Skipping
... due to policy check``) in ``inject``
https://github.com/istio/istio/blob/1.19.0/pkg/kube/inject/webhook.go#L998-L1063.
"""

from __future__ import annotations

import base64
import copy
import difflib
import json
from collections.abc import Iterable

import yaml

from mesh.inject.config import InjectorConfig
from mesh.inject.policy import INJECT_KEY, inject_required
from mesh.inject.webhook import describe_decisions
from mesh.teach.views import TextView, table


def config_summary(watcher) -> TextView:
    """What the injector runs with: policy, templates, selectors, and where it came from."""
    c: InjectorConfig = watcher.config
    rows = [
        ("source", watcher.source),
        ("policy", c.policy),
        ("templates", ", ".join(sorted(c.raw_templates))),
        ("defaultTemplates", ", ".join(c.default_templates)),
        ("aliases", json.dumps(c.aliases) if c.aliases else "-"),
        ("neverInjectSelector", json.dumps(c.never_inject_selector) if c.never_inject_selector else "-"),
        ("alwaysInjectSelector", json.dumps(c.always_inject_selector) if c.always_inject_selector else "-"),
        ("proxy image", f"{watcher.values.get('global', {}).get('hub')}/proxyv2:"
                        f"{watcher.values.get('global', {}).get('tag')}"),
    ]
    return table(("setting", "value"), rows)


def _selector_text(selector: dict | None) -> str:
    if not selector:
        return "(everything)"
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for e in selector.get("matchExpressions") or []:
        op = e["operator"]
        if op in ("In", "NotIn"):
            parts.append(f"{e['key']} {'in' if op == 'In' else 'notin'} ({','.join(e.get('values') or [])})")
        else:
            parts.append(("" if op == "Exists" else "!") + e["key"])
    return ", ".join(parts)


def webhooks_table(mwc: dict) -> TextView:
    """The webhooks of a MutatingWebhookConfiguration: who gets called, for which pods."""
    rows = []
    for hook in mwc.get("webhooks") or []:
        service = (hook.get("clientConfig") or {}).get("service") or {}
        rows.append((hook["name"], _selector_text(hook.get("namespaceSelector")),
                     _selector_text(hook.get("objectSelector")),
                     f"{service.get('name')}.{service.get('namespace')}{service.get('path', '')}"))
    return table(("webhook", "namespaceSelector", "objectSelector", "calls"), rows,
                 title=f"MutatingWebhookConfiguration {mwc['metadata']['name']}")


def policy_table(config: InjectorConfig, pods: Iterable[dict]) -> TextView:
    """The webhook's policy decision (``injectRequired``) for each pod, and the rule that decided."""
    rows = []
    for pod in pods:
        meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
        rows.append((f"{meta.get('namespace', '')}/{meta.get('name', '')}",
                     "yes" if spec.get("hostNetwork") else "",
                     (meta.get("labels") or {}).get(INJECT_KEY, ""),
                     (meta.get("annotations") or {}).get(INJECT_KEY, ""),
                     "inject" if inject_required(config, spec, meta) else "skip",
                     inject_required(config, spec, meta).reason))
    return table(("pod", "hostNetwork", "label", "annotation", "decision", "because"), rows,
                 title=f"policy: {config.policy}")


def decisions_table(decisions) -> TextView:
    rows = describe_decisions(decisions)
    headers = ("t", "pod", "injected", "reason", "via", "patch ops")
    return table(headers, [[r[h] for h in headers] for r in rows])


def review_view(review: dict) -> TextView:
    """An AdmissionReview as YAML, the pod inside cut down to its name, labels and containers."""
    shown = copy.deepcopy(review)
    obj = shown.get("request", {}).get("object")
    if isinstance(obj, dict):
        meta = obj.get("metadata") or {}
        shown["request"]["object"] = {
            "apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"),
            "metadata": {k: meta[k] for k in ("name", "namespace", "labels") if k in meta},
            "spec": {"containers": [f"{c['name']} ({c.get('image', '')})" for c in obj["spec"]["containers"]],
                     "...": "(rest of the pod spec)"},
        }
    return TextView(yaml.safe_dump(shown, sort_keys=False, default_flow_style=False, width=110))


def response_view(answer: dict) -> TextView:
    """The answer, with the base64 patch shown by size (its decoded form is ``patch_table``)."""
    shown = copy.deepcopy(answer)
    response = shown.get("response") or {}
    if "patch" in response:
        size = len(base64.b64decode(response["patch"]))
        response["patch"] = f"<base64 of a {size}-byte JSONPatch: {response['patch'][:24]}...>"
    return TextView(yaml.safe_dump(shown, sort_keys=False, default_flow_style=False, width=110))


def _short(value, limit: int = 60) -> str:
    text = json.dumps(value, separators=(",", ":"))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def patch_table(patch: list[dict]) -> TextView:
    """A JSONPatch one operation a line; ``~1`` in a path is an escaped ``/`` (RFC 6901)."""
    return table(("op", "path", "value"), [(p["op"], p["path"], _short(p.get("value"))) for p in patch])


def pod_diff(before: dict, after: dict) -> TextView:
    """A unified diff of the pod as YAML (sorted keys), before and after the patch."""
    def lines(obj):
        return yaml.safe_dump(obj, sort_keys=True, default_flow_style=False, width=110).splitlines()

    diff = difflib.unified_diff(lines(before), lines(after), "pod as submitted", "pod as stored", n=1,
                                lineterm="")
    return TextView("\n".join(diff))


def containers_table(pods: Iterable[dict]) -> TextView:
    rows = []
    for pod in pods:
        spec = pod.get("spec") or {}
        rows.append((f"{pod['metadata'].get('namespace', '')}/{pod['metadata']['name']}",
                     ", ".join(c["name"] for c in spec.get("initContainers") or []) or "-",
                     ", ".join(c["name"] for c in spec.get("containers") or [])))
    return table(("pod", "initContainers", "containers"), rows)


def variant(pod: dict, name: str, labels: dict | None = None, annotations: dict | None = None,
            namespace: str | None = None, host_network: bool = False) -> dict:
    """A copy of ``pod`` under another name, with extra labels/annotations, for decision tables."""
    out = copy.deepcopy(pod)
    meta = out["metadata"]
    meta["name"] = name
    meta.pop("generateName", None)
    if namespace is not None:
        meta["namespace"] = namespace
    meta["labels"] = {**(meta.get("labels") or {}), **(labels or {})}
    meta["annotations"] = {**(meta.get("annotations") or {}), **(annotations or {})}
    if host_network:
        out["spec"]["hostNetwork"] = True
    return out


def log_lines(book, prefix: str = "mesh.inject") -> TextView:
    """The captured log lines of one logger family (``views.capture_logs``), without the others'."""
    lines = [line for line in book.lines if line.split(None, 2)[1].rstrip(":").startswith(prefix)]
    return TextView("\n".join(lines) or "(no log lines)")
