"""pilot-agent's plumbing with a real Envoy: the XDS proxy on a Unix socket between Envoy and a
mesh ADS server (SotW, Delta, istiod restarting), the status port's readiness answer, and Envoy
run inside a network namespace while the agent stays outside."""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest
from envoy_harness import synced, wait_until
from xds_fakes import FakeConfigStore, FakeRegistry, endpoint

from mesh.agent.agent import EnvoyAgent, start_pod_agent
from mesh.agent.bootstrap import PodIdentity
from mesh.agent.certs import WorkloadCertConfig
from mesh.agent.netns import PROXY_GID, PROXY_UID, proxy_user, usable_by
from mesh.agent.status import parse_stats
from mesh.agent.uds import MAX_PATH, UnixListenPath
from mesh.agent.xds_proxy import DELTA_METHOD, SOTW_METHOD
from mesh.bootstrap import Server, ServerArgs
from mesh.bootstrap.args import DEFAULT_PORTS
from mesh.clock import RealClock
from mesh.xds.ads import AdsServer
from mesh.xds.discovery import DiscoveryServer

pytestmark = pytest.mark.envoy

SUBNET = f"127.10.{random.randint(100, 250)}"  # a /24 of its own per run: pods bind 15000/15020/15021/15090


class Istiod:
    """A mesh ADS server with one service, on a port that survives a restart."""

    def __init__(self, ip: str):
        self.registry, self.store = FakeRegistry(), FakeConfigStore()
        self.registry.add_service("productpage")
        self.registry.set_endpoints("productpage.default.svc.cluster.local", 9080, [endpoint(ip, app="productpage")])
        self.port = 0
        self.ads: AdsServer | None = None

    async def start(self) -> Istiod:
        self.discovery = DiscoveryServer(RealClock())
        self.discovery.start()
        self.ads = AdsServer(self.discovery, None, self.registry, self.store)
        self.port = await self.ads.start("127.0.0.1", self.port)
        return self

    async def stop(self) -> None:
        if self.ads is not None:
            await self.ads.stop(grace=0)
            self.discovery.stop()
            self.ads = None


def _pod(ip: str, name: str = "productpage-v1-abc") -> PodIdentity:
    return PodIdentity(name, "default", ip, {"app": "productpage", "version": "v1"})


def _pod_object(ident: PodIdentity) -> dict:
    return {"metadata": {"name": ident.name, "namespace": ident.namespace, "labels": ident.labels},
            "status": {"podIP": ident.ip}, "spec": {}}


async def _run(scenario, *cleanup):
    try:
        return await scenario
    finally:
        for step in cleanup:
            await step()


def test_a_long_workdir_gets_its_socket_through_a_short_symlink(tmp_path):
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    listen = UnixListenPath(deep / "etc/istio/proxy/XDS")
    address = listen.prepare()
    assert len(address) - len("unix:") <= MAX_PATH
    assert listen.path.is_symlink() and str(listen.path.readlink()) == address[len("unix:"):]
    listen.close()
    assert not listen.path.exists() and not os.path.exists(address[len("unix:"):])


def test_xds_proxy_forwards_envoys_ads_and_reconnects_when_istiod_restarts(tmp_path):
    ident = _pod(f"{SUBNET}.1")

    async def scenario():
        istiod = await Istiod(ident.ip).start()
        agent = EnvoyAgent(ident, "127.0.0.1", istiod.port, workdir=tmp_path)

        async def steps():
            await agent.start()
            await agent.wait_ready()
            proxy_id = f"{ident.name}.{ident.namespace}"
            await wait_until(lambda: synced(istiod.ads, proxy_id), what="first sync through the XDS proxy")
            # Envoy's only way to istiod is the agent's socket, and istiod sees the agent's
            # connection with the node Envoy sent through it
            assert (tmp_path / "etc/istio/proxy/XDS").exists()
            assert agent.xds_proxy.streams[SOTW_METHOD] == 1 and agent.xds_proxy.active == 1
            await istiod.stop()
            await wait_until(lambda: agent.xds_proxy.upstream_errors, what="the proxy to see istiod go")
            await istiod.start()  # same port, a fresh server with no connections
            await wait_until(lambda: synced(istiod.ads, proxy_id), timeout=30, what="re-sync after the restart")
            assert agent.xds_proxy.streams[SOTW_METHOD] >= 2
            # Envoy itself reconnected (a new connection to the socket; one stream per connection,
            # max_requests_per_connection 1); its xds-grpc stats pass Istio's stats matcher
            stats = parse_stats(await agent.admin("/stats?filter=^cluster\\.xds-grpc\\.upstream_cx_total$"))
            assert stats["cluster.xds-grpc.upstream_cx_total"] >= 2

        await _run(steps(), agent.stop, istiod.stop)

    asyncio.run(scenario())


def test_delta_streams_go_through_the_proxy_too(tmp_path):
    """A DELTA_GRPC Envoy's stream reaches istiod through the proxy; mesh's istiod answers
    UNIMPLEMENTED today, and that status comes back to Envoy unchanged."""
    ident = _pod(f"{SUBNET}.2")

    async def scenario():
        istiod = await Istiod(ident.ip).start()
        agent = EnvoyAgent(ident, "127.0.0.1", istiod.port, workdir=tmp_path, delta=True)

        async def steps():
            await agent.start()
            assert agent.bootstrap()["dynamic_resources"]["ads_config"]["api_type"] == "DELTA_GRPC"
            proxy_id = f"{ident.name}.default"
            # answered either way: refused (no Delta on mesh's istiod yet) or served (once it has it)
            await wait_until(lambda: agent.xds_proxy.upstream_errors or istiod.ads.connection(proxy_id),
                             what="the delta stream to be answered")
            assert agent.xds_proxy.streams[DELTA_METHOD] >= 1 and agent.xds_proxy.streams[SOTW_METHOD] == 0
            if istiod.ads.connection(proxy_id) is None:
                assert agent.xds_proxy.upstream_errors[0].startswith("UNIMPLEMENTED")

        await _run(steps(), agent.stop, istiod.stop)

    asyncio.run(scenario())


def test_status_port_says_ready_only_once_envoy_has_its_config(tmp_path):
    ident = _pod(f"{SUBNET}.3")

    async def scenario():
        istiod = Istiod(ident.ip)
        # istiod is not there yet: Envoy runs and waits for its first CDS/LDS
        agent = EnvoyAgent(ident, "127.0.0.1", await _free_port(), workdir=tmp_path)

        async def steps():
            await agent.start()
            await wait_until(lambda: agent.xds_proxy.upstream_errors, what="the proxy to fail to reach istiod")
            # Envoy opens its static listeners only once initialised (initial_fetch_timeout 0s: after
            # the first CDS and LDS), so kubelet's probe on 15021 is refused; the agent's own port says why
            with pytest.raises(ConnectionRefusedError):
                await agent.readiness()
            direct, body = await agent.net.get(agent.localhost, 15020, "/healthz/ready")
            assert direct == 503 and "config not received from XDS server" in body
            await agent.stop()
            # now with istiod: the same probe passes
            istiod.port = agent.xds_port
            await istiod.start()
            await agent.start()
            await agent.wait_ready(timeout=20, probe=True)
            assert await agent.readiness() == 200
            assert agent.status.probe.received_first_update and agent.status.probe.at_least_once_ready
            code, metrics = await agent.net.get(agent.localhost, 15020, "/stats/prometheus")
            assert code == 200 and "envoy_server_live" in metrics  # Envoy's, scraped from its 15090
            code, direct_metrics = await agent.net.get(agent.localhost, 15090, "/stats/prometheus")
            assert code == 200 and "envoy_cluster_manager_cds_update_success" in direct_metrics

        await _run(steps(), agent.stop, istiod.stop)

    asyncio.run(scenario())


async def _free_port() -> int:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    return port


# -- Envoy in a network namespace ----------------------------------------------------------------
@pytest.mark.skipif(os.geteuid() != 0, reason="changes the owner of a file: needs root")
def test_envoy_runs_as_the_proxy_user_only_where_that_user_can_run_it():
    """uid 1337 needs search on every directory above the binary and the workdir, and read+execute
    on the binary (mode bits; root's own access says nothing about uid 1337's). Under /tmp, not
    pytest's tmp_path, whose parent only root may enter."""
    with tempfile.TemporaryDirectory(prefix="mesh-proxy-user-") as top:
        root = Path(top)
        bin_dir, work = root / "venv" / "bin", root / "work"
        bin_dir.mkdir(parents=True)
        work.mkdir()
        envoy = bin_dir / "envoy"
        envoy.write_text("")
        for path in (root, root / "venv", bin_dir, envoy):
            os.chmod(path, 0o755)
        assert proxy_user(envoy, work / "agent") == PROXY_UID
        os.chmod(envoy, 0o750)  # root's group only
        assert not usable_by(envoy, PROXY_UID, PROXY_GID, 5) and proxy_user(envoy, work / "agent") is None
        os.chown(envoy, 0, PROXY_GID)  # the proxy's group may read and execute it
        assert proxy_user(envoy, work / "agent") == PROXY_UID
        os.chmod(root / "venv", 0o700)  # a virtualenv under a directory only root can enter
        assert proxy_user(envoy, work / "agent") is None
        os.chmod(root / "venv", 0o755)
        os.chmod(work, 0o700)  # the agent's workdir must be reachable too
        assert proxy_user(envoy, work / "agent") is None

def _can_make_namespaces() -> bool:
    return os.geteuid() == 0 and shutil.which("ip") is not None and shutil.which("setpriv") is not None


@pytest.fixture
def pod_netns():
    """A network namespace of this run only: loopback up, the pod IP on it, no other link or route."""
    if not _can_make_namespaces():
        pytest.skip("needs root, iproute2 and setpriv to make a network namespace")
    name = f"mesh-agent-t{os.getpid()}-{uuid.uuid4().hex[:6]}"
    ip = f"10.244.{random.randint(1, 250)}.{random.randint(2, 250)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        subprocess.run(["ip", "-n", name, "addr", "add", f"{ip}/32", "dev", "lo"], check=True)
        yield name, ip
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def test_envoy_in_a_network_namespace_syncs_through_the_agents_socket(pod_netns, tmp_path):
    name, ip = pod_netns
    ident = _pod(ip)

    async def scenario():
        istiod = await Istiod(ip).start()  # in the root namespace, on 127.0.0.1 only
        agent_box: list[EnvoyAgent] = []

        async def stop_agent():
            for agent in agent_box:
                await agent.stop()
                agent.cleanup()

        async def steps():
            agent = await start_pod_agent(_pod_object(ident), "127.0.0.1", istiod.port, netns=name)
            agent_box.append(agent)
            proxy_id = f"{ident.name}.default"
            await wait_until(lambda: synced(istiod.ads, proxy_id), what="Envoy in the namespace to sync")
            pid = agent.process.pid
            # Envoy is in the pod's namespace, as uid/gid 1337; the agent is not
            assert os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(f"/run/netns/{name}").st_ino
            assert os.stat(f"/proc/{pid}/ns/net").st_ino != os.stat("/proc/self/ns/net").st_ino
            status = open(f"/proc/{pid}/status").read().splitlines()
            uids, gids = ([line for line in status if line.startswith(f"{k}:")][0].split()[1:] for k in ("Uid", "Gid"))
            assert set(uids) == {str(PROXY_UID)} and set(gids) == {str(PROXY_GID)}  # istio-proxy's 1337
            assert agent.bootstrap()["node"]["metadata"]["INTERCEPTION_MODE"] == "REDIRECT"
            # kubelet's probe inside the pod: 127.0.0.1:15021 there, through Envoy to the agent
            assert await agent.readiness() == 200
            assert agent.admin_address == "127.0.0.1:15000"  # the template's, inside the pod
            # the agent's admin calls come from inside: a thread that joined the namespace
            code, info = await agent.net.get("127.0.0.1", 15000, "/server_info")
            assert code == 200 and ident.node_id in info

        await _run(steps(), stop_agent, istiod.stop)

    asyncio.run(scenario())


def test_envoy_in_a_network_namespace_gets_its_certificate_over_the_agents_sds_socket(pod_netns):
    """The whole server on the mtls trace; details' sidecar in a namespace of its own (its
    127.10.0.x pod IP is the namespace's loopback, nobody else's), its certificate from istiod's CA
    and served to Envoy over ./var/run/secrets/workload-spiffe-uds/socket."""
    name, _ip = pod_netns

    async def scenario():
        server = Server(ServerArgs(trace="mtls", speed=0, clock=RealClock(), ports={n: 0 for n in DEFAULT_PORTS}))
        server.run_all()
        await server.start()
        agents: list[EnvoyAgent] = []

        async def stop_all():
            for agent in agents:
                await agent.stop()
                agent.cleanup()
            await server.stop()

        async def steps():
            pods = server.kube_client.informer("pods")
            await wait_until(lambda: any(p["metadata"]["labels"].get("app") == "details" for p in pods.list("default")),
                             timeout=30, what="the details pod")
            pod = next(p for p in pods.list("default") if p["metadata"]["labels"].get("app") == "details")
            sa = pod["spec"].get("serviceAccountName", "default")
            certs = WorkloadCertConfig(f"127.0.0.1:{server.bound_ports['secure_xds']}", server.ca.root_pem,
                                       lambda: server.service_account_tokens.issue("default", sa),
                                       trust_domain=server.environment.mesh()["trustDomain"])
            agents.append(await start_pod_agent(pod, "127.0.0.1", server.bound_ports["xds"], netns=name, certs=certs))
            agent = agents[0]
            assert (agent.workdir / "var/run/secrets/workload-spiffe-uds/socket").exists()
            await wait_until(lambda: agent.sds.pushes >= 2, timeout=20, what="Envoy to ask for both secrets")
            dump = await agent.config_dump()
            [secrets] = [c for c in dump["configs"] if c["@type"].endswith("SecretsConfigDump")]
            assert {s["name"] for s in secrets["dynamic_active_secrets"]} == {"default", "ROOTCA"}
            assert agent.workload_cert.identities == (f"spiffe://{certs.trust_domain}/ns/default/sa/{sa}",)

        await _run(steps(), stop_all)

    asyncio.run(scenario())
