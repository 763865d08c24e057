"""Generators: one per xDS type, turning (proxy, push context, what it watches, why) into resources.

Go: ``XdsResourceGenerator`` https://github.com/istio/istio/blob/1.19.0/pilot/pkg/model/context.go#L276-L279,
``WatchedResource`` (context.go#L386) and the generator map that ``InitGenerators`` fills
https://github.com/istio/istio/blob/1.19.0/pilot/pkg/xds/discovery.go#L536-L572.

A generator answers two questions for its type: does this push concern it at all (``None``:
send nothing, the proxy's current config stays), and if so which resources (a list, possibly
empty — for CDS and LDS an empty list means "remove them all"). Serializing is not its job: the
ADS layer sends each resource through the XdsCache.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from mesh.model.proxy import Proxy
from mesh.model.push_request import PushRequest
from mesh.networking.push_context import PushContext, ServiceInstance
from mesh.networking.sidecar import ScopedPush, SidecarScope
from mesh.xds.types import ENDPOINT, skipped_configs

SERVICE_ENTRY = "ServiceEntry"  # the kind EDS updates name (one per changed hostname)


@dataclass(eq=False)
class Resource:
    name: str
    body: dict  # protobuf-JSON
    # The resource as one ``Any`` entry of a DiscoveryResponse, filled in by the ADS layer the
    # first time it is sent. A Resource shared by many proxies (through ``PushContext.memo``)
    # is therefore serialized and wrapped once per push, however many streams it goes to.
    encoded: bytes | None = None
    # For Delta streams (``mesh.xds.delta``): a digest of ``encoded``, and the resource as a Delta
    # ``Resource`` entry, each made once however many streams it goes to.
    version: str = ""
    delta_encoded: bytes | None = None


SYNCED = "SYNCED"


def xds_status(sent: str, acked: str) -> str:
    """istioctl's ``xdsStatus`` on the nonces of one type: the one "is it synced" rule in mesh
    (https://github.com/istio/istio/blob/1.19.0/istioctl/pkg/writer/pilot/status.go#L140-L156)."""
    if not sent:
        return "NOT SENT"
    if sent == acked:
        return SYNCED
    return "STALE (Never Acknowledged)" if not acked else "STALE"


@dataclass
class WatchedResource:
    """What one proxy has asked for, per type, and where the conversation stands."""

    type_url: str
    names: list[str] = field(default_factory=list)  # empty for CDS/LDS: everything
    nonce_sent: str = ""
    version_sent: str = ""
    version_acked: str = ""
    nonce_acked: str = ""
    last_error: str = ""  # the error_detail of the last NACK, cleared by an ACK
    nacks: int = 0
    sent_names: list[str] = field(default_factory=list)

    def status(self) -> str:
        """proxy-status's word for this type: SYNCED, STALE or NOT SENT (``xds_status``)."""
        return xds_status(self.nonce_sent, self.nonce_acked)

    def answered(self) -> bool:
        """Has the proxy answered the last response of this type, with an ACK or a NACK?"""
        return self.status() == SYNCED or bool(self.nonce_sent and self.last_error)


@dataclass
class ProxyState:
    """A connected proxy as the generators see it: identity, its own service ports and its
    SidecarScope (``mesh.networking.sidecar``; the one before the last full push is kept for
    ``ProxyNeedsPush``, as Go's ``PrevSidecarScope``)."""

    proxy: Proxy
    instances: list[ServiceInstance] = field(default_factory=list)
    sidecar_scope: SidecarScope | None = None
    prev_sidecar_scope: SidecarScope | None = None


def scoped(push: PushContext, state: ProxyState) -> PushContext | ScopedPush:
    """The PushContext as this proxy sees it: through its SidecarScope (computed on first use)."""
    if state.sidecar_scope is None:
        state.sidecar_scope = push.sidecar_scope_for(state.proxy)
    return ScopedPush(push, state.sidecar_scope, state.proxy)


class Generator(Protocol):
    def generate(self, state: ProxyState, push: PushContext, watched: WatchedResource,
                 request: PushRequest | None) -> list[Resource] | None: ...


def needs_push(request: PushRequest | None, type_url: str, proxy_type: str = "sidecar") -> bool:
    """Does this push concern ``type_url`` (``cdsNeedsPush``, ``rdsNeedsPush``, ...)? Only full
    pushes do, and only if some changed kind is not one the type ignores (``types.skipped_configs``);
    an empty ConfigsUpdated means anything may have changed."""
    if request is None:
        return True  # a proxy asking: always answer
    if not request.full:
        return False
    if not request.configs_updated:
        return True
    skipped = skipped_configs(type_url, proxy_type)
    return any(c.kind not in skipped for c in request.configs_updated)


def updated_hostnames(request: PushRequest | None) -> set[str] | None:
    """For an EDS-only push (or a full push caused only by endpoint changes), the hostnames whose
    endpoints changed; None means "all of them" (``canSendPartialFullPushes``)."""
    if request is None or not request.configs_updated:
        return None
    if request.full and any(c.kind != SERVICE_ENTRY and c.kind not in skipped_configs(ENDPOINT)
                            for c in request.configs_updated):
        return None
    return {c.name for c in request.configs_updated if c.kind == SERVICE_ENTRY}
