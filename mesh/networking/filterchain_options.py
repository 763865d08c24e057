"""Which filter chains an inbound port gets, per mutual-TLS mode and protocol.

Go: ``getFilterChainMatchOptions`` and the option tables
https://github.com/istio/istio/blob/1.19.0/pilot/pkg/networking/core/v1alpha3/filterchain_options.go#L38-L219,
the ALPN lists https://github.com/istio/istio/blob/1.19.0/pilot/pkg/networking/core/v1alpha3/listener.go#L76-L96.

A connection reaching ``virtualInbound`` is told apart by what the TLS and HTTP inspectors saw:
``transport_protocol`` (``tls`` or ``raw_buffer``) and the ALPN the client offered. Istio's
clients say "I am in the mesh" through ALPN (``istio``, ``istio-peer-exchange``, and with
istio-proxy's ``istio.alpn`` filter ``istio-http/1.1`` ...), plaintext HTTP shows up as
``http/1.1`` or ``h2c``. STRICT offers only TLS chains, DISABLE only plaintext ones, PERMISSIVE both.
"""

from __future__ import annotations

from dataclasses import dataclass

from mesh.model.service import ServiceProtocol
from mesh.networking.authn import PERMISSIVE, STRICT

TLS = "tls"
RAW_BUFFER = "raw_buffer"
HTTP, TCP, AUTO = "HTTP", "TCP", "AUTO"  # istionetworking.ListenerProtocol

PLAINTEXT_HTTP_ALPNS = ("http/1.1", "h2c")  # without PILOT_HTTP10
MTLS_HTTP_ALPNS = ("istio-http/1.0", "istio-http/1.1", "istio-h2")
ALL_ISTIO_MTLS_ALPNS = ("istio", "istio-peer-exchange", "istio-http/1.0", "istio-http/1.1", "istio-h2")
MTLS_TCP_WITH_MXC_ALPNS = ("istio-peer-exchange", "istio")


@dataclass(frozen=True)
class FilterChainMatchOption:
    alpns: tuple[str, ...]
    transport: str
    protocol: str  # HTTP or TCP: which filters the chain gets
    tls: bool = False  # terminate mutual TLS on this chain

    def match(self) -> dict:
        out: dict = {}
        if self.alpns:
            out["applicationProtocols"] = list(self.alpns)
        out["transportProtocol"] = self.transport
        return out


_O = FilterChainMatchOption
_OPTIONS = {
    (HTTP, STRICT): (_O((), TLS, HTTP, True),),
    (HTTP, PERMISSIVE): (_O(ALL_ISTIO_MTLS_ALPNS, TLS, HTTP, True), _O((), RAW_BUFFER, HTTP)),
    (HTTP, None): (_O((), RAW_BUFFER, HTTP),),
    (AUTO, STRICT): (_O(MTLS_HTTP_ALPNS, TLS, HTTP, True), _O((), TLS, TCP, True)),
    (AUTO, PERMISSIVE): (_O(MTLS_HTTP_ALPNS, TLS, HTTP, True), _O(PLAINTEXT_HTTP_ALPNS, RAW_BUFFER, HTTP),
                         _O(MTLS_TCP_WITH_MXC_ALPNS, TLS, TCP, True), _O((), RAW_BUFFER, TCP), _O((), TLS, TCP)),
    (AUTO, None): (_O(PLAINTEXT_HTTP_ALPNS, RAW_BUFFER, HTTP), _O((), RAW_BUFFER, TCP)),
    (TCP, STRICT): (_O((), TLS, TCP, True),),
    (TCP, PERMISSIVE): (_O(ALL_ISTIO_MTLS_ALPNS, TLS, TCP, True), _O((), TLS, TCP), _O((), RAW_BUFFER, TCP)),
    (TCP, None): (_O((), RAW_BUFFER, TCP),),
}


def filter_chain_match_options(mode: str, protocol: str) -> tuple[FilterChainMatchOption, ...]:
    """The chains of one inbound port: ``mode`` STRICT, PERMISSIVE or anything else (plaintext)."""
    return _OPTIONS[(protocol, mode if mode in (STRICT, PERMISSIVE) else None)]


def listener_protocol(protocol: str) -> str:
    """``ModelProtocolToListenerProtocol``: HTTP-speaking ports, sniffed ports (AUTO), the rest TCP."""
    if protocol == ServiceProtocol.UNSUPPORTED:
        return AUTO
    return HTTP if ServiceProtocol(protocol).is_http() else TCP
