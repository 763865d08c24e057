"""Display helpers for notebook 17b (mutual TLS): two real Envoy sidecars with workload
certificates from istiod's CA (``mesh.agent``), the requests between them, and what each side saw.

Everything shown is free of ports, times, paths and serial numbers: pod IPs come from the trace,
certificate lifetimes are shown as durations, and the ``x-forwarded-client-cert`` header is shown
without its hash (which covers the client certificate, so changes every run).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web
from cryptography import x509

from mesh.agent.agent import EnvoyAgent
from mesh.agent.bootstrap import PodIdentity
from mesh.agent.certs import WorkloadCertConfig
from mesh.cli.proxy_config import describe_chain_destination, describe_chain_match, section
from mesh.kube.addresses import require_loopback
from mesh.security.ca import key_to_pem, make_csr
from mesh.teach.certs_view import duration
from mesh.teach.views import TextView, table
from mesh.xds.debug import proxy_synced as synced

INBOUND_PORT = 15006


async def _app(ip: str, name: str) -> web.AppRunner:
    """A pod's app on <ip>:9080: answers with its name and the client certificate header it got."""
    async def handle(request: web.Request) -> web.Response:
        return web.json_response({"app": name, "xfcc": request.headers.get("x-forwarded-client-cert", "")})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, ip, 9080).start()
    return runner


def port_free(ip: str, port: int) -> bool:
    """Can ``ip:port`` be bound now (no earlier run or other test still holds it)?"""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((ip, port))
            return True
        except OSError:
            return False


def xfcc_fields(header: str) -> str:
    """``By=...;Hash=...;Subject="";URI=...`` without the per-run hash and the empty subject."""
    keep = [part for part in header.split(";") if part and not part.startswith(("Hash=", "Subject="))]
    return "; ".join(keep) or "-"


@dataclass
class MtlsDemo:
    server: object
    agents: dict[str, EnvoyAgent] = field(default_factory=dict)
    runners: list = field(default_factory=list)

    def _synced(self) -> bool:
        ads = self.server.ads
        if not all(synced(ads, f"{agent.pod.name}.{agent.pod.namespace}") for agent in self.agents.values()):
            return False
        return {a.pod.ip for a in self.agents.values()} <= ads.push_context.mtls_addresses

    async def settle(self, timeout: float = 30.0) -> None:
        """Let the virtual clock fire the debounced pushes until every sidecar has ACKed the latest."""
        deadline = time.monotonic() + timeout
        while not self._synced():
            if time.monotonic() > deadline:
                raise TimeoutError("the sidecars did not sync")
            self.server.clock.advance_to(self.server.clock.now() + 0.2)
            await asyncio.sleep(0.05)

    def sidecars(self) -> TextView:
        rows = []
        for app, agent in self.agents.items():
            cert = agent.workload_cert
            leaf = cert.leaf  # NotBefore is backdated by the CA's clock-skew grace (2 min)
            rows.append((app, agent.pod.ip, ", ".join(cert.identities),
                         duration(leaf.not_valid_after_utc - leaf.not_valid_before_utc),
                         "SDS over the agent's Unix socket"))
        return table(("sidecar", "pod IP", "workload identity", "certificate valid for", "served to Envoy by"), rows)

    async def through_sidecar(self, client: str, host: str) -> tuple[str, str]:
        ip, port = self.agents[client].proxy_address
        async with aiohttp.ClientSession() as session, session.get(
                f"http://{ip}:{port}/", headers={"Host": host}, timeout=aiohttp.ClientTimeout(total=10)) as resp:
            body = await resp.json()
            return f"{resp.status} from {body['app']}", xfcc_fields(body["xfcc"])

    async def plaintext(self, server: str, host: str) -> tuple[str, str]:
        ip = self.agents[server].pod.ip
        try:
            async with aiohttp.ClientSession() as session, session.get(
                    f"http://{ip}:{INBOUND_PORT}/", headers={"Host": host},
                    timeout=aiohttp.ClientTimeout(total=10)) as resp:
                body = await resp.json()
                return f"{resp.status} from {body['app']}", xfcc_fields(body["xfcc"])
        except (aiohttp.ClientError, ConnectionError):
            return "refused: the connection was closed", "-"

    async def requests(self, client: str, server: str, host: str) -> TextView:
        rows = [(f"{client}'s sidecar → {server}'s sidecar (mTLS)", *await self.through_sidecar(client, host)),
                (f"plaintext → {server}'s inbound port {INBOUND_PORT}", *await self.plaintext(server, host))]
        return table(("request", "result", "client identity the app was told (x-forwarded-client-cert)"), rows)

    async def inbound_chains(self, app: str) -> list[tuple[str, str, str]]:
        """The filter chains of ``app``'s ``virtualInbound`` listener, from its Envoy's own
        ``/config_dump``: (match, whether the chain terminates TLS, destination)."""
        listeners = section(await self.agents[app].config_dump(), "listeners")
        inbound = next(li for li in listeners if li.get("name") == "virtualInbound")
        return [(describe_chain_match(chain.get("filter_chain_match")),
                 "yes" if "transport_socket" in chain else "no", describe_chain_destination(chain))
                for chain in inbound.get("filter_chains", [])]

    async def presented_certificate(self, server: str, as_identity: str) -> x509.Certificate:
        """Connect to ``server``'s inbound port like a peer sidecar (with a certificate for
        ``as_identity`` signed by the mesh CA) and return the certificate Envoy presents."""
        ca = self.server.ca
        csr, key = make_csr(as_identity)
        chain = "".join(ca.sign_with_chain(csr, [as_identity], 300))
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False  # a workload certificate names a SPIFFE identity, not a host
        ctx.load_verify_locations(cadata=ca.root_pem)
        with tempfile.TemporaryDirectory() as d:
            Path(d, "chain.pem").write_text(chain)
            Path(d, "key.pem").write_bytes(key_to_pem(key))
            ctx.load_cert_chain(str(Path(d, "chain.pem")), str(Path(d, "key.pem")))
        _reader, writer = await asyncio.open_connection(self.agents[server].pod.ip, INBOUND_PORT, ssl=ctx)
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        writer.close()
        return x509.load_der_x509_certificate(der)

    async def close(self) -> None:
        for agent in self.agents.values():
            await agent.stop()
            agent.cleanup()
        for runner in self.runners:
            await runner.cleanup()


async def start_sidecars(server, apps: list[str], namespace: str = "default", ttl_seconds: int = 3600,
                         wait_for_addresses: float = 60.0) -> MtlsDemo:
    """For each app: its pod's app on <pod-ip>:9080 and an Envoy sidecar whose agent gets a
    certificate from ``server``'s CA with a service-account token, then wait until all are synced."""
    demo = MtlsDemo(server)
    pods = {p["metadata"]["labels"].get("app"): p for p in server.kube_client.informer("pods").list(namespace)}
    for app in apps:
        require_loopback(pods[app]["status"]["podIP"])
    deadline = time.monotonic() + wait_for_addresses  # other Envoys may still hold these addresses
    while not all(port_free(pods[a]["status"]["podIP"], port) for a in apps for port in (9080, 15006, 15080)):
        if time.monotonic() > deadline:
            raise TimeoutError("the pod addresses stayed busy")
        await asyncio.sleep(0.2)
    for app in apps:
        pod = pods[app]
        meta = pod["metadata"]
        ident = PodIdentity(meta["name"], namespace, pod["status"]["podIP"], dict(meta.get("labels") or {}),
                            service_account=pod["spec"].get("serviceAccountName", "default"))
        demo.runners.append(await _app(ident.ip, app))
        certs = WorkloadCertConfig(
            f"127.0.0.1:{server.bound_ports['secure_xds']}", server.ca.root_pem,
            lambda ident=ident: server.service_account_tokens.issue(ident.namespace, ident.service_account),
            trust_domain=server.environment.mesh()["trustDomain"], ttl_seconds=ttl_seconds)
        demo.agents[app] = agent = EnvoyAgent(ident, "127.0.0.1", server.bound_ports["xds"], certs=certs)
        await agent.start()
    for agent in demo.agents.values():
        await agent.wait_ready()
    await demo.settle()
    return demo
