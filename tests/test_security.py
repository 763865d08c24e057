import base64
import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID
from tracehelpers import write_trace

from mesh.bootstrap import Server, ServerArgs
from mesh.security.ca import (
    CA_SECRET,
    CAError,
    IstioCA,
    cert_to_pem,
    generate_key,
    key_to_pem,
    load_pem_certs,
    make_csr,
    self_signed_root,
    verify_chain,
)
from mesh.security.istiod_cert import dns_names
from mesh.security.spiffe import identity, parse_identity
from mesh.trustbundle import TrustBundle

SPIFFE = "spiffe://cluster.local/ns/default/sa/bookinfo-reviews"


@pytest.fixture(scope="module")
def ca():
    return IstioCA.self_signed(None, "istio-system", "cluster.local")


def test_spiffe_identity_round_trip():
    assert identity("cluster.local", "default", "sa1") == "spiffe://cluster.local/ns/default/sa/sa1"
    assert parse_identity(SPIFFE).service_account == "bookinfo-reviews"
    with pytest.raises(ValueError, match="not a SPIFFE"):
        parse_identity("spiffe://cluster.local/default/sa1")


def test_root_is_a_ten_year_ca_named_after_the_trust_domain(ca):
    root = ca.bundle.root_certs[0]
    assert root.subject.rfc4514_string() == "O=cluster.local"
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert (root.not_valid_after_utc - root.not_valid_before_utc).days == 3650
    assert root.public_key().key_size == 2048


def test_signed_leaf_has_only_the_spiffe_san_and_chains_to_the_root(ca):
    csr, _key = make_csr(SPIFFE)
    chain = ca.sign_with_chain(csr, [SPIFFE])
    assert len(chain) == 2  # leaf, root (the self-signed root is also the signer)
    leaf = load_pem_certs(chain[0].encode())[0]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical and san.value.get_values_for_type(x509.UniformResourceIdentifier) == [SPIFFE]
    assert san.value.get_values_for_type(x509.DNSName) == []
    assert leaf.subject.rfc4514_string() == ""
    lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    assert lifetime.total_seconds() == pytest.approx(24 * 3600 + 120)  # 24 h plus the 2 min backdating
    verify_chain(leaf, [], ca.bundle.root_certs)


def test_refusals(ca):
    csr, _ = make_csr(SPIFFE)
    with pytest.raises(CAError, match="greater than the max allowed TTL") as err:
        ca.sign(csr, [SPIFFE], ttl_seconds=91 * 24 * 3600)
    assert err.value.kind == "TTL"
    with pytest.raises(CAError, match="not a PEM certificate request"):
        ca.sign("garbage", [SPIFFE])
    tampered = csr.replace(csr.splitlines()[5], csr.splitlines()[5][::-1])
    with pytest.raises(CAError):
        ca.sign(tampered, [SPIFFE])
    short = ca.sign(csr, [SPIFFE], ttl_seconds=600)
    assert (short.not_valid_after_utc - short.not_valid_before_utc).total_seconds() == 600 + 120


def test_a_foreign_chain_does_not_verify(ca):
    other = self_signed_root("evil.local")
    csr, _ = make_csr(SPIFFE)
    leaf = IstioCA(other, "test").sign(csr, [SPIFFE])
    with pytest.raises(CAError):
        verify_chain(leaf, [], ca.bundle.root_certs)


def test_plugged_in_ca_from_files(tmp_path):
    root = self_signed_root("cluster.local")
    key = generate_key()
    now = dt.datetime.now(dt.UTC)  # an intermediate CA signed by the root, as a `cacerts` folder holds
    inter = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "inter")]))
             .issuer_name(root.signing_cert.subject).public_key(key.public_key())
             .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
             .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
             .sign(root.signing_key, hashes.SHA256()))
    (tmp_path / "ca-cert.pem").write_bytes(cert_to_pem(inter))
    (tmp_path / "ca-key.pem").write_bytes(key_to_pem(key))
    (tmp_path / "root-cert.pem").write_bytes(cert_to_pem(root.signing_cert))
    (tmp_path / "cert-chain.pem").write_bytes(cert_to_pem(inter) + cert_to_pem(root.signing_cert))
    plugged = IstioCA.plugged(tmp_path)
    leaf_csr, _ = make_csr(SPIFFE)
    chain = plugged.sign_with_chain(leaf_csr, [SPIFFE])
    assert len(chain) == 3  # leaf, intermediate, root
    certs = [load_pem_certs(p.encode())[0] for p in chain]
    verify_chain(certs[0], certs[1:2], [root.signing_cert])
    (tmp_path / "ca-key.pem").write_bytes(key_to_pem(self_signed_root("x").signing_key))
    with pytest.raises(CAError, match="does not match"):
        IstioCA.plugged(tmp_path)


def test_istiod_dns_names():
    assert dns_names("istiod.istio-system.svc", "istio-system") == [
        "istiod.istio-system.svc", "istiod-remote.istio-system.svc", "istio-pilot.istio-system.svc"]
    assert "istiod-canary.istio-system.svc" in dns_names("istiod.istio-system.svc", revision="canary")


def test_trust_bundle_merges_sources_and_calls_back_on_change(ca):
    bundle = TrustBundle()
    calls = []
    bundle.on_update(lambda: calls.append(1))
    assert bundle.update_source("IstioCA", [ca.root_pem])
    assert not bundle.update_source("IstioCA", [ca.root_pem])
    other = cert_to_pem(self_signed_root("other.local").signing_cert).decode()
    bundle.add_mesh_config({"caCertificates": [{"pem": other}]})
    assert len(bundle.pems()) == 2 and calls == [1, 1]
    with pytest.raises(ValueError, match="not a PEM certificate"):
        bundle.update_source("MeshConfig", ["junk"])
    assert len(bundle.pems()) == 2


def _ns(name):
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def test_stages_6_9_10_on_a_replayed_cluster(tmp_path):
    trace = write_trace(tmp_path / "t.jsonl", [(0, "ADDED", _ns("istio-system")), (0, "ADDED", _ns("default")),
                                                (0, "ADDED", _ns("kube-system")), (5, "ADDED", _ns("later"))])
    server = Server(ServerArgs(trace=str(trace), multi_root_mesh=True))
    server.run_until("init_istiod_certs")
    secret = server.kube_client.get("secrets", CA_SECRET, "istio-system")
    assert secret["type"] == "istio.io/ca-root"
    stored = load_pem_certs(base64.b64decode(secret["data"]["ca-cert.pem"]))[0]
    assert stored == server.ca.bundle.root_certs[0]
    serialization.load_pem_private_key(base64.b64decode(secret["data"]["ca-key.pem"]), None)
    cms = {cm["metadata"]["namespace"] for cm in server.kube_client.informer("configmaps").list()
           if cm["metadata"]["name"] == "istio-ca-root-cert"}
    assert cms == {"istio-system", "default"}  # kube-system is skipped
    server.clock.advance_to(6)
    assert server.kube_client.get("configmaps", "istio-ca-root-cert", "later")["data"]["root-cert.pem"] == \
        server.ca.root_pem
    server.kube_client.delete("configmaps", "istio-ca-root-cert", "default")  # deleted by hand: recreated
    assert server.kube_client.get("configmaps", "istio-ca-root-cert", "default") is not None
    assert server.environment.trust_bundle.pems() == [server.ca.root_pem.strip() + "\n"]
    names = server.istiod_cert.leaf.extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert names[0] == "istiod.istio-system.svc"
    assert "key=<hidden>" in repr(server.istiod_cert) and "PRIVATE" not in repr(server.ca.bundle)


def test_restart_reuses_the_ca_secret(tmp_path):
    first = Server(ServerArgs(trace=str(write_trace(tmp_path / "a.jsonl", [(0, "ADDED", _ns("istio-system"))]))))
    first.run_until("maybe_create_ca")
    secret = first.kube_client.get("secrets", CA_SECRET, "istio-system")
    trace = write_trace(tmp_path / "b.jsonl", [(0, "ADDED", _ns("istio-system")), (0, "ADDED", secret)])
    second = Server(ServerArgs(trace=str(trace))).run_until("maybe_create_ca")
    assert second.ca.bundle.root_certs[0] == first.ca.bundle.root_certs[0]
    assert "loaded from" in second.ca.source
