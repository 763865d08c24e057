"""Status conditions: how a conversion's findings become ``status.conditions`` on the inputs.

Go counterparts:

- ``ParentError``/``ConfigError`` and their reasons
  (https://github.com/istio/istio/blob/1.19.0/pilot/pkg/config/kube/gateway/conditions.go#L175-L238);
- ``setConditions``, which sets each condition in sorted type order and flips the status when
  an error is attached
  (https://github.com/istio/istio/blob/1.19.0/pilot/pkg/config/kube/gateway/conditions.go#L240-L283),
  on top of ``kstatus.UpdateConditionIfChanged``
  (https://github.com/istio/istio/blob/1.19.0/pilot/pkg/model/kstatus/helper.go#L85-L108);
- ``createRouteStatus``, which folds one route's per-listener results into one entry per
  parentRef, keeping the "best" reason
  (https://github.com/istio/istio/blob/1.19.0/pilot/pkg/config/kube/gateway/conditions.go#L45-L173);
- ``generateSupportedKinds``, the route kinds a listener accepts
  (https://github.com/istio/istio/blob/1.19.0/pilot/pkg/config/kube/gateway/conditions.go#L323-L362).

Conditions carry ``lastTransitionTime`` only when the caller passes a time: mesh keeps wall
clocks out of anything it prints.
"""

from __future__ import annotations

from dataclasses import dataclass

from mesh.configcontroller.gateway_api.resources import GATEWAY_GROUP, MANAGED_GATEWAY_CONTROLLER

# Parent (binding) errors, reported on the route's Accepted condition.
NO_MATCHING_PARENT = "NoMatchingParent"  # port or sectionName did not match
NOT_ALLOWED_BY_LISTENERS = "NotAllowedByListeners"
NO_MATCHING_LISTENER_HOSTNAME = "NoMatchingListenerHostname"
PARENT_REF_CONFLICT = "ParentRefConflict"
PARENT_NO_ERROR = ""

# Config errors, reported on ResolvedRefs (routes), Accepted/Programmed (gateways) and listeners.
REF_NOT_PERMITTED = "RefNotPermitted"
INVALID_DESTINATION = "InvalidDestination"
INVALID_ADDRESS = "UnsupportedAddress"
INVALID_KIND = "InvalidKind"
BACKEND_NOT_FOUND = "BackendNotFound"
INVALID_FILTER = "InvalidFilter"
INVALID_CERTIFICATE_REF = "InvalidCertificateRef"
INVALID_CONFIGURATION = "InvalidConfiguration"
GATEWAY_INVALID = "Invalid"
DEPRECATED_FIELD = "DeprecatedField"


@dataclass
class ParentError:
    reason: str
    message: str


@dataclass
class ConfigError:
    reason: str
    message: str


@dataclass
class Condition:
    """A condition to set: ``reason``/``message``/``status`` on success, or ``error`` (which wins,
    inverting the status)."""

    reason: str
    message: str
    status: str = ""  # "" means True
    error: ConfigError | None = None


def _invert(status: str) -> str:
    return "True" if status == "False" else "False"


def update_condition_if_changed(conditions: list[dict], new: dict) -> list[dict]:
    """Replace the condition of the same type, unless status, message and generation are all
    unchanged (then the old one, reason and time included, is kept)."""
    out = [dict(c) for c in conditions]
    for i, existing in enumerate(out):
        if existing.get("type") != new["type"]:
            continue
        if existing.get("status") == new["status"]:
            if existing.get("message") == new["message"] and \
                    int(existing.get("observedGeneration") or 0) == int(new.get("observedGeneration") or 0):
                return conditions
            if "lastTransitionTime" in existing:
                new = {**new, "lastTransitionTime": existing["lastTransitionTime"]}
            elif "lastTransitionTime" in new:
                new = {k: v for k, v in new.items() if k != "lastTransitionTime"}
        out[i] = new
        return out
    out.append(new)
    return out


def set_conditions(generation: int, existing: list[dict] | None, conditions: dict[str, Condition],
                   now: str | None) -> list[dict]:
    result = list(existing or [])
    for ctype in sorted(conditions):
        cond = conditions[ctype]
        if cond.error is not None:
            status, reason, message = _invert(cond.status or "True"), cond.error.reason, cond.error.message
        else:
            status, reason, message = cond.status or "True", cond.reason, cond.message
        new: dict = {}
        if now is not None:
            new["lastTransitionTime"] = now
        new["message"] = message
        if generation:
            new["observedGeneration"] = generation
        new.update(reason=reason, status=status, type=ctype)
        result = update_condition_if_changed(result, new)
    return result


# --- route status -------------------------------------------------------------------------------


def parent_ref_string(ref: dict) -> str:
    """The sort key Go builds for a parentRef: group/kind/name/section/port.namespace."""
    return (f"{ref.get('group') or ''}/{ref.get('kind') or ''}/{ref.get('name')}/"
            f"{ref.get('sectionName') or ''}/{ref.get('port') or 0}.{ref.get('namespace') or ''}")


@dataclass
class RouteParentResult:
    ref_index: int  # which entry of spec.parentRefs
    original: dict  # that entry, as written
    denied: ParentError | None
    route_error: ConfigError | None


# Best first: success, then route-level refusals, then port/section mismatches (reported last so a
# route bound to one listener does not complain about the listeners it never meant).
_REASON_RANKING = [PARENT_NO_ERROR, NOT_ALLOWED_BY_LISTENERS, NO_MATCHING_LISTENER_HOSTNAME,
                   PARENT_REF_CONFLICT, NO_MATCHING_PARENT]


def create_route_status(results: list[RouteParentResult], generation: int, current: list[dict],
                        now: str | None) -> list[dict]:
    parents = [p for p in current if p.get("controllerName") != MANAGED_GATEWAY_CONTROLLER]
    seen: dict[int, list[RouteParentResult]] = {}
    success: dict[int, int] = {}
    reasons = set()
    for r in results:
        if r.denied is None:
            success[r.ref_index] = success.get(r.ref_index, 0) + 1
        seen.setdefault(r.ref_index, []).append(r)
        reasons.add(r.denied.reason if r.denied else PARENT_NO_ERROR)

    report: dict[int, RouteParentResult] = {}
    for want in _REASON_RANKING:
        if want not in reasons:
            continue
        for key, refs in seen.items():
            for ref in refs:
                if (ref.denied.reason if ref.denied else PARENT_NO_ERROR) != want:
                    continue
                if key not in report:
                    # Copy: messages of several listeners may be joined into it.
                    denied = ParentError(ref.denied.reason, ref.denied.message) if ref.denied else None
                    report[key] = RouteParentResult(ref.ref_index, ref.original, denied, ref.route_error)
                elif ref.denied is not None:
                    exist = report[key]
                    if exist.denied is not None:
                        exist.denied.message += "; " + ref.denied.message
                    else:
                        exist.denied = ParentError(ref.denied.reason, ref.denied.message)
        break  # only the best reason seen is reported

    for key, res in report.items():
        msg = "Route was valid"
        if success.get(key, 0) > 1:
            msg = f"Route was valid, bound to {success[key]} parents"
        conds = {
            "Accepted": Condition("Accepted", msg),
            "ResolvedRefs": Condition("ResolvedRefs", "All references resolved"),
        }
        if res.route_error is not None:
            # 1.19 reports every route-level error (not only bad references) on ResolvedRefs.
            conds["ResolvedRefs"].error = res.route_error
        if res.denied is not None:
            conds["Accepted"].error = ConfigError(res.denied.reason, res.denied.message)
        existing = next((p.get("conditions") or [] for p in current
                         if parent_ref_string(p.get("parentRef") or {}) == parent_ref_string(res.original)), [])
        parents.append({
            "parentRef": dict(res.original),
            "controllerName": MANAGED_GATEWAY_CONTROLLER,
            "conditions": set_conditions(generation, existing, conds, now),
        })
    parents.sort(key=lambda p: parent_ref_string(p.get("parentRef") or {}), reverse=True)
    return parents


# --- listeners ------------------------------------------------------------------------------------


def _rgk(kind: str) -> dict:
    return {"group": GATEWAY_GROUP, "kind": kind}


def supported_kinds(listener: dict) -> tuple[list[dict], bool]:
    """The route kinds a listener takes, and whether every kind it asked for is one Istio supports."""
    protocol = listener.get("protocol")
    if protocol in ("HTTP", "HTTPS"):
        supported = [_rgk("HTTPRoute")]
    elif protocol == "TCP":
        supported = [_rgk("TCPRoute")]
    elif protocol == "TLS":
        mode = (listener.get("tls") or {}).get("mode")
        supported = [_rgk("TLSRoute")] if mode == "Passthrough" else [_rgk("TCPRoute")]
    else:  # UDP and anything else: no route kind
        supported = []
    wanted = ((listener.get("allowedRoutes") or {}).get("kinds")) or []
    if wanted:
        both = [s for s in supported
                if any(s["kind"] == w["kind"] and s["group"] == (w.get("group") or GATEWAY_GROUP) for w in wanted)]
        return both, len(both) == len(wanted)
    return supported, True
