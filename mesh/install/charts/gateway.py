"""The gateway charts (``istio-ingress``, ``istio-egress``): per gateway a ServiceAccount, an SDS Role
and RoleBinding, a Deployment, a Service, a PodDisruptionBudget and (autoscaling) an HPA.

Go: https://github.com/istio/istio/tree/1.19.0/manifests/charts/gateways (each function links its
template file).
"""

from __future__ import annotations

import copy

from mesh.install.charts.helpers import (
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


def gateway(values: dict, name: str, ns: str, component: str) -> list[dict]:
    """One ingress or egress gateway: a router-mode proxy (``pilot-agent proxy router``),
    https://github.com/istio/istio/blob/1.19.0/manifests/charts/gateways/istio-ingress/templates/deployment.yaml#L1-L344
    and its neighbours (service.yaml, serviceaccount.yaml, role.yaml, rolebindings.yaml,
    poddisruptionbudget.yaml, autoscale.yaml); the egress chart is the same with other defaults."""
    gw = values["gateways"][name]
    glob = values["global"]
    selector = dict(gw["labels"])
    labels = selector | {"release": RELEASE} | component_labels(values, component)
    sa = f"{name}-service-account"
    out = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": object_meta(sa, ns, labels)},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": object_meta(f"{name}-sds", ns, {"release": RELEASE} | component_labels(values, component)),
         "rules": copy.deepcopy(RULES["gatewaySds"])},
        binding("RoleBinding", f"{name}-sds", f"{name}-sds", sa, ns,
                 {"release": RELEASE} | component_labels(values, component), ns),
        _gateway_deployment(values, gw, name, ns, component, labels, selector, sa),
        _gateway_service(gw, name, ns, labels, selector),
    ]
    if glob["defaultPodDisruptionBudget"]["enabled"]:
        out.append({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": object_meta(name, ns, labels),
                    "spec": {"minAvailable": 1, "selector": {"matchLabels": selector}}})
    if gw.get("autoscaleEnabled") and gw.get("autoscaleMin") and gw.get("autoscaleMax"):
        out.append(hpa(name, ns, labels, gw["autoscaleMin"], gw["autoscaleMax"], gw["cpu"]["targetAverageUtilization"]))
    return out


def _gateway_service(gw: dict, name: str, ns: str, labels: dict, selector: dict) -> dict:
    spec: dict = {"type": gw["type"], "selector": selector,
                  "ports": [{k: p[k] for k in sorted(p)} for p in gw["ports"]]}
    if gw.get("externalTrafficPolicy"):
        spec["externalTrafficPolicy"] = gw["externalTrafficPolicy"]
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": object_meta(name, ns, labels, gw.get("serviceAnnotations") or None), "spec": spec}


def _gateway_deployment(values: dict, gw: dict, name: str, ns: str, component: str, labels: dict,
                        selector: dict, sa: str) -> dict:
    glob, mesh = values["global"], values["meshConfig"]
    pod_labels = selector | {"chart": "gateways", "heritage": "Tiller", "release": RELEASE,
                             "service.istio.io/canonical-name": name,
                             "service.istio.io/canonical-revision": selector.get("version", "latest"),
                             "sidecar.istio.io/inject": "false"} | component_labels(values, component)
    annotations = {"istio.io/rev": revision(values)}
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
        {"name": "CA_ADDR", "value": glob.get("caAddress") or f"{suffixed('istiod', values)}.{glob['istioNamespace']}.svc:15012"},
        field_env("NODE_NAME", "spec.nodeName"),
        field_env("POD_NAME", "metadata.name"),
        field_env("POD_NAMESPACE", "metadata.namespace"),
        field_env("INSTANCE_IP", "status.podIP"),
        field_env("HOST_IP", "status.hostIP"),
        resource_env("ISTIO_CPU_LIMIT", "limits.cpu"),
        field_env("SERVICE_ACCOUNT", "spec.serviceAccountName", api_version=False),
        {"name": "ISTIO_META_WORKLOAD_NAME", "value": name},
        {"name": "ISTIO_META_OWNER", "value": f"kubernetes://apis/apps/v1/namespaces/{ns}/deployments/{name}"},
        {"name": "ISTIO_META_MESH_ID", "value": glob.get("meshID") or mesh.get("trustDomain") or "cluster.local"},
        {"name": "TRUST_DOMAIN", "value": mesh.get("trustDomain") or "cluster.local"},
        {"name": "ISTIO_META_UNPRIVILEGED_POD", "value": "true"},
        *({"name": k, "value": number_text(v)} for k, v in (gw.get("env") or {}).items()),
        *({"name": k, "value": number_text(v)} for k, v in
          ((mesh.get("defaultConfig") or {}).get("proxyMetadata") or {}).items()),
        {"name": "ISTIO_META_CLUSTER_ID", "value": glob["multiCluster"].get("clusterName") or "Kubernetes"},
        field_env("ISTIO_META_NODE_NAME", "spec.nodeName", api_version=False),
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
        {"name": "config-volume", "configMap": {"name": suffixed("istio", values), "optional": True}},
        *({"name": v["name"], "secret": {"secretName": v["secretName"], "optional": True}} for v in secret_volumes),
    ]
    container = {
        "name": "istio-proxy",
        "image": image_name(values, glob["proxy"]["image"], "proxyv2"),
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
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": object_meta(name, ns, labels), "spec": spec}
