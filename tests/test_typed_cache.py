"""The typed XdsCache: istiod's keys, DependentConfigs, Clear and stale writes."""

from __future__ import annotations

from xds_fakes import FakeConfigStore, FakeRegistry, endpoint

from mesh.model.proxy import parse_node_id
from mesh.model.push_request import ConfigKey
from mesh.networking.push_context import PushContext
from mesh.xds.cds import CdsGenerator
from mesh.xds.eds import EdsGenerator
from mesh.xds.generator import ProxyState, WatchedResource, scoped
from mesh.xds.typed_cache import TypedXdsCache
from mesh.xds.types import CLUSTER, ENDPOINT

REVIEWS, RATINGS = "reviews.default.svc.cluster.local", "ratings.default.svc.cluster.local"


def _world():
    reg, store = FakeRegistry(), FakeConfigStore()
    reg.add_service("reviews")
    reg.add_service("ratings")
    reg.set_endpoints(REVIEWS, 9080, [endpoint("127.10.0.2", version="v1")])
    store.apply("DestinationRule", "reviews", "default", {"host": "reviews", "subsets": [
        {"name": "v1", "labels": {"version": "v1"}}]})
    return reg, store


def _generate(push, cache, token):
    push.xds_cache, push.cache_token = cache, token
    s = ProxyState(parse_node_id("sidecar~127.10.0.9~app-1.default~default.svc.cluster.local", {"NAMESPACE": "default"}))
    cds = CdsGenerator().generate(s, scoped(push, s), WatchedResource(CLUSTER), None)
    names = [r.name for r in cds if r.name.startswith("outbound|")]
    EdsGenerator().generate(s, scoped(push, s), WatchedResource(ENDPOINT, names=names), None)
    return cds


def test_entries_carry_their_dependent_configs_and_clear_drops_exactly_those():
    world = _world()
    cache = TypedXdsCache()
    _generate(PushContext.build(*world, version="1"), cache, 1.0)
    dr, reviews = ConfigKey("DestinationRule", "reviews", "default"), ConfigKey("ServiceEntry", REVIEWS, "default")
    ratings = ConfigKey("ServiceEntry", RATINGS, "default")
    assert {k[1] for k in cache.keys("CDS")} == {REVIEWS, RATINGS}
    assert {k[1] for k in cache.keys("EDS")} == {f"outbound|9080||{REVIEWS}", f"outbound|9080|v1|{REVIEWS}",
                                                 f"outbound|9080||{RATINGS}"}
    for key in cache.keys():
        host = key[1] if key[0] == "CDS" else key[1].rsplit("|", 1)[1]
        expected = {reviews, dr} if host == REVIEWS else {ratings}
        assert cache.dependents(key) == expected, key
    cache.clear({dr}, 2.0)
    assert {k[0] + " " + k[1] for k in cache.cleared} == {
        f"CDS {REVIEWS}", f"EDS outbound|9080||{REVIEWS}", f"EDS outbound|9080|v1|{REVIEWS}"}
    assert {k[1] for k in cache.keys()} == {RATINGS, f"outbound|9080||{RATINGS}"}  # ratings untouched
    # an unrelated change drops nothing
    cache.clear({ConfigKey("VirtualService", "x", "default")}, 3.0)
    assert cache.cleared == [] and len(cache) == 2


def test_a_second_push_reads_the_cache_and_a_changed_rule_is_rebuilt():
    world = _world()
    cache = TypedXdsCache()
    first = _generate(PushContext.build(*world, version="1"), cache, 1.0)
    second = _generate(PushContext.build(*world, version="2"), cache, 2.0)
    by_name = {r.name: r for r in first}
    assert all(r is by_name[r.name] for r in second if r.name.startswith("outbound|"))  # the very same objects
    assert cache.hits["CDS"] == 2
    _, store = world
    store.apply("DestinationRule", "reviews", "default", {"host": "reviews", "subsets": [
        {"name": "v2", "labels": {"version": "v2"}}]})
    cache.clear({ConfigKey("DestinationRule", "reviews", "default")}, 3.0)
    third = _generate(PushContext.build(*world, version="3"), cache, 3.0)
    assert f"outbound|9080|v2|{REVIEWS}" in {r.name for r in third}
    assert f"outbound|9080|v1|{REVIEWS}" not in {r.name for r in third}


def test_stale_writes_are_dropped():
    cache = TypedXdsCache()
    key = ("CDS", "a", "ns", (), False, None)
    dep = ConfigKey("ServiceEntry", "a", "ns")
    assert cache.add(key, [dep], 5.0, "new")
    assert not cache.add(key, [dep], 4.0, "older")  # older than the entry it would replace
    assert cache.get(key) == "new"
    cache.clear({dep}, 6.0)
    assert not cache.add(key, [dep], 5.5, "built before the clear")
    assert cache.get(key) is None and cache.add(key, [dep], 6.0, "after")
    cache.clear_all(7.0)
    assert len(cache) == 0 and cache.cleared == [key]


def test_cache_metrics():
    from prometheus_client import generate_latest

    from mesh.xds.monitoring import XdsMetrics

    world, cache, metrics = _world(), TypedXdsCache(), XdsMetrics()
    _generate(PushContext.build(*world, version="1"), cache, 1.0)
    _generate(PushContext.build(*world, version="2"), cache, 2.0)
    metrics.on_cache(cache)
    text = generate_latest(metrics.registry).decode()
    assert "xds_cache_size 5.0" in text
    assert 'xds_cache_reads_total{type="hit"} 5.0' in text and 'xds_cache_reads_total{type="miss"} 5.0' in text


def test_a_merged_rule_is_keyed_by_and_depends_on_every_rule_it_came_from():
    """Two DestinationRules for reviews merge into one: the CDS and EDS entries built from it name
    both, so an edit of the *second* rule (which only adds a subset) still drops them."""
    reg, store = _world()
    store.apply("DestinationRule", "reviews-extra", "default", {"host": "reviews", "subsets": [
        {"name": "v2", "labels": {"version": "v2"}}]})
    cache = TypedXdsCache()
    _generate(PushContext.build(reg, store, version="1"), cache, 1.0)
    extra = ConfigKey("DestinationRule", "reviews-extra", "default")
    v2 = f"outbound|9080|v2|{REVIEWS}"
    assert ("EDS", v2) in {k[:2] for k in cache.keys("EDS")}
    reviews_keys = [k for k in cache.keys() if REVIEWS in k[1]]
    assert reviews_keys and all(extra in cache.dependents(k) for k in reviews_keys)
    assert all((("default", "reviews"), ("default", "reviews-extra")) in k for k in reviews_keys)
    cache.clear({extra}, 2.0)
    assert {k[1] for k in cache.cleared} == {REVIEWS, f"outbound|9080||{REVIEWS}", f"outbound|9080|v1|{REVIEWS}", v2}
