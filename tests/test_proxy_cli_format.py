"""The pure parts of proxy-status, proxy-config and the demo: tables, istioctl's summaries, subnets."""

from __future__ import annotations

import argparse
import re

import pytest

from mesh.cli import UsageError
from mesh.cli._debug_api import server_url, table
from mesh.cli.proxy_config import (
    cluster_rows,
    describe_domains,
    describe_management,
    describe_match,
    endpoint_rows,
    listener_rows,
    parse_cluster_name,
    section,
    wanted,
)
from mesh.cli.proxy_status import rows as status_rows
from mesh.demo.pods import is_mesh_pod
from mesh.demo.runner import first_workload_wave
from mesh.kube.addresses import check_subnet, loopback_address, to_loopback
from mesh.kube.trace import load_trace

REVIEWS = "reviews.default.svc.cluster.local"


def flags(**kw) -> argparse.Namespace:
    base = {"fqdn": None, "port": None, "name": None, "cluster": None, "server": None, "debug_port": None}
    return argparse.Namespace(**{**base, **kw})


def test_table_pads_each_column_to_its_widest_cell_plus_five():
    out = table(["A", "LONG"], [["xyz", "1"], ["a", "22"]])
    assert out.splitlines() == ["A       LONG", "xyz     1", "a       22"]


def test_status_rows_sort_and_fill_ecds():
    found = status_rows([{"NAME": "b.default", "CLUSTER": "Kubernetes", "CDS": "STALE"},
                         {"NAME": "a.default", "CLUSTER": "Kubernetes", "CDS": "SYNCED"}])
    assert [r["NAME"] for r in found] == ["a.default", "b.default"]
    assert found[1]["CDS"] == "STALE" and found[0]["ECDS"] == "NOT SENT"


def test_cluster_names_split_like_parse_subset_key():
    assert parse_cluster_name(f"outbound|9080|v1|{REVIEWS}") == ("outbound", "9080", "v1", REVIEWS)
    assert parse_cluster_name(f"outbound|9080||{REVIEWS}") == ("outbound", "9080", "-", REVIEWS)
    assert parse_cluster_name("BlackHoleCluster") == ("-", "-", "-", "BlackHoleCluster")


def test_cluster_rows_name_the_destination_rule_and_sort_by_service():
    dr = {"filter_metadata": {"istio": {"config": "/apis/networking.istio.io/v1alpha3/namespaces/default/"
                                                  "destination-rule/reviews"}}}
    clusters = [{"name": f"outbound|9080|v2|{REVIEWS}", "type": "EDS", "metadata": dr},
                {"name": "BlackHoleCluster"},
                {"name": f"outbound|9080|v1|{REVIEWS}", "type": "EDS", "metadata": dr}]
    header, rows = cluster_rows(clusters, flags())
    assert header[-1] == "DESTINATION RULE"
    assert rows == [["BlackHoleCluster", "-", "-", "-", "STATIC", ""],
                    [REVIEWS, "9080", "v1", "outbound", "EDS", "reviews.default"],
                    [REVIEWS, "9080", "v2", "outbound", "EDS", "reviews.default"]]
    assert describe_management({"filter_metadata": {"istio": {"config": "/elsewhere"}}}) == "<unknown>"
    assert describe_management(None) == ""


def test_filters_apply_to_every_kind():
    assert wanted("clusters", {"name": f"outbound|9080||{REVIEWS}"}, flags(fqdn=REVIEWS, port=9080))
    assert not wanted("clusters", {"name": f"outbound|9080||{REVIEWS}"}, flags(port=80))
    assert not wanted("routes", {"name": "http_proxy"}, flags(name="80"))
    assert wanted("endpoints", {"cluster_name": "c"}, flags(cluster="c"))


def test_route_domains_and_matches_are_shortened_as_istioctl_does():
    domains = [f"{REVIEWS}:9080", "reviews:9080", "reviews.default.svc:9080", "reviews.default:9080",
               "127.96.0.5:9080"]
    assert describe_domains(domains) == "reviews:9080, reviews.default:9080 + 1 more..."
    assert describe_domains(["reviews", REVIEWS, "reviews.default"]) == "reviews, reviews.default"
    assert describe_domains(["*"]) == "*"
    assert describe_match({"prefix": "/"}) == "/*"
    assert describe_match({"safe_regex": {"regex": "^/a$"}}) == "regex ^/a$"


def test_listener_and_endpoint_rows():
    listener = {"address": {"socket_address": {"address": "127.10.0.8", "port_value": 15080}}, "filter_chains": [
        {"filters": [{"name": "envoy.filters.network.http_connection_manager",
                      "typed_config": {"rds": {"route_config_name": "http_proxy"}}}]},
        {"filter_chain_match": {"destination_port": 3306},
         "filters": [{"name": "envoy.filters.network.tcp_proxy", "typed_config": {"cluster": "db"}}]}],
        "default_filter_chain": {"filter_chain_match": {}, "name": "PassthroughFilterChain", "filters": [
            {"name": "envoy.filters.network.tcp_proxy", "typed_config": {"cluster": "PassthroughCluster"}}]}}
    _, rows = listener_rows([listener], flags())
    assert rows == [["127.10.0.8", "15080", "ALL", "Route: http_proxy"],
                    ["127.10.0.8", "15080", "port=3306", "Cluster: db"],
                    ["127.10.0.8", "15080", "ALL", "Cluster: PassthroughCluster"]]
    cla = {"cluster_name": "c", "endpoints": [{"locality": {"region": "r", "zone": "z"}, "lb_endpoints": [
        {"endpoint": {"address": {"socket_address": {"address": "127.10.0.5", "port_value": 9080}}}}]}]}
    assert endpoint_rows([cla], flags())[1] == [["127.10.0.5:9080", "UNKNOWN", "r/z", "c"]]


def test_section_reads_the_config_dump_shape():
    dump = {"configs": [{"@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump",
                         "static_listeners": [{"listener": {"name": "s"}}],
                         "dynamic_listeners": [{"name": "x", "active_state": {"listener": {"name": "x"}}}]}]}
    assert section(dump, "listeners") == [{"name": "s"}, {"name": "x"}]
    assert section(dump, "routes") == []


def test_server_flags_stay_on_loopback():
    assert server_url(flags()) == "http://127.0.0.1:8080"
    assert server_url(flags(debug_port=9)) == "http://127.0.0.1:9"
    assert server_url(flags(server="http://127.0.0.2:1/")) == "http://127.0.0.2:1"
    for bad in ("http://192.168.1.1:8080", "ftp://127.0.0.1", "127.0.0.1:8080"):
        with pytest.raises(UsageError):
            server_url(flags(server=bad))


def test_to_loopback_replaces_every_cluster_address_and_nothing_else():
    trace = load_trace("gateways")
    text = repr([e.object for e in trace.events])
    address = r"'{}\.\d+'"  # a whole address value (the node's podCIDR 10.244.0.0/16 is not one)
    pods = len(re.findall(address.format(r"10\.244\.0"), text))
    services = len(re.findall(address.format(r"10\.96\.0"), text))
    assert pods > 6 and services > 6 and "'198.18.0.10'" in text and "'10.244.0.0/16'" in text
    for subnet, pod_prefix in ((None, "127.10.0"), ("127.10.42", "127.10.42")):
        moved = to_loopback(trace, subnet)
        out = repr([e.object for e in moved.events])
        assert not re.search(r"'(10\.(244|96)|198\.18)\.\d+\.\d+'", out)  # no cluster address left
        assert len(re.findall(address.format(pod_prefix.replace(".", r"\.")), out)) == pods
        assert len(re.findall(address.format(r"127\.96\.0"), out)) == services
        assert "'127.30.0.10'" in out and "'10.244.0.0/16'" in out and moved.header["addresses"] == "loopback"
        assert [e.t for e in moved.events] == [e.t for e in trace.events]
    assert loopback_address("10.244.3.7") == "127.10.3.7" and loopback_address("10.111.2.3") == "127.111.2.3"
    assert loopback_address("198.19.0.1") == "127.31.0.1" and loopback_address("8.8.8.8") is None
    with pytest.raises(ValueError, match="10.244.0.x only"):
        loopback_address("10.244.1.2", "127.10.42")
    for bad in ("10.0.0", "127.10", "127.10.300"):
        with pytest.raises(ValueError):
            check_subnet(bad)


def test_the_first_wave_is_bookinfos_six_pods():
    wave = first_workload_wave(load_trace("bookinfo"))
    assert len(wave) == 6 and all(k.endswith(".default") for k in wave)
    assert {k.split("-")[0] for k in wave} == {"productpage", "details", "reviews", "ratings"}
    istiod = {"metadata": {"namespace": "istio-system", "labels": {"app": "istiod"}}, "status": {"podIP": "1"}}
    assert not is_mesh_pod(istiod)
