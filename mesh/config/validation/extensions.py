"""Validation of the small extension kinds: Telemetry (telemetry.istio.io), WasmPlugin
(extensions.istio.io) and ProxyConfig (networking.istio.io v1beta1):
``ValidateProxyConfig``, ``ValidateTelemetry`` and ``ValidateWasmPlugin``
(https://github.com/istio/istio/blob/1.19.0/pkg/config/validation/validation.go#L3805-L4047).

An access-log filter must be a CEL expression that parses
(https://github.com/istio/istio/blob/1.19.0/pkg/config/validation/validation_istiod.go#L28-L37);
mesh parses it with cel-python (``celpy``), so the error text after "must be a valid CEL
expression" is cel-python's, not cel-go's (a named simplification).
"""

from __future__ import annotations

from urllib.parse import urlsplit

import celpy

from mesh.config.validation.primitives import validate_workload_selector
from mesh.config.validation.report import Report

_CEL = celpy.Environment()


def validate_proxy_config(r: Report, spec: dict, name: str, namespace: str, annotations: dict) -> None:
    """ValidateProxyConfig (validation.go#L3805-L3826)."""
    validate_workload_selector(r, "spec.selector", spec.get("selector"))
    if r.int("spec.concurrency", spec.get("concurrency")) < 0:
        r.error("spec.concurrency", "concurrency must be greater than or equal to 0")


def validate_telemetry(r: Report, spec: dict, name: str, namespace: str, annotations: dict) -> None:
    """ValidateTelemetry (validation.go#L3829-L3953): selector, metrics overrides, tracing, access logging."""
    validate_workload_selector(r, "spec.selector", spec.get("selector"))
    for i, metrics in enumerate(r.list("spec.metrics", spec.get("metrics"))):
        if metrics is not None:
            _metrics(r, f"spec.metrics[{i}]", r.dict(f"spec.metrics[{i}]", metrics))
    tracing = r.list("spec.tracing", spec.get("tracing"))
    if len(tracing) > 1:
        r.warn("spec.tracing", "multiple tracing is not currently supported")
    for i, trace in enumerate(tracing):
        if trace is not None:
            _tracing(r, f"spec.tracing[{i}]", r.dict(f"spec.tracing[{i}]", trace))
    for i, logging in enumerate(r.list("spec.accessLogging", spec.get("accessLogging"))):
        if logging is None:
            continue
        path = f"spec.accessLogging[{i}]"
        logging = r.dict(path, logging)
        if logging.get("filter") is not None:
            expression = r.str(f"{path}.filter.expression", r.dict(f"{path}.filter", logging["filter"]).get("expression"))
            r.error(f"{path}.filter.expression", cel_error(expression))
        _providers(r, f"{path}.providers", logging.get("providers"))


def cel_error(expression: str) -> str | None:
    try:
        _CEL.compile(expression)
    except celpy.CELParseError as err:
        return f"must be a valid CEL expression, {str(err).strip()}"
    return None


def _providers(r: Report, path: str, providers) -> None:
    """validateTelemetryProviders: the first provider without a name is the one error."""
    for i, provider in enumerate(r.list(path, providers)):
        if provider is None or not r.dict(f"{path}[{i}]", provider).get("name"):
            r.error(f"{path}[{i}].name", "providers.name may not be empty")
            return


def _tracing(r: Report, path: str, trace: dict) -> None:
    providers = r.list(f"{path}.providers", trace.get("providers"))
    if len(providers) > 1:
        r.warn(f"{path}.providers", "multiple providers is not currently supported")
    _providers(r, f"{path}.providers", providers)
    pct = r.number(f"{path}.randomSamplingPercentage", trace.get("randomSamplingPercentage"))
    if pct < 0 or pct > 100:
        r.error(f"{path}.randomSamplingPercentage", "randomSamplingPercentage must be in range [0.0, 100.0]")
    for tag, value in r.dict(f"{path}.customTags", trace.get("customTags")).items():
        here = f"{path}.customTags.{tag}"
        if tag == "":
            r.error(here, "tag name may not be empty")
        if value is None:
            r.error(here, f"tag '{tag}' may not have a nil value")
            continue
        value = r.dict(here, value)
        for kind, key, what in (("literal", "value", "literal tag value"), ("header", "name", "header tag name"),
                                ("environment", "name", "environment tag name")):
            if kind in value and not r.dict(f"{here}.{kind}", value[kind]).get(key):
                r.error(f"{here}.{kind}.{key}", f"{what} may not be empty")


def _metrics(r: Report, path: str, metrics: dict) -> None:
    _providers(r, f"{path}.providers", metrics.get("providers"))
    for i, override in enumerate(r.list(f"{path}.overrides", metrics.get("overrides"))):
        here = f"{path}.overrides[{i}]"
        if override is None:
            r.error(here, "tagOverrides may not be null")
            continue
        override = r.dict(here, override)
        for tag, op in r.dict(f"{here}.tagOverrides", override.get("tagOverrides")).items():
            tpath = f"{here}.tagOverrides.{tag}"
            if tag == "":
                r.warn(tpath, "tagOverrides.name may not be empty")
            if op is None:
                r.error(tpath, "tagOverrides may not be null")
                continue
            op = r.dict(tpath, op)
            operation, value = op.get("operation", "UPSERT"), op.get("value", "")
            if operation == "UPSERT" and not value:
                r.error(f"{tpath}.value", "tagOverrides.value must be set when operation is UPSERT")
            elif operation == "REMOVE" and value:
                r.error(f"{tpath}.value", "tagOverrides.value may only be set when operation is UPSERT")
        match = r.dict(f"{here}.match", override.get("match"))
        if "customMetric" in match and not match["customMetric"]:
            r.error(f"{here}.match.customMetric", "customMetric may not be empty")


_WASM_SCHEMES = ("", "file", "http", "https", "oci")


def validate_wasm_plugin(r: Report, spec: dict, name: str, namespace: str, annotations: dict) -> None:
    """ValidateWasmPlugin (validation.go#L3955-L4047): selector, url, sha256, vm env, match ports."""
    validate_workload_selector(r, "spec.selector", spec.get("selector"))
    url = r.str("spec.url", spec.get("url"))
    if not url:
        r.error("spec.url", "url field needs to be set")
    else:
        try:
            scheme = urlsplit(url).scheme
        except ValueError as err:
            r.error("spec.url", f"failed to parse url: {err}")
        else:
            if scheme not in _WASM_SCHEMES:
                r.error("spec.url", f"url contains unsupported scheme: {scheme}")
    sha = r.str("spec.sha256", spec.get("sha256"))
    if sha and len(sha) != 64:
        r.error("spec.sha256", "sha256 field must be 64 characters long")
    elif sha and any(c not in "0123456789abcdef" for c in sha):
        r.error("spec.sha256", "sha256 field must match [a-f0-9]{64} pattern")
    names: set[str] = set()
    for i, env in enumerate(r.list("spec.vmConfig.env", r.dict("spec.vmConfig", spec.get("vmConfig")).get("env"))):
        if env is None:
            continue
        env_name = r.str(f"spec.vmConfig.env[{i}].name", r.dict(f"spec.vmConfig.env[{i}]", env).get("name"))
        if not env_name:
            r.error(f"spec.vmConfig.env[{i}].name", "spec.vmConfig.env invalid")
            break
        if env_name in names:
            r.error(f"spec.vmConfig.env[{i}].name", "duplicate env")
            break
        names.add(env_name)
    _wasm_match(r, r.list("spec.match", spec.get("match")))


def _wasm_match(r: Report, selectors: list) -> None:
    """validateWasmPluginMatch: the first nil selector or port, or port out of range, is the error."""
    for i, selector in enumerate(selectors):
        if selector is None:
            r.error(f"spec.match[{i}]", f"spec.Match[{i}] is nil")
            return
        for j, port in enumerate(r.list(f"spec.match[{i}].ports", r.dict(f"spec.match[{i}]", selector).get("ports"))):
            if port is None:
                r.error(f"spec.match[{i}].ports[{j}]", f"spec.Match[{i}].Ports[{j}] is nil")
                return
            number = r.int(f"spec.match[{i}].ports[{j}].number", r.dict(f"spec.match[{i}].ports[{j}]", port).get("number"))
            if number <= 0 or number > 65535:
                r.error(f"spec.match[{i}].ports[{j}].number", f"spec.Match[{i}].Ports[{j}] is out of range: {number}")
                return
