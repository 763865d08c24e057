"""Merging DestinationRules as istiod 1.19 does (``setDestinationRules`` / ``mergeDestinationRule``).

The tables of Istio's own tests — ``TestSetDestinationRuleMerging``,
``TestSetDestinationRuleWithWorkloadSelector`` and ``TestSetDestinationRuleWithExportTo`` in
``pilot/pkg/model/push_context_test.go`` — are read from ``ISTIO_SRC`` (never copied here) and
replayed against ``PushContext.destination_rule_for``. The rest checks, on the virtual clock and
through the generators, what a proxy then gets: one cluster per merged subset, the first rule's
traffic policy, a workload-selected rule only where its selector matches.
"""

from __future__ import annotations

import re

import istio_go
import istio_src
import pytest
from xds_fakes import FakeConfigStore, FakeRegistry

from mesh.model.config import Config
from mesh.model.proxy import parse_node_id
from mesh.model.push_request import ConfigKey
from mesh.model.service import Service
from mesh.networking.push_context import PushContext
from mesh.xds.cds import CdsGenerator
from mesh.xds.generator import ProxyState, WatchedResource, scoped
from mesh.xds.proxy_dependencies import compute_proxy_state
from mesh.xds.types import CLUSTER

GO_TEST = "pilot/pkg/model/push_context_test.go"
REVIEWS = "reviews.default.svc.cluster.local"


# -- reading Istio's Go test tables ------------------------------------------------------------

def _go_test(name: str) -> str:
    return istio_go.go_test(GO_TEST, name)


def _go_rules(body: str) -> dict[str, Config]:
    """Every ``x := config.Config{...}`` DestinationRule of a test function, by variable name."""
    consts = dict(re.findall(r'(\w+) := "([^"]*)"', body))
    out = {}
    for m in re.finditer(r"(\w+) := config\.Config\{", body):
        block = istio_go.block(body, m.end() - 1)
        name = re.search(r'Name:\s+"([^"]*)"', block).group(1)
        namespace = re.search(r'Namespace:\s+"([^"]*)"', block).group(1)
        host = re.search(r'Host:\s+(\w+|"[^"]*")', block).group(1)
        spec: dict = {"host": host.strip('"') if host.startswith('"') else consts[host]}
        if (export := re.search(r"ExportTo:\s+\[\]string\{([^}]*)\}", block)) is not None:
            spec["exportTo"] = istio_go.strings(export.group(1))
        if (subsets := re.search(r"Subsets:\s+\[\]\*networking\.Subset\{", block)) is not None:
            spec["subsets"] = [{"name": n} for n in re.findall(r'Name:\s+"([^"]*)"', istio_go.block(block, subsets.end() - 1))]
        if (labels := re.search(r"MatchLabels:\s+map\[string\]string\{([^}]*)\}", block)) is not None:
            pairs = istio_go.strings(labels.group(1))
            spec["workloadSelector"] = {"matchLabels": dict(zip(pairs[::2], pairs[1::2], strict=True))}
        if "TrafficPolicy:" in block:  # which rule's policy it is, so merging can be followed
            spec["trafficPolicy"] = {"connectionPool": {"tcp": {"maxConnections": len(out) + 1}}}
        out[m.group(1)] = Config("DestinationRule", "networking.istio.io", "v1beta1", name, namespace, spec,
                                 creation_timestamp="0001-01-01T00:00:00Z")  # Go's zero time: ties by name
    return out


def _go_push(body: str, default_export: tuple[str, ...] = ("*",)) -> PushContext:
    rules = _go_rules(body)
    call = re.search(r"ps\.setDestinationRules\(\[\]config\.Config\{", body)
    names = re.findall(r"\w+", istio_go.block(body, call.end() - 1))
    store = FakeConfigStore()
    for var in names:
        store._configs[rules[var].key] = rules[var]
    return PushContext.build(FakeRegistry(), store, root_namespace="istio-system",
                             export_defaults={"destination_rule": default_export})


def _cases(body: str) -> list[dict[str, str | list[str] | None]]:
    """The entries of a test's table of cases: ``field: "string"``, ``field: var``, lists, nil."""
    consts = dict(re.findall(r'(\w+) := "([^"]*)"', body))
    table = re.search(r"(?:cases|testCases) := \[\]struct \{", body)
    rows_at = body.index("{", body.index("}", table.end()) + 1)
    out = []
    for row_text in istio_go.rows(istio_go.block(body, rows_at)):
        row: dict = {}
        for key, value in re.findall(r"(\w+):\s+([^\n]+?),?\n", row_text + "\n"):
            value = value.rstrip(",")
            if value.startswith('"'):
                row[key] = value.strip('"')
            elif value.startswith("[]string{"):
                row[key] = istio_go.strings(value) or re.findall(r"(\w+)\.Meta\.Name", value)
            elif value == "nil":
                row[key] = None
            elif value.isdigit():
                row[key] = int(value)
            else:
                row[key] = consts.get(value, value)
        out.append(row)
    return out


def _lookup(push: PushContext, proxy_ns: str, service_ns: str, host: str):
    return push.destination_rule_for(proxy_ns, Service(hostname=host, name=host, namespace=service_ns, ports=[]))


@istio_src.needed
def test_istio_merging_table():
    """``TestSetDestinationRuleMerging``: two rules for one host in one namespace become one, with
    both rules as its sources and all four subsets, in the namespace-local and exported indexes."""
    body = _go_test("TestSetDestinationRuleMerging")
    push = _go_push(body)
    rules = _go_rules(body)
    host = next(iter(rules.values())).spec["host"]
    index = push.destination_rule_index
    for part in (index.namespace_local["test"], index.exported_by_namespace["test"]):
        (merged,) = part.rules[host]
        assert merged.sources == tuple((r.namespace, r.name) for r in rules.values())
        assert [s["name"] for s in merged.rule.spec["subsets"]] == [
            s["name"] for r in rules.values() for s in r.spec["subsets"]]


@istio_src.needed
def test_istio_workload_selector_table():
    """``TestSetDestinationRuleWithWorkloadSelector``: selector rules stay apart (one entry per
    selector, rules with the same selector merged), are not exported; the table's names in order."""
    body = _go_test("TestSetDestinationRuleWithWorkloadSelector")
    push, rules = _go_push(body), _go_rules(body)
    cases = _cases(body)
    assert len(cases) == 3
    for case in cases:
        found = _lookup(push, case["proxyNs"], case["serviceNs"], case["serviceHostname"]) or []
        assert len(found) == case["expectedDrCount"], case
        assert [e.rule.name for e in found] == [rules[v].name for v in case["expectedDrName"]], case


@istio_src.needed
def test_istio_export_to_table():
    """``TestSetDestinationRuleWithExportTo``: which namespace's rule a proxy gets, by exportTo,
    for proxies in ordinary namespaces and in the root namespace."""
    body = _go_test("TestSetDestinationRuleWithExportTo")
    push = _go_push(body)
    cases = _cases(body)
    assert len(cases) >= 15
    for case in cases:
        found = _lookup(push, case["proxyNs"], case["serviceNs"], case["host"])
        got = [s["name"] for s in found[0].rule.spec.get("subsets", [])] if found else None
        assert got == case["wantSubsets"], case


# -- what a proxy gets ------------------------------------------------------------------------

@pytest.fixture
def world():
    reg, store = FakeRegistry(), FakeConfigStore()
    reg.add_service("reviews")
    reg.add_service("ratings")
    return reg, store


def _proxy(pod: str, labels: dict[str, str], ns: str = "default"):
    return parse_node_id(f"sidecar~127.10.0.9~{pod}.{ns}~{ns}.svc.cluster.local",
                         {"LABELS": labels, "NAMESPACE": ns})


def _clusters(push: PushContext, proxy) -> dict[str, dict]:
    state = ProxyState(proxy)
    compute_proxy_state(state, push, None)
    resources = CdsGenerator().generate(state, scoped(push, state), WatchedResource(CLUSTER), None)
    return {r.name: r.body for r in resources if r.name.endswith(REVIEWS)}


def test_two_rules_for_one_host_give_every_subset_a_cluster(world):
    reg, store = world
    store.apply("DestinationRule", "reviews-v1", "default", {
        "host": "reviews", "subsets": [{"name": "v1", "labels": {"version": "v1"}}],
        "trafficPolicy": {"connectionPool": {"tcp": {"maxConnections": 7}}}})
    store.apply("DestinationRule", "reviews-v2", "default", {
        "host": "reviews.default.svc.cluster.local",
        "subsets": [{"name": "v2", "labels": {"version": "v2"}}, {"name": "v1", "labels": {"version": "other"}}],
        "trafficPolicy": {"connectionPool": {"tcp": {"maxConnections": 99}}}})
    push = PushContext.build(reg, store)
    clusters = _clusters(push, _proxy("productpage-v1", {"app": "productpage"}))
    assert set(clusters) == {f"outbound|9080|{s}|{REVIEWS}" for s in ("", "v1", "v2")}
    # the older rule's top-level policy wins; the repeated subset name keeps the older subset
    limits = {n: c["circuitBreakers"]["thresholds"][0]["maxConnections"] for n, c in clusters.items()}
    assert set(limits.values()) == {7}
    assert clusters[f"outbound|9080||{REVIEWS}"]["metadata"]["filterMetadata"]["istio"]["config"].endswith(
        "/destination-rule/reviews-v1")
    scope = push.sidecar_scope_for(_proxy("productpage-v1", {"app": "productpage"}))
    assert scope.describe()["destinationRules"][REVIEWS] == "default/reviews-v1+default/reviews-v2"
    # an edit of either rule concerns this proxy
    assert scope.depends_on_config(ConfigKey("DestinationRule", "reviews-v2", "default"))


def test_a_workload_selected_rule_applies_only_to_its_workloads(world):
    reg, store = world
    store.apply("DestinationRule", "reviews", "default", {"host": "reviews", "subsets": [{"name": "v1"}]})
    store.apply("DestinationRule", "reviews-for-productpage", "default", {
        "host": "reviews", "workloadSelector": {"matchLabels": {"app": "productpage"}},
        "subsets": [{"name": "v3"}]})
    push = PushContext.build(reg, store)
    selected = _clusters(push, _proxy("productpage-v1", {"app": "productpage"}))
    other = _clusters(push, _proxy("details-v1", {"app": "details"}))
    # Go's mergeDestinationRule, followed literally: the selected rule is an entry of its own (only
    # v3), but its subsets are still merged into the older entry without a selector
    assert set(selected) == {f"outbound|9080|{s}|{REVIEWS}" for s in ("", "v3")}
    assert set(other) == {f"outbound|9080|{s}|{REVIEWS}" for s in ("", "v1", "v3")}
    # from another namespace the selected rule is invisible (never exported, never merged there)
    elsewhere = _clusters(push, _proxy("web-v1", {"app": "productpage"}, ns="shop"))
    assert set(elsewhere) == {f"outbound|9080|{s}|{REVIEWS}" for s in ("", "v1")}
    # the other way round (the selected rule older), the newer rule merges into the selected one
    store.delete("DestinationRule", "reviews", "default")
    store.apply("DestinationRule", "reviews", "default", {"host": "reviews", "subsets": [{"name": "v1"}]})
    push = PushContext.build(reg, store)
    assert set(_clusters(push, _proxy("productpage-v1", {"app": "productpage"}))) == {
        f"outbound|9080|{s}|{REVIEWS}" for s in ("", "v1", "v3")}
    assert set(_clusters(push, _proxy("details-v1", {"app": "details"}))) == {
        f"outbound|9080|{s}|{REVIEWS}" for s in ("", "v1")}


def test_merged_export_to_is_the_first_rules_that_had_one(world):
    reg, store = world
    store.apply("DestinationRule", "a", "default", {"host": "reviews", "subsets": [{"name": "v1"}]})
    store.apply("DestinationRule", "b", "default", {"host": "reviews", "exportTo": ["shop"], "subsets": [{"name": "v2"}]})
    push = PushContext.build(reg, store)
    exported = push.destination_rule_index.exported_by_namespace["default"]
    assert exported.export_to[REVIEWS] == frozenset({"shop"})  # a had none, so b's counts
    assert set(_clusters(push, _proxy("web-v1", {"app": "web"}, ns="shop"))) == {
        f"outbound|9080|{s}|{REVIEWS}" for s in ("", "v1", "v2")}
    assert set(_clusters(push, _proxy("x-v1", {"app": "x"}, ns="other"))) == {f"outbound|9080||{REVIEWS}"}
