"""Mutual TLS in the data plane: PeerAuthentication resolution and the mTLS pieces of the
generators (fast, no Envoy), then two real Envoys on the ``mtls`` trace — a productpage sidecar
calling a details sidecar — each with a workload certificate from istiod's CA served over SDS."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import socket
import ssl
import time
import urllib.request
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from envoy_harness import LoopThread, get, start_app, synced, wait_until

from mesh.agent.agent import EnvoyAgent
from mesh.agent.bootstrap import PodIdentity, build_bootstrap
from mesh.agent.certs import WorkloadCert, WorkloadCertConfig
from mesh.agent.sds import envoy_secrets
from mesh.bootstrap import Server, ServerArgs
from mesh.bootstrap.args import DEFAULT_PORTS
from mesh.clock import RealClock
from mesh.kube.addresses import to_loopback
from mesh.kube.trace import load_trace
from mesh.model.config import Config
from mesh.model.proxy import Proxy
from mesh.model.service import IstioEndpoint, Port, Service
from mesh.networking.authn import DISABLE, PERMISSIVE, STRICT, mtls_mode
from mesh.networking.cluster import build_outbound_clusters
from mesh.networking.endpoints import locality_lb_endpoints
from mesh.networking.listener_inbound import build_bound_inbound_listener
from mesh.networking.push_context import PushContext, ServiceInstance
from mesh.networking.tls import SDS_METADATA
from mesh.security.ca import IstioCA, key_to_pem, make_csr, verify_chain
from mesh.security.tls import uri_sans
from mesh.teach.mtls_demo import port_free
from mesh.xds.resources import to_bytes
from mesh.xds.types import CLUSTER, ENDPOINT, LISTENER

TD = "cluster.local"
DETAILS_ID = f"spiffe://{TD}/ns/default/sa/bookinfo-details"
PRODUCTPAGE_ID = f"spiffe://{TD}/ns/default/sa/bookinfo-productpage"


# -- PeerAuthentication ---------------------------------------------------------------------------
def pa(name: str, ns: str, mode: str | None, created: str, selector: dict | None = None,
       ports: dict | None = None) -> Config:
    spec: dict = {"mtls": {"mode": mode}} if mode else {}
    if selector:
        spec["selector"] = {"matchLabels": selector}
    if ports:
        spec["portLevelMtls"] = ports
    return Config("PeerAuthentication", "security.istio.io", "v1beta1", name, ns, spec,
                  creation_timestamp=created)


def test_no_policy_is_permissive_and_the_narrowest_scope_wins():
    mesh = pa("default", "istio-system", STRICT, "2023-01-01T00:00:00Z")
    ns = pa("default", "default", PERMISSIVE, "2023-01-02T00:00:00Z")
    workload = pa("details", "default", DISABLE, "2023-01-03T00:00:00Z", selector={"app": "details"})
    assert mtls_mode([], "default", {"app": "details"}, 9080) == PERMISSIVE
    assert mtls_mode([mesh], "default", {"app": "details"}, 9080) == STRICT
    assert mtls_mode([mesh], "other", {}, 9080) == STRICT  # mesh-wide reaches every namespace
    assert mtls_mode([mesh, ns], "default", {"app": "details"}, 9080) == PERMISSIVE
    assert mtls_mode([mesh, ns], "other", {}, 9080) == STRICT
    assert mtls_mode([mesh, ns, workload], "default", {"app": "details"}, 9080) == DISABLE
    assert mtls_mode([mesh, ns, workload], "default", {"app": "reviews"}, 9080) == PERMISSIVE


def test_unset_inherits_oldest_wins_ports_override_and_root_selectors_are_ignored():
    mesh = pa("default", "istio-system", STRICT, "2023-01-01T00:00:00Z")
    unset = pa("default", "default", None, "2023-01-02T00:00:00Z")
    assert mtls_mode([mesh, unset], "default", {}, 9080) == STRICT
    newer = pa("b", "default", DISABLE, "2023-01-05T00:00:00Z")
    older = pa("a", "default", PERMISSIVE, "2023-01-04T00:00:00Z")
    assert mtls_mode([mesh, newer, older], "default", {}, 9080) == PERMISSIVE
    ported = pa("details", "default", None, "2023-01-03T00:00:00Z", selector={"app": "details"},
                ports={"9080": {"mode": DISABLE}, "9090": {"mode": "UNSET"}})
    assert mtls_mode([mesh, ported], "default", {"app": "details"}, 9080) == DISABLE
    assert mtls_mode([mesh, ported], "default", {"app": "details"}, 9090) == STRICT
    root_selector = pa("x", "istio-system", DISABLE, "2023-01-01T00:00:00Z", selector={"app": "details"})
    assert mtls_mode([mesh, root_selector], "default", {"app": "details"}, 9080) == STRICT


# -- generators ---------------------------------------------------------------------------------
class _Registry:
    def __init__(self, services, endpoints):
        self._services, self._endpoints = services, endpoints

    def services(self):
        return self._services

    def get_service(self, hostname):
        return next((s for s in self._services if s.hostname == hostname), None)

    def endpoints(self, hostname, port):
        return self._endpoints.get((hostname, port), [])


DETAILS = Service("details.default.svc.cluster.local", "default", "details", [Port("http", 9080, "HTTP")])
DETAILS_EP = IstioEndpoint("127.10.0.3", 9080, "http", {"app": "details"}, DETAILS_ID, tls_mode="istio",
                           namespace="default")
PLAIN_EP = IstioEndpoint("127.10.0.9", 9080, "http", {"app": "details"}, "", tls_mode="disabled",
                         namespace="default")


def push_with(policies=(), mtls_addresses=frozenset()) -> PushContext:
    push = PushContext.build(_Registry([DETAILS], {(DETAILS.hostname, 9080): [DETAILS_EP, PLAIN_EP]}), None,
                             mtls_addresses=mtls_addresses)
    push.peer_authentications = list(policies)
    return push


def sidecar(with_cert: bool) -> Proxy:
    """A sidecar of mesh's loopback demo: no capture (INTERCEPTION_MODE=NONE)."""
    metadata = {"NAMESPACE": "default", "INTERCEPTION_MODE": "NONE", **({SDS_METADATA: "SDS"} if with_cert else {})}
    return Proxy("sidecar", ["127.10.0.3"], "details-v1.default", "default.svc.cluster.local", metadata,
                 labels={"app": "details"})


def test_outbound_clusters_use_auto_mtls_only_for_a_proxy_with_a_certificate():
    push = push_with()
    plain = build_outbound_clusters(push, DETAILS)[0]
    assert "transportSocketMatches" not in plain
    mtls = build_outbound_clusters(push, DETAILS, auto_mtls=True)[0]
    tls_match, default_match = mtls["transportSocketMatches"]
    assert tls_match["match"] == {"tlsMode": "istio"} and default_match["match"] == {}
    ctx = tls_match["transportSocket"]["typedConfig"]
    common = ctx["commonTlsContext"]
    assert ctx["sni"] == "outbound_.9080_._.details.default.svc.cluster.local"
    # ALPNInMeshWithMxc: https://github.com/istio/istio/blob/1.19.0/pilot/pkg/networking/util/util.go#L112-L115,
    # chosen for a non-HTTP/2 cluster at cluster_builder.go#L1094-L1100
    assert common["alpnProtocols"] == ["istio-peer-exchange", "istio"]
    # https://github.com/istio/istio/blob/1.19.0/pilot/pkg/networking/core/v1alpha3/cluster_builder.go#L1390-L1398
    assert common["tlsParams"] == {"tlsMinimumProtocolVersion": "TLSv1_2", "tlsMaximumProtocolVersion": "TLSv1_3"}
    assert [s["name"] for s in common["tlsCertificateSdsSecretConfigs"]] == ["default"]
    validation = common["combinedValidationContext"]
    assert validation["validationContextSdsSecretConfig"]["name"] == "ROOTCA"
    assert validation["defaultValidationContext"]["matchTypedSubjectAltNames"] == [
        {"sanType": "URI", "matcher": {"exact": DETAILS_ID}}]
    to_bytes(CLUSTER, mtls)  # Envoy's message classes accept it


def test_endpoints_with_a_certified_sidecar_go_to_its_inbound_port_marked_for_tls():
    """Without capture (the loopback demo) a certified sidecar's endpoint moves to its 15006; with
    capture it keeps the app's port and only the TLS marker is added."""
    assert [e["endpoint"]["address"]["socketAddress"]["portValue"]
            for g in locality_lb_endpoints([DETAILS_EP, PLAIN_EP]) for e in g["lbEndpoints"]] == [9080, 9080]
    both = frozenset({"127.10.0.3", "127.10.0.9"})
    captured = locality_lb_endpoints([DETAILS_EP, PLAIN_EP], both)
    assert [(e["endpoint"]["address"]["socketAddress"]["portValue"], "envoy.transport_socket_match" in e["metadata"][
        "filterMetadata"]) for g in captured for e in g["lbEndpoints"]] == [(9080, True), (9080, False)]
    groups = locality_lb_endpoints([DETAILS_EP, PLAIN_EP], both, uncaptured=both)
    by_ip = {e["endpoint"]["address"]["socketAddress"]["address"]: e for g in groups for e in g["lbEndpoints"]}
    sidecar_ep, plain_ep = by_ip["127.10.0.3"], by_ip["127.10.0.9"]
    assert sidecar_ep["endpoint"]["address"]["socketAddress"]["portValue"] == 15006
    assert sidecar_ep["metadata"]["filterMetadata"]["envoy.transport_socket_match"] == {"tlsMode": "istio"}
    assert plain_ep["endpoint"]["address"]["socketAddress"]["portValue"] == 9080  # no sidecar: plaintext
    assert "envoy.transport_socket_match" not in plain_ep.get("metadata", {}).get("filterMetadata", {})
    to_bytes(ENDPOINT, {"clusterName": "c", "endpoints": groups})


def test_inbound_listener_chains_follow_the_mode():
    instances = [ServiceInstance(DETAILS, 9080, DETAILS_EP)]
    strict = [pa("default", "istio-system", STRICT, "2023-01-01T00:00:00Z")]

    no_cert = build_bound_inbound_listener(sidecar(False), instances, strict, "cluster.local")
    assert [c.get("transportSocket") for c in no_cert["filterChains"]] == [None]  # nothing to serve TLS with

    permissive = build_bound_inbound_listener(sidecar(True), instances, [], "cluster.local")
    assert [c["filterChainMatch"]["transportProtocol"] for c in permissive["filterChains"]] == ["tls", "raw_buffer"]
    assert permissive["listenerFilters"][0]["name"] == "envoy.filters.listener.tls_inspector"

    listener = build_bound_inbound_listener(sidecar(True), instances, strict, "example.org")
    (chain,) = listener["filterChains"]
    tls = chain["transportSocket"]["typedConfig"]
    assert chain["filterChainMatch"] == {"transportProtocol": "tls"} and tls["requireClientCertificate"] is True
    assert tls["commonTlsContext"]["combinedValidationContext"]["defaultValidationContext"][
        "matchTypedSubjectAltNames"] == [{"sanType": "URI", "matcher": {"prefix": "spiffe://example.org/"}}]
    hcm = chain["filters"][0]["typedConfig"]
    assert hcm["forwardClientCertDetails"] == "APPEND_FORWARD"
    to_bytes(LISTENER, listener)

    disabled = [*strict, pa("d", "default", DISABLE, "2023-01-02T00:00:00Z")]
    assert "listenerFilters" not in build_bound_inbound_listener(sidecar(True), instances, disabled, "cluster.local")


def test_bootstrap_and_secrets_for_sds():
    pod = PodIdentity("details-v1", "default", "127.10.0.3")
    plain = build_bootstrap(pod, "127.0.0.1", 15010)
    # Istio's template always has the sds-grpc cluster; mesh's metadata flag asks istiod for mTLS
    assert "sds-grpc" in [c["name"] for c in plain["static_resources"]["clusters"]]
    assert SDS_METADATA not in plain["node"]["metadata"]
    boot = build_bootstrap(pod, "127.0.0.1", 15010, sds_socket="/w/sds.sock")
    sds = boot["static_resources"]["clusters"][2]
    assert sds["name"] == "sds-grpc" and boot["node"]["metadata"][SDS_METADATA] == "SDS"
    assert sds["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"] == {
        "pipe": {"path": "/w/sds.sock"}}

    ca = IstioCA.self_signed(None, "istio-system", TD)
    csr, key = make_csr(DETAILS_ID)
    chain = "".join(ca.sign_with_chain(csr, [DETAILS_ID], 60))
    cert = WorkloadCert(chain, ca.root_pem, key_to_pem(key))
    assert "PRIVATE" not in repr(cert) and cert.identities == (DETAILS_ID,)
    assert cert.created < cert.rotate_at() < cert.expires
    secrets = envoy_secrets(cert)
    assert base64.b64decode(secrets["default"]["tlsCertificate"]["privateKey"]["inlineBytes"]) == key_to_pem(key)
    assert base64.b64decode(secrets["ROOTCA"]["validationContext"]["trustedCa"]["inlineBytes"]).decode() == ca.root_pem


# -- the CLI ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("extra, message", [
    (["--ca", "nohostport", "--root-cert", "r", "--token-file", "t"], "expected HOST:PORT"),
    (["--ca", "127.0.0.1:15012"], "needs --root-cert FILE and --token-file FILE"),
    (["--root-cert", "r.pem"], "need --ca"),
    (["--ca", "127.0.0.1:15012", "--root-cert", "/nonexistent/r.pem", "--token-file", "t"], "cannot read"),
])
def test_cli_rejects_bad_certificate_flags(extra, message, capsys):
    from mesh.cli import main

    assert main(["proxy", "details-v1.default", "--ip", "127.10.0.3", *extra]) == 2
    assert message in capsys.readouterr().err


def test_cli_builds_the_certificate_settings(tmp_path):
    import argparse

    from mesh.cli.proxy import cert_config

    (tmp_path / "root.pem").write_text(IstioCA.self_signed(None, "istio-system", TD).root_pem)
    (tmp_path / "token").write_text("tok-1\n")
    args = argparse.Namespace(ca="127.0.0.1:15012", root_cert=str(tmp_path / "root.pem"),
                              token_file=str(tmp_path / "token"), trust_domain=TD, cert_ttl=60)
    cfg = cert_config(args)
    assert cfg.ca_address == "127.0.0.1:15012" and cfg.ttl_seconds == 60 and cfg.token() == "tok-1"
    (tmp_path / "token").write_text("tok-2")  # renewed by the kubelet: read again at the next renewal
    assert cfg.token() == "tok-2"
    assert "BEGIN" not in repr(cfg)


# -- real Envoys ---------------------------------------------------------------------------------
SPEED = 1.0  # trace seconds per real second: bookinfo at t=5, STRICT at t=10
WORKLOAD_TTL = 4  # seconds: the agents renew every ~2 s while the tests run
STRICT_AT = 10.0


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record):
        try:
            self.messages.append(self.format(record))
        except Exception:  # noqa: BLE001
            pass


def _pods() -> dict[str, dict]:
    """details and productpage from the trace, before any server runs: their IPs must be free."""
    pods = {}
    for event in to_loopback(load_trace("mtls")).events:  # the addresses the server below replays
        obj = event.object
        if obj.get("kind") == "Pod" and obj["metadata"]["labels"].get("app") in ("details", "productpage"):
            pods[obj["metadata"]["labels"]["app"]] = obj
    return pods


@pytest.fixture(scope="module")
def mesh():
    loop = LoopThread()
    state: dict = {"records": _Records()}
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(state["records"])
    root.setLevel(logging.DEBUG)
    pods = _pods()
    # Other tests may be using bookinfo's pod IPs right now: wait for ours to be free first.
    deadline = time.monotonic() + 120
    while not all(port_free(p["status"]["podIP"], port) for p in pods.values() for port in (9080, 15006, 15080)):
        assert time.monotonic() < deadline, "bookinfo pod addresses stayed busy"
        time.sleep(0.2)

    async def up():
        state["apps"] = [await start_app(p["status"]["podIP"], 9080, app) for app, p in pods.items()]
        server = Server(ServerArgs(trace="mtls", speed=SPEED, clock=RealClock(), loopback_addresses=True,
                                   ports={name: 0 for name in DEFAULT_PORTS}))
        server.run_all()
        await server.start()
        state["server"] = server
        informer = server.kube_client.informer("pods")
        await wait_until(lambda: all(informer.get(p["metadata"]["name"], "default") for p in pods.values()),
                         timeout=30, what="bookinfo pods")
        agents = {}
        for app, pod in pods.items():
            ident = PodIdentity.from_pod(informer.get(pod["metadata"]["name"], "default"))
            certs = WorkloadCertConfig(
                f"127.0.0.1:{server.bound_ports['secure_xds']}", server.ca.root_pem,
                lambda ident=ident: server.service_account_tokens.issue(ident.namespace, ident.service_account),
                trust_domain=TD, ttl_seconds=WORKLOAD_TTL)
            agents[app] = EnvoyAgent(ident, "127.0.0.1", server.bound_ports["xds"], certs=certs)
            await agents[app].start()
        state["agents"] = agents
        for agent in agents.values():
            await agent.wait_ready()
        # both sidecars known to istiod as mTLS-capable, and the client's endpoints say so
        await wait_until(lambda: {a.pod.ip for a in agents.values()} <= server.ads.push_context.mtls_addresses
                         and all(synced(server.ads, f"{a.pod.name}.default") for a in agents.values()),
                         timeout=20, what="sidecars synced with mTLS endpoints")

    try:
        loop.run(up(), timeout=90)
        yield loop, state
    finally:
        async def down():
            for agent in state.get("agents", {}).values():
                await agent.stop()
                agent.cleanup()
            for runner in state.get("apps", []):
                await runner.cleanup()
            if "server" in state:
                await state["server"].stop()

        loop.run(down(), timeout=30)
        loop.close()
        root.removeHandler(state["records"])
        root.setLevel(old_level)


def _trace_time(state) -> float:
    return state["server"].clock.now() * SPEED


def _client_context(ca: IstioCA, identity: str | None) -> ssl.SSLContext:
    """A TLS client trusting only the mesh root, optionally with a workload certificate of its own."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False  # workload certificates name a SPIFFE identity, not a host
    ctx.load_verify_locations(cadata=ca.root_pem)
    if identity:
        csr, key = make_csr(identity)
        chain = "".join(ca.sign_with_chain(csr, [identity], 300))
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            Path(d, "c.pem").write_text(chain)
            Path(d, "k.pem").write_bytes(key_to_pem(key))
            ctx.load_cert_chain(str(Path(d, "c.pem")), str(Path(d, "k.pem")))
    return ctx


def _handshake(ip: str, ctx: ssl.SSLContext, request: bytes | None = None) -> tuple[x509.Certificate, bytes]:
    with socket.create_connection((ip, 15006), timeout=5) as raw, ctx.wrap_socket(raw) as tls:
        cert = x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))
        answer = b""
        if request:
            tls.sendall(request)
            answer = tls.recv(65536)
        return cert, answer


async def _plaintext(ip: str):
    async with aiohttp.ClientSession() as session, session.get(
            f"http://{ip}:15006/", headers={"Host": "details:9080"}, timeout=aiohttp.ClientTimeout(total=5)) as r:
        return r.status, await r.json()


@pytest.mark.envoy
def test_permissive_accepts_plaintext_and_mtls(mesh):
    loop, state = mesh
    assert _trace_time(state) < STRICT_AT, "the mesh came up too slowly to see PERMISSIVE"
    details, productpage = state["agents"]["details"], state["agents"]["productpage"]
    status, body = loop.run(_plaintext(details.pod.ip))
    assert status == 200 and body["app"] == "details"
    assert "x-forwarded-client-cert" not in {k.lower() for k in body["headers"]}
    status, body, _ = loop.run(get(productpage.proxy_address, "details:9080"))
    assert status == 200 and body["app"] == "details"
    xfcc = {k.lower(): v for k, v in body["headers"].items()}["x-forwarded-client-cert"]
    assert f"By={DETAILS_ID}" in xfcc and f"URI={PRODUCTPAGE_ID}" in xfcc


@pytest.mark.envoy
def test_strict_refuses_plaintext_and_serves_mtls_through_the_client_sidecar(mesh):
    loop, state = mesh
    server, details, productpage = state["server"], state["agents"]["details"], state["agents"]["productpage"]
    loop.run(wait_until(lambda: _trace_time(state) >= STRICT_AT + 0.5, timeout=30, what="STRICT applied"))
    loop.run(wait_until(lambda: server.ads.push_context.peer_authentications
                        and synced(server.ads, f"{details.pod.name}.default"), timeout=15, what="details synced"))
    with pytest.raises((aiohttp.ClientError, ConnectionError)):
        loop.run(_plaintext(details.pod.ip))
    status, body, _ = loop.run(get(productpage.proxy_address, "details:9080"))
    assert status == 200 and body["app"] == "details"
    xfcc = {k.lower(): v for k, v in body["headers"].items()}["x-forwarded-client-cert"]
    assert f"URI={PRODUCTPAGE_ID}" in xfcc
    # TLS without a client certificate is refused too
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        _handshake(details.pod.ip, _client_context(server.ca, None), b"GET / HTTP/1.1\r\nHost: details:9080\r\n\r\n")


@pytest.mark.envoy
def test_the_server_presents_its_spiffe_identity_signed_by_the_mesh_root(mesh):
    _loop, state = mesh
    server, details = state["server"], state["agents"]["details"]
    ctx = _client_context(server.ca, PRODUCTPAGE_ID)
    leaf, answer = _handshake(details.pod.ip, ctx, b"GET / HTTP/1.1\r\nHost: details:9080\r\nConnection: close\r\n\r\n")
    assert uri_sans(leaf) == (DETAILS_ID,)
    assert leaf.subject.rfc4514_string() == ""  # Istio's workload certificates have an empty subject
    verify_chain(leaf, [], server.ca.bundle.root_certs)
    lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    assert lifetime.total_seconds() <= WORKLOAD_TTL + 120 + 1  # the TTL asked for, plus the CA's backdating
    assert answer.startswith(b"HTTP/1.1 200")


@pytest.mark.envoy
def test_a_short_ttl_rotates_without_failed_requests(mesh):
    loop, state = mesh
    server, details, productpage = state["server"], state["agents"]["details"], state["agents"]["productpage"]
    ctx = _client_context(server.ca, PRODUCTPAGE_ID)
    first_serial = _handshake(details.pod.ip, ctx)[0].serial_number
    rotations = {name: a.rotations for name, a in state["agents"].items()}

    async def traffic(seconds: float) -> list[int]:
        statuses = []
        end = time.monotonic() + seconds
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < end:
                batch = await asyncio.gather(*(get(productpage.proxy_address, "details:9080", session=session)
                                               for _ in range(5)))
                statuses += [s for s, _, _ in batch]
                await asyncio.sleep(0.05)
        return statuses

    statuses = loop.run(traffic(2.5 * WORKLOAD_TTL / 2), timeout=60)
    assert statuses and set(statuses) == {200}, statuses
    for name, agent in state["agents"].items():
        assert agent.rotations >= rotations[name] + 2, (name, agent.rotations, agent.rotation_errors)
        assert agent.sds.nacks == []
    leaf = _handshake(details.pod.ip, ctx)[0]
    assert leaf.serial_number != first_serial and uri_sans(leaf) == (DETAILS_ID,)


@pytest.mark.envoy
def test_private_keys_never_appear_in_logs_or_debug_endpoints(mesh):
    loop, state = mesh
    server = state["server"]
    agents = state["agents"]
    secrets = []
    for agent in agents.values():
        key_pem = agent.workload_cert.key_pem
        secrets += [key_pem.decode().splitlines()[5], base64.b64encode(key_pem).decode()[100:160]]
        der = serialization.load_pem_private_key(key_pem, None).private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        secrets.append(der.hex()[200:260])
    texts = list(state["records"].messages)
    for agent in agents.values():
        texts.append(agent.log_path.read_text(errors="replace"))
        texts += [p.read_text(errors="replace") for p in agent.workdir.iterdir() if p.is_file()]
        dump = loop.run(agent.admin("/config_dump?include_eds"))
        assert "dynamic_active_secrets" in dump  # the secrets are there, redacted
        texts.append(dump)
    base = f"http://127.0.0.1:{server.bound_ports['debug']}"
    for path in ("/debug/ca", "/debug/syncz", "/debug/configz",
                 *(f"/debug/config_dump?proxyID={a.pod.name}.default" for a in agents.values())):
        with urllib.request.urlopen(base + path, timeout=10) as r:
            texts.append(r.read().decode())
    joined = "\n".join(texts)
    assert "PRIVATE KEY" not in joined
    for secret in secrets:
        assert secret not in joined
    assert any(DETAILS_ID in t for t in texts)  # the identities themselves are shown
    json.loads(texts[-1])
