"""Fuzzing the inputs a hostile client controls (hypothesis): the trace loader, the YAML document
reader, AdmissionReview handling (inject and validate), DiscoveryRequest handling and
CreateCertificate input. Each property: no crash (only the documented error), no HTTP 500, and
nothing applied when the answer is an error.

``make test`` runs a few dozen examples per target; ``make fuzz`` (``MESH_FUZZ=long``) runs
thousands and prints, per target, the inputs tried, those handled cleanly, and crashes.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections import Counter

import grpc
import pytest
import yaml
from envoy_data_plane.envoy.service.discovery.v3 import DiscoveryRequest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mesh.cli import UsageError
from mesh.cli._documents import load_documents
from mesh.cli.validate import _problems
from mesh.kube.client import ReplayClient
from mesh.kube.trace import TraceError, parse_trace
from mesh.security.ca import IstioCA, make_csr
from mesh.security.caserver import Caller, CertificateService
from mesh.security.proto import ca_pb2
from mesh.util import safeinput
from mesh.webhooks import validation as validate_webhook

LONG = os.environ.get("MESH_FUZZ") == "long"
FUZZ = settings(max_examples=2000 if LONG else 40, deadline=None, derandomize=not LONG,
                suppress_health_check=list(HealthCheck), database=None)
TALLY: dict[str, Counter] = {}


def tally(target: str, outcome: str) -> None:
    TALLY.setdefault(target, Counter())[outcome] += 1


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    for target, counts in sorted(TALLY.items()):
        tried = sum(counts.values())
        print(f"\nfuzz {target}: {tried} inputs tried, {tried - counts['crash']} handled cleanly, "
              f"{counts['crash']} crashes ({dict(counts)})")


# -- values ---------------------------------------------------------------------------------------------
scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=False),
                    st.text(max_size=30))
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=5)), max_leaves=25)
names = st.sampled_from(["a", "reviews", "", "x" * 300, "ns/evil", "café"])


@st.composite
def k8s_objects(draw):
    """Mostly well-formed Kubernetes objects with random (often wrongly typed) fields mixed in."""
    kind = draw(st.sampled_from(["Pod", "Service", "Namespace", "ConfigMap", "VirtualService", "DestinationRule",
                                 "Gateway", "MutatingWebhookConfiguration", "HTTPRoute", "Ingress", "Weird"]))
    api = {"VirtualService": "networking.istio.io/v1beta1", "DestinationRule": "networking.istio.io/v1beta1",
           "Gateway": "networking.istio.io/v1beta1", "HTTPRoute": "gateway.networking.k8s.io/v1beta1",
           "Ingress": "networking.k8s.io/v1",
           "MutatingWebhookConfiguration": "admissionregistration.k8s.io/v1"}.get(kind, "v1")
    meta = {"name": draw(names)}
    if kind != "Namespace" or draw(st.booleans()):
        meta["namespace"] = draw(st.one_of(names, json_values))
    meta.update(draw(st.dictionaries(st.sampled_from(["labels", "annotations", "uid", "ownerReferences"]),
                                     st.one_of(json_values, st.dictionaries(st.text(max_size=8),
                                                                            st.text(max_size=8), max_size=3)))))
    obj = {"apiVersion": draw(st.one_of(st.just(api), json_values)), "kind": draw(st.one_of(st.just(kind), json_values)),
           "metadata": draw(st.one_of(st.just(meta), json_values))}
    obj["spec"] = draw(st.one_of(json_values, st.fixed_dictionaries({}, optional={
        "containers": st.one_of(json_values, st.lists(st.dictionaries(
            st.sampled_from(["name", "image", "ports", "readinessProbe", "env", "args"]), json_values), max_size=2)),
        "hosts": json_values, "http": json_values, "ports": json_values, "selector": json_values,
        "clusterIP": json_values, "host": json_values, "trafficPolicy": json_values})))
    return obj


# -- 1. the trace loader -----------------------------------------------------------------------------------
def trace_line(draw_obj, t, event_type) -> str:
    return json.dumps({"t": t, "type": event_type, "object": draw_obj})


@FUZZ
@given(st.lists(st.tuples(k8s_objects(), st.one_of(st.floats(0, 10), json_values),
                          st.sampled_from(["ADDED", "MODIFIED", "DELETED", "BOGUS"])), max_size=6),
       st.lists(st.one_of(st.text(max_size=40), st.binary(max_size=40).map(lambda b: b.decode("latin-1"))),
                max_size=2))
def test_fuzz_trace_loader(events, junk):
    lines = [json.dumps({"trace": "mesh/v1", "name": "fuzz"})]
    lines += [trace_line(obj, t, kind) for obj, t, kind in events] + junk
    text = "\n".join(lines)
    try:
        try:
            trace = parse_trace(text, "fuzz.jsonl")
        except TraceError as err:
            assert all(str(p).startswith("fuzz.jsonl:") for p in err.problems)
            tally("trace loader", "refused")
            return
        client = ReplayClient(trace)  # a trace that loads can be applied, every event of it
        assert len(client.applied) == len(trace.events)
        tally("trace loader", "loaded")
    except AssertionError:
        raise
    except Exception:
        tally("trace loader", "crash")
        raise


@FUZZ
@given(data=st.binary(max_size=300))
def test_fuzz_trace_bytes(data, tmp_path_factory):
    path = tmp_path_factory.mktemp("t") / "t.jsonl"
    path.write_bytes(b'{"trace": "mesh/v1"}\n' + data)
    from mesh.kube.trace import load_trace
    try:
        load_trace(path)
        tally("trace bytes", "loaded")
    except TraceError as err:
        assert str(path) in str(err)
        tally("trace bytes", "refused")
    except Exception:
        tally("trace bytes", "crash")
        raise


# -- 2. the YAML document reader (validate, inject, convert) ---------------------------------------------
def yaml_texts():
    dumped = st.lists(k8s_objects(), min_size=1, max_size=3).map(
        lambda objs: "---\n".join(yaml.safe_dump(o) for o in objs))
    anchors = st.integers(1, 12).map(lambda n: "a: &a [x, y]\n" + "".join(
        f"b{i}: &b{i} [*{'a' if i == 0 else f'b{i - 1}'}, *{'a' if i == 0 else f'b{i - 1}'}]\n" for i in range(n)))
    nested = st.integers(1, 400).map(lambda n: "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec: "
                                     + "[" * n + "]" * n + "\n")
    return st.one_of(dumped, anchors, nested, st.text(max_size=200),
                     st.binary(max_size=200).map(lambda b: b.decode("latin-1")))


@FUZZ
@given(data=st.one_of(yaml_texts().map(str.encode), st.binary(max_size=300)))
def test_fuzz_yaml_documents(data, tmp_path_factory):
    path = tmp_path_factory.mktemp("y") / "in.yaml"
    path.write_bytes(data)
    try:
        docs = load_documents(str(path))
    except UsageError as err:
        assert str(path) in str(err) and "\n" not in str(err)  # one line, naming the file
        tally("yaml reader", "refused")
        return
    except Exception:
        tally("yaml reader", "crash")
        raise
    try:
        for doc in docs:
            _problems(doc.obj)  # what `mesh validate` does next
        tally("yaml reader", "validated")
    except Exception:
        tally("yaml reader", "crash")
        raise


# -- 3. AdmissionReview handling ---------------------------------------------------------------------------
_WEBHOOK = None


def webhook():
    global _WEBHOOK
    if _WEBHOOK is None:
        from test_inject_webhook import make_webhook
        _WEBHOOK = make_webhook()
    return _WEBHOOK


@st.composite
def reviews(draw):
    obj = draw(k8s_objects())
    request = {"uid": draw(st.one_of(st.just("u-1"), json_values)), "operation": draw(st.sampled_from(
        ["CREATE", "UPDATE", "DELETE", 5])), "namespace": draw(st.one_of(st.just("default"), json_values)),
        "kind": draw(st.one_of(st.just({"kind": "Pod"}), json_values)), "object": obj}
    body = {"apiVersion": draw(st.sampled_from(["admission.k8s.io/v1", "admission.k8s.io/v1beta1", 5])),
            "kind": draw(st.sampled_from(["AdmissionReview", []])), "request": draw(st.one_of(st.just(request),
                                                                                              json_values))}
    return json.dumps(body).encode()


@FUZZ
@given(st.one_of(reviews(), st.binary(max_size=100)), st.sampled_from(["application/json", "text/plain", None]))
def test_fuzz_admission_reviews(body, content_type):
    hook = webhook()
    injected_before = hook.counts["injected"]
    try:
        status, _, payload = hook.serve(body, content_type)
        assert status in (200, 400, 415)
        if status == 200:
            answer = json.loads(payload)["response"]
            if not answer.get("allowed"):
                assert answer["status"]["message"]
                assert hook.counts["injected"] == injected_before  # a denial applied nothing
            if "patch" in answer:
                json.loads(base64.b64decode(answer["patch"]))
        # the validation webhook, on the same body
        try:
            decoded = safeinput.parse_json(body, "body")
        except safeinput.InputError:
            tally("admission review", "refused")
            return
        answer = validate_webhook.review(decoded)["response"]
        assert answer.get("allowed") or answer["status"]["message"]
        tally("admission review", "answered")
    except AssertionError:
        raise
    except Exception:
        tally("admission review", "crash")
        raise


# -- 4. DiscoveryRequest handling (the example found by the fuzzer: Infinity in node metadata) ----------------------------------------------------------------------------
class FakeContext:
    def __init__(self):
        self.written: list[bytes] = []

    async def write(self, data: bytes) -> None:
        self.written.append(data)


@st.composite
def discovery_requests(draw):
    from mesh.xds.types import CLUSTER, ENDPOINT, LISTENER, ROUTE
    d = {"typeUrl": draw(st.one_of(st.sampled_from([CLUSTER, ENDPOINT, LISTENER, ROUTE]), st.text(max_size=50))),
         "responseNonce": draw(st.text(max_size=10)), "versionInfo": draw(st.text(max_size=10)),
         "resourceNames": draw(st.lists(st.text(max_size=20), max_size=3))}
    if draw(st.booleans()):
        d["node"] = {"id": draw(st.one_of(st.just("sidecar~127.10.0.1~p.default~default.svc.cluster.local"),
                                          st.text(max_size=60))),
                     "metadata": draw(st.dictionaries(st.sampled_from(
                         ["INSTANCE_IPS", "LABELS", "NAMESPACE", "MESH_WORKLOAD_CERT", "ISTIO_VERSION", "X"]),
                         json_values.filter(lambda v: not isinstance(v, float) and not (
                             isinstance(v, int) and abs(v) > 2**53)), max_size=4))}
    if draw(st.booleans()):
        d["errorDetail"] = {"code": draw(st.integers(0, 16)), "message": draw(st.text(max_size=30))}
    return bytes(DiscoveryRequest.from_dict(d))


@FUZZ
@given(st.lists(st.one_of(discovery_requests(), st.binary(max_size=60)), min_size=1, max_size=4))
@example([b'\x12Y\n6sidecar~127.10.0.1~p.default~default.svc.cluster.local\x1a\x1f\n\x1d\n\x0cINSTANCE_IPS'
          b'\x12\r2\x0b\n\t\x11\x00\x00\x00\x00\x00\x00\xf0\x7f"3type.googleapis.com/envoy.config.cluster.v3.Cluster'])
def test_fuzz_discovery_requests(messages):
    from test_xds_ads import make_server

    from mesh.xds.ads import _StreamEnded
    from mesh.xds.connection import Connection
    from mesh.xds.fastpath import decode_discovery_request

    async def scenario():
        _, _, _, ads = make_server()
        con, context = Connection(peer="fuzz"), FakeContext()
        for raw in messages:
            try:
                req = decode_discovery_request(raw)
            except Exception:  # the reader ends the stream with INVALID_ARGUMENT
                return "refused"
            try:
                await ads._on_request(con, req, context)
            except _StreamEnded:
                return "refused"
            if con.close_status is not None:
                assert con.close_status[0] == grpc.StatusCode.INVALID_ARGUMENT
                assert con.state is None and context.written == []  # refused before anything was sent
                return "refused"
        return "answered"
    try:
        tally("discovery request", asyncio.run(scenario()))
    except AssertionError:
        raise
    except Exception:
        tally("discovery request", "crash")
        raise


# -- 5. CreateCertificate input -------------------------------------------------------------------------------
_CA: dict = {}
IDENTITY = "spiffe://cluster.local/ns/default/sa/reviews"


def ca_and_csr():
    if not _CA:
        _CA["ca"] = IstioCA.self_signed(None, "istio-system", "cluster.local")
        _CA["csr"] = make_csr(IDENTITY)[0]
    return _CA["ca"], _CA["csr"]


class Aborted(Exception):
    pass


class CaContext:
    def __init__(self):
        self.code = None

    async def abort(self, code, message):
        assert message
        self.code = code
        raise Aborted


class AlwaysCaller:
    name = "fuzz"

    async def authenticate(self, context):
        return Caller("fuzz", (IDENTITY,))


@FUZZ
@given(st.one_of(st.text(max_size=200), st.builds(lambda cut, junk: (cut, junk), st.integers(0, 900),
                                                  st.text(max_size=20))),
       st.one_of(st.integers(-2**63, 2**63 - 1), st.sampled_from([0, 3600, 90 * 86400, 10**14])))
@example((64, "0"), 0)  # found by the fuzzer: an unknown key algorithm OID (UnsupportedAlgorithm)
def test_fuzz_create_certificate(csr, ttl):
    ca, good = ca_and_csr()
    if isinstance(csr, tuple):  # a real CSR, cut and spliced
        cut, junk = csr
        csr = good[:cut] + junk + good[cut + len(junk):]
    service = CertificateService(ca, [AlwaysCaller()])
    context = CaContext()
    request = ca_pb2.IstioCertificateRequest(csr=csr, validity_duration=ttl)
    try:
        response = asyncio.run(service.CreateCertificate(request, context))
        assert response.cert_chain and len(service.signed) == 1
        tally("create certificate", "signed")
    except Aborted:
        assert context.code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED)
        assert service.signed == []  # nothing issued
        tally("create certificate", "refused")
    except Exception:
        tally("create certificate", "crash")
        raise
