"""Config validation verdicts (mesh.config.validation), the /validate webhook over HTTP, and the
``validate`` CLI. The expected verdicts are Istio 1.19's (pkg/config/validation)."""

from __future__ import annotations

import asyncio
import copy
import json
from pathlib import Path

import pytest
from aiohttp import ClientSession, web

from mesh.cli import main
from mesh.config import validation
from mesh.webhooks.validation import add_routes, make_validate_app, review

EXAMPLES = Path(__file__).parent.parent / "examples"


def vs(spec, name="reviews", namespace="default", **meta):
    return {"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
            "metadata": {"name": name, "namespace": namespace, **meta}, "spec": spec}


def route(*dests, **extra):
    return {"route": [dict(d) for d in dests], **extra}


def dest(host="reviews", weight=None, subset=None):
    d = {"destination": {"host": host}}
    if subset:
        d["destination"]["subset"] = subset
    if weight is not None:
        d["weight"] = weight
    return d


def problems(obj, severity="error"):
    return [(p.path, p.message) for p in validation.validate(obj) if p.severity == severity]


def messages(obj):
    return [m for _, m in problems(obj)]


# --- VirtualService ----------------------------------------------------------------------------

def test_valid_virtual_service_has_no_problems():
    assert validation.validate(vs({"hosts": ["reviews"], "http": [route(dest())]})) == []


def test_virtual_service_without_hosts_is_a_valid_delegate():
    assert problems(vs({"http": [route(dest())]})) == []


def test_delegate_virtual_service_may_not_name_gateways():
    assert problems(vs({"gateways": ["istio-system/gw"], "http": [route(dest())]})) == [
        ("spec.gateways", "delegate virtual service must have no gateways specified")]


def test_virtual_service_needs_some_route():
    assert messages(vs({"hosts": ["reviews"]})) == ["http, tcp or tls must be provided in virtual service"]


def test_negative_weight():
    obj = vs({"hosts": ["reviews"], "http": [route(dest(weight=110), dest(weight=-10, subset="v2"))]})
    assert problems(obj) == [("spec.http[0].route[1].weight", "weight -10 < 0")]


def test_weights_are_relative_not_percentages():
    obj = vs({"hosts": ["reviews"], "http": [route(dest(weight=1, subset="v1"), dest(weight=3, subset="v2"))]})
    assert problems(obj) == []


def test_several_destinations_with_zero_total_weight():
    obj = vs({"hosts": ["reviews"], "http": [route(dest(weight=0, subset="v1"), dest(weight=0, subset="v2"))]})
    assert problems(obj) == [("spec.http[0].route", "total destination weight = 0")]


def test_single_destination_with_zero_weight_is_fine():
    assert problems(vs({"hosts": ["reviews"], "http": [route(dest(weight=0))]})) == []


@pytest.mark.parametrize("timeout,verdict", [
    ("10s", None), ("1m", None), ("250ms", None), ("1h2m3s", None),
    ("500us", "duration must be greater than 1ms"),
    ("1500us", "only durations to ms precision are supported"),
    ("-1s", "duration must be greater than 1ms"),
])
def test_duration_rules(timeout, verdict):
    obj = vs({"hosts": ["reviews"], "http": [route(dest(), timeout=timeout)]})
    assert messages(obj) == ([verdict] if verdict else [])


@pytest.mark.parametrize("timeout,reason", [
    ("5x", 'time: unknown unit "x" in duration "5x"'),
    ("10", 'time: missing unit in duration "10"'),
    ("soon", 'time: invalid duration "soon"'),
])
def test_bad_duration_fails_decoding(timeout, reason):
    obj = vs({"hosts": ["reviews"], "http": [route(dest(), timeout=timeout)]})
    (problem,) = validation.validate(obj)
    assert (problem.path, problem.stage, problem.message) == ("spec.http[0].timeout", "decode", f"bad Duration: {reason}")
    assert validation.istiod_message(obj, [problem]) == f"error decoding configuration: bad Duration: {reason}"


@pytest.mark.parametrize("regex", ["(abc", "[a-", "foo(?=bar)", "(a)\\1"])
def test_invalid_regex(regex):
    obj = vs({"hosts": ["reviews"], "http": [route(dest(), match=[{"uri": {"regex": regex}}])]})
    ((path, message),) = problems(obj)
    assert path == "spec.http[0].match[0].uri.regex"
    assert message.startswith('"uri": error parsing regexp:') and "RE2" in message


def test_valid_regex_and_empty_regex():
    ok = vs({"hosts": ["reviews"], "http": [route(dest(), match=[{"uri": {"regex": "/api/v[0-9]+/.*"}}])]})
    assert problems(ok) == []
    empty = vs({"hosts": ["reviews"], "http": [route(dest(), match=[{"headers": {"x": {"regex": ""}}}])]})
    assert messages(empty) == ['"headers": regex string match should not be empty']


@pytest.mark.parametrize("subset,ok", [("v1", True), ("V1", True), ("v1-canary", True), ("v1.0", False),
                                       ("v_1", False), ("-v1", False)])
def test_subset_name_must_be_dns1123_label(subset, ok):
    obj = vs({"hosts": ["reviews"], "http": [route(dest(subset=subset))]})
    assert problems(obj) == ([] if ok else [("spec.http[0].route[0].destination.subset",
                                             f"subset name is invalid: {subset}")])


def test_wildcard_host_not_allowed_for_mesh_but_allowed_for_gateway():
    mesh = vs({"hosts": ["*"], "http": [route(dest())]})
    assert problems(mesh) == [("spec.hosts[0]",
                               "wildcard host * is not allowed for virtual services bound to the mesh gateway")]
    gateway = vs({"hosts": ["*"], "gateways": ["istio-system/ingress"], "http": [route(dest())]})
    assert problems(gateway) == []


def test_duplicate_and_overlapping_hosts():
    obj = vs({"hosts": ["a.example.com", "*.example.com"], "gateways": ["gw"], "http": [route(dest())]})
    assert messages(obj) == ["duplicate hosts in virtual service: a.example.com & *.example.com"]


def test_destination_host_star_and_bad_port():
    obj = vs({"hosts": ["reviews"], "http": [route({"destination": {"host": "*", "port": {"number": 70000}}})]})
    assert messages(obj) == ["invalid destination host *", "port number 70000 must be in the range 1..65535"]


def test_route_and_redirect_conflict():
    obj = vs({"hosts": ["reviews"], "http": [route(dest(), redirect={"uri": "/x"})]})
    assert messages(obj) == ["HTTP route cannot contain both route and redirect"]


def test_wrong_type_is_a_decode_problem_not_a_crash():
    obj = vs({"hosts": "reviews", "http": [route(dest(weight="ten"))]})
    stages = {(p.path, p.stage) for p in validation.validate(obj)}
    assert ("spec.hosts", "decode") in stages and ("spec.http[0].route[0].weight", "decode") in stages


# --- Gateway, ServiceEntry, DestinationRule, Sidecar, security ---------------------------------

def gateway(servers, name="gw"):
    return {"apiVersion": "networking.istio.io/v1beta1", "kind": "Gateway",
            "metadata": {"name": name, "namespace": "istio-system"},
            "spec": {"selector": {"istio": "ingressgateway"}, "servers": servers}}


def test_gateway_server_without_port_or_hosts():
    assert problems(gateway([{"hosts": ["example.com"]}])) == [("spec.servers[0].port", "port is required")]
    assert problems(gateway([{"port": {"number": 80, "name": "http", "protocol": "HTTP"}}])) == [
        ("spec.servers[0].hosts", "server config must contain at least one host")]
    assert messages(gateway([])) == ["gateway must have at least one server"]


def test_gateway_wildcard_and_tls_rules():
    http = {"number": 80, "name": "http", "protocol": "HTTP"}
    assert problems(gateway([{"port": http, "hosts": ["*.example.com", "*", "ns/*.example.com"]}])) == []
    assert messages(gateway([{"port": http, "hosts": ["*example.com"]}])) == [
        'partial wildcard "*example.com" not allowed']
    assert messages(gateway([{"port": http, "hosts": ["example"]}])) == ["short names (non FQDN) are not allowed"]
    https = {"number": 443, "name": "https", "protocol": "HTTPS"}
    assert messages(gateway([{"port": https, "hosts": ["a.example.com"]}])) == [
        "server must have TLS settings for HTTPS/TLS protocols"]
    assert problems(gateway([{"port": https, "hosts": ["a.example.com"],
                              "tls": {"mode": "SIMPLE", "credentialName": "cert"}}])) == []
    assert messages(gateway([{"port": https, "hosts": ["a.example.com"], "tls": {"mode": "SIMPLE"}}])) == [
        "SIMPLE TLS requires a server certificate", "SIMPLE TLS requires a private key"]


def test_gateway_name_and_duplicate_port_names():
    http = {"number": 80, "name": "http", "protocol": "HTTP"}
    obj = gateway([{"port": http, "hosts": ["a.example.com"]}, {"port": dict(http, number=81), "hosts": ["b.c.d"]}],
                  name="my.gateway")
    assert messages(obj) == ['invalid gateway name: "my.gateway"',
                             "port names in servers must be unique: duplicate name http"]


def service_entry(spec):
    return {"apiVersion": "networking.istio.io/v1beta1", "kind": "ServiceEntry",
            "metadata": {"name": "se", "namespace": "default"}, "spec": spec}


def test_service_entry_rules():
    assert messages(service_entry({"ports": [{"number": 443, "name": "tls", "protocol": "TLS"}],
                                   "resolution": "DNS"})) == ["service entry must have at least one host"]
    assert messages(service_entry({"hosts": ["*"], "resolution": "NONE"})) == ["invalid host *"]
    ok = service_entry({"hosts": ["api.example.com"], "ports": [{"number": 443, "name": "tls", "protocol": "TLS"}],
                        "resolution": "DNS"})
    assert problems(ok) == []
    assert messages(service_entry({"hosts": ["*.example.com"], "resolution": "DNS",
                                   "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}]})) == [
        "hosts must be FQDN if no endpoints are provided for resolution mode DNS"]


def test_destination_rule_rules():
    dr = {"apiVersion": "networking.istio.io/v1beta1", "kind": "DestinationRule",
          "metadata": {"name": "dr", "namespace": "default"},
          "spec": {"host": "reviews", "trafficPolicy": {},
                   "subsets": [{"name": "v1.0", "labels": {"version": "v1"}}]}}
    assert problems(dr) == [("spec.trafficPolicy", "traffic policy must have at least one field"),
                            ("spec.subsets[0].name", "subset name is invalid: v1.0")]
    dr["spec"] = {"host": "reviews", "trafficPolicy": {"outlierDetection": {"interval": "1x"}}}
    assert [(p.path, p.stage) for p in validation.validate(dr)] == [
        ("spec.trafficPolicy.outlierDetection.interval", "decode")]


def test_sidecar_rules():
    sc = {"apiVersion": "networking.istio.io/v1beta1", "kind": "Sidecar",
          "metadata": {"name": "default", "namespace": "default"}, "spec": {}}
    assert messages(sc) == ["sidecar: empty configuration provided"]
    sc["spec"] = {"egress": [{"hosts": ["istio-system/*", "./*", "reviews.default.svc.cluster.local"]}]}
    assert messages(sc) == ["host must be of form namespace/dnsName"]


def test_peer_authentication_rules():
    pa = {"apiVersion": "security.istio.io/v1beta1", "kind": "PeerAuthentication",
          "metadata": {"name": "default", "namespace": "istio-system"},
          "spec": {"mtls": {"mode": "STRICT"}, "portLevelMtls": {"8080": {"mode": "DISABLE"}}}}
    assert messages(pa) == ["mesh/namespace peer authentication cannot have port level mTLS"]
    pa["spec"]["selector"] = {"matchLabels": {"app": "reviews"}}
    assert problems(pa) == []


def test_authorization_policy_rules_and_istiod_prefix():
    ap = {"apiVersion": "security.istio.io/v1beta1", "kind": "AuthorizationPolicy",
          "metadata": {"name": "deny-all", "namespace": "default"}, "spec": {"action": "DENY"}}
    problems_ = validation.validate(ap)
    assert [p.path for p in problems_] == ["spec.rules"]
    assert validation.istiod_message(ap, problems_).startswith(
        "configuration is invalid: invalid policy deny-all.default: DENY action without `rules`")
    ap["spec"] = {"rules": [{"from": [{"source": {}}], "to": [{"operation": {"ports": ["99999"]}}]}]}
    assert messages(ap) == ["`from.source` must not be empty, found at rule 0", "bad port (99999)"]


def test_unknown_kind_and_version():
    with pytest.raises(validation.UnknownKind, match="unrecognized type networking.istio.io/v1beta1, Kind=Nope"):
        validation.validate({"apiVersion": "networking.istio.io/v1beta1", "kind": "Nope", "metadata": {"name": "x"}})
    with pytest.raises(validation.UnknownKind):  # v1 is only served from Istio 1.22
        validation.validate(dict(vs({"hosts": ["a"]}), apiVersion="networking.istio.io/v1"))


def test_multierror_message_lists_every_error():
    obj = vs({"hosts": ["reviews"], "http": [route(dest(weight=-1), dest(subset="a.b", weight=-2))]})
    message = validation.istiod_message(obj, validation.validate(obj))
    assert message == ("configuration is invalid: 3 errors occurred:\n\t* weight -1 < 0\n"
                       "\t* subset name is invalid: a.b\n\t* weight -2 < 0\n\n")


# --- the webhook, as a pure function and over real HTTP ---------------------------------------

def admission_review(obj, uid="1234-abcd", operation="CREATE"):
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": uid, "kind": {"group": "networking.istio.io", "version": "v1beta1",
                                             "kind": obj.get("kind")},
                        "namespace": obj["metadata"].get("namespace"), "operation": operation, "object": obj}}


GOOD = vs({"hosts": ["reviews"], "http": [route(dest())]})
BAD = vs({"hosts": ["reviews"], "http": [route(dest(weight=-5))]})


def test_review_allows_and_denies():
    assert review(admission_review(GOOD)) == {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                                              "response": {"uid": "1234-abcd", "allowed": True}}
    denied = review(admission_review(BAD, uid="u2"))["response"]
    assert denied == {"uid": "u2", "allowed": False,
                      "status": {"metadata": {}, "message": "configuration is invalid: weight -5 < 0"}}


def test_review_delete_is_allowed_without_looking():
    assert review(admission_review(BAD, operation="DELETE"))["response"] == {"uid": "1234-abcd", "allowed": True}


def test_review_unknown_top_level_field_is_refused():
    obj = dict(copy.deepcopy(GOOD), extra={"x": 1})
    message = review(admission_review(obj))["response"]["status"]["message"]
    assert message == 'unknown field "extra" on VirtualService resource default/reviews'


def test_review_passes_warnings():
    obj = gateway([{"port": {"number": 443, "name": "tls", "protocol": "TLS"}, "hosts": ["a.example.com"],
                    "tls": {"mode": "PASSTHROUGH", "credentialName": "x"}}])
    response = review(admission_review(obj))["response"]
    assert response["allowed"] is True
    assert response["warnings"] == ["PASSTHROUGH mode does not use certificates, they will be ignored"]


async def _serve_and_call(calls):
    app = web.Application()
    add_routes(app)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    results = []
    try:
        async with ClientSession() as session:
            for body, content_type in calls:
                headers = {"Content-Type": content_type} if content_type else {}
                async with session.post(f"http://127.0.0.1:{port}/validate", data=body, headers=headers) as resp:
                    text = await resp.text()
                    results.append((resp.status, json.loads(text) if resp.status == 200 else text))
    finally:
        await runner.cleanup()
    return results


def test_webhook_over_http():
    good = json.dumps(admission_review(GOOD, uid="good-1"))
    bad = json.dumps(admission_review(BAD, uid="bad-1"))
    results = asyncio.run(_serve_and_call([
        (good, "application/json"),
        (bad, "application/json"),
        (good, "application/yaml"),  # not JSON: 415
        ("{not json", "application/json"),  # malformed review: a Status message, server stays up
        (json.dumps({"apiVersion": "v1", "kind": "Pod"}), "application/json"),
        ("", "application/json"),  # no body: 400
        (good, "application/json"),  # still serving
    ]))
    (s1, r1), (s2, r2), (s3, r3), (s4, r4), (s5, r5), (s6, r6), (s7, r7) = results
    assert s1 == 200 and r1["response"] == {"uid": "good-1", "allowed": True}
    assert r1["apiVersion"] == "admission.k8s.io/v1" and r1["kind"] == "AdmissionReview"
    assert s2 == 200 and r2["response"]["uid"] == "bad-1" and r2["response"]["allowed"] is False
    assert r2["response"]["status"]["message"] == "configuration is invalid: weight -5 < 0"
    assert s3 == 415 and "application/json" in r3
    assert s4 == 200 and r4["response"]["allowed"] is False
    assert r4["response"]["status"]["message"].startswith("could not decode body:")
    assert s5 == 200 and r5["response"]["status"]["message"].startswith("could not decode body:")
    assert s6 == 400 and "no body" in r6
    assert s7 == 200 and r7["response"]["allowed"] is True


def test_make_validate_app_serves_validate():
    app = make_validate_app()
    assert {r.resource.canonical for r in app.router.routes()} == {"/validate", "/validate/"}


# --- the validate CLI ---------------------------------------------------------------------------

def test_cli_validate_bad_file_exit_1_one_line_per_problem(capsys):
    assert main(["validate", "-f", str(EXAMPLES / "bad-virtualservice.yaml")]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 11
    assert any("document 1 (line 3) VirtualService bookinfo/reviews: spec.http[0].route[1].weight: weight -10 < 0"
               in line for line in lines)
    assert any("document 4 (line 51) ServiceEntry bookinfo/external-api: spec.hosts: service entry must have at "
               "least one host" in line for line in lines)
    assert not any(line.startswith("OK") for line in lines)


def test_cli_validate_good_file_exit_0(capsys):
    assert main(["validate", "-f", str(EXAMPLES / "good-config.yaml")]) == 0
    assert capsys.readouterr().out == "OK: 3 Istio object(s) valid (1 Service(s) checked)\n"


def test_cli_validate_checks_service_port_names_like_istioctl(tmp_path, capsys):
    f = tmp_path / "svc.yaml"
    f.write_text("apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\nspec:\n  ports:\n"
                 "  - {name: web, port: 80}\n  - {name: http-web, port: 81}\n  - {port: 82}\n"
                 "  - {name: dns, port: 53, protocol: UDP}\n"
                 "---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n")
    assert main(["validate", "-f", str(f)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(": ")[1:3] for line in lines] == [
        ["document 1 (line 1) Service shop/web", "spec.ports[0].name"],
        ["document 1 (line 1) Service shop/web", "spec.ports[2]"]]
    assert 'port "web" does not follow the Istio naming convention' in lines[0]
    f.write_text(f.read_text().replace("namespace: shop", "namespace: istio-system"))
    assert main(["validate", "-f", str(f)]) == 0
    assert capsys.readouterr().out == "OK: 0 Istio object(s) valid (1 Service(s) checked, 1 other object(s) skipped)\n"


def test_cli_validate_defaults_namespace_like_istioctl(tmp_path, capsys):
    f = tmp_path / "vs.yaml"
    f.write_text("apiVersion: networking.istio.io/v1beta1\nkind: VirtualService\nmetadata: {name: v}\nspec:\n"
                 "  hosts: [a]\n  exportTo: ['.', default]\n  http: [{route: [{destination: {host: a}}]}]\n")
    assert main(["validate", "-f", str(f)]) == 1
    assert "spec.exportTo[1]: duplicate entries in exportTo for entry default" in capsys.readouterr().out


@pytest.mark.parametrize("text,expect", [
    ("apiVersion: v1\nkind: [\n", "invalid YAML"),
    ("kind: VirtualService\nmetadata: {name: x}\n", "document 1 (line 1): missing or empty field 'apiVersion'"),
    ("apiVersion: networking.istio.io/v1beta1\nkind: VirtualService\nmetadata: {name: a}\nspec: {}\n---\n"
     "apiVersion: networking.istio.io/v1beta1\nmetadata: {name: b}\n", "document 2 (line 6): missing or empty field 'kind'"),
    ("- a\n- b\n", "expected a mapping"),
    ("apiVersion: v1\nkind: Service\nspec: {}\n", "missing field 'metadata'"),
])
def test_cli_validate_malformed_exit_2_no_output(tmp_path, capsys, text, expect):
    f = tmp_path / "in.yaml"
    f.write_text(text)
    assert main(["validate", "-f", str(f)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert expect in captured.err and str(f) in captured.err


def test_cli_validate_unknown_istio_kind(tmp_path, capsys):
    f = tmp_path / "in.yaml"
    f.write_text("apiVersion: networking.istio.io/v1beta1\nkind: Nope\nmetadata: {name: x}\n")
    assert main(["validate", "-f", str(f)]) == 1
    assert "unrecognized type networking.istio.io/v1beta1, Kind=Nope" in capsys.readouterr().out


def test_unreachable_rules_are_warnings_not_errors():
    obj = vs({"hosts": ["reviews"], "http": [
        route(dest(), match=[{"uri": {"prefix": "/a"}}]),
        route(dest(), name="dup", match=[{"uri": {"prefix": "/a"}, "name": "again"}]),
        route(dest()),
        route(dest(subset="v2")),
    ]})
    assert problems(obj) == []
    assert problems(obj, "warning") == [
        ("spec.http[1].match[0]", 'virtualService rule "dup" match "again" is not used (duplicate/overlapping '
                                  "match in rule #0)"),
        ("spec.http[1]", 'virtualService rule "dup" not used (all matches used by prior rules)'),
        ("spec.http[3]", "virtualService rule #3 not used (only the last rule can have no matches)"),
    ]
    response = review(admission_review(obj))["response"]
    assert response["allowed"] is True and len(response["warnings"]) == 3


def test_wildcard_in_sidecar_selector_stops_validation():
    sc = {"apiVersion": "networking.istio.io/v1beta1", "kind": "Sidecar",
          "metadata": {"name": "s", "namespace": "default"},
          "spec": {"workloadSelector": {"labels": {"app": "*"}}}}
    assert problems(sc) == [("spec.workloadSelector.labels", 'wildcard is not supported in selector: "app=*"')]
    sc["spec"] = {"workloadSelector": {"labels": {}}, "egress": [{"hosts": ["*/*"]}]}
    assert problems(sc) == []
    assert [m for _, m in problems(sc, "warning")] == [
        "sidecar: workload selector specified without labels, will be applied to all services in namespace"]


def test_authorization_policy_from_and_to_clauses_name_their_paths():
    def problems(rules):
        obj = {"apiVersion": "security.istio.io/v1beta1", "kind": "AuthorizationPolicy",
               "metadata": {"name": "a", "namespace": "default"}, "spec": {"rules": rules}}
        return [(p.path, p.message) for p in validation.validate(obj)]

    assert problems([{"from": [{}]}, {"to": []}]) == [
        ("spec.rules[0].from[0].source", "`from.source` must not be nil, found at rule 0"),
        ("spec.rules[1].to", "`to` must not be empty, found at rule 1")]
    assert problems([{"from": [{"source": {"ipBlocks": ["1.2.3.4/99", "x"]}}], "to": [{}]}]) == [
        ("spec.rules[0].from[0].source.ipBlocks", "bad CIDR range (1.2.3.4/99)"),
        ("spec.rules[0].from[0].source.ipBlocks", "bad IP address (x)"),
        ("spec.rules[0].to[0].operation", "`to.operation` must not be nil, found at rule 0")]


def test_cli_validate_istio_operator_unknown_fields_and_service_lists_like_istioctl(tmp_path, capsys):
    f = tmp_path / "in.yaml"
    f.write_text("apiVersion: install.istio.io/v1alpha1\nkind: IstioOperator\nmetadata: {name: iop}\n"
                 "spec: {profile: demo}\n")
    assert main(["validate", "-f", str(f)]) == 0
    f.write_text("apiVersion: install.istio.io/v1alpha1\nkind: IstioOperator\nmetadata: {name: iop}\n"
                 "spec: {dummy: 1}\n")
    assert main(["validate", "-f", str(f)]) == 1
    assert "IstioOperator iop: spec.dummy: unknown field" in capsys.readouterr().out
    f.write_text("apiVersion: networking.istio.io/v1beta1\nkind: DestinationRule\nmetadata: {name: dr}\n"
                 "junk: 1\nspec: {host: reviews}\n")
    assert main(["validate", "-f", str(f)]) == 1
    assert 'DestinationRule dr: junk: unknown field "junk"' in capsys.readouterr().out
    f.write_text("apiVersion: v1\nkind: List\nmetadata: {name: l}\nitems:\n- apiVersion: v1\n  kind: Service\n"
                 "  metadata: {name: hello}\n  spec: {ports: [{port: 80}]}\n")
    assert main(["validate", "-f", str(f)]) == 1
    assert 'service "hello//:" has an unnamed port' in capsys.readouterr().out
