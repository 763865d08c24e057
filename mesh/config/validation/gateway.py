"""Gateway validation: ``ValidateGateway``, ``validateServer`` and ``validateTLSOptions``
(https://github.com/istio/istio/blob/1.19.0/pkg/config/validation/validation.go#L466-L658), and the ``namespace/host`` form Gateway and Sidecar hosts share
(``validateNamespaceSlashWildcardHostname``, validation.go#L1053-L1109).
"""

from __future__ import annotations

from mesh.config.validation.primitives import (
    UNIX_PREFIX,
    is_dns1123_label,
    parse_protocol,
    unix_address_error,
    validate_partial_wildcard,
    validate_port,
    validate_wildcard_domain,
)
from mesh.config.validation.report import Report, quote
from mesh.util.net import is_ip_address


def _gateway_or_sidecar_host_part(host: str, is_gateway: bool) -> list[str]:
    errs = []
    if host != "*" and "." not in host:
        errs.append("short names (non FQDN) are not allowed")
    err = validate_wildcard_domain(host)
    if err:
        if not is_gateway:
            errs.append(err)
        if not is_ip_address(host):
            errs.append(err)
    partial = validate_partial_wildcard(host)
    if partial:
        errs.append(partial)
    return errs


def namespace_slash_host_errors(host: str, is_gateway: bool) -> list[str]:
    """validateNamespaceSlashWildcardHostname (validation.go#L1077-L1109)."""
    ns, slash, dns = host.partition("/")
    if not slash:
        if is_gateway:
            return _gateway_or_sidecar_host_part(host, True)
        return ["host must be of form namespace/dnsName"]
    errs = []
    if not ns or not dns:
        errs.append("config namespace and dnsName in host entry cannot be empty")
    allowed = ("*", ".") if is_gateway else ("*", ".", "~")
    if ns not in allowed and not is_dns1123_label(ns):
        errs.append(f"invalid namespace value {quote(ns)} in {'gateway' if is_gateway else 'sidecar'}")
    return errs + _gateway_or_sidecar_host_part(dns, is_gateway)


def validate_gateway(r: Report, spec: dict, name: str, namespace: str, annotations: dict) -> None:
    """ValidateGateway and validateServer (validation.go#L466-L547)."""
    if not is_dns1123_label(name):
        r.error("metadata.name", f"invalid gateway name: {quote(name)}")
    servers = r.list("spec.servers", spec.get("servers"))
    if not servers:
        r.error("spec.servers", "gateway must have at least one server")
    port_names: set[str] = set()
    for i, server in enumerate(servers):
        path = f"spec.servers[{i}]"
        if server is None:  # validateServer's error, then the port-name loop's
            r.error(path, "cannot have nil server")
            r.error(path, "server may not be nil")
            continue
        server = r.dict(path, server)
        hosts = r.list(f"{path}.hosts", server.get("hosts"))
        if not hosts:
            r.error(f"{path}.hosts", "server config must contain at least one host")
        for j, host in enumerate(hosts):
            for err in namespace_slash_host_errors(r.str(f"{path}.hosts[{j}]", host), True):
                r.error(f"{path}.hosts[{j}]", err)
        port = server.get("port")
        port_ok = port is not None
        if port is None:
            r.error(f"{path}.port", "port is required")
        else:
            port = r.dict(f"{path}.port", port)
            proto = r.str(f"{path}.port.protocol", port.get("protocol"))
            if parse_protocol(proto).is_unsupported():
                r.error(f"{path}.port.protocol", f"invalid protocol {quote(proto)}, supported protocols are HTTP, HTTP2, "
                                                 "GRPC, GRPC-WEB, MONGO, REDIS, MYSQL, TCP")
                port_ok = False
            number = r.int(f"{path}.port.number", port.get("number"))
            if number > 0 and validate_port(number):
                r.error(f"{path}.port.number", validate_port(number))
                port_ok = False
            if not port.get("name"):
                r.error(f"{path}.port.name", "port name must be set: " + _go_port(port))
                port_ok = False
        bind = r.str(f"{path}.bind", server.get("bind"))
        if bind.startswith(UNIX_PREFIX):
            r.error(f"{path}.bind", unix_address_error(bind[len(UNIX_PREFIX):]))
            if port and port.get("number"):
                r.error(f"{path}.bind", "port number must be 0 for unix domain socket: " + _go_port(port))
        elif bind and not is_ip_address(bind):
            r.error(f"{path}.bind", f"{bind} is not a valid IP")
        tls = server.get("tls")
        if tls is not None:
            validate_server_tls(r, f"{path}.tls", r.dict(f"{path}.tls", tls))
        if port_ok:
            proto = parse_protocol(port.get("protocol", ""))
            if proto.is_tls() and tls is None:
                r.error(f"{path}.tls", "server must have TLS settings for HTTPS/TLS protocols")
            elif not proto.is_tls() and tls is not None:
                if proto.is_http():
                    passthrough = tls.get("mode", "PASSTHROUGH") in ("PASSTHROUGH", "AUTO_PASSTHROUGH")
                    certs = any(tls.get(k) for k in ("caCertificates", "privateKey", "serverCertificate"))
                    if not passthrough or certs:
                        r.error(f"{path}.tls", "server cannot have TLS settings for plain text HTTP ports")
                else:
                    r.error(f"{path}.tls", "server cannot have TLS settings for non HTTPS/TLS ports")
        if port is not None:
            pname = port.get("name", "")
            if pname in port_names:
                r.error(f"{path}.port.name", f"port names in servers must be unique: duplicate name {pname}")
            port_names.add(pname)
            if not parse_protocol(port.get("protocol", "")).is_http() and (tls or {}).get("httpsRedirect"):
                r.warn(f"{path}.tls.httpsRedirect", "tls.httpsRedirect should only be used with http servers")


def _go_port(port: dict) -> str:
    """How Go's %v prints a networking.Port proto (its text format)."""
    parts = []
    if port.get("number"):
        parts.append(f"number:{port['number']}")
    if port.get("protocol"):
        parts.append(f"protocol:{quote(port['protocol'])}")
    if port.get("name"):
        parts.append(f"name:{quote(port['name'])}")
    return "  ".join(parts)


# The cipher suites a Gateway server may name (pkg/config/security/security.go#L188-L206, from
# ``bssl ciphers -openssl-name ALL``, PSK ones left out).
VALID_CIPHER_SUITES = frozenset({
    "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
    "ECDHE-ECDSA-AES128-SHA", "ECDHE-RSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA", "ECDHE-RSA-AES256-SHA",
    "AES128-GCM-SHA256", "AES256-GCM-SHA384", "AES128-SHA", "AES256-SHA", "DES-CBC3-SHA",
})


def valid_cipher_suite(name: str) -> bool:
    """IsValidCipherSuite (security.go#L220-L230): empty, ALL, an expression (``-X``, ``+X``,
    ``[X|Y]``: anything not starting with a letter or digit), or a known suite."""
    if name in ("", "ALL") or not name[0].isalnum():
        return True
    return name in VALID_CIPHER_SUITES


def validate_server_tls(r: Report, path: str, tls: dict) -> None:
    """validateTLSOptions (validation.go#L578-L658)."""
    ciphers = [str(c) for c in r.list(f"{path}.cipherSuites", tls.get("cipherSuites"))]
    if tls.get("minProtocolVersion") in ("TLSV1_0", "TLSV1_1") and not ciphers:
        r.warn(f"{path}.minProtocolVersion", "TLS version below TLSV1_2 require setting compatible ciphers as by "
                                             "default they no longer include compatible ciphers.")
    invalid = sorted({c for c in ciphers if not valid_cipher_suite(c)})
    valid = [c for c in ciphers if valid_cipher_suite(c)]
    duplicate = sorted({c for i, c in enumerate(valid) if c in valid[:i]})
    if invalid:
        r.warn(f"{path}.cipherSuites", f"ignoring invalid cipher suites: [{' '.join(invalid)}]")
    if duplicate:
        r.warn(f"{path}.cipherSuites", f"ignoring duplicate cipher suites: [{' '.join(duplicate)}]")
    mode = tls.get("mode", "PASSTHROUGH")
    has = {k: bool(tls.get(k)) for k in ("serverCertificate", "privateKey", "caCertificates", "credentialName")}
    if mode == "ISTIO_MUTUAL":
        for key, what in (("serverCertificate", "server certificate"), ("privateKey", "private key"),
                          ("caCertificates", "CA bundle"), ("credentialName", "credentialName")):
            if has[key]:
                r.error(f"{path}.{key}", f"ISTIO_MUTUAL TLS cannot have associated {what}")
        return
    if mode in ("PASSTHROUGH", "AUTO_PASSTHROUGH") and any(has.values()):
        r.warn(path, f"{mode} mode does not use certificates, they will be ignored")
    if mode in ("SIMPLE", "MUTUAL", "OPTIONAL_MUTUAL") and has["credentialName"]:
        return  # certificates come from the secret
    if mode == "SIMPLE":
        if not has["serverCertificate"]:
            r.error(f"{path}.serverCertificate", "SIMPLE TLS requires a server certificate")
        if not has["privateKey"]:
            r.error(f"{path}.privateKey", "SIMPLE TLS requires a private key")
    elif mode in ("MUTUAL", "OPTIONAL_MUTUAL"):
        if not has["serverCertificate"]:
            r.error(f"{path}.serverCertificate", "MUTUAL TLS requires a server certificate")
        if not has["privateKey"]:
            r.error(f"{path}.privateKey", "MUTUAL TLS requires a private key")
        if not has["caCertificates"]:
            r.error(f"{path}.caCertificates", "MUTUAL TLS requires a client CA bundle")


