"""The ``istio-discovery`` chart (istiod): ServiceAccount and RBAC, the ``istio`` and
``istio-sidecar-injector`` ConfigMaps, Deployment, Service, PodDisruptionBudget, HPA and the two webhooks.

Go: https://github.com/istio/istio/tree/1.19.0/manifests/charts/istio-control/istio-discovery (each
function links its template file; see ``mesh.install.render`` for what is simplified).
"""

from __future__ import annotations

import copy
import json

from mesh.install.charts.helpers import (
    PILOT,
    RELEASE,
    RULES,
    binding,
    component_labels,
    field_env,
    hpa,
    image_name,
    number_text,
    object_meta,
    resource_env,
    revision,
    suffixed,
)
from mesh.kube.mergepatch import merge_patch
from mesh.util.toyaml import to_yaml


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
          "metadata": object_meta(suffixed("istiod", values), values["global"]["istioNamespace"] or ns,
                            {"app": "istiod", "release": RELEASE})}
    if values["global"].get("imagePullSecrets"):
        sa["imagePullSecrets"] = [{"name": s} for s in values["global"]["imagePullSecrets"]]
    return sa


def cluster_roles(values: dict, ns: str) -> list[dict]:
    """istiod's ClusterRoles and bindings: its own, the Gateway API deployment controller's and the
    reader's. https://github.com/istio/istio/blob/1.19.0/manifests/charts/istio-control/istio-discovery/templates/clusterrole.yaml#L1-L147,
    clusterrolebinding.yaml, reader-clusterrole.yaml, reader-clusterrolebinding.yaml."""
    rev = f"-{values['revision']}" if values["revision"] else ""
    sa_ns = values["global"]["istioNamespace"]
    istiod_sa = suffixed("istiod", values)
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
                    "metadata": object_meta(role, None, labels), "rules": copy.deepcopy(RULES[rules])})
        out.append(binding("ClusterRoleBinding", role, role, sa, sa_ns, labels))
    return out


def roles(values: dict, ns: str) -> list[dict]:
    """https://github.com/istio/istio/blob/1.19.0/manifests/charts/istio-control/istio-discovery/templates/role.yaml#L1-L30
    and rolebinding.yaml: secrets (the CA), leases (leader election) in istiod's own namespace."""
    name = suffixed("istiod", values)
    sa_ns = values["global"]["istioNamespace"]
    labels = {"app": "istiod", "release": RELEASE}
    return [{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": object_meta(name, sa_ns, labels),
             "rules": copy.deepcopy(RULES["istiodNamespace"])},
            binding("RoleBinding", name, name, name, sa_ns, labels, sa_ns)]


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
    default_config["discoveryAddress"] = f"{suffixed('istiod', values)}.{ns}.svc:15012"
    mesh["defaultConfig"] = default_config
    return merge_patch(mesh, values.get("meshConfig") or {})


def mesh_configmap(values: dict, ns: str) -> dict:
    networks = values["global"].get("meshNetworks") or {}
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": object_meta(suffixed("istio", values), ns, component_labels(values, PILOT) | {"release": RELEASE}),
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
            "metadata": object_meta(injector_configmap_name(values["revision"]), ns,
                              component_labels(values, PILOT) | {"release": RELEASE}),
            "data": {"config": config_path.read_text(encoding="utf-8").rstrip("\n"),
                     "values": json.dumps(injector_values(values), indent=2, sort_keys=True)}}


def _pilot_labels(values: dict) -> dict:
    return {"app": "istiod", "istio": "pilot", "release": RELEASE} | component_labels(values, PILOT)


def _pilot_selector(values: dict) -> dict:
    return {"app": "istiod", "istio.io/rev": values["revision"]} if values["revision"] else {"istio": "pilot"}


def deployment(values: dict, ns: str) -> dict:
    """istiod's Deployment,
    https://github.com/istio/istio/blob/1.19.0/manifests/charts/istio-control/istio-discovery/templates/deployment.yaml#L1-L271.
    The container is ``pilot-discovery discovery``; its ports are 8080 (debug, readiness),
    15010 (plaintext xDS) and 15017 (webhooks); 15012 and 15014 are served too, reached through
    the Service."""
    glob, pilot = values["global"], values["pilot"]
    name = suffixed("istiod", values)
    pod_labels = {"app": "istiod", "istio": "istiod" if values["revision"] else "pilot",
                  "sidecar.istio.io/inject": "false"} | component_labels(values, PILOT)
    pod_labels.pop("istio.io/rev")
    pod_labels = {"istio.io/rev": revision(values), **pod_labels, **(pilot.get("podLabels") or {})}
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
        {"name": "REVISION", "value": revision(values)},
        {"name": "JWT_POLICY", "value": glob["jwtPolicy"]},
        {"name": "PILOT_CERT_PROVIDER", "value": glob["pilotCertProvider"]},
        field_env("POD_NAME", "metadata.name"),
        field_env("POD_NAMESPACE", "metadata.namespace"),
        field_env("SERVICE_ACCOUNT", "spec.serviceAccountName"),
        {"name": "KUBECONFIG", "value": "/var/run/secrets/remote/config"},
        *({"name": k, "value": number_text(v)} for k, v in (pilot.get("env") or {}).items()),
    ]
    if pilot.get("traceSampling"):
        env.append({"name": "PILOT_TRACE_SAMPLING", "value": number_text(pilot["traceSampling"])})
    env += [
        {"name": "ISTIOD_ADDR", "value": f"{name}.{ns}.svc:15012"},
        {"name": "PILOT_ENABLE_ANALYSIS", "value": number_text(bool(glob["istiod"]["enableAnalysis"]))},
        {"name": "CLUSTER_ID", "value": glob["multiCluster"].get("clusterName") or "Kubernetes"},
        resource_env("GOMEMLIMIT", "limits.memory"),
        resource_env("GOMAXPROCS", "limits.cpu"),
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
        "image": image_name(values, pilot.get("image") or "", "pilot", pilot.get("hub") or "", pilot.get("tag") or ""),
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
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": object_meta(name, ns, labels), "spec": spec}


def service(values: dict, ns: str) -> dict:
    """https://github.com/istio/istio/blob/1.19.0/manifests/charts/istio-control/istio-discovery/templates/service.yaml#L1-L41:
    15010 plaintext xDS, 15012 xDS over mTLS (and the CA), 443 → 15017 the webhooks, 15014 metrics."""
    selector = {"app": "istiod", "istio.io/rev": values["revision"]} if values["revision"] else \
        {"app": "istiod", "istio": "pilot"}
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": object_meta(suffixed("istiod", values), ns, _pilot_labels(values),
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
            "metadata": object_meta(suffixed("istiod", values), ns, _pilot_labels(values)),
            "spec": {"minAvailable": 1, "selector": {"matchLabels": selector}}}


def autoscaler(values: dict, ns: str) -> dict:
    """https://github.com/istio/istio/blob/1.19.0/manifests/charts/istio-control/istio-discovery/templates/autoscale.yaml#L1-L62
    (the autoscaling/v2 branch, Kubernetes >= 1.23)."""
    pilot = values["pilot"]
    labels = {"app": "istiod", "release": RELEASE} | component_labels(values, PILOT)
    return hpa(suffixed("istiod", values), ns, labels, pilot["autoscaleMin"], pilot["autoscaleMax"],
                pilot["cpu"]["targetAverageUtilization"])


def _webhook(values: dict, ns: str, prefix: str, namespace_selector: list, object_selector: list) -> dict:
    remote = values.get("istiodRemote") or {}
    client = {"url": remote["injectionURL"]} if remote.get("injectionURL") else {"service": {
        "name": suffixed("istiod", values), "namespace": ns, "path": remote.get("injectionPath") or "/inject",
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
    rev = revision(values)
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
    name = suffixed("istio-sidecar-injector", values)
    if ns != "istio-system":
        name = f"{name}-{ns}"
    labels = {"app": "sidecar-injector", "release": RELEASE} | component_labels(values, PILOT)
    return {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
            "metadata": object_meta(name, None, labels), "webhooks": hooks}


def validating_webhook(values: dict, ns: str) -> dict:
    """Validation of Istio config,
    https://github.com/istio/istio/blob/1.19.0/manifests/charts/istio-control/istio-discovery/templates/validatingwebhookconfiguration.yaml#L1-L58.
    It fails open (Ignore) until istiod patches in its caBundle and flips it to Fail."""
    rev = f"-{values['revision']}" if values["revision"] else ""
    groups = ["security.istio.io", "networking.istio.io", "telemetry.istio.io", "extensions.istio.io"]
    if (values.get("base") or {}).get("validateGateway"):
        groups.append("gateway.networking.k8s.io")
    url = (values.get("base") or {}).get("validationURL")
    client = {"url": url} if url else {"service": {"name": suffixed("istiod", values),
                                                   "namespace": values["global"]["istioNamespace"],
                                                   "path": "/validate"}}
    return {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
            "metadata": object_meta(f"istio-validator{rev}-{values['global']['istioNamespace']}", None,
                              {"app": "istiod", "istio": "istiod", "istio.io/rev": revision(values), "release": RELEASE}),
            "webhooks": [{"name": "rev.validation.istio.io", "clientConfig": client,
                          "rules": [{"operations": ["CREATE", "UPDATE"], "apiGroups": groups,
                                     "apiVersions": ["*"], "resources": ["*"]}],
                          "failurePolicy": "Ignore", "sideEffects": "None",
                          "admissionReviewVersions": ["v1beta1", "v1"],
                          "objectSelector": {"matchExpressions": [_expr("istio.io/rev", "In", revision(values))]}}]}
