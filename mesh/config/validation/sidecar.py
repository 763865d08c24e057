"""Sidecar validation: ``ValidateSidecar`` and its listener helpers
(https://github.com/istio/istio/blob/1.19.0/pkg/config/validation/validation.go#L1112-L1358)."""

from __future__ import annotations

import ipaddress

from mesh.config.validation.destination import validate_destination
from mesh.config.validation.gateway import namespace_slash_host_errors, validate_server_tls
from mesh.config.validation.primitives import (
    UNIX_PREFIX,
    alpha_selector_ok,
    parse_protocol,
    unix_address_error,
    validate_fqdn,
    validate_port,
    validate_port_name,
    validate_protocol,
)
from mesh.config.validation.report import Report

_DEFAULT_ENDPOINT_HOSTS = ("", "127.0.0.1", "0.0.0.0", "::1", "::")


def validate_sidecar(r: Report, spec: dict, name: str, namespace: str, annotations: dict) -> None:
    """ValidateSidecar (validation.go#L1112-L1283)."""
    if not alpha_selector_ok(r, spec.get("workloadSelector"), "sidecar"):
        return
    ingress = r.list("spec.ingress", spec.get("ingress"))
    egress = r.list("spec.egress", spec.get("egress"))
    if not ingress and not egress and spec.get("outboundTrafficPolicy") is None:
        r.error("spec", "sidecar: empty configuration provided")
        return
    seen_ports: set[int] = set()
    for i, listener in enumerate(ingress):
        _ingress(r, f"spec.ingress[{i}]", listener, seen_ports)
    _egress(r, egress, namespace)
    policy = spec.get("outboundTrafficPolicy")
    if policy is not None:
        _outbound_traffic_policy(r, "spec.outboundTrafficPolicy", r.dict("spec.outboundTrafficPolicy", policy))


def _ingress(r: Report, path: str, listener, seen_ports: set[int]) -> None:
    if listener is None:
        return r.error(path, "sidecar: ingress may not be null")
    listener = r.dict(path, listener)
    if listener.get("port") is None:
        return r.error(f"{path}.port", "sidecar: port is required for ingress listeners")
    port = r.dict(f"{path}.port", listener["port"])
    _port(r, f"{path}.port", port)
    r.error(f"{path}.bind", _bind_error(r.str(f"{path}.bind", listener.get("bind"))))
    number = port.get("number", 0)
    if number in seen_ports:
        r.error(f"{path}.port", "sidecar: ports on IP bound listeners must be unique")
    seen_ports.add(number)
    endpoint = r.str(f"{path}.defaultEndpoint", listener.get("defaultEndpoint"))
    if endpoint:
        _default_endpoint(r, f"{path}.defaultEndpoint", endpoint)
    if listener.get("tls") is not None:
        tls = r.dict(f"{path}.tls", listener["tls"])
        if tls.get("subjectAltNames"):
            r.error(f"{path}.tls.subjectAltNames", "sidecar: subjectAltNames is not supported in ingress tls")
        if tls.get("httpsRedirect"):
            r.error(f"{path}.tls.httpsRedirect", "sidecar: httpsRedirect is not supported")
        if tls.get("credentialName"):
            r.error(f"{path}.tls.credentialName", "sidecar: credentialName is not currently supported")
        if tls.get("mode") in ("ISTIO_MUTUAL", "AUTO_PASSTHROUGH"):
            r.error(f"{path}.tls.mode", f"configuration is invalid: cannot set mode to {tls['mode']} in sidecar "
                                        "ingress tls")
        if not parse_protocol(port.get("protocol", "")).is_tls():
            r.error(f"{path}.tls", "server cannot have TLS settings for non HTTPS/TLS ports")
        validate_server_tls(r, f"{path}.tls", tls)
    return None


def _default_endpoint(r: Report, path: str, endpoint: str) -> None:
    """``127.0.0.1:<port>``, ``0.0.0.0:<port>``, ``[::1]:<port>``, ``[::]:<port>``, ``:<port>`` or a unix socket."""
    if endpoint.startswith(UNIX_PREFIX):
        return r.error(path, unix_address_error(endpoint[len(UNIX_PREFIX):]))
    host, port, err = _split_host_port(endpoint)
    r.error(path, err)
    if host not in _DEFAULT_ENDPOINT_HOSTS:
        r.error(path, "sidecar: defaultEndpoint must be of form 127.0.0.1:<port>,0.0.0.0:<port>,[::1]:port,[::]:port,"
                      "unix://filepath or unset")
    if port.isdigit() or (port[:1] == "-" and port[1:].isdigit()):
        r.error(path, validate_port(int(port)))
    else:
        r.error(path, f'sidecar: defaultEndpoint port ({port}) is not a number: strconv.Atoi: parsing "{port}": '
                      "invalid syntax")
    return None


def _split_host_port(text: str) -> tuple[str, str, str | None]:
    """Go's net.SplitHostPort, for the shapes a defaultEndpoint takes."""
    if text.startswith("["):
        close = text.find("]")
        if close < 0 or text[close + 1:close + 2] != ":":
            return "", "", f"address {text}: missing port in address"
        return text[1:close], text[close + 2:], None
    host, colon, port = text.rpartition(":")
    if not colon:
        return "", "", f"address {text}: missing port in address"
    if ":" in host:
        return "", "", f"address {text}: too many colons in address"
    return host, port, None


def _egress(r: Report, egress: list, namespace: str) -> None:
    seen_ports: set[int] = set()
    seen_uds: set[str] = set()
    catch_all = False
    for i, listener in enumerate(egress):
        path = f"spec.egress[{i}]"
        if listener is None:
            r.error(path, "egress listener may not be null")
            continue
        listener = r.dict(path, listener)
        if listener.get("port") is None:
            if catch_all:
                r.error(path, "sidecar: egress can have only one listener with empty port")
                continue
            if i == len(egress) - 1:
                catch_all = True
            else:
                r.error(path, "sidecar: the egress listener with empty port should be the last listener in the list")
        else:
            port = r.dict(f"{path}.port", listener["port"])
            bind = r.str(f"{path}.bind", listener.get("bind"))
            _egress_port(r, path, port, bind, listener.get("captureMode", "DEFAULT"))
            if not port.get("number"):
                if bind in seen_uds:
                    r.error(f"{path}.bind", "sidecar: unix domain socket values for listeners must be unique")
                seen_uds.add(bind)
            else:
                if port["number"] in seen_ports:
                    r.error(f"{path}.port", "sidecar: ports on IP bound listeners must be unique")
                seen_ports.add(port["number"])
        hosts = [r.str(f"{path}.hosts[{j}]", h) for j, h in enumerate(r.list(f"{path}.hosts", listener.get("hosts")))]
        if not hosts:
            r.error(f"{path}.hosts", "sidecar: egress listener must contain at least one host")
            continue
        _egress_hosts(r, f"{path}.hosts", hosts, namespace)


def _egress_hosts(r: Report, path: str, hosts: list[str], namespace: str) -> None:
    by_ns: dict[str, set[str]] = {}
    for j, host in enumerate(hosts):
        ns, slash, svc = host.partition("/")
        if slash:
            ns = namespace if ns == "." else ns
            services = by_ns.setdefault(ns, set())
            if (svc != "*" and (svc in services or "*" in services)) or (svc == "*" and services):
                r.warn(f"{path}[{j}]", f"duplicated egress host: {host}")
            services.add(svc)
        for err in namespace_slash_host_errors(host, False):
            r.error(f"{path}[{j}]", err)
    if "*" in by_ns.get("*", set()) and len(by_ns) != 1:
        r.warn(path, "`*/*` host select all resources, no other hosts can be added")


def _egress_port(r: Report, path: str, port: dict, bind: str, capture_mode: str) -> None:
    """validateSidecarEgressPortBindAndCaptureMode: port 0 means a unix domain socket listener."""
    if port.get("name"):
        r.error(f"{path}.port.name", validate_port_name(port["name"]))
    r.error(f"{path}.port.protocol", validate_protocol(r.str(f"{path}.port.protocol", port.get("protocol"))))
    if not port.get("number"):
        if not bind.startswith(UNIX_PREFIX):
            r.error(f"{path}.bind", "sidecar: ports with 0 value must have a unix domain socket bind address")
        else:
            r.error(f"{path}.bind", unix_address_error(bind[len(UNIX_PREFIX):]))
        if capture_mode not in ("DEFAULT", "NONE"):
            r.error(f"{path}.captureMode", "sidecar: captureMode must be DEFAULT/NONE for unix domain socket listeners")
    else:
        r.error(f"{path}.port.number", validate_port(r.int(f"{path}.port.number", port.get("number"))))
        r.error(f"{path}.bind", _bind_error(bind))


def _port(r: Report, path: str, port: dict) -> None:
    if port.get("name"):
        r.error(f"{path}.name", validate_port_name(port["name"]))
    r.error(f"{path}.protocol", validate_protocol(r.str(f"{path}.protocol", port.get("protocol"))))
    r.error(f"{path}.number", validate_port(r.int(f"{path}.number", port.get("number"))))


def _bind_error(bind: str) -> str | None:
    """ValidateIPAddress (validation.go#L439-L445), for a non-empty bind."""
    if not bind:
        return None
    try:
        ipaddress.ip_address(bind)
        return None
    except ValueError:
        return f"{bind} is not a valid IP"


def _outbound_traffic_policy(r: Report, path: str, policy: dict) -> None:
    """validateSidecarOutboundTrafficPolicy (validation.go#L1285-L1305)."""
    proxy = policy.get("egressProxy")
    if proxy is None:
        return
    if policy.get("mode", "REGISTRY_ONLY") != "ALLOW_ANY":
        r.error(f"{path}.egressProxy", "sidecar: egress_proxy must be set only with ALLOW_ANY outbound_traffic_policy "
                                       "mode")
        return
    proxy = r.dict(f"{path}.egressProxy", proxy)
    r.error(f"{path}.egressProxy.host", validate_fqdn(r.str(f"{path}.egressProxy.host", proxy.get("host"))))
    if proxy.get("port") is None:
        r.error(f"{path}.egressProxy.port", "sidecar: egress_proxy port must be non-nil")
        return
    validate_destination(r, f"{path}.egressProxy", proxy)

