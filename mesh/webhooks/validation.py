"""The config validation webhook: ``POST /validate`` with an AdmissionReview, as istiod serves it.

Go: ``serve`` and ``Webhook.validate`` in
https://github.com/istio/istio/blob/1.19.0/pkg/webhooks/validation/server/server.go#L127-L249
and the top-level field check ``checkFields`` (#L266-L283). istiod registers the handler on
its HTTPS webhook mux (port 15017) for ``/validate`` and ``/validate/`` (#L115-L116); the
per-kind rules live in :mod:`mesh.config.validation`.

What happens to a request, in order:

0. headers, body and shutdown are bounded in time (``mesh/util/web.py``); any body we can parse
   gets an AdmissionReview answer, a wrongly typed field a denial naming it — never HTTP 500;
1. no body → HTTP 400 ``no body found``; a Content-Type other than exactly
   ``application/json`` → HTTP 415. Nothing else is ever an HTTP error.
2. a body that is not an AdmissionReview (bad JSON, wrong kind/apiVersion, no request) → HTTP
   200 with a response that carries only a Status message (``could not decode body: ...``);
   the server carries on serving.
3. operations other than CREATE/UPDATE (DELETE, CONNECT) are allowed without a look.
4. the object is decoded (``cannot decode configuration``), its type looked up
   (``unrecognized type``), its spec decoded (``error decoding configuration``) and validated
   (``configuration is invalid``); then unknown top-level fields are refused.
5. otherwise allowed, with the validation warnings as AdmissionResponse warnings.

The response echoes the request's ``uid`` and the review's apiVersion and kind.

Entry points: :func:`add_routes` (put ``/validate`` on an existing aiohttp app, what
``init_config_validation`` wants), :func:`make_validate_app` (a stand-alone app) and
:func:`review` (the pure AdmissionReview → AdmissionReview function, handy in notebooks).
"""

from __future__ import annotations

import json
import logging

from aiohttp import web

from mesh.config import validation
from mesh.util import safeinput
from mesh.util.clip import clip
from mesh.util.shape import MapOf, shape_problem

log = logging.getLogger(__name__)

REVIEW_API_VERSIONS = ("admission.k8s.io/v1", "admission.k8s.io/v1beta1")
VALID_TOP_LEVEL_FIELDS = {"apiVersion", "kind", "metadata", "spec", "status"}
# What istiod's decode into a config object (``crd.ConvertObject``) needs: wrongly typed top-level
# fields fail it with "cannot decode configuration".
REQUEST_SHAPE = {"uid": str, "namespace": str, "operation": str, "dryRun": bool, "kind": {"kind": str}}
OBJECT_SHAPE = {"apiVersion": str, "kind": str,
                "metadata": {"name": str, "namespace": str, "labels": MapOf(str), "annotations": MapOf(str)},
                "spec": dict}


def _denied(message: str) -> dict:
    # istiod's toAdmissionResponse: allowed stays false, the reason is a metav1.Status message.
    return {"allowed": False, "status": {"metadata": {}, "message": message}}


def admit(request: dict) -> dict:
    """Webhook.validate: the AdmissionResponse (without uid) for one AdmissionRequest."""
    dry_run = " (dry run)" if request.get("dryRun") else ""
    operation = request.get("operation")
    if operation not in ("CREATE", "UPDATE"):
        log.warning("Unsupported webhook operation %s%s", operation, dry_run)
        return {"allowed": True}
    obj = request.get("object")
    if not isinstance(obj, dict):
        return _denied(f"cannot decode configuration: expected an object, got {clip(json.dumps(obj))}")
    problem = shape_problem(obj, OBJECT_SHAPE, "object")
    if problem:
        return _denied(f"cannot decode configuration: {problem}")
    try:
        problems = validation.validate(obj)
    except validation.UnknownKind as err:
        log.info("%s%s", err, dry_run)
        return _denied(str(err))
    except Exception as err:  # a wrongly typed field the rules did not expect: deny, never HTTP 500
        log.warning("validating %s failed: %s", clip(json.dumps(obj.get("metadata"))), clip(repr(err)))
        return _denied(f"error decoding configuration: {clip(str(err))}")
    message = validation.istiod_message(obj, problems)
    if message is not None:
        log.info("%s%s", clip(message, 1000), dry_run)
        return _denied(message)
    meta = obj.get("metadata") or {}
    for key in obj:
        if key not in VALID_TOP_LEVEL_FIELDS:
            kind = (request.get("kind") or {}).get("kind", "")
            return _denied(f'unknown field "{key}" on {kind} resource {request.get("namespace", "")}/'
                           f'{meta.get("name", "")}')
    response: dict = {"allowed": True}
    warnings = [p.message for p in problems if p.severity == "warning"]
    if warnings:
        response["warnings"] = warnings
    return response


def review(body: object) -> dict:
    """The AdmissionReview istiod answers for a decoded JSON body (any value, even a wrong one)."""
    api_version, request = "admission.k8s.io/v1", None
    if not isinstance(body, dict):
        response = _denied("could not decode body: expected an AdmissionReview object")
    elif body.get("kind") != "AdmissionReview" or body.get("apiVersion") not in REVIEW_API_VERSIONS:
        response = _denied(f"could not decode body: unsupported review {body.get('apiVersion')!r}, "
                           f"kind {body.get('kind')!r} (want AdmissionReview in {', '.join(REVIEW_API_VERSIONS)})")
    elif not isinstance(body.get("request"), dict):
        api_version = body["apiVersion"]
        response = _denied("could not decode object: AdmissionReview has no request")
    elif problem := shape_problem(body["request"], REQUEST_SHAPE, "request"):
        api_version = body["apiVersion"]
        response = _denied(f"could not decode object: {problem}")
    else:
        api_version, request = body["apiVersion"], body["request"]
        response = admit(request)
    if request is not None:
        response = {"uid": request.get("uid", ""), **response}
    return {"apiVersion": api_version, "kind": "AdmissionReview", "response": response}


async def handle_validate(request: web.Request) -> web.Response:
    body = await request.read()
    if not body:
        return web.Response(status=400, text="no body found\n")
    if request.headers.get("Content-Type") != "application/json":
        return web.Response(status=415, text="invalid Content-Type, want `application/json`\n")
    try:
        decoded = safeinput.parse_json(body, "body")  # depth-bounded
    except safeinput.InputError as err:
        answer = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                  "response": _denied(f"could not decode body: {err.message}")}
    else:
        answer = review(decoded)
    return web.json_response(answer)


def add_routes(app: web.Application) -> None:
    """Serve the validation webhook on ``app`` (istiod's ``/validate`` and ``/validate/``)."""
    app.router.add_post("/validate", handle_validate)
    app.router.add_post("/validate/", handle_validate)


def make_validate_app() -> web.Application:
    """A stand-alone aiohttp app with just the validation webhook."""
    app = web.Application()
    add_routes(app)
    return app
