import re

import istio_src
import pytest
from tracehelpers import configmap, write_trace

from mesh.bootstrap import Server, ServerArgs
from mesh.bootstrap.stages import STAGES
from mesh.kube.client import ReplayClient

ISTIOD_ORDER = [
    "init_kube_client", "init_mesh_configuration", "init_mesh_networks", "init_mesh_handlers",
    "init_networks_manager", "maybe_create_ca", "init_controllers", "init_generators",
    "init_workload_trust_bundle", "init_istiod_certs", "init_secure_discovery_service",
    "init_secure_webhook_server", "init_sidecar_injector", "init_config_validation",
    "init_registry_event_handlers", "init_discovery_service",
]


def test_stages_are_istiods_sixteen_in_order_and_each_method_exists():
    assert Server.stages() == ISTIOD_ORDER
    assert [s.number for s in STAGES] == list(range(1, 17))
    assert sorted(s.call_line for s in STAGES) == [s.call_line for s in STAGES]  # same order as NewServer
    for name in Server.stages():
        assert callable(getattr(Server, name)) and getattr(Server, name).__name__ == name


def test_run_until_stops_at_the_named_stage(mesh_change_trace):
    server = Server(ServerArgs(trace=str(mesh_change_trace)))
    server.run_until("init_mesh_networks")
    assert server.completed == ISTIOD_ORDER[:3]
    assert isinstance(server.kube_client, ReplayClient)
    assert server.environment.network_manager is None
    server.run_until("init_networks_manager")
    assert server.completed == ISTIOD_ORDER[:5]


def test_unknown_stage_name_is_a_clear_error():
    with pytest.raises(KeyError, match="no stage named 'init_everything'"):
        Server(ServerArgs(registries=())).run_until("init_everything")


def test_no_cluster_means_no_kube_client_only_without_the_kubernetes_registry():
    server = Server(ServerArgs(registries=())).run_until("init_kube_client")
    assert server.kube_client is None
    with pytest.raises(ValueError, match="no cluster was given"):
        Server(ServerArgs()).run_until("init_kube_client")


def test_defaults_without_a_cluster_or_file():
    server = Server(ServerArgs(registries=())).run_until("init_networks_manager")
    assert server.environment.mesh_watcher.source == "defaults"
    assert server.trust_domain == "cluster.local"
    assert server.environment.networks() == {"networks": {}}


def test_mesh_config_file_wins_over_the_configmap(tmp_path, mesh_change_trace):
    mesh_file = tmp_path / "mesh"
    mesh_file.write_text("trustDomain: from-file.local\n")
    server = Server(ServerArgs(trace=str(mesh_change_trace), mesh_config_file=str(mesh_file)))
    server.run_until("init_mesh_handlers")
    assert server.trust_domain == "from-file.local"
    server.clock.run()  # ConfigMap edits are ignored when a file is used
    assert server.trust_domain == "from-file.local" and server.xds.requests == []


def test_configmap_edits_change_mesh_push_and_bad_yaml_keeps_last_good(mesh_change_trace):
    server = Server(ServerArgs(trace=str(mesh_change_trace))).run_until("init_networks_manager")
    assert server.environment.mesh()["accessLogFile"] == ""
    server.clock.advance_to(10)
    assert server.environment.mesh()["accessLogFile"] == "/dev/stdout"
    assert [(r.at, r.request.full, dict(r.request.reason)) for r in server.xds.requests] == [
        (10.0, True, {"global": 1})]
    server.clock.advance_to(15)  # the broken edit
    assert server.environment.mesh()["accessLogFile"] == "/dev/stdout"
    assert len(server.xds.requests) == 1
    assert "ConfigMap istio-system/istio key mesh" in server.environment.mesh_watcher.errors[-1]
    server.clock.advance_to(20)
    assert server.trust_domain == "example.org"
    assert [r.at for r in server.xds.requests] == [10.0, 20.0]


def test_deleting_the_configmap_returns_to_defaults(tmp_path):
    trace = write_trace(tmp_path / "t.jsonl", [
        (0, "ADDED", configmap({"mesh": "trustDomain: a.local\n"})),
        (1, "DELETED", configmap({})),
    ])
    server = Server(ServerArgs(trace=str(trace))).run_until("init_mesh_handlers")
    assert server.trust_domain == "a.local"
    server.clock.run()
    assert server.trust_domain == "cluster.local"


def test_revisioned_install_reads_istio_rev_configmap(tmp_path):
    trace = write_trace(tmp_path / "t.jsonl", [
        (0, "ADDED", configmap({"mesh": "trustDomain: default.local\n"})),
        (0, "ADDED", configmap({"mesh": "trustDomain: canary.local\n"}, name="istio-canary")),
    ])
    server = Server(ServerArgs(trace=str(trace), revision="canary")).run_until("init_mesh_configuration")
    assert server.trust_domain == "canary.local"


def test_networks_gateways_and_push_on_change(tmp_path):
    nets1 = "networks:\n  n1:\n    gateways: [{address: 127.0.0.50, port: 15443}, {address: gw.example.com, port: 443}]\n"
    nets2 = "networks:\n  n1:\n    gateways: [{address: 127.0.0.51, port: 15443}]\n"
    trace = write_trace(tmp_path / "t.jsonl", [
        (0, "ADDED", configmap({"mesh": "{}", "meshNetworks": nets1})),
        (5, "MODIFIED", configmap({"mesh": "{}", "meshNetworks": nets2})),
    ])
    server = Server(ServerArgs(trace=str(trace))).run_until("init_networks_manager")
    manager = server.environment.network_manager
    assert [(g.network, g.address, g.port) for g in manager.gateways] == [("n1", "127.0.0.50", 15443)]
    assert len(manager.unresolved) == 2  # the hostname gateway is kept but never resolved
    server.clock.run()
    assert [g.address for g in manager.gateways] == ["127.0.0.51"]
    assert [dict(r.request.reason) for r in server.xds.requests] == [{"networks": 1}]


def test_networks_file(tmp_path):
    f = tmp_path / "nets"
    f.write_text("networks:\n  n2:\n    gateways: [{address: 127.0.0.60, port: 15443}]\n")
    server = Server(ServerArgs(registries=(), networks_file=str(f))).run_until("init_networks_manager")
    assert server.environment.network_manager.by_network()["n2"][0].address == "127.0.0.60"
    bad = tmp_path / "bad"
    bad.write_text("networks: [\n")
    server = Server(ServerArgs(registries=(), networks_file=str(bad))).run_until("init_networks_manager")
    assert server.environment.networks() == {"networks": {}}


def test_a_failing_stage_stops_the_run_and_runs_again_next_time(mesh_change_trace):
    class FlakyServer(Server):  # stage 8 fails once, as a stage with bad input would
        failures = 1

        def init_generators(self) -> None:
            if self.failures:
                self.failures -= 1
                raise RuntimeError("generators unavailable")
            super().init_generators()

    server = FlakyServer(ServerArgs(trace=str(mesh_change_trace)))
    with pytest.raises(RuntimeError, match="generators unavailable"):
        server.run_until("init_registry_event_handlers")
    assert server.completed == ISTIOD_ORDER[:7]  # nothing after the failed stage ran
    server.run_until("init_registry_event_handlers")
    assert server.completed == ISTIOD_ORDER[:15]


def test_every_stage_method_links_the_go_lines_of_the_stage_table():
    for s in STAGES:
        doc = getattr(Server, s.name).__doc__
        links = re.findall(r"https://github\.com/istio/istio/blob/1\.19\.0/\S+#L\d+-L\d+", doc)
        assert links and links[0] == s.go_url, (s.name, links[:1], s.go_url)


@istio_src.needed
def test_the_stage_table_holds_istios_lines():
    server_go = istio_src.show("pilot/pkg/bootstrap/server.go").splitlines()
    for s in STAGES:
        go = istio_src.show(s.go_path).splitlines()
        first, last = s.go_lines
        func = s.go_name.rsplit(".", 1)[-1]
        assert go[first - 1].startswith("func ") and f" {func}(" in go[first - 1], (s.name, go[first - 1])
        assert go[last - 1] == "}", (s.name, last, go[last - 1])
        assert f"{func}(" in server_go[s.call_line - 1], (s.name, s.call_line, server_go[s.call_line - 1])


def test_every_attribute_is_set_in_init(mesh_change_trace):
    server = Server(ServerArgs(trace=str(mesh_change_trace)))
    before = set(vars(server))
    server.run_all()
    assert set(vars(server)) == before


def test_bad_mesh_networks_key_skips_the_whole_configmap_update(tmp_path):
    trace = write_trace(tmp_path / "t.jsonl", [
        (0, "ADDED", configmap({"mesh": "trustDomain: a.local\n", "meshNetworks": "networks: {}\n"})),
        (1, "MODIFIED", configmap({"mesh": "trustDomain: b.local\n", "meshNetworks": "networks: [\n"})),
    ])
    server = Server(ServerArgs(trace=str(trace))).run_until("init_mesh_handlers")
    server.clock.run()
    assert server.trust_domain == "a.local"  # istiod ignores the good mesh key next to bad networks
    assert "keeping the last good mesh networks" in server.environment.networks_watcher.errors[-1]


def test_mesh_handlers_run_newest_first(mesh_change_trace):
    server = Server(ServerArgs(trace=str(mesh_change_trace))).run_until("init_mesh_handlers")
    order = []
    server.environment.mesh_watcher.add_mesh_handler(lambda: order.append(("late", len(server.xds.requests))))
    server.clock.advance_to(10)
    assert order == [("late", 0)]  # ran before stage 4's handler requested the push
    assert len(server.xds.requests) == 1


def test_a_kube_client_handed_in_is_kept(mesh_change_trace):
    from mesh.kube.trace import load_trace

    client = ReplayClient(load_trace(str(mesh_change_trace)))
    server = Server(ServerArgs(), kube_client=client).run_until("init_mesh_configuration")
    assert server.kube_client is client and server.environment.mesh()["accessLogFile"] == ""
