"""Keep the ``caBundle`` of istiod's webhook configurations equal to the root that signed its cert.

kube-apiserver calls istiod's webhooks over HTTPS and trusts only the ``caBundle`` written in
each webhook's ``clientConfig``. istiod's certificate is signed by the mesh CA, whose root the
installer cannot know in advance, so istiod patches it in itself, and again whenever a
configuration is (re)applied without it.

Go: ``WebhookCertPatcher.patchMutatingWebhookConfig``
https://github.com/istio/istio/blob/1.19.0/pkg/webhooks/webhookpatch.go#L119-L163 (configs
labelled with istiod's revision, webhooks whose name ends in ``sidecar-injector.istio.io``,
written only when the bundle differs) and the validating webhook controller's
``updateValidatingWebhookConfiguration``
https://github.com/istio/istio/blob/1.19.0/pkg/webhooks/validation/controller/controller.go#L258-L292
(every webhook of the configs labelled with the revision,
https://github.com/istio/istio/blob/1.19.0/pkg/webhooks/validation/controller/controller.go#L127-L129).

Simplifications, named: no rate-limited retry queue (a failed write is logged; the next event
retries), and the validating controller's switch of ``failurePolicy`` from Ignore to Fail once
it has proven the webhook rejects bad config is left out — ``failurePolicy`` is not touched.
"""

from __future__ import annotations

import base64
import copy
import logging
from collections.abc import Callable

from mesh.kube.client import ConflictError, KubeClient, NotFoundError

log = logging.getLogger(__name__)

MUTATING = "mutatingwebhookconfigurations"
VALIDATING = "validatingwebhookconfigurations"
INJECTOR_WEBHOOK_SUFFIX = "sidecar-injector.istio.io"
REVISION_LABEL = "istio.io/rev"


def encode_ca_bundle(pem: str) -> str:
    """``caBundle`` is bytes in the API, so base64 in JSON."""
    return base64.b64encode(pem.encode()).decode()


class WebhookCertPatcher:
    """Patch the mutating (injector) and validating configs of one revision with ``ca_bundle()``."""

    def __init__(self, client: KubeClient, revision: str, ca_bundle: Callable[[], str]):
        self.client = client
        self.revision = revision or "default"  # istiod's REVISION is "default" when none is given
        self.ca_bundle = ca_bundle
        self.patched: list[str] = []  # "Kind/name", in order, for debug views and notebooks

    def run(self) -> None:
        """Patch what exists now, then again on every add or update of a configuration."""
        for plural in (MUTATING, VALIDATING):
            informer = self.client.informer(plural)
            informer.add_event_handler(on_add=self.reconcile, on_update=lambda _old, new: self.reconcile(new))
            for config in informer.list():
                self.reconcile(config)

    def patch_all(self) -> None:
        """After a root change: every configuration again."""
        for plural in (MUTATING, VALIDATING):
            for config in self.client.informer(plural).list():
                self.reconcile(config)

    def reconcile(self, config: dict) -> bool:
        """Write ``config`` back with the current bundle if it is ours and stale; True if written."""
        meta = config.get("metadata") or {}
        if (meta.get("labels") or {}).get(REVISION_LABEL) != self.revision:
            return False  # another revision's istiod patches it
        mutating = config.get("kind") == "MutatingWebhookConfiguration"
        bundle = encode_ca_bundle(self.ca_bundle())
        updated = copy.deepcopy(config)
        ours = [wh for wh in updated.get("webhooks") or []
                if not mutating or wh.get("name", "").endswith(INJECTOR_WEBHOOK_SUFFIX)]
        if not ours or all((wh.get("clientConfig") or {}).get("caBundle") == bundle for wh in ours):
            return False
        for wh in ours:
            wh.setdefault("clientConfig", {})["caBundle"] = bundle
        what = f"{config['kind']}/{meta.get('name')}"
        try:
            self.client.update(updated)
        except (ConflictError, NotFoundError) as err:
            log.warning("patching the caBundle of %s failed: %s", what, err)
            return False
        self.patched.append(what)
        log.info("patched the caBundle of %s (%d webhooks)", what, len(ours))
        return True
