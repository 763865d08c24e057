"""Validation of Istio config objects, giving the verdicts istiod 1.19 gives.

istiod validates every object of the fourteen Istio kinds (networking, security, telemetry and
extensions.istio.io) twice: once when the validating webhook sees it (``mesh.webhooks.validation``)
and again when its config store reads it. Both call the per-kind functions of
https://github.com/istio/istio/blob/1.19.0/pkg/config/validation/validation.go and
https://github.com/istio/istio/blob/1.19.0/pkg/config/validation/virtualservice.go.

Before validating, istiod *decodes* the spec into the protobuf type
(https://github.com/istio/istio/blob/1.19.0/pilot/pkg/config/kube/crd/conversion.go#L93-L124).
Decoding is where a malformed duration fails: durations are read with Go's
``time.ParseDuration``, so ``"1m"`` and ``"500ms"`` are fine and ``"5 seconds"`` is
``bad Duration: time: ...``. Such problems are reported with ``stage="decode"``.

Which group/versions exist is the CRDs' business: :func:`served` asks :mod:`mesh.kube.kinds`, which
lists what 1.19's ``crd-all.gen.yaml`` serves per kind (security.istio.io/v1 for
AuthorizationPolicy and RequestAuthentication; no networking.istio.io/v1). Before any kind's
validator runs, the ``istio.io/dry-run`` annotation is checked, as ``registerValidateFunc`` wraps
every validator in ``validateAnnotationDryRun``.

Each problem names the field it is about (``spec.http[0].route[1].weight``), carries istiod's
message text, and is an error or a warning (warnings do not reject the object).

Some facts worth knowing because they surprise people:

- a VirtualService without ``hosts`` is valid: it is a *delegate* VirtualService and only then
  must not name gateways or carry tls/tcp routes (validation.go#L2266-L2288);
- weights are relative: there is no "must sum to 100" rule, only "no weight < 0" and, with
  more than one destination, "total destination weight = 0" (validation.go#L2881-L2926);
- a subset name must be a DNS-1123 *label* (upper case allowed, dots not) (validation.go#L3092-L3100);
- ``*`` alone is not a valid VirtualService host when the VirtualService applies to sidecars
  (the ``mesh`` gateway) (validation.go#L2321-L2332), and partial wildcards like ``*foo.com``
  are rejected for Gateway and Sidecar hosts (validation.go#L4049-L4054).

The package follows the kinds: :mod:`.report` (Problem and the collecting Report),
:mod:`.primitives` (checks all kinds share: names, addresses, ports, labels, RE2 regexes, exportTo,
selectors), :mod:`.headers`, then one module per kind or part of one — :mod:`.virtualservice` (with
:mod:`.destination`, :mod:`.tlsroute` and :mod:`.unreachable`), :mod:`.gateway`,
:mod:`.destinationrule` (with :mod:`.trafficpolicy`), :mod:`.serviceentry`, :mod:`.sidecar`,
:mod:`.workloadentry`, :mod:`.envoyfilter`, :mod:`.security` and :mod:`.extensions` (ProxyConfig,
Telemetry, WasmPlugin). This module holds the table from (group, kind) to validator and the entry
points.

Simplifications (named, as xv6 does): proto decoding only checks the types of the fields
validated here; each module names its own.
"""

from __future__ import annotations

from mesh.config.validation.destinationrule import validate_destination_rule
from mesh.config.validation.envoyfilter import validate_envoy_filter
from mesh.config.validation.extensions import validate_proxy_config, validate_telemetry, validate_wasm_plugin
from mesh.config.validation.gateway import validate_gateway
from mesh.config.validation.primitives import parse_protocol
from mesh.config.validation.report import Problem, Report, quote
from mesh.config.validation.security import (
    validate_authorization_policy,
    validate_peer_authentication,
    validate_request_authentication,
)
from mesh.config.validation.serviceentry import validate_service_entry
from mesh.config.validation.sidecar import validate_sidecar
from mesh.config.validation.virtualservice import validate_virtual_service
from mesh.config.validation.workloadentry import validate_workload_entry, validate_workload_group
from mesh.kube import kinds

__all__ = ["Problem", "UnknownKind", "errors", "is_known", "istiod_message", "parse_protocol", "validate"]


# One row per kind 1.19 validates (validation.go's registerValidateFunc calls): (group, kind) → the
# function that walks its spec. Which versions of each are served comes from mesh.kube.kinds.
VALIDATORS = {
    ("networking.istio.io", "VirtualService"): validate_virtual_service,
    ("networking.istio.io", "DestinationRule"): validate_destination_rule,
    ("networking.istio.io", "Gateway"): validate_gateway,
    ("networking.istio.io", "ServiceEntry"): validate_service_entry,
    ("networking.istio.io", "Sidecar"): validate_sidecar,
    ("networking.istio.io", "WorkloadEntry"): validate_workload_entry,
    ("networking.istio.io", "WorkloadGroup"): validate_workload_group,
    ("networking.istio.io", "EnvoyFilter"): validate_envoy_filter,
    ("networking.istio.io", "ProxyConfig"): validate_proxy_config,
    ("security.istio.io", "PeerAuthentication"): validate_peer_authentication,
    ("security.istio.io", "AuthorizationPolicy"): validate_authorization_policy,
    ("security.istio.io", "RequestAuthentication"): validate_request_authentication,
    ("telemetry.istio.io", "Telemetry"): validate_telemetry,
    ("extensions.istio.io", "WasmPlugin"): validate_wasm_plugin,
}
DRY_RUN = "istio.io/dry-run"
_GO_BOOLS = ("1", "t", "T", "TRUE", "true", "True", "0", "f", "F", "FALSE", "false", "False")


class UnknownKind(ValueError):
    """istiod has no schema for this group/version/kind: the webhook says "unrecognized type"."""


def served(group: str, kind: str, version: str) -> bool:
    """Whether 1.19 validates this kind and its CRD serves this version."""
    known = kinds.lookup(group, kind)
    return (group, kind) in VALIDATORS and known is not None and version in known.served_versions


def is_known(obj: dict) -> bool:
    group, _, version = (obj.get("apiVersion") or "").rpartition("/")
    return served(group, obj.get("kind") or "", version)


def _dry_run_annotation(r: Report, kind: str, spec: dict, name: str, namespace: str, annotations: dict) -> bool:
    """checkDryRunAnnotation (validation.go#L219-L248), run before every kind's validator: only an
    ALLOW or DENY AuthorizationPolicy may carry ``istio.io/dry-run``, with a Go bool. False stops."""
    if DRY_RUN not in annotations:
        return True
    value = annotations[DRY_RUN]
    if kind != "AuthorizationPolicy":
        r.error(f"metadata.annotations.{DRY_RUN}", f"{namespace}/{name} has unsupported annotation {DRY_RUN}, "
                                                   "please remove the annotation")
        return False
    action = spec.get("action", "ALLOW")
    if action not in ("ALLOW", "DENY"):
        r.error(f"metadata.annotations.{DRY_RUN}", f"the annotation {DRY_RUN} currently only supports action "
                                                   f"ALLOW/DENY, found action {action} in {namespace}/{name}")
        return False
    if value not in _GO_BOOLS:
        r.error(f"metadata.annotations.{DRY_RUN}", f"{namespace}/{name} has annotation {DRY_RUN} with invalid value "
                f"({value}): strconv.ParseBool: parsing {quote(str(value))}: invalid syntax")
        return False
    return True


def validate(obj: dict) -> list[Problem]:
    """Validate one Istio object (a dict as kubectl would send it); errors and warnings, in order.

    Raises :class:`UnknownKind` for an object istiod would not recognise.
    """
    group, _, version = (obj.get("apiVersion") or "").rpartition("/")
    kind = obj.get("kind") or ""
    if not is_known(obj):
        raise UnknownKind(f"unrecognized type {group}/{version}, Kind={kind}")
    r = Report()
    meta = r.dict("metadata", obj.get("metadata"))
    spec = r.dict("spec", obj.get("spec"))
    name, namespace, annotations = meta.get("name") or "", meta.get("namespace") or "", meta.get("annotations") or {}
    if _dry_run_annotation(r, kind, spec, name, namespace, annotations):
        VALIDATORS[(group, kind)](r, spec, name, namespace, annotations)
    return r.problems


def errors(problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if p.is_error]


def _multierror(messages: list[str]) -> str:
    """hashicorp/go-multierror's text: one error stays as it is, several become a bullet list."""
    if len(messages) == 1:
        return messages[0]
    bullets = "\n\t* ".join(messages)
    return f"{len(messages)} errors occurred:\n\t* {bullets}\n\n"


def istiod_message(obj: dict, problems: list[Problem]) -> str | None:
    """The message istiod's webhook puts in a denied AdmissionResponse, or None if it allows the object."""
    decode = [p.message for p in problems if p.stage == "decode"]
    if decode:
        return f"error decoding configuration: {decode[0]}"
    errs = [p.message for p in errors(problems)]
    if not errs:
        return None
    if obj.get("kind") == "AuthorizationPolicy":
        meta = obj.get("metadata") or {}
        prefix = f"invalid policy {meta.get('name')}.{meta.get('namespace')}:"
        errs = [f"{prefix} {m}" for m in errs]
    return f"configuration is invalid: {_multierror(errs)}"
