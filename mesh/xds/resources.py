"""xDS resources: dict → wire bytes, through the message class of each type (``mesh.xds.types``).

Go: none of its own — go-control-plane's generated messages marshal themselves; the type URLs and
their message classes are in ``mesh.xds.types``.

mesh's builders (``mesh/networking``) produce resources as plain dicts in protobuf-JSON form
(camelCase), so a notebook can show them as they are; ``mesh.xds.debug.envoy_json`` renders one
with the proto's snake_case names, as Envoy's ``/config_dump`` and ``istioctl proxy-config -o json``
print it. ``to_bytes`` turns one into the binary form Envoy reads, through the
``envoy-data-plane`` (betterproto2) message classes. Every module whose messages may appear
inside an ``Any`` (``typed_config``) is imported here: betterproto2 finds the class of an
``@type`` only once its module is loaded.
"""

from __future__ import annotations

import betterproto2

# Imported for their side effect: they register the message classes that ``Any`` fields name.
import envoy_data_plane.envoy.extensions.filters.http.cors.v3  # noqa: F401
import envoy_data_plane.envoy.extensions.filters.http.fault.v3  # noqa: F401
import envoy_data_plane.envoy.extensions.filters.http.grpc_stats.v3  # noqa: F401
import envoy_data_plane.envoy.extensions.filters.http.router.v3  # noqa: F401
import envoy_data_plane.envoy.extensions.filters.listener.http_inspector.v3  # noqa: F401
import envoy_data_plane.envoy.extensions.filters.listener.original_dst.v3  # noqa: F401
import envoy_data_plane.envoy.extensions.filters.listener.tls_inspector.v3  # noqa: F401
import envoy_data_plane.envoy.extensions.filters.network.http_connection_manager.v3  # noqa: F401
import envoy_data_plane.envoy.extensions.filters.network.tcp_proxy.v3  # noqa: F401
import envoy_data_plane.envoy.extensions.request_id.uuid.v3  # noqa: F401
import envoy_data_plane.envoy.extensions.retry.host.previous_hosts.v3  # noqa: F401
import envoy_data_plane.envoy.extensions.transport_sockets.raw_buffer.v3  # noqa: F401
import envoy_data_plane.envoy.extensions.transport_sockets.tls.v3  # noqa: F401
import envoy_data_plane.envoy.extensions.upstreams.http.v3  # noqa: F401

from mesh.xds.fastpath import without_pydantic_validation
from mesh.xds.types import MESSAGE_CLASSES


def to_bytes(type_url: str, resource: dict) -> bytes:
    """Protobuf-JSON dict → serialized message. Slow (milliseconds): callers go through XdsCache."""
    return message_bytes(MESSAGE_CLASSES[type_url], resource)


def message_bytes(cls: type[betterproto2.Message], body: dict) -> bytes:
    with without_pydantic_validation():  # see mesh/xds/fastpath.py
        return bytes(cls.from_dict(body))


def from_bytes(type_url: str, data: bytes) -> dict:
    """The inverse, for debugging and tests."""
    return MESSAGE_CLASSES[type_url].parse(data).to_dict()
