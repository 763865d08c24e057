"""mesh.teach.xds_view (notebook 08): one proxy's generated config from the generators of stage 8, and the
push-pipeline diagram of notebook 16."""

from __future__ import annotations

import pytest

from mesh.bootstrap import Server, ServerArgs
from mesh.demo.pods import proxy_for_pod
from mesh.networking.push_context import PushContext
from mesh.teach import xds_view
from mesh.tools.diagrams import DIAGRAMS
from mesh.xds.types import CLUSTER, ENDPOINT, LISTENER, PUSH_ORDER, ROUTE

PRODUCTPAGE = "productpage-v1-74bf455775-fvvbv"


@pytest.fixture
def stage8():
    server = Server(ServerArgs(trace="canary")).run_until("init_generators")
    yield server
    server.close()


def _config_at(server, t: float):
    server.clock.advance_to(t)
    env = server.environment
    push = PushContext.build(env.service_discovery, env.config_store, domain=env.domain_suffix)
    pod = server.kube_client.get("Pod", PRODUCTPAGE, "default")
    return xds_view.initial_config(proxy_for_pod(pod, env.domain_suffix), push, server.xds_generators)


def test_initial_config_subscribes_like_envoy(stage8):
    config = _config_at(stage8, 9)
    assert list(config) == list(PUSH_ORDER)
    eds = [c.name for c in config[CLUSTER] if c.body.get("type") == "EDS"]
    assert [a.name for a in config[ENDPOINT]] == eds
    assert [r.name for r in config[ROUTE]] == ["http_proxy"]
    assert any(li.body["address"]["socketAddress"]["address"] == "10.244.0.8" for li in config[LISTENER])
    assert "inbound|9080||" in {c.name for c in config[CLUSTER]}  # productpage's own port


def test_tables_show_the_generated_resources(stage8):
    config = _config_at(stage8, 20.5)
    clusters = xds_view.clusters_table(config[CLUSTER]).text
    assert "v3" in clusters and "reviews" in clusters
    routes = xds_view.routes_table(config[ROUTE], hosts=("reviews.",)).text.splitlines()
    assert len(routes) == 3 and routes[2].endswith("v1 90%, v3 10%")
    endpoints = xds_view.endpoints_table(config[ENDPOINT]).text
    assert "10.244.0.5:9080" in endpoints
    assert "routes from RDS: http_proxy" in xds_view.listeners_table(config[LISTENER]).text


def test_route_timeline_follows_the_canary(stage8):
    stage8.clock.advance_to(6)  # the pods arrive at t=5
    pod = stage8.kube_client.get("Pod", PRODUCTPAGE, "default")
    rows = xds_view.route_timeline(stage8, pod, "reviews.", ("reviews", "default"), [9, 20, 40]).text.splitlines()[2:]
    assert rows[0].split()[-1] == "reviews.default"
    assert rows[1].endswith("v1 90%, v3 10%") and "v1=90 v3=10" in rows[1]
    assert rows[2].split()[-1] == "v3"


def test_generator_tables_name_mesh_and_istiod_generators(stage8):
    ours = xds_view.generator_table(stage8.xds_generators).text
    assert [line.split()[0] for line in ours.splitlines()[2:]] == ["CDS", "EDS", "LDS", "RDS"]
    istiod = xds_view.istiod_generators_table(stage8.xds_generators).text.splitlines()[2:]
    assert sum(1 for line in istiod if "  yes  " in line) == 4
    assert any("SecretGen" in line and "  -  " in line for line in istiod)


def test_push_pipeline_diagram_reads_the_code():
    source = DIAGRAMS["push-pipeline"]().source
    for name in ("CdsGenerator", "EdsGenerator", "LdsGenerator", "RdsGenerator", "quiet 100 ms", "at most 10 s",
                 "XdsCache"):
        assert name in source
