"""Istio config through the replay API server and mesh's validation webhook, with real kubectl.

The chain is the one on a cluster: kubectl → the API server → the ValidatingWebhookConfiguration
Istio's base chart installs (``istiod-default-validator``, taken from the trace source
``traces/src/istio-base.yaml``) → istiod's ``/validate`` (here :mod:`mesh.webhooks.validation`,
served over HTTPS on loopback). Its ``clientConfig`` gets a loopback URL and the serving CA, as
istiod's webhook controller patches the caBundle in, and ``failurePolicy: Fail``, which that
controller switches to once istiod validates. What kubectl prints must be what it prints against
kube-apiserver: ``Error from server: error when creating "<file>": admission webhook
"validation.istio.io" denied the request: ...``, and ``Warning: ...`` lines for istiod's warnings.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from kubeobjects import ns
from test_apiserver_admission import WebhookServer
from test_apiserver_kubectl import KUBECTL, Kubectl
from tracehelpers import write_trace

from mesh.kube.apiserver import ApiServer
from mesh.webhooks.validation import make_validate_app

pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed (apt-get install kubernetes-client)")

BASE = Path(__file__).parent.parent / "mesh" / "traces" / "src" / "istio-base.yaml"


def validator(hook: WebhookServer) -> dict:
    config = yaml.safe_load(BASE.read_text())["steps"][0]["apply"][0]
    (webhook,) = config["webhooks"]
    webhook["clientConfig"] = {"url": hook.url("/validate"), "caBundle": hook.ca_bundle}
    webhook["failurePolicy"] = "Fail"
    return config


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    folder = tmp_path_factory.mktemp("validation-webhook")
    with WebhookServer(app=make_validate_app()) as hook:
        trace = write_trace(folder / "t.jsonl", [(0, "ADDED", ns("default")), (0, "ADDED", validator(hook))])
        with ApiServer(trace, speed=0) as server:
            yield server, Kubectl(server, folder), folder


def manifest(folder: Path, name: str, obj: dict) -> str:
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(obj))
    return str(path)


def virtual_service(name: str, **spec) -> dict:
    return {"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"hosts": ["reviews"], "http": [{"route": [{"destination": {"host": "reviews"}}]}], **spec}}


def stored(server: ApiServer, kind: str, name: str) -> bool:
    return any(o["kind"] == kind and o["metadata"]["name"] == name for o in server.objects())


BAD_WEIGHT = {"http": [{"route": [{"destination": {"host": "reviews"}, "weight": -1}]}]}
DENIAL = ('admission webhook "validation.istio.io" denied the request: configuration is invalid: weight -1 < 0')


@pytest.mark.parametrize("dry_run", [True, False])
def test_a_denied_object_is_refused_with_kube_apiservers_words_and_not_stored(cluster, dry_run):
    server, kubectl, folder = cluster
    path = manifest(folder, f"bad-{dry_run}", virtual_service(f"bad-{dry_run}".lower(), **BAD_WEIGHT))
    done = kubectl("apply", "-f", path, *(["--dry-run=server"] if dry_run else []), check=False)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.strip() == f'Error from server: error when creating "{path}": {DENIAL}'
    assert not stored(server, "VirtualService", f"bad-{dry_run}".lower())


def test_warnings_are_passed_through_as_warning_lines(cluster):
    server, kubectl, folder = cluster
    legacy = virtual_service("legacy-gateway", gateways=["gateway.istio-system"])
    path = manifest(folder, "legacy", legacy)
    warning = ('Warning: using legacy gatewayName format "gateway.istio-system"; prefer the <namespace>/<name> '
               'format: "istio-system/gateway"')
    done = kubectl("apply", "-f", path, "--dry-run=server")
    assert done.stdout.strip() == "virtualservice.networking.istio.io/legacy-gateway created (server dry run)"
    assert done.stderr.strip() == warning and not stored(server, "VirtualService", "legacy-gateway")
    done = kubectl("apply", "-f", path)
    assert done.stdout.strip() == "virtualservice.networking.istio.io/legacy-gateway created"
    assert done.stderr.strip() == warning and stored(server, "VirtualService", "legacy-gateway")


def test_an_added_kind_and_security_v1_go_through_the_webhook(cluster):
    server, kubectl, folder = cluster
    we = {"apiVersion": "networking.istio.io/v1beta1", "kind": "WorkloadEntry",
          "metadata": {"name": "vm", "namespace": "default"}, "spec": {"address": "vm:9443"}}
    done = kubectl("apply", "-f", manifest(folder, "we", we), check=False)
    assert done.returncode == 1 and done.stderr.strip().endswith(
        'admission webhook "validation.istio.io" denied the request: configuration is invalid: endpoint address '
        '"vm:9443" is not a valid FQDN or an IP address')
    ap = {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
          "metadata": {"name": "deny-get", "namespace": "default"},
          "spec": {"action": "DENY", "rules": [{"to": [{"operation": {"methods": ["GET"]}}]}]}}
    done = kubectl("apply", "-f", manifest(folder, "ap", ap))
    assert done.stdout.strip() == "authorizationpolicy.security.istio.io/deny-get created"
    assert done.stderr.strip().startswith("Warning: configured AuthorizationPolicy will deny all traffic to TCP ports")
    assert stored(server, "AuthorizationPolicy", "deny-get")


def test_a_denied_update_leaves_the_stored_object_as_it_was(cluster):
    server, kubectl, folder = cluster
    path = manifest(folder, "update", virtual_service("to-update"))
    kubectl("apply", "-f", path)
    before = next(o for o in server.objects() if o["metadata"]["name"] == "to-update")
    manifest(folder, "update", virtual_service("to-update", **BAD_WEIGHT))
    done = kubectl("apply", "-f", path, check=False)
    assert done.returncode == 1 and done.stderr.strip().endswith(DENIAL)
    after = next(o for o in server.objects() if o["metadata"]["name"] == "to-update")
    assert after == before
