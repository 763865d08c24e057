"""Admission webhooks, called as kube-apiserver calls them.

On every create and update, kube-apiserver looks through the stored
MutatingWebhookConfigurations, then the ValidatingWebhookConfigurations. For each webhook
whose ``rules`` (operation, group, version, resource, scope), ``namespaceSelector`` and
``objectSelector`` match, it POSTs an ``AdmissionReview`` (``admission.k8s.io/v1``) over
HTTPS, trusting only the ``caBundle`` of that webhook, and waits at most
``timeoutSeconds``. A mutating webhook may answer with a base64 JSONPatch, applied before the
next webhook runs; any webhook may deny. If a webhook cannot be reached (or answers
nonsense), ``failurePolicy`` decides: ``Fail`` rejects the write, ``Ignore`` skips it.

This is how a pod gets its sidecar: istiod's injector is such a webhook
(https://github.com/istio/istio/blob/1.19.0/pkg/kube/inject/webhook.go#L1065-L1138 reads the
AdmissionReview and writes the answer; the webhook configuration it is called through is rendered from
https://github.com/istio/istio/blob/1.19.0/manifests/charts/istio-control/istio-discovery/templates/mutatingwebhook.yaml).

A webhook's ``warnings`` (istiod's validation returns its warnings there) are passed on to the
client as ``Warning: 299 - "<text>"`` response headers, as kube-apiserver does, denied or not;
kubectl prints each as a ``Warning:`` line. A denial becomes the Status kube-apiserver builds
(``ToStatusErr`` in k8s.io/apiserver's webhook errors): code at least 400, the webhook's reason
(often none), message ``admission webhook "<name>" denied the request: <message>``, and nothing
is stored.

Simplifications, named: ``matchConditions`` (CEL) and ``matchPolicy: Equivalent`` are not
evaluated; validating webhooks run one after another instead of in parallel; a webhook is
only ever called on a loopback address — a ``url`` on 127.0.0.0/8 or ``localhost``, or a
``service`` reference whose Service has a loopback ``clusterIP`` (called on the service
port). Anything else counts as unreachable and ``failurePolicy`` applies.
"""

from __future__ import annotations

import base64
import contextvars
import dataclasses
import json
import logging
import ssl
import uuid
from urllib.parse import urlparse

import aiohttp
import jsonpatch

from mesh.kube import kinds, webhookmatch
from mesh.kube.apiserver import errors
from mesh.kube.apiserver.store import Store
from mesh.kube.kinds import Kind
from mesh.util.net import is_loopback

log = logging.getLogger(__name__)

MUTATING = kinds.lookup("admissionregistration.k8s.io", "MutatingWebhookConfiguration")
VALIDATING = kinds.lookup("admissionregistration.k8s.io", "ValidatingWebhookConfiguration")
NAMESPACE = kinds.lookup("", "Namespace")


# The warnings webhooks gave for the request being served (the API server sets a fresh list per request).
WARNINGS: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("admission_warnings", default=None)


def denial(name: str, result: dict) -> errors.StatusError:
    """The Status kube-apiserver returns when webhook ``name`` denies, from its ``result`` Status."""
    denied_by = f'admission webhook "{name}" denied the request'
    if result.get("message"):
        message = f"{denied_by}: {result['message']}"
    elif result.get("reason"):
        message = f"{denied_by}: {result['reason']}"
    else:
        message = f"{denied_by} without explanation"
    return errors.StatusError(max(int(result.get("code") or 400), 400), result.get("reason") or "", message)


class WebhookUnreachable(Exception):
    """The webhook could not give an answer (connection, TLS, timeout, bad response)."""


def webhook_address(client_config: dict, store: Store) -> tuple[str, str]:
    """(URL to POST to, TLS server name) for a webhook's clientConfig; loopback only."""
    if client_config.get("url"):
        url = client_config["url"]
        host = urlparse(url).hostname or ""
        if urlparse(url).scheme != "https":
            raise WebhookUnreachable(f"webhook url {url} is not https")
        if not is_loopback(host):
            raise WebhookUnreachable(f"refusing to call {url}: mesh only calls loopback addresses")
        return url, host
    service = client_config.get("service") or {}
    name, namespace = service.get("name", ""), service.get("namespace", "")
    svc = store.find(kinds.lookup("", "Service"), namespace, name)
    if svc is None:
        raise WebhookUnreachable(f'service "{namespace}/{name}" not found')
    ip = (svc.get("spec") or {}).get("clusterIP", "")
    if not is_loopback(ip):
        raise WebhookUnreachable(f"service {namespace}/{name} has clusterIP {ip!r}, not a loopback address")
    path = service.get("path") or "/"
    return f"https://{ip}:{service.get('port', 443)}{path}", f"{name}.{namespace}.svc"


def _ssl_context(ca_bundle: str | None) -> ssl.SSLContext:
    if not ca_bundle:
        return ssl.create_default_context()
    try:
        pem = base64.b64decode(ca_bundle).decode()
        return ssl.create_default_context(cadata=pem)
    except (ValueError, ssl.SSLError) as err:
        raise WebhookUnreachable(f"bad caBundle: {err}") from err


def review_request(operation: str, kind: Kind, version: str, obj: dict, old: dict | None,
                   dry_run: bool) -> dict:
    meta = obj.get("metadata") or {}
    gvk = {"group": kind.group, "version": version, "kind": kind.kind}
    gvr = {"group": kind.group, "version": version, "resource": kind.plural}
    return {
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": str(uuid.uuid4()), "kind": gvk, "resource": gvr, "requestKind": gvk, "requestResource": gvr,
            "name": meta.get("name", ""), "namespace": meta.get("namespace", ""), "operation": operation,
            "userInfo": {"username": "mesh-replay", "groups": ["system:masters", "system:authenticated"]},
            "object": obj, "oldObject": old, "dryRun": dry_run,
            "options": {"apiVersion": "meta.k8s.io/v1",
                        "kind": "CreateOptions" if operation == "CREATE" else "UpdateOptions"},
        },
    }


async def call_webhook(webhook: dict, store: Store, review: dict) -> dict:
    """POST the review; return the AdmissionReview ``response``; WebhookUnreachable on failure."""
    client_config = webhook.get("clientConfig") or {}
    url, server_name = webhook_address(client_config, store)
    context = _ssl_context(client_config.get("caBundle"))
    timeout = aiohttp.ClientTimeout(total=float(webhook.get("timeoutSeconds", 10)))
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async with session.post(url, json=review, ssl=context, server_hostname=server_name) as resp:
                if resp.status != 200:
                    raise WebhookUnreachable(f"{url} answered HTTP {resp.status}")
                body = await resp.json(content_type=None)
    except aiohttp.ClientConnectorError as err:  # its text would show the SSL context object
        raise WebhookUnreachable(f"{url}: cannot connect: {err.os_error}") from err
    except (TimeoutError, aiohttp.ClientError, ValueError, ssl.SSLError) as err:
        raise WebhookUnreachable(f"{url}: {err or type(err).__name__}") from err
    response = body.get("response") if isinstance(body, dict) else None
    if not isinstance(response, dict) or response.get("uid") != review["request"]["uid"]:
        raise WebhookUnreachable(f"{url}: the answer is not an AdmissionReview for this request")
    return response


class Admission:
    """Runs the stored webhooks for one write."""

    def __init__(self, store: Store):
        self.store = store
        self.calls: list[tuple[str, str]] = []  # (webhook name, outcome), for tests and notebooks
        self._warned: set[str] = set()

    async def admit(self, operation: str, kind: Kind, version: str, obj: dict, old: dict | None = None,
                    dry_run: bool = False, strict: bool = True) -> dict:
        """The object after mutating webhooks, once validating ones allowed it.

        ``strict=False`` (trace replay): a webhook that cannot be reached or denies is logged
        and the object is stored as the trace recorded it — the trace is what happened."""
        if webhookmatch.is_exempt(obj):
            return obj
        for config_kind, mutating in ((MUTATING, True), (VALIDATING, False)):
            # the request as kube-apiserver sees it: the version the client wrote to, the object
            # as the mutating webhooks left it
            request = dataclasses.replace(webhookmatch.Request.for_object(operation, obj, old), version=version)
            for _config, webhook in webhookmatch.matching_webhooks(self.store.list(config_kind), request,
                                                                  self._namespace):
                obj = await self._run(webhook, mutating, operation, kind, version, obj, old, dry_run, strict)
        return obj

    def _namespace(self, name: str) -> dict | None:
        return self.store.find(NAMESPACE, "", name)

    async def _run(self, webhook: dict, mutating: bool, operation: str, kind: Kind, version: str, obj: dict,
                   old: dict | None, dry_run: bool, strict: bool) -> dict:
        name = webhook.get("name", "")
        review = review_request(operation, kind, version, obj, old, dry_run)
        try:
            response = await call_webhook(webhook, self.store, review)
        except WebhookUnreachable as err:
            policy = webhook.get("failurePolicy", "Fail")
            self.calls.append((name, f"unreachable ({policy})"))
            if policy == "Ignore" or not strict:
                # once per webhook at WARNING: a trace replayed without its webhook running would
                # otherwise print one line per pod
                level = logging.DEBUG if name in self._warned else logging.WARNING
                self._warned.add(name)
                log.log(level, "webhook %s failed (%s), failurePolicy %s: continuing%s", name, err, policy,
                        "" if strict else " (trace event stored as recorded)")
                return obj
            raise errors.StatusError(500, "InternalError",
                                     f'Internal error occurred: failed calling webhook "{name}": {err}') from err
        sink = WARNINGS.get()
        if sink is not None:
            sink.extend(str(w) for w in response.get("warnings") or [])
        if not response.get("allowed"):
            self.calls.append((name, "denied"))
            err = denial(name, response.get("status") or {})  # AdmissionResponse.status: a metav1.Status
            if not strict:
                log.warning("%s (trace event stored anyway)", err.message)
                return obj
            raise err
        if mutating and response.get("patch"):
            if response.get("patchType", "JSONPatch") != "JSONPatch":
                raise errors.StatusError(500, "InternalError", f'webhook "{name}": unsupported patchType')
            try:
                ops = json.loads(base64.b64decode(response["patch"]))
                obj = jsonpatch.apply_patch(obj, ops)
            except (ValueError, jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as err:
                raise errors.StatusError(500, "InternalError",
                                         f'Internal error occurred: webhook "{name}" sent a bad patch: {err}') from err
            self.calls.append((name, "patched"))
        else:
            self.calls.append((name, "allowed"))
        return obj
