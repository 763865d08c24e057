"""security.istio.io validation: ``ValidatePeerAuthentication``, ``ValidateAuthorizationPolicy`` and
``ValidateRequestAuthentication`` (https://github.com/istio/istio/blob/1.19.0/pkg/config/validation/validation.go#L1985-L2263).
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from mesh.config.validation.headers import header_value_error
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
        if item is None:
            r.error(f"{path}.{outer}[{j}]", f"`{outer}` must not be nil, found at rule {i}")
            continue
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


def ip_errors(values: list) -> list[str]:
    """security.ValidateIPs: CIDRs and addresses
    (https://github.com/istio/istio/blob/1.19.0/pkg/config/security/security.go#L153-L167)."""
    out = []
    for ip in values:
        ip = str(ip)
        if "/" in ip and validate_ip_subnet(ip):
            out.append(f"bad CIDR range ({ip})")
        elif "/" not in ip and not is_ip_address(ip):
            out.append(f"bad IP address ({ip})")
    return out


def port_errors(values: list) -> list[str]:
    """security.ValidatePorts (security.go#L169-L178)."""
    return [f"bad port ({port})" for port in values if not str(port).isdigit() or int(port) > 65535]


# Condition keys ValidateAttribute knows (security.go#L40-L58, #L103-L138): key → what its values must be.
_ATTRIBUTES = {
    "source.ip": ip_errors, "remote.ip": ip_errors, "destination.ip": ip_errors, "destination.port": port_errors,
    "source.namespace": None, "source.principal": None, "request.auth.principal": None,
    "request.auth.audiences": None, "request.auth.presenter": None, "connection.sni": None,
}
_MAP_ATTRIBUTES = ("request.headers", "request.auth.claims", "experimental.envoy.filters.")


def attribute_error(key: str, values: list) -> str | None:
    """security.ValidateAttribute: the first problem with a ``when`` condition's key or values."""
    if any(v == "" for v in values):
        return f"empty value not allowed, found in {key}"
    if key.startswith(_MAP_ATTRIBUTES):
        open_at = key.find("[")
        ok = key.endswith("]") and 0 < open_at < len(key) - 2
        return None if ok else f"bad key ({key}): should have format a[b]"
    if key in _ATTRIBUTES:
        check = _ATTRIBUTES[key]
        errs = check(values) if check else []
        return _joined(errs) if errs else None
    if key == "destination.namespace":
        return f"attribute {key} is replaced by the metadata.namespace"
    if key.startswith("destination.labels"):
        return f"attribute {key} is replaced by the workload selector"
    if key in ("destination.name", "destination.user"):
        return f"deprecated attribute {key}: only supported in v1alpha1"
    return f"unknown attribute: {key}"


def _joined(messages: list[str]) -> str:
    """go-multierror's text, as ``%v`` prints it inside another message."""
    return f"{len(messages)} error{'s' if len(messages) > 1 else ''} occurred:\n\t* " + "\n\t* ".join(messages) + "\n\n"


_CUSTOM_UNSUPPORTED_SOURCE = (("namespaces", "From.Namespaces"), ("notNamespaces", "From.NotNamespaces"),
                              ("principals", "From.Principals"), ("notPrincipals", "From.NotPrincipals"),
                              ("requestPrincipals", "From.RequestPrincipals"),
                              ("notRequestPrincipals", "From.NotRequestPrincipals"))
# Source fields that are TCP attributes (a DENY rule with only HTTP ones denies all TCP traffic).
_TCP_SOURCE = ("notPrincipals", "principals", "ipBlocks", "notIpBlocks", "namespaces", "notNamespaces",
               "remoteIpBlocks", "notRemoteIpBlocks")


def _custom_rules(r: Report, rules: list) -> None:
    """What a CUSTOM (ext_authz) policy's rules cannot use yet (validation.go#L2004-L2034)."""
    for i, rule in enumerate(rules):
        rule = rule if isinstance(rule, dict) else {}
        for j, item in enumerate(rule.get("from") or []):
            source = (item or {}).get("source") if isinstance(item, dict) else None
            for field, go_name in _CUSTOM_UNSUPPORTED_SOURCE:
                if isinstance(source, dict) and source.get(field):
                    r.error(f"spec.rules[{i}].from[{j}].source.{field}", f"{go_name} is currently not supported with "
                                                                           "CUSTOM action")
        for j, cond in enumerate(rule.get("when") or []):
            if cond is None:
                r.error(f"spec.rules[{i}].when[{j}]", "when field cannot be nil")
                continue
            key = cond.get("key", "") if isinstance(cond, dict) else ""
            if key in ("source.namespace", "source.principal") or key.startswith("request.auth."):
                r.error(f"spec.rules[{i}].when[{j}].key", f"{key} is currently not supported with CUSTOM action")


def validate_authorization_policy(r: Report, spec: dict, name: str, namespace: str, annotations: dict) -> None:
    """ValidateAuthorizationPolicy (validation.go#L1985-L2154).

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
        _custom_rules(r, r.list("spec.rules", rules))
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
        sources = operations = 0
        tcp_from = tcp_to = False
        for spath, source in _authz_clauses(r, path, i, rule, "from", "source", _SOURCE_FIELDS):
            sources += 1
            tcp_from = tcp_from or any(source.get(f) is not None for f in _TCP_SOURCE)
            for field in ("ipBlocks", "notIpBlocks", "remoteIpBlocks", "notRemoteIpBlocks"):
                for err in ip_errors(r.list(f"{spath}.{field}", source.get(field))):
                    r.error(f"{spath}.{field}", err)
        for opath, operation in _authz_clauses(r, path, i, rule, "to", "operation", _OPERATION_FIELDS):
            operations += 1
            tcp_to = tcp_to or any(operation.get(f) is not None for f in ("ports", "notPorts"))
            for field in ("ports", "notPorts"):
                for err in port_errors(r.list(f"{opath}.{field}", operation.get(field))):
                    r.error(f"{opath}.{field}", err)
        for j, cond in enumerate(r.list(f"{path}.when", rule.get("when"))):
            _condition(r, f"{path}.when[{j}]", r.dict(f"{path}.when[{j}]", cond))
        if action == "DENY" and ((sources and not operations and not tcp_from) or (operations and not tcp_to)):
            r.warn(path, "configured AuthorizationPolicy will deny all traffic to TCP ports under its scope due to the "
                         "use of only HTTP attributes in a DENY rule; it is recommended to explicitly specify the port")


def _condition(r: Report, path: str, cond: dict) -> None:
    key = cond.get("key")
    if not key:
        return r.error(f"{path}.key", "`key` must not be empty")
    values, not_values = r.list(f"{path}.values", cond.get("values")), r.list(f"{path}.notValues", cond.get("notValues"))
    if not values and not not_values:
        return r.error(path, f"at least one of `values` or `notValues` must be set for key {key}")
    err = attribute_error(key, values)
    if err:
        r.error(f"{path}.values", f"invalid `value` for `key` {key}: {err}")
    err = attribute_error(key, not_values)
    if err:
        r.error(f"{path}.notValues", f"invalid `notValue` for `key` {key}: {err}")
    return None


def _empty_values(r: Report, path: str, obj: dict, fields: tuple[str, ...]) -> None:
    for field in fields:
        if any(v == "" for v in r.list(f"{path}.{field}", obj.get(field))):
            go_name = field[0].upper() + field[1:]
            r.error(f"{path}.{field}", f"empty value not allowed, found in {go_name}")


def validate_request_authentication(r: Report, spec: dict, name: str, namespace: str, annotations: dict) -> None:
    """ValidateRequestAuthentication and validateJwtRule (validation.go#L2157-L2230)."""
    validate_workload_selector(r, "spec.selector", spec.get("selector"))
    for i, rule in enumerate(r.list("spec.jwtRules", spec.get("jwtRules"))):
        if rule is not None:
            _jwt_rule(r, f"spec.jwtRules[{i}]", r.dict(f"spec.jwtRules[{i}]", rule))


def _jwt_rule(r: Report, path: str, rule: dict) -> None:
    if not rule.get("issuer"):
        r.error(f"{path}.issuer", "issuer must be set")
    for j, audience in enumerate(r.list(f"{path}.audiences", rule.get("audiences"))):
        if audience == "":
            r.error(f"{path}.audiences[{j}]", "audience must be non-empty string")
    uri = r.str(f"{path}.jwksUri", rule.get("jwksUri"))
    if uri:
        r.error(f"{path}.jwksUri", jwks_uri_error(uri))
    jwks = r.str(f"{path}.jwks", rule.get("jwks"))
    if jwks:
        err = jwks_error(jwks)
        if err:
            r.error(f"{path}.jwks", f"jwks parse error: {err}")
    for j, header in enumerate(r.list(f"{path}.fromHeaders", rule.get("fromHeaders"))):
        if header is None:
            r.error(f"{path}.fromHeaders[{j}]", "location header name must be non-null")
        elif not r.dict(f"{path}.fromHeaders[{j}]", header).get("name"):
            r.error(f"{path}.fromHeaders[{j}].name", "location header name must be non-empty string")
    for j, param in enumerate(r.list(f"{path}.fromParams", rule.get("fromParams"))):
        if param == "":
            r.error(f"{path}.fromParams[{j}]", "location query must be non-empty string")
    for j, pair in enumerate(r.list(f"{path}.outputClaimToHeaders", rule.get("outputClaimToHeaders"))):
        here = f"{path}.outputClaimToHeaders[{j}]"
        if pair is None:
            r.error(here, "outputClaimToHeaders must not be null")
            continue
        pair = r.dict(here, pair)
        if not pair.get("claim") or not pair.get("header"):
            r.error(here, "outputClaimToHeaders header and claim value must be non-empty string")
            continue
        r.error(f"{here}.header", header_value_error(str(pair["header"])))


def jwks_uri_error(uri: str) -> str | None:
    """security.ParseJwksURI (pkg/config/security/security.go#L65-L92): http or https, numeric port."""
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as err:
        return f'parse "{uri}": {err}'
    if parts.scheme not in ("http", "https"):
        return f"URI scheme {quote(parts.scheme)} is not supported"
    return None


_KEY_TYPES = ("RSA", "EC", "OKP", "oct")


def jwks_error(jwks: str) -> str | None:
    """Whether ``jwks`` is a JSON Web Key or Key Set (what lestrrat-go/jwx's ``jwk.Parse`` accepts):
    JSON, each key with a known ``kty``. Simplification, named: key material is not decoded."""
    try:
        doc = json.loads(jwks)
    except ValueError as err:
        return f"failed to unmarshal JWK set: {err}"
    if not isinstance(doc, dict):
        return "failed to unmarshal JWK set: not an object"
    keys = doc["keys"] if "keys" in doc else [doc]
    if not isinstance(keys, list):
        return "failed to unmarshal JWK set: keys is not a list"
    for key in keys:
        kty = key.get("kty") if isinstance(key, dict) else None
        if kty not in _KEY_TYPES:
            return f"failed to parse key: invalid key type {quote(str(kty))}"
    return None
