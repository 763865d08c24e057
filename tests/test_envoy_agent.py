"""The mini pilot-agent: its bootstrap, its CLI, and running and stopping a real Envoy."""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import subprocess
import sys
import time

import istio_src
import pytest

from mesh.agent.agent import EnvoyAgent, envoy_binary
from mesh.agent.bootstrap import (
    RUNTIME_FLAGS,
    SDS_SOCKET,
    STATS_TAGS,
    XDS_SOCKET,
    PodIdentity,
    build_bootstrap,
    delta_from_env,
)
from mesh.cli import main
from mesh.model.proxy import parse_node_id

# A loopback address of its own per run: the agent binds the pod IP's 15000/15020/15021/15090.
SUBNET = f"127.10.{random.randint(100, 250)}"
POD = PodIdentity("reviews-v1-abc", "default", f"{SUBNET}.7", {"app": "reviews", "version": "v1"})
CLUSTERS = ["prometheus_stats", "agent", "sds-grpc", "xds-grpc"]  # the template's static clusters, in order


def _address(cluster: dict) -> dict:
    return cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]


def _listeners(b: dict) -> dict[int, dict]:
    """Static listeners by port: (address, the one route's prefix, its cluster)."""
    out = {}
    for li in b["static_resources"]["listeners"]:
        hcm = li["filter_chains"][0]["filters"][0]["typed_config"]
        route = hcm["route_config"]["virtual_hosts"][0]["routes"][0]
        out[li["address"]["socket_address"]["port_value"]] = (
            li["address"]["socket_address"]["address"], route["match"]["prefix"], route["route"]["cluster"])
    return out


def test_bootstrap_names_the_pod_the_istio_way():
    b = build_bootstrap(POD, "127.0.0.1", 15010)
    assert b["node"]["id"] == f"sidecar~{SUBNET}.7~reviews-v1-abc.default~default.svc.cluster.local"
    assert b["node"]["cluster"] == "reviews.default"
    proxy = parse_node_id(b["node"]["id"], b["node"]["metadata"])
    assert (proxy.pod_name, proxy.namespace, proxy.labels["version"]) == ("reviews-v1-abc", "default", "v1")
    assert b["dynamic_resources"]["ads_config"]["set_node_on_first_message_only"] is True
    assert _address(b["static_resources"]["clusters"][3])["socket_address"] == {
        "address": "127.0.0.1", "port_value": 15010}


def test_bootstrap_has_istios_clusters_listeners_and_runtime_in_a_pod_namespace():
    b = build_bootstrap(POD, "127.0.0.1", 15010, xds_socket=XDS_SOCKET, netns=True)
    clusters = {c["name"]: c for c in b["static_resources"]["clusters"]}
    assert list(clusters) == CLUSTERS
    assert _address(clusters["xds-grpc"]) == {"pipe": {"path": "./etc/istio/proxy/XDS"}}
    assert _address(clusters["sds-grpc"]) == {"pipe": {"path": "./var/run/secrets/workload-spiffe-uds/socket"}}
    assert _address(clusters["agent"])["socket_address"]["port_value"] == 15020
    assert _address(clusters["prometheus_stats"]) == b["admin"]["address"] | {
        "socket_address": {"protocol": "TCP", "address": "127.0.0.1", "port_value": 15000}}
    assert clusters["xds-grpc"]["max_requests_per_connection"] == 1
    assert _listeners(b) == {15090: ("0.0.0.0", "/stats/prometheus", "prometheus_stats"),
                             15021: ("0.0.0.0", "/healthz/ready", "agent")}
    static = b["layered_runtime"]["layers"][0]["static_layer"]
    assert static["re2.max_program_size.error_level"] == "32768"
    assert static["overload.global_downstream_max_connections"] == "2147483647"
    assert b["layered_runtime"]["layers"][1] == {"name": "admin", "admin_layer": {}}
    meta = b["node"]["metadata"]
    assert (meta["INTERCEPTION_MODE"], meta["ENVOY_STATUS_PORT"], meta["ENVOY_PROMETHEUS_PORT"]) == (
        "REDIRECT", 15021, 15090)
    patterns = b["stats_config"]["stats_matcher"]["inclusion_list"]["patterns"]
    # what the readiness probe reads must survive the stats matcher
    assert {"prefix": "cluster_manager"} in patterns and {"prefix": "listener_manager"} in patterns
    assert {"prefix": "server"} in patterns


def test_loopback_fallback_binds_the_pods_own_loopback_ip():
    b = build_bootstrap(POD, "127.0.0.1", 15010, xds_socket=XDS_SOCKET)
    assert b["admin"]["address"]["socket_address"] == {"address": POD.ip, "port_value": 15000}
    assert {port: addr for port, (addr, _, _) in _listeners(b).items()} == {15090: POD.ip, 15021: POD.ip}
    assert _address(b["static_resources"]["clusters"][1])["socket_address"]["address"] == POD.ip
    assert b["node"]["metadata"]["INTERCEPTION_MODE"] == "NONE"


@pytest.mark.parametrize("env, api_type", [({}, "GRPC"), ({"ISTIO_DELTA_XDS": "true"}, "DELTA_GRPC"),
                                           ({"ISTIO_DELTA_XDS": "1"}, "DELTA_GRPC"),
                                           ({"ISTIO_DELTA_XDS": "false"}, "GRPC")])
def test_istio_delta_xds_env_chooses_the_ads_api_type(env, api_type):
    b = build_bootstrap(POD, "127.0.0.1", 15010, delta=delta_from_env(env))
    assert b["dynamic_resources"]["ads_config"]["api_type"] == api_type


def test_istio_delta_xds_env_must_be_a_boolean():
    with pytest.raises(ValueError, match="ISTIO_DELTA_XDS='yes'"):
        delta_from_env({"ISTIO_DELTA_XDS": "yes"})


@istio_src.needed
def test_stats_tags_and_runtime_flags_are_istios():
    template = istio_src.show("tools/packaging/common/envoy_bootstrap.json")
    section = template.split('"stats_tags"')[1].split('"stats_matcher"')[0]
    pairs = re.findall(r'"(tag_name|regex)":\s*("(?:[^"\\]|\\.)*")', section)  # each tag: both keys, either first
    tags = []  # (tag_name, regex) in the template's order, without the extraStatTags loop
    for (k1, v1), (_, v2) in zip(pairs[::2], pairs[1::2], strict=True):
        fields = {k1: v1, ("regex" if k1 == "tag_name" else "tag_name"): v2}
        if "{{" not in v1 + v2:
            tags.append((json.loads(fields["tag_name"]), json.loads(fields["regex"])))
    assert tags == STATS_TAGS
    config_go = istio_src.show("pkg/bootstrap/config.go")
    defaults = config_go.split("runtimeFlags := map[string]any{")[1].split("}")[0]
    flags = dict(re.findall(r'"([^"]+)":\s*(\S+?),', defaults))
    assert {k: json.loads(v) for k, v in flags.items()} == RUNTIME_FLAGS
    assert re.findall(r'"name": "([a-z_-]+)",\n\s+"type"', template)[:4] == CLUSTERS


@pytest.mark.envoy
@pytest.mark.parametrize("netns, delta, sds", [(False, False, None), (True, True, SDS_SOCKET), (True, False, None)])
def test_envoy_accepts_the_bootstrap(tmp_path, netns, delta, sds):
    path = tmp_path / "bootstrap.json"
    path.write_text(json.dumps(build_bootstrap(POD, "127.0.0.1", 15010, sds, xds_socket=XDS_SOCKET,
                                               netns=netns, delta=delta)))
    result = subprocess.run([envoy_binary(), "--mode", "validate", "-c", str(path), "--disable-hot-restart"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.envoy
def test_agent_starts_envoy_and_stops_it_cleanly(tmp_path):
    async def scenario():
        agent = EnvoyAgent(POD, "127.0.0.1", 1, workdir=tmp_path)  # no xDS server: Envoy waits, still runs
        await agent.start()
        pid = agent.process.pid
        server_info = json.loads(await agent.admin("/server_info"))
        assert server_info["node"]["id"] == POD.node_id
        assert await agent.stop() == 0
        return pid

    pid = asyncio.run(scenario())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # the process is gone, not a zombie


def test_cli_prints_bootstrap(capsys):
    assert main(["proxy", "reviews-v1-abc.default", "--ip", POD.ip, "--label", "app=reviews",
                 "--xds", "127.0.0.1:15999", "--print-bootstrap"]) == 0
    b = json.loads(capsys.readouterr().out)
    assert b["node"]["id"] == POD.node_id and b["node"]["metadata"]["LABELS"] == {"app": "reviews"}
    assert b["dynamic_resources"]["ads_config"]["api_type"] == "GRPC"
    xds = b["static_resources"]["clusters"][3]
    assert _address(xds) == {"pipe": {"path": "./etc/istio/proxy/XDS"}}  # the agent's XDS proxy, not istiod
    assert b["node"]["metadata"]["PROXY_CONFIG"]["discoveryAddress"] == "127.0.0.1:15999"


@pytest.mark.parametrize("argv, env", [(["--delta"], {}), ([], {"ISTIO_DELTA_XDS": "true"})])
def test_cli_delta_flag_or_env_writes_delta_grpc(argv, env, capsys, monkeypatch):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert main(["proxy", "reviews-v1-abc.default", "--ip", POD.ip, *argv, "--print-bootstrap"]) == 0
    assert json.loads(capsys.readouterr().out)["dynamic_resources"]["ads_config"]["api_type"] == "DELTA_GRPC"


def test_cli_rejects_a_bad_delta_env(capsys, monkeypatch):
    monkeypatch.setenv("ISTIO_DELTA_XDS", "sometimes")
    assert main(["proxy", "a.b", "--ip", POD.ip, "--print-bootstrap"]) == 2
    assert "ISTIO_DELTA_XDS='sometimes'" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["proxy", "nodot", "--ip", "127.10.0.7"], "expected <pod name>.<namespace>"),
    (["proxy", "a.b", "--ip", "127.10.0.7", "--xds", "nohostport"], "expected HOST:PORT"),
    (["proxy", "a.b", "--ip", "192.168.1.1"], "loopback"),
    (["proxy", "a.b", "--ip", "10.244.0.9", "--netns", "mesh-no-such-ns"], "no such network namespace"),
    (["proxy", "a.b", "--ip", "127.10.0.7", "--label", "novalue"], "KEY=VALUE"),
])
def test_cli_rejects_bad_input(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


@pytest.mark.envoy
def test_envoy_dies_with_its_agent(tmp_path):
    """An agent process killed without cleanup takes its Envoy with it (no orphans)."""
    script = tmp_path / "agent.py"
    script.write_text(
        "import asyncio, sys\n"
        "from mesh.agent.agent import EnvoyAgent\n"
        "from mesh.agent.bootstrap import PodIdentity\n"
        "async def main():\n"
        f"    a = await EnvoyAgent(PodIdentity('x', 'default', '{SUBNET}.8'), '127.0.0.1', 1, workdir={str(tmp_path)!r}).start()\n"
        "    print(a.process.pid, flush=True)\n"
        "    await asyncio.sleep(60)\n"
        "asyncio.run(main())\n")
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        envoy_pid = int(proc.stdout.readline())
    finally:
        proc.kill()
        proc.wait()
    for _ in range(100):
        try:
            os.kill(envoy_pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.kill(envoy_pid, 9)
    raise AssertionError("envoy outlived its agent")


def test_cli_router_flag_makes_a_gateway_node(capsys):
    assert main(["proxy", "ingress-1.istio-system", "--ip", "127.10.0.9", "--router", "--print-bootstrap"]) == 0
    assert json.loads(capsys.readouterr().out)["node"]["id"].startswith("router~127.10.0.9~ingress-1.istio-system~")


def test_stats_inclusion_annotations_come_before_the_required_ones():
    pod = PodIdentity("a", "default", POD.ip, annotations={
        "sidecar.istio.io/statsInclusionPrefixes": "cluster.outbound,http.{pod_ip}_",
        "sidecar.istio.io/statsInclusionSuffixes": "upstream_rq_timeout"})
    patterns = build_bootstrap(pod, "127.0.0.1", 15010)["stats_config"]["stats_matcher"]["inclusion_list"]["patterns"]
    assert patterns[:4] == [{"prefix": "reporter="}, {"prefix": "cluster.outbound"}, {"prefix": f"http.{POD.ip}_"},
                            {"prefix": "cluster_manager"}]
    assert {"suffix": "upstream_rq_timeout"} in patterns and patterns[-2:] == [{"prefix": "component"},
                                                                               {"prefix": "istio"}]
