"""The renderer: an effective IstioOperator in, the Kubernetes objects of each component out.

Istio renders each component's Helm chart with the values the translator made
(https://github.com/istio/istio/blob/1.19.0/operator/pkg/controlplane/control_plane.go#L106-L122
walks the components; https://github.com/istio/istio/blob/1.19.0/operator/pkg/component/component.go#L286-L359
renders one chart and then lays the component's ``k8s`` settings over the result). mesh writes
each chart template as a Python function that builds the same object from the same values — the
facts (names, labels, ports, env, probes, rules) are the charts' at 1.19.0, one function per
template file, linked in its docstring. ``istioctl install`` and ``mesh operator`` both call
``render()``: one renderer, two front ends, as in Istio.

What is rendered, by component:

* ``Base``: the ``istio-system`` Namespace (istioctl creates it; the charts assume it), the Istio
  CRDs and the ``istio-reader-service-account``;
* ``Pilot``: istiod's ServiceAccount and RBAC, the ``istio`` and ``istio-sidecar-injector``
  ConfigMaps, the Deployment, Service, PodDisruptionBudget and HorizontalPodAutoscaler, the
  injection MutatingWebhookConfiguration and the validation ValidatingWebhookConfiguration;
* ``IngressGateways`` / ``EgressGateways``: per gateway a ServiceAccount, an SDS Role and
  RoleBinding, a Deployment, a Service, a PodDisruptionBudget and (autoscaling) an HPA.

Simplifications, named: the CRDs carry no OpenAPI schema (``x-kubernetes-preserve-unknown-fields``;
Istio's ``crd-all.gen.yaml`` has the full one); the telemetry-v2 EnvoyFilters, the
``istio-revision-tag-default`` webhook istioctl adds after installing, and the CNI, ztunnel and
remote-istiod components are not rendered; the injector ConfigMap's ``config`` is mesh's Jinja2
rewrite of the chart's templates (``mesh.inject``), and its ``values`` keep the keys those
templates read.
"""

from __future__ import annotations

import copy
import json

import yaml

from mesh.install import iop as iopmod
from mesh.install import overlay
from mesh.kube import kinds
from mesh.kube.mergepatch import merge_patch
from mesh.util.toyaml import to_yaml

RELEASE = "istio"
BASE, PILOT, INGRESS, EGRESS = "Base", "Pilot", "IngressGateways", "EgressGateways"
COMPONENT_ORDER = (BASE, PILOT, INGRESS, EGRESS)  # each waits for the one before (ComponentDependencies)
_RULES = yaml.safe_load(iopmod._data_text("rbac.yaml"))


def render(iop: dict, owner: str = "") -> dict[str, list[dict]]:
    """Component name → its objects, for the components the IstioOperator enables.

    ``owner`` is the IstioOperator's name when the operator renders (the charts' ``ownerName``);
    ``istioctl manifest generate`` leaves it empty and the charts write ``unknown``.
    """
    values = iopmod.values(iop, owner)
    ns = values["global"]["istioNamespace"]
    spec = iop.get("spec") or {}
    out: dict[str, list[dict]] = {}
    if iopmod.enabled(iop, "base"):
        out[BASE] = [namespace(ns), *crds(), reader_service_account(values)]
    if iopmod.enabled(iop, "pilot"):
        objects = istiod(values, ns)
        component = (spec.get("components") or {}).get("pilot") or {}
        out[PILOT] = overlay.apply_k8s(objects, component.get("k8s") or {}, "Deployment", _suffixed("istiod", values),
                                       "discovery", "components.pilot.k8s")
        if BASE not in out:
            out[PILOT].insert(0, namespace(ns))
    for which, component_name in ((iopmod.INGRESS, INGRESS), (iopmod.EGRESS, EGRESS)):
        objects = []
        for i, gw in enumerate(iopmod.gateways(iop, which)):
            gw_ns = gw.get("namespace") or ns
            rendered = gateway(values, gw["name"], gw_ns, component_name)
            objects += overlay.apply_k8s(rendered, gw.get("k8s") or {}, "Deployment", gw["name"], "istio-proxy",
                                         f"components.{which}[{i}].k8s")
        if objects:
            out[component_name] = objects
    return out


def flatten(rendered: dict[str, list[dict]]) -> list[dict]:
    """Every object, components in dependency order, each component's objects in apply order."""
    return [obj for name in COMPONENT_ORDER for obj in sort_for_apply(rendered.get(name, []))]


# istioctl applies namespaces, then CRDs, then the rest sorted by kind priority
# (https://github.com/istio/istio/blob/1.19.0/operator/pkg/object/objects.go#L430-L473). mesh
# keeps that order except that webhook configurations go last: a webhook pointing at an istiod
# that does not exist yet would fail (the injector's failurePolicy is Fail) every pod created
# in between.
_PRIORITY = {
    ("", "Namespace"): -2000,
    ("apiextensions.k8s.io", "CustomResourceDefinition"): -1000,
    ("", "ServiceAccount"): 1, ("rbac.authorization.k8s.io", "ClusterRole"): 1,
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"): 2,
    ("rbac.authorization.k8s.io", "Role"): 1, ("rbac.authorization.k8s.io", "RoleBinding"): 2,
    ("", "ConfigMap"): 100, ("", "Secret"): 100,
    ("apps", "Deployment"): 1000, ("policy", "PodDisruptionBudget"): 1000,
    ("autoscaling", "HorizontalPodAutoscaler"): 1001,
    ("", "Service"): 10000,
    ("admissionregistration.k8s.io", "MutatingWebhookConfiguration"): 20000,
    ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration"): 20001,
}


def apply_priority(obj: dict) -> int:
    group, _ = kinds.split_api_version(obj.get("apiVersion", ""))
    return _PRIORITY.get((group, obj.get("kind", "")), 1000)


def sort_for_apply(objects: list[dict]) -> list[dict]:
    return sorted(objects, key=apply_priority)  # stable: a component's own order breaks ties


# -- helpers ----------------------------------------------------------------------------------

def _suffixed(name: str, values: dict) -> str:
    """``istiod`` or ``istiod-<revision>``: the charts' ``{{- if not (eq .Values.revision "") }}`` suffix."""
    return f"{name}-{values['revision']}" if values["revision"] else name


def _rev(values: dict) -> str:
    return values["revision"] or "default"


def _owner(values: dict) -> str:
    return values.get("ownerName") or "unknown"


def _component_labels(values: dict, component: str) -> dict:
    return {"istio.io/rev": _rev(values), "install.operator.istio.io/owning-resource": _owner(values),
            "operator.istio.io/component": component}


def _meta(name: str, namespace: str | None, labels: dict, annotations: dict | None = None) -> dict:
    meta = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    meta["labels"] = dict(sorted(labels.items()))
    if annotations:
        meta["annotations"] = dict(sorted(annotations.items()))
    return meta


def _number_text(value: object) -> str:
    """A number as Helm's ``{{ }}`` prints it: 1.0 → "1", 0.5 → "0.5"."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).lower() if isinstance(value, bool) else str(value)


def _field_env(name: str, path: str, api_version: bool = True) -> dict:
    ref = {"apiVersion": "v1", "fieldPath": path} if api_version else {"fieldPath": path}
    return {"name": name, "valueFrom": {"fieldRef": ref}}


def _resource_env(name: str, resource: str) -> dict:
    return {"name": name, "valueFrom": {"resourceFieldRef": {"resource": resource}}}


def _image(values: dict, image: str, default: str, hub: str = "", tag: str = "") -> str:
    if "/" in image:
        return image
    glob = values["global"]
    variant = f"-{glob['variant']}" if glob.get("variant") else ""
    return f"{hub or glob['hub']}/{image or default}:{tag or glob['tag']}{variant}"


# -- base chart -------------------------------------------------------------------------------

def namespace(name: str) -> dict:
    """The Istio namespace; istioctl creates it before applying anything
    (https://github.com/istio/istio/blob/1.19.0/operator/pkg/helmreconciler/reconciler.go#L150-L160)."""
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def crds() -> list[dict]:
    """One CRD per Istio kind mesh knows (base chart ``crds.yaml`` → ``crd-all.gen.yaml`` and
    ``crd-operator.yaml``), https://github.com/istio/istio/blob/1.19.0/manifests/charts/base/templates/crds.yaml#L1-L4.
    Served versions as Istio 1.19 serves them; no schema (see the module docstring)."""
    out = []
    for kind in kinds.KINDS:
        if not kind.group.endswith("istio.io"):
            continue
        versions = [v for v in kind.served_versions if not (kind.group == "networking.istio.io" and v == "v1")]
        storage = "v1alpha3" if "v1alpha3" in versions else kind.version
        out.append({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": _meta(f"{kind.plural}.{kind.group}", None,
                              {"app": "istio-pilot", "chart": "istio", "heritage": "Tiller", "release": RELEASE}),
            "spec": {
                "group": kind.group,
                "names": {"kind": kind.kind, "listKind": f"{kind.kind}List", "plural": kind.plural,
                          "singular": kind.singular, **({"shortNames": list(kind.short_names)} if kind.short_names else {}),
                          "categories": ["istio-io", kind.group.split(".")[0] + "-istio-io"]},
                "scope": "Namespaced" if kind.namespaced else "Cluster",
                "versions": [{"name": v, "served": True, "storage": v == storage,
                              "subresources": {"status": {}},
                              "schema": {"openAPIV3Schema": {"type": "object",
                                                             "x-kubernetes-preserve-unknown-fields": True}}}
                             for v in sorted(versions)],
            },
        })
    return out


def reader_service_account(values: dict) -> dict:
    """https://github.com/istio/istio/blob/1.19.0/manifests/charts/base/templates/reader-serviceaccount.yaml#L1-L16"""
    return {"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": _meta("istio-reader-service-account", values["global"]["istioNamespace"],
                              {"app": "istio-reader", "release": RELEASE})}


# -- istio-discovery chart (istiod) -----------------------------------------------------------

def istiod(values: dict, ns: str) -> list[dict]:
    objects = [
        service_account(values, ns),
        *cluster_roles(values, ns),
        *roles(values, ns),
        mesh_configmap(values, ns),
    ]
    if not values["global"].get("omitSidecarInjectorConfigMap"):
        objects.append(injector_configmap(values, ns))
    objects += [deployment(values, ns), service(values, ns)]
    if values["global"]["defaultPodDisruptionBudget"]["enabled"]:
        objects.append(pod_disruption_budget(values, ns))
    pilot = values["pilot"]
    if pilot.get("autoscaleEnabled") and pilot.get("autoscaleMin") and pilot.get("autoscaleMax"):
        objects.append(autoscaler(values, ns))
    if not values["global"].get("operatorManageWebhooks"):
        objects.append(mutating_webhook(values, ns))
    if values["global"].get("configValidation"):
        objects.append(validating_webhook(values, ns))
    return objects


def service_account(values: dict, ns: str) -> dict:
    """https://github.com/istio/istio/blob/1.19.0/manifests/charts/istio-control/istio-discovery/templates/serviceaccount.yaml#L1-L15"""
    sa = {"apiVersion": "v1", "kind": "ServiceAccount",
          "metadata": _meta(_suffixed("istiod", values), values["global"]["istioNamespace"] or ns,
                            {"app": "istiod", "release": RELEASE})}
    if values["global"].get("imagePullSecrets"):
        sa["imagePullSecrets"] = [{"name": s} for s in values["global"]["imagePullSecrets"]]
    return sa


def _binding(kind: str, name: str, role: str, sa: str, sa_ns: str, labels: dict, ns: str | None = None) -> dict:
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind, "metadata": _meta(name, ns, labels),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind.removesuffix("Binding"), "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": sa_ns}]}


def cluster_roles(values: dict, ns: str) -> list[dict]:
    """istiod's ClusterRoles and bindings: its own, the Gateway API deployment controller's and the
    reader's. https://github.com/istio/istio/blob/1.19.0/manifests/charts/istio-control/istio-discovery/templates/clusterrole.yaml#L1-L147,
    clusterrolebinding.yaml, reader-clusterrole.yaml, reader-clusterrolebinding.yaml."""
    rev = f"-{values['revision']}" if values["revision"] else ""
    sa_ns = values["global"]["istioNamespace"]
    istiod_sa = _suffixed("istiod", values)
    istiod_labels = {"app": "istiod", "release": RELEASE}
    reader_labels = {"app": "istio-reader", "release": RELEASE}
    out = []
    for role, rules, labels, sa in (
        (f"istiod-clusterrole{rev}-{ns}", "istiod", istiod_labels, istiod_sa),
        (f"istiod-gateway-controller{rev}-{ns}", "gatewayController", istiod_labels, istiod_sa),
        (f"istio-reader-clusterrole{rev}-{ns}", "reader", reader_labels, "istio-reader-service-account"),
    ):
        if rules == "gatewayController" and str(values["pilot"]["env"].get(
                "PILOT_ENABLE_GATEWAY_API_DEPLOYMENT_CONTROLLER", "")).lower() == "false":
            continue
        out.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                    "metadata": _meta(role, None, labels), "rules": copy.deepcopy(_RULES[rules])})
        out.append(_binding("ClusterRoleBinding", role, role, sa, sa_ns, labels))
    return out


def roles(values: dict, ns: str) -> list[dict]:
    """https://github.com/istio/istio/blob/1.19.0/manifests/charts/istio-control/istio-discovery/templates/role.yaml#L1-L30
    and rolebinding.yaml: secrets (the CA), leases (leader election) in istiod's own namespace."""
    name = _suffixed("istiod", values)
    sa_ns = values["global"]["istioNamespace"]
    labels = {"app": "istiod", "release": RELEASE}
    return [{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": _meta(name, sa_ns, labels),
             "rules": copy.deepcopy(_RULES["istiodNamespace"])},
            _binding("RoleBinding", name, name, name, sa_ns, labels, sa_ns)]


def mesh_config(values: dict, ns: str) -> dict:
    """The ``mesh`` key: the chart's own fields from values, then ``values.meshConfig`` over them
    (https://github.com/istio/istio/blob/1.19.0/manifests/charts/istio-control/istio-discovery/templates/configmap.yaml#L1-L97)."""
    glob = values["global"]
    telemetry = values.get("telemetry") or {}
    v2 = telemetry.get("v2") or {}
    mesh: dict = {"trustDomain": "cluster.local",
                  "rootNamespace": (values.get("meshConfig") or {}).get("rootNamespace") or glob["istioNamespace"]}
    prometheus = telemetry.get("enabled") and v2.get("enabled") and (v2.get("prometheus") or {}).get("enabled")
    if prometheus:
        mesh["defaultProviders"] = {"metrics": ["prometheus"]}
    tracing: dict = {}
    tracer = glob["proxy"].get("tracer")
    if tracer == "zipkin":
        address = ((glob.get("tracer") or {}).get("zipkin") or {}).get("address")
        tracing = {"zipkin": {"address": address or f"zipkin.{glob['istioNamespace']}:9411"}}
    elif tracer == "datadog":
        address = ((glob.get("tracer") or {}).get("datadog") or {}).get("address")
        tracing = {"datadog": {"address": address or "$(HOST_IP):8126"}}
    default_config: dict = {}
    if glob.get("meshID"):
        default_config["meshId"] = glob["meshID"]
    default_config["tracing"] = tracing
    default_config["discoveryAddress"] = f"{_suffixed('istiod', values)}.{ns}.svc:15012"
    mesh["defaultConfig"] = default_config
    return merge_patch(mesh, values.get("meshConfig") or {})


def mesh_configmap(values: dict, ns: str) -> dict:
    networks = values["global"].get("meshNetworks") or {}
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": _meta(_suffixed("istio", values), ns, _component_labels(values, PILOT) | {"release": RELEASE}),
            "data": {"mesh": to_yaml(mesh_config(values, ns)),
                     "meshNetworks": to_yaml({"networks": networks})}}


def injector_values(values: dict) -> dict:
    """The ``values`` key: the chart picks ``global``, ``istio_cni``, ``sidecarInjectorWebhook`` and
    ``revision``; mesh keeps, of those, the keys its injector templates read (the tree of
    ``mesh.inject``'s built-in values file), so a default install writes exactly that file."""
    from mesh.inject.config import builtin_paths

    shape = json.loads(builtin_paths()[1].read_text(encoding="utf-8"))
    return _project(values, shape)


def _project(value: object, shape: object) -> object:
    if isinstance(shape, dict) and shape and isinstance(value, dict):
        return {k: _project(value.get(k, shape[k]), shape[k]) for k in sorted(shape)}
    return copy.deepcopy(value)


def injector_configmap(values: dict, ns: str) -> dict:
    """https://github.com/istio/istio/blob/1.19.0/manifests/charts/istio-control/istio-discovery/templates/istiod-injector-configmap.yaml#L1-L75"""
    from mesh.inject.config import builtin_paths, injector_configmap_name

    config_path, _ = builtin_paths()
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": _meta(injector_configmap_name(values["revision"]), ns,
                              _component_labels(values, PILOT) | {"release": RELEASE}),
            "data": {"config": config_path.read_text(encoding="utf-8").rstrip("\n"),
                     "values": json.dumps(injector_values(values), indent=2, sort_keys=True)}}


def _pilot_labels(values: dict) -> dict:
    return {"app": "istiod", "istio": "pilot", "release": RELEASE} | _component_labels(values, PILOT)


def _pilot_selector(values: dict) -> dict:
    return {"app": "istiod", "istio.io/rev": values["revision"]} if values["revision"] else {"istio": "pilot"}


def deployment(values: dict, ns: str) -> dict:
    """istiod's Deployment,
    https://github.com/istio/istio/blob/1.19.0/manifests/charts/istio-control/istio-discovery/templates/deployment.yaml#L1-L271.
    The container is ``pilot-discovery discovery``; its ports are 8080 (debug, readiness),
    15010 (plaintext xDS) and 15017 (webhooks); 15012 and 15014 are served too, reached through
    the Service."""
    glob, pilot = values["global"], values["pilot"]
    name = _suffixed("istiod", values)
    pod_labels = {"app": "istiod", "istio": "istiod" if values["revision"] else "pilot",
                  "sidecar.istio.io/inject": "false"} | _component_labels(values, PILOT)
    pod_labels.pop("istio.io/rev")
    pod_labels = {"istio.io/rev": _rev(values), **pod_labels, **(pilot.get("podLabels") or {})}
    annotations = {}
    if values["meshConfig"].get("enablePrometheusMerge"):
        annotations |= {"prometheus.io/port": "15014", "prometheus.io/scrape": "true"}
    annotations |= {"ambient.istio.io/redirection": "disabled", "sidecar.istio.io/inject": "false"}
    annotations |= pilot.get("podAnnotations") or {}
    args = ["discovery", "--monitoringAddr=:15014"]
    if glob["logging"].get("level"):
        args.append(f"--log_output_level={glob['logging']['level']}")
    if glob.get("logAsJson"):
        args.append("--log_as_json")
    args += ["--domain", glob["proxy"]["clusterDomain"]]
    if glob.get("oneNamespace"):
        args += ["-a", ns]
    args += ["--keepaliveMaxServerConnectionAge", str(pilot["keepaliveMaxServerConnectionAge"])]
    env = [
        {"name": "REVISION", "value": _rev(values)},
        {"name": "JWT_POLICY", "value": glob["jwtPolicy"]},
        {"name": "PILOT_CERT_PROVIDER", "value": glob["pilotCertProvider"]},
        _field_env("POD_NAME", "metadata.name"),
        _field_env("POD_NAMESPACE", "metadata.namespace"),
        _field_env("SERVICE_ACCOUNT", "spec.serviceAccountName"),
        {"name": "KUBECONFIG", "value": "/var/run/secrets/remote/config"},
        *({"name": k, "value": _number_text(v)} for k, v in (pilot.get("env") or {}).items()),
    ]
    if pilot.get("traceSampling"):
        env.append({"name": "PILOT_TRACE_SAMPLING", "value": _number_text(pilot["traceSampling"])})
    env += [
        {"name": "ISTIOD_ADDR", "value": f"{name}.{ns}.svc:15012"},
        {"name": "PILOT_ENABLE_ANALYSIS", "value": _number_text(bool(glob["istiod"]["enableAnalysis"]))},
        {"name": "CLUSTER_ID", "value": glob["multiCluster"].get("clusterName") or "Kubernetes"},
        _resource_env("GOMEMLIMIT", "limits.memory"),
        _resource_env("GOMAXPROCS", "limits.cpu"),
        {"name": "PLATFORM", "value": glob.get("platform") or ""},
    ]
    third_party = glob["jwtPolicy"] == "third-party-jwt"
    mounts = [{"name": "istio-token", "mountPath": "/var/run/secrets/tokens", "readOnly": True}] if third_party else []
    mounts += [
        {"name": "local-certs", "mountPath": "/var/run/secrets/istio-dns"},
        {"name": "cacerts", "mountPath": "/etc/cacerts", "readOnly": True},
        {"name": "istio-kubeconfig", "mountPath": "/var/run/secrets/remote", "readOnly": True},
        {"name": "istio-csr-dns-cert", "mountPath": "/var/run/secrets/istiod/tls", "readOnly": True},
        {"name": "istio-csr-ca-configmap", "mountPath": "/var/run/secrets/istiod/ca", "readOnly": True},
    ]
    volumes = [{"name": "local-certs", "emptyDir": {"medium": "Memory"}}]
    if third_party:
        volumes.append({"name": "istio-token", "projected": {"sources": [{"serviceAccountToken": {
            "audience": glob["sds"]["token"]["aud"], "expirationSeconds": 43200, "path": "istio-token"}}]}})
    volumes += [
        {"name": "cacerts", "secret": {"secretName": "cacerts", "optional": True}},
        {"name": "istio-kubeconfig", "secret": {"secretName": "istio-kubeconfig", "optional": True}},
        {"name": "istio-csr-dns-cert", "secret": {"secretName": "istiod-tls", "optional": True}},
        {"name": "istio-csr-ca-configmap",
         "configMap": {"name": "istio-ca-root-cert", "defaultMode": 420, "optional": True}},
    ]
    container = {
        "name": "discovery",
        "image": _image(values, pilot.get("image") or "", "pilot", pilot.get("hub") or "", pilot.get("tag") or ""),
        **({"imagePullPolicy": glob["imagePullPolicy"]} if glob.get("imagePullPolicy") else {}),
        "args": args,
        "ports": [{"containerPort": p, "protocol": "TCP"} for p in (8080, 15010, 15017)],
        "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}, "initialDelaySeconds": 1,
                           "periodSeconds": 3, "timeoutSeconds": 5},
        "env": env,
        "resources": copy.deepcopy(pilot.get("resources") or glob["defaultResources"]),
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsUser": 1337,
                            "runAsGroup": 1337, "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": mounts,
    }
    pod_spec: dict = {}
    if pilot.get("nodeSelector"):
        pod_spec["nodeSelector"] = copy.deepcopy(pilot["nodeSelector"])
    pod_spec["serviceAccountName"] = name
    if glob.get("priorityClassName"):
        pod_spec["priorityClassName"] = glob["priorityClassName"]
    pod_spec |= {"securityContext": {"fsGroup": 1337}, "containers": [container], "volumes": volumes}
    spec: dict = {}
    if not pilot.get("autoscaleEnabled") and pilot.get("replicaCount"):
        spec["replicas"] = pilot["replicaCount"]
    spec |= {"strategy": {"rollingUpdate": {"maxSurge": pilot["rollingMaxSurge"],
                                            "maxUnavailable": pilot["rollingMaxUnavailable"]}},
             "selector": {"matchLabels": _pilot_selector(values)},
             "template": {"metadata": {"labels": pod_labels, "annotations": annotations}, "spec": pod_spec}}
    labels = _pilot_labels(values) | {str(k): str(v) for k, v in (pilot.get("deploymentLabels") or {}).items()}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(name, ns, labels), "spec": spec}


def service(values: dict, ns: str) -> dict:
    """https://github.com/istio/istio/blob/1.19.0/manifests/charts/istio-control/istio-discovery/templates/service.yaml#L1-L41:
    15010 plaintext xDS, 15012 xDS over mTLS (and the CA), 443 → 15017 the webhooks, 15014 metrics."""
    selector = {"app": "istiod", "istio.io/rev": values["revision"]} if values["revision"] else \
        {"app": "istiod", "istio": "pilot"}
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": _meta(_suffixed("istiod", values), ns, _pilot_labels(values),
                              values["pilot"].get("serviceAnnotations") or None),
            "spec": {"ports": [{"name": "grpc-xds", "port": 15010, "protocol": "TCP"},
                               {"name": "https-dns", "port": 15012, "protocol": "TCP"},
                               {"name": "https-webhook", "port": 443, "targetPort": 15017, "protocol": "TCP"},
                               {"name": "http-monitoring", "port": 15014, "protocol": "TCP"}],
                     "selector": selector}}


def pod_disruption_budget(values: dict, ns: str) -> dict:
    """https://github.com/istio/istio/blob/1.19.0/manifests/charts/istio-control/istio-discovery/templates/poddisruptionbudget.yaml#L1-L29"""
    selector = {"app": "istiod", "istio.io/rev": values["revision"]} if values["revision"] else \
        {"app": "istiod", "istio": "pilot"}
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": _meta(_suffixed("istiod", values), ns, _pilot_labels(values)),
            "spec": {"minAvailable": 1, "selector": {"matchLabels": selector}}}


def _hpa(name: str, ns: str, labels: dict, minimum: int, maximum: int, cpu: int) -> dict:
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": _meta(name, ns, labels),
            "spec": {"maxReplicas": maximum, "minReplicas": minimum,
                     "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                     "metrics": [{"type": "Resource", "resource": {
                         "name": "cpu", "target": {"type": "Utilization", "averageUtilization": cpu}}}]}}


def autoscaler(values: dict, ns: str) -> dict:
    """https://github.com/istio/istio/blob/1.19.0/manifests/charts/istio-control/istio-discovery/templates/autoscale.yaml#L1-L62
    (the autoscaling/v2 branch, Kubernetes >= 1.23)."""
    pilot = values["pilot"]
    labels = {"app": "istiod", "release": RELEASE} | _component_labels(values, PILOT)
    return _hpa(_suffixed("istiod", values), ns, labels, pilot["autoscaleMin"], pilot["autoscaleMax"],
                pilot["cpu"]["targetAverageUtilization"])


def _webhook(values: dict, ns: str, prefix: str, namespace_selector: list, object_selector: list) -> dict:
    remote = values.get("istiodRemote") or {}
    client = {"url": remote["injectionURL"]} if remote.get("injectionURL") else {"service": {
        "name": _suffixed("istiod", values), "namespace": ns, "path": remote.get("injectionPath") or "/inject",
        "port": 443}}
    return {"name": f"{prefix}sidecar-injector.istio.io", "clientConfig": client, "sideEffects": "None",
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}],
            "failurePolicy": "Fail",
            "reinvocationPolicy": values["sidecarInjectorWebhook"].get("reinvocationPolicy") or "Never",
            "admissionReviewVersions": ["v1beta1", "v1"],
            "namespaceSelector": {"matchExpressions": namespace_selector},
            "objectSelector": {"matchExpressions": object_selector}}


def _expr(key: str, operator: str, *values: str) -> dict:
    return {"key": key, "operator": operator, **({"values": list(values)} if values else {})}


def mutating_webhook(values: dict, ns: str) -> dict:
    """The injector webhooks,
    https://github.com/istio/istio/blob/1.19.0/manifests/charts/istio-control/istio-discovery/templates/mutatingwebhook.yaml#L1-L154:
    ``rev.namespace.`` / ``rev.object.`` select by ``istio.io/rev``; the default revision adds
    ``namespace.`` (``istio-injection=enabled``) and ``object.`` (``sidecar.istio.io/inject=true``).
    The caBundle is left out: istiod patches it in once its certificate exists."""
    rev = _rev(values)
    not_disabled = _expr("sidecar.istio.io/inject", "NotIn", "false")
    hooks = [
        _webhook(values, ns, "rev.namespace.", [_expr("istio.io/rev", "In", rev),
                                                _expr("istio-injection", "DoesNotExist")], [not_disabled]),
        _webhook(values, ns, "rev.object.", [_expr("istio.io/rev", "DoesNotExist"),
                                             _expr("istio-injection", "DoesNotExist")],
                 [not_disabled, _expr("istio.io/rev", "In", rev)]),
    ]
    if not values["revision"]:
        hooks += [
            _webhook(values, ns, "namespace.", [_expr("istio-injection", "In", "enabled")], [not_disabled]),
            _webhook(values, ns, "object.", [_expr("istio-injection", "DoesNotExist"),
                                             _expr("istio.io/rev", "DoesNotExist")],
                     [_expr("sidecar.istio.io/inject", "In", "true"), _expr("istio.io/rev", "DoesNotExist")]),
        ]
    name = _suffixed("istio-sidecar-injector", values)
    if ns != "istio-system":
        name = f"{name}-{ns}"
    labels = {"app": "sidecar-injector", "release": RELEASE} | _component_labels(values, PILOT)
    return {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
            "metadata": _meta(name, None, labels), "webhooks": hooks}


def validating_webhook(values: dict, ns: str) -> dict:
    """Validation of Istio config,
    https://github.com/istio/istio/blob/1.19.0/manifests/charts/istio-control/istio-discovery/templates/validatingwebhookconfiguration.yaml#L1-L58.
    It fails open (Ignore) until istiod patches in its caBundle and flips it to Fail."""
    rev = f"-{values['revision']}" if values["revision"] else ""
    groups = ["security.istio.io", "networking.istio.io", "telemetry.istio.io", "extensions.istio.io"]
    if (values.get("base") or {}).get("validateGateway"):
        groups.append("gateway.networking.k8s.io")
    url = (values.get("base") or {}).get("validationURL")
    client = {"url": url} if url else {"service": {"name": _suffixed("istiod", values),
                                                   "namespace": values["global"]["istioNamespace"],
                                                   "path": "/validate"}}
    return {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
            "metadata": _meta(f"istio-validator{rev}-{values['global']['istioNamespace']}", None,
                              {"app": "istiod", "istio": "istiod", "istio.io/rev": _rev(values), "release": RELEASE}),
            "webhooks": [{"name": "rev.validation.istio.io", "clientConfig": client,
                          "rules": [{"operations": ["CREATE", "UPDATE"], "apiGroups": groups,
                                     "apiVersions": ["*"], "resources": ["*"]}],
                          "failurePolicy": "Ignore", "sideEffects": "None",
                          "admissionReviewVersions": ["v1beta1", "v1"],
                          "objectSelector": {"matchExpressions": [_expr("istio.io/rev", "In", _rev(values))]}}]}


# -- gateway charts ---------------------------------------------------------------------------

def gateway(values: dict, name: str, ns: str, component: str) -> list[dict]:
    """One ingress or egress gateway: a router-mode proxy (``pilot-agent proxy router``),
    https://github.com/istio/istio/blob/1.19.0/manifests/charts/gateways/istio-ingress/templates/deployment.yaml#L1-L344
    and its neighbours (service.yaml, serviceaccount.yaml, role.yaml, rolebindings.yaml,
    poddisruptionbudget.yaml, autoscale.yaml); the egress chart is the same with other defaults."""
    gw = values["gateways"][name]
    glob = values["global"]
    selector = dict(gw["labels"])
    labels = selector | {"release": RELEASE} | _component_labels(values, component)
    sa = f"{name}-service-account"
    out = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(sa, ns, labels)},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": _meta(f"{name}-sds", ns, {"release": RELEASE} | _component_labels(values, component)),
         "rules": copy.deepcopy(_RULES["gatewaySds"])},
        _binding("RoleBinding", f"{name}-sds", f"{name}-sds", sa, ns,
                 {"release": RELEASE} | _component_labels(values, component), ns),
        _gateway_deployment(values, gw, name, ns, component, labels, selector, sa),
        _gateway_service(gw, name, ns, labels, selector),
    ]
    if glob["defaultPodDisruptionBudget"]["enabled"]:
        out.append({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": _meta(name, ns, labels),
                    "spec": {"minAvailable": 1, "selector": {"matchLabels": selector}}})
    if gw.get("autoscaleEnabled") and gw.get("autoscaleMin") and gw.get("autoscaleMax"):
        out.append(_hpa(name, ns, labels, gw["autoscaleMin"], gw["autoscaleMax"], gw["cpu"]["targetAverageUtilization"]))
    return out


def _gateway_service(gw: dict, name: str, ns: str, labels: dict, selector: dict) -> dict:
    spec: dict = {"type": gw["type"], "selector": selector,
                  "ports": [{k: p[k] for k in sorted(p)} for p in gw["ports"]]}
    if gw.get("externalTrafficPolicy"):
        spec["externalTrafficPolicy"] = gw["externalTrafficPolicy"]
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": _meta(name, ns, labels, gw.get("serviceAnnotations") or None), "spec": spec}


def _gateway_deployment(values: dict, gw: dict, name: str, ns: str, component: str, labels: dict,
                        selector: dict, sa: str) -> dict:
    glob, mesh = values["global"], values["meshConfig"]
    pod_labels = selector | {"chart": "gateways", "heritage": "Tiller", "release": RELEASE,
                             "service.istio.io/canonical-name": name,
                             "service.istio.io/canonical-revision": selector.get("version", "latest"),
                             "sidecar.istio.io/inject": "false"} | _component_labels(values, component)
    annotations = {"istio.io/rev": _rev(values)}
    if mesh.get("enablePrometheusMerge"):
        annotations |= {"prometheus.io/port": "15020", "prometheus.io/scrape": "true",
                        "prometheus.io/path": "/stats/prometheus"}
    annotations |= {"sidecar.istio.io/inject": "false"} | (gw.get("podAnnotations") or {})
    args = ["proxy", "router", "--domain", f"$(POD_NAMESPACE).svc.{glob['proxy']['clusterDomain']}"]
    if glob["proxy"].get("logLevel"):
        args.append(f"--proxyLogLevel={glob['proxy']['logLevel']}")
    if glob["proxy"].get("componentLogLevel"):
        args.append(f"--proxyComponentLogLevel={glob['proxy']['componentLogLevel']}")
    if glob["logging"].get("level"):
        args.append(f"--log_output_level={glob['logging']['level']}")
    env = [
        {"name": "JWT_POLICY", "value": glob["jwtPolicy"]},
        {"name": "PILOT_CERT_PROVIDER", "value": glob["pilotCertProvider"]},
        {"name": "CA_ADDR", "value": glob.get("caAddress") or f"{_suffixed('istiod', values)}.{glob['istioNamespace']}.svc:15012"},
        _field_env("NODE_NAME", "spec.nodeName"),
        _field_env("POD_NAME", "metadata.name"),
        _field_env("POD_NAMESPACE", "metadata.namespace"),
        _field_env("INSTANCE_IP", "status.podIP"),
        _field_env("HOST_IP", "status.hostIP"),
        _resource_env("ISTIO_CPU_LIMIT", "limits.cpu"),
        _field_env("SERVICE_ACCOUNT", "spec.serviceAccountName", api_version=False),
        {"name": "ISTIO_META_WORKLOAD_NAME", "value": name},
        {"name": "ISTIO_META_OWNER", "value": f"kubernetes://apis/apps/v1/namespaces/{ns}/deployments/{name}"},
        {"name": "ISTIO_META_MESH_ID", "value": glob.get("meshID") or mesh.get("trustDomain") or "cluster.local"},
        {"name": "TRUST_DOMAIN", "value": mesh.get("trustDomain") or "cluster.local"},
        {"name": "ISTIO_META_UNPRIVILEGED_POD", "value": "true"},
        *({"name": k, "value": _number_text(v)} for k, v in (gw.get("env") or {}).items()),
        *({"name": k, "value": _number_text(v)} for k, v in
          ((mesh.get("defaultConfig") or {}).get("proxyMetadata") or {}).items()),
        {"name": "ISTIO_META_CLUSTER_ID", "value": glob["multiCluster"].get("clusterName") or "Kubernetes"},
        _field_env("ISTIO_META_NODE_NAME", "spec.nodeName", api_version=False),
    ]
    ports = [{"containerPort": p.get("targetPort") or p["port"], "protocol": p.get("protocol", "TCP")}
             for p in gw["ports"]]
    ports.append({"containerPort": 15090, "protocol": "TCP", "name": "http-envoy-prom"})
    secret_volumes = gw.get("secretVolumes") or []
    mounts = [
        {"name": "workload-socket", "mountPath": "/var/run/secrets/workload-spiffe-uds"},
        {"name": "credential-socket", "mountPath": "/var/run/secrets/credential-uds"},
        {"name": "workload-certs", "mountPath": "/var/run/secrets/workload-spiffe-credentials"},
        {"name": "istio-envoy", "mountPath": "/etc/istio/proxy"},
        {"name": "config-volume", "mountPath": "/etc/istio/config"},
        {"name": "istiod-ca-cert", "mountPath": "/var/run/secrets/istio"},
        {"name": "istio-token", "mountPath": "/var/run/secrets/tokens", "readOnly": True},
        {"name": "istio-data", "mountPath": "/var/lib/istio/data"},
        {"name": "podinfo", "mountPath": "/etc/istio/pod"},
        *({"name": v["name"], "mountPath": v["mountPath"], "readOnly": True} for v in secret_volumes),
    ]
    volumes = [
        {"name": "workload-socket", "emptyDir": {}},
        {"name": "credential-socket", "emptyDir": {}},
        {"name": "workload-certs", "emptyDir": {}},
        {"name": "istiod-ca-cert", "configMap": {"name": "istio-ca-root-cert"}},
        {"name": "podinfo", "downwardAPI": {"items": [
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
            {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}}]}},
        {"name": "istio-envoy", "emptyDir": {}},
        {"name": "istio-data", "emptyDir": {}},
        {"name": "istio-token", "projected": {"sources": [{"serviceAccountToken": {
            "path": "istio-token", "expirationSeconds": 43200, "audience": glob["sds"]["token"]["aud"]}}]}},
        {"name": "config-volume", "configMap": {"name": _suffixed("istio", values), "optional": True}},
        *({"name": v["name"], "secret": {"secretName": v["secretName"], "optional": True}} for v in secret_volumes),
    ]
    container = {
        "name": "istio-proxy",
        "image": _image(values, glob["proxy"]["image"], "proxyv2"),
        **({"imagePullPolicy": glob["imagePullPolicy"]} if glob.get("imagePullPolicy") else {}),
        "ports": ports,
        "args": args,
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                            "privileged": False, "readOnlyRootFilesystem": True},
        "readinessProbe": {"failureThreshold": 30, "httpGet": {"path": "/healthz/ready", "port": 15021,
                                                               "scheme": "HTTP"},
                           "initialDelaySeconds": 1, "periodSeconds": 2, "successThreshold": 1, "timeoutSeconds": 1},
        "resources": copy.deepcopy(gw.get("resources") or glob["defaultResources"]),
        "env": env,
        "volumeMounts": mounts,
    }
    spec: dict = {}
    if not gw.get("autoscaleEnabled") and gw.get("replicaCount"):
        spec["replicas"] = gw["replicaCount"]
    spec |= {"selector": {"matchLabels": selector},
             "strategy": {"rollingUpdate": {"maxSurge": gw["rollingMaxSurge"],
                                            "maxUnavailable": gw["rollingMaxUnavailable"]}},
             "template": {"metadata": {"labels": pod_labels, "annotations": annotations}, "spec": {
                 "securityContext": {"runAsUser": 1337, "runAsGroup": 1337, "runAsNonRoot": True, "fsGroup": 1337},
                 "serviceAccountName": sa,
                 **({"priorityClassName": glob["priorityClassName"]} if glob.get("priorityClassName") else {}),
                 "containers": [container], "volumes": volumes}}}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(name, ns, labels), "spec": spec}
