"""The agent's SDS server: hands Envoy its workload certificate and the mesh root over a Unix
socket, and pushes new ones when the certificate rotates.

Go: ``sdsservice`` — ``StreamSecrets`` on ``SecretDiscoveryService``, answering for the two
resource names ``default`` (the key and chain) and ``ROOTCA`` (the roots to verify peers with)
https://github.com/istio/istio/blob/1.19.0/security/pkg/nodeagent/sds/sdsservice.go#L149-L214
and the conversion into Envoy ``Secret`` messages ``toEnvoySecret`` (sdsservice.go#L216-L308);
the socket is ``./var/run/secrets/workload-spiffe-uds/socket`` in a pod
(https://github.com/istio/istio/blob/1.19.0/pkg/security/security.go#L48-L49), here under the
agent's workdir, which is Envoy's working directory too; Envoy reaches it through the
bootstrap's ``sds-grpc`` cluster.

State-of-the-World on one stream per subscription: Envoy asks for names; the server answers
with those it has, versioned; an ACK (the nonce it was sent, no error) needs no answer; a new
certificate is pushed, unasked, to every stream watching it.

Simplifications, named: no ``DeltaSecrets`` / ``FetchSecrets``, no named credentials other than
``default`` and ``ROOTCA`` (no gateway credentials from Kubernetes Secrets). Logs carry names,
versions and identities, never secret bytes.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import logging
from pathlib import Path

import grpc
from envoy_data_plane.envoy.extensions.transport_sockets.tls.v3 import Secret

from mesh.agent.certs import WorkloadCert
from mesh.agent.uds import UnixListenPath
from mesh.networking.tls import SDS_DEFAULT, SDS_ROOT
from mesh.xds.fastpath import assemble_discovery_response, decode_discovery_request, encode_resource_entry
from mesh.xds.resources import message_bytes

log = logging.getLogger(__name__)

SDS_SERVICE = "envoy.service.secret.v3.SecretDiscoveryService"
SECRET_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
SOCKET_PATH = Path("var/run/secrets/workload-spiffe-uds/socket")  # under the workdir, as in a pod


def _b64(data: str | bytes) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def envoy_secrets(cert: WorkloadCert) -> dict[str, dict]:
    """The two secrets, as protobuf-JSON ``Secret`` messages (``toEnvoySecret``)."""
    return {
        SDS_DEFAULT: {"name": SDS_DEFAULT, "tlsCertificate": {
            "certificateChain": {"inlineBytes": _b64(cert.chain_pem)},
            "privateKey": {"inlineBytes": _b64(cert.key_pem)}}},
        SDS_ROOT: {"name": SDS_ROOT, "validationContext": {"trustedCa": {"inlineBytes": _b64(cert.root_pem)}}},
    }


class _Stream:
    def __init__(self):
        self.names: list[str] = []
        self.queue: asyncio.Queue = asyncio.Queue()
        self.nonce_sent = ""


class SdsServer:
    """Serve ``cert`` (set with ``update``) to Envoy on ``<workdir>/var/run/secrets/workload-spiffe-uds/socket``."""

    def __init__(self, workdir: str | Path):
        self.socket = UnixListenPath(Path(workdir) / SOCKET_PATH)
        self._cert: WorkloadCert | None = None
        self._encoded: dict[str, bytes] = {}
        self._version = 0
        self._nonces = itertools.count(1)
        self._streams: set[_Stream] = set()
        self._server: grpc.aio.Server | None = None
        self.pushes = 0  # responses sent (initial answers and rotations)
        self.acks = 0
        self.nacks: list[str] = []

    @property
    def socket_path(self) -> Path:
        return self.socket.path

    @property
    def version(self) -> str:
        return str(self._version)

    @property
    def cert(self) -> WorkloadCert | None:
        return self._cert

    def update(self, cert: WorkloadCert) -> None:
        """A new certificate: encode its secrets once, push them to every stream watching them."""
        self._cert = cert
        self._encoded = {name: encode_resource_entry(SECRET_TYPE, message_bytes(Secret, body))
                         for name, body in envoy_secrets(cert).items()}
        self._version += 1
        for stream in list(self._streams):
            if stream.names:
                stream.queue.put_nowait(("push", None))
        log.info("SDS: secrets version %s for %s", self.version, ", ".join(cert.identities))

    async def start(self) -> str:
        address = self.socket.prepare()
        self._server = grpc.aio.server()
        handler = grpc.stream_stream_rpc_method_handler(self._stream)  # raw bytes both ways
        self._server.add_generic_rpc_handlers(
            [grpc.method_handlers_generic_handler(SDS_SERVICE, {"StreamSecrets": handler})])
        if not self._server.add_insecure_port(address):
            raise OSError(f"cannot listen on {self.socket_path}")
        await self._server.start()
        self.socket.permit()
        return str(self.socket_path)

    async def stop(self) -> None:
        for stream in list(self._streams):
            stream.queue.put_nowait(("close", None))
        if self._server is not None:
            await self._server.stop(0.2)
            self._server = None
        self.socket.close()

    async def _stream(self, _requests, context: grpc.aio.ServicerContext) -> None:
        stream = _Stream()
        self._streams.add(stream)
        reader = asyncio.create_task(self._read(context, stream))
        try:
            while True:
                kind, req = await stream.queue.get()
                if kind == "request":
                    if req.error_code:  # a NACK: Envoy keeps what it had
                        self.nacks.append(req.error_message)
                        log.warning("SDS: Envoy rejected secrets %s: %s", req.resource_names, req.error_message)
                        continue
                    if req.response_nonce and req.response_nonce == stream.nonce_sent \
                            and list(req.resource_names) == stream.names:
                        self.acks += 1
                        continue
                    stream.names = list(req.resource_names)
                    await self._send(context, stream)
                elif kind == "push":
                    await self._send(context, stream)
                else:
                    break
        finally:
            reader.cancel()
            self._streams.discard(stream)

    async def _read(self, context, stream: _Stream) -> None:
        try:
            while True:
                raw = await context.read()
                if raw is grpc.aio.EOF:
                    break
                stream.queue.put_nowait(("request", decode_discovery_request(raw)))
        except (asyncio.CancelledError, grpc.RpcError):
            pass
        stream.queue.put_nowait(("eof", None))

    async def _send(self, context, stream: _Stream) -> None:
        entries = [self._encoded[n] for n in stream.names if n in self._encoded]
        if not entries:
            return  # nothing to give yet (or names we do not serve): Envoy keeps waiting
        stream.nonce_sent = f"{self.version}-{next(self._nonces)}"
        await context.write(assemble_discovery_response(self.version, SECRET_TYPE, stream.nonce_sent, entries))
        self.pushes += 1
        log.info("SDS: sent %s version %s", stream.names, self.version)
