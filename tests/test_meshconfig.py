import pytest

from mesh.config.mesh import MeshConfigError, MeshWatcher, apply_mesh_config, default_mesh_config
from mesh.config.meshnetworks import MeshNetworksError, NetworksWatcher, parse_mesh_networks


def test_defaults_are_istio_1_19s():
    mesh = default_mesh_config()
    assert mesh["trustDomain"] == "cluster.local"
    assert mesh["ingressControllerMode"] == "STRICT" and mesh["ingressClass"] == "istio"
    assert mesh["defaultConfig"]["discoveryAddress"] == "istiod.istio-system.svc:15012"
    assert mesh["accessLogFile"] == "" and mesh["enableAutoMtls"] is True
    assert mesh["rootNamespace"] == "istio-system" and mesh["proxyListenPort"] == 15001


def test_user_fields_replace_defaults_but_proxy_config_merges():
    mesh = apply_mesh_config("accessLogFile: /dev/stdout\ndefaultConfig:\n  proxyMetadata: {A: '1'}\n"
                             "  concurrency: 2\n")
    assert mesh["accessLogFile"] == "/dev/stdout"
    assert mesh["defaultConfig"]["concurrency"] == 2
    # the rest of the default proxy config survives the merge
    assert mesh["defaultConfig"]["discoveryAddress"] == "istiod.istio-system.svc:15012"
    again = apply_mesh_config("defaultConfig:\n  proxyMetadata: {B: '2'}\n", base=mesh)
    assert again["defaultConfig"]["proxyMetadata"] == {"A": "1", "B": "2"}


def test_extension_providers_replace_by_name_and_append_new_ones():
    mesh = apply_mesh_config("extensionProviders:\n- name: envoy\n  envoyFileAccessLog: {path: /tmp/x}\n"
                             "- name: otel\n  opentelemetry: {service: o, port: 4317}\n")
    names = [p["name"] for p in mesh["extensionProviders"]]
    assert names == ["prometheus", "stackdriver", "envoy", "otel"]
    assert mesh["extensionProviders"][2]["envoyFileAccessLog"]["path"] == "/tmp/x"


@pytest.mark.parametrize("text,field", [
    ("nosuchField: 1\n", "nosuchField"),
    ("connectTimeout: 10\n", "connectTimeout"),
    ("connectTimeout: 1m\n", "connectTimeout"),
    ("ingressControllerMode: SOMETIMES\n", "ingressControllerMode"),
    ("enableTracing: maybe\n", "enableTracing"),
    ("trustDomain: ''\n", "trustDomain"),
    ("- a list\n", "mapping"),
    ("accessLogFile: [\n", "invalid YAML"),
])
def test_bad_mesh_yaml_names_the_field(text, field):
    with pytest.raises(MeshConfigError, match=field):
        apply_mesh_config(text)


def test_watcher_calls_handlers_only_on_real_change_and_keeps_last_good():
    watcher = MeshWatcher()
    calls = []
    watcher.add_mesh_handler(lambda: calls.append(watcher.mesh()["accessLogFile"]))
    assert watcher.handle_yaml("accessLogFile: /dev/stdout\n", "test") is True
    assert watcher.handle_yaml("accessLogFile: /dev/stdout\n", "test") is False  # same: no handler
    assert watcher.handle_yaml("accessLogFile: [\n", "test") is False
    assert calls == ["/dev/stdout"]
    assert watcher.mesh()["accessLogFile"] == "/dev/stdout"
    assert "keeping the last good mesh config" in watcher.errors[-1]


def test_mesh_networks_parse_and_validate():
    nets = parse_mesh_networks("networks:\n  n1:\n    endpoints: [{fromRegistry: Kubernetes}]\n"
                               "    gateways: [{address: 127.0.0.50, port: 15443}]\n")
    assert nets["networks"]["n1"]["gateways"][0]["port"] == 15443
    with pytest.raises(MeshNetworksError, match=r"networks.n1.gateways\[0\].port"):
        parse_mesh_networks("networks:\n  n1:\n    gateways: [{address: 127.0.0.50, port: 0}]\n")
    with pytest.raises(MeshNetworksError, match="fromCidr"):
        parse_mesh_networks("networks:\n  n1:\n    endpoints: [{fromCidr: 300.1.0.0/16}]\n")
    with pytest.raises(MeshNetworksError, match="needs address or registryServiceName"):
        parse_mesh_networks("networks:\n  n1:\n    gateways: [{port: 15443}]\n")


def test_networks_watcher_fires_on_change_only():
    watcher = NetworksWatcher()
    calls = []
    watcher.add_networks_handler(lambda: calls.append(1))
    assert watcher.handle_yaml("networks: {}\n", "t") is False  # equal to the empty default
    assert watcher.handle_yaml("networks:\n  n1: {gateways: [{address: 127.0.0.9, port: 1}]}\n", "t")
    assert watcher.handle_yaml("networks: [\n", "t") is False
    assert calls == [1]
