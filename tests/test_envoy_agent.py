"""The mini pilot-agent: its bootstrap, its CLI, and running and stopping a real Envoy."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time

import pytest

from mesh.agent.agent import EnvoyAgent, envoy_binary
from mesh.agent.bootstrap import PodIdentity, build_bootstrap
from mesh.cli import main
from mesh.model.proxy import parse_node_id

POD = PodIdentity("reviews-v1-abc", "default", "127.10.0.7", {"app": "reviews", "version": "v1"})


def test_bootstrap_names_the_pod_the_istio_way():
    b = build_bootstrap(POD, "127.0.0.1", 15010)
    assert b["node"]["id"] == "sidecar~127.10.0.7~reviews-v1-abc.default~default.svc.cluster.local"
    assert b["node"]["cluster"] == "reviews.default"
    proxy = parse_node_id(b["node"]["id"], b["node"]["metadata"])
    assert (proxy.pod_name, proxy.namespace, proxy.labels["version"]) == ("reviews-v1-abc", "default", "v1")
    assert b["dynamicResources"]["adsConfig"]["setNodeOnFirstMessageOnly"] is True
    xds = b["staticResources"]["clusters"][0]["loadAssignment"]["endpoints"][0]["lbEndpoints"][0]
    assert xds["endpoint"]["address"]["socketAddress"] == {"address": "127.0.0.1", "portValue": 15010}


@pytest.mark.envoy
def test_envoy_accepts_the_bootstrap(tmp_path):
    path = tmp_path / "bootstrap.json"
    path.write_text(json.dumps(build_bootstrap(POD, "127.0.0.1", 15010)))
    result = subprocess.run([envoy_binary(), "--mode", "validate", "-c", str(path), "--disable-hot-restart"],
                            capture_output=True, text=True, timeout=30)
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
    assert main(["proxy", "reviews-v1-abc.default", "--ip", "127.10.0.7", "--label", "app=reviews",
                 "--xds", "127.0.0.1:15999", "--print-bootstrap"]) == 0
    b = json.loads(capsys.readouterr().out)
    assert b["node"]["id"] == POD.node_id and b["node"]["metadata"]["LABELS"] == {"app": "reviews"}


@pytest.mark.parametrize("argv, message", [
    (["proxy", "nodot", "--ip", "127.10.0.7"], "expected <pod name>.<namespace>"),
    (["proxy", "a.b", "--ip", "127.10.0.7", "--xds", "nohostport"], "expected HOST:PORT"),
    (["proxy", "a.b", "--ip", "192.168.1.1"], "loopback"),
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
        f"    a = await EnvoyAgent(PodIdentity('x', 'default', '127.10.0.7'), '127.0.0.1', 1, workdir={str(tmp_path)!r}).start()\n"
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
