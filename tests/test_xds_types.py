"""mesh/xds/types.py: the one xDS type table the generators, ADS and the debug views read."""

from mesh.model.push_request import ConfigKey, PushRequest, TriggerReason
from mesh.xds.ads import default_generators
from mesh.xds.generator import needs_push
from mesh.xds.types import CLUSTER, ENDPOINT, LISTENER, PUSH_ORDER, ROUTE, TYPES, short_name, skipped_configs


def test_push_order_and_names_follow_the_table():
    assert PUSH_ORDER == (CLUSTER, ENDPOINT, LISTENER, ROUTE)
    assert [short_name(t) for t in PUSH_ORDER] == ["CDS", "EDS", "LDS", "RDS"]
    assert short_name("type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret") == "Secret"
    assert [t.url for t in TYPES if t.named] == [ENDPOINT, ROUTE]


def test_default_generators_are_the_tables_classes():
    generators = default_generators()
    assert list(generators) == list(PUSH_ORDER)
    assert [type(g).__name__ for g in generators.values()] == [t.generator.split(":")[1] for t in TYPES]


def test_skip_lists_by_type_and_proxy_type():
    vs_only = PushRequest.of(TriggerReason.CONFIG, full=True,
                             configs={ConfigKey("VirtualService", "reviews", "default")})
    gw_only = PushRequest.of(TriggerReason.CONFIG, full=True,
                             configs={ConfigKey("Gateway", "gw", "default")})
    assert not needs_push(vs_only, ENDPOINT) and needs_push(vs_only, ROUTE) and needs_push(vs_only, CLUSTER)
    assert not needs_push(gw_only, LISTENER) and needs_push(gw_only, LISTENER, "router")
    assert "Gateway" in skipped_configs(LISTENER, "some-other-type")  # unknown proxy types read sidecar's list
