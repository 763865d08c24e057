"""DestinationRule validation: ``ValidateDestinationRule`` and the traffic policy checks
(https://github.com/istio/istio/blob/1.19.0/pkg/config/validation/validation.go#L661-L708 and #L1360-L1569).
"""

from __future__ import annotations

from mesh.config.validation.primitives import (
    check_duration,
    validate_export_to,
    validate_labels,
    validate_subset_name,
    validate_wildcard_domain,
    validate_workload_selector,
)
from mesh.config.validation.report import Report


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


_POLICY_FIELDS = ("outlierDetection", "connectionPool", "loadBalancer", "tls", "portLevelSettings", "tunnel")


def validate_traffic_policy(r: Report, path: str, policy: dict, port_level: bool = False) -> None:
    """validateTrafficPolicy (validation.go#L1360-L1375) and the settings it checks."""
    fields = _POLICY_FIELDS[:4] if port_level else _POLICY_FIELDS
    if all(policy.get(f) is None for f in fields):
        r.error(path, "port traffic policy must have at least one field" if port_level
                else "traffic policy must have at least one field")
        return
    outlier = policy.get("outlierDetection")
    if outlier is not None:
        outlier = r.dict(f"{path}.outlierDetection", outlier)
        for key in ("baseEjectionTime", "interval"):
            if outlier.get(key) is not None:
                check_duration(r, f"{path}.outlierDetection.{key}", outlier[key])
        if outlier.get("consecutiveErrors"):
            r.warn(f"{path}.outlierDetection.consecutiveErrors", "outlier detection consecutive errors is "
                   "deprecated, use consecutiveGatewayErrors or consecutive5xxErrors instead")
        for key in ("maxEjectionPercent", "minHealthPercent"):
            value = r.int(f"{path}.outlierDetection.{key}", outlier.get(key))
            if value < 0 or value > 100:
                r.error(f"{path}.outlierDetection.{key}", f"percentage {value} is not in range 0..100")
    pool = policy.get("connectionPool")
    if pool is not None:
        pool = r.dict(f"{path}.connectionPool", pool)
        if pool.get("http") is None and pool.get("tcp") is None:
            r.error(f"{path}.connectionPool", "connection pool must have at least one field")
        http = r.dict(f"{path}.connectionPool.http", pool.get("http"))
        for key, what in (("http1MaxPendingRequests", "http1 max pending requests"),
                          ("http2MaxRequests", "http2 max requests"),
                          ("maxRequestsPerConnection", "max requests per connection"),
                          ("maxRetries", "max retries")):
            if r.int(f"{path}.connectionPool.http.{key}", http.get(key)) < 0:
                r.error(f"{path}.connectionPool.http.{key}", f"{what} must be non-negative")
        if http.get("idleTimeout") is not None:
            check_duration(r, f"{path}.connectionPool.http.idleTimeout", http["idleTimeout"])
        tcp = r.dict(f"{path}.connectionPool.tcp", pool.get("tcp"))
        if r.int(f"{path}.connectionPool.tcp.maxConnections", tcp.get("maxConnections")) < 0:
            r.error(f"{path}.connectionPool.tcp.maxConnections", "max connections must be non-negative")
        for key in ("connectTimeout", "maxConnectionDuration"):
            if tcp.get(key) is not None:
                check_duration(r, f"{path}.connectionPool.tcp.{key}", tcp[key])
    lb = policy.get("loadBalancer")
    if lb is not None:
        consistent = r.dict(f"{path}.loadBalancer.consistentHash", r.dict(f"{path}.loadBalancer", lb).get("consistentHash"))
        cookie = consistent.get("httpCookie")
        if cookie is not None:
            cookie = r.dict(f"{path}.loadBalancer.consistentHash.httpCookie", cookie)
            if not cookie.get("name"):
                r.error(f"{path}.loadBalancer.consistentHash.httpCookie.name", "name required for HttpCookie")
            if cookie.get("ttl") is None:
                r.error(f"{path}.loadBalancer.consistentHash.httpCookie.ttl", "ttl required for HttpCookie")
            else:
                r.duration(f"{path}.loadBalancer.consistentHash.httpCookie.ttl", cookie["ttl"])
    tls = policy.get("tls")
    if tls is not None:
        tls = r.dict(f"{path}.tls", tls)
        mode = tls.get("mode", "DISABLE")
        if tls.get("insecureSkipVerify") is True:  # a BoolValue: JSON writes it bare
            if mode == "SIMPLE" and (tls.get("caCertificates") or tls.get("credentialName")
                                     or tls.get("subjectAltNames") is not None):
                r.error(f"{path}.tls", "cannot specify CaCertificates or CredentialName or SubjectAltNames when "
                                       "InsecureSkipVerify is set true")
            if mode == "MUTUAL" and (tls.get("caCertificates") or tls.get("subjectAltNames") is not None):
                r.error(f"{path}.tls", "cannot specify CaCertificates or SubjectAltNames when InsecureSkipVerify is "
                                       "set true")
        if mode in ("SIMPLE", "MUTUAL") and tls.get("credentialName"):
            if tls.get("clientCertificate") or tls.get("caCertificates") or tls.get("privateKey"):
                r.error(f"{path}.tls", "cannot specify client certificates or CA certificate If credentialName is set")
        elif mode == "MUTUAL":
            if not tls.get("clientCertificate"):
                r.error(f"{path}.tls.clientCertificate", "client certificate required for mutual tls")
            if not tls.get("privateKey"):
                r.error(f"{path}.tls.privateKey", "private key required for mutual tls")
    if not port_level:
        for i, pls in enumerate(r.list(f"{path}.portLevelSettings", policy.get("portLevelSettings"))):
            here = f"{path}.portLevelSettings[{i}]"
            if pls is None:
                r.error(here, "traffic policy may not be null")
                continue
            pls = r.dict(here, pls)
            if pls.get("port") is None:
                r.error(f"{here}.port", "portTrafficPolicy must have valid port")
            validate_traffic_policy(r, here, pls, port_level=True)

