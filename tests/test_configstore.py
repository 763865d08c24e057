"""Config stores: the CRD store across API versions, handlers, unchanged-spec detection, the file
source, the aggregate store and the converted (Ingress, Gateway API) stores."""

from __future__ import annotations

from pathlib import Path

import pytest
from registryhelpers import istio, replay, service

from mesh.bootstrap.args import ServerArgs
from mesh.bootstrap.server import Server
from mesh.configcontroller.aggregate import (
    AggregateConfigStore,
    ConvertedStore,
    gateway_api_store,
    ingress_store,
)
from mesh.configcontroller.crdclient import CrdClient, labels_in_revision, needs_push
from mesh.configcontroller.filesource import FileSource, FileSourceError, parse_documents
from mesh.model.config import Config

VS_SPEC = {"hosts": ["reviews"], "http": [{"route": [{"destination": {"host": "reviews"}}]}]}


def recorder():
    events: list[tuple[str, str, str | None, str]] = []  # (event, name, old version, new version)

    def handler(old: Config | None, new: Config | None, event: str) -> None:
        events.append((event, new.name, old.version if old else None, new.version))

    return events, handler


# -- the CRD store -----------------------------------------------------------------------------------------
def test_one_stored_object_across_api_versions():
    client = replay(istio("VirtualService", "reviews", VS_SPEC, version="v1alpha3"))
    store = CrdClient(client)
    events, handler = recorder()
    store.register_event_handler("VirtualService", handler)
    assert events == [("add", "reviews", None, "v1alpha3")]  # a late handler hears the existing object
    client.update(istio("VirtualService", "reviews", {**VS_SPEC, "hosts": ["reviews", "r2"]}, version="v1"))
    assert events[-1] == ("update", "reviews", "v1alpha3", "v1")
    [cfg] = store.list("VirtualService")
    assert (cfg.group, cfg.version, cfg.spec["hosts"]) == ("networking.istio.io", "v1", ["reviews", "r2"])
    assert store.get("VirtualService", "reviews", "default").version == "v1"
    assert store.get("VirtualService", "reviews", "other") is None
    client.delete("virtualservices.networking.istio.io", "reviews", "default")
    assert events[-1][0] == "delete" and store.list("VirtualService") == []


def test_security_kinds_and_typed_accessors():
    client = replay(istio("PeerAuthentication", "default", {"mtls": {"mode": "STRICT"}}, ns="istio-system",
                          group="security.istio.io"),
                    istio("AuthorizationPolicy", "deny", {"action": "DENY"}, group="security.istio.io"),
                    istio("DestinationRule", "r", {"host": "reviews"}))
    store = CrdClient(client)
    assert [c.spec["mtls"]["mode"] for c in store.peer_authentications()] == ["STRICT"]
    assert [c.name for c in store.authorization_policies("default")] == ["deny"]
    assert [c.name for c in store.destination_rules()] == ["r"]
    with pytest.raises(KeyError, match="not served"):
        store.register_event_handler("Deployment", lambda *a: None)


def test_unchanged_spec_is_skipped_when_asked():
    client = replay(istio("VirtualService", "reviews", VS_SPEC))
    store = CrdClient(client)
    all_events, every = recorder()
    pushed, only_changes = recorder()
    store.register_event_handler("VirtualService", every)
    store.register_event_handler("VirtualService", only_changes, skip_unchanged=True)
    client.update(istio("VirtualService", "reviews", VS_SPEC, labels={"team": "a"}))  # label only: no push
    assert len(all_events) == 2 and len(pushed) == 1
    client.update(istio("VirtualService", "reviews", VS_SPEC, labels={"istio.io/rev": "default"}))  # istio.io: push
    assert len(pushed) == 2
    client.update(istio("VirtualService", "reviews", {**VS_SPEC, "hosts": ["x"]}, labels={"istio.io/rev": "default"}))
    assert len(pushed) == 3 and len(all_events) == 4


@pytest.mark.parametrize(("prev_spec", "curr_spec", "curr_labels", "group", "expected"), [
    ({"a": 1}, {"a": 1}, {}, "networking.istio.io", False),
    ({"a": 1}, {"a": 2}, {}, "networking.istio.io", True),
    ({"a": 1}, {"a": 1}, {"sidecar.istio.io/x": "y"}, "networking.istio.io", True),
    ({"a": 1}, {"a": 1}, {}, "gateway.networking.k8s.io", True),  # not Istio: always push
])
def test_needs_push(prev_spec, curr_spec, curr_labels, group, expected):
    prev = Config("X", group, "v1", "n", "ns", spec=prev_spec)
    curr = Config("X", group, "v1", "n", "ns", spec=curr_spec, labels=curr_labels)
    assert needs_push(prev, curr) is expected


def test_revision_filter():
    assert labels_in_revision({}, "canary")
    assert labels_in_revision({"istio.io/rev": "canary"}, "canary")
    assert not labels_in_revision({"istio.io/rev": "canary"}, "")
    client = replay(istio("Sidecar", "a", {}), istio("Sidecar", "b", {}, labels={"istio.io/rev": "canary"}))
    assert [c.name for c in CrdClient(client).sidecars()] == ["a"]
    assert [c.name for c in CrdClient(client, revision="canary").sidecars()] == ["a", "b"]


# -- the file source ---------------------------------------------------------------------------------------
MULTI_DOC = """\
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec: {hosts: [reviews]}
---
apiVersion: v1
kind: Service
metadata: {name: ignored, namespace: default}
spec: {}
---
apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
---
"""


def test_file_source_reads_multi_document_yaml(tmp_path: Path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.yaml").write_text(MULTI_DOC)
    (tmp_path / "notes.txt").write_text("not: config")
    source = FileSource(tmp_path)
    assert [c.name for c in source.list("VirtualService")] == ["reviews"]
    assert [c.namespace for c in source.list("PeerAuthentication")] == ["istio-system"]
    assert source.list("Service") == [] and source.has_synced()


def test_file_source_reload_reports_differences_and_refuses_bad_files(tmp_path: Path):
    path = tmp_path / "a.yml"
    path.write_text(MULTI_DOC)
    source = FileSource(tmp_path)
    events, handler = recorder()
    source.register_event_handler("VirtualService", handler)
    assert events == [("add", "reviews", None, "v1alpha3")]
    assert source.reload() and len(events) == 1  # nothing changed
    path.write_text(MULTI_DOC.replace("hosts: [reviews]", "hosts: [reviews, r2]"))
    assert source.reload() and events[-1] == ("update", "reviews", "v1alpha3", "v1alpha3")
    path.write_text(MULTI_DOC.replace("metadata: {name: default, namespace: istio-system}", "metadata: {}"))
    assert not source.reload()
    assert "a.yml: document 2: metadata.name" in source.errors[-1]
    assert source.get("PeerAuthentication", "default", "istio-system") is not None  # last good kept
    path.write_text("")
    assert source.reload() and events[-1][0] == "delete" and source.list("VirtualService") == []


def test_file_source_watch_reloads_on_the_clock(tmp_path: Path):
    from mesh.clock import VirtualClock

    clock = VirtualClock()
    source = FileSource(tmp_path)
    source.watch(clock, interval=1.0)
    (tmp_path / "vs.yaml").write_text(MULTI_DOC)
    assert source.list("VirtualService") == []
    clock.advance_to(1.0)
    assert [c.name for c in source.list("VirtualService")] == ["reviews"]
    source.stop()


@pytest.mark.parametrize(("text", "message"), [
    ("kind: [unclosed", "not valid YAML"),
    ("- a\n- b\n", "document 0: expected a mapping"),
    ("apiVersion: v1\nmetadata: {name: x}\n", "document 0: kind: missing"),
    ("apiVersion: networking.istio.io/v1beta1\nkind: Gateway\nmetadata: {name: g}\nspec: 3\n", "spec: expected"),
])
def test_parse_documents_errors_name_the_document_and_field(text, message):
    with pytest.raises(FileSourceError, match=message):
        parse_documents(text, "f.yaml")


# -- the aggregate store and converted stores ----------------------------------------------------------------
class FakeStore:
    def __init__(self, kinds, configs):
        self.kinds, self.configs, self.handlers = kinds, configs, []

    def schemas(self):
        return self.kinds

    def get(self, kind, name, namespace):
        return next((c for c in self.configs if (c.kind, c.name, c.namespace) == (kind, name, namespace)), None)

    def list(self, kind, namespace=None):
        return [c for c in self.configs if c.kind == kind and namespace in (None, c.namespace)]

    def register_event_handler(self, kind, handler):
        self.handlers.append(kind)

    def has_synced(self):
        return True


def test_aggregate_store_first_hit_and_deduplicated_list():
    a = FakeStore(["Gateway", "VirtualService"], [Config("Gateway", "networking.istio.io", "v1", "gw", "ns",
                                                         spec={"from": "a"})])
    b = FakeStore(["Gateway"], [Config("Gateway", "networking.istio.io", "v1", "gw", "ns", spec={"from": "b"}),
                                Config("Gateway", "networking.istio.io", "v1", "other", "ns")])
    agg = AggregateConfigStore([a, None, b])
    assert agg.get("Gateway", "gw", "ns").spec == {"from": "a"}
    assert [(c.name, c.spec.get("from")) for c in agg.list("Gateway")] == [("gw", "a"), ("other", None)]
    agg.register_event_handler("Gateway", lambda *x: None)
    agg.register_event_handler("VirtualService", lambda *x: None)
    assert (a.handlers, b.handlers) == (["Gateway", "VirtualService"], ["Gateway"])
    assert agg.schemas() == ["Gateway", "VirtualService"]


def test_converted_store_reports_generated_objects():
    """Events on a converter's own kinds convert at once and report each generated object."""
    client = replay()
    ns = {"apiVersion": "v1", "kind": "Namespace"}

    def convert(objects):  # one VirtualService per Namespace, named after it
        return [istio("VirtualService", f"{o['metadata']['name']}-vs", {"hosts": [o["metadata"]["name"]]})
                for o in objects if o["kind"] == "Namespace"]

    client.create({**ns, "metadata": {"name": "reviews"}})
    store = ConvertedStore("fake", client, ("namespaces",), convert)
    events, handler = recorder()
    store.register_event_handler("VirtualService", handler)
    assert [e[:2] for e in events] == [("add", "reviews-vs")]
    client.create({**ns, "metadata": {"name": "ratings"}})
    assert events[-1][:2] == ("add", "ratings-vs")
    client.update({**ns, "metadata": {"name": "ratings", "labels": {"a": "b"}}})  # same output: no event
    assert len(events) == 2
    client.delete("namespaces", "reviews", "")
    assert events[-1][:2] == ("delete", "reviews-vs")
    assert [c.name for c in store.list("VirtualService")] == ["ratings-vs"]


def test_service_events_convert_once_when_next_read_not_once_each():
    """istiod converts Gateway API once per PushContext: Services arriving only mark the output stale."""
    client = replay(service("reviews"))

    def convert(objects):
        return [istio("VirtualService", f"{o['metadata']['name']}-vs", {"hosts": [o["metadata"]["name"]]})
                for o in objects if o["kind"] == "Service"]

    store = ConvertedStore("fake", client, ("services",), convert)
    events, handler = recorder()
    store.register_event_handler("VirtualService", handler)
    before = store.conversions
    for n in range(50):
        client.create(service(f"s{n}"))
    client.delete("services", "reviews", "default")
    assert store.conversions == before and len(events) == 1  # nothing yet: the Service events' push reads it
    names = [c.name for c in store.list("VirtualService")]
    assert store.conversions == before + 1 and "s49-vs" in names and "reviews-vs" not in names
    store.list("Gateway")
    assert store.conversions == before + 1  # fresh until the next change


INGRESS = {
    "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
    "metadata": {"name": "web", "namespace": "default", "annotations": {"kubernetes.io/ingress.class": "istio"}},
    "spec": {"rules": [{"host": "web.example.com", "http": {"paths": [
        {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "reviews", "port": {"number": 80}}}}]}}]},
}


def test_ingress_becomes_gateway_and_virtual_service():
    client = replay(service("reviews"))
    store = ingress_store(client, lambda: {}, "cluster.local")
    if store is None:
        pytest.skip("mesh.configcontroller.ingress is not available")
    assert store.list("Gateway") == []
    client.create(INGRESS)
    [gw] = store.list("Gateway")
    [vs] = store.list("VirtualService")
    assert gw.namespace == "istio-system" and "web.example.com" in vs.spec["hosts"]
    client.delete("ingresses.networking.k8s.io", "web", "default")
    assert store.list("Gateway") == [] and store.list("VirtualService") == []


def test_gateway_api_store_is_empty_without_gateway_api_objects():
    store = gateway_api_store(replay(service("reviews")), "cluster.local")
    if store is None:
        pytest.skip("mesh.configcontroller.gateway_api is not available")
    assert store.list("Gateway") == [] and store.conversions == 1


# -- stage 7 with a config directory ---------------------------------------------------------------------------
def test_stage_7_with_a_config_dir(tmp_path: Path):
    (tmp_path / "se.yaml").write_text("""\
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {name: ext, namespace: default}
spec:
  hosts: [api.example.com]
  resolution: DNS
  ports: [{number: 443, name: https, protocol: HTTPS}]
""" + "---\n" + MULTI_DOC)
    server = Server(ServerArgs(config_dir=str(tmp_path), registries=())).run_until("init_controllers")
    store = server.environment.config_store
    assert server.kube_client is None
    assert {c.kind for c in store.all_configs()} == {"ServiceEntry", "VirtualService", "PeerAuthentication"}
    svc = server.environment.service_discovery.get_service("api.example.com")
    assert svc is not None and svc.registry == "External"
    configz = server.debug_routes["/debug/configz"]({})
    assert [o["kind"] for o in configz] == ["PeerAuthentication", "ServiceEntry", "VirtualService"]
    # the ServiceEntry asked for a full push, queued until the discovery server starts
    assert [sorted(map(str, r.configs_updated)) for r in server.xds.queued] == [
        ["ServiceEntry/default/api.example.com"]]
