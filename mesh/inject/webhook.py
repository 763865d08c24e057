"""The ``/inject`` mutating webhook: AdmissionReview in, JSONPatch out — and a record of every decision.

Go: ``Webhook`` and ``NewWebhook`` https://github.com/istio/istio/blob/1.19.0/pkg/kube/inject/webhook.go#L99-L220,
``inject`` https://github.com/istio/istio/blob/1.19.0/pkg/kube/inject/webhook.go#L998-L1063,
``serveInject`` https://github.com/istio/istio/blob/1.19.0/pkg/kube/inject/webhook.go#L1065-L1138 and
``parseInjectEnvs`` https://github.com/istio/istio/blob/1.19.0/pkg/kube/inject/webhook.go#L1140-L1194.

kube-apiserver POSTs an ``AdmissionReview`` (``admission.k8s.io/v1`` or ``v1beta1``) whose
``request.object`` is the pod being created. The webhook answers with the same ``uid`` and
either ``allowed: true`` alone (not injected), ``allowed: true`` plus a base64 JSONPatch
(injected), or a ``status`` message (something went wrong; kube-apiserver then applies the
webhook's ``failurePolicy``). The HTTP rules are istiod's: an empty body is 400, a
``Content-Type`` other than ``application/json`` is 415, and a body that is not an
AdmissionReview is answered — with HTTP 200 — by a review carrying the error, so one bad
request never takes the server down. Beyond istiod: the request and the Pod are checked against
the types the injector reads (``POD_SHAPE``; istiod gets that from decoding into ``corev1.Pod``),
so a wrongly typed field is a denial naming it, and any other failure is a denial too — never
an HTTP 500. Header, body and shutdown timeouts are ``mesh/util/web.py``'s.

The decision log is bounded: ``MAX_DECISIONS`` rows, and ``MAX_KEPT_BYTES`` of exchanged objects
(reviews, pods, responses); past that the oldest rows keep only their summary.

``/inject/cluster/c1/net/n1`` passes values in the path: ``cluster`` and ``net`` become
``ISTIO_META_CLUSTER_ID`` and ``ISTIO_META_NETWORK``, other keys are upper-cased env names.

Use from aiohttp with ``add_routes(app, webhook)``; ``Webhook.serve`` is the same logic with no
HTTP framework, for tests and benchmarks.
"""

from __future__ import annotations

import base64
import collections
import copy
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from mesh.clock import Clock
from mesh.inject.config import InjectorConfigWatcher
from mesh.inject.inject import (
    InjectionError,
    InjectionParams,
    deploy_meta_from_pod,
    inject_pod,
    proxy_config_for,
)
from mesh.inject.policy import inject_required
from mesh.util import safeinput
from mesh.util.clip import clip
from mesh.util.shape import MapOf, shape_problem

log = logging.getLogger(__name__)

ADMISSION_V1 = "admission.k8s.io/v1"
ADMISSION_V1BETA1 = "admission.k8s.io/v1beta1"
URL_PARAMETER_TO_ENV = {"cluster": "ISTIO_META_CLUSTER_ID", "net": "ISTIO_META_NETWORK"}
# The decision log (for teaching and `replay --show injection`) is bounded by count and by the
# bytes of the exchanged objects it keeps: past MAX_KEPT_BYTES the oldest decisions drop their
# review/pod/response (the summary row stays) until the total is back under the bound.
MAX_DECISIONS = 10_000
MAX_KEPT_BYTES = 16 << 20

_PROBE = {"httpGet": {"path": str, "port": (int, str), "scheme": str, "host": str, "httpHeaders": [dict]},
          "tcpSocket": {"port": (int, str), "host": str}, "grpc": {"port": int, "service": str}, "exec": dict,
          "timeoutSeconds": int, "periodSeconds": int, "initialDelaySeconds": int}
_CONTAINER = {"name": str, "image": str, "args": [str], "command": [str],
              "ports": [{"containerPort": int, "name": str, "protocol": str}],
              "env": [{"name": str, "value": str, "valueFrom": dict}], "volumeMounts": [dict],
              "readinessProbe": _PROBE, "livenessProbe": _PROBE, "startupProbe": _PROBE,
              "securityContext": dict, "resources": dict}
# The Pod fields the injector reads, with their types: istiod decodes request.object into a
# corev1.Pod first, and a wrongly typed field fails that decode ("could not unmarshal raw object").
POD_SHAPE = {"apiVersion": str, "kind": str,
             "metadata": {"name": str, "generateName": str, "namespace": str, "labels": MapOf(str),
                          "annotations": MapOf(str), "ownerReferences": [{"apiVersion": str, "kind": str, "name": str}]},
             "spec": {"containers": [_CONTAINER], "initContainers": [_CONTAINER], "volumes": [dict],
                      "hostNetwork": bool, "serviceAccountName": str, "securityContext": dict,
                      "imagePullSecrets": [dict], "dnsConfig": dict}}
REQUEST_SHAPE = {"uid": str, "namespace": str, "operation": str, "dryRun": bool, "kind": dict}


@dataclass
class AdmissionDecision:
    """One admission of one pod: what was decided, why, and (for teaching) what was exchanged."""

    t: float  # clock time (virtual during replay)
    namespace: str
    pod: str
    injected: bool
    reason: str
    via: str = "http"  # the MutatingWebhookConfiguration webhook that called, or "http"
    patch: list[dict] = field(default_factory=list, repr=False)
    review: dict | None = field(default=None, repr=False)  # the AdmissionReview received
    response: dict | None = field(default=None, repr=False)  # the AdmissionReview sent back
    before: dict | None = field(default=None, repr=False)  # the pod as received
    after: dict | None = field(default=None, repr=False)  # the pod after the patch
    kept_bytes: int = field(default=0, repr=False)  # JSON size of review + before + after, while kept

    @property
    def error(self) -> bool:
        return self.reason.startswith("error:")


def parse_inject_envs(path: str) -> dict[str, str]:
    """``/inject/k1/v1/k2/v2`` → env values (``--slash--`` in a value means ``/``)."""
    parts = path.rstrip("/").split("/", 2)  # ["", "inject", "k1/v1/..."]
    if len(parts) < 3 or not parts[2]:
        return {}
    rest = parts[2]
    if rest.startswith(":ENV:"):  # the deprecated /inject/:ENV:k=v:ENV:k2=v2 form
        items = []
        for pair in rest.split(":ENV:")[1:]:
            key, sep, value = pair.partition("=")
            if key and sep:
                items += [key, value]
    else:
        items = rest.split("/")
        items = [v.replace("--slash--", "/") if i % 2 else v for i, v in enumerate(items)]
    envs = {}
    for i in range(0, len(items) - 1, 2):  # an odd trailing key is ignored, as in istiod
        env = URL_PARAMETER_TO_ENV.get(items[i], items[i].upper())
        if env:
            envs[env] = items[i + 1]
    return envs


def potential_pod_name(meta: dict) -> str:
    if meta.get("name"):
        return meta["name"]
    if meta.get("generateName"):
        return meta["generateName"] + "***** (actual name not yet known)"
    return ""


class Webhook:
    """The sidecar injector: current config (from a watcher), the mesh config, and the decisions."""

    def __init__(self, watcher: InjectorConfigWatcher, mesh: Callable[[], dict], revision: str = "",
                 clock: Clock | None = None):
        self.watcher = watcher
        self.mesh = mesh  # read at every request, so mesh config changes apply at once
        self.revision = revision
        self.clock = clock
        self.decisions: collections.deque[AdmissionDecision] = collections.deque(maxlen=MAX_DECISIONS)
        self.counts = collections.Counter()  # total / skipped / injected / failed, as istiod's metrics
        self._kept_bytes = 0
        self._trimmed = 0  # decisions (from the oldest) whose objects were dropped

    # -- the decision ----------------------------------------------------------------------------
    def review(self, review: dict, path: str = "/inject", via: str = "http") -> dict:
        """Answer one AdmissionReview (a dict); never raises."""
        self.counts["total"] += 1
        if not isinstance(review, dict):
            return self._malformed(f"expected an AdmissionReview object, got {type(review).__name__}")
        api_version, request = review.get("apiVersion"), review.get("request")
        if review.get("kind") != "AdmissionReview" or api_version not in (ADMISSION_V1, ADMISSION_V1BETA1) \
                or not isinstance(request, dict):
            return self._malformed(f"expected an AdmissionReview ({ADMISSION_V1} or {ADMISSION_V1BETA1}) with a "
                                   f"request, got apiVersion={api_version!r} kind={review.get('kind')!r}")
        problem = shape_problem(request, REQUEST_SHAPE, "request")
        if problem:
            self.counts["failed"] += 1
            return {"apiVersion": api_version, "kind": "AdmissionReview",
                    "response": {"uid": "", "allowed": False, "status": {"message": f"could not decode request: {problem}"}}}
        try:
            response, decision = self._admit(request, path, via)
        except Exception as err:  # a bug must not become an HTTP 500: deny, as failurePolicy expects
            log.exception("admission of %s failed", clip(request.get("uid", "")))
            self.counts["failed"] += 1
            response, decision = {"allowed": False, "status": {"message": f"pod injection failed: internal error: "
                                                                          f"{clip(str(err))}"}}, None
        answer = {"apiVersion": api_version, "kind": "AdmissionReview",
                  "response": {"uid": request.get("uid", ""), **response}}
        if decision is not None:
            decision.review, decision.response = review, answer
            self._kept(decision, _size(review) + _size(answer))
        return answer

    def _admit(self, request: dict, path: str, via: str) -> tuple[dict, AdmissionDecision | None]:
        pod = request.get("object")
        problem = shape_problem(pod, POD_SHAPE, "request.object") if pod is not None else "request.object: missing"
        if problem:
            self.counts["failed"] += 1
            return {"allowed": False, "status": {"message": f"could not unmarshal raw object: {problem}"}}, None
        pod = copy.deepcopy(pod)  # our own copy
        meta = pod.setdefault("metadata", {})
        meta.pop("managedFields", None)
        if not meta.get("namespace"):
            meta["namespace"] = request.get("namespace", "")
        name = potential_pod_name(meta)
        config = self.watcher.config
        decision = inject_required(config, pod.get("spec") or {}, meta)
        record = AdmissionDecision(t=self._now(), namespace=meta["namespace"], pod=name, injected=False,
                                   reason=decision.reason, via=via, before=copy.deepcopy(pod))
        if not decision:
            log.info("skipping %s/%s: %s", clip(meta["namespace"]), clip(name), decision.reason)
            self.counts["skipped"] += 1
            self._record(record)
            return {"allowed": True}, record
        mesh = self.mesh()
        try:
            deploy_meta, type_meta = deploy_meta_from_pod(pod)
            result = inject_pod(InjectionParams(
                pod=pod, config=config, values=self.watcher.values, mesh_config=mesh,
                proxy_config=proxy_config_for(mesh, meta.get("annotations")), revision=self.revision,
                proxy_envs=parse_inject_envs(path), deploy_meta=deploy_meta, type_meta=type_meta,
            ))
        except InjectionError as err:
            log.error("pod injection failed for %s/%s: %s", meta["namespace"], name, err)
            self.counts["failed"] += 1
            record.reason = f"error: {err}"
            self._record(record)
            return {"allowed": False, "status": {"message": f"pod injection failed: {err}"}}, record
        self.counts["injected"] += 1
        record.injected, record.patch, record.after = True, result.patch, result.pod
        self._record(record)
        patch = base64.b64encode(json.dumps(result.patch, separators=(",", ":")).encode()).decode()
        return {"allowed": True, "patch": patch, "patchType": "JSONPatch"}, record

    def _malformed(self, message: str) -> dict:
        log.error("could not decode admission review: %s", clip(message))
        self.counts["failed"] += 1
        # istiod answers in v1beta1 when it could not even tell which version it was asked in.
        return {"response": {"uid": "", "allowed": False, "status": {"message": message}}}

    def _now(self) -> float:
        return round(self.clock.now(), 6) if self.clock is not None else 0.0

    def _record(self, decision: AdmissionDecision) -> None:
        """Keep the decision (counted without its response, added by ``_kept``)."""
        if len(self.decisions) == self.decisions.maxlen:
            self._kept_bytes -= self.decisions[0].kept_bytes
            self._trimmed = max(0, self._trimmed - 1)
        self.decisions.append(decision)
        self._kept(decision, _size(decision.before) + _size(decision.after))

    def _kept(self, decision: AdmissionDecision, size: int) -> None:
        """Count ``size`` more bytes held by ``decision``; then, while over ``MAX_KEPT_BYTES``, the
        oldest decisions drop their objects (all but the newest), keeping their summary row."""
        decision.kept_bytes += size
        self._kept_bytes += size
        while self._kept_bytes > MAX_KEPT_BYTES and self._trimmed < len(self.decisions) - 1:
            old = self.decisions[self._trimmed]
            self._kept_bytes -= old.kept_bytes
            old.kept_bytes = 0
            old.review = old.before = old.after = old.response = None
            old.patch = []
            self._trimmed += 1

    @property
    def kept_bytes(self) -> int:
        """Bytes (as JSON) of the objects the decision log still holds."""
        return self._kept_bytes

    # -- HTTP, framework-free ------------------------------------------------------------------------
    def serve(self, body: bytes, content_type: str | None, path: str = "/inject") -> tuple[int, str, bytes]:
        """``serveInject``: (HTTP status, content type, body) for one POST."""
        if not body:
            self.counts["failed"] += 1
            return 400, "text/plain", b"no body found\n"
        if content_type != "application/json":
            self.counts["failed"] += 1
            return 415, "text/plain", b"invalid Content-Type, want `application/json`\n"
        try:
            review = safeinput.parse_json(body, "body")  # depth-bounded
        except safeinput.InputError as err:
            answer = self._malformed(f"could not decode body: {err.message}")
        else:
            answer = self.review(review, path)
        return 200, "application/json", json.dumps(answer, separators=(",", ":")).encode()


def _size(obj: object) -> int:
    return len(json.dumps(obj, separators=(",", ":"), default=str)) if obj is not None else 0


# -- aiohttp -----------------------------------------------------------------------------------------
def make_handler(webhook: Webhook):
    from aiohttp import web

    async def serve_inject(request: web.Request) -> web.Response:
        body = await request.read()
        status, content_type, payload = webhook.serve(body, request.headers.get("Content-Type"), request.path)
        return web.Response(status=status, body=payload, content_type=content_type)

    return serve_inject


def add_routes(app, webhook: Webhook) -> None:
    """Serve ``/inject`` and ``/inject/...`` on an ``aiohttp.web.Application``."""
    handler = make_handler(webhook)
    app.router.add_post("/inject", handler)
    app.router.add_post("/inject/{params:.*}", handler)


# -- for `replay --show injection` and notebooks --------------------------------------------------------
def describe_decisions(decisions) -> list[dict]:
    """One row per admission decision: time, pod, injected or not, why, and which webhook called."""
    return [
        {"t": round(d.t, 3), "pod": f"{d.namespace}/{d.pod}", "injected": "yes" if d.injected else "no",
         "reason": d.reason, "via": d.via, "patch ops": len(d.patch)}
        for d in decisions
    ]


def format_decisions(decisions) -> str:
    """``describe_decisions`` as a plain-text table."""
    rows = describe_decisions(decisions)
    if not rows:
        return "no admission decisions"
    headers = list(rows[0])
    widths = {h: max(len(h), *(len(str(r[h])) for r in rows)) for h in headers}
    lines = ["  ".join(h.ljust(widths[h]) for h in headers).rstrip()]
    lines += ["  ".join(str(r[h]).ljust(widths[h]) for h in headers).rstrip() for r in rows]
    return "\n".join(lines)
