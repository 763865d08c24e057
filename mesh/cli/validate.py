"""``python -m mesh validate -f FILE``: check Istio config the way istiod's webhook would, like
``istioctl validate``.

Each Istio object (networking.istio.io, security.istio.io, ...) in the file is checked with
:mod:`mesh.config.validation`, which follows
https://github.com/istio/istio/blob/1.19.0/pkg/config/validation/validation.go. Objects of other
API groups are skipped, except that an IstioOperator gets the operator's checks
(:func:`mesh.install.iop.validate`, as istioctl runs ``CheckIstioOperator``), an Istio object with
an unknown top-level field is refused (``unknown field "x"``), and Services outside istio-system —
also the items of a ``v1 List`` — get istioctl's own port-naming check (``validateServicePortPrefix``,
https://github.com/istio/istio/blob/1.19.0/istioctl/pkg/validate/validate.go#L169-L204), and an
object without a namespace is checked as if in ``default`` (#L97-L105). Output: one line per problem,
``FILE: document N (line L) Kind ns/name: field: message``, and exit status 1 if any error was
found; warnings are printed but do not fail. A file that cannot be read as Kubernetes objects
is a usage error (exit 2) and nothing else is printed.
"""

from __future__ import annotations

import json

from mesh.cli._documents import load_documents
from mesh.config import protocol, validation
from mesh.install import iop


def register(subparsers) -> None:
    p = subparsers.add_parser("validate", help="validate Istio config files (like istioctl validate)")
    p.add_argument("-f", "--filename", required=True, action="append",
                   help="multi-document YAML file to check ('-' for stdin); may be repeated")
    p.set_defaults(func=run)


def _is_istio(obj: dict) -> bool:
    group = obj["apiVersion"].rpartition("/")[0]
    return group.endswith(".istio.io")


DEPLOYMENT_REQUIREMENTS = "https://istio.io/v1.19/docs/ops/deployment/requirements/"
PROTOCOL_SELECTION = "https://istio.io/v1.19/docs/ops/configuration/traffic-management/protocol-selection/"


def service_port_problems(svc: dict) -> list[validation.Problem]:
    """istioctl's Service check: each TCP port needs a protocol-prefixed name or a known appProtocol."""
    meta = svc.get("metadata") or {}
    if meta.get("namespace") == "istio-system":
        return []
    who = json.dumps(f"{meta.get('name')}/{meta.get('namespace', '')}/:")
    out = []
    for i, port in enumerate((svc.get("spec") or {}).get("ports") or []):
        if not isinstance(port, dict) or str(port.get("protocol", "")).upper() == "UDP":
            continue
        if port.get("appProtocol") is not None:
            if protocol.parse(str(port["appProtocol"])).is_unsupported():
                out.append(validation.Problem(f"spec.ports[{i}].appProtocol", f"service {who} doesn't follow Istio "
                                              f"protocol selection. This is not recommended, See {PROTOCOL_SELECTION}"))
        elif port.get("name") is None:
            out.append(validation.Problem(f"spec.ports[{i}]", f"service {who} has an unnamed port. This is not "
                                          f"recommended, See {DEPLOYMENT_REQUIREMENTS}"))
        elif protocol.parse(str(port["name"]).split("-", 1)[0]).is_unsupported():
            out.append(validation.Problem(f"spec.ports[{i}].name", f"service {who} port {json.dumps(str(port['name']))} does "
                                          f"not follow the Istio naming convention. See {DEPLOYMENT_REQUIREMENTS}"))
    return out


def _is_service(obj: dict) -> bool:
    return obj["apiVersion"] == "v1" and obj["kind"] == "Service"


# The top-level fields istioctl accepts on an Istio object (validFields and checkFields,
# https://github.com/istio/istio/blob/1.19.0/istioctl/pkg/validate/validate.go#L56-L79).
VALID_FIELDS = ("apiVersion", "kind", "metadata", "spec", "status")


def _unknown_fields(obj: dict) -> list[validation.Problem]:
    return [validation.Problem(key, f"unknown field {json.dumps(key)}") for key in obj if key not in VALID_FIELDS]


def _is_operator(obj: dict) -> bool:
    return obj["apiVersion"] == "install.istio.io/v1alpha1" and obj["kind"] == "IstioOperator"


def _problems(obj: dict) -> list[validation.Problem]:
    """validateResource (validate.go#L81-L167): Istio config by its kind's validator, an
    IstioOperator by the operator's checks, Services (also inside a v1 List) by their port names."""
    if _is_operator(obj):
        return _unknown_fields(obj) or [validation.Problem(p.partition(":")[0], p.partition(": ")[2] or p)
                                        for p in iop.validate(obj)]
    if obj["kind"] == "List" and isinstance(obj.get("items"), list):
        return [p for item in obj["items"] if isinstance(item, dict) and item.get("kind") == "Service"
                for p in service_port_problems(item)]
    if not _is_istio(obj):
        return service_port_problems(obj) if _is_service(obj) else []
    if not (obj.get("metadata") or {}).get("namespace"):
        obj = {**obj, "metadata": {**obj["metadata"], "namespace": "default"}}
    try:
        problems = validation.validate(obj)
    except validation.UnknownKind as err:
        return [validation.Problem("apiVersion/kind", str(err))]
    if any(p.stage == "decode" for p in problems):
        return problems  # istioctl stops at "cannot parse proto message"
    return _unknown_fields(obj) or problems


def run(args) -> int:
    files = [(path, load_documents(path)) for path in args.filename]  # read all before printing anything
    lines: list[str] = []
    errors = checked = skipped = 0
    for path, docs in files:
        for doc in docs:
            istio = _is_istio(doc.obj)
            checked += istio
            problems = _problems(doc.obj)
            skipped += not istio and not _is_service(doc.obj)
            where = f"{path}: document {doc.index} (line {doc.line}) {doc.label}"
            for p in problems:
                severity = "warning: " if p.severity == "warning" else ""
                lines.append(f"{where}: {p.path}: {severity}{p.message}")
                errors += p.is_error
    for line in lines:
        print(line)
    if errors:
        return 1
    services = sum(_is_service(d.obj) for _, docs in files for d in docs)
    notes = [f"{services} Service(s) checked"] if services else []
    notes += [f"{skipped} other object(s) skipped"] if skipped else []
    note = f" ({', '.join(notes)})" if notes else ""
    print(f"OK: {checked} Istio object(s) valid{note}")
    return 0
