"""mesh/config/protocol.py: Istio's protocol.Parse and its predicates, the one copy all callers use."""

import pytest

from mesh.config import protocol
from mesh.config.protocol import Instance
from mesh.model.service import ServiceProtocol
from mesh.serviceregistry.kube.conversion import convert_protocol


@pytest.mark.parametrize("name,want", [
    ("tcp", "TCP"), ("HTTP", "HTTP"), ("Http2", "HTTP2"), ("grpc-web", "GRPC-Web"), ("GRPC-WEB", "GRPC-Web"),
    ("http_proxy", "HTTP_PROXY"), ("https", "HTTPS"), ("tls", "TLS"), ("udp", "UDP"), ("mongo", "Mongo"),
    ("REDIS", "Redis"), ("mysql", "MySQL"), ("", "UnsupportedProtocol"), ("hbone", "UnsupportedProtocol"),
    ("http-api", "UnsupportedProtocol"),
])
def test_parse_ignores_case_and_names_unknowns_unsupported(name, want):
    assert protocol.parse(name) == want


def test_predicates_match_go():
    assert {p for p in Instance if p.is_http()} == {"HTTP", "HTTP2", "HTTP_PROXY", "GRPC", "GRPC-Web"}
    assert {p for p in Instance if p.is_tcp()} == {"TCP", "HTTPS", "TLS", "Mongo", "Redis", "MySQL"}
    assert {p for p in Instance if p.is_tls()} == {"HTTPS", "TLS"}
    assert {p for p in Instance if p.is_http2()} == {"HTTP2", "GRPC", "GRPC-Web"}
    assert Instance.UNSUPPORTED.is_http_or_sniffed() and not Instance.TCP.is_http_or_sniffed()
    assert Instance.HTTPS.after_tls_termination() is Instance.HTTP
    assert Instance.TLS.after_tls_termination() is Instance.TCP
    assert Instance.GRPC.after_tls_termination() is Instance.GRPC


def test_model_and_kube_conversion_share_the_one_instance():
    assert ServiceProtocol is Instance
    assert convert_protocol(9080, "http-api") is Instance.HTTP
    assert convert_protocol(3306, "db") is Instance.TCP


def test_host_subset_of_is_one_direction_and_matches_both():
    from mesh.config import host
    assert host.subset_of("foo.example.com", "*.example.com") and host.subset_of("*.example.com", "*")
    assert not host.subset_of("*.example.com", "foo.example.com")
    assert not host.subset_of("*.com", "*.example.com") and host.subset_of("*.example.com", "*.com")
    assert host.matches("*.com", "*.example.com") and host.matches("*.example.com", "*.com")
