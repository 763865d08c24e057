"""One HTTPRoute rule → one Istio HTTP route: matches, filters and weighted destinations.

Go counterparts in https://github.com/istio/istio/blob/1.19.0/pilot/pkg/config/kube/gateway/conversion.go:

- ``convertHTTPRoute`` (#L179-L265): the route is named ``<ns>.<route>.<rule index>``; filters
  map onto Istio fields; a rule whose backends weigh 0 in total (and no redirect) answers 500;
- ``buildHTTPDestination``/``buildTCPDestination`` (#L947-L989, #L1025-L1091): zero weights are
  dropped, a lone backend gets weight 0 (meaning "all"), and a bad backend is kept but reported;
- ``buildDestination`` (#L1093-L1180): backendRef → ``<svc>.<ns>.svc.<domain>``, the
  ReferenceGrant check (only for Gateway parents) and the reasons RefNotPermitted,
  BackendNotFound, InvalidKind;
- the match and filter builders (#L1182-L1381).

Every function returns ``(result, error)`` as the Go code does: an error with no result is
"hard" (the whole route fails), an error with a result is "soft" (reported on ResolvedRefs,
traffic to that backend fails at runtime).
"""

from __future__ import annotations

from mesh.configcontroller.gateway_api import conditions as c
from mesh.configcontroller.gateway_api.resources import AllowedReferences, GatewayResources

MCS_GROUP = "multicluster.x-k8s.io"
ISTIO_GROUP = "networking.istio.io"
# Soft backend errors: the destination stays, the route reports it.
_INVALID_BACKEND = (c.REF_NOT_PERMITTED, c.BACKEND_NOT_FOUND, c.INVALID_KIND)


class Context:
    """What every rule conversion needs: the resources, the grants, the cluster domain."""

    def __init__(self, r: GatewayResources, refs: AllowedReferences):
        self.r = r
        self.refs = refs
        self.domain = r.domain


def _nil_or(value, expected: str) -> bool:
    return value is None or value == expected


def build_destination(ctx: Context, to: dict, ns: str, enforce_ref_grant: bool
                      ) -> tuple[dict | None, c.ConfigError | None]:
    to_ns = to.get("namespace")
    if enforce_ref_grant and to_ns is not None and to_ns != ns:
        if not ctx.refs.backend_allowed(to["name"], to_ns, ns):
            return {}, c.ConfigError(
                c.REF_NOT_PERMITTED,
                f'backendRef {to["name"]}/{to_ns} not accessible to a route in namespace "{ns}" '
                f"(missing a ReferenceGrant?)")
    namespace = to_ns or ns
    group, kind, name, port = to.get("group"), to.get("kind"), to["name"], to.get("port")
    if _nil_or(group, "") and _nil_or(kind, "Service"):
        hostname = f"{name}.{namespace}.svc.{ctx.domain}"
    elif _nil_or(group, MCS_GROUP) and _nil_or(kind, "ServiceImport"):
        # ServiceImport without ENABLE_MCS_HOST (off by default) is served as the plain Service.
        hostname = f"{name}.{namespace}.svc.{ctx.domain}"
    elif _nil_or(group, ISTIO_GROUP) and _nil_or(kind, "Hostname"):
        if port is None:
            return None, c.ConfigError(c.INVALID_DESTINATION, "port is required in backendRef")
        if to_ns is not None:
            return None, c.ConfigError(c.INVALID_DESTINATION, "namespace may not be set with Hostname type")
        err = None
        if ctx.r.get_service(name, namespace) is None:
            err = c.ConfigError(c.BACKEND_NOT_FOUND, f"backend({name}) not found")
        return {"host": name, "port": {"number": port}}, err
    else:
        return {}, c.ConfigError(c.INVALID_KIND,
                                 f'referencing unsupported backendRef: group "{group or ""}" kind "{kind or ""}"')
    if port is None:
        return None, c.ConfigError(c.INVALID_DESTINATION, "port is required in backendRef")
    if "." in name:
        return None, c.ConfigError(
            c.INVALID_DESTINATION, "serviceName invalid; the name of the Service must be used, not the hostname.")
    err = None
    if ctx.r.get_service(hostname, namespace) is None:
        err = c.ConfigError(c.BACKEND_NOT_FOUND, f"backend({hostname}) not found")
    return {"host": hostname, "port": {"number": port}}, err


def _weights(refs: list[dict]) -> tuple[list[dict], list[int]]:
    kept = [ref for ref in refs if ref.get("weight", 1) != 0]
    weights = [ref.get("weight", 1) for ref in kept]
    if len(weights) == 1:
        weights = [0]  # a single destination: leave the weight unset
    return kept, weights


def weight_sum(refs: list[dict] | None) -> int:
    return sum(ref.get("weight", 1) for ref in refs or [])


def build_destinations(ctx: Context, refs: list[dict] | None, ns: str, enforce_ref_grant: bool, http: bool
                       ) -> tuple[list[dict] | None, c.ConfigError | None, c.ConfigError | None]:
    """(route destinations, soft backend error, hard error)."""
    if refs is None:
        return None, None, None
    kept, weights = _weights(refs)
    soft = None
    out = []
    for ref, weight in zip(kept, weights, strict=True):
        dest, err = build_destination(ctx, ref, ns, enforce_ref_grant)
        if err is not None:
            if err.reason not in _INVALID_BACKEND:
                return None, None, err
            soft = err  # keep going: the bad backend is kept, traffic to it fails
        rd: dict = {"destination": dest}
        if weight:
            rd["weight"] = weight
        if http:
            for f in ref.get("filters") or []:
                kind = f["type"]
                if kind in ("RequestHeaderModifier", "ResponseHeaderModifier"):
                    ops = header_operations(f.get(_lower_first(kind)))
                    if ops is not None:
                        rd.setdefault("headers", {})["request" if kind.startswith("Request") else "response"] = ops
                else:
                    return None, None, c.ConfigError(c.INVALID_FILTER, f'unsupported filter type "{kind}"')
        out.append(rd)
    return out, soft, None


def _lower_first(s: str) -> str:
    return s[0].lower() + s[1:]


def _header_map(headers: list[dict] | None) -> dict | None:
    out: dict[str, str] = {}
    for h in headers or []:
        out.setdefault(h["name"].lower(), h.get("value", ""))  # later duplicates are ignored
    return out or None


def header_operations(f: dict | None) -> dict | None:
    if f is None:
        return None
    ops = {}
    for key, value in (("add", _header_map(f.get("add"))), ("remove", f.get("remove") or None),
                       ("set", _header_map(f.get("set")))):
        if value:
            ops[key] = value
    return ops


def uri_match(match: dict) -> tuple[dict | None, c.ConfigError | None]:
    path = match.get("path") or {}
    kind = path.get("type") or "PathPrefix"
    value = path.get("value") if path.get("value") is not None else "/"
    if kind == "PathPrefix":
        if value != "/":
            value = value.removesuffix("/")  # the spec ignores one trailing slash
        return {"prefix": value}, None
    if kind == "Exact":
        return {"exact": value}, None
    if kind == "RegularExpression":
        return {"regex": value}, None
    return None, c.ConfigError(c.INVALID_CONFIGURATION, f'unknown type: "{kind}" is not supported Path match type')


def _string_matches(items: list[dict] | None, what: str) -> tuple[dict | None, c.ConfigError | None]:
    out = {}
    for item in items or []:
        kind = item.get("type") or "Exact"
        if kind == "Exact":
            out[item["name"]] = {"exact": item["value"]}
        elif kind == "RegularExpression":
            out[item["name"]] = {"regex": item["value"]}
        else:
            return None, c.ConfigError(c.INVALID_CONFIGURATION,
                                       f'unknown type: "{kind}" is not supported {what} type')
    return out or None, None


def http_match(match: dict) -> tuple[dict | None, c.ConfigError | None]:
    out: dict = {}
    uri, err = uri_match(match)
    if err:
        return None, err
    headers, err = _string_matches(match.get("headers"), "HeaderMatch")
    if err:
        return None, err
    query, err = _string_matches(match.get("queryParams"), "QueryParams")
    if err:
        return None, err
    out["uri"] = uri
    if headers:
        out["headers"] = headers
    if query:
        out["queryParams"] = query
    if match.get("method"):
        out["method"] = {"exact": match["method"]}
    return out, None


def redirect(f: dict | None) -> dict | None:
    if f is None:
        return None
    out: dict = {}
    if f.get("statusCode") is not None:
        out["redirectCode"] = f["statusCode"]
    if f.get("hostname") is not None:
        out["authority"] = f["hostname"]
    if f.get("scheme") is not None:
        out["scheme"] = f["scheme"]
    if f.get("port") is not None:
        out["port"] = f["port"]
    else:
        # Gateway API keeps the request's port when none is given (Istio's default differs);
        # with a new scheme, the scheme's default port is used.
        out["derivePort"] = "FROM_PROTOCOL_DEFAULT" if f.get("scheme") is not None else "FROM_REQUEST_PORT"
    path = f.get("path")
    if path is not None:
        if path["type"] == "ReplaceFullPath" and path.get("replaceFullPath"):
            out["uri"] = path["replaceFullPath"]
        elif path["type"] == "ReplacePrefixMatch":
            out["uri"] = "%PREFIX()%" + str(path.get("replacePrefixMatch"))
    return out


def rewrite(f: dict | None) -> dict | None:
    if f is None:
        return None
    out: dict = {}
    path = f.get("path")
    if path is not None:
        if path["type"] == "ReplacePrefixMatch":
            if path.get("replacePrefixMatch"):
                out["uri"] = path["replacePrefixMatch"]
        elif path["type"] == "ReplaceFullPath":
            out["uriRegexRewrite"] = {"match": "/.*", "rewrite": path.get("replaceFullPath") or ""}
    if f.get("hostname"):
        out["authority"] = f["hostname"]
    return out or None


def convert_http_rule(ctx: Context, rule: dict, match: dict | None, route_ns: str, route_name: str, pos: int,
                      enforce_ref_grant: bool) -> tuple[dict | None, c.ConfigError | None]:
    """One rule restricted to one match (or none) → an Istio HTTPRoute dict."""
    out: dict = {"name": f"{route_ns}.{route_name}.{pos}"}
    if match is not None:
        m, err = http_match(match)
        if err:
            return None, err
        out["match"] = [m]
    for f in rule.get("filters") or []:
        kind = f["type"]
        if kind in ("RequestHeaderModifier", "ResponseHeaderModifier"):
            ops = header_operations(f.get(_lower_first(kind)))
            if ops is not None:
                out.setdefault("headers", {})["request" if kind.startswith("Request") else "response"] = ops
        elif kind == "RequestRedirect":
            rd = redirect(f.get("requestRedirect"))
            if rd is None:
                out.pop("redirect", None)
            else:
                out["redirect"] = rd
        elif kind == "RequestMirror":
            mf = f.get("requestMirror")
            if mf is None:
                out.pop("mirror", None)
                continue
            dest, err = build_destination(ctx, {**mf["backendRef"], "weight": 1}, route_ns, enforce_ref_grant)
            if err is not None:
                return None, err  # 1.19 fails the whole rule on any mirror error
            out["mirror"] = dest
        elif kind == "URLRewrite":
            rw = rewrite(f.get("urlRewrite"))
            if rw is None:
                out.pop("rewrite", None)
            else:
                out["rewrite"] = rw
        else:
            return None, c.ConfigError(c.INVALID_FILTER, f'unsupported filter type "{kind}"')

    if weight_sum(rule.get("backendRefs")) == 0 and "redirect" not in out:
        out["directResponse"] = {"status": 500}  # the spec asks for 500 when no backend has weight
        return out, None
    dests, soft, hard = build_destinations(ctx, rule.get("backendRefs"), route_ns, enforce_ref_grant, http=True)
    if hard is not None:
        return None, hard
    if dests:
        out["route"] = dests
    return out, soft
