"""xDS resource types: type URLs, the Envoy message class of each, dict → wire bytes.

Go: ``v3.ClusterType`` and friends,
https://github.com/istio/istio/blob/1.19.0/pilot/pkg/xds/v3/model.go#L23-L46, their short names
(#L48-L60) and the push order https://github.com/istio/istio/blob/1.19.0/pilot/pkg/xds/ads.go#L768.

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
from envoy_data_plane.envoy.config.cluster.v3 import Cluster
from envoy_data_plane.envoy.config.endpoint.v3 import ClusterLoadAssignment
from envoy_data_plane.envoy.config.listener.v3 import Listener
from envoy_data_plane.envoy.config.route.v3 import RouteConfiguration

from mesh.xds.fastpath import without_pydantic_validation

_PREFIX = "type.googleapis.com/"
CLUSTER = _PREFIX + "envoy.config.cluster.v3.Cluster"  # CDS
ENDPOINT = _PREFIX + "envoy.config.endpoint.v3.ClusterLoadAssignment"  # EDS
LISTENER = _PREFIX + "envoy.config.listener.v3.Listener"  # LDS
ROUTE = _PREFIX + "envoy.config.route.v3.RouteConfiguration"  # RDS

SHORT_NAMES = {CLUSTER: "CDS", ENDPOINT: "EDS", LISTENER: "LDS", ROUTE: "RDS"}
# The order istiod pushes in (``PushOrder``): clusters before the endpoints they need, listeners
# before the routes they name, so Envoy never waits on a reference it cannot resolve.
PUSH_ORDER = (CLUSTER, ENDPOINT, LISTENER, ROUTE)
# Types whose request lists every wanted name (EDS, RDS) rather than "everything" (CDS, LDS).
NAMED_TYPES = (ENDPOINT, ROUTE)

MESSAGE_CLASSES = {CLUSTER: Cluster, ENDPOINT: ClusterLoadAssignment, LISTENER: Listener, ROUTE: RouteConfiguration}

# betterproto2 (0.9.1) finds a field from a JSON key by snake-casing the key, which can never give
# a name with a digit after an underscore: ``consecutive5xx`` (the protobuf JSON name of
# OutlierDetection's ``consecutive_5xx``) and its own ``consecutive5Xx`` both become
# ``consecutive5_xx``, an unknown field. The few such fields mesh writes are named here, in both
# spellings, so ``from_dict`` reads them.
_DIGIT_FIELDS = ("consecutive_5xx", "enforcing_consecutive_5xx")
_JSON_TO_FIELD = {alias: name for name in _DIGIT_FIELDS
                  for alias in (betterproto2.casing.camel_case(name), betterproto2.casing.camel_case(name).replace("5Xx", "5xx"))}
_snake = betterproto2.safe_snake_case
if getattr(_snake, "__wrapped__", None) is None:  # once, however often this module is reloaded
    def _field_name(key: str, _original=_snake) -> str:
        return _JSON_TO_FIELD.get(key) or _original(key)

    _field_name.__wrapped__ = _snake
    betterproto2.safe_snake_case = _field_name



def short_name(type_url: str) -> str:
    return SHORT_NAMES.get(type_url, type_url.rsplit(".", 1)[-1])


def to_bytes(type_url: str, resource: dict) -> bytes:
    """Protobuf-JSON dict → serialized message. Slow (milliseconds): callers go through XdsCache."""
    return message_bytes(MESSAGE_CLASSES[type_url], resource)


def message_bytes(cls: type[betterproto2.Message], body: dict) -> bytes:
    with without_pydantic_validation():  # see mesh/xds/fastpath.py
        return bytes(cls.from_dict(body))


def from_bytes(type_url: str, data: bytes) -> dict:
    """The inverse, for debugging and tests."""
    return MESSAGE_CLASSES[type_url].parse(data).to_dict()
