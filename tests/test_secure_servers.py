"""Stages 11 and 12 in a running Server: TLS on the secure xDS port and the webhook port (checked
by an ``ssl`` client that trusts only the mesh root), CreateCertificate through the server,
caBundle patching in a replayed cluster, and no secrets in logs or debug endpoints."""

import asyncio
import base64
import json
import logging
import ssl

import aiohttp
import grpc
import pytest

from mesh.bootstrap import Server, ServerArgs
from mesh.security.ca import IstioCA, key_to_pem, load_pem_certs, make_csr
from mesh.security.proto import ca_pb2, ca_pb2_grpc

ISTIOD = "istiod.istio-system.svc"
REVIEWS = "spiffe://cluster.local/ns/default/sa/bookinfo-reviews"
PORTS = ("xds", "secure_xds", "monitoring", "webhook", "debug")


def new_server(**kw) -> Server:
    server = Server(ServerArgs(trace="bookinfo", ports={p: 0 for p in PORTS}, **kw))
    server.run_all()
    return server


def serve(scenario, **kw):
    async def main():
        server = new_server(**kw)
        await server.start()
        try:
            return await scenario(server)
        finally:
            await server.stop()
    return asyncio.run(main())


def client_context(root_pem: str, alpn: list[str] | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cadata=root_pem)  # trusts only this root, checks the host name
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


async def handshake(port: int, ctx: ssl.SSLContext) -> ssl.SSLObject:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname=ISTIOD)
    try:
        return writer.get_extra_info("ssl_object")
    finally:
        writer.close()


@pytest.fixture(scope="module")
def other_root() -> str:
    return IstioCA.self_signed(None, "istio-system", "cluster.local").root_pem  # same name, different key


def test_both_ports_serve_istiods_certificate_to_a_client_trusting_only_the_mesh_root(other_root):
    async def scenario(server):
        root = server.ca.root_pem
        results = {}
        for name in ("secure_xds", "webhook"):
            alpn = ["h2"] if name == "secure_xds" else None
            tls = await handshake(server.bound_ports[name], client_context(root, alpn))
            leaf = load_pem_certs(ssl.DER_cert_to_PEM_cert(tls.getpeercert(binary_form=True)).encode())[0]
            results[name] = (tls.version(), tls.selected_alpn_protocol(), leaf == server.istiod_cert.leaf)
            with pytest.raises(ssl.SSLCertVerificationError):
                await handshake(server.bound_ports[name], client_context(other_root, alpn))
        return results

    results = serve(scenario)
    assert results["secure_xds"] == ("TLSv1.3", "h2", True)
    assert results["webhook"][0] == "TLSv1.3" and results["webhook"][2]


def test_create_certificate_through_the_server_with_a_token_then_with_the_certificate():
    async def scenario(server):
        server.clock.advance(10)  # the bookinfo ServiceAccounts arrive at t=5
        token = server.service_account_tokens.issue("default", "bookinfo-reviews")
        csr, key = make_csr(REVIEWS)
        target = f"127.0.0.1:{server.bound_ports['secure_xds']}"
        options = [("grpc.ssl_target_name_override", ISTIOD)]
        root = server.ca.root_pem.encode()
        async with grpc.aio.secure_channel(target, grpc.ssl_channel_credentials(root), options=options) as ch:
            stub = ca_pb2_grpc.IstioCertificateServiceStub(ch)
            first = await stub.CreateCertificate(ca_pb2.IstioCertificateRequest(csr=csr),
                                                 metadata=[("authorization", f"Bearer {token}")], timeout=10)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.CreateCertificate(ca_pb2.IstioCertificateRequest(csr=csr), timeout=10)
        creds = grpc.ssl_channel_credentials(root, key_to_pem(key), "".join(first.cert_chain).encode())
        async with grpc.aio.secure_channel(target, creds, options=options) as ch:
            second = await ca_pb2_grpc.IstioCertificateServiceStub(ch).CreateCertificate(
                ca_pb2.IstioCertificateRequest(csr=csr, validity_duration=3600), timeout=10)
        return first, second, refused.value.code(), server.ca_service.signed

    first, second, refused, signed = serve(scenario)
    assert refused == grpc.StatusCode.UNAUTHENTICATED
    assert [s["auth_source"] for s in signed] == ["IDToken", "ClientCertificate"]
    assert all(s["identities"] == [REVIEWS] for s in signed)
    assert signed[1]["ttl_seconds"] == 3600 + 120
    assert first.cert_chain[-1] == second.cert_chain[-1]  # both end at the mesh root


def test_a_client_certificate_from_a_root_only_in_the_trust_bundle_is_not_accepted():
    # istiod's secure port trusts the CA's root alone (createPeerCertVerifier); a root that only
    # MeshConfig's caCertificates adds to the workload trust bundle does not authenticate a caller.
    stranger = IstioCA.self_signed(None, "istio-system", "cluster.local")

    async def scenario(server):
        server.environment.trust_bundle.add_mesh_config({"caCertificates": [{"pem": stranger.root_pem}]})
        assert stranger.root_pem.strip() in "".join(server.environment.trust_bundle.pems())
        await server.start()
        csr, key = make_csr(REVIEWS)
        chain = "".join(stranger.sign_with_chain(csr, [REVIEWS], 3600)).encode()
        creds = grpc.ssl_channel_credentials(server.ca.root_pem.encode(), key_to_pem(key), chain)
        target = f"127.0.0.1:{server.bound_ports['secure_xds']}"
        try:
            async with grpc.aio.secure_channel(target, creds, options=[("grpc.ssl_target_name_override", ISTIOD)]) as ch:
                with pytest.raises(grpc.aio.AioRpcError):
                    await ca_pb2_grpc.IstioCertificateServiceStub(ch).CreateCertificate(
                        ca_pb2.IstioCertificateRequest(csr=csr), timeout=10)
            return list(server.ca_service.signed)
        finally:
            await server.stop()

    assert asyncio.run(scenario(new_server(multi_root_mesh=True))) == []


def test_services_registered_before_start_are_served_and_after_start_refused():
    def echo(request: bytes, context) -> bytes:
        return request[::-1]

    handler = grpc.method_handlers_generic_handler("test.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)})

    async def scenario(server):
        root = server.ca.root_pem.encode()
        async with grpc.aio.secure_channel(f"127.0.0.1:{server.bound_ports['secure_xds']}",
                                           grpc.ssl_channel_credentials(root),
                                           options=[("grpc.ssl_target_name_override", ISTIOD)]) as ch:
            answer = await ch.unary_unary("/test.Echo/Echo")(b"mesh", timeout=10)
        with pytest.raises(RuntimeError, match="register services before Server.start"):
            server.secure_grpc_server.add_generic_rpc_handlers([handler])
        return answer, server.secure_grpc_server.services

    async def main():
        server = new_server()
        server.secure_grpc_server.add_generic_rpc_handlers([handler])  # what the ADS stage will do
        await server.start()
        try:
            return await scenario(server)
        finally:
            await server.stop()

    answer, services = asyncio.run(main())
    assert answer == b"hsem"
    assert services == ["envoy.service.discovery.v3.AggregatedDiscoveryService",
                        "istio.v1.auth.IstioCertificateService", "test.Echo"]  # ADS too, as istiod serves it on 15012


def test_webhook_port_serves_inject_and_validate_over_https():
    async def scenario(server):
        ctx = client_context(server.ca.root_pem)
        base = f"https://127.0.0.1:{server.bound_ports['webhook']}"
        review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
            "uid": "u-1", "operation": "CREATE", "kind": {"group": "networking.istio.io", "version": "v1beta1",
                                                            "kind": "VirtualService"},
            "object": {"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
                       "metadata": {"name": "bad", "namespace": "default"}, "spec": {"http": "not a list"}}}}
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
               "spec": {"containers": [{"name": "app", "image": "app"}]}}
        inject_review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
            "uid": "u-2", "operation": "CREATE", "namespace": "default",
            "kind": {"group": "", "version": "v1", "kind": "Pod"}, "object": pod}}
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{base}/validate", json=review, ssl=ctx, server_hostname=ISTIOD) as resp:
                validated = (resp.status, await resp.json())
            async with session.post(f"{base}/inject", json=inject_review, ssl=ctx, server_hostname=ISTIOD) as resp:
                injected = (resp.status, await resp.json())
        return validated, injected

    (vstatus, validated), (istatus, injected) = serve(scenario)
    assert vstatus == 200 and validated["response"]["uid"] == "u-1"
    assert validated["response"]["allowed"] is False
    assert istatus == 200 and injected["response"]["uid"] == "u-2" and injected["response"]["allowed"]
    patch = json.loads(base64.b64decode(injected["response"]["patch"]))
    assert any(op["path"].startswith("/spec/containers") for op in patch)


def test_ca_bundle_of_the_mesh_webhook_configurations_is_patched_and_kept():
    server = new_server()
    try:
        want = base64.b64encode(server.ca.root_pem.encode()).decode()
        client = server.kube_client

        def bundles(kind: str, name: str) -> list:
            return [wh["clientConfig"].get("caBundle") for wh in client.get(kind, name)["webhooks"]]

        assert bundles("mutatingwebhookconfigurations", "istio-sidecar-injector") == [want] * 4
        assert bundles("validatingwebhookconfigurations", "istio-validator-istio-system") == [want]
        assert sorted(server.webhook_patcher.patched) == [
            "MutatingWebhookConfiguration/istio-sidecar-injector",
            "ValidatingWebhookConfiguration/istio-validator-istio-system"]

        # An installer re-applies the configuration without the bundle: istiod puts it back.
        stale = client.get("mutatingwebhookconfigurations", "istio-sidecar-injector")
        stale = {**stale, "webhooks": [{**wh, "clientConfig": {k: v for k, v in wh["clientConfig"].items()
                                                               if k != "caBundle"}} for wh in stale["webhooks"]]}
        client.update(stale)
        assert bundles("mutatingwebhookconfigurations", "istio-sidecar-injector") == [want] * 4

        # Another revision's configuration and a foreign webhook are left alone.
        canary = {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
                  "metadata": {"name": "istio-sidecar-injector-canary", "labels": {"istio.io/rev": "canary"}},
                  "webhooks": [{"name": "rev.namespace.sidecar-injector.istio.io", "clientConfig": {}}]}
        other = {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
                 "metadata": {"name": "cert-manager", "labels": {"istio.io/rev": "default"}},
                 "webhooks": [{"name": "webhook.cert-manager.io", "clientConfig": {}}]}
        client.create(canary)
        client.create(other)
        assert bundles("mutatingwebhookconfigurations", "istio-sidecar-injector-canary") == [None]
        assert bundles("mutatingwebhookconfigurations", "cert-manager") == [None]
    finally:
        server.close()


def test_with_tls_files_not_signed_by_the_mesh_ca_nothing_is_patched(tmp_path):
    other = IstioCA.self_signed(None, "istio-system", "elsewhere.local")
    csr, key = make_csr(ISTIOD)
    (tmp_path / "cert.pem").write_text("".join(other.sign_with_chain(csr, [ISTIOD])))
    (tmp_path / "key.pem").write_bytes(key_to_pem(key))
    server = new_server(tls_cert_file=str(tmp_path / "cert.pem"), tls_key_file=str(tmp_path / "key.pem"))
    try:
        assert server.webhook_patcher is None
        mwc = server.kube_client.get("mutatingwebhookconfigurations", "istio-sidecar-injector")
        assert all("caBundle" not in wh["clientConfig"] for wh in mwc["webhooks"])
    finally:
        server.close()


def test_without_a_cluster_there_is_no_webhook_server_but_the_ca_still_serves():
    async def main():
        server = Server(ServerArgs(registries=(), ports={p: 0 for p in PORTS}))
        server.run_all()
        await server.start()
        try:
            csr, _ = make_csr(REVIEWS)
            async with grpc.aio.secure_channel(f"127.0.0.1:{server.bound_ports['secure_xds']}",
                                               grpc.ssl_channel_credentials(server.ca.root_pem.encode()),
                                               options=[("grpc.ssl_target_name_override", ISTIOD)]) as ch:
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await ca_pb2_grpc.IstioCertificateServiceStub(ch).CreateCertificate(
                        ca_pb2.IstioCertificateRequest(csr=csr), metadata=[("authorization", "Bearer x")], timeout=10)
            return sorted(server.bound_ports), err.value.code(), server.token_reviewer
        finally:
            await server.stop()

    ports, code, reviewer = asyncio.run(main())
    assert ports == ["debug", "monitoring", "secure_xds", "xds"]  # no webhook port: nothing to admit
    assert code == grpc.StatusCode.UNAUTHENTICATED and reviewer is None  # no cluster to review tokens


def test_private_keys_and_tokens_never_appear_in_logs_or_debug_endpoints(caplog):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="mesh")

    async def scenario(server):
        server.clock.advance(10)
        token = server.service_account_tokens.issue("default", "bookinfo-reviews")
        csr, _ = make_csr(REVIEWS)
        async with grpc.aio.secure_channel(f"127.0.0.1:{server.bound_ports['secure_xds']}",
                                           grpc.ssl_channel_credentials(server.ca.root_pem.encode()),
                                           options=[("grpc.ssl_target_name_override", ISTIOD)]) as ch:
            await ca_pb2_grpc.IstioCertificateServiceStub(ch).CreateCertificate(
                ca_pb2.IstioCertificateRequest(csr=csr), metadata=[("authorization", f"Bearer {token}")], timeout=10)
        pages = {}
        async with aiohttp.ClientSession() as session:
            base = f"http://127.0.0.1:{server.bound_ports['debug']}"
            async with session.get(f"{base}/debug") as resp:
                endpoints = (await resp.json())["endpoints"]
            for path in endpoints:
                async with session.get(f"{base}{path}") as resp:
                    pages[path] = await resp.text()
        return token, pages

    token, pages = serve(scenario)
    assert "/debug/ca" in pages and "bookinfo-reviews" in pages["/debug/ca"]
    everything = caplog.text + "".join(pages.values())
    assert "CSR signed for" in caplog.text
    assert "PRIVATE KEY" not in everything
    assert token.split(".")[2] not in everything


def test_against_an_api_server_the_patch_goes_through_the_rest_api(tmp_path):
    """``--kubeconfig``: the same stages over HTTP to the replay API server (which has no
    TokenReview API, so token callers are refused there rather than failing the server)."""
    import time

    from mesh.kube.apiserver import ApiServer
    from mesh.kube.live import LiveClient
    from mesh.kube.trace import load_trace
    from mesh.security.caserver import AuthenticationError, KubeJWTAuthenticator
    from mesh.security.tokens import LiveTokenReviewer

    with ApiServer(load_trace("bookinfo"), speed=0) as api:
        kubeconfig = str(api.write_kubeconfig(tmp_path / "kubeconfig"))
        server = Server(ServerArgs(kubeconfig=kubeconfig, ports={p: 0 for p in PORTS}))
        server.run_until("init_secure_webhook_server")
        observer = LiveClient(kubeconfig)
        try:
            want = base64.b64encode(server.ca.root_pem.encode()).decode()
            deadline = time.monotonic() + 5
            while True:
                mwc = observer.get("mutatingwebhookconfigurations", "istio-sidecar-injector")
                if all(wh["clientConfig"].get("caBundle") == want for wh in mwc["webhooks"]):
                    break
                assert time.monotonic() < deadline, "the caBundle never reached the API server"
                time.sleep(0.05)
            assert isinstance(server.token_reviewer, LiveTokenReviewer)

            class Ctx:
                def invocation_metadata(self):
                    return [("authorization", "Bearer some-token")]

            auth = KubeJWTAuthenticator(server.token_reviewer, lambda: "cluster.local")
            with pytest.raises(AuthenticationError, match="token review failed"):
                asyncio.run(auth.authenticate(Ctx()))
        finally:
            observer.close()
            server.close()
