"""The applier (mesh/install/apply.py) on a ReplayClient, and `mesh install --kubeconfig` on the
replay API server with kubectl looking."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mesh.install import apply as applier
from mesh.install import iop as iopmod
from mesh.install import render
from mesh.kube import kinds
from mesh.kube.client import ReplayClient
from mesh.kube.trace import Trace

ROOT = Path(__file__).resolve().parent.parent
KUBECTL = shutil.which("kubectl")


def empty_cluster() -> ReplayClient:
    return ReplayClient(Trace(header={"trace": "mesh/v1", "name": "empty"}, events=[]), speed=0)


def rendered(profile: str, sets: list[str] = ()) -> dict[str, list[dict]]:
    return render.render(iopmod.generate(profile=profile, sets=sets))


OWNER = applier.Owner()


def test_apply_creates_in_dependency_order_with_owner_labels():
    client = empty_cluster()
    result = applier.apply_rendered(client, rendered("default"), OWNER, wait=False)
    assert result.updated == [] and result.deleted == [] and len(result.created) == len(render.flatten(rendered("default")))
    written = [e.object for e in client.applied]
    order = [o["kind"] for o in written]
    assert order.index("Namespace") < order.index("CustomResourceDefinition") < order.index("ServiceAccount")
    istiod_at = next(i for i, o in enumerate(written) if o["kind"] == "Deployment" and o["metadata"]["name"] == "istiod")
    assert all(written.index(o) < istiod_at for o in written if o["kind"] in ("ConfigMap", "ClusterRoleBinding"))
    assert next(i for i, o in enumerate(written) if o["kind"] == "MutatingWebhookConfiguration") > istiod_at
    gateway_at = next(i for i, o in enumerate(written) if o["metadata"]["name"] == "istio-ingressgateway")
    assert gateway_at > next(i for i, o in enumerate(written) if o["kind"] == "ValidatingWebhookConfiguration")
    labels = client.get("Deployment", "istiod", "istio-system")["metadata"]["labels"]
    assert labels[applier.OWNING_RESOURCE] == "installed-state"
    assert labels[applier.OWNING_NAMESPACE] == "istio-system"
    assert labels[applier.COMPONENT] == "Pilot" and labels[applier.MANAGED] == "Reconcile"
    crd = client.get("CustomResourceDefinition", "virtualservices.networking.istio.io")
    assert crd["metadata"]["labels"][applier.COMPONENT] == "Base"


def test_apply_again_changes_nothing_and_repairs_drift():
    client = empty_cluster()
    applier.apply_rendered(client, rendered("default"), OWNER, wait=False)
    again = applier.apply_rendered(client, rendered("default"), OWNER, wait=False)
    assert not again.changed and again.unchanged
    # someone edits the Service by hand and patches the webhook's caBundle (as istiod does)
    svc = client.get("Service", "istiod", "istio-system")
    svc["spec"]["ports"][0]["port"] = 9999
    client.update(svc)
    hook = client.get("MutatingWebhookConfiguration", "istio-sidecar-injector")
    hook["webhooks"][0]["clientConfig"]["caBundle"] = "Q0E="
    client.update(hook)
    repair = applier.apply_rendered(client, rendered("default"), OWNER, wait=False)
    assert repair.updated == ["Service istio-system/istiod"]
    assert client.get("Service", "istiod", "istio-system")["spec"]["ports"][0]["port"] == 15010
    assert client.get("MutatingWebhookConfiguration", "istio-sidecar-injector")["webhooks"][0]["clientConfig"][
        "caBundle"] == "Q0E="  # not ours: kept


def test_profile_change_prunes_what_is_gone_but_not_other_owners():
    client = empty_cluster()
    applier.apply_rendered(client, rendered("demo"), OWNER, wait=False)
    assert client.get("Deployment", "istio-egressgateway", "istio-system") is not None
    other = {"apiVersion": "v1", "kind": "ConfigMap",
             "metadata": {"name": "theirs", "namespace": "istio-system",
                          "labels": {applier.OWNING_RESOURCE: "someone-else"}}}
    client.create(other)
    result = applier.apply_rendered(client, rendered("minimal"), OWNER, wait=False)
    gone = {r for r in result.deleted}
    assert "Deployment istio-system/istio-egressgateway" in gone and "Service istio-system/istio-ingressgateway" in gone
    assert client.get("Deployment", "istio-ingressgateway", "istio-system") is None
    assert client.get("ConfigMap", "theirs", "istio-system") is not None
    assert client.get("Deployment", "istiod", "istio-system") is not None
    assert client.get("Namespace", "istio-system") is not None


class FakeTime:
    def __init__(self):
        self.t = 0.0

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds


def _deployment(status: dict | None) -> dict:
    obj = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "istiod", "namespace": "istio-system"},
           "spec": {}}
    if status is not None:
        obj["status"] = status
    return obj


def test_wait_ready_timeout_and_no_controller():
    clock = FakeTime()
    client = empty_cluster()
    client.create(_deployment({"observedGeneration": 1, "conditions": [{"type": "Available", "status": "True"}]}))
    notes = applier.wait_for_deployments(client, [("istio-system", "istiod")], 10, sleep=clock.sleep, now=clock.now)
    assert notes == ["Deployment istio-system/istiod is Available"]

    client = empty_cluster()
    client.create(_deployment({"observedGeneration": 1, "replicas": 1, "availableReplicas": 0,
                               "conditions": [{"type": "Available", "status": "False"}]}))
    with pytest.raises(applier.ApplyError, match=r"timed out after 5s waiting for Deployment istio-system/istiod "
                                                 r"\(0/1 replicas available\)"):
        applier.wait_for_deployments(client, [("istio-system", "istiod")], 5, sleep=clock.sleep, now=clock.now)

    clock = FakeTime()
    client = empty_cluster()
    client.create(_deployment(None))
    notes = applier.wait_for_deployments(client, [("istio-system", "istiod")], 300, no_controller_grace=3,
                                         sleep=clock.sleep, now=clock.now)
    assert "no Deployment controller" in notes[0] and clock.t < 4


def test_install_needs_kubeconfig_or_dry_run():
    out = subprocess.run([sys.executable, "-m", "mesh", "install"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 2 and "--kubeconfig" in out.stderr


def test_install_bad_set_changes_nothing(tmp_path):
    out = subprocess.run([sys.executable, "-m", "mesh", "install", "--kubeconfig", str(tmp_path / "missing"),
                          "--set", "components.pilot.enabled=maybe"], capture_output=True, text=True, cwd=ROOT,
                         timeout=60)
    assert out.returncode == 2 and "components.pilot.enabled: expected true or false" in out.stderr


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
def test_install_to_replay_apiserver_then_kubectl_get(tmp_path):
    from mesh.kube.apiserver import ApiServer

    with ApiServer(None, speed=None) as server:
        kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig")
        out = subprocess.run([sys.executable, "-m", "mesh", "install", "--kubeconfig", str(kubeconfig),
                              "--profile", "demo", "--wait-timeout", "20"],
                             capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert out.returncode == 0, out.stderr
        assert "not waiting for Deployment istio-system/istiod" in out.stdout  # no controllers here
        assert "Installation complete" in out.stdout
        env = {**os.environ, "KUBECONFIG": str(kubeconfig), "HOME": str(tmp_path)}

        def kubectl(*args: str) -> str:
            done = subprocess.run([KUBECTL, "--cache-dir", str(tmp_path / "cache"), *args], env=env,
                                  capture_output=True, text=True, timeout=60)
            assert done.returncode == 0, done.stderr
            return done.stdout

        deployments = kubectl("get", "deployments", "-n", "istio-system", "-o", "name").split()
        assert deployments == ["deployment.apps/istio-egressgateway", "deployment.apps/istio-ingressgateway",
                               "deployment.apps/istiod"]
        services = kubectl("get", "services", "-n", "istio-system", "-o",
                           "custom-columns=NAME:.metadata.name,PORTS:.spec.ports[*].port", "--no-headers")
        ports = dict(line.split() for line in services.splitlines())
        assert ports["istiod"] == "15010,15012,443,15014"
        assert ports["istio-ingressgateway"] == "15021,80,443,31400,15443"
        assert "mutatingwebhookconfiguration.admissionregistration.k8s.io/istio-sidecar-injector" in \
            kubectl("get", "mutatingwebhookconfigurations", "-o", "name")
        assert kubectl("get", "istiooperators", "-n", "istio-system", "-o", "name").split() == \
            ["istiooperator.install.istio.io/installed-state"]
        assert kubectl("get", "configmap", "istio-sidecar-injector", "-n", "istio-system",
                       "-o", "jsonpath={.metadata.labels.install\\.operator\\.istio\\.io/owning-resource}") == \
            "installed-state"

        # the same install again with the minimal profile prunes the gateways
        out = subprocess.run([sys.executable, "-m", "mesh", "install", "--kubeconfig", str(kubeconfig),
                              "--profile", "minimal", "--no-wait"], capture_output=True, text=True, cwd=ROOT,
                             timeout=120)
        assert out.returncode == 0, out.stderr
        assert kubectl("get", "deployments", "-n", "istio-system", "-o", "name").split() == ["deployment.apps/istiod"]
        kinds_served = {k.kind for k in kinds.KINDS}
        assert {"PodDisruptionBudget", "HorizontalPodAutoscaler"} <= kinds_served
