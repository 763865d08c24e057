"""Plain-text views of certificates for the notebooks of stages 6 and 9–12.

Nothing here is part of the mini-istiod. Certificates are shown decoded — subject, issuer, SANs,
whether they are a CA, key, usages, and validity as a *duration* (dates change on every run, a
lifetime does not) — and chains with a check that each certificate is signed by the next.
Serial numbers, fingerprints, PEM bodies and private keys are never shown: the first three differ
on every run, the last must never be printed at all.

Go counterparts, for orientation: ``istioctl proxy-config secret`` decodes a proxy's certificates
in a similar way, with dates and serial numbers since it looks at one live proxy
(https://github.com/istio/istio/blob/1.19.0/istioctl/pkg/writer/compare/sds/util.go#L209-L233).
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Iterable

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from mesh.security.ca import load_pem_certs
from mesh.teach.views import TextView, table


def duration(td: dt.timedelta) -> str:
    """``3650 days``, ``90 days 2 min``, ``24 h 2 min``, ``10 min``: a lifetime, in words."""
    seconds = int(td.total_seconds())
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days and days < 2:
        hours, days = hours + 24 * days, 0
    parts = [f"{days} days" if days else "", f"{hours} h" if hours else "",
             f"{minutes} min" if minutes else "", f"{secs} s" if secs else ""]
    return " ".join(p for p in parts if p) or "0 s"


def as_cert(cert: x509.Certificate | str | bytes) -> x509.Certificate:
    if isinstance(cert, x509.Certificate):
        return cert
    return load_pem_certs(cert.encode() if isinstance(cert, str) else cert)[0]


def _ext(cert, cls):
    try:
        return cert.extensions.get_extension_for_class(cls)
    except x509.ExtensionNotFound:
        return None


def subjects(certs: Iterable[x509.Certificate | str | bytes]) -> list[str]:
    """The subjects of some certificates, sorted (a quick way to say *which* roots)."""
    return sorted(as_cert(c).subject.rfc4514_string() or "(empty)" for c in certs)


def sans(cert: x509.Certificate) -> list[str]:
    ext = _ext(cert, x509.SubjectAlternativeName)
    if ext is None:
        return []
    return ([f"URI:{u}" for u in ext.value.get_values_for_type(x509.UniformResourceIdentifier)]
            + [f"DNS:{d}" for d in ext.value.get_values_for_type(x509.DNSName)])


def key_description(public_key) -> str:
    if isinstance(public_key, rsa.RSAPublicKey):
        return f"RSA {public_key.key_size}"
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return f"ECDSA {public_key.curve.name}"
    return type(public_key).__name__


def _usages(cert: x509.Certificate) -> str:
    found = []
    ku = _ext(cert, x509.KeyUsage)
    if ku is not None:
        for name in ("digital_signature", "key_encipherment", "key_cert_sign", "crl_sign"):
            if getattr(ku.value, name):
                found.append(name)
    eku = _ext(cert, x509.ExtendedKeyUsage)
    if eku is not None:
        found += [u._name for u in eku.value]
    return ", ".join(found) or "-"


def describe_cert(cert: x509.Certificate | str | bytes, title: str | None = None) -> TextView:
    """One certificate, decoded: what a reader needs to know, nothing that varies per run."""
    cert = as_cert(cert)
    bc = _ext(cert, x509.BasicConstraints)
    san = _ext(cert, x509.SubjectAlternativeName)
    rows = [
        ("subject", cert.subject.rfc4514_string() or "(empty)"),
        ("issuer", cert.issuer.rfc4514_string() or "(empty)"),
        ("SANs", ", ".join(sans(cert)) or "(none)"),
        ("SAN extension critical", bool(san and san.critical)),
        ("is a CA", bool(bc and bc.value.ca)),
        ("key", key_description(cert.public_key())),
        ("usages", _usages(cert)),
        ("valid for", duration(cert.not_valid_after_utc - cert.not_valid_before_utc)),
        ("self-signed", cert.issuer == cert.subject),
    ]
    return table(("field", "value"), rows, title=title)


def chain_table(chain: Iterable[x509.Certificate | str | bytes] | str | bytes) -> TextView:
    """Each certificate of a chain (leaf first) and whether the next one signed it. ``chain`` is a
    list of certificates or PEM strings, or one PEM text holding them all."""
    if isinstance(chain, str | bytes):
        chain = load_pem_certs(chain.encode() if isinstance(chain, str) else chain)
    certs = [as_cert(c) for c in chain]
    rows = []
    for i, cert in enumerate(certs):
        parent = certs[i + 1] if i + 1 < len(certs) else (cert if cert.issuer == cert.subject else None)
        if parent is None:
            signed = "?"
        else:
            try:
                cert.verify_directly_issued_by(parent)
                signed = "yes (self)" if parent is cert else "yes"
            except Exception:  # noqa: BLE001 - any failure means "not signed by it" for display
                signed = "NO"
        rows.append((i, cert.subject.rfc4514_string() or "(empty)", ", ".join(sans(cert)) or "-",
                     duration(cert.not_valid_after_utc - cert.not_valid_before_utc), signed))
    return table(("#", "subject", "SANs", "valid for", "signed by next"), rows)


def secret_keys(secret: dict) -> TextView:
    """The keys of a Secret holding certificates, with what each holds — never a key's content."""
    rows = []
    for key, value in sorted((secret.get("data") or {}).items()):
        raw = base64.b64decode(value) if value else b""
        if not raw:
            what = "(empty)"
        elif b"PRIVATE KEY" in raw:
            what = "a private key (not shown)"
        else:
            certs = load_pem_certs(raw)
            what = ", ".join(f"certificate {c.subject.rfc4514_string() or '(empty subject)'}" for c in certs)
        rows.append((key, what))
    return table(("key", "holds"), rows, title=f"Secret {secret['metadata'].get('namespace')}/"
                                                f"{secret['metadata']['name']} (type {secret.get('type')})")


def root_configmaps(client, root_pem: str) -> TextView:
    """Every ``istio-ca-root-cert`` ConfigMap and whether it holds ``root_pem``."""
    rows = []
    for cm in client.informer("configmaps").list():
        if cm["metadata"]["name"] == "istio-ca-root-cert":
            held = (cm.get("data") or {}).get("root-cert.pem", "")
            rows.append((cm["metadata"]["namespace"], "the mesh root" if held.strip() == root_pem.strip() else "other"))
    return table(("namespace", "root-cert.pem holds"), sorted(rows))


def webhook_bundles(client, root_pem: str) -> TextView:
    """The ``caBundle`` of every webhook of every webhook configuration, decoded to a verdict."""
    want = base64.b64encode(root_pem.encode()).decode()
    rows = []
    for plural, kind in (("mutatingwebhookconfigurations", "Mutating"), ("validatingwebhookconfigurations", "Validating")):
        for config in client.informer(plural).list():
            for wh in config.get("webhooks") or []:
                bundle = (wh.get("clientConfig") or {}).get("caBundle")
                verdict = "(empty)" if not bundle else "the mesh root" if bundle == want else "something else"
                rows.append((kind, config["metadata"]["name"], wh["name"], verdict))
    return table(("kind", "configuration", "webhook", "caBundle"), sorted(rows))


def tls_session(ssl_object) -> TextView:
    """What a TLS client learnt in its handshake: version, ALPN, the server's certificate."""
    der = ssl_object.getpeercert(binary_form=True)
    cert = x509.load_der_x509_certificate(der)
    rows = [("TLS version", ssl_object.version()), ("ALPN", ssl_object.selected_alpn_protocol() or "-"),
            ("server subject", cert.subject.rfc4514_string() or "(empty)"),
            ("server SANs", ", ".join(sans(cert))), ("server issuer", cert.issuer.rfc4514_string())]
    return table(("handshake", "value"), rows)
