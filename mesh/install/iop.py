"""IstioOperator: profiles, overlays, ``--set``, validation, and the values the charts get.

``istioctl install`` and the in-cluster operator both start from one function,
``GenerateConfig`` (https://github.com/istio/istio/blob/1.19.0/operator/pkg/manifest/shared.go#L100-L113):
read the user's IstioOperator files and ``--set`` flags, find the profile they name, lay them
over that profile (itself laid over ``default``), and validate the result. Laying one tree over
another is ``OverlayIOP``
(https://github.com/istio/istio/blob/1.19.0/operator/pkg/util/merge_iop.go#L231-L265), a
Kubernetes strategic merge over the struct tags of
https://github.com/istio/istio/blob/1.19.0/operator/pkg/util/merge_iop.go#L39-L154: maps merge
key by key, ``null`` deletes, the lists tagged with a merge key (``components.ingressGateways``
and ``egressGateways`` by ``name``, the gateways' ``ports`` in ``values``, MeshConfig's
``extensionProviders`` …) merge entry by entry, lists of scalars tagged ``merge`` are unioned, and
every other list replaces the one under it — which is why the demo profile repeats all the
ingress gateway's ``k8s.service.ports``. ``overlay_iop`` here is that merge, over the same table.

The result's ``spec.values`` and ``spec.meshConfig`` then become the Helm values of each chart
(https://github.com/istio/istio/blob/1.19.0/operator/pkg/translate/translate.go#L698-L836):
``hub``/``tag``/``revision`` move under ``global``, ``meshConfig`` becomes ``values.meshConfig``,
each component's ``enabled`` becomes ``values.<component>.enabled``. ``values()`` here does the
same on top of ``chart_values.yaml``, the charts' own defaults.

An IstioOperator that does not make sense is refused with every problem listed by path
(``spec.components.pilot.enabled: expected true or false, got 'yes'``); nothing is rendered
from it.
"""

from __future__ import annotations

import copy
import re
from importlib import resources
from pathlib import Path

import yaml

from mesh.install import tpath
from mesh.kube.mergepatch import merge_patch

API_VERSION = "install.istio.io/v1alpha1"
KIND = "IstioOperator"
DEFAULT_PROFILE = "default"
INGRESS = "ingressGateways"
EGRESS = "egressGateways"

# IstioOperatorSpec's fields (operator/pkg/apis/istio/v1alpha1 and istio.io/api operator/v1alpha1).
SPEC_FIELDS = ("profile", "installPackagePath", "hub", "tag", "namespace", "revision", "meshConfig",
               "components", "addonComponents", "values", "unvalidatedValues")
COMPONENTS = ("base", "pilot", "policy", "telemetry", "cni", "ztunnel", "istiodRemote", INGRESS, EGRESS)
RENDERED = ("base", "pilot", INGRESS, EGRESS)  # the components mesh has a renderer for
COMPONENT_FIELDS = ("enabled", "namespace", "hub", "tag", "spec", "k8s", "label")
GATEWAY_FIELDS = ("name", "enabled", "namespace", "hub", "tag", "k8s", "label")
K8S_FIELDS = ("affinity", "env", "hpaSpec", "imagePullPolicy", "nodeSelector", "podDisruptionBudget",
              "podAnnotations", "priorityClassName", "readinessProbe", "replicaCount", "resources", "service",
              "strategy", "tolerations", "serviceAnnotations", "securityContext", "volumes", "volumeMounts",
              "overlays")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class IstioOperatorError(ValueError):
    """An IstioOperator (or a --set) that cannot be installed; ``problems`` lists each by path."""

    def __init__(self, problems: list[str], source: str = ""):
        self.problems = problems
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(where + "; ".join(problems))


def _data_text(*parts: str) -> str:
    return resources.files("mesh.install").joinpath(*parts).read_text(encoding="utf-8")


def profile_names() -> list[str]:
    folder = resources.files("mesh.install").joinpath("profiles")
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def read_profile(name: str) -> dict:
    """A profile file as written (not yet laid over ``default``)."""
    if name not in profile_names():
        raise IstioOperatorError([f"profile {name!r} does not exist (known: {', '.join(profile_names())})"])
    return yaml.safe_load(_data_text("profiles", f"{name}.yaml"))


def chart_values() -> dict:
    return yaml.safe_load(_data_text("chart_values.yaml"))


# The lists OverlayIOP merges rather than replaces (merge_iop.go's patchMergeKey / patchStrategy
# tags), by path below ``spec``; "" marks a list of scalars merged as a set.
_MESH_CONFIG_LISTS = {"configSources": "address", "certificates": "secretName", "extensionProviders": "name",
                      "trustDomainAliases": "", "defaultServiceExportTo": "", "defaultVirtualServiceExportTo": "",
                      "defaultDestinationRuleExportTo": ""}
_IOP_LIST_KEYS: dict[tuple[str, ...], str] = {
    ("components", INGRESS): "name", ("components", EGRESS): "name",
    ("values", "gateways", "istio-ingressgateway", "ports"): "name",
    ("values", "gateways", "istio-ingressgateway", "meshExpansionPorts"): "name",
    ("values", "gateways", "istio-ingressgateway", "secretVolumes"): "name",
    ("values", "gateways", "istio-egressgateway", "ports"): "name",
    ("values", "gateways", "istio-egressgateway", "secretVolumes"): "name",
    **{("meshConfig", f): k for f, k in _MESH_CONFIG_LISTS.items()},
    **{("values", "meshConfig", f): k for f, k in _MESH_CONFIG_LISTS.items()},
}


def overlay_iop(base: dict, overlay: dict) -> dict:
    """``OverlayIOP``: ``overlay`` laid over ``base`` (two IstioOperators) by strategic merge."""
    out = merge_patch(base, {k: v for k, v in overlay.items() if k != "spec"})
    spec = overlay.get("spec")
    if isinstance(spec, dict):
        out["spec"] = _strategic(base.get("spec"), spec, ())
    elif spec is not None:
        out["spec"] = copy.deepcopy(spec)  # not a mapping: validate() names it
    return out


def _strategic(base: object, patch: object, path: tuple[str, ...]) -> object:
    if isinstance(patch, dict):
        out = copy.deepcopy(base) if isinstance(base, dict) else {}
        for key, value in patch.items():
            if value is None:
                out.pop(key, None)
            else:
                out[key] = _strategic(out.get(key), value, (*path, key))
        return out
    merge_key = _IOP_LIST_KEYS.get(path)
    if merge_key is None or not isinstance(patch, list) or not isinstance(base, list):
        return copy.deepcopy(patch)
    out = copy.deepcopy(base)
    for entry in patch:
        if merge_key == "":
            if entry not in out:
                out.append(copy.deepcopy(entry))
            continue
        same = [i for i, old in enumerate(out)
                if isinstance(old, dict) and isinstance(entry, dict) and old.get(merge_key) == entry.get(merge_key)]
        if same:  # entries inside a keyed list have no tagged lists of their own: path "*"
            out[same[0]] = _strategic(out[same[0]], entry, (*path, "*"))
        else:
            out.append(copy.deepcopy(entry))
    return out


def profile_iop(name: str) -> dict:
    """The profile as ``istioctl profile dump`` shows it: ``default`` with the profile laid over."""
    base = read_profile(DEFAULT_PROFILE)
    if name != DEFAULT_PROFILE:
        base = overlay_iop(base, read_profile(name))
    base.setdefault("metadata", {})
    base["spec"]["profile"] = name
    return base


def load_iop_text(text: str, source: str) -> dict:
    """One IstioOperator from YAML text; IstioOperatorError naming the source for bad YAML or shape."""
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise IstioOperatorError([f"not valid YAML ({getattr(err, 'problem', err)})"], f"{source}{line}") from None
    if len(docs) != 1:
        raise IstioOperatorError([f"expected one IstioOperator document, found {len(docs)}"], source)
    doc = docs[0]
    problems = _check_header(doc)
    if problems:
        raise IstioOperatorError(problems, source)
    return doc


def _check_header(doc: object) -> list[str]:
    if not isinstance(doc, dict):
        return [f"expected an IstioOperator mapping, got {type(doc).__name__}"]
    problems = []
    if doc.get("apiVersion") != API_VERSION:
        problems.append(f"apiVersion: expected {API_VERSION}, got {doc.get('apiVersion')!r}")
    if doc.get("kind") != KIND:
        problems.append(f"kind: expected {KIND}, got {doc.get('kind')!r}")
    if "spec" in doc and not isinstance(doc["spec"], dict | None):
        problems.append(f"spec: expected a mapping, got {type(doc['spec']).__name__}")
    return problems


def apply_sets(iop: dict, sets: list[str]) -> dict:
    """``--set path=value`` flags, paths relative to ``spec`` as in istioctl."""
    iop = copy.deepcopy(iop)
    spec = iop.setdefault("spec", {}) or {}
    iop["spec"] = spec
    for flag in sets:
        try:
            path, value = tpath.parse_set(flag)
            first = tpath.parse_path(path)[0]
            if first.key not in SPEC_FIELDS:
                raise tpath.PathError(f"{path}: {first} is not an IstioOperator spec field "
                                      f"(one of {', '.join(SPEC_FIELDS)})")
            tpath.set_path(spec, path, value)
        except tpath.PathError as err:
            raise IstioOperatorError([f"--set {flag}: {err}"]) from None
    return iop


def generate(user: dict | None = None, profile: str | None = None, sets: list[str] = (), source: str = "") -> dict:
    """``GenerateConfig``: the effective IstioOperator for a user IstioOperator, a profile name
    and ``--set`` flags: the profile (named by ``--set profile=``, else ``spec.profile``, else the
    ``profile`` argument, else ``default``), the user's IstioOperator over it, the ``--set`` flags
    over that. Raises IstioOperatorError (nothing is half-made)."""
    user = copy.deepcopy(user) if user else {"apiVersion": API_VERSION, "kind": KIND, "spec": {}}
    problems = _check_header(user)
    if problems:
        raise IstioOperatorError(problems, source)
    # --set paths address the merged tree (a list entry picked by [name:...] is the profile's),
    # so they go on last; only --set profile= is read first, to know which profile to start from.
    name = apply_sets({"spec": {}}, [s for s in sets if s.split("=", 1)[0].strip() == "profile"])["spec"].get("profile")
    name = name or (user.get("spec") or {}).get("profile") or profile or DEFAULT_PROFILE
    if not isinstance(name, str) or name not in profile_names():
        raise IstioOperatorError([f"spec.profile: {name!r} is not a profile (known: {', '.join(profile_names())})"],
                                 source)
    effective = apply_sets(overlay_iop(profile_iop(name), user), list(sets))
    effective["spec"]["profile"] = name
    problems = validate(effective)
    if problems:
        raise IstioOperatorError(problems, source)
    return effective


# -- validation -------------------------------------------------------------------------------

def validate(iop: dict) -> list[str]:
    """Every problem of an IstioOperator, by path; empty when it can be rendered."""
    problems = _check_header(iop)
    spec = iop.get("spec") or {}
    if problems or not isinstance(spec, dict):
        return problems
    for key in spec:
        if key not in SPEC_FIELDS:
            problems.append(f"spec.{key}: unknown field (expected one of {', '.join(SPEC_FIELDS)})")
    for key in ("hub", "tag", "namespace", "revision", "profile"):
        if key in spec and spec[key] is not None and not isinstance(spec[key], str):
            problems.append(f"spec.{key}: expected a string, got {spec[key]!r}")
    if isinstance(spec.get("revision"), str) and spec["revision"] and not _DNS_LABEL.match(spec["revision"]):
        problems.append(f"spec.revision: {spec['revision']!r} is not a DNS label (lower case, digits, '-')")
    if isinstance(spec.get("namespace"), str) and spec["namespace"] and not _DNS_LABEL.match(spec["namespace"]):
        problems.append(f"spec.namespace: {spec['namespace']!r} is not a namespace name")
    for key in ("meshConfig", "values", "unvalidatedValues"):
        if spec.get(key) is not None and not isinstance(spec[key], dict):
            problems.append(f"spec.{key}: expected a mapping, got {type(spec[key]).__name__}")
    if isinstance(spec.get("meshConfig"), dict):
        problems += _check_mesh_config(spec["meshConfig"])
    components = spec.get("components") or {}
    if not isinstance(components, dict):
        return problems + [f"spec.components: expected a mapping, got {type(components).__name__}"]
    for name, component in components.items():
        where = f"spec.components.{name}"
        if name not in COMPONENTS:
            problems.append(f"{where}: unknown component (expected one of {', '.join(COMPONENTS)})")
        elif name in (INGRESS, EGRESS):
            if not isinstance(component, list | None):
                problems.append(f"{where}: expected a list of gateways, got {type(component).__name__}")
                continue
            seen = set()
            for i, gateway in enumerate(component or []):
                problems += _check_component(gateway, f"{where}[{i}]", GATEWAY_FIELDS, gateway=True)
                gw_name = gateway.get("name") if isinstance(gateway, dict) else None
                if gw_name in seen:
                    problems.append(f"{where}[{i}].name: {gw_name!r} appears twice")
                seen.add(gw_name)
        else:
            problems += _check_component(component, where, COMPONENT_FIELDS)
            if isinstance(component, dict) and component.get("enabled") is True and name not in RENDERED:
                problems.append(f"{where}.enabled: mesh has no renderer for the {name} component "
                                f"(it renders {', '.join(RENDERED)})")
    return problems


def _check_component(component: object, where: str, fields: tuple[str, ...], gateway: bool = False) -> list[str]:
    if component is None:
        return []
    if not isinstance(component, dict):
        return [f"{where}: expected a mapping, got {type(component).__name__}"]
    problems = [f"{where}.{k}: unknown field (expected one of {', '.join(fields)})" for k in component if k not in fields]
    enabled = component.get("enabled")
    if enabled is not None and not isinstance(enabled, bool):
        problems.append(f"{where}.enabled: expected true or false, got {enabled!r}")
    if gateway:
        name = component.get("name")
        if not isinstance(name, str) or not _DNS_LABEL.match(name):
            problems.append(f"{where}.name: expected a gateway name (a DNS label), got {name!r}")
    if component.get("label") is not None and not isinstance(component["label"], dict):
        problems.append(f"{where}.label: expected a mapping of labels")
    k8s = component.get("k8s")
    if k8s is not None:
        if not isinstance(k8s, dict):
            problems.append(f"{where}.k8s: expected a mapping, got {type(k8s).__name__}")
        else:
            problems += [f"{where}.k8s.{k}: unknown field (expected one of {', '.join(K8S_FIELDS)})"
                         for k in k8s if k not in K8S_FIELDS]
            problems += _check_k8s(k8s, f"{where}.k8s")
    return problems


def _check_k8s(k8s: dict, where: str) -> list[str]:
    problems = []
    env = k8s.get("env")
    if env is not None and not (isinstance(env, list) and all(isinstance(e, dict) and e.get("name") for e in env)):
        problems.append(f"{where}.env: expected a list of {{name, value}} entries")
    count = k8s.get("replicaCount")
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 0):
        problems.append(f"{where}.replicaCount: expected a whole number >= 0, got {count!r}")
    for key in ("resources", "service", "nodeSelector", "podAnnotations", "hpaSpec", "strategy"):
        if k8s.get(key) is not None and not isinstance(k8s[key], dict):
            problems.append(f"{where}.{key}: expected a mapping, got {type(k8s[key]).__name__}")
    for i, overlay in enumerate(k8s.get("overlays") or []):
        at = f"{where}.overlays[{i}]"
        if not isinstance(overlay, dict) or not overlay.get("kind") or not overlay.get("name"):
            problems.append(f"{at}: expected {{kind, name, patches}}")
            continue
        for j, patch in enumerate(overlay.get("patches") or []):
            if not isinstance(patch, dict) or not isinstance(patch.get("path"), str):
                problems.append(f"{at}.patches[{j}]: expected {{path, value}}")
                continue
            try:
                tpath.parse_path(patch["path"])
            except tpath.PathError as err:
                problems.append(f"{at}.patches[{j}].path: {err}")
    return problems


def _check_mesh_config(mesh: dict) -> list[str]:
    """meshConfig through mesh's own MeshConfig reader, so a bad field fails here, not in istiod."""
    from mesh.config.mesh import MeshConfigError, apply_mesh_config

    try:
        apply_mesh_config(yaml.safe_dump(mesh))
    except MeshConfigError as err:
        return [f"spec.meshConfig: {err}"]
    return []


# -- values -----------------------------------------------------------------------------------

def gateways(iop: dict, which: str) -> list[dict]:
    """The enabled gateways of ``ingressGateways`` or ``egressGateways``."""
    listed = ((iop.get("spec") or {}).get("components") or {}).get(which) or []
    return [g for g in listed if g.get("enabled")]


def enabled(iop: dict, component: str) -> bool:
    found = ((iop.get("spec") or {}).get("components") or {}).get(component) or {}
    return bool(found.get("enabled"))


def values(iop: dict, owner: str = "") -> dict:
    """The Helm values the charts render with: chart defaults, then ``spec.values``, then what
    the translator moves in from the rest of the spec."""
    spec = iop.get("spec") or {}
    out = merge_patch(chart_values(), spec.get("values") or {})
    glob = out.setdefault("global", {})
    for key in ("hub", "tag"):
        if spec.get(key):
            glob[key] = spec[key]
    if spec.get("namespace"):
        glob["istioNamespace"] = spec["namespace"]
    out["revision"] = spec.get("revision") or ""
    out["ownerName"] = owner
    out["meshConfig"] = merge_patch(out.get("meshConfig") or {}, spec.get("meshConfig") or {})
    out.setdefault("pilot", {})["enabled"] = enabled(iop, "pilot")
    # Every gateway renders from its kind's chart values (gateways.istio-ingressgateway or
    # gateways.istio-egressgateway) with its own name, its `label` (if given) as the labels, and its
    # k8s.service.ports (if given) as the ports — applyGatewayTranslations, translate.go#L630-L659.
    for which, template in ((INGRESS, "istio-ingressgateway"), (EGRESS, "istio-egressgateway")):
        base = copy.deepcopy(out.setdefault("gateways", {}).get(template) or {})
        for gateway in gateways(iop, which):
            merged = copy.deepcopy(base)
            merged["name"] = gateway["name"]
            if gateway.get("label"):
                merged["labels"] = dict(gateway["label"])
            ports = ((gateway.get("k8s") or {}).get("service") or {}).get("ports")
            if ports:
                merged["ports"] = copy.deepcopy(ports)
            out["gateways"][gateway["name"]] = merged
    return out


def load_iop_file(path: str | Path) -> dict:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise IstioOperatorError([f"cannot read: {err.strerror}"], str(path)) from None
    return load_iop_text(text, str(path))


def generate_from_files(files: list[str] = (), profile: str | None = None, sets: list[str] = ()) -> dict:
    """``-f a.yaml -f b.yaml --set ...``: the files laid over one another in order, then ``generate``."""
    user: dict = {"apiVersion": API_VERSION, "kind": KIND, "spec": {}}
    for path in files:
        user = overlay_iop(user, load_iop_file(path))
    return generate(user, profile=profile, sets=sets, source=", ".join(files))


def dump(iop: dict) -> str:
    """An IstioOperator as YAML, keys sorted so two dumps diff cleanly."""
    return yaml.safe_dump(iop, sort_keys=True, default_flow_style=False)
