"""What kube-apiserver (and its admission plugins) fill into an object before storing it.

``kubectl get -o json`` shows many fields nobody wrote: a Service's clusterIP and ipFamilies, a
Deployment's strategy and revisionHistoryLimit, a pod spec's dnsPolicy and
terminationMessagePath, a webhook's matchPolicy and timeoutSeconds. A trace built from
manifests carries them too, so it reads like one recorded from a cluster. The values are the
Kubernetes API defaults (k8s.io/kubernetes ``pkg/apis/*/v1/defaults.go``); istiod reads the same
fields through its informers, e.g. a Service's clusterIP becomes the service's address in
https://github.com/istio/istio/blob/1.19.0/pilot/pkg/serviceregistry/kube/conversion.go#L46-L67.

Also here: the kubelet-side pieces of a started pod (container statuses, QoS class) and the
Node object, so ``mesh.kube.simcluster`` keeps only the controllers' logic.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

KUBE_VERSION = "v1.28.0"  # a Kubernetes version Istio 1.19 supports (1.25-1.28)
SERVICE_ACCOUNT_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
_EPOCH_TEXT = "2023-09-05T00:00:00Z"  # the node has been up since the start of every trace


def apply_defaults(obj: dict, old: dict | None, allocate_ip: Callable[[], str]) -> None:
    """Fill in the defaults of ``obj`` (in place); ``old`` is the stored object on an update."""
    kind = obj["kind"]
    if kind == "Namespace":
        obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = obj["metadata"]["name"]
        obj.setdefault("spec", {"finalizers": ["kubernetes"]})
        obj.setdefault("status", {"phase": "Active"})
    elif kind == "Service":
        _default_service(obj, old, allocate_ip)
    elif kind == "Deployment":
        _default_deployment(obj)
    elif kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
        for hook in obj.get("webhooks", []):
            _default_webhook(hook, mutating=kind.startswith("Mutating"))


def _default_service(svc: dict, old: dict | None, allocate_ip: Callable[[], str]) -> None:
    spec = svc.setdefault("spec", {})
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    spec.setdefault("internalTrafficPolicy", "Cluster")
    spec.setdefault("ipFamilies", ["IPv4"])
    spec.setdefault("ipFamilyPolicy", "SingleStack")
    if "clusterIP" not in spec:
        spec["clusterIP"] = old["spec"]["clusterIP"] if old else allocate_ip()
    spec.setdefault("clusterIPs", [spec["clusterIP"]])
    for port in spec.get("ports", []):
        port.setdefault("protocol", "TCP")
        port.setdefault("targetPort", port["port"])
    svc.setdefault("status", {"loadBalancer": {}})


def _default_deployment(dep: dict) -> None:
    spec = dep.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    strategy = spec.setdefault("strategy", {"type": "RollingUpdate"})
    if strategy.get("type", "RollingUpdate") == "RollingUpdate":
        strategy["type"] = "RollingUpdate"
        rolling = strategy.setdefault("rollingUpdate", {})
        rolling.setdefault("maxSurge", "25%")
        rolling.setdefault("maxUnavailable", "25%")
    template = spec.setdefault("template", {})
    template.setdefault("metadata", {})["creationTimestamp"] = None  # kubectl shows this null
    default_pod_spec(template.setdefault("spec", {}))


def default_pod_spec(spec: dict) -> None:
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    spec.setdefault("terminationGracePeriodSeconds", 30)
    for container in spec.get("initContainers", []) + spec.get("containers", []):
        image = container.get("image", "")
        tag = image.rsplit("/", 1)[-1].partition(":")[2]
        container.setdefault("imagePullPolicy", "Always" if tag in ("", "latest") else "IfNotPresent")
        container.setdefault("resources", {})
        container.setdefault("terminationMessagePath", "/dev/termination-log")
        container.setdefault("terminationMessagePolicy", "File")
        for port in container.get("ports", []):
            port.setdefault("protocol", "TCP")
        for env in container.get("env", []):  # a Quantity is never omitted: a zero divisor reads "0"
            ref = (env.get("valueFrom") or {}).get("resourceFieldRef")
            if ref is not None:
                ref.setdefault("divisor", "0")
        for probe_name in ("livenessProbe", "readinessProbe", "startupProbe"):
            probe = container.get(probe_name)
            if probe is None:
                continue
            for key, value in (("failureThreshold", 3), ("periodSeconds", 10), ("successThreshold", 1),
                               ("timeoutSeconds", 1)):
                probe.setdefault(key, value)
            if "httpGet" in probe:
                probe["httpGet"].setdefault("scheme", "HTTP")
    for volume in spec.get("volumes", []):
        for source in ("secret", "configMap", "projected"):
            if source in volume:
                volume[source].setdefault("defaultMode", 420)


def _default_webhook(hook: dict, mutating: bool) -> None:
    hook.setdefault("matchPolicy", "Equivalent")
    hook.setdefault("namespaceSelector", {})
    hook.setdefault("objectSelector", {})
    hook.setdefault("timeoutSeconds", 10)
    hook.setdefault("failurePolicy", "Fail")
    if mutating:
        hook.setdefault("reinvocationPolicy", "Never")
    service = (hook.get("clientConfig") or {}).get("service")
    if service is not None:
        service.setdefault("port", 443)
    for rule in hook.get("rules", []):
        rule.setdefault("scope", "*")


def token_volume(name: str) -> dict:
    """The projected service-account token volume the ServiceAccount admission plugin adds."""
    return {
        "name": name,
        "projected": {
            "defaultMode": 420,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"items": [{"key": "ca.crt", "path": "ca.crt"}], "name": "kube-root-ca.crt"}},
                {"downwardAPI": {"items": [
                    {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}, "path": "namespace"},
                ]}},
            ],
        },
    }


def running_container(pod_meta: dict, container: dict, now: str) -> dict:
    image = container.get("image", "")
    repository = image.rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image
    seed = f"{pod_meta['namespace']}/{pod_meta['name']}/{container['name']}"
    return {
        "containerID": "containerd://" + hashlib.sha256(seed.encode()).hexdigest(),
        "image": image,
        # A made-up digest (of the image name): stable, the right shape, not a real image.
        "imageID": f"{repository}@sha256:{hashlib.sha256(image.encode()).hexdigest()}",
        "lastState": {},
        "name": container["name"],
        "ready": True,
        "restartCount": 0,
        "started": True,
        "state": {"running": {"startedAt": now}},
    }


def qos_class(spec: dict) -> str:
    resources = [c.get("resources") or {} for c in spec.get("initContainers", []) + spec["containers"]]
    if not any(r.get("requests") or r.get("limits") for r in resources):
        return "BestEffort"
    def pinned(r: dict) -> bool:  # cpu and memory limited, and requests (when given) equal to the limits
        limits, requests = r.get("limits") or {}, r.get("requests") or {}
        return all(k in limits and requests.get(k, limits[k]) == limits[k] for k in ("cpu", "memory"))

    guaranteed = all(pinned(r) for r in resources)
    return "Guaranteed" if guaranteed else "Burstable"


def node_object(name: str, region: str, zone: str, ip: str, pod_cidr: str) -> dict:
    """The one Node: a kubelet that is Ready, at a loopback address, with topology labels."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"node.alpha.kubernetes.io/ttl": "0",
                            "volumes.kubernetes.io/controller-managed-attach-detach": "true"},
            "labels": {
                "beta.kubernetes.io/arch": "amd64", "beta.kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64", "kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                "topology.kubernetes.io/region": region, "topology.kubernetes.io/zone": zone,
            },
        },
        "spec": {"podCIDR": pod_cidr, "podCIDRs": [pod_cidr]},
        "status": {
            "addresses": [{"address": ip, "type": "InternalIP"}, {"address": name, "type": "Hostname"}],
            "allocatable": {"cpu": "8", "ephemeral-storage": "100Gi", "memory": "32Gi", "pods": "110"},
            "capacity": {"cpu": "8", "ephemeral-storage": "100Gi", "memory": "32Gi", "pods": "110"},
            "conditions": [
                {"lastHeartbeatTime": _EPOCH_TEXT, "lastTransitionTime": _EPOCH_TEXT, "message": message,
                 "reason": reason, "status": status, "type": kind}
                for kind, status, reason, message in (
                    ("MemoryPressure", "False", "KubeletHasSufficientMemory",
                     "kubelet has sufficient memory available"),
                    ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                    ("PIDPressure", "False", "KubeletHasSufficientPID",
                     "kubelet has sufficient PID available"),
                    ("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
                )
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "architecture": "amd64", "containerRuntimeVersion": "containerd://1.7.1",
                "kernelVersion": "6.1.0-13-amd64", "kubeProxyVersion": KUBE_VERSION,
                "kubeletVersion": KUBE_VERSION, "operatingSystem": "linux",
                "osImage": "Debian GNU/Linux 12 (bookworm)",
            },
        },
    }
