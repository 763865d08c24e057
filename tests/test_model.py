import pytest

from mesh.model.proxy import NodeIdError, parse_node_id
from mesh.model.service import Port, Service, ServiceProtocol


def test_parse_istio_node_id():
    proxy = parse_node_id("sidecar~127.10.0.5~reviews-v1-abc.default~default.svc.cluster.local")
    assert proxy.type == "sidecar" and proxy.ip_addresses == ["127.10.0.5"]
    assert proxy.pod_name == "reviews-v1-abc" and proxy.namespace == "default"
    assert proxy.node_id == "sidecar~127.10.0.5~reviews-v1-abc.default~default.svc.cluster.local"


def test_metadata_ips_win_over_the_node_id():
    proxy = parse_node_id("router~0.0.0.0~gw.istio-system~istio-system.svc.cluster.local",
                          {"INSTANCE_IPS": "127.10.0.9,bogus"})
    assert proxy.ip_addresses == ["127.10.0.9"]


@pytest.mark.parametrize("node_id,message", [
    ("sidecar~127.0.0.1~a.b", "missing parts"),
    ("waypoint~127.0.0.1~a.b~b.svc.cluster.local", "invalid node type"),
    ("sidecar~not-an-ip~a.b~b.svc.cluster.local", "no valid IP"),
])
def test_bad_node_ids(node_id, message):
    with pytest.raises(NodeIdError, match=message):
        parse_node_id(node_id)


def test_service_key_and_port_lookup():
    svc = Service(hostname="reviews.default.svc.cluster.local", namespace="default", name="reviews",
                  ports=[Port("http", 9080, ServiceProtocol.HTTP)])
    assert svc.key == "default/reviews.default.svc.cluster.local"
    assert svc.port_by_number(9080).name == "http" and svc.port_by_name("grpc") is None
    assert ServiceProtocol.HTTP.is_http() and not ServiceProtocol.TCP.is_http()
