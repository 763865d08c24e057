"""A tiny, deterministic stand-in for kube-apiserver and the controllers that fill a cluster in.

A trace should look like what ``kubectl get -o json`` shows on a real cluster, but a hand-written
manifest is only what a user submits: a Deployment, not the ReplicaSet, Pods and EndpointSlices
that the controllers derive from it. ``SimCluster`` plays those parts, one after another, and
records every write as a watch event:

* the API server: uid, resourceVersion (one global counter, as etcd's revision), generation,
  creationTimestamp, and the defaults of ``mesh.kube.apidefaults`` (clusterIP, pod-spec fields);
* the namespace controller's ``default`` ServiceAccount in every namespace;
* the Deployment controller (a ReplicaSet per pod template, named by ``pod-template-hash``),
  the ReplicaSet controller (Pods), the scheduler and kubelet (a Pod starts on the one Node,
  Running and Ready, with an IP), the EndpointSlice controller (one slice per selecting
  Service, ports resolved by name), and the garbage collector (ownerReferences).

Istio's own tests do the same by hand: ``generatePod``/``addPods`` build Pods that are already
Running with an IP and a Ready condition, because no kubelet runs under a unit test
(https://github.com/istio/istio/blob/1.19.0/pilot/pkg/serviceregistry/kube/controller/controller_test.go#L2166-L2232).
The real controllers live in kubernetes/kubernetes ``pkg/controller/{deployment,replicaset,endpointslice}``.

Why one module of about 600 lines: the controllers above share one store and one resourceVersion
counter and run in one fixed order per step, so ``SimCluster`` is one small state machine: each
controller is a ``_sync_*`` method, and ``settle()`` runs them in order. The helpers it lends to the
trace builder (``timestamp``, ``generated_suffix``, ``pod_template_hash``) are at the top.

Simplifications, named so nobody mistakes them for Kubernetes behaviour:

* time does not pass inside a step: every write of one step carries the step's ``t``;
* an object written by a user arrives as written (plus defaults); a controller then writes its
  status once, already settled (no Pending pods, no rolling-update surge);
* Pods get exactly two events, ADDED (already Running) and DELETED: a replayed Pod is injected
  by the webhook at ADDED, and a later MODIFIED carrying the un-injected spec would undo that;
* on scale-down the EndpointSlice drops the pods before they are DELETED (no ``terminating``
  endpoints), and the newest pods go first;
* no ``kubernetes`` Service, no legacy Endpoints objects, no managedFields, no kube-root-ca.crt.

Addresses are a real cluster's (DESIGN.md §4): pod IPs from 10.244.0.0/16 (the pod CIDR of a
kubeadm or kind cluster), Service clusterIPs from 10.96.0.0/12 (kube-apiserver's default
``--service-cluster-ip-range``), the Node at 10.244.0.1, the address of the bridge the pods' default
route points to in ``mesh.cni``. They carry traffic only inside the network namespaces mesh creates;
``mesh.kube.addresses`` maps them to loopback where namespaces are not available. Everything is a
pure function of the calls made: the same calls give byte-identical events.
"""

from __future__ import annotations

import copy
import hashlib
import ipaddress
import json
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import yaml

from mesh.kube import apidefaults, kinds
from mesh.kube.kinds import ObjectKey
from mesh.kube.mergepatch import merge_patch
from mesh.kube.selectors import matches_labels
from mesh.kube.trace import TraceEvent
from mesh.util.toyaml import to_yaml

EPOCH = datetime(2023, 9, 5, tzinfo=UTC)  # Istio 1.19.0's release day: t=0 of every built trace
POD_CIDR = "10.244.0.0/16"
SERVICE_CIDR = "10.96.0.0/12"
NODE_IP = "10.244.0.1"  # the pods' gateway (mesh.cni's bridge); the pod pool starts at .2

# k8s.io/apimachinery/pkg/util/rand's alphabet for generated names: no vowels (no accidental
# words) and no 0/1/3 (easily confused with letters).
_SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_UID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/istio/istio/tree/1.19.0")

_MANAGED_BY = "endpointslice-controller.k8s.io"
_REVISION = "deployment.kubernetes.io/revision"


class SimClusterError(ValueError):
    """An operation no API server would accept (unknown kind, missing object, bad field)."""


def timestamp(t: float) -> str:
    """The RFC 3339 time (whole seconds, as Kubernetes stores it) ``t`` seconds after EPOCH."""
    return (EPOCH + timedelta(seconds=int(t))).strftime("%Y-%m-%dT%H:%M:%SZ")


def safe_encode(text: str) -> str:
    return "".join(_SAFE_ALPHABET[b % len(_SAFE_ALPHABET)] for b in text.encode())


def generated_suffix(seed: str, length: int = 5) -> str:
    """What ``generateName`` appends (``-x7k2p``), derived from ``seed`` instead of a random source."""
    digest = hashlib.sha256(seed.encode()).digest()
    return "".join(_SAFE_ALPHABET[b % len(_SAFE_ALPHABET)] for b in digest[:length])


def pod_template_hash(template: dict) -> str:
    """The ``pod-template-hash`` label: FNV-32a of the template, its decimal digits safe-encoded.

    Kubernetes hashes a Go dump of the template rather than JSON, so the value differs from a
    real cluster's for the same template, but it has the same shape and the same property: a new
    template gets a new ReplicaSet, an unchanged one keeps its own.
    """
    value = 0x811C9DC5
    for byte in json.dumps(template, sort_keys=True, separators=(",", ":")).encode():
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return safe_encode(str(value))


@dataclass(frozen=True)
class NodeInfo:
    """The single Node every pod runs on; its topology labels give endpoints a locality."""

    name: str = "mesh-worker"
    region: str = "us-east1"
    zone: str = "us-east1-b"


@dataclass
class _AddressPool:
    """Hands out the addresses of a CIDR in order and never reuses one, so an address in a
    trace names one pod (or Service) for the whole trace."""

    cidr: str
    reserved: int = 1  # the network address .0 and, by convention, .1 (gateway / `kubernetes`)
    _next: int = 0

    def allocate(self) -> str:
        network = ipaddress.ip_network(self.cidr)
        index = self.reserved + 1 + self._next
        if index >= network.num_addresses - 1:
            raise SimClusterError(f"address pool {self.cidr} is exhausted")
        self._next += 1
        return str(network[index])


def _has_generation(obj: dict) -> bool:
    """Kinds whose API strategy keeps ``metadata.generation`` (bumped on spec changes)."""
    group, _ = kinds.split_api_version(obj.get("apiVersion", ""))
    return group in ("apps", "batch", "discovery.k8s.io", "admissionregistration.k8s.io",
                     "apiextensions.k8s.io", "networking.k8s.io", "gateway.networking.k8s.io") \
        or group.endswith(".istio.io")


def _desired_state(obj: dict) -> dict:
    """Everything but metadata and status: what a change of bumps ``generation``."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


def _owner_reference(owner: dict) -> dict:
    return {
        "apiVersion": owner["apiVersion"],
        "blockOwnerDeletion": True,
        "controller": True,
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
    }


def _controlled_by(obj: dict, owner: dict) -> bool:
    uid = owner["metadata"]["uid"]
    refs = obj["metadata"].get("ownerReferences", [])
    return any(ref.get("uid") == uid and ref.get("controller") for ref in refs)


def _surge(replicas: int) -> int:
    return -(-replicas * 25 // 100)  # the default maxSurge, 25%, rounded up


@dataclass
class SimCluster:
    """An in-memory cluster whose every write is recorded as a watch event at time ``t``."""

    node: NodeInfo = field(default_factory=NodeInfo)
    t: float = 0.0
    events: list[TraceEvent] = field(default_factory=list)
    objects: dict[ObjectKey, dict] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._revision = 0
        self._incarnations: Counter[ObjectKey] = Counter()
        self._pod_ips = _AddressPool(POD_CIDR)
        self._service_ips = _AddressPool(SERVICE_CIDR)
        self._pod_ordinals: Counter[str] = Counter()
        self._terminating: list[ObjectKey] = []
        node = apidefaults.node_object(self.node.name, self.node.region, self.node.zone, NODE_IP, POD_CIDR)
        self._create(node)

    # ---- what a user does (kubectl apply / patch / scale / delete) -------------------------

    def advance(self, t: float) -> None:
        if t < self.t:
            raise SimClusterError(f"time goes backwards ({t} after {self.t})")
        self.t = float(t)

    def apply(self, manifest: dict) -> None:
        """Create the object, or update it if it exists (keeping what the server owns)."""
        obj = self._admit(copy.deepcopy(manifest))
        key = kinds.object_key(obj)
        old = self.objects.get(key)
        if old is None:
            if key.namespace and ObjectKey("", "Namespace", "", key.namespace) not in self.objects:
                raise SimClusterError(f"namespace {key.namespace!r} does not exist (create it first)")
            apidefaults.apply_defaults(obj, None, self._service_ips.allocate)
            if obj["kind"] == "Pod":
                self._start_pod(obj)
            else:
                self._create(obj)
            return
        apidefaults.apply_defaults(obj, old, self._service_ips.allocate)
        new = self._carry_server_fields(old, obj)
        if new != old:
            self._update(new, bump_generation=_desired_state(new) != _desired_state(old))

    def modify(self, key: ObjectKey, patch: dict | None = None, yaml_patch: dict | None = None) -> None:
        """``kubectl patch --type merge``; ``yaml_patch`` merges into YAML documents held as text
        in a ConfigMap's ``data`` (how the ``istio`` ConfigMap holds its ``mesh`` key)."""
        old = self.get(key)
        new = merge_patch(old, patch) if patch else copy.deepcopy(old)
        if kinds.object_key(new) != key:
            raise SimClusterError("a patch cannot change apiVersion, kind, namespace or name")
        for data_key, doc_patch in (yaml_patch or {}).items():
            text = (new.get("data") or {}).get(data_key)
            if text is None:
                raise SimClusterError(f"{key} has no data key {data_key!r}")
            document = yaml.safe_load(text) or {}
            if not isinstance(document, dict):
                raise SimClusterError(f"{key} data.{data_key} is not a YAML mapping")
            new["data"][data_key] = to_yaml(merge_patch(document, doc_patch))
        apidefaults.apply_defaults(new, old, self._service_ips.allocate)
        if new != old:
            self._update(new, bump_generation=_desired_state(new) != _desired_state(old))

    def scale(self, key: ObjectKey, replicas: int) -> None:
        if key.kind not in ("Deployment", "ReplicaSet"):
            raise SimClusterError(f"cannot scale a {key.kind}; only Deployments and ReplicaSets")
        if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
            raise SimClusterError(f"replicas must be a whole number >= 0, got {replicas!r}")
        self.modify(key, {"spec": {"replicas": replicas}})

    def delete(self, key: ObjectKey) -> None:
        obj = self.get(key)
        if key.kind == "Namespace":
            for other in [k for k in self.objects if k.namespace == key.name]:
                self._remove(other)
        if key.kind == "Pod":
            self._terminating.append(key)  # the EndpointSlice lets go of it first
        else:
            self._remove(kinds.object_key(obj))

    def get(self, key: ObjectKey) -> dict:
        if key not in self.objects:
            raise SimClusterError(f"{key} does not exist")
        return self.objects[key]

    def list(self, kind: str, namespace: str | None = None) -> list[dict]:
        return [o for k, o in self.objects.items()
                if k.kind == kind and (namespace is None or k.namespace == namespace)]

    # ---- the controllers -------------------------------------------------------------------

    def settle(self) -> None:
        """Let every controller catch up with what the user did in this step, in the order a
        reader can follow: owners' children first, endpoints before pods go, statuses last."""
        self._collect_garbage()
        self._sync_namespaces()
        self._sync_deployments()
        self._sync_replicasets()
        self._sync_endpointslices()
        self._finish_terminating()
        self._collect_garbage()
        self._sync_replicaset_status()
        self._sync_deployment_status()

    def _collect_garbage(self) -> None:
        """Delete objects whose controlling owner is gone (pods via the terminating list)."""
        while True:
            alive = {o["metadata"]["uid"] for o in self.objects.values()}
            orphans = [k for k, o in self.objects.items() if k not in self._terminating and any(
                ref.get("uid") not in alive for ref in o["metadata"].get("ownerReferences", []))]
            if not orphans:
                return
            for key in orphans:
                if key.kind == "Pod":
                    self._terminating.append(key)
                else:
                    self._remove(key)

    def _sync_namespaces(self) -> None:
        for ns in self.list("Namespace"):
            name = ns["metadata"]["name"]
            if ObjectKey("", "ServiceAccount", name, "default") not in self.objects:
                self._create({"apiVersion": "v1", "kind": "ServiceAccount",
                              "metadata": {"name": "default", "namespace": name}})

    def _sync_deployments(self) -> None:
        for dep in self.list("Deployment"):
            ns, name = dep["metadata"]["namespace"], dep["metadata"]["name"]
            replicas = dep["spec"]["replicas"]
            template_hash = pod_template_hash(dep["spec"]["template"])
            owned = [rs for rs in self.list("ReplicaSet", ns) if _controlled_by(rs, dep)]
            current = ObjectKey("apps", "ReplicaSet", ns, f"{name}-{template_hash}")
            if current not in self.objects:
                revisions = [int(rs["metadata"]["annotations"].get(_REVISION, 0)) for rs in owned]
                revision = 1 + max(revisions, default=0)
                self._create(self._replicaset_for(dep, template_hash, revision))
            else:
                self._resize_replicaset(current, replicas, dep)
            for rs in owned:  # an older template's ReplicaSet scales to zero (no surge here)
                if kinds.object_key(rs) != current:
                    self._resize_replicaset(kinds.object_key(rs), 0, dep)

    def _resize_replicaset(self, key: ObjectKey, replicas: int, dep: dict) -> None:
        rs = copy.deepcopy(self.objects[key])
        before = copy.deepcopy(rs)
        rs["spec"]["replicas"] = replicas
        desired = dep["spec"]["replicas"]
        rs["metadata"]["annotations"].update({
            "deployment.kubernetes.io/desired-replicas": str(desired),
            "deployment.kubernetes.io/max-replicas": str(desired + _surge(desired)),
        })
        if rs != before:
            self._update(rs, bump_generation=rs["spec"] != before["spec"])

    def _replicaset_for(self, dep: dict, template_hash: str, revision: int) -> dict:
        meta, spec = dep["metadata"], dep["spec"]
        template = copy.deepcopy(spec["template"])
        template["metadata"].setdefault("labels", {})["pod-template-hash"] = template_hash
        selector = copy.deepcopy(spec["selector"])
        selector.setdefault("matchLabels", {})["pod-template-hash"] = template_hash
        replicas = spec["replicas"]
        return {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": f"{meta['name']}-{template_hash}",
                "namespace": meta["namespace"],
                "labels": dict(template["metadata"]["labels"]),
                "annotations": {
                    "deployment.kubernetes.io/desired-replicas": str(replicas),
                    "deployment.kubernetes.io/max-replicas": str(replicas + _surge(replicas)),
                    _REVISION: str(revision),
                },
                "ownerReferences": [_owner_reference(dep)],
            },
            "spec": {"replicas": replicas, "selector": selector, "template": template},
        }

    def _live_pods(self, rs: dict) -> list[dict]:
        return [p for k, p in self.objects.items()
                if k.kind == "Pod" and k not in self._terminating and _controlled_by(p, rs)]

    def _sync_replicasets(self) -> None:
        for rs in self.list("ReplicaSet"):
            pods = self._live_pods(rs)
            want = rs["spec"].get("replicas", 1)
            for _ in range(want - len(pods)):
                self._start_pod(self._pod_for(rs))
            for pod in pods[want:]:  # newest last in creation order: they go first
                self._terminating.append(kinds.object_key(pod))

    def _pod_for(self, rs: dict) -> dict:
        meta = rs["metadata"]
        template = copy.deepcopy(rs["spec"]["template"])
        ordinal = self._pod_ordinals[f"{meta['namespace']}/{meta['name']}"]
        self._pod_ordinals[f"{meta['namespace']}/{meta['name']}"] += 1
        suffix = generated_suffix(f"pod/{meta['namespace']}/{meta['name']}/{ordinal}")
        pod_meta = {
            "name": f"{meta['name']}-{suffix}",
            "generateName": f"{meta['name']}-",
            "namespace": meta["namespace"],
            "labels": template["metadata"].get("labels", {}),
        }
        if template["metadata"].get("annotations"):
            pod_meta["annotations"] = template["metadata"]["annotations"]
        pod_meta["ownerReferences"] = [_owner_reference(rs)]
        return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta, "spec": template["spec"]}

    def _start_pod(self, pod: dict) -> None:
        """Admission (service-account token volume), scheduling and a kubelet that starts every
        container at once: the pod is written once, Running and Ready, with its IP."""
        meta, spec = pod["metadata"], pod["spec"]
        apidefaults.default_pod_spec(spec)
        account = spec.get("serviceAccountName") or "default"
        spec["serviceAccountName"] = account
        spec["serviceAccount"] = account
        if spec.get("automountServiceAccountToken", True):
            volume = f"kube-api-access-{generated_suffix('token/' + meta['namespace'] + '/' + meta['name'])}"
            spec.setdefault("volumes", []).append(apidefaults.token_volume(volume))
            for container in spec.get("initContainers", []) + spec["containers"]:
                container.setdefault("volumeMounts", []).append(
                    {"mountPath": apidefaults.SERVICE_ACCOUNT_MOUNT, "name": volume, "readOnly": True})
        spec.update({
            "enableServiceLinks": spec.get("enableServiceLinks", True),
            "nodeName": self.node.name,
            "preemptionPolicy": "PreemptLowerPriority",
            "priority": 0,
        })
        spec.setdefault("tolerations", []).extend(
            {"effect": "NoExecute", "key": f"node.kubernetes.io/{taint}", "operator": "Exists",
             "tolerationSeconds": 300} for taint in ("not-ready", "unreachable"))
        ip = self._pod_ips.allocate()
        now = timestamp(self.t)
        pod["status"] = {
            "conditions": [
                {"lastProbeTime": None, "lastTransitionTime": now, "status": "True", "type": kind}
                for kind in ("Initialized", "Ready", "ContainersReady", "PodScheduled")
            ],
            "containerStatuses": [apidefaults.running_container(meta, c, now) for c in spec["containers"]],
            "hostIP": NODE_IP,
            "hostIPs": [{"ip": NODE_IP}],
            "phase": "Running",
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "qosClass": apidefaults.qos_class(spec),
            "startTime": now,
        }
        self._create(pod)

    def _finish_terminating(self) -> None:
        """The kubelet has stopped the containers: the pod object goes."""
        for key in self._terminating:
            if key in self.objects:
                self._remove(key)
        self._terminating = []

    def _sync_endpointslices(self) -> None:
        for svc in self.list("Service"):
            selector = svc["spec"].get("selector")
            if not selector:  # no selector: endpoints are managed by hand, not by the controller
                continue
            ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
            pods = [p for k, p in self.objects.items()
                    if k.kind == "Pod" and k.namespace == ns and k not in self._terminating
                    and _pod_ready(p) and matches_labels(selector, p["metadata"].get("labels", {}))]
            pods.sort(key=lambda p: ipaddress.ip_address(p["status"]["podIP"]))
            existing = [s for s in self.list("EndpointSlice", ns) if _controlled_by(s, svc)]
            desired = self._endpointslice_for(svc, pods)
            if not existing:
                desired["metadata"]["name"] = f"{name}-{generated_suffix(f'slice/{ns}/{name}')}"
                self._create(desired)
                continue
            current = copy.deepcopy(existing[0])
            before = copy.deepcopy(current)
            for field_name in ("endpoints", "ports"):
                current[field_name] = desired[field_name]
            current["metadata"]["labels"] = desired["metadata"]["labels"]
            if current != before:
                current["metadata"]["annotations"] = desired["metadata"]["annotations"]
                self._update(current, bump_generation=True)

    def _endpointslice_for(self, svc: dict, pods: list[dict]) -> dict:
        meta = svc["metadata"]
        ports: list[dict] = []
        for port in svc["spec"].get("ports", []):
            number = _resolve_target_port(port, pods)
            if number is None:
                continue
            entry = {"name": port.get("name", ""), "port": number, "protocol": port.get("protocol", "TCP")}
            if port.get("appProtocol"):
                entry["appProtocol"] = port["appProtocol"]
            ports.append(entry)
        endpoints = [{
            "addresses": [p["status"]["podIP"]],
            "conditions": {"ready": True, "serving": True, "terminating": False},
            "nodeName": p["spec"]["nodeName"],
            "targetRef": {"kind": "Pod", "name": p["metadata"]["name"], "namespace": meta["namespace"],
                          "uid": p["metadata"]["uid"]},
            "zone": self.node.zone,
        } for p in pods]
        labels = dict(meta.get("labels", {}))
        labels.update({"endpointslice.kubernetes.io/managed-by": _MANAGED_BY,
                       "kubernetes.io/service-name": meta["name"]})
        return {
            "addressType": "IPv4",
            "apiVersion": "discovery.k8s.io/v1",
            "endpoints": endpoints or None,  # the API writes null, not [], for an empty slice
            "kind": "EndpointSlice",
            "metadata": {
                "annotations": {"endpoints.kubernetes.io/last-change-trigger-time": timestamp(self.t)},
                "generateName": f"{meta['name']}-",
                "labels": labels,
                "name": "",
                "namespace": meta["namespace"],
                "ownerReferences": [_owner_reference(svc)],
            },
            "ports": (ports if endpoints else None),
        }

    def _sync_replicaset_status(self) -> None:
        for rs in self.list("ReplicaSet"):
            ready = len(self._live_pods(rs))
            status: dict = {"observedGeneration": rs["metadata"]["generation"], "replicas": ready}
            if ready:
                status.update(availableReplicas=ready, fullyLabeledReplicas=ready, readyReplicas=ready)
            if rs.get("status") != status:
                self._update({**copy.deepcopy(rs), "status": status}, bump_generation=False)

    def _sync_deployment_status(self) -> None:
        for dep in self.list("Deployment"):
            ns = dep["metadata"]["namespace"]
            owned = [rs for rs in self.list("ReplicaSet", ns) if _controlled_by(rs, dep)]
            template_hash = pod_template_hash(dep["spec"]["template"])
            current = next(rs for rs in owned if rs["metadata"]["name"].endswith(f"-{template_hash}"))
            total = sum(len(self._live_pods(rs)) for rs in owned)
            updated = len(self._live_pods(current))
            old_conditions = {c["type"]: c for c in (dep.get("status") or {}).get("conditions", [])}
            conditions = [
                self._condition(old_conditions, "Available", "MinimumReplicasAvailable",
                                "Deployment has minimum availability."),
                self._condition(old_conditions, "Progressing", "NewReplicaSetAvailable",
                                f'ReplicaSet "{current["metadata"]["name"]}" has successfully progressed.'),
            ]
            status: dict = {"conditions": conditions, "observedGeneration": dep["metadata"]["generation"],
                            "replicas": total}
            if total:
                status.update(availableReplicas=total, readyReplicas=total, updatedReplicas=updated)
            new = copy.deepcopy(dep)
            new["status"] = status
            new["metadata"].setdefault("annotations", {})[_REVISION] = current["metadata"]["annotations"][_REVISION]
            if new != dep:
                self._update(new, bump_generation=False)

    def _condition(self, old: dict, kind: str, reason: str, message: str) -> dict:
        previous = old.get(kind)
        now = timestamp(self.t)
        if previous and previous["reason"] == reason and previous["message"] == message:
            return previous
        since = previous["lastTransitionTime"] if previous and previous["status"] == "True" else now
        return {"lastTransitionTime": since, "lastUpdateTime": now, "message": message, "reason": reason,
                "status": "True", "type": kind}

    # ---- the API server --------------------------------------------------------------------

    def _admit(self, obj: dict) -> dict:
        kind = kinds.for_object(obj)
        if kind is None:
            raise SimClusterError(f"unknown kind {obj.get('kind')!r} in apiVersion {obj.get('apiVersion')!r}")
        meta = obj.get("metadata")
        if not isinstance(meta, dict) or not meta.get("name"):
            raise SimClusterError("metadata.name is missing")
        for server_field in ("uid", "resourceVersion", "creationTimestamp", "generation"):
            if server_field in meta:
                raise SimClusterError(f"metadata.{server_field} is set by the server; remove it")
        if "status" in obj:
            raise SimClusterError("status is written by controllers; remove it from the manifest")
        if kind.namespaced:
            meta.setdefault("namespace", "default")
        elif meta.get("namespace"):
            raise SimClusterError(f"{kind.kind} is cluster-scoped; remove metadata.namespace")
        return obj

    @staticmethod
    def _carry_server_fields(old: dict, new: dict) -> dict:
        """An apply replaces what the user owns and keeps what the server and controllers own."""
        meta = new["metadata"]
        for name in ("uid", "resourceVersion", "creationTimestamp", "generation"):
            if name in old["metadata"]:
                meta[name] = old["metadata"][name]
        old_annotations = old["metadata"].get("annotations", {})
        if old["kind"] == "Deployment" and _REVISION in old_annotations:
            meta.setdefault("annotations", {})[_REVISION] = old_annotations[_REVISION]
        if "status" in old and old["kind"] != "Namespace":
            new["status"] = old["status"]
        return new

    # ---- writes: each one is a watch event ------------------------------------------------

    def _next_resource_version(self) -> str:
        self._revision += 1
        return str(self._revision)

    def _create(self, obj: dict) -> None:
        key = kinds.object_key(obj)
        if key in self.objects:
            raise SimClusterError(f"{key} already exists")
        incarnation = self._incarnations[key]
        self._incarnations[key] += 1
        seed = "/".join(key) + (f"#{incarnation}" if incarnation else "")
        meta = obj["metadata"]
        meta["uid"] = str(uuid.uuid5(_UID_NAMESPACE, seed))
        meta["creationTimestamp"] = timestamp(self.t)
        if _has_generation(obj):
            meta["generation"] = 1
        meta["resourceVersion"] = self._next_resource_version()
        self.objects[key] = obj
        self._emit("ADDED", obj)

    def _update(self, obj: dict, bump_generation: bool) -> None:
        meta = obj["metadata"]
        if bump_generation and "generation" in meta:
            meta["generation"] += 1
        meta["resourceVersion"] = self._next_resource_version()
        self.objects[kinds.object_key(obj)] = obj
        self._emit("MODIFIED", obj)

    def _remove(self, key: ObjectKey) -> None:
        obj = copy.deepcopy(self.objects.pop(key))
        if key.kind in ("Pod", "Namespace"):  # graceful deletion: the final object says when it began
            obj["metadata"]["deletionTimestamp"] = timestamp(self.t)
            obj["metadata"]["deletionGracePeriodSeconds"] = 0
        obj["metadata"]["resourceVersion"] = self._next_resource_version()
        self._emit("DELETED", obj)

    def _emit(self, event_type: str, obj: dict) -> None:
        # Sorted keys everywhere, as kubectl prints JSON; a deep copy so later writes cannot
        # reach back into an event already recorded.
        snapshot = json.loads(json.dumps(obj, sort_keys=True))
        self.events.append(TraceEvent(t=self.t, type=event_type, object=snapshot))


def _pod_ready(pod: dict) -> bool:
    status = pod.get("status") or {}
    return bool(status.get("podIP")) and any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions", []))


def _resolve_target_port(port: dict, pods: list[dict]) -> int | None:
    """A Service's targetPort as a number: itself, or the named container port of the pods."""
    target = port.get("targetPort", port["port"])
    if isinstance(target, int):
        return target
    for pod in pods:
        for container in pod["spec"]["containers"]:
            for container_port in container.get("ports", []):
                if container_port.get("name") == target:
                    return container_port["containerPort"]
    return None
