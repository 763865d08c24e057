"""Istio 1.19's own injection test cases, run through ``mesh inject`` and compared with its goldens.

Istio's test (pkg/kube/inject/inject_test.go, ``TestInjection``) feeds each
``testdata/inject/<in>`` to ``IntoResourceFile`` (what ``istioctl kube-inject`` runs) and compares
the output with ``<want>``. The settings of a case are the Helm-rendered injector config, values
and mesh config in ``testdata/inputs/``: ``<in>.<index>.{template,values,mesh}.gen.yaml`` when the
case sets flags or an IstioOperator file, ``default.*`` otherwise; some cases also change the mesh
config in code, set ``ENABLE_NATIVE_SIDECARS``, or expect an error or a warning. ``CASES`` below
restates that table (index, input, golden, and those extras); every other ``*.yaml`` of the folder
is a case of its own, as the Go test adds them.

mesh reads the same values and mesh config. Its templates are its own Jinja2 ports of the chart's
(``mesh/traces/src/istio-system/injector-config.yaml``), so the rendered Go templates in
``template.gen.yaml`` are not used — except that a case whose config carries a template the
default one does not (``custom``) gets the Jinja2 rewrite of it given in ``CUSTOM_TEMPLATES``, and a
Go template inside the values (``podDNSSearchNamespaces``) is rewritten the same way.

Read at test time from ``ISTIO_SRC`` (``tests/istio_src.py``); nothing of it is stored here.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import re
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import istio_src
import jsonpatch
import yaml

from mesh.cli import main
from mesh.config.mesh import read_mesh_config_file
from mesh.inject.config import InjectorConfigWatcher, builtin_paths, load_files
from mesh.inject.webhook import Webhook

TESTDATA = "pkg/kube/inject/testdata/inject"
INPUTS = "pkg/kube/inject/testdata/inputs"


@dataclass(frozen=True)
class Case:
    index: int
    input: str
    want: str = ""  # "" for a case that expects an error
    mesh: str = ""  # mesh config YAML the Go test applies in code, on top of the case's mesh config
    native: bool = False  # ENABLE_NATIVE_SIDECARS=true
    error: str = ""  # a (lower-case) part of the error Istio expects
    log: str = ""  # a part of a warning Istio expects

    @property
    def name(self) -> str:
        return f"{self.index:02d}-{self.want or self.input}"


# The explicit table of TestInjection, in its order (the index names the inputs/ files).
_TABLE = [
    ("hello.yaml", "hello.yaml.cni.injected"), ("hello.yaml", "hello.yaml.proxyImageName.injected"),
    ("hello.yaml", "hello-tproxy.yaml.injected", {"mesh": "defaultConfig: {interceptionMode: TPROXY}"}),
    ("hello.yaml", "hello-always.yaml.injected"), ("hello.yaml", "hello-never.yaml.injected"),
    ("enable-core-dump.yaml", "enable-core-dump.yaml.injected"),
    ("format-duration.yaml", "format-duration.yaml.injected", {"mesh": "defaultConfig: {drainDuration: 23s}"}),
    ("traffic-params.yaml", "traffic-params.yaml.injected"), ("status_params.yaml", "status_params.yaml.injected"),
    ("kubevirtInterfaces.yaml", "kubevirtInterfaces.yaml.injected"),
    ("hello.yaml", "hello-image-secrets-in-values.yaml.injected"),
    ("hello-image-pull-secret.yaml", "hello-multiple-image-secrets.yaml.injected"),
    ("hello.yaml", "hello-template-in-values.yaml.injected"), ("hello.yaml", "hello-mount-mtls-certs.yaml.injected"),
    ("hello.yaml", "hello-cncf-networks.yaml.injected"),
    ("hello-existing-cncf-networks.yaml", "hello-existing-cncf-networks.yaml.injected"),
    ("hello-existing-cncf-networks-json.yaml", "hello-existing-cncf-networks-json.yaml.injected"),
    ("hello.yaml", "hello.proxyHoldsApplication.yaml.injected"),
    ("hello-probes.yaml", "hello-probes.proxyHoldsApplication.yaml.injected"),
    ("hello-probes-proxyHoldApplication-ProxyConfig.yaml", "hello-probes-proxyHoldApplication-ProxyConfig.yaml.injected"),
    ("hello-probes-noProxyHoldApplication-ProxyConfig.yaml",
     "hello-probes-noProxyHoldApplication-ProxyConfig.yaml.injected"),
    ("hello-service.yaml", "hello-service.yaml.injected"), ("cronjob.yaml", "cronjob.yaml.injected"),
    ("traffic-annotations-bad-includeipranges.yaml", "", {"error": "includeipranges"}),
    ("traffic-annotations-bad-excludeipranges.yaml", "", {"error": "excludeipranges"}),
    ("traffic-annotations-bad-includeinboundports.yaml", "", {"error": "includeinboundports"}),
    ("traffic-annotations-bad-excludeinboundports.yaml", "", {"error": "excludeinboundports"}),
    ("traffic-annotations-bad-excludeoutboundports.yaml", "", {"error": "excludeoutboundports"}),
    ("traffic-annotations.yaml", "traffic-annotations.yaml.injected",
     {"mesh": "defaultConfig: {proxyMetadata: {ISTIO_META_TLS_CLIENT_KEY: /etc/identity/client/keys/client-key.pem}}"}),
    ("proxy-override.yaml", "proxy-override.yaml.injected"),
    ("explicit-security-context.yaml", "explicit-security-context.yaml.injected"),
    ("only-proxy-container.yaml", "only-proxy-container.yaml.injected"),
    ("proxy-override-args.yaml", "proxy-override-args.yaml.injected"),
    ("proxy-override-args.yaml", "proxy-override-args-native.yaml.injected", {"native": True}),
    ("gateway.yaml", "gateway.yaml.injected"), ("gateway.yaml", "gateway.yaml.injected", {"native": True}),
    ("native-sidecar.yaml", "native-sidecar.yaml.injected", {"native": True}),
    ("custom-template.yaml", "custom-template.yaml.injected"), ("tcp-probes.yaml", "tcp-probes.yaml.injected"),
    ("hello-host-network-with-ns.yaml", "hello-host-network-with-ns.yaml.injected",
     {"log": 'Skipping injection because Deployment "sample/hello-host-network" has host networking enabled'}),
    ("merge-probers.yaml", "merge-probers.yaml.injected"),
    ("hello-tracing-disabled.yaml", "hello-tracing-disabled.yaml.injected", {"mesh": "defaultConfig: {tracing: {}}"}),
]

# Jinja2 rewrites of the Go templates the test's IstioOperator files add (custom-template.iop.yaml).
CUSTOM_TEMPLATES = {
    "custom": """\
metadata:
  annotations:
    prometheus.istio.io/merge-metrics: "false"
    sidecar.istio.io/rewriteAppHTTPProbers: "false"
    foo: bar
spec:
  containers:
{% for container in spec.containers %}
  - name: {{ container.name }}
    env:
    - name: SOME_ENV
      value: "true"
    - name: SOME_FILE
      value: /var/lib/data/foo.json
    volumeMounts:
    - mountPath: /var/lib/data/foo.json
      subPath: foo.json
      name: some-injected-file
{% endfor %}
  volumes:
  - name: some-injected-file
    downwardAPI:
      items:
      - path: foo.json
        fieldRef:
          fieldPath: "metadata.annotations['foo']"
""",
}
# Go template text inside values (hello-template-in-values.iop.yaml), and its Jinja2 rewrite.
VALUE_TEMPLATES = {'{{ valueOrDefault .DeploymentMeta.Namespace "default" }}.global':
                   '{{ value_or_default(deployment_meta.namespace, "default") }}.global'}


def cases() -> list[Case]:
    out = []
    for index, row in enumerate(_TABLE):
        extra = row[2] if len(row) > 2 else {}
        out.append(Case(index, row[0], row[1], **extra))
    tested = {c.want or c.input + ".injected" for c in out}
    for name in istio_src.ls(TESTDATA):
        if name.endswith(".yaml") and not name.endswith(".iop.yaml") and name + ".injected" not in tested:
            out.append(Case(len(out), name, name + ".injected"))
    return out


@dataclass
class Outcome:
    case: Case
    status: int
    output: str
    stderr: str
    equal: bool = False
    diff: list[str] = field(default_factory=list)


def settings_prefix(case: Case) -> str:
    own = f"{case.input}.{case.index}"
    return own if istio_src.show(f"{INPUTS}/{own}.values.gen.yaml") is not None else "default"


def _rewrite_values(value):
    if isinstance(value, dict):
        return {k: _rewrite_values(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rewrite_values(v) for v in value]
    return VALUE_TEMPLATES.get(value, value) if isinstance(value, str) else value


def write_settings(case: Case, folder: Path) -> list[str]:
    """The case's injector config, values and mesh config as files; returns ``mesh inject`` flags."""
    prefix = settings_prefix(case)
    go_config = yaml.safe_load(istio_src.show(f"{INPUTS}/{prefix}.template.gen.yaml"))
    default_go = yaml.safe_load(istio_src.show(f"{INPUTS}/default.template.gen.yaml"))
    config = yaml.safe_load(builtin_paths()[0].read_text(encoding="utf-8"))
    for name in go_config.get("templates") or {}:
        if name not in default_go["templates"]:  # (a changed built-in one mesh has not ported is left out)
            config["templates"][name] = CUSTOM_TEMPLATES[name]
    for key in ("defaultTemplates", "policy", "aliases", "neverInjectSelector", "alwaysInjectSelector",
                "injectedAnnotations"):
        if go_config.get(key) is not None:
            config[key] = go_config[key]
    values = _rewrite_values(json.loads(istio_src.show(f"{INPUTS}/{prefix}.values.gen.yaml")))
    mesh = yaml.safe_load(istio_src.show(f"{INPUTS}/{prefix}.mesh.gen.yaml")) or {}
    if case.mesh:
        tweak = yaml.safe_load(case.mesh)
        mesh.setdefault("defaultConfig", {}).update(tweak.get("defaultConfig", {}))
    files = {"config.yaml": yaml.safe_dump(config), "values.json": json.dumps(values),
             "mesh.yaml": yaml.safe_dump(mesh)}
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return ["--inject-config", str(folder / "config.yaml"), "--values", str(folder / "values.json"),
            "--mesh-config", str(folder / "mesh.yaml")]


@contextlib.contextmanager
def native_sidecars(on: bool):
    """``ENABLE_NATIVE_SIDECARS`` set for the block (the Go test's ``SetEnvForTest``)."""
    saved = os.environ.get("ENABLE_NATIVE_SIDECARS")
    os.environ["ENABLE_NATIVE_SIDECARS"] = "true" if on else "false"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("ENABLE_NATIVE_SIDECARS", None)
        else:
            os.environ["ENABLE_NATIVE_SIDECARS"] = saved


def run(case: Case, folder: Path) -> Outcome:
    """``mesh inject`` on the case's input with the case's settings."""
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / case.input
    source.write_text(istio_src.show(f"{TESTDATA}/{case.input}"), encoding="utf-8")
    out = folder / "out.yaml"
    flags = write_settings(case, folder)
    err = io.StringIO()
    with native_sidecars(case.native), contextlib.redirect_stderr(err):
        status = main(["inject", "-f", str(source), "-o", str(out), *flags])
    outcome = Outcome(case, status, out.read_text(encoding="utf-8") if out.exists() else "", err.getvalue())
    if status == 0 and case.want:
        want = normalize(istio_src.show(f"{TESTDATA}/{case.want}"))
        got = normalize(outcome.output)
        outcome.equal = got == want
        outcome.diff = [] if outcome.equal else differences(want, got)
    return outcome


# -- normalizing: what legitimately differs between Go's yaml.Marshal of typed objects and mesh's ----
_SUFFIXES = {"m": Fraction(1, 1000), "": Fraction(1), "k": Fraction(10**3), "M": Fraction(10**6),
             "G": Fraction(10**9), "T": Fraction(10**12), "Ki": Fraction(2**10), "Mi": Fraction(2**20),
             "Gi": Fraction(2**30), "Ti": Fraction(2**40)}
_QUANTITY = re.compile(r"^([0-9.]+)(m|k|M|G|T|Ki|Mi|Gi|Ti|)$")
_MAPS = ("annotations", "labels")  # string maps: an empty value is a value
# Go writes a typed struct's zero status and non-omitempty fields (DeploymentConfig's ``test``) and
# leaves out omitempty zeros (``paused``, ``minReadySeconds``) the input spelled out.
_GO_ZEROS = ("test", "paused", "minReadySeconds")


def _quantity(value):
    """A resource quantity as a number: Go prints them canonically ("2000m" is "2", "1024Mi" is "1Gi")."""
    m = _QUANTITY.match(str(value))
    return str(Fraction(m.group(1)) * _SUFFIXES[m.group(2)]) if m else value


def _clean(value, key: str = "", parent: str = ""):
    """Go marshals the zero values of typed fields (``creationTimestamp: null``, ``resources: {}``,
    ``status: {}``, ``divisor: "0"``) and omits empty strings; mesh writes what the input and
    templates wrote. Both sides drop them (``emptyDir: {}`` means something and is kept). Resource
    quantities compare as numbers, and JSON inside strings (annotations, env values) compares as
    parsed JSON, since its key order is Go's struct order in one and mesh's in the other."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            v = _clean(v, k, key)
            if v is None or (v == {} and k != "emptyDir") or (v == "" and key not in _MAPS):
                continue
            if (k == "divisor" and v == "0") or (v in (0, False) and (k in _GO_ZEROS or key == "status")):
                continue
            out[k] = v
        return out
    if isinstance(value, list):
        return [_clean(v, "", key) for v in value]
    if parent in ("limits", "requests"):
        return _quantity(value)
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return _clean(json.loads(value))
        except json.JSONDecodeError:
            return value
    return value


def normalize(text: str) -> list:
    return [_clean(d) for d in yaml.safe_load_all(text) if d is not None]


def differences(want, got, path: str = "") -> list[str]:
    """Paths where the two differ, with both values (short)."""
    if isinstance(want, dict) and isinstance(got, dict):
        out = []
        for k in sorted(set(want) | set(got), key=str):
            if k not in got:
                out.append(f"{path}.{k}: missing (want {_short(want[k])})")
            elif k not in want:
                out.append(f"{path}.{k}: extra ({_short(got[k])})")
            else:
                out += differences(want[k], got[k], f"{path}.{k}")
        return out
    if isinstance(want, list) and isinstance(got, list) and len(want) == len(got):
        out = []
        for i, (w, g) in enumerate(zip(want, got, strict=True)):
            name = w.get("name") if isinstance(w, dict) and "name" in w else i
            out += differences(w, g, f"{path}[{name}]")
        return out
    if want != got:
        return [f"{path}: want {_short(want)} got {_short(got)}"]
    return []


def _short(value) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) < 160 else text[:157] + "..."


# -- the webhook half of TestInjection ---------------------------------------------------------------
# The Go test also turns each input workload into the pod kube-apiserver would send (objectToPod:
# the pod template, with an owner reference to its controller, and for a Deployment the
# ReplicaSet's name and pod-template-hash), runs the webhook on it, applies the patch, and compares
# with the golden's pod the same way, leaving out the sidecar.istio.io/status annotation.
# https://github.com/istio/istio/blob/1.19.0/pkg/kube/inject/webhook_test.go#L528-L586
WEBHOOK_SKIPPED = ("hello-service.yaml", "cronjob.yaml")  # skipWebhook in the Go table
_POD_TEMPLATE = {"CronJob": ("spec", "jobTemplate", "spec", "template")}
_INJECTABLE = ("Deployment", "DeploymentConfig", "DaemonSet", "StatefulSet", "Job", "ReplicaSet",
               "ReplicationController", "CronJob", "Pod")


def injectable_documents(docs: list) -> list[dict]:
    """``getInjectableYamlDocs``: the workloads, with List items taken out of their list."""
    out = []
    for doc in docs:
        if doc.get("kind") == "List":
            out += injectable_documents(doc.get("items") or [])
        elif doc.get("kind") in _INJECTABLE:
            out.append(doc)
    return out


def object_to_pod(obj: dict) -> dict:
    """``objectToPod``."""
    if obj["kind"] == "Pod":
        return obj
    template = obj
    for step in _POD_TEMPLATE.get(obj["kind"], ("spec", "template")):
        template = template[step]
    meta = json.loads(json.dumps(template.get("metadata") or {}))
    owner_kind, owner_version, name = obj["kind"], obj["apiVersion"], obj["metadata"]["name"]
    if obj["kind"] == "Deployment":
        owner_kind, owner_version, name = "ReplicaSet", "apps/v1", name + "-fake"
        meta.setdefault("labels", {})["pod-template-hash"] = "fake"
    meta["generateName"] = name + ("-" if obj["kind"] == "Deployment" else "")
    meta["ownerReferences"] = [{"apiVersion": owner_version, "kind": owner_kind, "name": name, "controller": True}]
    return {"metadata": meta, "spec": template.get("spec") or {}}


def run_webhook(case: Case, folder: Path) -> list[list[str]]:
    """The webhook on every injectable part of the input; per part, the differences from the golden."""
    folder.mkdir(parents=True, exist_ok=True)
    flags = write_settings(case, folder)
    config, values = load_files(flags[1], flags[3])
    mesh = read_mesh_config_file(flags[5])
    webhook = Webhook(InjectorConfigWatcher(config, values), lambda: mesh, revision="default")
    inputs = injectable_documents([d for d in yaml.safe_load_all(istio_src.show(f"{TESTDATA}/{case.input}")) if d])
    wants = injectable_documents([d for d in yaml.safe_load_all(istio_src.show(f"{TESTDATA}/{case.want}")) if d])
    results = []
    with native_sidecars(case.native):
        for obj, want_obj in zip(inputs, wants, strict=True):
            pod = object_to_pod(obj)
            review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                      "request": {"uid": "u", "object": pod, "namespace": obj["metadata"].get("namespace", "")}}
            response = webhook.review(review)["response"]
            assert response.get("allowed"), response
            got = pod
            if response.get("patch"):
                got = jsonpatch.apply_patch(pod, json.loads(base64.b64decode(response["patch"])))
            want = object_to_pod(want_obj)
            for p in (got, want):
                (p["metadata"].get("annotations") or {}).pop("sidecar.istio.io/status", None)
            results.append(differences(_clean(want), _clean(got)))
    return results
