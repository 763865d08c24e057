"""EnvoyFilter validation: ``ValidateEnvoyFilter``
(https://github.com/istio/istio/blob/1.19.0/pkg/config/validation/validation.go#L798-L1050).

Each config patch needs an ``applyTo``, a patch with an operation and (unless it removes) a value;
its match must fit the object class it applies to; and its value must decode into the xDS message
that ``applyTo`` names (``BuildXDSObjectFromStruct``,
https://github.com/istio/istio/blob/1.19.0/pkg/config/xds/xds.go#L35-L72). istiod decodes it twice:
leniently (a failure is an error) and strictly (an unknown field is only a warning).

Simplifications, named: the value is decoded with envoy-data-plane (betterproto2), so a decoding
error's text is that library's, after ``Envoy filter:``; a duration written Go-style (``500ms``)
is accepted as istiod accepts it, but ends the decoding of that value; the ``FROZEN`` (deprecated
v2-era) type_url warning is not produced, only the missing-``typed_config`` one.
"""

from __future__ import annotations

import importlib

from mesh.config.validation.primitives import alpha_selector_ok, re2_error
from mesh.config.validation.report import Report, parse_go_duration, quote

_LISTENER_CLASS = ("LISTENER", "FILTER_CHAIN", "NETWORK_FILTER", "HTTP_FILTER")
_ROUTE_CLASS = ("ROUTE_CONFIGURATION", "VIRTUAL_HOST", "HTTP_ROUTE")
_HCM = "envoy.filters.network.http_connection_manager"
_XDS = "envoy_data_plane.envoy."
# applyTo → the xDS message its patch value must decode into (xds.go#L41-L63).
OBJECT_TYPES = {
    "CLUSTER": ("config.cluster.v3", "Cluster"),
    "LISTENER": ("config.listener.v3", "Listener"),
    "ROUTE_CONFIGURATION": ("config.route.v3", "RouteConfiguration"),
    "FILTER_CHAIN": ("config.listener.v3", "FilterChain"),
    "HTTP_FILTER": ("extensions.filters.network.http_connection_manager.v3", "HttpFilter"),
    "NETWORK_FILTER": ("config.listener.v3", "Filter"),
    "VIRTUAL_HOST": ("config.route.v3", "VirtualHost"),
    "HTTP_ROUTE": ("config.route.v3", "Route"),
    "EXTENSION_CONFIG": ("config.core.v3", "TypedExtensionConfig"),
    "BOOTSTRAP": ("config.bootstrap.v3", "Bootstrap"),
    "LISTENER_FILTER": ("config.listener.v3", "ListenerFilter"),
}
# Canonical filter name for each deprecated one (pkg/config/xds/deprecated.go#L23-L54, reversed).
CANONICAL_FILTER_NAMES = {
    "envoy.buffer": "envoy.filters.http.buffer", "envoy.cors": "envoy.filters.http.cors",
    "envoy.csrf": "envoy.filters.http.csrf", "envoy.http_dynamo_filter": "envoy.filters.http.dynamo",
    "envoy.ext_authz": "envoy.filters.network.ext_authz", "envoy.fault": "envoy.filters.http.fault",
    "envoy.grpc_http1_bridge": "envoy.filters.http.grpc_http1_bridge",
    "envoy.grpc_json_transcoder": "envoy.filters.http.grpc_json_transcoder",
    "envoy.grpc_web": "envoy.filters.http.grpc_web", "envoy.gzip": "envoy.filters.http.gzip",
    "envoy.health_check": "envoy.filters.http.health_check", "envoy.ip_tagging": "envoy.filters.http.ip_tagging",
    "envoy.lua": "envoy.filters.http.lua", "envoy.rate_limit": "envoy.filters.http.ratelimit",
    "envoy.router": "envoy.filters.http.router", "envoy.squash": "envoy.filters.http.squash",
    "envoy.listener.http_inspector": "envoy.filters.listener.http_inspector",
    "envoy.listener.original_dst": "envoy.filters.listener.original_dst",
    "envoy.listener.original_src": "envoy.filters.listener.original_src",
    "envoy.listener.proxy_protocol": "envoy.filters.listener.proxy_protocol",
    "envoy.listener.tls_inspector": "envoy.filters.listener.tls_inspector",
    "envoy.client_ssl_auth": "envoy.filters.network.client_ssl_auth",
    "envoy.http_connection_manager": _HCM, "envoy.mongo_proxy": "envoy.filters.network.mongo_proxy",
    "envoy.ratelimit": "envoy.filters.network.ratelimit", "envoy.redis_proxy": "envoy.filters.network.redis_proxy",
    "envoy.tcp_proxy": "envoy.filters.network.tcp_proxy",
}


def validate_envoy_filter(r: Report, spec: dict, name: str, namespace: str, annotations: dict) -> None:
    """ValidateEnvoyFilter (validation.go#L798-L935)."""
    if not alpha_selector_ok(r, spec.get("workloadSelector"), "Envoy filter"):
        return
    for i, patch in enumerate(r.list("spec.configPatches", spec.get("configPatches"))):
        path = f"spec.configPatches[{i}]"
        if patch is None:
            r.error(path, "Envoy filter: null config patch")
            continue
        _config_patch(r, path, r.dict(path, patch))


def _config_patch(r: Report, path: str, cp: dict) -> None:
    """One patch; istiod moves on to the next patch after the first structural error."""
    apply_to = cp.get("applyTo", "INVALID")
    patch = cp.get("patch")
    if apply_to in ("INVALID", 0):
        return r.error(f"{path}.applyTo", "Envoy filter: missing applyTo")
    if patch is None:
        return r.error(f"{path}.patch", "Envoy filter: missing patch")
    patch = r.dict(f"{path}.patch", patch)
    operation = patch.get("operation", "INVALID")
    if operation in ("INVALID", 0):
        return r.error(f"{path}.patch.operation", "Envoy filter: missing patch operation")
    if operation != "REMOVE" and patch.get("value") is None:
        return r.error(f"{path}.patch.value", "Envoy filter: missing patch value for non-remove operation")
    match = r.dict(f"{path}.match", cp.get("match"))
    version = r.str(f"{path}.match.proxy.proxyVersion", r.dict(f"{path}.match.proxy", match.get("proxy")).get("proxyVersion"))
    if version:
        err = re2_error(version)
        if err:
            return r.error(f"{path}.match.proxy.proxyVersion", f"Envoy filter: invalid regex for proxy version, "
                                                               f"[error parsing regexp: {err}]")
    object_types = [k for k in ("listener", "routeConfiguration", "cluster") if match.get(k) is not None]
    if apply_to in _LISTENER_CLASS and object_types:
        if object_types != ["listener"]:
            return r.error(f"{path}.match", "Envoy filter: applyTo for listener class objects cannot have non listener "
                                            "match")
        if not _listener_match(r, f"{path}.match.listener", apply_to, r.dict(f"{path}.match.listener", match["listener"])):
            return None
    elif apply_to in _ROUTE_CLASS and object_types and object_types != ["routeConfiguration"]:
        r.error(f"{path}.match", "Envoy filter: applyTo for http route class objects cannot have non route "
                                 "configuration match")
    elif apply_to == "CLUSTER" and object_types and object_types != ["cluster"]:
        r.error(f"{path}.match", "Envoy filter: applyTo for cluster class objects cannot have non cluster match")
    if patch.get("value") is not None:
        _patch_value(r, f"{path}.patch.value", apply_to, r.dict(f"{path}.patch.value", patch["value"]))
    return None


def _listener_match(r: Report, path: str, apply_to: str, listener: dict) -> bool:
    """The filter/subfilter part of a listener match; False when istiod stops at an error."""
    chain = r.dict(f"{path}.filterChain", listener.get("filterChain"))
    if chain.get("filter") is None:
        return True
    fpath = f"{path}.filterChain.filter"
    flt = r.dict(fpath, chain["filter"])
    if apply_to in ("LISTENER", "FILTER_CHAIN"):
        r.warn(fpath, f"Envoy filter: filter match has no effect when used with {apply_to}")
    filter_name = r.str(f"{fpath}.name", flt.get("name"))
    sub = flt.get("subFilter")
    if not filter_name:
        r.error(f"{fpath}.name", "Envoy filter: filter match has no name to match on")
        return False
    if sub is not None:
        sub = r.dict(f"{fpath}.subFilter", sub)
        if apply_to != "HTTP_FILTER":
            r.error(f"{fpath}.subFilter", "Envoy filter: subfilter match can be used with applyTo HTTP_FILTER only")
            return False
        if filter_name not in (_HCM, "envoy.http_connection_manager"):
            r.error(f"{fpath}.subFilter", f"Envoy filter: subfilter match requires filter match with {_HCM}")
            return False
        if not sub.get("name"):
            r.error(f"{fpath}.subFilter.name", "Envoy filter: subfilter match has no name to match on")
            return False
    for here, used in ((f"{fpath}.name", filter_name), (f"{fpath}.subFilter.name", (sub or {}).get("name", ""))):
        if used in CANONICAL_FILTER_NAMES:
            r.warn(here, f"using deprecated filter name {quote(used)}; use {quote(CANONICAL_FILTER_NAMES[used])} instead")
    return True


def _type_urls(value):
    if isinstance(value, dict):
        if isinstance(value.get("@type"), str):
            yield value["@type"]
        for v in value.values():
            yield from _type_urls(v)
    elif isinstance(value, list):
        for v in value:
            yield from _type_urls(v)


def _register(type_url: str) -> bool:
    """Import the envoy-data-plane module defining ``type_url``'s message, so that an ``Any``
    holding it can be decoded; False when there is no such message."""
    full = type_url.rpartition("/")[2]
    module, _, message = full.rpartition(".")
    if module in ("google.protobuf",):
        return True
    if ".v2." in f"{module}." or module.endswith(".v2alpha"):
        return False  # istiod 1.19 no longer links the v2 xDS protos
    try:
        return hasattr(importlib.import_module(f"envoy_data_plane.{module}"), message)
    except ImportError:
        return False


def _patch_value(r: Report, path: str, apply_to: str, value: dict) -> None:
    """BuildXDSObjectFromStruct, lenient then strict, and the missing-typed_config warning."""
    if apply_to not in OBJECT_TYPES:
        return r.error(path, f"Envoy filter: unknown object type for applyTo {apply_to}")
    for type_url in _type_urls(value):
        if not _register(type_url):
            hint = " (hint: try using the v3 XDS API)" if ".v2." in type_url else ""
            return r.error(path, f"referenced type unknown{hint}: Envoy filter: unable to resolve {quote(type_url)}: "
                                 f"could not resolve Any message type: {type_url}")
    module, message = OBJECT_TYPES[apply_to]
    cls = getattr(importlib.import_module(_XDS + module), message)
    try:
        obj = cls.from_dict(value)
    except KeyError as err:  # an unknown field: only the strict decoding fails
        return r.warn(path, f"Envoy filter: {err.args[0]}")
    except ValueError as err:
        text = str(err)
        if text.startswith("Invalid duration string: ") and parse_go_duration(text.split(": ", 1)[1])[1] is None:
            return None
        return r.error(path, f"Envoy filter: {text.splitlines()[0] if text else type(err).__name__}")
    except TypeError as err:
        return r.error(path, f"Envoy filter: {err}")
    missing = _missing_typed_config(obj)
    if missing:
        r.warn(path, f"using deprecated types by name without typed_config; {', '.join(missing)}")
    return None


def _missing_typed_config(message) -> list[str]:
    """recurseMissingTypedConfig (validation.go#L987-L1030): messages that have a typed_config
    field but set neither it nor config_discovery, by their ``name``."""
    fields = getattr(message, "__dataclass_fields__", None)
    if fields is None:
        return []
    out: list[str] = []
    for fname in fields:
        child = getattr(message, fname, None)
        for item in child if isinstance(child, list) else [child]:
            if hasattr(item, "__dataclass_fields__") and type(item).__name__ != "Any":
                out += _missing_typed_config(item)
    if "typed_config" in fields and getattr(message, "typed_config", None) is None \
            and getattr(message, "config_discovery", None) is None:
        out.append(str(getattr(message, "name", "")))
    return out
