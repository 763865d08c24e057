"""IstioCertificateService/CreateCertificate over real gRPC on loopback, through the TLS front of the
secure port: token callers, certificate callers, and every refusal."""

import asyncio
import base64
import json
import logging
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from google.protobuf import struct_pb2

from mesh.bootstrap.secure_grpc import SecureGrpcServer
from mesh.security.ca import IstioCA, key_to_pem, load_pem_certs, make_csr, verify_chain
from mesh.security.caserver import CertificateService, ClientCertAuthenticator, KubeJWTAuthenticator
from mesh.security.istiod_cert import sign_istiod_cert
from mesh.security.proto import ca_pb2, ca_pb2_grpc
from mesh.security.tls import server_context
from mesh.security.tokens import LiveTokenReviewer, ServiceAccountTokens

ROOT = Path(__file__).resolve().parent.parent
REVIEWS = "spiffe://cluster.local/ns/default/sa/reviews"
RATINGS = "spiffe://cluster.local/ns/default/sa/ratings"
ISTIOD = "istiod.istio-system.svc"


@pytest.fixture(scope="module")
def ca():
    return IstioCA.self_signed(None, "istio-system", "cluster.local")


@pytest.fixture(scope="module")
def foreign_ca():
    return IstioCA.self_signed(None, "istio-system", "evil.local")


@pytest.fixture(scope="module")
def istiod_cert(ca):
    return sign_istiod_cert(ca, [ISTIOD])


class Harness:
    """A secure gRPC server with the CA service on 127.0.0.1, and a client to call it."""

    def __init__(self, ca, istiod_cert, tokens):
        self.ca = ca
        self.tokens = tokens
        self.server = SecureGrpcServer(lambda: server_context(istiod_cert, ca.root_pem, alpn=["h2"]))
        self.service = CertificateService(ca, [ClientCertAuthenticator(self.server.peer_certificate),
                                               KubeJWTAuthenticator(tokens, lambda: "cluster.local")])
        ca_pb2_grpc.add_IstioCertificateServiceServicer_to_server(self.service, self.server)

    async def call(self, csr: str, token: str | None = None, client_cert: tuple[bytes, bytes] | None = None,
                   ttl: int = 0, metadata: dict | None = None, trust: str | None = None):
        creds = grpc.ssl_channel_credentials((trust or self.ca.root_pem).encode(),
                                             *(client_cert or (None, None)))
        request = ca_pb2.IstioCertificateRequest(csr=csr, validity_duration=ttl)
        if metadata:
            request.metadata.CopyFrom(_struct(metadata))
        md = [("authorization", f"Bearer {token}")] if token else None
        async with grpc.aio.secure_channel(f"127.0.0.1:{self.server.port}", creds,
                                           options=[("grpc.ssl_target_name_override", ISTIOD)]) as channel:
            stub = ca_pb2_grpc.IstioCertificateServiceStub(channel)
            return await stub.CreateCertificate(request, metadata=md, timeout=10)


def _struct(d: dict) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(d)
    return s


def run(ca, istiod_cert, scenario, tokens=None):
    """Start the server, run ``scenario(harness)``, stop; returns what the scenario returns."""
    async def main():
        h = Harness(ca, istiod_cert, tokens or ServiceAccountTokens())
        await h.server.start("127.0.0.1", 0)
        try:
            return await scenario(h)
        finally:
            await h.server.stop()
    return asyncio.run(main())


def leaf_of(response) -> x509.Certificate:
    return load_pem_certs(response.cert_chain[0].encode())[0]


def uris(cert: x509.Certificate) -> list[str]:
    return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.UniformResourceIdentifier)


async def expect_error(call, code: grpc.StatusCode) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    assert err.value.code() == code, err.value.details()
    return err.value.details()


# -- token and certificate callers ---------------------------------------------------------------
def test_token_caller_gets_its_service_account_identity_then_renews_with_the_certificate(ca, istiod_cert):
    async def scenario(h):
        csr, key = make_csr(REVIEWS)
        first = await h.call(csr, token=h.tokens.issue("default", "reviews"))
        leaf = leaf_of(first)
        assert uris(leaf) == [REVIEWS]
        assert first.cert_chain[-1].strip() == ca.root_pem.strip()
        verify_chain(leaf, [], ca.bundle.root_certs)
        assert (leaf.not_valid_after_utc - leaf.not_valid_before_utc).total_seconds() == 24 * 3600 + 120

        # Renewal: no token, the certificate just issued is the credential; a shorter TTL is honoured.
        csr2, _ = make_csr(REVIEWS)
        second = await h.call(csr2, client_cert=(key_to_pem(key), "".join(first.cert_chain).encode()), ttl=600)
        leaf2 = leaf_of(second)
        assert uris(leaf2) == [REVIEWS]
        assert (leaf2.not_valid_after_utc - leaf2.not_valid_before_utc).total_seconds() == 600 + 120
        assert leaf2.public_key().public_numbers() != leaf.public_key().public_numbers()  # the new CSR's key
        return [s["auth_source"] for s in h.service.signed]

    assert run(ca, istiod_cert, scenario) == ["IDToken", "ClientCertificate"]


def test_a_csr_without_a_san_is_signed_for_the_callers_identity(ca, istiod_cert):
    """Istio signs the caller's identity whatever the CSR asks; an empty CSR asks nothing."""
    async def scenario(h):
        csr, _ = make_csr("workload.example")  # a DNS SAN, no URI: ignored, the caller's identity is used
        response = await h.call(csr, token=h.tokens.issue("default", "ratings"))
        cert = leaf_of(response)
        assert uris(cert) == [RATINGS]
        assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.DNSName) == []
    run(ca, istiod_cert, scenario)


# -- refusals --------------------------------------------------------------------------------------
def test_no_credentials_is_unauthenticated(ca, istiod_cert):
    async def scenario(h):
        csr, _ = make_csr(REVIEWS)
        await expect_error(h.call(csr), grpc.StatusCode.UNAUTHENTICATED)
        assert h.service.signed == []
        assert h.service.refused[-1]["code"] == "UNAUTHENTICATED"
    run(ca, istiod_cert, scenario)


def test_bad_tokens_are_unauthenticated(ca, istiod_cert):
    stranger = ServiceAccountTokens()  # a different signing key: another cluster's tokens
    clock = {"now": 1_000_000.0}
    tokens = ServiceAccountTokens(now=lambda: clock["now"])

    async def scenario(h):
        csr, _ = make_csr(REVIEWS)
        good = tokens.issue("default", "reviews", ttl=60)
        head, body, sig = good.split(".")
        claims = json.loads(base64.urlsafe_b64decode(body + "=="))
        claims["kubernetes.io"]["serviceaccount"]["name"] = "istiod"  # try to become someone else
        forged_body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
        bad = {
            "another issuer's key": stranger.issue("default", "reviews"),
            "forged claims": f"{head}.{forged_body}.{sig}",
            "wrong audience": tokens.issue("default", "reviews", audiences=("some-other-api",)),
            "not a JWT": "opaque-token",
        }
        for token in bad.values():
            await expect_error(h.call(csr, token=token), grpc.StatusCode.UNAUTHENTICATED)
        clock["now"] += 61
        await expect_error(h.call(csr, token=good), grpc.StatusCode.UNAUTHENTICATED)  # expired
        assert h.service.signed == []
    run(ca, istiod_cert, scenario, tokens=tokens)


def test_csr_for_another_identity_is_permission_denied(ca, istiod_cert):
    async def scenario(h):
        csr, key = make_csr(RATINGS)
        message = await expect_error(h.call(csr, token=h.tokens.issue("default", "reviews")),
                                     grpc.StatusCode.PERMISSION_DENIED)
        assert RATINGS in message and REVIEWS in message
        # The same with a certificate caller: a reviews cert cannot renew into ratings.
        own, own_key = make_csr(REVIEWS)
        chain = (await h.call(own, token=h.tokens.issue("default", "reviews"))).cert_chain
        await expect_error(h.call(csr, client_cert=(key_to_pem(own_key), "".join(chain).encode())),
                           grpc.StatusCode.PERMISSION_DENIED)
        assert len(h.service.signed) == 1
    run(ca, istiod_cert, scenario)


def test_malformed_csr_and_excessive_ttl_are_invalid_argument(ca, istiod_cert):
    async def scenario(h):
        token = h.tokens.issue("default", "reviews")
        await expect_error(h.call("not a csr", token=token), grpc.StatusCode.INVALID_ARGUMENT)
        csr, _ = make_csr(REVIEWS)
        lines = csr.splitlines()
        tampered = "\n".join([*lines[:3], lines[3][::-1], *lines[4:]])
        await expect_error(h.call(tampered, token=token), grpc.StatusCode.INVALID_ARGUMENT)
        message = await expect_error(h.call(csr, token=token, ttl=91 * 24 * 3600), grpc.StatusCode.INVALID_ARGUMENT)
        assert "max allowed TTL" in message
        message = await expect_error(h.call(csr, token=token, ttl=10 ** 14), grpc.StatusCode.INVALID_ARGUMENT)
        assert "max allowed TTL" in message  # not an OverflowError (UNKNOWN)
        ok = await h.call(csr, token=token, ttl=90 * 24 * 3600)  # exactly the max is fine
        assert leaf_of(ok).not_valid_after_utc > leaf_of(ok).not_valid_before_utc
    run(ca, istiod_cert, scenario)


def test_impersonation_is_refused_without_a_node_authorizer(ca, istiod_cert):
    async def scenario(h):
        csr, _ = make_csr(RATINGS)
        await expect_error(h.call(csr, token=h.tokens.issue("default", "reviews"),
                                  metadata={"ImpersonatedIdentity": RATINGS}), grpc.StatusCode.UNAUTHENTICATED)
    run(ca, istiod_cert, scenario)


def test_a_client_certificate_from_another_ca_fails_the_handshake(ca, istiod_cert, foreign_ca):
    async def scenario(h):
        csr, key = make_csr(REVIEWS)
        chain = foreign_ca.sign_with_chain(csr, [REVIEWS])
        await expect_error(h.call(csr, client_cert=(key_to_pem(key), "".join(chain).encode())),
                           grpc.StatusCode.UNAVAILABLE)
        assert h.service.signed == [] and h.service.refused == []  # it never reached the service
    run(ca, istiod_cert, scenario)


def test_the_client_refuses_a_server_it_does_not_trust(ca, istiod_cert, foreign_ca):
    async def scenario(h):
        csr, _ = make_csr(REVIEWS)
        await expect_error(h.call(csr, token=h.tokens.issue("default", "reviews"), trust=foreign_ca.root_pem),
                           grpc.StatusCode.UNAVAILABLE)
    run(ca, istiod_cert, scenario)


def test_certificate_authentication_through_grpcs_own_tls(ca, istiod_cert):
    """With gRPC terminating TLS itself (client certs required), the verified cert is in auth_context."""
    async def main():
        service = CertificateService(ca, [ClientCertAuthenticator()])
        server = grpc.aio.server()
        ca_pb2_grpc.add_IstioCertificateServiceServicer_to_server(service, server)
        creds = grpc.ssl_server_credentials([(istiod_cert.key_pem, istiod_cert.chain_pem.encode())],
                                            root_certificates=ca.root_pem.encode(), require_client_auth=True)
        port = server.add_secure_port("127.0.0.1:0", creds)
        await server.start()
        try:
            csr, key = make_csr(REVIEWS)
            chain = "".join(ca.sign_with_chain(csr, [REVIEWS])).encode()
            creds = grpc.ssl_channel_credentials(ca.root_pem.encode(), key_to_pem(key), chain)
            async with grpc.aio.secure_channel(f"127.0.0.1:{port}", creds,
                                               options=[("grpc.ssl_target_name_override", ISTIOD)]) as ch:
                response = await ca_pb2_grpc.IstioCertificateServiceStub(ch).CreateCertificate(
                    ca_pb2.IstioCertificateRequest(csr=csr), timeout=10)
            return uris(leaf_of(response))
        finally:
            await server.stop(None)
    assert asyncio.run(main()) == [REVIEWS]


# -- secrets stay secret ---------------------------------------------------------------------------
def test_tokens_and_private_keys_never_reach_the_logs(ca, istiod_cert, caplog):
    caplog.set_level(logging.DEBUG)
    seen = {}

    async def scenario(h):
        csr, key = make_csr(REVIEWS)
        seen["token"] = h.tokens.issue("default", "reviews")
        response = await h.call(csr, token=seen["token"])
        await h.call(csr, client_cert=(key_to_pem(key), "".join(response.cert_chain).encode()))
        await expect_error(h.call(csr, token=seen["token"] + "x"), grpc.StatusCode.UNAUTHENTICATED)
        seen["describe"] = json.dumps(h.service.describe()) + json.dumps(h.server.describe())
        seen["repr"] = repr(h.tokens) + repr(ca) + repr(istiod_cert) + repr(ca.bundle)

    run(ca, istiod_cert, scenario)
    text = caplog.text + seen["describe"] + seen["repr"]
    assert "CSR signed for spiffe://cluster.local/ns/default/sa/reviews" in caplog.text  # logging did happen
    assert "PRIVATE KEY" not in text
    assert seen["token"].split(".")[2] not in text and seen["token"].split(".")[1] not in text


# -- token review, the reviewers ------------------------------------------------------------------
def test_service_account_tokens_check_the_cluster(tmp_path):
    from tracehelpers import write_trace

    from mesh.kube.client import ReplayClient
    from mesh.kube.trace import load_trace

    sa = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "reviews", "namespace": "default",
                                                                       "uid": "sa-uid"}}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "reviews-1", "namespace": "default", "uid": "p1"},
           "spec": {"serviceAccountName": "reviews", "containers": [{"name": "c", "image": "i"}]}}
    client = ReplayClient(load_trace(write_trace(tmp_path / "t.jsonl", [(0, "ADDED", sa), (0, "ADDED", pod)])))
    tokens = ServiceAccountTokens(client)
    with pytest.raises(KeyError, match="ServiceAccount default/ratings not found"):
        tokens.issue("default", "ratings")
    bound = tokens.issue("default", "reviews", pod=pod)
    status = tokens.review(bound, ["istio-ca"])
    assert status["authenticated"] and status["user"]["username"] == "system:serviceaccount:default:reviews"
    assert status["user"]["extra"]["authentication.kubernetes.io/pod-name"] == ["reviews-1"]
    assert status["audiences"] == ["istio-ca"]
    unbound = tokens.issue("default", "reviews", audiences=())
    assert tokens.review(unbound, None)["authenticated"]
    assert not tokens.review(unbound, ["istio-ca"])["authenticated"]
    client.delete("pods", "reviews-1", "default")
    assert "pod default/reviews-1 has been deleted" in tokens.review(bound, ["istio-ca"])["error"]
    client.delete("serviceaccounts", "reviews", "default")
    assert "has been deleted" in tokens.review(unbound, None)["error"]


def test_kube_jwt_authenticator_turns_a_review_into_a_spiffe_identity():
    class Ctx:
        def __init__(self, token):
            self.md = [("authorization", f"Bearer {token}")]

        def invocation_metadata(self):
            return self.md

    asked = []

    def reviewer(token, audiences):
        asked.append(audiences)
        return {"authenticated": True, "user": {
            "username": f"system:serviceaccount:{token}", "groups": ["system:serviceaccounts"]}}

    auth = KubeJWTAuthenticator(reviewer, lambda: "example.org")
    caller = asyncio.run(auth.authenticate(Ctx("shop:cart")))
    assert caller.identities == ("spiffe://example.org/ns/shop/sa/cart",)
    assert asked == [["istio-ca"]]  # not a JWT: reviewed with the CA audience

    def not_a_service_account(token, audiences):
        return {"authenticated": True, "user": {"username": "alice", "groups": ["system:authenticated"]}}

    from mesh.security.caserver import AuthenticationError
    with pytest.raises(AuthenticationError, match="not a service account"):
        asyncio.run(KubeJWTAuthenticator(not_a_service_account, lambda: "x").authenticate(Ctx("t")))

    def broken(token, audiences):
        raise ConnectionError("API server unreachable")

    with pytest.raises(AuthenticationError, match="token review failed: API server unreachable"):
        asyncio.run(KubeJWTAuthenticator(broken, lambda: "x").authenticate(Ctx("t")))


def test_live_token_reviewer_posts_a_token_review():
    posted = []

    class Api:
        def json(self, method, path, query, body):
            posted.append((method, path, body))
            return {"status": {"authenticated": True, "user": {"username": "system:serviceaccount:a:b"}}}

    class Live:
        api = Api()

    status = asyncio.run(LiveTokenReviewer(Live())("tok", ["istio-ca"]))
    assert status["authenticated"]
    method, path, body = posted[0]
    assert (method, path) == ("POST", "/apis/authentication.k8s.io/v1/tokenreviews")
    assert body["spec"] == {"token": "tok", "audiences": ["istio-ca"]} and body["kind"] == "TokenReview"


# -- the generated code -----------------------------------------------------------------------------
def _lower_bound(requirement_prefix: str) -> tuple[int, ...]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    spec = next(d for d in deps if d.startswith(requirement_prefix + ">="))
    return tuple(int(x) for x in re.match(r"[\w-]+>=([\d.]+)", spec).group(1).split("."))


def test_generated_modules_fit_the_declared_dependency_ranges():
    from mesh.security.proto import ca_pb2_grpc as grpc_mod

    grpc_needs = tuple(int(x) for x in grpc_mod.GRPC_GENERATED_VERSION.split("."))
    assert _lower_bound("grpcio") >= grpc_needs
    pb2 = (ROOT / "mesh/security/proto/ca_pb2.py").read_text()
    protobuf_needs = tuple(int(x) for x in re.search(
        r"Domain\.PUBLIC,\s*(\d+),\s*(\d+),\s*(\d+),", pb2).groups())
    assert _lower_bound("protobuf") + (0,) * (3 - len(_lower_bound("protobuf"))) >= protobuf_needs
    # the wire contract: pilot-agent's field numbers
    fields = {f.name: f.number for f in ca_pb2.IstioCertificateRequest.DESCRIPTOR.fields}
    assert fields == {"csr": 1, "validity_duration": 3, "metadata": 4}
    assert ca_pb2.DESCRIPTOR.package == "istio.v1.auth"


def test_committed_generated_code_matches_the_proto(tmp_path):
    pytest.importorskip("grpc_tools")
    import grpc_tools

    protos = Path(grpc_tools.__file__).parent / "_proto"
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I", ".", "-I", str(protos),
                    f"--python_out={tmp_path}", f"--grpc_python_out={tmp_path}", "mesh/security/proto/ca.proto"],
                   cwd=ROOT, check=True)
    for name in ("ca_pb2.py", "ca_pb2_grpc.py"):
        fresh = (tmp_path / "mesh/security/proto" / name).read_text()
        committed = (ROOT / "mesh/security/proto" / name).read_text()
        assert fresh == committed, f"{name} is stale: run mesh/security/proto/regenerate.sh"
