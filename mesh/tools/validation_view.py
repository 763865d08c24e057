"""Views of config validation for notebook 14 and ``mesh replay --show validation``.

Nothing here is part of the mini-istiod. It turns what ``mesh.webhooks.replay.ReplayValidation``
recorded — one ``ValidationDecision`` per webhook call, and the AdmissionReviews exchanged — into
fixed-width text (``TextView``) or rows for a rich table, with virtual times only. istiod itself
only counts these (the ``galley/validation/passed``, ``failed`` and ``http_error`` metrics of
https://github.com/istio/istio/blob/1.19.0/pkg/webhooks/validation/server/monitoring.go#L49-L88);
the per-request table is ours.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable

from mesh.tools.textview import TextView, as_yaml, table

DECISION_HEADERS = ("t (s)", "op", "kind", "namespace/name", "outcome", "webhook", "istiod's message")


def decision_rows(decisions: Iterable) -> list[tuple[str, ...]]:
    """One row per webhook call, in the order the calls were made."""
    rows = []
    for d in decisions:
        message = d.message or ("; ".join(f"warning: {w}" for w in d.warnings))
        rows.append((f"{d.t:.3f}", d.operation, d.kind, d.object_name, d.outcome, d.webhook, message))
    return rows


def decisions_table(decisions: Iterable) -> TextView:
    return table(DECISION_HEADERS, decision_rows(decisions))


def denied_table(denied: Iterable) -> TextView:
    """What the replay client refused: ``client.denied`` as (t, event, kind, namespace/name, reason)."""
    rows = []
    for event, reason in denied:
        meta = event.object.get("metadata") or {}
        where = f"{meta.get('namespace')}/{meta.get('name')}" if meta.get("namespace") else meta.get("name")
        rows.append((f"{event.t:.3f}", event.type, event.object.get("kind"), where, reason))
    return table(("t (s)", "trace event", "kind", "namespace/name", "kube-apiserver says"), rows)


def _abridged(obj: dict | None) -> dict | None:
    """An object without the server-set metadata a reader does not need to see."""
    if obj is None:
        return None
    out = copy.deepcopy(obj)
    meta = out.get("metadata") or {}
    for key in ("uid", "resourceVersion", "creationTimestamp", "generation", "managedFields", "annotations"):
        meta.pop(key, None)
    return out


def exchange(review: dict, answer: object) -> TextView:
    """One AdmissionReview as kube-apiserver sends it (object abridged) and istiod's answer, as YAML."""
    sent = json.loads(json.dumps(review))  # plain data: no shared sub-objects for YAML to alias
    request = sent.get("request") or {}
    request["object"] = _abridged(request.get("object"))
    request["oldObject"] = _abridged(request.get("oldObject"))
    return TextView(f"# sent to /validate\n{as_yaml(sent)}\n# answered\n{as_yaml(json.loads(json.dumps(answer)))}")


def _selector(selector: dict | None) -> str:
    """A LabelSelector in kubectl's string form (``!key`` = label absent); ``(all)`` when empty."""
    if not selector:
        return "(all)"
    terms = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for e in selector.get("matchExpressions") or []:
        op, values = e.get("operator"), ",".join(e.get("values") or [])
        terms.append({"In": f"{e['key']} in ({values})", "NotIn": f"{e['key']} notin ({values})",
                      "Exists": e["key"], "DoesNotExist": f"!{e['key']}"}.get(op, f"{e['key']} {op}"))
    return ", ".join(terms)


def webhooks_table(configurations: Iterable[dict]) -> TextView:
    """Each webhook of the given ValidatingWebhookConfigurations: what it covers and whom it calls."""
    from mesh.kube import webhookmatch

    rows = []
    for config in sorted(configurations, key=lambda c: c["metadata"]["name"]):
        for hook in config.get("webhooks") or []:
            rules = "; ".join(f"{'/'.join(r.get('operations') or [])} of {','.join(r.get('resources') or [])} in "
                              f"{len(r.get('apiGroups') or [])} groups" for r in hook.get("rules") or [])
            rows.append((f"{config['metadata']['name']}/{hook.get('name')}", rules,
                         _selector(hook.get("objectSelector")), hook.get("failurePolicy", "Fail"),
                         str(webhookmatch.target(hook.get("clientConfig")))))
    return table(("webhook", "rules", "objectSelector", "failurePolicy", "calls"), rows)


def matches_table(configurations: list[dict], objects: Iterable[dict], find_namespace) -> TextView:
    """For each object, the webhooks kube-apiserver would call on its CREATE."""
    from mesh.kube import webhookmatch

    rows = []
    for obj in objects:
        request = webhookmatch.Request.for_object("CREATE", obj)
        found = webhookmatch.matching_webhooks(configurations, request, find_namespace)
        labels = ",".join(f"{k}={v}" for k, v in sorted(((obj.get("metadata") or {}).get("labels") or {}).items()))
        rows.append((f"{obj['kind']} {(obj.get('metadata') or {}).get('name')}", labels or "(none)",
                     ", ".join(f"{c}/{h['name']}" for c, h in found) or "(none: stored unchecked)"))
    return table(("object", "labels", "webhooks called on CREATE"), rows)
