"""Stage 15 as notebook 15 shows it: handler counts, edits next to the pushes they asked for, and the
request → debounced push timeline (mesh.tools.push_view), plus the debouncer on float instants."""

import copy

import pytest

from mesh.bootstrap import Server, ServerArgs
from mesh.clock import VirtualClock
from mesh.model.push_request import PushRequest
from mesh.teach import views
from mesh.tools import push_view
from mesh.xds.debounce import Debouncer


def _run_until_15(trace: str) -> Server:
    return Server(ServerArgs(trace=trace)).run_until("init_registry_event_handlers")


def test_stage_15_adds_one_handler_per_source_and_leaves_service_entries_alone():
    server = Server(ServerArgs(trace="canary")).run_until("init_config_validation")
    before = push_view.handler_counts(server)
    server.run_until("init_registry_event_handlers")
    after = push_view.handler_counts(server)
    added = {key for key in after if after[key] > before.get(key, 0)}
    assert ("service registry", push_view.SERVICE_EVENTS) in added
    assert ("service registry", push_view.ENDPOINT_UPDATES) in added
    crd = {kind for source, kind in added if source == "config store: CrdClient"}
    assert {"VirtualService", "DestinationRule", "Gateway", "Sidecar"} <= crd
    assert not crd & {"ServiceEntry", "WorkloadEntry"}  # the ServiceEntry registry handles those
    assert before[("config store: CrdClient", "ServiceEntry")] == 1
    rows = push_view.handlers_table(before, after).text.splitlines()
    assert any("ServiceEntry" in r and r.rstrip().endswith("-") for r in rows)


def _quiet_edits_trace() -> str:
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}}
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ratings", "namespace": "default"},
           "spec": {"clusterIP": "10.96.0.20", "selector": {"app": "ratings"},
                    "ports": [{"name": "http", "port": 9080, "targetPort": 9080}]}}
    annotated = copy.deepcopy(svc)
    annotated["metadata"]["annotations"] = {"owner": "x"}
    more_ports = copy.deepcopy(annotated)
    more_ports["spec"]["ports"].append({"name": "grpc", "port": 9090})
    header = {"trace": "mesh/v1", "name": "edits", "description": "", "domain_suffix": "cluster.local"}
    events = [(0, "ADDED", ns), (1, "ADDED", svc), (2, "MODIFIED", annotated), (3, "MODIFIED", more_ports)]
    return views.inline_trace([header] + [{"t": t, "type": k, "object": o} for t, k, o in events], "edits.jsonl")


def test_edits_table_puts_each_edit_next_to_its_push_or_none():
    server = _run_until_15(_quiet_edits_trace())
    server.clock.run()
    rows = push_view.edits_table(server.kube_client.applied, server.xds.requests).text.splitlines()[2:]
    assert len(rows) == 3
    assert "(new)" in rows[0] and rows[0].endswith("full, service")
    assert "metadata.annotations.owner" in rows[1] and rows[1].endswith("no push")
    assert "spec.ports" in rows[2] and rows[2].endswith("full, service")


def test_push_timeline_lists_requests_then_the_merged_push():
    server = _run_until_15("canary")
    server.xds.start()
    server.clock.advance_to(6)
    lines = push_view.push_timeline(server.xds.requests, server.xds.pushes).text.splitlines()[2:]
    steps = [line.split()[1] if line.strip() and not line.startswith(" " * 9) else "" for line in lines]
    assert steps[:8] == ["request"] * 8 and steps[8] == "PUSH"
    assert "8 merged" in lines[8] and "endpoint×4, service×4" in lines[8]
    assert len(lines) == 9 + 3  # the push's other three hosts, one per line
    table = push_view.pushes_table(server.xds.pushes).text.splitlines()
    assert len(table) == 3 and table[2].split()[:4] == ["5.100", "5.000", "8", "0.100"]


class _GuardedClock(VirtualClock):
    """Fails instead of hanging when a timer keeps re-arming."""

    def __init__(self):
        super().__init__()
        self.scheduled = 0

    def call_at(self, when, fn):
        self.scheduled += 1
        if self.scheduled > 1000:
            raise RuntimeError("timer re-armed more than 1000 times")
        return super().call_at(when, fn)


@pytest.mark.parametrize("start", [5.0, 10.0, 0.3, 123.456])
def test_debounce_fires_once_when_the_quiet_period_ends_on_float_instants(start):
    # (5.0 + 0.1) - 5.0 < 0.1 in floats: comparing differences re-armed the timer at the same instant forever
    clock = _GuardedClock()
    pushes = []
    debouncer = Debouncer(clock, pushes.append)
    clock.advance_to(start)
    debouncer.submit(PushRequest.of("config"))
    debouncer.submit(PushRequest.of("endpoint", full=False))
    clock.run()
    assert len(pushes) == 1 and pushes[0].events == 2
    assert pushes[0].at == start + 0.1 and clock.scheduled == 1


def test_edits_table_diffs_each_object_against_its_own_previous_version():
    server = _run_until_15("scale-out")
    server.clock.run()
    text = push_view.edits_table(server.kube_client.applied, server.xds.requests,
                                 kinds=("Service", "EndpointSlice"), since=6, summary=True).text
    rows = text.splitlines()[2:]
    assert len(rows) == 2  # the reviews slice at t=10 and t=20; its Service never changes
    for row, count in zip(rows, (7, 4), strict=True):
        assert "EndpointSlice" in row and row.endswith("incremental, endpoint")
        assert ", endpoints " in row and "spec" not in row  # diffed against the slice, not the Service
        assert f"{count} endpoints" in row
