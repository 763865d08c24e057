"""StatusGen: xDS about istiod itself — who is connected, who is synced, who NACKed — for debug clients.

Go: https://github.com/istio/istio/blob/1.19.0/pilot/pkg/xds/statusgen.go — the type URLs
(#L31-L52), ``Generate`` (#L72-L99), ``debugSyncz`` (#L116-L166) with ``debugSyncStatus``
(#L168-L176), ``debugConfigDump`` (#L178-L192), the events ``OnConnect`` / ``OnDisconnect`` /
``OnNack`` (#L194-L209) and ``pushStatusEvent`` (#L215-L231). Which requests reach it is decided by
``findGenerator`` (https://github.com/istio/istio/blob/1.19.0/pilot/pkg/xds/xdsgen.go#L67-L91) over
the generator map ``InitGenerators`` fills (``"api/istio.io/connect"`` and ``"event"``,
https://github.com/istio/istio/blob/1.19.0/pilot/pkg/xds/discovery.go#L567-L569); debug types are
answered on every request and never watched (``processRequest``,
https://github.com/istio/istio/blob/1.19.0/pilot/pkg/xds/ads.go#L199-L204).

A debug client is an ADS client like any other: ``istioctl x proxy-status --xds-address`` connects
with node metadata ``GENERATOR: event`` and asks for ``istio.io/debug/syncz``
(https://github.com/istio/istio/blob/1.19.0/istioctl/pkg/xds/client.go#L42-L73). What it gets,
by type URL (``mesh.xds.types``, the status rows):

* ``istio.io/debug/syncz`` — one ``envoy.service.status.v3.ClientConfig`` per connected proxy (one
  whose metadata has ``PROXY_CONFIG``, as pilot-agent sends it; debug clients are left out): its id,
  cluster, namespace and version, and per type (LDS, RDS, EDS, CDS, ECDS) SYNCED, STALE or NOT_SENT
  from the nonces, the rule of ``/debug/syncz`` and proxy-status;
* ``istio.io/debug/config_dump`` (resource name: the proxy id) — that proxy's config dump
  (``mesh.xds.debug.config_dump``), each section an ``Any`` of its ``envoy.admin.v3`` message;
* ``istio.io/connect`` — every connected node (``envoy.config.core.v3.Node``, as it was sent), and
  afterwards an event for each new one; ``istio.io/disconnect`` — an event for each stream that
  ends; ``istio.io/nack`` — an event for each NACK, the ``DiscoveryRequest`` with ``node.id`` set to
  the proxy's id. These three are watched like any type (ACK/NACK rules, a response on every push);
  their events are responses without version or nonce, sent to every stream watching the type.
  Any other type a ``GENERATOR: event`` client asks for (``istio.io/connections``, which
  ``istioctl version`` requests) is answered with no resources, as in istiod.

Simplifications, named: streams are listed in connection order (istiod: map order); an event is
queued on the watcher's stream like a push, behind what the stream is already sending (istiod
writes it at once from another goroutine); responses carry no ``control_plane`` identifier (none of
mesh's do); Delta streams are not served these types (their NACKs are still reported); the debug
``istio.io/debug`` type proper (``DebugGen``, HTTP debug pages over xDS for authenticated clients)
is not served.
"""

from __future__ import annotations

import logging
from collections.abc import Container, Iterable

import betterproto2
from envoy_data_plane.envoy.admin import v3 as admin
from envoy_data_plane.envoy.service.discovery.v3 import DiscoveryRequest
from envoy_data_plane.envoy.service.status.v3 import ClientConfig

from mesh.util.clip import clip
from mesh.xds.connection import Connection, RequestKind
from mesh.xds.debug import config_dump
from mesh.xds.fastpath import assemble_discovery_response, encode_resource_entry, without_pydantic_validation
from mesh.xds.generator import WatchedResource
from mesh.xds.types import (
    CONNECT,
    DEBUG_CONFIG_DUMP,
    DEBUG_PREFIX,
    DEBUG_SYNCZ,
    DEBUG_TYPE,
    DISCONNECT,
    EVENT_GENERATOR,
    NACK,
    SYNCZ_TYPES,
)

log = logging.getLogger(__name__)

NODE_TYPE = "type.googleapis.com/envoy.config.core.v3.Node"
CLIENT_CONFIG_TYPE = "type.googleapis.com/envoy.service.status.v3.ClientConfig"
REQUEST_TYPE = "type.googleapis.com/envoy.service.discovery.v3.DiscoveryRequest"
_ADMIN_PREFIX = "type.googleapis.com/envoy.admin.v3."


def serves(metadata: dict, type_url: str, generated: Container[str]) -> bool:
    """Would ``findGenerator`` pick StatusGen for this type? Not for a type with a generator of its
    own (CDS, ...; ``istio.io/debug`` is DebugGen's); for a ``GENERATOR: event`` client every other
    type (StatusGen is its default generator); for ``GENERATOR: api`` only ``istio.io/connect``; for
    a client naming no generator mesh has, the ``istio.io/debug/`` types."""
    if type_url in generated or type_url == DEBUG_TYPE:
        return False
    generator = metadata.get("GENERATOR") or ""
    if generator == EVENT_GENERATOR:
        return True
    if generator == "api":
        return type_url == CONNECT
    return generator != "grpc" and type_url.startswith(DEBUG_PREFIX)


def sync_status(w: WatchedResource | None) -> str:
    """``debugSyncStatus``: NOT_SENT, SYNCED or STALE from one watch's nonces."""
    if w is None or not w.nonce_sent:
        return "NOT_SENT"
    return "SYNCED" if w.nonce_acked == w.nonce_sent else "STALE"


class StatusGen:
    """The status generator of one ``AdsServer`` (``ads.status``)."""

    def __init__(self, ads):
        self.ads = ads
        self.events_sent = 0  # event responses queued to watchers
        # Streams that have asked for a watched status type, by connection number. istiod's
        # ``ClientsOf`` walks every connection for each event; mesh remembers the few debug
        # clients instead, so a storm of 2000 connects does not walk 2000 streams 2000 times.
        self._watching: dict[int, Connection] = {}

    # -- requests (processRequest for StatusGen's types) -------------------------------------------
    async def on_request(self, con: Connection, req, context) -> None:
        type_url = req.type_url
        if type_url.startswith(DEBUG_TYPE):  # answered every time, never watched
            await self._send(con, WatchedResource(type_url, names=list(req.resource_names)), context, False)
            return
        error = (req.error_message or f"error code {req.error_code}") if req.error_code else ""
        kind = con.classify(type_url, req.response_nonce, req.resource_names, error)
        con.record(kind.value, type_url, clip(req.version_info), clip(req.response_nonce), clip(error))
        if kind == RequestKind.NACK:
            self.on_nack(con, type_url, req.response_nonce, req.resource_names, req.error_code, req.error_message)
        elif kind in (RequestKind.INITIAL, RequestKind.ACK_NEW_NAMES):
            self._watching[con.number] = con
            await self._send(con, con.watched[type_url], context, True)

    async def push(self, con: Connection, context, slot) -> None:
        """``pushConnection`` reaches watched status types too: each gets a fresh response."""
        for type_url, w in list(con.watched.items()):
            if serves(con.state.proxy.metadata, type_url, self.ads.generators):
                await self._send(con, w, context, True, slot)

    async def _send(self, con: Connection, w: WatchedResource, context, watched: bool, slot=None) -> None:
        entries = self.generate(w)
        version = self.ads.push_context.version
        nonce = self.ads.new_nonce(version)
        data = assemble_discovery_response(version, w.type_url, nonce, entries)
        if watched:  # ``Connection.send`` records the nonce, except for debug types
            w.nonce_sent, w.version_sent = nonce, version
        con.record("send", w.type_url, version, nonce, f"{len(entries)} resources, {len(data)} bytes")
        await self.ads.write(con, context, data, slot)

    # -- Generate --------------------------------------------------------------------------------
    def generate(self, w: WatchedResource) -> list[bytes]:
        """``Generate``: the resources of one status type, as ``Any`` entries."""
        if w.type_url == CONNECT:
            return [encode_resource_entry(NODE_TYPE, c.node) for c in self._clients()]
        if w.type_url == DEBUG_SYNCZ:
            return [encode_resource_entry(CLIENT_CONFIG_TYPE, bytes(cc)) for cc in self.syncz()]
        if w.type_url == DEBUG_CONFIG_DUMP:
            if len(w.names) != 1:  # malformed: istiod logs it and answers with nothing
                log.info("%s with %d resource names", DEBUG_CONFIG_DUMP, len(w.names))
                return []
            return self.config_dump(w.names[0])
        return []

    def _clients(self) -> list[Connection]:
        """``Clients``: initialised connections, in connection order."""
        return sorted((c for c in self.ads.connections.values() if c.state is not None), key=lambda c: c.number)

    def syncz(self) -> list[ClientConfig]:
        """``debugSyncz``: a ClientConfig for each connected proxy (not for debug clients)."""
        out = []
        for con in self._clients():
            proxy = con.state.proxy
            if "PROXY_CONFIG" not in proxy.metadata:  # "probably istioctl queries"
                continue
            meta = {k: proxy.metadata[k] for k in ("CLUSTER_ID", "NAMESPACE", "ISTIO_VERSION") if proxy.metadata.get(k)}
            out.append(ClientConfig.from_dict({
                "node": {"id": proxy.id, "metadata": meta},
                "genericXdsConfigs": [{"typeUrl": t, "configStatus": sync_status(con.watched.get(t))}
                                      for t in SYNCZ_TYPES]}))
        return out

    def config_dump(self, proxy_id: str) -> list[bytes]:
        """``debugConfigDump``: the proxy's config dump, one ``Any`` per section; nothing (and a log
        line) when the proxy is not connected here — "like a 404", another istiod may have it."""
        dump = config_dump(self.ads, proxy_id)
        if dump is None:
            log.info("%s failed: config dump could not find connection for proxyID %r", DEBUG_CONFIG_DUMP,
                     clip(proxy_id))
            return []
        out = []
        with without_pydantic_validation():
            for section in dump["configs"]:
                type_url = section["@type"]
                message = getattr(admin, type_url.removeprefix(_ADMIN_PREFIX))
                body = {k: v for k, v in section.items() if k != "@type"}
                out.append(encode_resource_entry(type_url, bytes(message.from_dict(body))))
        return out

    # -- events (OnConnect, OnDisconnect, OnNack → pushStatusEvent) -------------------------------
    def on_connect(self, con: Connection) -> None:
        if self._watching:
            self._event(CONNECT, [encode_resource_entry(NODE_TYPE, con.node)])

    def on_disconnect(self, con: Connection) -> None:
        self._watching.pop(con.number, None)
        if con.state is not None and self._watching:  # closeConnection: only a stream that had said who it is
            self._event(DISCONNECT, [encode_resource_entry(NODE_TYPE, con.node)])

    def on_nack(self, con: Connection, type_url: str, nonce: str, names: Iterable[str], code: int,
                message: str) -> None:
        """The refused request, with ``node.id`` the proxy's id (a Delta NACK as its SotW look-alike,
        ``deltaToSotwRequest``: its subscriptions as the resource names)."""
        if not self._watchers(NACK):
            return
        request = DiscoveryRequest.from_dict({
            "node": {"id": con.state.proxy.id}, "typeUrl": type_url, "responseNonce": nonce,
            "resourceNames": list(names), "errorDetail": {"code": code, "message": message}})
        self._event(NACK, [encode_resource_entry(REQUEST_TYPE, bytes(request))])

    def _watchers(self, type_url: str) -> list[Connection]:
        """``ClientsOf``: SotW streams watching this type, in connection order."""
        return [c for _, c in sorted(self._watching.items())
                if c.delta is None and c.state is not None and type_url in c.watched
                and self.ads.connections.get(c.number) is c]

    def _event(self, type_url: str, entries: list[bytes]) -> None:
        watchers = self._watchers(type_url)
        if not watchers:
            return
        data = assemble_discovery_response("", type_url, "", entries)
        for con in watchers:
            con.queue.put_nowait(("event", data))
            self.events_sent += 1


def decode_client_configs(resources) -> list[dict]:
    """A syncz response's resources as plain dicts (for the proxy-status table and tests)."""
    return [ClientConfig.parse(r.value).to_dict(casing=betterproto2.Casing.SNAKE) for r in resources]
