"""The operator loop (mesh/install/operator.py) on a ReplayClient, and `mesh operator` on the
replay API server."""

from __future__ import annotations

import copy
import subprocess
import sys
import time
from pathlib import Path

from mesh.install import apply as applier
from mesh.install.operator import ERROR, HEALTHY, Operator
from mesh.kube.client import ReplayClient
from mesh.kube.trace import Trace

ROOT = Path(__file__).resolve().parent.parent


def iop(spec: dict, name: str = "main") -> dict:
    return {"apiVersion": "install.istio.io/v1alpha1", "kind": "IstioOperator",
            "metadata": {"name": name, "namespace": "istio-system"}, "spec": spec}


def setup(spec: dict) -> tuple[ReplayClient, Operator]:
    client = ReplayClient(Trace(header={"trace": "mesh/v1", "name": "empty"}, events=[]), speed=0)
    operator = Operator(client)
    client.create(iop(spec))
    return client, operator


def owned_objects(client: ReplayClient, owner: str = "main") -> set[str]:
    return {f"{o['kind']} {o['metadata'].get('namespace', '')}/{o['metadata']['name']}" for o in client.list_objects()
            if (o["metadata"].get("labels") or {}).get(applier.OWNING_RESOURCE) == owner}


def change_spec(client: ReplayClient, spec: dict) -> None:
    current = copy.deepcopy(client.get("IstioOperator", "main", "istio-system"))
    current["spec"] = spec
    client.update(current)


def test_reconcile_creates_and_reports_status():
    client, operator = setup({"profile": "minimal"})
    (outcome,) = operator.process()
    assert outcome.status == HEALTHY and outcome.result.created
    assert "Deployment istio-system/istiod" in owned_objects(client)
    assert not any(name.startswith("Deployment istio-system/istio-ingress") for name in owned_objects(client))
    status = client.get("IstioOperator", "main", "istio-system")["status"]
    assert status == {"status": HEALTHY, "componentStatus": {"Base": {"status": HEALTHY}, "Pilot": {"status": HEALTHY}}}
    labels = client.get("Service", "istiod", "istio-system")["metadata"]["labels"]
    assert labels[applier.OWNING_RESOURCE] == "main"
    assert operator.process() == []  # the status write is not new work


def test_converges_after_a_profile_change():
    client, operator = setup({"profile": "minimal"})
    operator.process()
    change_spec(client, {"profile": "demo"})
    (outcome,) = operator.process()
    assert outcome.status == HEALTHY
    objects = owned_objects(client)
    assert {"Deployment istio-system/istio-ingressgateway", "Deployment istio-system/istio-egressgateway"} <= objects
    assert client.get("ConfigMap", "istio", "istio-system")["data"]["mesh"].count("accessLogFile: /dev/stdout") == 1
    change_spec(client, {"profile": "default", "components": {"ingressGateways": [
        {"name": "istio-ingressgateway", "enabled": False}]}})
    (outcome,) = operator.process()
    assert "Deployment istio-system/istio-egressgateway" in outcome.result.deleted
    assert "Deployment istio-system/istio-ingressgateway" in outcome.result.deleted
    assert not {o for o in owned_objects(client) if "ingressgateway" in o or "egressgateway" in o}
    assert operator.process() == []


def test_converges_after_an_object_is_deleted_by_hand():
    client, operator = setup({"profile": "minimal"})
    operator.process()
    client.delete("Deployment", "istiod", "istio-system")
    client.delete("MutatingWebhookConfiguration", "istio-sidecar-injector")
    (outcome,) = operator.process()
    assert sorted(outcome.result.created) == ["Deployment istio-system/istiod",
                                              "MutatingWebhookConfiguration istio-sidecar-injector"]
    assert client.get("Deployment", "istiod", "istio-system") is not None
    # and drift by hand is undone
    cm = copy.deepcopy(client.get("ConfigMap", "istio", "istio-system"))
    cm["data"]["mesh"] = "trustDomain: evil.example"
    client.update(cm)
    (outcome,) = operator.process()
    assert outcome.result.updated == ["ConfigMap istio-system/istio"]
    assert "trustDomain: cluster.local" in client.get("ConfigMap", "istio", "istio-system")["data"]["mesh"]


def test_malformed_iop_gets_an_error_status_and_changes_nothing():
    client, operator = setup({"profile": "minimal"})
    operator.process()
    before = {k: copy.deepcopy(v) for k, v in client._objects.items() if k.kind != "IstioOperator"}
    change_spec(client, {"profile": "minimal", "components": {"pilot": {"enabled": "yes"}, "sidecar": {}},
                         "meshConfig": {"accessLogFile": 3}})
    (outcome,) = operator.process()
    assert outcome.status == ERROR
    status = client.get("IstioOperator", "main", "istio-system")["status"]
    assert status["status"] == ERROR
    assert "spec.components.pilot.enabled: expected true or false, got 'yes'" in status["message"]
    assert "spec.components.sidecar: unknown component" in status["message"]
    assert "IstioOperator istio-system/main" in status["message"]
    after = {k: v for k, v in client._objects.items() if k.kind != "IstioOperator"}
    assert after == before
    change_spec(client, {"profile": "bogus"})
    (outcome,) = operator.process()
    assert outcome.status == ERROR and "'bogus' is not a profile" in outcome.message
    assert {k: v for k, v in client._objects.items() if k.kind != "IstioOperator"} == before


def test_deleting_the_iop_removes_what_it_owned_and_saved_state_is_ignored():
    client, operator = setup({"profile": "minimal"})
    saved = iop({"profile": "demo"}, name="installed-state")
    saved["metadata"]["annotations"] = {"install.istio.io/ignoreReconcile": "true"}
    client.create(saved)
    operator.process()
    assert client.get("Deployment", "istio-egressgateway", "istio-system") is None  # demo not reconciled
    client.delete("IstioOperator", "main", "istio-system")
    (outcome,) = operator.process()
    assert outcome.status == "DELETED" and "Deployment istio-system/istiod" in outcome.result.deleted
    assert {o for o in owned_objects(client) if not o.startswith(("CustomResourceDefinition", "Namespace"))} == set()
    assert client.get("Namespace", "istio-system") is not None  # never pruned


def test_operator_command_on_the_replay_apiserver(tmp_path):
    from mesh.kube.apiserver import ApiServer
    from mesh.kube.live import LiveClient

    with ApiServer(None, speed=None) as server:
        kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig")
        client = LiveClient(str(kubeconfig))
        try:
            client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "istio-system"}})
            client.create(iop({"profile": "minimal"}))
            bad = iop({"components": {"pilot": {"enabled": "yes"}}}, name="broken")
            client.create(bad)
            out = subprocess.run([sys.executable, "-m", "mesh", "operator", "--kubeconfig", str(kubeconfig), "--once"],
                                 capture_output=True, text=True, cwd=ROOT, timeout=120)
            assert out.returncode == 0, out.stderr
            assert "IstioOperator istio-system/main: HEALTHY" in out.stdout
            assert "IstioOperator istio-system/broken: ERROR" in out.stdout
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and client.get("Deployment", "istiod", "istio-system") is None:
                time.sleep(0.1)
            assert client.get("Deployment", "istiod", "istio-system") is not None
            while time.monotonic() < deadline and not (client.get("IstioOperator", "broken", "istio-system") or {}).get(
                    "status"):
                time.sleep(0.1)
            assert client.get("IstioOperator", "broken", "istio-system")["status"]["status"] == ERROR
        finally:
            client.close()
