"""Replay admission for Istio config: kube-apiserver's validating step, in front of a ReplayClient.

On a real cluster a bad VirtualService never reaches istiod's config store: kube-apiserver, before
storing it, finds the ValidatingWebhookConfigurations whose webhooks match the request, POSTs each
an AdmissionReview, and refuses the write if any answers ``allowed: false`` — ``kubectl apply``
prints ``admission webhook "validation.istio.io" denied the request: <istiod's message>``. istiod's
side is ``/validate``
(https://github.com/istio/istio/blob/1.19.0/pkg/webhooks/validation/server/server.go#L195-L249,
here :func:`mesh.webhooks.validation.review`); the configurations come from the charts
(https://github.com/istio/istio/blob/1.19.0/manifests/charts/base/templates/default.yaml#L1-L48,
the ``istiod-default-validator`` for objects without an ``istio.io/rev`` label, and
https://github.com/istio/istio/blob/1.19.0/manifests/charts/istio-control/istio-discovery/templates/validatingwebhookconfiguration.yaml#L1-L57
for objects labelled with the revision).

``ReplayValidation`` plays kube-apiserver's part for a ``ReplayClient`` (DESIGN §4): it is an
admission plugin ``(event_type, obj) -> obj``. For every ADDED or MODIFIED event it builds the
request (CREATE when the object is not stored — also when the trace MODIFIES an object that an
earlier denial kept out, as ``kubectl apply`` would then create it — else UPDATE with the stored
object as ``oldObject``), picks the webhooks with :mod:`mesh.kube.webhookmatch`, and for each
webhook that calls this istiod (Service ``istiod`` or ``istiod-<rev>`` in istiod's namespace)
hands the AdmissionReview to ``review`` in-process. Every call is a :class:`ValidationDecision`.

Outcomes, as kube-apiserver has them:

* ``allowed`` — the object is stored (istiod's warnings, if any, are kept with the decision);
* ``denied`` — the webhook said no: :class:`~mesh.kube.client.AdmissionDenied` is raised with
  kube-apiserver's message, the object is not stored and no informer hears of it. A denial is a
  denial whatever the ``failurePolicy``;
* ``error`` — the webhook could not answer (istiod has no handler at that path, ``review``
  raised, the answer is not an AdmissionReview for this request): ``failurePolicy: Fail`` (the
  v1 default) refuses the object, ``Ignore`` lets it through and the decision says so.

Simplifications, named: webhooks run one after the other (kube-apiserver calls validating
webhooks in parallel; every one is still called and any denial refuses); a webhook that calls
another Service (another revision's istiod) is not called at all and its decision says so — in
replay nobody else is listening; istiod's validation controller, which patches the caBundle and
switches ``failurePolicy`` from Ignore to Fail once it has seen an invalid Gateway refused
(https://github.com/istio/istio/blob/1.19.0/pkg/webhooks/validation/controller/controller.go#L135-L168),
is not run: the configurations stay as the trace has them.
"""

from __future__ import annotations

import copy
import itertools
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from mesh.kube import kinds, webhookmatch
from mesh.kube.client import AdmissionDenied, ReplayClient
from mesh.webhooks import validation

log = logging.getLogger(__name__)

VALIDATE_ROUTE = "/validate"
ADMISSION_V1 = "admission.k8s.io/v1"
REPLAY_USER = {"username": "kubernetes-admin", "groups": ["system:masters", "system:authenticated"]}


class WebhookError(Exception):
    """The webhook gave no usable answer."""


@dataclass(frozen=True)
class ValidationDecision:
    """One webhook call (or non-call) for one write, for display and tests."""

    t: float  # virtual time of the write
    operation: str  # CREATE | UPDATE
    kind: str
    namespace: str
    name: str
    webhook: str  # "<configuration>/<webhook name>"
    outcome: str  # allowed | denied | error | not called
    allowed: bool  # did this webhook let the object through
    message: str = ""  # istiod's message (denied), the error (error), why not called
    warnings: tuple[str, ...] = field(default_factory=tuple)
    failure_policy: str = "Fail"
    uid: str = ""  # the AdmissionReview's request uid ("" when the webhook was not called)

    @property
    def object_name(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name


def istiod_service(revision: str = "") -> str:
    """The Service the charts point webhooks at: ``istiod``, or ``istiod-<rev>`` for a revision."""
    return "istiod" if revision in ("", "default") else f"istiod-{revision}"


class ReplayValidation:
    """kube-apiserver's validating-admission step for Istio config, in front of a ReplayClient's store."""

    def __init__(self, client: ReplayClient, istiod_namespace: str = "istio-system", revision: str = "",
                 review: Callable[[object], dict] = validation.review):
        self.client = client
        self.istiod_namespace = istiod_namespace
        self.service = istiod_service(revision)
        self.review = review
        self.decisions: list[ValidationDecision] = []
        self.exchanges: dict[str, tuple[dict, object]] = {}  # uid → (AdmissionReview sent, answer)
        self._uids = itertools.count(1)

    def install(self) -> ReplayValidation:
        self.client.admission.append(self)
        return self

    # -- the plugin --------------------------------------------------------------------------------
    def __call__(self, event_type: str, obj: dict) -> dict:
        if event_type not in ("ADDED", "MODIFIED"):
            return obj
        kind = kinds.for_object(obj)
        if kind is None or webhookmatch.is_exempt(obj):
            return obj
        configurations = self.client.list_objects("ValidatingWebhookConfiguration")
        if not configurations:
            return obj
        old = self._stored(kind, obj)
        request = webhookmatch.Request.for_object("UPDATE" if old is not None else "CREATE", obj, old)
        denials = []
        for config_name, webhook in webhookmatch.matching_webhooks(configurations, request, self._namespace):
            message = self._call(config_name, webhook, request, kind)
            if message is not None:
                denials.append(message)
        if denials:
            raise AdmissionDenied(denials[0])
        return obj

    # -- helpers -------------------------------------------------------------------------------------
    def _stored(self, kind: kinds.Kind, obj: dict) -> dict | None:
        key = kinds.object_key(obj)
        for stored in self.client.list_objects(kind):
            if kinds.object_key(stored) == key:
                return stored
        return None

    def _namespace(self, name: str) -> dict | None:
        return self.client.get("namespaces", name)

    def _review_for(self, request: webhookmatch.Request, kind: kinds.Kind) -> dict:
        meta = (request.object or {}).get("metadata") or {}
        gvk = {"group": kind.group, "version": request.version, "kind": kind.kind}
        gvr = {"group": kind.group, "version": request.version, "resource": kind.plural}
        return {
            "apiVersion": ADMISSION_V1, "kind": "AdmissionReview",
            "request": {
                "uid": f"replay-validate-{next(self._uids):04d}",
                "kind": gvk, "resource": gvr, "requestKind": dict(gvk), "requestResource": dict(gvr),
                "name": meta.get("name", ""), "namespace": meta.get("namespace", ""),
                "operation": request.operation, "userInfo": copy.deepcopy(REPLAY_USER),
                "object": request.object, "oldObject": request.old_object, "dryRun": False,
                "options": {"apiVersion": "meta.k8s.io/v1",
                            "kind": "CreateOptions" if request.operation == "CREATE" else "UpdateOptions"},
            },
        }

    def _ask(self, webhook: dict, review: dict) -> dict:
        """The AdmissionResponse for ``review``, or WebhookError, as kube-apiserver's client sees it."""
        where = webhookmatch.target(webhook.get("clientConfig"))
        if not webhookmatch.path_served_by(where.path, VALIDATE_ROUTE):
            raise WebhookError(f"the server could not find the requested resource (istiod serves no {where.path})")
        try:
            answer = self.review(review)
            self.exchanges[review["request"]["uid"]] = (review, answer)
        except Exception as err:  # whatever breaks inside the webhook, the API server sees no answer
            raise WebhookError(f"{type(err).__name__}: {err}") from err
        response = answer.get("response") if isinstance(answer, dict) else None
        if not isinstance(response, dict) or response.get("uid") != review["request"]["uid"]:
            raise WebhookError("the answer is not an AdmissionReview for this request")
        return response

    def _call(self, config_name: str, webhook: dict, request: webhookmatch.Request, kind: kinds.Kind) -> str | None:
        """Call one webhook and record the decision; the denial message, or None if the object may pass."""
        hook_name = webhook.get("name", "")
        meta = (request.object or {}).get("metadata") or {}
        policy = webhook.get("failurePolicy") or "Fail"

        def note(outcome: str, allowed: bool, message: str = "", warnings=(), uid: str = "") -> None:
            self.decisions.append(ValidationDecision(
                t=self.client.clock.now(), operation=request.operation, kind=kind.kind,
                namespace=meta.get("namespace", ""), name=meta.get("name", ""),
                webhook=f"{config_name}/{hook_name}", outcome=outcome, allowed=allowed, message=message,
                warnings=tuple(warnings), failure_policy=policy, uid=uid))

        where = webhookmatch.target(webhook.get("clientConfig"))
        if (where.service, where.namespace) != (self.service, self.istiod_namespace):
            note("not called", True, f"calls {where}, not this istiod")
            return None
        review = self._review_for(request, kind)
        uid = review["request"]["uid"]
        try:
            response = self._ask(webhook, review)
        except WebhookError as err:
            if policy == "Ignore":
                log.warning("webhook %s failed (%s); failurePolicy Ignore: admitted", hook_name, err)
                note("error", True, f"failed calling webhook: {err}; failurePolicy Ignore: admitted", uid=uid)
                return None
            note("error", False, f"failed calling webhook: {err}", uid=uid)
            return f'Internal error occurred: failed calling webhook "{hook_name}": {err}'
        if response.get("allowed"):
            note("allowed", True, warnings=response.get("warnings") or (), uid=uid)
            return None
        message = (response.get("status") or {}).get("message", "")
        log.info("webhook %s denied %s %s: %s", hook_name, kind.kind, where_of(meta), message)
        note("denied", False, message, uid=uid)
        return f'admission webhook "{hook_name}" denied the request: {message}'


def where_of(meta: dict) -> str:
    return f"{meta.get('namespace')}/{meta.get('name')}" if meta.get("namespace") else str(meta.get("name"))


def describe_decisions(decisions: list[ValidationDecision]) -> list[dict]:
    """The decisions as JSON-ready dicts, in the order they were made (``/debug/validation``)."""
    out = []
    for d in decisions:
        row = asdict(d)
        row["warnings"] = list(d.warnings)
        out.append(row)
    return out
