"""Build a trace (DESIGN.md §4) from a scenario: a short, human-written story of a cluster.

A trace lists every watch event a cluster produces, which is far too much to write by hand and
keep consistent (uids, resourceVersions, ownerReferences, endpoint IPs). A scenario says only
what a user did; ``mesh.kube.simcluster.SimCluster`` plays the API server and controllers and
records the events. Istio's tests take the same shortcut when they stand a fake cluster up
(https://github.com/istio/istio/blob/1.19.0/pilot/pkg/serviceregistry/kube/controller/fake.go#L62-L128).

Scenario format (``traces/src/<name>.yaml``)::

    name: canary                    # the trace is traces/<name>.jsonl; must match the file name
    description: bookinfo, then reviews shifted from v1 to v3 in four steps
    domain_suffix: cluster.local    # optional (default cluster.local)
    node: {name: mesh-worker, region: us-east1, zone: us-east1-b}   # optional, the one Node
    include: bookinfo.yaml          # optional, a file or a list: their steps are played first
    steps:
      - t: 10                       # seconds since the start; never decreasing
        note: what a person typed   # optional, for the reader only
        apply:                      # kubectl apply: create, or update keeping server fields
          - {apiVersion: v1, kind: Namespace, metadata: {name: demo}}
          - file: bookinfo/bookinfo.yaml       # every document of a manifest file
          - configmap:                         # kubectl create configmap --from-file=KEY=PATH
              name: istio-sidecar-injector
              namespace: istio-system
              labels: {...}
              from_file: {config: istio-system/injector-config.yaml}
        modify:                     # kubectl patch --type merge (RFC 7386)
          - ref: ConfigMap istio-system/istio
            merge: {metadata: {labels: {edited: "true"}}}
            merge_yaml: {mesh: {accessLogFile: /dev/stdout}}   # into YAML held in data.mesh
        scale: {deployment: default/reviews-v3, replicas: 5}   # or a list of them
        delete: [VirtualService default/reviews]

Operations of a step run in the order written, then the controllers settle. A reference is
``Kind namespace/name`` (``Kind name`` when cluster-scoped); the kind may be any name kubectl
accepts (``deploy``, ``cm``, ``gateways.gateway.networking.k8s.io``). Paths are relative to the
scenario file. Manifests are written as submitted: no uid, resourceVersion or status (the
builder owns those); a namespaced manifest without a namespace goes to ``default``.

A file with no ``name`` is a fragment, meant only to be included. Every error names the file,
the line and the field (``traces/src/canary.yaml:12: steps[1].apply[0]: ...``) and nothing is
written. The same scenario always gives a byte-identical trace, and every trace built is checked
with ``mesh.kube.trace.parse_trace`` before it is returned.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from mesh.kube import kinds
from mesh.kube.kinds import ObjectKey
from mesh.kube.simcluster import EPOCH, NodeInfo, SimCluster, SimClusterError
from mesh.kube.trace import TRACE_FORMAT, TraceEvent, dump_event, parse_trace

SOURCE_DIR = Path(__file__).resolve().parent.parent / "traces" / "src"
TRACES_DIR = SOURCE_DIR.parent

_STEP_KEYS = ("t", "apply", "modify", "scale", "delete", "note")
_HEADER_KEYS = ("name", "description", "domain_suffix", "node", "include", "steps")


class ScenarioError(ValueError):
    """A scenario that cannot be built; the message names file, line and field."""


class _Located(dict):
    """A mapping that remembers the line it started on, for error messages."""

    line: int = 0


class _LineLoader(yaml.SafeLoader):
    pass


def _construct_located(loader: _LineLoader, node: yaml.MappingNode) -> _Located:
    loader.flatten_mapping(node)
    mapping = _Located(loader.construct_pairs(node, deep=True))
    mapping.line = node.start_mark.line + 1
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_located)


def _line_of(value: object, fallback: int) -> int:
    return getattr(value, "line", 0) or fallback


def _plain(value: object, where: str) -> object:
    """A YAML value as plain JSON data (dict subclasses and dates would not survive a trace)."""
    try:
        return json.loads(json.dumps(value))
    except TypeError as err:
        raise ScenarioError(f"{where}: not representable in JSON ({err}); quote dates and times") from None


@dataclass
class Step:
    t: float
    operations: list[tuple[str, object]]  # ("apply", manifest) | ("modify", spec) | ...
    source: str  # file:line, for messages
    where: str  # steps[i], for messages


@dataclass
class Scenario:
    path: Path
    name: str | None
    description: str = ""
    domain_suffix: str = "cluster.local"
    node: NodeInfo = field(default_factory=NodeInfo)
    steps: list[Step] = field(default_factory=list)

    @property
    def is_fragment(self) -> bool:
        return self.name is None


def _read_yaml(path: Path, what: str, multi: bool = False) -> list[object]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ScenarioError(f"{what}: cannot read {path}: {err.strerror}") from None
    try:
        documents = list(yaml.load_all(text, Loader=_LineLoader))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise ScenarioError(f"{path}{line}: not valid YAML ({getattr(err, 'problem', err)})") from None
    documents = [d for d in documents if d is not None]
    if not multi and len(documents) != 1:
        raise ScenarioError(f"{path}: expected one YAML document, found {len(documents)}")
    return documents


def load_scenario(path: str | Path, _including: tuple[Path, ...] = ()) -> Scenario:
    """Read a scenario and everything it includes, checking every field."""
    path = Path(path).resolve()
    if path in _including:
        chain = " -> ".join(p.name for p in (*_including, path))
        raise ScenarioError(f"{path}: include cycle ({chain})")
    (doc,) = _read_yaml(path, str(path))
    if not isinstance(doc, dict):
        raise ScenarioError(f"{path}:1: expected a mapping with name, description and steps")
    at = f"{path}:{_line_of(doc, 1)}"
    unknown = sorted(set(doc) - set(_HEADER_KEYS))
    if unknown:
        raise ScenarioError(f"{at}: {unknown[0]}: unknown key (expected one of {', '.join(_HEADER_KEYS)})")
    name = doc.get("name")
    if name is not None and name != path.stem:
        raise ScenarioError(f"{at}: name: {name!r} must match the file name {path.stem!r}")
    scenario = Scenario(path=path, name=name, description=str(doc.get("description", "")))
    includes = doc.get("include") or []
    for included in [includes] if isinstance(includes, str) else includes:
        inner = load_scenario(path.parent / included, (*_including, path))
        scenario.steps.extend(inner.steps)
        scenario.domain_suffix, scenario.node = inner.domain_suffix, inner.node
    if "domain_suffix" in doc:
        scenario.domain_suffix = str(doc["domain_suffix"])
    if "node" in doc:
        try:
            scenario.node = NodeInfo(**doc["node"])
        except TypeError as err:
            raise ScenarioError(f"{path}:{_line_of(doc['node'], 1)}: node: {err}") from None
    steps = doc.get("steps") or []
    if not isinstance(steps, list):
        raise ScenarioError(f"{at}: steps: expected a list of steps")
    for index, raw in enumerate(steps):
        scenario.steps.append(_parse_step(raw, path, index))
    last = 0.0
    for step in scenario.steps:
        if step.t < last:
            raise ScenarioError(f"{step.source}: {step.where}.t: time goes backwards ({step.t} after {last})")
        last = step.t
    return scenario


def _parse_step(raw: object, path: Path, index: int) -> Step:
    where = f"steps[{index}]"
    if not isinstance(raw, dict):
        raise ScenarioError(f"{path}: {where}: expected a mapping with t and operations")
    source = f"{path}:{_line_of(raw, 1)}"
    unknown = sorted(set(raw) - set(_STEP_KEYS))
    if unknown:
        expected = ", ".join(_STEP_KEYS)
        raise ScenarioError(f"{source}: {where}.{unknown[0]}: unknown key (expected one of {expected})")
    t = raw.get("t")
    if isinstance(t, bool) or not isinstance(t, int | float) or t < 0:
        raise ScenarioError(f"{source}: {where}.t: must be a number of seconds >= 0, got {t!r}")
    operations: list[tuple[str, object]] = []
    for op, value in raw.items():
        if op in ("t", "note"):
            continue
        if op == "apply":
            operations += [("apply", m) for m in _parse_apply(value, path, f"{where}.apply", source)]
        elif op == "modify":
            operations += [("modify", m) for m in _parse_modify(value, path, f"{where}.modify", source)]
        elif op == "scale":
            operations += [("scale", s) for s in _parse_scale(value, f"{where}.scale", path, source)]
        elif op == "delete":
            refs = value if isinstance(value, list) else [value]
            for i, ref in enumerate(refs):
                at = f"{source}: {where}.delete[{i}]"
                operations.append(("delete", (parse_ref(ref, at), at)))
    if not operations:
        raise ScenarioError(f"{source}: {where}: no operation (apply, modify, scale or delete)")
    return Step(t=float(t), operations=operations, source=source, where=where)


def _as_list(value: object, at: str) -> list:
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        return [value]
    raise ScenarioError(f"{at}: expected a list")


def _parse_apply(value: object, path: Path, where: str, source: str) -> list[tuple[dict, str]]:
    """Every manifest of an ``apply`` list, each with the file:line: field it came from."""
    manifests: list[tuple[dict, str]] = []
    for index, entry in enumerate(_as_list(value, f"{source}: {where}")):
        at = f"{path}:{_line_of(entry, 1)}: {where}[{index}]"
        if not isinstance(entry, dict):
            raise ScenarioError(f"{at}: expected a manifest, a file: or a configmap: entry")
        if "file" in entry and "kind" not in entry:
            manifest_path = path.parent / str(entry["file"])
            for doc in _read_yaml(manifest_path, at, multi=True):
                doc_at = f"{manifest_path}:{_line_of(doc, 1)}: {where}[{index}] (file)"
                if not isinstance(doc, dict):
                    raise ScenarioError(f"{doc_at}: expected a Kubernetes object")
                manifests.append((_plain(doc, doc_at), doc_at))
        elif "configmap" in entry and "kind" not in entry:
            manifests.append((_configmap_from_files(entry["configmap"], path, at), at))
        else:
            manifests.append((_plain(entry, at), at))
    return manifests


def _configmap_from_files(spec: object, path: Path, at: str) -> dict:
    if not isinstance(spec, dict) or not spec.get("name"):
        raise ScenarioError(f"{at}.configmap: needs name (and namespace, labels, from_file, data)")
    data = {str(k): str(v) for k, v in (spec.get("data") or {}).items()}
    for key, relative in (spec.get("from_file") or {}).items():
        try:
            # Helm writes these keys with `|-`: the text without its final newline.
            data[str(key)] = (path.parent / str(relative)).read_text(encoding="utf-8").rstrip("\n")
        except OSError as err:
            problem = f"cannot read {relative}: {err.strerror}"
            raise ScenarioError(f"{at}.configmap.from_file.{key}: {problem}") from None
    metadata = {"name": spec["name"], "namespace": spec.get("namespace", "default")}
    if spec.get("labels"):
        metadata["labels"] = dict(spec["labels"])
    if spec.get("annotations"):
        metadata["annotations"] = dict(spec["annotations"])
    return _plain({"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data}, at)


def _parse_modify(value: object, path: Path, where: str, source: str) -> list[tuple[dict, str]]:
    out = []
    for index, entry in enumerate(_as_list(value, f"{source}: {where}")):
        at = f"{path}:{_line_of(entry, 1)}: {where}[{index}]"
        if not isinstance(entry, dict) or "ref" not in entry:
            raise ScenarioError(f"{at}: expected {{ref: Kind ns/name, merge: ..., merge_yaml: ...}}")
        unknown = sorted(set(entry) - {"ref", "merge", "merge_yaml"})
        if unknown:
            raise ScenarioError(f"{at}.{unknown[0]}: unknown key (expected ref, merge, merge_yaml)")
        if not entry.get("merge") and not entry.get("merge_yaml"):
            raise ScenarioError(f"{at}: nothing to change (give merge or merge_yaml)")
        for part in ("merge", "merge_yaml"):
            if part in entry and not isinstance(entry[part], dict):
                raise ScenarioError(f"{at}.{part}: expected a mapping")
        spec = {"ref": parse_ref(entry["ref"], f"{at}.ref"),
                "merge": _plain(entry.get("merge"), at), "merge_yaml": _plain(entry.get("merge_yaml"), at)}
        out.append((spec, at))
    return out


def _parse_scale(value: object, where: str, path: Path, source: str) -> list[tuple[dict, str]]:
    out = []
    for index, entry in enumerate(_as_list(value, f"{source}: {where}")):
        at = f"{path}:{_line_of(entry, 1)}: {where}[{index}]"
        if not isinstance(entry, dict) or "deployment" not in entry or "replicas" not in entry:
            raise ScenarioError(f"{at}: expected {{deployment: namespace/name, replicas: N}}")
        namespace, _, name = str(entry["deployment"]).rpartition("/")
        key = ObjectKey("apps", "Deployment", namespace or "default", name)
        out.append(({"ref": key, "replicas": entry["replicas"]}, at))
    return out


def parse_ref(text: object, at: str) -> ObjectKey:
    """``"VirtualService default/reviews"`` or ``"Namespace default"`` → an ObjectKey."""
    parts = str(text).split()
    if len(parts) != 2:
        raise ScenarioError(f"{at}: expected 'Kind namespace/name' or 'Kind name', got {text!r}")
    kind = kinds.resolve(parts[0])
    if kind is None:
        raise ScenarioError(f"{at}: unknown kind {parts[0]!r}")
    namespace, _, name = parts[1].rpartition("/")
    if kind.namespaced and not namespace:
        namespace = "default"
    if not kind.namespaced and namespace:
        raise ScenarioError(f"{at}: {kind.kind} is cluster-scoped; write '{kind.kind} {name}'")
    return ObjectKey(kind.group, kind.kind, namespace, name)


def play(scenario: Scenario) -> list[TraceEvent]:
    """Run the scenario's steps through a SimCluster; its recorded watch events."""
    cluster = SimCluster(node=scenario.node)
    for step in scenario.steps:
        cluster.advance(step.t)
        for op, (payload, at) in step.operations:
            try:
                if op == "apply":
                    cluster.apply(payload)
                elif op == "modify":
                    cluster.modify(payload["ref"], payload["merge"], payload["merge_yaml"])
                elif op == "scale":
                    cluster.scale(payload["ref"], payload["replicas"])
                elif op == "delete":
                    cluster.delete(payload)
            except SimClusterError as err:
                raise ScenarioError(f"{at}: {err}") from None
        cluster.settle()
    return cluster.events


def header(scenario: Scenario, source: str) -> dict:
    return {
        "trace": TRACE_FORMAT,
        "name": scenario.name,
        "description": scenario.description,
        "domain_suffix": scenario.domain_suffix,
        "epoch": EPOCH.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "source": source,
        "generator": "python -m mesh trace new",
    }


def build_text(scenario_path: str | Path) -> str:
    """The trace of a scenario as JSON Lines text, validated."""
    scenario = load_scenario(scenario_path)
    if scenario.is_fragment:
        raise ScenarioError(f"{scenario.path}: no name: this file is a fragment to include, not a scenario")
    source = _display_path(scenario.path)
    lines = [json.dumps(header(scenario, source), separators=(",", ":"))]
    lines += [dump_event(event) for event in play(scenario)]
    text = "\n".join(lines) + "\n"
    parse_trace(text, f"<built from {source}>")  # raises TraceError: the builder itself is wrong
    return text


def _display_path(path: Path) -> str:
    """``src/canary.yaml`` (relative to the traces folder) with no machine-specific prefix."""
    return f"src/{path.name}" if path.parent.name == "src" else path.name


def top_level_scenarios(source_dir: Path = SOURCE_DIR) -> list[Path]:
    """The scenarios in ``source_dir`` that name a trace (fragments are left out)."""
    found = []
    for path in sorted(source_dir.glob("*.yaml")):
        (doc,) = _read_yaml(path, str(path))
        if isinstance(doc, dict) and doc.get("name"):
            found.append(path)
    return found
