"""DestinationRule validation: ``ValidateDestinationRule``
(https://github.com/istio/istio/blob/1.19.0/pkg/config/validation/validation.go#L661-L708); the
traffic policy it and its subsets carry is checked by :mod:`.trafficpolicy`.
"""

from __future__ import annotations

from mesh.config.validation.primitives import (
    validate_export_to,
    validate_labels,
    validate_subset_name,
    validate_wildcard_domain,
    validate_workload_selector,
)
from mesh.config.validation.report import Report
from mesh.config.validation.trafficpolicy import validate_traffic_policy


def validate_destination_rule(r: Report, spec: dict, name: str, namespace: str, annotations: dict) -> None:
    """ValidateDestinationRule (validation.go#L661-L708), with PILOT_ENABLE_DESTINATION_RULE_INHERITANCE
    at its 1.19 default (false), so ``host`` is always required."""
    r.error("spec.host", validate_wildcard_domain(r.str("spec.host", spec.get("host"))))
    if spec.get("trafficPolicy") is not None:
        validate_traffic_policy(r, "spec.trafficPolicy", r.dict("spec.trafficPolicy", spec["trafficPolicy"]))
    for i, subset in enumerate(r.list("spec.subsets", spec.get("subsets"))):
        path = f"spec.subsets[{i}]"
        if subset is None:
            r.error(path, "subset may not be null")
            continue
        subset = r.dict(path, subset)
        r.error(f"{path}.name", validate_subset_name(r.str(f"{path}.name", subset.get("name"))))
        validate_labels(r, f"{path}.labels", r.dict(f"{path}.labels", subset.get("labels")))
        if subset.get("trafficPolicy") is not None:
            validate_traffic_policy(r, f"{path}.trafficPolicy", r.dict(f"{path}.trafficPolicy", subset["trafficPolicy"]))
    selector = spec.get("workloadSelector")
    validate_export_to(r, "spec.exportTo", namespace, r.list("spec.exportTo", spec.get("exportTo")),
                       dr_with_selector=selector is not None)
    validate_workload_selector(r, "spec.workloadSelector", selector)
