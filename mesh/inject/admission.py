"""Replay admission: pods created by a trace go through the webhooks its MutatingWebhookConfiguration names.

On a real cluster kube-apiserver, not istiod, decides whether to call the injector: for each
webhook in each ``MutatingWebhookConfiguration`` it checks the ``rules`` (CREATE of ``pods``),
the ``namespaceSelector`` against the namespace's labels and the ``objectSelector`` against the
pod's labels, then POSTs an AdmissionReview and applies the JSONPatch it gets back
(https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/#matching-requests-namespaceselector).
Istio's chart installs four mutually exclusive webhooks that way
(https://github.com/istio/istio/blob/1.19.0/manifests/charts/istio-control/istio-discovery/templates/mutatingwebhook.yaml):
``istio-injection=enabled`` namespaces, ``istio.io/rev`` namespaces, and pod-level opt-in by label.

``ReplayAdmission`` plays kube-apiserver's part for a ``ReplayClient`` (DESIGN §4): it is an
admission plugin ``(event_type, obj) -> obj``. It builds the same AdmissionReview, hands it to
the ``Webhook`` in-process (no network), and applies the patch with the ``jsonpatch`` library.

Rules, named:

* a pod that already carries ``sidecar.istio.io/status`` was recorded from a cluster where it
  was injected: it is stored as it is;
* a webhook whose ``clientConfig`` points at another service (another revision's istiod) is
  not ours: it is skipped and the decision says so;
* when the trace later MODIFIES a pod this plugin injected (a status update written without
  the sidecar), the same injection is applied again so the stored pod keeps its sidecar —
  Kubernetes would never let a pod update drop containers;
* ``failurePolicy: Fail`` with a webhook error would reject the pod; here the pod is stored
  uninjected and the error is in the decisions.
"""

from __future__ import annotations

import base64
import itertools
import json
import logging

import jsonpatch

from mesh.inject.inject import STATUS_ANNOTATION
from mesh.inject.webhook import ADMISSION_V1, AdmissionDecision, Webhook, potential_pod_name
from mesh.kube import webhookmatch
from mesh.kube.client import ReplayClient

log = logging.getLogger(__name__)

class ReplayAdmission:
    """kube-apiserver's mutating-admission step for pods, in front of a ReplayClient's store."""

    def __init__(self, client: ReplayClient, webhook: Webhook, istiod_namespace: str = "istio-system",
                 revision: str = ""):
        self.client = client
        self.webhook = webhook
        self.istiod_namespace = istiod_namespace
        self.service = "istiod" if revision in ("", "default") else f"istiod-{revision}"
        self._uids = itertools.count(1)
        self._injected: set[tuple[str, str]] = set()

    def install(self) -> ReplayAdmission:
        self.client.admission.append(self)
        return self

    # -- the plugin -------------------------------------------------------------------------------
    def __call__(self, event_type: str, obj: dict) -> dict:
        if obj.get("kind") != "Pod" or obj.get("apiVersion") != "v1":
            return obj
        meta = obj.get("metadata") or {}
        key = (meta.get("namespace", ""), meta.get("name", ""))
        if event_type == "MODIFIED":
            return self._carry_over(key, obj)
        if event_type != "ADDED":
            return obj
        if STATUS_ANNOTATION in (meta.get("annotations") or {}):
            self._note(meta, False, f"recorded with {STATUS_ANNOTATION}: stored as it is", "-")
            return obj
        called = False
        for config, hook in self._matching_webhooks(obj):
            called = True
            name = f"{config}/{hook.get('name', '?')}"
            client_config = hook.get("clientConfig") or {}
            path = self._our_path(client_config)
            if path is None:
                self._note(meta, False, f"webhook calls {webhookmatch.target(client_config)}, not this istiod", name)
                continue
            obj = self._call(obj, path, name)
        if not called:
            self._note(meta, False, "no MutatingWebhookConfiguration webhook matches the namespace/pod labels",
                       "-")
        elif STATUS_ANNOTATION in ((obj.get("metadata") or {}).get("annotations") or {}):
            self._injected.add(key)
        return obj

    # -- matching and targets, as kube-apiserver does (mesh.kube.webhookmatch) -------------------------
    def _matching_webhooks(self, pod: dict):
        request = webhookmatch.Request.for_object("CREATE", pod)
        configurations = self.client.list_objects("MutatingWebhookConfiguration")
        return webhookmatch.matching_webhooks(configurations, request, self._namespace)

    def _namespace(self, name: str) -> dict | None:
        return self.client.get("namespaces", name)

    def _our_path(self, client_config: dict) -> str | None:
        """The request path if the webhook calls this istiod's /inject, else None."""
        where = webhookmatch.target(client_config)
        if where.service and (where.service, where.namespace) != (self.service, self.istiod_namespace):
            return None
        return where.path if webhookmatch.path_served_by(where.path, "/inject") else None

    # -- calling the webhook ------------------------------------------------------------------------------
    def _call(self, pod: dict, path: str, via: str) -> dict:
        meta = pod.get("metadata") or {}
        review = {
            "apiVersion": ADMISSION_V1, "kind": "AdmissionReview",
            "request": {
                "uid": f"replay-{next(self._uids):04d}",
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
                "requestResource": {"group": "", "version": "v1", "resource": "pods"},
                "name": meta.get("name", ""), "namespace": meta.get("namespace", ""),
                "operation": "CREATE",
                "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
                "object": pod, "oldObject": None, "dryRun": False,
                "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
            },
        }
        answer = self.webhook.review(review, path, via=via)
        response = answer.get("response") or {}
        if not response.get("allowed"):
            log.warning("webhook %s refused %s/%s: %s", via, meta.get("namespace"), meta.get("name"),
                        (response.get("status") or {}).get("message"))
            return pod
        if response.get("patchType") != "JSONPatch" or not response.get("patch"):
            return pod
        # What kube-apiserver does with the answer: decode the base64 JSONPatch and apply it.
        return jsonpatch.apply_patch(pod, json.loads(base64.b64decode(response["patch"])))

    def _carry_over(self, key: tuple[str, str], pod: dict) -> dict:
        annotations = (pod.get("metadata") or {}).get("annotations") or {}
        if key not in self._injected or STATUS_ANNOTATION in annotations:
            return pod
        # Re-run the injection quietly: the templates are deterministic, so this is the pod's
        # sidecar as it was admitted.
        saved = list(self.webhook.decisions)
        counts = self.webhook.counts.copy()
        injected = self._call(pod, "/inject", "carry-over")
        self.webhook.decisions.clear()
        self.webhook.decisions.extend(saved)
        self.webhook.counts = counts
        return injected

    def _note(self, meta: dict, injected: bool, reason: str, via: str) -> None:
        self.webhook.decisions.append(AdmissionDecision(
            t=self.webhook._now(), namespace=meta.get("namespace", ""), pod=potential_pod_name(meta),
            injected=injected, reason=reason, via=via))
