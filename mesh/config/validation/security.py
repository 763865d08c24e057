"""security.istio.io validation: ``ValidatePeerAuthentication``, ``ValidateAuthorizationPolicy`` and
``ValidateRequestAuthentication`` (https://github.com/istio/istio/blob/1.19.0/pkg/config/validation/validation.go#L1985-L2263).
"""

from __future__ import annotations

from mesh.config.validation.primitives import validate_ip_subnet, validate_workload_selector
from mesh.config.validation.report import Report, quote
from mesh.util.net import is_ip_address


def validate_peer_authentication(r: Report, spec: dict, name: str, namespace: str, annotations: dict) -> None:
    """ValidatePeerAuthentication (validation.go#L2233-L2263)."""
    selector = spec.get("selector")
    match_labels = r.dict("spec.selector", selector).get("matchLabels") or {}
    port_mtls = spec.get("portLevelMtls")
    if not match_labels and port_mtls:
        r.error("spec.portLevelMtls", "mesh/namespace peer authentication cannot have port level mTLS")
    if port_mtls is not None and len(port_mtls) == 0:
        r.error("spec.portLevelMtls", "port level mTLS, if defined, must have at least one element")
    for port in r.dict("spec.portLevelMtls", port_mtls):
        if str(port) == "0":
            r.error(f"spec.portLevelMtls.{port}", "port cannot be 0")
    mode = r.dict("spec.mtls", spec.get("mtls")).get("mode")
    if mode is not None and mode not in ("UNSET", "DISABLE", "PERMISSIVE", "STRICT"):
        r.decode("spec.mtls.mode", f"unknown value {quote(str(mode))} for enum istio.security.v1beta1."
                                   "PeerAuthentication_MutualTLS_Mode")
    validate_workload_selector(r, "spec.selector", selector)


_AUTHZ_ACTIONS = ("ALLOW", "DENY", "AUDIT", "CUSTOM")
_SOURCE_FIELDS = ("principals", "requestPrincipals", "namespaces", "ipBlocks", "remoteIpBlocks", "notPrincipals",
                  "notRequestPrincipals", "notNamespaces", "notIpBlocks", "notRemoteIpBlocks")
_OPERATION_FIELDS = ("ports", "methods", "paths", "hosts", "notPorts", "notMethods", "notPaths", "notHosts")


def _authz_clauses(r, path: str, i: int, rule: dict, outer: str, inner: str, fields):
    """An AuthorizationPolicy rule's ``from`` (``source``) or ``to`` (``operation``) clauses: the
    checks both share, yielding each clause's path and body for its own checks; the empty-value check
    runs after those, as in istiod."""
    if rule.get(outer) is not None and len(rule[outer]) == 0:
        r.error(f"{path}.{outer}", f"`{outer}` must not be empty, found at rule {i}")
    for j, item in enumerate(r.list(f"{path}.{outer}", rule.get(outer))):
        cpath = f"{path}.{outer}[{j}].{inner}"
        clause = r.dict(f"{path}.{outer}[{j}]", item).get(inner)
        if clause is None:
            r.error(cpath, f"`{outer}.{inner}` must not be nil, found at rule {i}")
            continue
        clause = r.dict(cpath, clause)
        if not any(clause.get(f) for f in fields):
            r.error(cpath, f"`{outer}.{inner}` must not be empty, found at rule {i}")
        yield cpath, clause
        _empty_values(r, cpath, clause, fields)


def validate_authorization_policy(r: Report, spec: dict, name: str, namespace: str, annotations: dict) -> None:
    """ValidateAuthorizationPolicy (validation.go#L1985-L2154), its main rules.

    istiod prefixes every error with ``invalid policy <name>.<namespace>:``; see :func:`istiod_message`.
    """
    validate_workload_selector(r, "spec.selector", spec.get("selector"))
    action = spec.get("action", "ALLOW")
    if action not in _AUTHZ_ACTIONS:
        r.decode("spec.action", f"unknown value {quote(str(action))} for enum istio.security.v1beta1."
                                "AuthorizationPolicy_Action")
        return
    rules = spec.get("rules")
    if action == "CUSTOM":
        if rules is None:
            r.error("spec.rules", "CUSTOM action without `rules` is meaningless as it will never be triggered, "
                                  "add an empty rule `{}` if you want it be triggered for every request")
        elif not (r.dict("spec.provider", spec.get("provider")).get("name")):
            r.error("spec.provider.name", "`provider.name` must not be empty")
    if spec.get("provider") is not None and action != "CUSTOM":
        r.error("spec.provider", f"`provider` must not be with non CUSTOM action, found {action}")
    if action == "DENY" and rules is None:
        r.error("spec.rules", "DENY action without `rules` is meaningless as it will never be triggered, "
                              "add an empty rule `{}` if you want it be triggered for every request")
    for i, rule in enumerate(r.list("spec.rules", rules)):
        path = f"spec.rules[{i}]"
        if rule is None:
            r.error(path, f"`rule` must not be nil, found at rule {i}")
            continue
        rule = r.dict(path, rule)
        for spath, source in _authz_clauses(r, path, i, rule, "from", "source", _SOURCE_FIELDS):
            for field in ("ipBlocks", "notIpBlocks", "remoteIpBlocks", "notRemoteIpBlocks"):
                for ip in r.list(f"{spath}.{field}", source.get(field)):
                    if "/" in ip and validate_ip_subnet(ip):
                        r.error(f"{spath}.{field}", f"bad CIDR range ({ip})")
                    elif "/" not in ip and not is_ip_address(ip):
                        r.error(f"{spath}.{field}", f"bad IP address ({ip})")
        for opath, operation in _authz_clauses(r, path, i, rule, "to", "operation", _OPERATION_FIELDS):
            for field in ("ports", "notPorts"):
                for port in r.list(f"{opath}.{field}", operation.get(field)):
                    if not str(port).isdigit() or int(port) > 65535:
                        r.error(f"{opath}.{field}", f"bad port ({port})")
        for j, cond in enumerate(r.list(f"{path}.when", rule.get("when"))):
            cpath = f"{path}.when[{j}]"
            cond = r.dict(cpath, cond)
            if not cond.get("key"):
                r.error(f"{cpath}.key", "`key` must not be empty")
            elif not cond.get("values") and not cond.get("notValues"):
                r.error(cpath, f"at least one of `values` or `notValues` must be set for key {cond['key']}")


def _empty_values(r: Report, path: str, obj: dict, fields: tuple[str, ...]) -> None:
    for field in fields:
        if any(v == "" for v in r.list(f"{path}.{field}", obj.get(field))):
            go_name = field[0].upper() + field[1:]
            r.error(f"{path}.{field}", f"empty value not allowed, found in {go_name}")


def validate_request_authentication(r: Report, spec: dict, name: str, namespace: str, annotations: dict) -> None:
    """ValidateRequestAuthentication (validation.go#L2157-L2230), its main rules."""
    validate_workload_selector(r, "spec.selector", spec.get("selector"))
    for i, rule in enumerate(r.list("spec.jwtRules", spec.get("jwtRules"))):
        path = f"spec.jwtRules[{i}]"
        rule = r.dict(path, rule)
        if not rule.get("issuer"):
            r.error(f"{path}.issuer", "issuer must be set")
        if any(a == "" for a in r.list(f"{path}.audiences", rule.get("audiences"))):
            r.error(f"{path}.audiences", "audience must be non-empty string")
        for j, header in enumerate(r.list(f"{path}.fromHeaders", rule.get("fromHeaders"))):
            if not r.dict(f"{path}.fromHeaders[{j}]", header).get("name"):
                r.error(f"{path}.fromHeaders[{j}].name", "location header name must be non-empty string")


