"""Traffic policy validation, for DestinationRules and their subsets: ``validateTrafficPolicy`` and
the settings it checks — outlier detection, connection pool, load balancer (with locality
distribute/failover), client TLS, port-level settings, tunnel
(https://github.com/istio/istio/blob/1.19.0/pkg/config/validation/validation.go#L1360-L1569 and
#L3623-L3752).
"""

from __future__ import annotations

import ipaddress

from mesh.config.validation.primitives import validate_duration, validate_fqdn, validate_port
from mesh.config.validation.report import Report

_POLICY_FIELDS = ("outlierDetection", "connectionPool", "loadBalancer", "tls")


def validate_traffic_policy(r: Report, path: str, policy: dict) -> None:
    """validateTrafficPolicy (validation.go#L1360-L1375)."""
    if all(policy.get(f) is None for f in (*_POLICY_FIELDS, "portLevelSettings", "tunnel")):
        r.error(path, "traffic policy must have at least one field")
        return
    _settings(r, path, policy)
    for i, pls in enumerate(r.list(f"{path}.portLevelSettings", policy.get("portLevelSettings"))):
        here = f"{path}.portLevelSettings[{i}]"
        if pls is None:
            r.error(here, "traffic policy may not be null")
            continue
        pls = r.dict(here, pls)
        if pls.get("port") is None:
            r.error(f"{here}.port", "portTrafficPolicy must have valid port")
        if all(pls.get(f) is None for f in _POLICY_FIELDS):
            r.error(here, "port traffic policy must have at least one field")
        else:
            _settings(r, here, pls)
    if policy.get("tunnel") is not None:
        _tunnel(r, f"{path}.tunnel", r.dict(f"{path}.tunnel", policy["tunnel"]))


def _settings(r: Report, path: str, policy: dict) -> None:
    """The four settings a port-level policy shares with the whole policy."""
    outlier = policy.get("outlierDetection")
    if outlier is not None:
        _outlier_detection(r, f"{path}.outlierDetection", r.dict(f"{path}.outlierDetection", outlier))
    if policy.get("connectionPool") is not None:
        _connection_pool(r, f"{path}.connectionPool", r.dict(f"{path}.connectionPool", policy["connectionPool"]))
    if policy.get("loadBalancer") is not None:
        _load_balancer(r, f"{path}.loadBalancer", r.dict(f"{path}.loadBalancer", policy["loadBalancer"]),
                       outlier is not None)
    if policy.get("tls") is not None:
        _client_tls(r, f"{path}.tls", r.dict(f"{path}.tls", policy["tls"]))


def _duration(r: Report, path: str, value) -> None:
    nanos = r.duration(path, value)
    if nanos is not None:
        r.error(path, validate_duration(nanos))


def _outlier_detection(r: Report, path: str, outlier: dict) -> None:
    """validateOutlierDetection (validation.go#L1395-L1419)."""
    if outlier.get("baseEjectionTime") is not None:
        _duration(r, f"{path}.baseEjectionTime", outlier["baseEjectionTime"])
    if outlier.get("consecutiveErrors"):
        r.warn(f"{path}.consecutiveErrors", "outlier detection consecutive errors is deprecated, use "
                                            "consecutiveGatewayErrors or consecutive5xxErrors instead")
    local_failures = r.int(f"{path}.consecutiveLocalOriginFailures", outlier.get("consecutiveLocalOriginFailures"))
    if not outlier.get("splitExternalLocalOriginErrors") and local_failures > 0:
        r.error(f"{path}.consecutiveLocalOriginFailures", "outlier detection consecutive local origin failures is "
                "specified, but split external local origin errors is set to false")
    if outlier.get("interval") is not None:
        _duration(r, f"{path}.interval", outlier["interval"])
    for key in ("maxEjectionPercent", "minHealthPercent"):
        value = r.int(f"{path}.{key}", outlier.get(key))
        if value < 0 or value > 100:
            r.error(f"{path}.{key}", f"percentage {value} is not in range 0..100")


_HTTP_COUNTS = (("http1MaxPendingRequests", "http1 max pending requests"), ("http2MaxRequests", "http2 max requests"),
                ("maxRequestsPerConnection", "max requests per connection"), ("maxRetries", "max retries"))


def _connection_pool(r: Report, path: str, pool: dict) -> None:
    """validateConnectionPool (validation.go#L1421-L1463)."""
    if pool.get("http") is None and pool.get("tcp") is None:
        r.error(path, "connection pool must have at least one field")
        return
    if pool.get("http") is not None:
        http = r.dict(f"{path}.http", pool["http"])
        for key, what in _HTTP_COUNTS:
            if r.int(f"{path}.http.{key}", http.get(key)) < 0:
                r.error(f"{path}.http.{key}", f"{what} must be non-negative")
        if http.get("idleTimeout") is not None:
            _duration(r, f"{path}.http.idleTimeout", http["idleTimeout"])
        if http.get("h2UpgradePolicy") == "UPGRADE" and http.get("useClientProtocol"):
            r.error(f"{path}.http.useClientProtocol", "use client protocol must not be true when H2UpgradePolicy is "
                                                      "UPGRADE")
    if pool.get("tcp") is not None:
        tcp = r.dict(f"{path}.tcp", pool["tcp"])
        if r.int(f"{path}.tcp.maxConnections", tcp.get("maxConnections")) < 0:
            r.error(f"{path}.tcp.maxConnections", "max connections must be non-negative")
        for key in ("connectTimeout", "maxConnectionDuration"):
            if tcp.get(key) is not None:
                _duration(r, f"{path}.tcp.{key}", tcp[key])


def _load_balancer(r: Report, path: str, lb: dict, has_outlier: bool) -> None:
    """validateLoadBalancer (validation.go#L1465-L1495): simple is always valid."""
    if lb.get("consistentHash") is not None:
        hashing = r.dict(f"{path}.consistentHash", lb["consistentHash"])
        cookie = hashing.get("httpCookie")
        if cookie is not None:
            cookie = r.dict(f"{path}.consistentHash.httpCookie", cookie)
            if not cookie.get("name"):
                r.error(f"{path}.consistentHash.httpCookie.name", "name required for HttpCookie")
            if cookie.get("ttl") is None:
                r.error(f"{path}.consistentHash.httpCookie.ttl", "ttl required for HttpCookie")
            else:
                r.duration(f"{path}.consistentHash.httpCookie.ttl", cookie["ttl"])
        if hashing.get("minimumRingSize"):
            r.warn(f"{path}.consistentHash.minimumRingSize", "consistent hash MinimumRingSize is deprecated, use "
                                                             "ConsistentHashLB's RingHash configuration instead")
            if hashing.get("ringHash") is not None or hashing.get("maglev") is not None:
                r.error(f"{path}.consistentHash", "only one of MinimumRingSize or Maglev/Ringhash can be specified")
    if lb.get("localityLbSetting") is not None:
        validate_locality_lb_setting(r, f"{path}.localityLbSetting", r.dict(f"{path}.localityLbSetting",
                                                                           lb["localityLbSetting"]), has_outlier)


def validate_locality_lb_setting(r: Report, path: str, lb: dict, has_outlier: bool) -> None:
    """validateLocalityLbSetting (validation.go#L3623-L3672): distribute weights add up to 100 per
    source, localities do not overlap, failover names different plain regions; failover without
    outlier detection only warns (it cannot happen)."""
    distribute = r.list(f"{path}.distribute", lb.get("distribute"))
    failover = r.list(f"{path}.failover", lb.get("failover"))
    if distribute and failover:
        r.error(path, "can not simultaneously specify 'distribute' and 'failover'")
        return
    sources = []
    for i, rule in enumerate(distribute):
        rule = r.dict(f"{path}.distribute[{i}]", rule)
        sources.append(str(rule.get("from", "")))
        to = r.dict(f"{path}.distribute[{i}].to", rule.get("to"))
        if any(not isinstance(w, int) or w <= 0 or w > 100 for w in to.values()):
            r.error(f"{path}.distribute[{i}].to", "locality weight must be in range [1, 100]")
            return
        if sum(to.values()) != 100:
            r.error(f"{path}.distribute[{i}].to", f"total locality weight {sum(to.values())} != 100")
            return
        r.error(f"{path}.distribute[{i}].to", localities_error(list(to)))
    r.error(f"{path}.distribute", localities_error(sources))
    if (failover or lb.get("failoverPriority")) and not has_outlier:
        r.warn(path, "outlier detection policy must be provided for failover")
    for i, rule in enumerate(failover):
        rule = r.dict(f"{path}.failover[{i}]", rule)
        src, dst = str(rule.get("from", "")), str(rule.get("to", ""))
        if src == dst:
            r.error(f"{path}.failover[{i}]", "locality lb failover settings must specify different regions")
        if "/" in src or "/" in dst:
            r.error(f"{path}.failover[{i}]", "locality lb failover only specify region")
        if "*" in src or "*" in dst:
            r.error(f"{path}.failover[{i}]", "locality lb failover region should not contain '*' wildcard")


def localities_error(localities: list[str]) -> str | None:
    """validateLocalities (validation.go#L3674-L3734): ``region[/zone[/subzone]]``, one trailing
    ``*`` at most, no locality covering one named before it."""
    seen: dict[str, dict[str, set[str]]] = {}  # region → zone → subzones; "*" means all
    for locality in localities:
        stars = locality.count("*")
        if stars and (stars > 1 or not locality.endswith("*")):
            return f"locality {locality} wildcard '*' number can not exceed 1 and must be in the end"
        if "*" in seen:
            return f"locality {locality} overlap with previous specified ones"
        parts = locality.split("/", 2)
        if any(p == "" for p in parts):
            return f"locality {locality} must not contain empty region/zone/subzone info"
        overlap = f"locality {locality} overlap with previous specified ones"
        region = parts[0]
        zones = seen.get(region)
        if len(parts) == 1:
            if zones is not None:
                return overlap
            seen[region] = {"*": {"*"}}
        elif len(parts) == 2:
            if zones is not None and ("*" in zones or parts[1] in zones):
                return overlap
            seen.setdefault(region, {})[parts[1]] = {"*"}
        else:
            if zones is not None and "*" in zones:
                return overlap
            subzones = (zones or {}).get(parts[1])
            if subzones is not None and ("*" in subzones or parts[2] in subzones):
                return overlap
            seen.setdefault(region, {}).setdefault(parts[1], set()).add(parts[2])
    return None


def _client_tls(r: Report, path: str, tls: dict) -> None:
    """validateTLS (validation.go#L1497-L1541), ClientTLSSettings."""
    mode = tls.get("mode", "DISABLE")
    if tls.get("insecureSkipVerify") is True:  # a BoolValue: JSON writes it bare
        if mode == "SIMPLE" and (tls.get("caCertificates") or tls.get("credentialName")
                                 or tls.get("subjectAltNames") is not None):
            r.error(path, "cannot specify CaCertificates or CredentialName or SubjectAltNames when "
                          "InsecureSkipVerify is set true")
        if mode == "MUTUAL" and (tls.get("caCertificates") or tls.get("subjectAltNames") is not None):
            r.error(path, "cannot specify CaCertificates or SubjectAltNames when InsecureSkipVerify is set true")
    if mode in ("SIMPLE", "MUTUAL") and tls.get("credentialName"):
        if tls.get("clientCertificate") or tls.get("caCertificates") or tls.get("privateKey"):
            r.error(path, "cannot specify client certificates or CA certificate If credentialName is set")
    elif mode == "MUTUAL":
        if not tls.get("clientCertificate"):
            r.error(f"{path}.clientCertificate", "client certificate required for mutual tls")
        if not tls.get("privateKey"):
            r.error(f"{path}.privateKey", "private key required for mutual tls")


def _tunnel(r: Report, path: str, tunnel: dict) -> None:
    """validateTunnelSettings (validation.go#L1377-L1393)."""
    protocol = r.str(f"{path}.protocol", tunnel.get("protocol"))
    if protocol not in ("", "CONNECT", "POST"):
        r.error(f"{path}.protocol", 'tunnel protocol must be "CONNECT" or "POST"')
    host = r.str(f"{path}.targetHost", tunnel.get("targetHost"))
    fqdn_err = validate_fqdn(host)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if fqdn_err:
            r.error(f"{path}.targetHost", f"tunnel target host must be valid FQDN or IP address: {fqdn_err}; "
                                          f"{host} is not a valid IP")
    port_err = validate_port(r.int(f"{path}.targetPort", tunnel.get("targetPort")))
    if port_err:
        r.error(f"{path}.targetPort", f"tunnel target port is invalid: {port_err}")
