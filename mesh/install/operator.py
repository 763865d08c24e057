"""The operator: a controller that keeps a cluster equal to what its IstioOperator objects render.

Istio's in-cluster operator (https://github.com/istio/istio/blob/1.19.0/operator/pkg/controller/istiocontrolplane/istiocontrolplane_controller.go#L245-L410,
``Reconcile``) watches IstioOperator objects and the objects it installed; for each change it
renders the IstioOperator with the same code ``istioctl install`` uses and hands the result to
the same ``HelmReconciler``, which applies, waits and prunes, then writes ``status`` back onto the
IstioOperator. mesh's ``Operator`` is that loop on a ``KubeClient``:

* informer handlers only put the IstioOperator's key on a work queue (the owner of a changed or
  deleted installed object is found by its ``install.operator.istio.io/owning-resource`` label,
  so an object deleted by hand brings its owner back into the queue and is recreated);
* ``process()`` takes keys off the queue and reconciles each: render, apply (create, update on
  drift), prune what the profile no longer has, and set ``status``;
* an IstioOperator that does not validate gets ``status.status: ERROR`` with the problems in
  ``status.message``, and nothing in the cluster changes;
* a deleted IstioOperator has everything it owned removed (Istio does this with a finalizer);
* one annotated ``install.istio.io/ignoreReconcile: "true"`` (the copy ``istioctl install`` and
  ``mesh install`` save as ``installed-state``) is left alone.

Handlers never write: with a ``ReplayClient`` they run inside the write that triggered them, so
the work is queued and done by ``process()``, as client-go controllers do with a rate-limited
work queue.
"""

from __future__ import annotations

import copy
import logging
import queue
import threading
from dataclasses import dataclass

from mesh.install import apply as applier
from mesh.install import iop as iopmod
from mesh.install import render
from mesh.install.overlay import OverlayError
from mesh.kube import kinds
from mesh.kube.client import KubeClient

log = logging.getLogger(__name__)

HEALTHY, ERROR, RECONCILING = "HEALTHY", "ERROR", "RECONCILING"
# istioctl saves what it installed as an IstioOperator with this annotation; the operator leaves
# such objects alone (istiocontrolplane_controller.go#L71-L72, #L277-L280).
IGNORE_RECONCILE = "install.istio.io/ignoreReconcile"


@dataclass
class Outcome:
    """What one reconcile did."""

    key: tuple[str, str]  # (namespace, name) of the IstioOperator
    status: str  # HEALTHY | ERROR | DELETED
    message: str = ""
    result: applier.ApplyResult | None = None

    def __str__(self) -> str:
        what = self.result.summary() if self.result else ""
        return f"IstioOperator {self.key[0]}/{self.key[1]}: {self.status}" + (f" ({what})" if what else "") + \
            (f": {self.message}" if self.message else "")


class Operator:
    """Reconciles IstioOperator objects. See the module docstring."""

    def __init__(self, client: KubeClient, wait: bool = False, timeout: float = 300.0):
        self.client = client
        self.wait = wait
        self.timeout = timeout
        self.queue: queue.Queue[tuple[str, str]] = queue.Queue()
        self._queued: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self.outcomes: list[Outcome] = []
        self._writing: tuple[str, str] | None = None  # the key being reconciled: its own writes are not news
        self.iops = client.informer(kinds.resolve("IstioOperator"))
        self.iops.add_event_handler(on_add=self._iop_changed, on_update=self._iop_updated, on_delete=self._iop_changed)
        for kind_name in applier.PRUNABLE:
            self.client.informer(kinds.resolve(kind_name)).add_event_handler(
                on_update=lambda old, new: self._owned_changed(new), on_delete=self._owned_changed)

    # -- handlers: enqueue only ---------------------------------------------------------------
    def enqueue(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        with self._lock:
            if key in self._queued:
                return
            self._queued.add(key)
        self.queue.put(key)

    def _iop_changed(self, obj: dict) -> None:
        meta = obj.get("metadata") or {}
        if (meta.get("annotations") or {}).get(IGNORE_RECONCILE) == "true":
            return
        self.enqueue(meta.get("namespace", ""), meta.get("name", ""))

    def _iop_updated(self, old: dict, new: dict) -> None:
        # Our own status writes come back as updates: only a change outside status is new work.
        if {k: v for k, v in old.items() if k not in ("status", "metadata")} != \
                {k: v for k, v in new.items() if k not in ("status", "metadata")}:
            self._iop_changed(new)

    def _owned_changed(self, obj: dict) -> None:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        owner = labels.get(applier.OWNING_RESOURCE)
        owner_ns = labels.get(applier.OWNING_NAMESPACE)
        if owner and owner_ns and (owner_ns, owner) != self._writing and self.iops.get(owner, owner_ns) is not None:
            self.enqueue(owner_ns, owner)

    # -- the loop -----------------------------------------------------------------------------
    def process(self, block_seconds: float = 0.0) -> list[Outcome]:
        """Reconcile queued keys until the queue is empty (waiting up to ``block_seconds`` for the
        first one); returns what was done."""
        done = []
        timeout = block_seconds
        while True:
            try:
                key = self.queue.get(timeout=timeout) if timeout > 0 else self.queue.get_nowait()
            except queue.Empty:
                return done
            timeout = 0.0
            with self._lock:
                self._queued.discard(key)
            self._writing = key
            try:
                outcome = self.reconcile(*key)
            finally:
                self._writing = None
            log.info("%s", outcome)
            self.outcomes.append(outcome)
            done.append(outcome)

    def reconcile(self, namespace: str, name: str) -> Outcome:
        key = (namespace, name)
        obj = self.iops.get(name, namespace)
        owner = applier.Owner(name=name, namespace=namespace)
        if obj is None:
            result = applier.ApplyResult()
            applier.prune(self.client, owner, set(), result)
            return Outcome(key, "DELETED", result=result)
        user = {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"), "spec": copy.deepcopy(obj.get("spec") or {})}
        try:
            effective = iopmod.generate(user, source=f"IstioOperator {namespace}/{name}")
            rendered = render.render(effective)
        except (iopmod.IstioOperatorError, OverlayError) as err:
            self._set_status(obj, {"status": ERROR, "message": str(err)})
            return Outcome(key, ERROR, message=str(err))
        owner.revision = effective["spec"].get("revision") or ""
        try:
            result = applier.apply_rendered(self.client, rendered, owner, wait=self.wait, timeout=self.timeout)
        except Exception as err:  # the cluster refused a write: report it on the object, try again later
            self._set_status(obj, {"status": ERROR, "message": f"apply failed: {err}"})
            return Outcome(key, ERROR, message=f"apply failed: {err}")
        components = {c: {"status": HEALTHY} for c in render.COMPONENT_ORDER if rendered.get(c)}
        self._set_status(obj, {"status": HEALTHY, "componentStatus": components})
        return Outcome(key, HEALTHY, result=result)

    def _set_status(self, obj: dict, status: dict) -> None:
        current = self.iops.get(obj["metadata"]["name"], obj["metadata"].get("namespace", "")) or obj
        if current.get("status") == status:
            return
        updated = copy.deepcopy(current)
        updated["status"] = status
        try:
            self.client.update(updated)
        except Exception as err:  # status is a report; failing to write it must not stop the loop
            log.warning("cannot write status of IstioOperator %s: %s", obj["metadata"]["name"], err)
