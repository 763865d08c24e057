"""The xDS mesh sends, pinned byte for byte: every response of every push of every trace, replayed on
the virtual clock through the push recorder (the real generators and ``AdsServer.generate``), reduced
to one digest per push and compared with ``golden/xds_pin.json``.

A performance change (sharing scopes, caching, response assembly) must leave these digests as they
were. A change meant to alter what proxies get updates the file on purpose:
``MESH_UPDATE_PIN=1 python -m pytest tests/test_xds_pin.py`` — and the diff of the file says which
traces and pushes it touched.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from mesh.bootstrap import Server, ServerArgs
from mesh.demo.pods import record_pushes

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).with_name("golden") / "xds_pin.json"
TRACES = sorted(p.stem for p in (ROOT / "traces").glob("*.jsonl") if p.stem != "bad-config")


def digests(trace: str, delta: bool) -> list[str]:
    """Per push, a digest of what every modelled proxy was sent: proxy, step, type, and each
    resource's name and serialized ``Any`` entry (with Delta's removals), in order."""
    server = Server(ServerArgs(trace=trace)).run_all()
    try:
        recorder = record_pushes(server, delta=delta)
        server.xds.start()
        server.clock.run()
        out = []
        for record in recorder.records:
            h = hashlib.sha256()
            for delivery in record.deliveries:
                h.update(f"{delivery.proxy}|{delivery.step}\n".encode())
                for sent in delivery.sent:
                    h.update(f"{sent.type}|{','.join(sent.removed)}\n".encode())
                    for r in sent.resources:
                        h.update(r.name.encode() + b"\0" + r.encoded)
            for skipped in record.skipped:
                h.update(f"skip {skipped.proxy}\n".encode())
            out.append(h.hexdigest()[:16])
        return out
    finally:
        server.close()


@pytest.fixture(scope="module")
def golden() -> dict:
    return json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}


@pytest.mark.parametrize("delta", [False, True], ids=["sotw", "delta"])
@pytest.mark.parametrize("trace", TRACES)
def test_pushes_are_byte_for_byte_as_pinned(trace, delta, golden):
    key = f"{trace}/{'delta' if delta else 'sotw'}"
    got = digests(trace, delta)
    if os.environ.get("MESH_UPDATE_PIN"):
        pinned = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
        pinned[key] = got
        GOLDEN.write_text(json.dumps(dict(sorted(pinned.items())), indent=1) + "\n")
        return
    assert key in golden, f"no pin for {key}: run with MESH_UPDATE_PIN=1 to record it"
    want = golden[key]
    changed = [i + 1 for i, (a, b) in enumerate(zip(got, want, strict=False)) if a != b]
    assert len(got) == len(want) and not changed, (
        f"{key}: {len(got)} pushes (pinned {len(want)}); pushes whose responses differ: {changed}")


def test_alike_proxies_share_one_response_and_others_get_their_own():
    """The fan-out fast path (``AdsServer._send``): sidecars whose inputs agree get the very same
    resource list, hence one assembled response; a pod's own sidecar (inbound clusters) gets its
    own, byte for byte what assembling its entries gives."""
    from test_xds_ads import make_server
    from xds_fakes import endpoint

    from mesh.model.proxy import parse_node_id
    from mesh.xds.fastpath import assemble_discovery_response
    from mesh.xds.generator import ProxyState, WatchedResource
    from mesh.xds.proxy_dependencies import compute_proxy_state
    from mesh.xds.types import CLUSTER

    reg, _, _, ads = make_server()
    reg.set_endpoints("reviews.default.svc.cluster.local", 9080, [endpoint("127.10.0.2"), endpoint("127.10.0.3")])

    def cds(ip: str, pod: str) -> list:
        state = ProxyState(parse_node_id(f"sidecar~{ip}~{pod}.default~default.svc.cluster.local", {}))
        compute_proxy_state(state, ads.push_context, None)
        return ads.generate(state, CLUSTER, WatchedResource(CLUSTER), None)

    a, b = cds("127.13.0.1", "client-a"), cds("127.13.0.2", "client-b")  # not pods: no instances
    assert a is b
    replica1, replica2 = cds("127.10.0.2", "reviews-1"), cds("127.10.0.3", "reviews-2")
    assert replica1 is replica2  # captured replicas of one service: the same inbound clusters
    assert replica1 is not a and any(r.name.startswith("inbound|") for r in replica1)
    push = ads.push_context
    _, names, nonce, data = ads._assemble(push.version, CLUSTER, replica1)
    assert data == assemble_discovery_response(push.version, CLUSTER, nonce, [r.encoded for r in replica1])
    assert names == [r.name for r in replica1]


def test_destination_rule_lookups_shared_only_between_namespaces_that_cannot_differ():
    """``PushContext.destination_rule_for`` answers once per push for plain namespaces; a namespace
    with rules of its own, the root namespace or one named in an exportTo still gets its own answer."""
    from xds_fakes import FakeConfigStore, FakeRegistry

    from mesh.networking.push_context import PushContext

    reg, store = FakeRegistry(), FakeConfigStore()
    reviews, cart = reg.add_service("reviews", namespace="bookinfo"), reg.add_service("cart", namespace="shop")
    store.apply("DestinationRule", "reviews", "bookinfo", {"host": "reviews", "exportTo": ["third"]})
    store.apply("DestinationRule", "cart", "shop", {"host": "cart"})
    store.apply("DestinationRule", "cart-local", "fifth", {"host": "cart.shop.svc.cluster.local"})
    push = PushContext.build(reg, store)
    asked = ["plain", "third", "fifth", "istio-system", "other-plain", "bookinfo"]
    def name(rules):  # the first (merged) rule's name
        return rules[0].rule.name if rules else None

    got = {ns: {s.hostname.split(".")[0]: name(push.destination_rule_for(ns, s)) for s in (reviews, cart)}
           for ns in asked}
    assert got == {
        "plain": {"reviews": None, "cart": "cart"}, "other-plain": {"reviews": None, "cart": "cart"},
        "third": {"reviews": "reviews", "cart": "cart"},  # named in reviews' exportTo
        "fifth": {"reviews": None, "cart": "cart-local"},  # its own rule wins
        "istio-system": {"reviews": None, "cart": "cart"}, "bookinfo": {"reviews": None, "cart": "cart"}}
    assert {"third", "fifth", "istio-system"} <= push.destination_rule_index.namespaces_that_matter("istio-system")
    assert "plain" not in push.destination_rule_index.namespaces_that_matter("istio-system")
