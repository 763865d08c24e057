"""Injecting one pod: render the templates, merge them in, post-process, and diff into a JSONPatch.

Go: ``injectPod`` https://github.com/istio/istio/blob/1.19.0/pkg/kube/inject/webhook.go#L416-L468,
``RunTemplate`` https://github.com/istio/istio/blob/1.19.0/pkg/kube/inject/inject.go#L358-L444,
``stripPod`` (re-injection) https://github.com/istio/istio/blob/1.19.0/pkg/kube/inject/inject.go#L478-L504,
``reapplyOverwrittenContainers`` https://github.com/istio/istio/blob/1.19.0/pkg/kube/inject/webhook.go#L470-L556,
``postProcessPod`` and friends https://github.com/istio/istio/blob/1.19.0/pkg/kube/inject/webhook.go#L631-L718
and the Prometheus merge https://github.com/istio/istio/blob/1.19.0/pkg/kube/inject/webhook.go#L776-L881.

The steps, in istiod's order:

1. *strip* — if the pod was injected before (``sidecar.istio.io/status``), the template must see
   it without the old sidecar, so ``ISTIO_META_APP_CONTAINERS`` and friends come out right;
2. *render* every selected template (``inject.istio.io/templates`` or the defaults, aliases
   expanded) and strategic-merge each onto the pod;
3. *re-apply* containers the user wrote themselves (an ``istio-proxy`` in the pod spec overrides
   the template's), remembering them in ``proxy.istio.io/overrides``;
4. *post-process* what a template cannot do: Prometheus merge (the app's ``prometheus.io/*``
   annotations move into ``ISTIO_PROMETHEUS_ANNOTATIONS`` and point at the agent), probe
   rewrite, the status annotation, and container order (the proxy last, or first with
   ``holdApplicationUntilProxyStarts``; ``istio-init`` last among init containers);
5. *diff* the result against the pod as received: the JSONPatch kube-apiserver applies.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
from dataclasses import dataclass, field

import jsonpatch
import yaml

from mesh.inject import merge, probes
from mesh.inject.config import InjectorConfig
from mesh.inject.template import InjectionTemplateError, proxy_image, render
from mesh.inject.validate import AnnotationError, validate_annotations

log = logging.getLogger(__name__)

PROXY = "istio-proxy"
INIT = "istio-init"
VALIDATION = "istio-validation"
CORE_DUMP = "enable-core-dump"
STATUS_ANNOTATION = "sidecar.istio.io/status"
OVERRIDES_ANNOTATION = "proxy.istio.io/overrides"
PROXY_CONFIG_ANNOTATION = "proxy.istio.io/config"
TEMPLATES_ANNOTATION = "inject.istio.io/templates"
NETWORK_LABEL = "topology.istio.io/network"
AUTO_IMAGE = "auto"
_PROMETHEUS = {"prometheus_io_scrape": "scrape", "prometheus_io_path": "path", "prometheus_io_port": "port"}
_CRONJOB_NAME = re.compile(r"^(.+)-\d{8,10}$")


class InjectionError(ValueError):
    """The pod could not be injected (bad template, bad annotation, unknown template name)."""


@dataclass
class InjectionParams:
    """``InjectionParameters``: everything one injection needs."""

    pod: dict
    config: InjectorConfig
    values: dict
    mesh_config: dict
    proxy_config: dict | None = None  # None: mesh defaultConfig + the pod's proxy.istio.io/config
    revision: str = ""
    proxy_envs: dict[str, str] = field(default_factory=dict)  # from the /inject/k/v URL path
    deploy_meta: dict | None = None  # None: derived from the pod's owner, as the webhook does
    type_meta: dict | None = None
    default_templates: list[str] | None = None  # None: the config's defaultTemplates
    injected_annotations: dict[str, str] | None = None  # None: the config's injectedAnnotations


@dataclass
class InjectionResult:
    pod: dict  # the pod after injection
    patch: list[dict]  # JSONPatch from the pod as received to ``pod``
    templates: list[str]  # the templates that ran, in order
    rendered: dict[str, str]  # template name → the YAML it rendered
    template_pod: dict  # all templates merged onto an empty pod (what the sidecar status lists)


# -- helpers ---------------------------------------------------------------------------------------
def sanitize_label_name(name: str) -> str:
    """Prometheus' label-name sanitizing: ``prometheus.io/scrape`` and ``prometheus-io/scrape`` alike."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


def proxy_config_for(mesh_config: dict, annotations: dict | None) -> dict:
    """The pod's ProxyConfig: mesh ``defaultConfig`` overlaid with the ``proxy.istio.io/config``
    annotation (``ApplyProxyConfig``). ProxyConfig custom resources are not modelled."""
    base = copy.deepcopy(mesh_config.get("defaultConfig") or {})
    text = (annotations or {}).get(PROXY_CONFIG_ANNOTATION)
    if not text:
        return base
    try:
        overlay = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise InjectionError(f"annotation {PROXY_CONFIG_ANNOTATION}: invalid YAML: {err}") from err
    if not isinstance(overlay, dict):
        raise InjectionError(f"annotation {PROXY_CONFIG_ANNOTATION}: expected a mapping of ProxyConfig fields")
    merged = {**base, **overlay}
    if "proxyMetadata" in base or "proxyMetadata" in overlay:
        merged["proxyMetadata"] = {**(base.get("proxyMetadata") or {}), **(overlay.get("proxyMetadata") or {})}
    return merged


def deploy_meta_from_pod(pod: dict) -> tuple[dict, dict]:
    """``GetDeployMetaFromPod``: guess the owning workload's name and kind from owner references.

    https://github.com/istio/istio/blob/1.19.0/pkg/kube/util.go#L216-L285
    """
    meta = copy.deepcopy(pod.get("metadata") or {})
    meta.pop("managedFields", None)
    owners = meta.pop("ownerReferences", None) or []
    type_meta = {"apiVersion": "v1", "kind": "Pod"}
    labels = meta.get("labels") or {}
    if meta.get("generateName"):
        controller = next((o for o in owners if o.get("controller")), None)
        if controller is not None:
            type_meta = {"apiVersion": controller.get("apiVersion", ""), "kind": controller.get("kind", "")}
            meta["name"] = controller.get("name", "")
            pod_hash = labels.get("pod-template-hash", "")
            if type_meta["kind"] == "ReplicaSet" and pod_hash and meta["name"].endswith(pod_hash):
                meta["name"] = meta["name"][: -len(pod_hash) - 1]
                type_meta["kind"] = "Deployment"
            elif type_meta["kind"] == "Job" and (m := _CRONJOB_NAME.match(meta["name"])):
                meta["name"] = m.group(1)
                type_meta = {"apiVersion": "batch/v1beta1", "kind": "CronJob"}
    if not meta.get("name"):
        meta["name"] = (pod.get("metadata") or {}).get("name") or ""
    return meta, type_meta


def injection_status(pod: dict) -> dict | None:
    text = ((pod.get("metadata") or {}).get("annotations") or {}).get(STATUS_ANNOTATION)
    if text is None:
        return None
    try:
        status = json.loads(text)
    except json.JSONDecodeError:
        return None
    return status if isinstance(status, dict) else None


def status_annotation(template_spec: dict, revision: str) -> str:
    """``getInjectionStatus``: what the templates added, so a re-injection can take it out again."""
    def names(key: str) -> list[str] | None:
        found = [item.get("name") for item in template_spec.get(key) or []]
        return found or None  # Go marshals an empty slice that was never appended to as null

    status = {"initContainers": names("initContainers"), "containers": names("containers"),
              "volumes": names("volumes"), "imagePullSecrets": names("imagePullSecrets"),
              "revision": revision or "default"}
    return json.dumps(status, separators=(",", ":"))


def _prometheus_port(annotations: dict) -> str | None:
    for key, value in annotations.items():
        if sanitize_label_name(key) == "prometheus_io_port":
            return value
    return None


def _clear_prometheus(annotations: dict) -> None:
    for key in [k for k in annotations if sanitize_label_name(k) in _PROMETHEUS]:
        del annotations[key]


# -- the pipeline ----------------------------------------------------------------------------------
def strip_pod(params: InjectionParams, status_port: int) -> dict:
    """A copy of the pod without what a previous injection added (``stripPod``)."""
    pod = copy.deepcopy(params.pod)
    previous = injection_status(pod)
    if previous is None:
        return pod
    spec = pod.setdefault("spec", {})
    for name in previous.get("containers") or []:
        spec["containers"] = merge.modify_containers(spec.get("containers") or [], name, merge.REMOVE)
    for name in previous.get("initContainers") or []:
        spec["initContainers"] = merge.modify_containers(spec.get("initContainers") or [], name, merge.REMOVE)
    annotations = pod["metadata"].setdefault("annotations", {})
    if _prometheus_port(annotations) == str(status_port):
        _clear_prometheus(annotations)  # ours, from the previous injection
    annotations.pop(STATUS_ANNOTATION, None)
    return pod


def _overrides(pod: dict) -> dict:
    text = ((pod.get("metadata") or {}).get("annotations") or {}).get(OVERRIDES_ANNOTATION)
    if not text:
        return {}
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise InjectionError(f"annotation {OVERRIDES_ANNOTATION}: invalid JSON: {err}") from err


def reinsert_overrides(pod: dict) -> dict:
    """Put back containers remembered in ``proxy.istio.io/overrides`` that stripping removed."""
    overrides = _overrides(pod)
    spec = pod.setdefault("spec", {})
    for key in ("containers", "initContainers"):
        for c in overrides.get(key) or []:
            if merge.find_container(c.get("name"), spec.get(key)) is None:
                spec.setdefault(key, []).append(copy.deepcopy(c))
    return pod


def select_templates(params: InjectionParams) -> list[str]:
    annotations = (params.pod.get("metadata") or {}).get("annotations") or {}
    if TEMPLATES_ANNOTATION in annotations:
        names = [n.strip() for n in annotations[TEMPLATES_ANNOTATION].split(",")]
    else:
        names = list(params.default_templates if params.default_templates is not None
                     else params.config.default_templates)
    resolved = []
    for name in names:
        resolved += params.config.aliases.get(name, [name])
    return resolved


def native_sidecars_enabled() -> bool:
    """``ENABLE_NATIVE_SIDECARS`` (pilot/pkg/features, off by default in 1.19): the sidecar
    template then makes the proxy an init container with ``restartPolicy: Always``.

    https://github.com/istio/istio/blob/1.19.0/pilot/pkg/features/pilot.go#L652-L654
    """
    return os.environ.get("ENABLE_NATIVE_SIDECARS", "") in ("1", "t", "T", "TRUE", "true", "True")  # ParseBool


def move_container(pod: dict, name: str, source: str, target: str) -> dict:
    """``moveContainer``: take container ``name`` out of ``spec[source]`` and append it to
    ``spec[target]`` (a copy of the pod; unchanged if there is none)."""
    spec = (pod.get("spec") or {})
    found = merge.find_container(name, spec.get(source))
    if found is None:
        return pod
    pod = merge.clone(pod)
    pod["spec"][source] = merge.modify_containers(pod["spec"][source], name, merge.REMOVE)
    pod["spec"].setdefault(target, []).append(found)
    return pod


def run_templates(params: InjectionParams, proxy_config: dict) -> tuple[dict, dict, list[str], dict[str, str]]:
    """``RunTemplate``: returns (merged pod, template-only pod, template names, rendered YAML)."""
    try:
        validate_annotations((params.pod.get("metadata") or {}).get("annotations"))
    except AnnotationError as err:
        raise InjectionError(str(err)) from err
    glob = params.values.get("global") or {}
    labels = (params.pod.get("metadata") or {}).get("labels") or {}
    cluster = params.proxy_envs.get("ISTIO_META_CLUSTER_ID") or (glob.get("multiCluster") or {}).get("clusterName", "")
    network = params.proxy_envs.get("ISTIO_META_NETWORK") or glob.get("network", "")
    network = labels.get(NETWORK_LABEL, network)
    if cluster:
        params.proxy_envs["ISTIO_META_CLUSTER_ID"] = cluster
    if network:
        params.proxy_envs["ISTIO_META_NETWORK"] = network

    status_port = int((params.mesh_config.get("defaultConfig") or {}).get("statusPort", 15020))
    stripped = reinsert_overrides(strip_pod(params, status_port))
    meta = stripped.setdefault("metadata", {})
    meta.setdefault("labels", {})
    meta.setdefault("annotations", {})
    spec = stripped.setdefault("spec", {})
    spec.setdefault("containers", [])
    deploy_meta, type_meta = params.deploy_meta, params.type_meta
    if deploy_meta is None or type_meta is None:
        deploy_meta, type_meta = deploy_meta_from_pod(params.pod)
    data = {
        "type_meta": type_meta, "deployment_meta": deploy_meta, "object_meta": meta, "spec": spec,
        "proxy_config": proxy_config, "mesh_config": params.mesh_config, "values": params.values,
        "revision": params.revision,
        "proxy_image": proxy_image(params.values, proxy_config, meta["annotations"]),
    }
    merged_pod, template_pod = params.pod, {}
    names = select_templates(params)
    rendered = {}
    for name in names:
        template = params.config.templates.get(name)
        if template is None:
            raise InjectionError(f"requested template {name!r} not found; have "
                                 f"{', '.join(sorted(params.config.templates)) or 'none'}")
        try:
            text, overlay = render(template, data)
        except InjectionTemplateError as err:
            raise InjectionError(str(err)) from err
        rendered[name] = text
        template_pod = merge.strategic_merge(template_pod, overlay)
        if native_sidecars_enabled() and merge.find_container(
                PROXY, (template_pod.get("spec") or {}).get("initContainers")) is not None:
            # The template made the proxy an init container, but the user's customisation of it is
            # written under `containers`: move it across so the two are merged, not doubled.
            merged_pod = move_container(merged_pod, PROXY, "containers", "initContainers")
        merged_pod = merge.strategic_merge(merged_pod, overlay)
    return merged_pod, template_pod, names, rendered


def reapply_overwritten_containers(final: dict, original: dict, template_pod: dict) -> dict:
    """A container the user declared with the same name as an injected one wins field by field."""
    existing = _overrides(original)
    annotations = (original.get("metadata") or {}).get("annotations") or {}
    already = injection_status(original) if STATUS_ANNOTATION in annotations else None
    found: dict[str, list] = {"containers": [], "initContainers": []}
    for key in ("containers", "initContainers"):
        for c in (template_pod.get("spec") or {}).get(key) or []:
            if already is not None and c["name"] in (already.get(key) or []):
                continue  # our own container from last time: the new template wins
            match = merge.find_container(c["name"], existing.get(key))
            if match is None:
                spec = original.get("spec") or {}
                if key == "containers":
                    match = merge.find_container(c["name"], spec.get("containers"))
                else:
                    match = (merge.find_container(c["name"], spec.get("containers"))
                             or merge.find_container(c["name"], spec.get("initContainers")))
            if match is None:
                continue
            overlay = copy.deepcopy(match)
            if overlay.get("image") == AUTO_IMAGE:
                overlay.pop("image")
            found[key].append(overlay)
            final = merge.strategic_merge(final, {"spec": {key: [overlay]}})
    if STATUS_ANNOTATION not in annotations and (found["containers"] or found["initContainers"]):
        final.setdefault("metadata", {}).setdefault("annotations", {})[OVERRIDES_ANNOTATION] = json.dumps(
            {k: v for k, v in found.items() if v}, separators=(",", ":"))
    return final


def _sidecar(pod: dict) -> dict | None:
    spec = pod.get("spec") or {}
    return merge.find_container(PROXY, spec.get("containers")) or merge.find_container(PROXY, spec.get("initContainers"))


def apply_prometheus_merge(pod: dict, mesh_config: dict) -> None:
    """Metrics merge: the agent serves app + Envoy metrics on the status port; the app's own
    scrape settings ride along in ``ISTIO_PROMETHEUS_ANNOTATIONS``."""
    annotations = pod["metadata"]["annotations"]
    scrape = True
    for key, value in annotations.items():
        if sanitize_label_name(key) == "prometheus_io_scrape" and value.lower() in ("true", "false", "1", "0"):
            scrape = value.lower() in ("true", "1")
    enabled = mesh_config.get("enablePrometheusMerge", True)
    override = annotations.get("prometheus.istio.io/merge-metrics")
    if override is not None and override.lower() in ("true", "false", "1", "0"):
        enabled = override.lower() in ("true", "1")
    if not (scrape and enabled):
        return
    target = str((mesh_config.get("defaultConfig") or {}).get("statusPort", 15020))
    if _prometheus_port(annotations) == target:
        return  # already ours (re-injection) or the user points at the agent themselves
    config = {"scrape": "", "path": "", "port": ""}
    for key, value in annotations.items():
        if (short := _PROMETHEUS.get(sanitize_label_name(key))) is not None:
            config[short] = value
    sidecar = _sidecar(pod)
    if sidecar is not None and any(config.values()):
        sidecar.setdefault("env", []).append(
            {"name": "ISTIO_PROMETHEUS_ANNOTATIONS", "value": json.dumps(config, separators=(",", ":"))})
    _clear_prometheus(annotations)
    annotations["prometheus.io/port"] = target
    annotations["prometheus.io/path"] = "/stats/prometheus"
    annotations["prometheus.io/scrape"] = "true"


def reorder(pod: dict, params: InjectionParams) -> None:
    """Proxy last (``kubectl exec`` defaults to the app), or first when the app must wait for it;
    ``istio-validation`` first and ``istio-init`` last among init containers."""
    proxy_config = proxy_config_for(params.mesh_config, (params.pod.get("metadata") or {}).get("annotations"))
    hold = bool(proxy_config.get("holdApplicationUntilProxyStarts")) or bool(
        ((params.values.get("global") or {}).get("proxy") or {}).get("holdApplicationUntilProxyStarts"))
    spec = pod["spec"]
    spec["containers"] = merge.modify_containers(spec.get("containers") or [], PROXY,
                                                 merge.MOVE_FIRST if hold else merge.MOVE_LAST)
    inits = spec.get("initContainers")
    if not inits:
        return
    if merge.find_container(PROXY, inits) is not None:  # native sidecars: istio containers first
        for name in (CORE_DUMP, PROXY, VALIDATION, INIT):
            inits = merge.modify_containers(inits, name, merge.MOVE_FIRST)
    else:
        inits = merge.modify_containers(inits, VALIDATION, merge.MOVE_FIRST)
        inits = merge.modify_containers(inits, INIT, merge.MOVE_LAST)
        inits = merge.modify_containers(inits, CORE_DUMP, merge.MOVE_LAST)
    spec["initContainers"] = inits


def post_process(pod: dict, template_pod: dict, params: InjectionParams) -> None:
    meta = pod.setdefault("metadata", {})
    meta.setdefault("annotations", {})
    meta.setdefault("labels", {})
    sidecar = _sidecar(pod)
    if sidecar is not None and params.proxy_envs:  # overwriteClusterInfo: URL values win, sorted, last
        env = [e for e in sidecar.get("env") or [] if e.get("name") not in params.proxy_envs]
        sidecar["env"] = env + [{"name": k, "value": params.proxy_envs[k]} for k in sorted(params.proxy_envs)]
    apply_prometheus_merge(pod, params.mesh_config)
    status_port = int((params.mesh_config.get("defaultConfig") or {}).get("statusPort", 15020))
    if sidecar is not None and probes.should_rewrite(meta["annotations"], params.values):
        prober = probes.dump_app_probers(pod, status_port)
        if prober:
            sidecar["env"] = probes.merge_or_append(sidecar.get("env") or [], prober,
                                                    STATUS_ANNOTATION in meta["annotations"])
        probes.rewrite_probes(pod, status_port)
    if "ISTIO_META_NETWORK" in params.proxy_envs:
        meta["labels"][NETWORK_LABEL] = params.proxy_envs["ISTIO_META_NETWORK"]
    meta["annotations"][STATUS_ANNOTATION] = status_annotation(template_pod.get("spec") or {}, params.revision)
    injected = params.injected_annotations if params.injected_annotations is not None \
        else params.config.injected_annotations
    meta["annotations"].update(injected or {})
    reorder(pod, params)


def inject_pod(params: InjectionParams) -> InjectionResult:
    """Inject the sidecar into ``params.pod`` (not modified); raise InjectionError on failure."""
    params.pod = merge.clone(params.pod)
    (params.pod.get("metadata") or {}).pop("managedFields", None)  # huge, and irrelevant to injection
    original = merge.clone(params.pod)
    proxy_config = params.proxy_config
    if proxy_config is None:
        proxy_config = proxy_config_for(params.mesh_config, (params.pod.get("metadata") or {}).get("annotations"))
    merged, template_pod, names, rendered = run_templates(params, proxy_config)
    merged = reapply_overwritten_containers(merge.clone(merged), original, template_pod)
    post_process(merged, template_pod, params)
    patch = jsonpatch.make_patch(original, merged).patch
    return InjectionResult(pod=merged, patch=patch, templates=names, rendered=rendered, template_pod=template_pod)
