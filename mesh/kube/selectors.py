"""Label selectors: the map form (``matchLabels``), the full form (``matchExpressions``) and the
string form (``app=reviews,version in (v1,v2),!canary``) used by kubectl and the REST API.

Kubernetes' own implementation is ``k8s.io/apimachinery/pkg/labels``; Istio uses it through
``klabels.SelectorFromSet`` (e.g. https://github.com/istio/istio/blob/1.19.0/pkg/config/labels/instance.go).
"""

from __future__ import annotations

import re

_SET_EXPR = re.compile(r"^\s*([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")


def parse_selector(text: str) -> list[tuple[str, str, list[str]]]:
    """``"a=b,c!=d,e in (x,y),f,!g"`` → ``[(key, op, values), ...]``; raise ValueError if malformed."""
    requirements: list[tuple[str, str, list[str]]] = []
    for term in _split_terms(text):
        term = term.strip()
        if not term:
            continue
        if m := _SET_EXPR.match(term):
            key, op, values = m.group(1), m.group(2), [v.strip() for v in m.group(3).split(",") if v.strip()]
            requirements.append((key, "In" if op == "in" else "NotIn", values))
        elif "!=" in term:
            key, value = term.split("!=", 1)
            requirements.append((key.strip(), "NotIn", [value.strip()]))
        elif "==" in term or "=" in term:
            key, value = term.split("==", 1) if "==" in term else term.split("=", 1)
            requirements.append((key.strip(), "In", [value.strip()]))
        elif term.startswith("!"):
            requirements.append((term[1:].strip(), "DoesNotExist", []))
        elif re.fullmatch(r"[\w./-]+", term):
            requirements.append((term, "Exists", []))
        else:
            raise ValueError(f"invalid label selector term {term!r}")
    return requirements


def _split_terms(text: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    terms, depth, current = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += ch
    terms.append(current)
    return terms


def _requirement_matches(labels: dict[str, str], key: str, op: str, values: list[str]) -> bool:
    if op == "In":
        return key in labels and labels[key] in values
    if op == "NotIn":
        return key not in labels or labels[key] not in values
    if op == "Exists":
        return key in labels
    if op == "DoesNotExist":
        return key not in labels
    raise ValueError(f"unknown selector operator {op!r}")


def matches_labels(selector: dict | str | None, labels: dict[str, str]) -> bool:
    """Does ``labels`` satisfy ``selector``?

    ``selector`` may be a plain label map (every pair must match), a LabelSelector object
    (``{"matchLabels": ..., "matchExpressions": [...]}``), or a selector string. An empty or
    None selector matches everything, as in Kubernetes.
    """
    if not selector:
        return True
    if isinstance(selector, str):
        return all(_requirement_matches(labels, k, op, v) for k, op, v in parse_selector(selector))
    if "matchLabels" in selector or "matchExpressions" in selector:
        plain = selector.get("matchLabels") or {}
        expressions = selector.get("matchExpressions") or []
        return matches_labels(plain, labels) and all(
            _requirement_matches(labels, e["key"], e["operator"], e.get("values") or []) for e in expressions
        )
    return all(labels.get(k) == v for k, v in selector.items())
