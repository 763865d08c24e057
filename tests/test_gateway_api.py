"""Gateway API → Istio Gateway/VirtualService conversion and status (mesh.configcontroller.gateway_api).

Each ``tests/golden/gateway_api/<case>.yaml`` explains in its header comment the 1.19 rule it
pins down; it is converted together with ``_base.yaml`` (a GatewayClass, a Gateway, Services).
``<case>.golden.yaml`` holds every Istio object istiod 1.19 generates for it (Gateways first,
then VirtualServices, each by namespace/name) and the optional ``<case>.status.yaml`` the
status written back to the listed inputs. To rewrite the goldens after an intended change:
``MESH_UPDATE_GOLDEN=1 pytest tests/test_gateway_api.py`` (then review the diff; status files
are never rewritten).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
import yaml

from mesh.cli import main
from mesh.cli._documents import dump_documents
from mesh.configcontroller.gateway_api import GatewayAPIError, convert, reconcile

GOLDEN = Path(__file__).parent / "golden" / "gateway_api"
HTTPROUTE = "gateway.networking.k8s.io/v1beta1"


def load(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((GOLDEN / name).read_text()) if d]


def _cases() -> list[str]:
    return sorted(p.name.removesuffix(".yaml") for p in GOLDEN.glob("*.yaml")
                  if not p.name.startswith("_") and not p.name.endswith((".golden.yaml", ".status.yaml")))


CASES = _cases()


def test_there_are_cases():
    assert len(CASES) >= 15


@pytest.mark.parametrize("case", CASES)
def test_golden(case):
    result = reconcile(load("_base.yaml") + load(f"{case}.yaml"))
    out = result.objects()
    golden = GOLDEN / f"{case}.golden.yaml"
    if os.environ.get("MESH_UPDATE_GOLDEN"):
        golden.write_text(dump_documents(out))
    assert out == load(golden.name)
    status_file = GOLDEN / f"{case}.status.yaml"
    if status_file.exists():
        for want in load(status_file.name):
            got = result.status_of(want["kind"], want["name"], want.get("namespace", ""))
            assert got == want["status"], f"{want['kind']} {want.get('namespace')}/{want['name']}"


# --- helpers for the focused tests ---------------------------------------------------------------------


def base() -> list[dict]:
    return load("_base.yaml")


def http_route(name: str, ns: str = "default", parent: dict | None = None, **spec) -> dict:
    spec.setdefault("parentRefs", [parent or {"name": "gateway", "namespace": "istio-system"}])
    spec.setdefault("rules", [{"backendRefs": [{"name": "httpbin", "port": 8000}]}])
    return {"apiVersion": HTTPROUTE, "kind": "HTTPRoute", "metadata": {"name": name, "namespace": ns}, "spec": spec}


def conditions(status_parent: dict) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status_parent["conditions"]}


def only_parent(result, name: str, ns: str = "default") -> dict:
    parents = result.status_of("HTTPRoute", name, ns)["parents"]
    assert len(parents) == 1
    return parents[0]


def vs_named(result, name: str) -> dict:
    [vs] = [v for v in result.virtual_services if v["metadata"]["name"] == name]
    return vs


# --- status ------------------------------------------------------------------------------------------------


def test_gateway_without_its_service_is_accepted_but_not_programmed():
    objs = [o for o in base() if o["metadata"]["name"] != "gateway-istio"]
    st = reconcile(objs).status_of("Gateway", "gateway", "istio-system")
    conds = {c["type"]: c for c in st["conditions"]}
    assert (conds["Accepted"]["status"], conds["Accepted"]["reason"]) == ("True", "Accepted")
    assert (conds["Programmed"]["status"], conds["Programmed"]["reason"]) == ("False", "Invalid")
    assert conds["Programmed"]["message"] == (
        'Failed to assign to any requested addresses: hostname "gateway-istio.istio-system.svc.cluster.local" '
        "not found")
    assert "addresses" not in st


def test_gateway_service_port_mismatch_gets_a_hint():
    objs = base()
    svc = next(o for o in objs if o["metadata"]["name"] == "gateway-istio")
    svc["spec"]["ports"] = [{"name": "http", "port": 8080, "targetPort": 80}]
    st = reconcile(objs).status_of("Gateway", "gateway", "istio-system")
    programmed = next(c for c in st["conditions"] if c["type"] == "Programmed")
    assert programmed["status"] == "False"
    assert "Did you mean one of these ports: [8080]?" in programmed["message"]


def test_attached_routes_counts_only_accepted_routes():
    objs = base() + [http_route("a"), http_route("b", hostnames=["x.example.com"]),
                     http_route("c", parent={"name": "gateway", "namespace": "istio-system", "sectionName": "nope"})]
    st = reconcile(objs).status_of("Gateway", "gateway", "istio-system")
    assert st["listeners"][0]["attachedRoutes"] == 2


def test_no_matching_parent_for_unknown_section_or_port():
    objs = base() + [
        http_route("bad-section", parent={"name": "gateway", "namespace": "istio-system", "sectionName": "nope"}),
        http_route("bad-port", parent={"name": "gateway", "namespace": "istio-system", "port": 8443}),
    ]
    result = reconcile(objs)
    p = only_parent(result, "bad-section")
    assert conditions(p)["Accepted"] == ("False", "NoMatchingParent")
    assert p["conditions"][0]["message"] == 'sectionName "nope" not found'
    assert conditions(only_parent(result, "bad-port"))["Accepted"] == ("False", "NoMatchingParent")
    assert result.virtual_services == []


def test_not_allowed_by_listeners_for_other_namespace_when_from_same():
    objs = base()
    gw = next(o for o in objs if o["kind"] == "Gateway")
    del gw["spec"]["listeners"][0]["allowedRoutes"]  # default: routes from the Gateway's namespace only
    result = reconcile(objs + [http_route("r")])
    p = only_parent(result, "r")
    assert conditions(p)["Accepted"] == ("False", "NotAllowedByListeners")
    assert 'namespace "default" is not allowed by the parent' in p["conditions"][0]["message"]
    assert result.gateways[0]["spec"]["servers"][0]["hosts"] == ["istio-system/*"]


def test_not_allowed_by_listeners_for_wrong_route_kind():
    tcp = {"apiVersion": "gateway.networking.k8s.io/v1alpha2", "kind": "TCPRoute",
           "metadata": {"name": "t", "namespace": "default"},
           "spec": {"parentRefs": [{"name": "gateway", "namespace": "istio-system"}],
                    "rules": [{"backendRefs": [{"name": "httpbin", "port": 8000}]}]}}
    result = reconcile(base() + [tcp])
    [p] = result.status_of("TCPRoute", "t", "default")["parents"]
    assert conditions(p)["Accepted"] == ("False", "NotAllowedByListeners")
    assert p["conditions"][0]["message"] == "kind gateway.networking.k8s.io/v1alpha2/TCPRoute is not allowed"


def test_namespace_selector_uses_namespace_labels():
    objs = base()
    gw = next(o for o in objs if o["kind"] == "Gateway")
    gw["spec"]["listeners"][0]["allowedRoutes"] = {
        "namespaces": {"from": "Selector", "selector": {"matchLabels": {"team": "web"}}}}
    ns = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n, "labels": {"team": t}}}
          for n, t in (("shop", "web"), ("default", "data"), ("blog", "web"))]
    result = reconcile(objs + ns + [http_route("r"), http_route("s", ns="shop")])
    assert result.gateways[0]["spec"]["servers"][0]["hosts"] == ["blog/*", "shop/*"]
    assert conditions(only_parent(result, "r"))["Accepted"] == ("False", "NotAllowedByListeners")
    assert conditions(only_parent(result, "s", "shop"))["Accepted"] == ("True", "Accepted")


def test_backend_not_found_keeps_the_destination_and_reports_resolved_refs():
    route = http_route("r", rules=[{"backendRefs": [{"name": "missing", "port": 80}]}])
    result = reconcile(base() + [route])
    p = only_parent(result, "r")
    assert conditions(p) == {"Accepted": ("True", "Accepted"), "ResolvedRefs": ("False", "BackendNotFound")}
    assert p["conditions"][1]["message"] == "backend(missing.default.svc.cluster.local) not found"
    dest = vs_named(result, "r-0-istio-autogenerated-k8s-gateway")["spec"]["http"][0]["route"][0]["destination"]
    assert dest == {"host": "missing.default.svc.cluster.local", "port": {"number": 80}}


def test_hard_route_errors_drop_the_rules():
    route = http_route("r", rules=[{"backendRefs": [{"name": "httpbin"}]}])  # no port
    result = reconcile(base() + [route])
    p = only_parent(result, "r")
    assert conditions(p)["ResolvedRefs"] == ("False", "InvalidDestination")
    assert result.virtual_services == []  # nothing to route: no VirtualService at all


def test_unsupported_filter_is_reported():
    route = http_route("r", rules=[{"filters": [{"type": "ExtensionRef"}],
                                    "backendRefs": [{"name": "httpbin", "port": 8000}]}])
    p = only_parent(reconcile(base() + [route]), "r")
    assert conditions(p)["ResolvedRefs"] == ("False", "InvalidFilter")


def test_other_controllers_route_status_is_kept():
    route = http_route("r")
    theirs = {"parentRef": {"name": "other"}, "controllerName": "example.com/gateway",
              "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted", "message": "ok"}]}
    route["status"] = {"parents": [theirs]}
    parents = reconcile(base() + [route]).status_of("HTTPRoute", "r", "default")["parents"]
    assert theirs in parents and len(parents) == 2


def test_unchanged_condition_keeps_its_time_and_changed_flag():
    first = reconcile(base() + [http_route("r")], now="2024-01-01T00:00:00Z")
    route = http_route("r")
    route["status"] = copy.deepcopy(first.status_of("HTTPRoute", "r", "default"))
    again = reconcile(base() + [route], now="2024-02-02T00:00:00Z")
    st = next(s for s in again.statuses if s.kind == "HTTPRoute")
    assert not st.changed
    assert {c["lastTransitionTime"] for c in st.status["parents"][0]["conditions"]} == {"2024-01-01T00:00:00Z"}
    assert next(s for s in first.statuses if s.kind == "HTTPRoute").changed


def test_no_time_in_status_unless_given():
    result = reconcile(base() + [http_route("r")])
    text = yaml.safe_dump([s.status for s in result.statuses])
    assert "lastTransitionTime" not in text


# --- conversion details --------------------------------------------------------------------------------


def test_route_order_exact_prefix_regex_then_longest():
    rules = [{"matches": [{"path": {"type": t, "value": v}}], "backendRefs": [{"name": "httpbin", "port": 8000}]}
             for t, v in (("RegularExpression", "/r.*"), ("PathPrefix", "/a"), ("PathPrefix", "/abc"),
                          ("Exact", "/x"))]
    rules.insert(0, {"backendRefs": [{"name": "httpbin", "port": 8000}]})  # no match at all: last
    rules.append({"matches": [{"path": {"value": "/"}}], "backendRefs": [{"name": "httpbin", "port": 8000}]})
    vs = vs_named(reconcile(base() + [http_route("r", rules=rules)]), "r-0-istio-autogenerated-k8s-gateway")
    assert [r["match"][0]["uri"] if "match" in r else None for r in vs["spec"]["http"]] == [
        {"exact": "/x"}, {"prefix": "/abc"}, {"prefix": "/a"}, {"prefix": "/"}, {"regex": "/r.*"}, None]


def test_older_route_wins_the_merged_virtual_service():
    old = http_route("zz-old", hostnames=["a.example.com"])
    old["metadata"]["creationTimestamp"] = "2024-01-01T00:00:00Z"
    new = http_route("aa-new", hostnames=["a.example.com"])
    new["metadata"]["creationTimestamp"] = "2024-06-01T00:00:00Z"
    result = reconcile(base() + [new, old])
    [vs] = result.virtual_services
    assert vs["metadata"]["name"] == "zz-old-0-istio-autogenerated-k8s-gateway"
    assert vs["metadata"]["annotations"]["internal.istio.io/parents"] == \
        "HTTPRoute/zz-old.default,HTTPRoute/aa-new.default"
    assert [r["name"] for r in vs["spec"]["http"]] == ["default.zz-old.0", "default.aa-new.0"]


def test_no_gateway_api_objects_no_output():
    svc_only = [o for o in base() if o["kind"] == "Service"]
    result = reconcile(svc_only)
    assert result.objects() == [] and result.statuses == []


def test_domain_suffix_is_used_for_backends_and_gateway_service():
    out = convert(base() + [http_route("r")], domain_suffix="corp.internal")
    vs = next(o for o in out if o["kind"] == "VirtualService")
    assert vs["spec"]["http"][0]["route"][0]["destination"]["host"] == "httpbin.default.svc.corp.internal"
    gw = next(o for o in out if o["kind"] == "Gateway")
    assert gw["metadata"]["annotations"]["internal.istio.io/gateway-service"] == \
        "gateway-istio.istio-system.svc.corp.internal"


def test_input_is_not_modified():
    objs = base() + [http_route("r")]
    before = copy.deepcopy(objs)
    reconcile(objs)
    assert objs == before


# --- bad input ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mutate, message", [
    (lambda r: r["spec"].update(rules="oops"), "document 7 (HTTPRoute default/r): spec.rules: must be a list"),
    (lambda r: r["spec"]["rules"][0]["backendRefs"][0].pop("name"),
     "document 7 (HTTPRoute default/r): spec.rules[0].backendRefs[0].name: required field is missing"),
    (lambda r: r["spec"]["parentRefs"][0].update(port="80"),
     "document 7 (HTTPRoute default/r): spec.parentRefs[0].port: must be an integer, got '80'"),
    (lambda r: r["metadata"].pop("name"), "document 7 (HTTPRoute default/?): metadata.name: required field"),
])
def test_malformed_input_names_document_and_field(mutate, message):
    route = http_route("r")
    mutate(route)
    with pytest.raises(GatewayAPIError) as err:
        reconcile(base() + [route])
    assert message in str(err.value)


def test_malformed_gateway_listener():
    objs = base()
    del next(o for o in objs if o["kind"] == "Gateway")["spec"]["listeners"][0]["port"]
    with pytest.raises(GatewayAPIError, match=r"document 2 \(Gateway istio-system/gateway\): "
                                              r"spec\.listeners\[0\]\.port: required field is missing"):
        convert(objs)


# --- the CLI and the example -------------------------------------------------------------------------------


def test_example_converts_through_the_cli(capsys):
    example = Path(__file__).parent.parent / "examples" / "gateway-api.yaml"
    assert main(["convert", "gateway-api", "-f", str(example)]) == 0
    docs = [d for d in yaml.safe_load_all(capsys.readouterr().out) if d]
    kinds = [d["kind"] for d in docs]
    assert kinds == sorted(kinds, key=lambda k: k != "Gateway") and "VirtualService" in kinds
    objects = [d for d in yaml.safe_load_all(example.read_text()) if d]
    assert docs == convert(objects)


def test_cli_reports_malformed_document(tmp_path, capsys):
    bad = http_route("r")
    bad["spec"]["hostnames"] = "not-a-list"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    assert main(["convert", "gateway-api", "-f", str(path)]) == 2
    captured = capsys.readouterr()
    assert "document 1 (HTTPRoute default/r): spec.hostnames: must be a list" in captured.err
    assert captured.out == ""


# --- more Gateway and route shapes ---------------------------------------------------------------------------


def gateway(name: str, listeners: list[dict], ns: str = "istio-system", **spec) -> dict:
    return {"apiVersion": HTTPROUTE, "kind": "Gateway", "metadata": {"name": name, "namespace": ns},
            "spec": {"gatewayClassName": "istio", "listeners": listeners, **spec}}


def l4_route(kind: str, name: str, parent: dict, backends: list[dict], hostnames=None) -> dict:
    spec = {"parentRefs": [parent], "rules": [{"backendRefs": backends}]}
    if hostnames:
        spec["hostnames"] = hostnames
    return {"apiVersion": "gateway.networking.k8s.io/v1alpha2", "kind": kind,
            "metadata": {"name": name, "namespace": "default"}, "spec": spec}


def test_route_bound_to_two_listeners_reports_one_parent():
    gw = gateway("two", [{"name": "a", "port": 80, "protocol": "HTTP"}, {"name": "b", "port": 81, "protocol": "HTTP"}],
                 ns="default")
    result = reconcile(base() + [gw, http_route("r", parent={"name": "two"})])
    p = only_parent(result, "r")
    assert p["conditions"][0]["message"] == "Route was valid, bound to 2 parents"
    assert sorted(v["spec"]["gateways"][0] for v in result.virtual_services) == [
        "default/two-istio-autogenerated-k8s-gateway-a", "default/two-istio-autogenerated-k8s-gateway-b"]
    assert sorted(v["metadata"]["name"] for v in result.virtual_services) == [
        "r-0-istio-autogenerated-k8s-gateway", "r-1-istio-autogenerated-k8s-gateway"]


def test_tls_terminate_uses_the_secret_and_needs_a_grant_across_namespaces():
    https = {"name": "https", "port": 443, "protocol": "HTTPS", "hostname": "shop.example.com",
             "tls": {"certificateRefs": [{"name": "shop-cert"}]}}
    foreign = {"name": "foreign", "port": 8443, "protocol": "HTTPS",
               "tls": {"certificateRefs": [{"name": "cert", "namespace": "certs"}]}}
    result = reconcile(base() + [gateway("web", [https, foreign])])
    [server] = [g["spec"]["servers"][0] for g in result.gateways if g["metadata"]["name"].startswith("web-")]
    assert server["tls"] == {"mode": "SIMPLE", "credentialName": "kubernetes-gateway://istio-system/shop-cert"}
    listeners = result.status_of("Gateway", "web", "istio-system")["listeners"]
    resolved = {li["name"]: next(c for c in li["conditions"] if c["type"] == "ResolvedRefs") for li in listeners}
    assert resolved["https"]["status"] == "True"
    assert (resolved["foreign"]["status"], resolved["foreign"]["reason"]) == ("False", "RefNotPermitted")

    grant = {"apiVersion": HTTPROUTE, "kind": "ReferenceGrant", "metadata": {"name": "g", "namespace": "certs"},
             "spec": {"from": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "namespace": "istio-system"}],
                      "to": [{"group": "", "kind": "Secret"}]}}
    result = reconcile(base() + [gateway("web", [https, foreign]), grant])
    creds = sorted(g["spec"]["servers"][0]["tls"]["credentialName"] for g in result.gateways
                   if g["metadata"]["name"].startswith("web-"))
    assert creds == ["kubernetes-gateway://certs/cert", "kubernetes-gateway://istio-system/shop-cert"]


def test_invalid_route_kinds_on_a_listener():
    listener = {"name": "l", "port": 80, "protocol": "HTTP", "allowedRoutes": {"kinds": [{"kind": "UDPRoute"}]}}
    [li] = reconcile(base() + [gateway("k", [listener])]).status_of("Gateway", "k", "istio-system")["listeners"]
    assert li["supportedKinds"] == []
    resolved = next(c for c in li["conditions"] if c["type"] == "ResolvedRefs")
    assert (resolved["status"], resolved["reason"]) == ("False", "InvalidRouteKinds")


def test_ip_addresses_are_unsupported_for_unmanaged_gateways():
    gw = gateway("ips", [{"name": "l", "port": 80, "protocol": "HTTP"}],
                 addresses=[{"type": "IPAddress", "value": "10.0.0.1"}, {"type": "IPAddress", "value": "10.0.0.2"}])
    result = reconcile(base() + [gw])
    assert not [g for g in result.gateways if g["metadata"]["name"].startswith("ips-")]
    conds = {c["type"]: c for c in result.status_of("Gateway", "ips", "istio-system")["conditions"]}
    assert (conds["Accepted"]["status"], conds["Accepted"]["reason"]) == ("False", "UnsupportedAddress")
    assert conds["Accepted"]["message"] == "only Hostname is supported, ignoring [10.0.0.1 10.0.0.2]"


def test_tcp_route_with_zero_weight_goes_nowhere():
    gw = gateway("t", [{"name": "tcp", "port": 9000, "protocol": "TCP"}], ns="default")
    route = l4_route("TCPRoute", "r", {"name": "t"}, [{"name": "httpbin", "port": 8000, "weight": 0}])
    [vs] = reconcile(base() + [gw, route]).virtual_services
    assert vs["spec"]["tcp"] == [{"route": [{"destination": {
        "host": "internal.cluster.local", "subset": "zero-weight", "port": {"number": 65535}}}]}]


def test_mesh_tls_route_without_hostnames_becomes_tcp():
    parent = {"group": "", "kind": "Service", "name": "httpbin", "port": 8000}
    route = l4_route("TLSRoute", "r", parent, [{"name": "httpbin-v2", "port": 8000}])
    [vs] = reconcile(base() + [route]).virtual_services
    assert vs["metadata"]["name"] == "r-tls-0-istio-autogenerated-k8s-gateway"
    assert vs["spec"]["gateways"] == ["mesh"] and vs["spec"]["hosts"] == ["httpbin.default.svc.cluster.local"]
    assert "tls" not in vs["spec"]
    assert vs["spec"]["tcp"] == [{"match": [{"port": 8000}], "route": [
        {"destination": {"host": "httpbin-v2.default.svc.cluster.local", "port": {"number": 8000}}}]}]


def test_mesh_tls_route_with_hostnames_matches_sni_and_port():
    parent = {"group": "", "kind": "Service", "name": "httpbin", "port": 8000}
    route = l4_route("TLSRoute", "r", parent, [{"name": "httpbin", "port": 8000}], hostnames=["a.example.com"])
    [vs] = reconcile(base() + [route]).virtual_services
    assert vs["spec"]["tls"][0]["match"] == [{"sniHosts": ["a.example.com"], "port": 8000}]


def test_invalid_namespace_selector_selects_nothing():
    objs = base()
    gw = next(o for o in objs if o["kind"] == "Gateway")
    gw["spec"]["listeners"][0]["allowedRoutes"] = {"namespaces": {"from": "Selector", "selector": {
        "matchExpressions": [{"key": "team", "operator": "Near", "values": ["x"]}]}}}
    result = reconcile(objs + [http_route("r")])
    assert result.gateways[0]["spec"]["servers"][0]["hosts"] == ["~/*"]
    assert conditions(only_parent(result, "r"))["Accepted"] == ("False", "NotAllowedByListeners")


def test_unquoted_yaml_timestamps_are_accepted_and_printed_as_rfc3339():
    docs = yaml.safe_load_all("""
apiVersion: gateway.networking.k8s.io/v1beta1
kind: HTTPRoute
metadata: {name: later, namespace: default, creationTimestamp: 2024-05-01T00:00:00Z}
spec:
  hostnames: [h.example.com]
  parentRefs: [{name: gateway, namespace: istio-system}]
  rules: [{backendRefs: [{name: httpbin, port: 8000}]}]
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: HTTPRoute
metadata: {name: sooner, namespace: default, creationTimestamp: "2024-01-01T00:00:00Z"}
spec:
  hostnames: [h.example.com]
  parentRefs: [{name: gateway, namespace: istio-system}]
  rules: [{backendRefs: [{name: httpbin, port: 8000}]}]
""")
    [vs] = reconcile(base() + list(docs)).virtual_services
    assert vs["metadata"]["name"] == "sooner-0-istio-autogenerated-k8s-gateway"
    assert vs["metadata"]["creationTimestamp"] == "2024-01-01T00:00:00Z"
