"""Port protocols: the one ``protocol.Instance`` and ``protocol.Parse`` every part of mesh uses.

Go: https://github.com/istio/istio/blob/1.19.0/pkg/config/protocol/instance.go — the
constants at #L26-L62, ``Parse`` at #L64-L94, the ``Is*`` predicates at #L96-L163 and
``AfterTLSTermination`` at #L165-L175.

Validation (Gateway servers, ServiceEntry and Sidecar ports), the Kubernetes Service
conversion (``kube.ConvertProtocol``) and the model's ``Port`` all read a protocol through
:func:`parse` and ask it the same questions, so a name means the same thing everywhere.
The values are Go's strings, including ``UnsupportedProtocol`` for a name ``Parse`` does
not know (such a port is sniffed at runtime).

Simplifications, named: ``HBONE`` (internal to ambient, never declared by a Service) is left out.
"""

from __future__ import annotations

from enum import StrEnum


class Instance(StrEnum):
    """``protocol.Instance``: what a port speaks."""

    GRPC = "GRPC"
    GRPC_WEB = "GRPC-Web"
    HTTP = "HTTP"
    HTTP_PROXY = "HTTP_PROXY"  # a generic outbound proxy port (sidecar egress listeners only)
    HTTP2 = "HTTP2"
    HTTPS = "HTTPS"
    TCP = "TCP"  # the default for a service port
    TLS = "TLS"  # TLS with SNI in the handshake
    UDP = "UDP"
    MONGO = "Mongo"
    REDIS = "Redis"
    MYSQL = "MySQL"
    UNSUPPORTED = "UnsupportedProtocol"  # unknown name: sniffed at runtime

    def is_http2(self) -> bool:
        return self in (Instance.HTTP2, Instance.GRPC, Instance.GRPC_WEB)

    def is_http(self) -> bool:
        return self in (Instance.HTTP, Instance.HTTP2, Instance.HTTP_PROXY, Instance.GRPC, Instance.GRPC_WEB)

    def is_http_or_sniffed(self) -> bool:
        return self.is_http() or self.is_unsupported()

    def is_tcp(self) -> bool:
        return self in (Instance.TCP, Instance.HTTPS, Instance.TLS, Instance.MONGO, Instance.REDIS, Instance.MYSQL)

    def is_tls(self) -> bool:
        return self in (Instance.HTTPS, Instance.TLS)

    def is_https(self) -> bool:
        return self is Instance.HTTPS

    def is_grpc(self) -> bool:
        return self in (Instance.GRPC, Instance.GRPC_WEB)

    def is_unsupported(self) -> bool:
        return self is Instance.UNSUPPORTED

    def after_tls_termination(self) -> Instance:
        """The protocol left once TLS is terminated: HTTPS → HTTP, TLS → TCP, others unchanged."""
        return {Instance.HTTPS: Instance.HTTP, Instance.TLS: Instance.TCP}.get(self, self)


# Parse's switch: every case is the lower-cased value, except UnsupportedProtocol (no case).
_BY_LOWER_NAME = {p.value.lower(): p for p in Instance if p is not Instance.UNSUPPORTED}


def parse(name: str) -> Instance:
    """``protocol.Parse``: a protocol name, ignoring case; anything else is ``UNSUPPORTED``."""
    return _BY_LOWER_NAME.get(name.lower(), Instance.UNSUPPORTED)
