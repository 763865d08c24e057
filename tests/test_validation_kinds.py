"""Validation of the kinds added to mesh.config.validation (WorkloadEntry, WorkloadGroup, ProxyConfig,
EnvoyFilter, WasmPlugin, Telemetry), the served versions per kind, and the checks shared with the
older kinds that became complete (RE2 regexes, header values, unreachable prefix matches, the
dry-run annotation). Expected messages are Istio 1.19's (pkg/config/validation/validation.go)."""

from __future__ import annotations

import pytest

from mesh.config import validation
from mesh.kube import kinds


def obj(kind, spec, api_version=None, name="x", namespace="default", **meta):
    group = {"Telemetry": "telemetry.istio.io", "WasmPlugin": "extensions.istio.io"}.get(kind, "networking.istio.io")
    version = {"telemetry.istio.io": "v1alpha1", "extensions.istio.io": "v1alpha1"}.get(group, "v1beta1")
    if kind == "EnvoyFilter":
        version = "v1alpha3"
    if kind in ("AuthorizationPolicy", "PeerAuthentication", "RequestAuthentication"):
        group = "security.istio.io"
    return {"apiVersion": api_version or f"{group}/{version}", "kind": kind,
            "metadata": {"name": name, "namespace": namespace, **meta}, "spec": spec}


def found(o, severity="error"):
    return [(p.path, p.message) for p in validation.validate(o) if p.severity == severity]


# --- which group/versions are served ------------------------------------------------------------

# Istio 1.19's crd-all.gen.yaml, every version with served: true.
SERVED = {
    "VirtualService": ("networking.istio.io", {"v1alpha3", "v1beta1"}),
    "DestinationRule": ("networking.istio.io", {"v1alpha3", "v1beta1"}),
    "Gateway": ("networking.istio.io", {"v1alpha3", "v1beta1"}),
    "ServiceEntry": ("networking.istio.io", {"v1alpha3", "v1beta1"}),
    "Sidecar": ("networking.istio.io", {"v1alpha3", "v1beta1"}),
    "WorkloadEntry": ("networking.istio.io", {"v1alpha3", "v1beta1"}),
    "WorkloadGroup": ("networking.istio.io", {"v1alpha3", "v1beta1"}),
    "EnvoyFilter": ("networking.istio.io", {"v1alpha3"}),
    "ProxyConfig": ("networking.istio.io", {"v1beta1"}),
    "PeerAuthentication": ("security.istio.io", {"v1beta1"}),
    "AuthorizationPolicy": ("security.istio.io", {"v1", "v1beta1"}),
    "RequestAuthentication": ("security.istio.io", {"v1", "v1beta1"}),
    "Telemetry": ("telemetry.istio.io", {"v1alpha1"}),
    "WasmPlugin": ("extensions.istio.io", {"v1alpha1"}),
}


@pytest.mark.parametrize("kind", sorted(SERVED))
@pytest.mark.parametrize("version", ["v1alpha1", "v1alpha3", "v1beta1", "v1", "v2"])
def test_each_served_version_is_accepted_and_no_other(kind, version):
    group, served = SERVED[kind]
    o = obj(kind, {}, api_version=f"{group}/{version}")
    assert validation.is_known(o) == (version in served)
    assert set(kinds.lookup(group, kind).served_versions) == served
    if version not in served:
        with pytest.raises(validation.UnknownKind, match=f"unrecognized type {group}/{version}, Kind={kind}"):
            validation.validate(o)


def test_security_v1_authorization_policy_is_validated_like_v1beta1():
    spec = {"action": "DENY"}
    v1 = found(obj("AuthorizationPolicy", spec, api_version="security.istio.io/v1"))
    assert v1 == found(obj("AuthorizationPolicy", spec)) and v1[0][0] == "spec.rules"


# --- WorkloadEntry / WorkloadGroup --------------------------------------------------------------

def test_workload_entry_address_ports_and_unix_sockets():
    assert found(obj("WorkloadEntry", {"address": "10.0.0.1", "ports": {"http": 8080}})) == []
    assert found(obj("WorkloadEntry", {"address": "vm.example.com"})) == []
    assert found(obj("WorkloadEntry", {})) == [("spec.address", "address must be set")]
    assert found(obj("WorkloadEntry", {"network": "n2"}), "warning") == [
        ("spec.address", 'address is unset with network "n2"')]
    assert found(obj("WorkloadEntry", {"address": "unix:///var/run/a.sock", "ports": {"http": 80}})) == [
        ("spec.ports", "unix endpoint unix:///var/run/a.sock must not include ports")]
    assert found(obj("WorkloadEntry", {"address": "vm:9443"})) == [
        ("spec.address", 'endpoint address "vm:9443" is not a valid FQDN or an IP address')]
    assert found(obj("WorkloadEntry", {"address": "1.2.3.4", "ports": {"HTTP_1": 0}})) == [
        ("spec.ports.HTTP_1", "invalid port name: HTTP_1"),
        ("spec.ports.HTTP_1", "port number 0 must be in the range 1..65535")]


def test_workload_group_needs_a_template_and_a_well_formed_probe():
    assert found(obj("WorkloadGroup", {})) == [("spec.template", "template is required")]
    assert found(obj("WorkloadGroup", {"template": {}, "probe": {"httpGet": {"port": 8080}}})) == []
    assert found(obj("WorkloadGroup", {"template": {}, "probe": {"periodSeconds": -1, "tcpSocket": {"port": 0}}})) == [
        ("spec.probe.periodSeconds", "periodSeconds must be non-negative"),
        ("spec.probe.tcpSocket.port", "port number 0 must be in the range 1..65535")]
    assert found(obj("WorkloadGroup", {"template": {}, "probe": {"exec": {}}})) == [
        ("spec.probe.exec.command", "exec.command is required")]
    (problem,) = found(obj("WorkloadGroup", {"template": {}, "metadata": {"labels": {"a": "b c"}}}))
    assert problem[1].startswith("invalid labels: 1 error occurred:") and 'invalid tag value: "b c"' in problem[1]


# --- ProxyConfig, Telemetry, WasmPlugin ---------------------------------------------------------

def test_proxy_config_concurrency_and_selector():
    assert found(obj("ProxyConfig", {"concurrency": 2, "selector": {"matchLabels": {"app": "a"}}})) == []
    assert found(obj("ProxyConfig", {"concurrency": -1})) == [
        ("spec.concurrency", "concurrency must be greater than or equal to 0")]
    assert found(obj("ProxyConfig", {"selector": {"matchLabels": {"app": "*"}}})) == [
        ("spec.selector.matchLabels", 'wildcard is not supported in selector: "app=*"')]


def test_telemetry_providers_sampling_tags_overrides_and_cel_filters():
    ok = {"tracing": [{"providers": [{"name": "zipkin"}], "randomSamplingPercentage": 10.5}],
          "accessLogging": [{"filter": {"expression": "response.code >= 400"}}],
          "metrics": [{"overrides": [{"tagOverrides": {"x": {"value": "y"}}}]}]}
    assert validation.validate(obj("Telemetry", ok)) == []
    assert found(obj("Telemetry", {"tracing": [{"randomSamplingPercentage": 101}]})) == [
        ("spec.tracing[0].randomSamplingPercentage", "randomSamplingPercentage must be in range [0.0, 100.0]")]
    assert found(obj("Telemetry", {"tracing": [{}, {}]}), "warning") == [
        ("spec.tracing", "multiple tracing is not currently supported")]
    assert found(obj("Telemetry", {"tracing": [{"customTags": {"t": {"literal": {}}}}]})) == [
        ("spec.tracing[0].customTags.t.literal.value", "literal tag value may not be empty")]
    assert found(obj("Telemetry", {"metrics": [{"providers": [{}]}]})) == [
        ("spec.metrics[0].providers[0].name", "providers.name may not be empty")]
    assert found(obj("Telemetry", {"metrics": [{"overrides": [{"tagOverrides": {"x": {"operation": "REMOVE",
                                                                                       "value": "y"}}}]}]})) == [
        ("spec.metrics[0].overrides[0].tagOverrides.x.value",
         "tagOverrides.value may only be set when operation is UPSERT")]
    (path, message), = found(obj("Telemetry", {"accessLogging": [{"filter": {"expression": "response.code >="}}]}))
    assert path == "spec.accessLogging[0].filter.expression" and message.startswith("must be a valid CEL expression")


def test_wasm_plugin_url_sha_env_and_match():
    good = {"url": "oci://ghcr.io/x/filter:1", "sha256": "a" * 64, "vmConfig": {"env": [{"name": "A"}]},
            "match": [{"ports": [{"number": 8080}]}]}
    assert validation.validate(obj("WasmPlugin", good)) == []
    assert found(obj("WasmPlugin", {})) == [("spec.url", "url field needs to be set")]
    assert found(obj("WasmPlugin", {"url": "ftp://x/y"})) == [("spec.url", "url contains unsupported scheme: ftp")]
    assert found(obj("WasmPlugin", {"url": "x.wasm", "sha256": "A" * 64})) == [
        ("spec.sha256", "sha256 field must match [a-f0-9]{64} pattern")]
    assert found(obj("WasmPlugin", {"url": "x.wasm", "vmConfig": {"env": [{"name": "A"}, {"name": "A"}]}})) == [
        ("spec.vmConfig.env[1].name", "duplicate env")]
    assert found(obj("WasmPlugin", {"url": "x.wasm", "match": [{"ports": [{"number": 70000}]}]})) == [
        ("spec.match[0].ports[0].number", "spec.Match[0].Ports[0] is out of range: 70000")]


# --- EnvoyFilter --------------------------------------------------------------------------------

def patch(apply_to, operation="MERGE", value=None, match=None):
    p = {"applyTo": apply_to, "patch": {"operation": operation}}
    if value is not None:
        p["patch"]["value"] = value
    if match is not None:
        p["match"] = match
    return p


def test_envoy_filter_patch_structure():
    assert found(obj("EnvoyFilter", {"configPatches": [{}]})) == [
        ("spec.configPatches[0].applyTo", "Envoy filter: missing applyTo")]
    assert found(obj("EnvoyFilter", {"configPatches": [{"applyTo": "CLUSTER"}]})) == [
        ("spec.configPatches[0].patch", "Envoy filter: missing patch")]
    assert found(obj("EnvoyFilter", {"configPatches": [patch("CLUSTER", "ADD")]})) == [
        ("spec.configPatches[0].patch.value", "Envoy filter: missing patch value for non-remove operation")]
    assert found(obj("EnvoyFilter", {"configPatches": [patch("CLUSTER", "REMOVE", match={"listener": {}})]})) == [
        ("spec.configPatches[0].match", "Envoy filter: applyTo for cluster class objects cannot have non cluster match")]


def test_envoy_filter_values_decode_into_the_xds_type_applyto_names():
    lua = {"name": "envoy.filters.http.lua", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua", "inline_code": "-- x"}}
    assert validation.validate(obj("EnvoyFilter", {"configPatches": [patch("HTTP_FILTER", "INSERT_BEFORE", lua)]})) == []
    (path, message), = found(obj("EnvoyFilter", {"configPatches": [patch("CLUSTER", value={"name": False})]}))
    assert path == "spec.configPatches[0].patch.value" and message.startswith("Envoy filter:")
    v2 = {"typed_config": {"@type": "type.googleapis.com/envoy.config.filter.network.ext_authz.v2.ExtAuthz"}}
    (_, message), = found(obj("EnvoyFilter", {"configPatches": [patch("NETWORK_FILTER", "INSERT_FIRST", v2)]}))
    assert message.startswith("referenced type unknown (hint: try using the v3 XDS API)")
    # an unknown field fails only istiod's strict decoding: a warning
    assert found(obj("EnvoyFilter", {"configPatches": [patch("CLUSTER", value={"bogus": 1})]}), "warning") == [
        ("spec.configPatches[0].patch.value", "Envoy filter: Unknown field 'bogus' in message Cluster.")]


def test_envoy_filter_filter_matches_and_deprecated_names():
    m = {"listener": {"filterChain": {"filter": {"name": "envoy.http_connection_manager",
                                                 "subFilter": {"name": "envoy.router"}}}}}
    o = obj("EnvoyFilter", {"configPatches": [patch("HTTP_FILTER", "REMOVE", match=m)]})
    assert found(o) == []
    assert found(o, "warning") == [
        ("spec.configPatches[0].match.listener.filterChain.filter.name", 'using deprecated filter name '
         '"envoy.http_connection_manager"; use "envoy.filters.network.http_connection_manager" instead'),
        ("spec.configPatches[0].match.listener.filterChain.filter.subFilter.name", 'using deprecated filter name '
         '"envoy.router"; use "envoy.filters.http.router" instead')]
    m = {"listener": {"filterChain": {"filter": {"name": "x", "subFilter": {"name": "y"}}}}}
    assert found(obj("EnvoyFilter", {"configPatches": [patch("NETWORK_FILTER", "REMOVE", match=m)]})) == [
        ("spec.configPatches[0].match.listener.filterChain.filter.subFilter",
         "Envoy filter: subfilter match can be used with applyTo HTTP_FILTER only")]
    assert found(obj("EnvoyFilter", {"workloadSelector": {}}), "warning") == [
        ("spec.workloadSelector", "Envoy filter: workload selector specified without labels, will be applied to all "
                                  "services in namespace")]


def test_envoy_filter_proxy_version_is_an_re2_regex():
    o = obj("EnvoyFilter", {"configPatches": [patch("LISTENER", "REMOVE", match={"proxy": {"proxyVersion": "a++"}})]})
    assert found(o) == [("spec.configPatches[0].match.proxy.proxyVersion",
                         "Envoy filter: invalid regex for proxy version, [error parsing regexp: bad repetition "
                         "operator: ++]")]


# --- checks the older kinds gained --------------------------------------------------------------

def vs_route(**route):
    return obj("VirtualService", {"hosts": ["a.example.com"], "http": [{"route": [{"destination": {"host": "a"}}],
                                                                      **route}]})


def test_regexes_are_checked_by_re2():
    assert found(vs_route(match=[{"uri": {"regex": "/a(?=b)"}}])) == [
        ("spec.http[0].match[0].uri.regex", '"uri": error parsing regexp: invalid perl operator: (?=; Istio uses '
                                            "RE2 style regex-based match (https://github.com/google/re2/wiki/Syntax)")]
    assert found(vs_route(match=[{"uri": {"regex": "/a[0-9]+"}}])) == []


def test_header_values_are_parsed_like_envoys_formatter():
    ok = {"request": {"set": {"x-a": "%DOWNSTREAM_REMOTE_ADDRESS%", "x-b": '%REQ(["x-b"])%', "x-c": "100%%"}}}
    assert found(vs_route(headers=ok)) == []
    bad = {"request": {"set": {"x-a": "%UNTERMINATED"}}}
    assert found(vs_route(headers=bad)) == [
        ("spec.http[0].headers.request.set.x-a",
         "header value configuration: invalid header configuration. Un-terminated variable expression '%UNTERMINATED'")]


def test_a_prefix_match_covered_by_an_earlier_one_is_warned_about():
    matches = [{"uri": {"prefix": "/api"}}, {"uri": {"prefix": "/api/v1"}}]
    assert found(vs_route(match=matches), "warning") == [
        ("spec.http[0].match[1]", "virtualService rule #0 match #1 of prefix /api/v1 is not used (duplicate/"
                                  "overlapping match in rule #0 of prefix /api on #0)")]
    # a different method is not covered
    matches[1]["method"] = {"exact": "POST"}
    assert found(vs_route(match=matches), "warning") == []


def test_authority_is_rewritten_in_one_place_only():
    assert found(vs_route(rewrite={"authority": "b"}, headers={"request": {"set": {"host": "c"}}})) == [
        ("spec.http[0].headers.request.set.host",
         'authority header cannot be set multiple times: have "b", attempting to set "c"')]


def test_dry_run_annotation_only_on_allow_or_deny_authorization_policies():
    dry = {"istio.io/dry-run": "true"}
    assert found(obj("AuthorizationPolicy", {}, annotations=dry)) == []
    assert found(obj("Sidecar", {"egress": [{"hosts": ["*/*"]}]}, annotations=dry)) == [
        ("metadata.annotations.istio.io/dry-run",
         "default/x has unsupported annotation istio.io/dry-run, please remove the annotation")]
    assert found(obj("AuthorizationPolicy", {}, annotations={"istio.io/dry-run": "yes"})) == [
        ("metadata.annotations.istio.io/dry-run", "default/x has annotation istio.io/dry-run with invalid value (yes): "
                                                  'strconv.ParseBool: parsing "yes": invalid syntax')]


def test_authorization_policy_conditions_are_checked_per_attribute():
    def when(key, values):
        return obj("AuthorizationPolicy", {"rules": [{"when": [{"key": key, "values": values}]}]})
    assert found(when("source.ip", ["10.0.0.0/8"])) == []
    assert found(when("request.headers[x-a]", ["b"])) == []
    # the key is checked against notValues too, even when there are none (as ValidateAttribute does)
    assert found(when("request.headers", ["b"])) == [
        ("spec.rules[0].when[0].values",
         "invalid `value` for `key` request.headers: bad key (request.headers): should have format a[b]"),
        ("spec.rules[0].when[0].notValues",
         "invalid `notValue` for `key` request.headers: bad key (request.headers): should have format a[b]")]
    assert found(when("destination.port", ["http"]))[0][1].startswith(
        "invalid `value` for `key` destination.port: 1 error occurred:\n\t* bad port (http)")
    assert found(when("foo.bar", ["x"]))[0] == (
        "spec.rules[0].when[0].values", "invalid `value` for `key` foo.bar: unknown attribute: foo.bar")


def test_deny_with_only_http_attributes_warns_that_tcp_traffic_is_denied():
    o = obj("AuthorizationPolicy", {"action": "DENY", "rules": [{"to": [{"operation": {"methods": ["GET"]}}]}]})
    assert [p for p, _ in found(o, "warning")] == ["spec.rules[0]"]
    o["spec"]["rules"][0]["to"][0]["operation"]["ports"] = ["8080"]
    assert found(o, "warning") == []


def test_request_authentication_jwks_uri_jwks_params_and_claim_headers():
    def rule(**r):
        return obj("RequestAuthentication", {"jwtRules": [{"issuer": "i", **r}]})
    assert found(rule(jwksUri="https://example.com/keys", jwks='{"keys": [{"kty": "RSA"}]}')) == []
    assert found(rule(jwksUri="example.com/keys")) == [
        ("spec.jwtRules[0].jwksUri", 'URI scheme "" is not supported')]
    assert found(rule(jwks="foo"))[0][1].startswith("jwks parse error:")
    assert found(rule(fromParams=[""])) == [("spec.jwtRules[0].fromParams[0]", "location query must be non-empty string")]
    assert found(rule(outputClaimToHeaders=[{"claim": "sub"}])) == [
        ("spec.jwtRules[0].outputClaimToHeaders[0]", "outputClaimToHeaders header and claim value must be non-empty "
                                                     "string")]


def test_sidecar_default_endpoint_and_ingress_tls():
    def ingress(**listener):
        return obj("Sidecar", {"ingress": [{"port": {"number": 80, "protocol": "HTTPS", "name": "https"}, **listener}]})
    assert found(ingress(defaultEndpoint="127.0.0.1:8080")) == []
    assert found(ingress(defaultEndpoint="1.1.1.1:8080")) == [
        ("spec.ingress[0].defaultEndpoint", "sidecar: defaultEndpoint must be of form 127.0.0.1:<port>,0.0.0.0:<port>,"
                                            "[::1]:port,[::]:port,unix://filepath or unset")]
    assert found(ingress(tls={"mode": "ISTIO_MUTUAL"})) == [
        ("spec.ingress[0].tls.mode", "configuration is invalid: cannot set mode to ISTIO_MUTUAL in sidecar ingress tls")]
