"""The xDS type registry: one row per resource type mesh serves, read by everything that needs one.

Go: the type URLs and ``GetShortType`` of
https://github.com/istio/istio/blob/1.19.0/pilot/pkg/xds/v3/model.go#L23-L74, the push order
``PushOrder`` https://github.com/istio/istio/blob/1.19.0/pilot/pkg/xds/ads.go#L766-L768, the generator
map ``InitGenerators`` fills (https://github.com/istio/istio/blob/1.19.0/pilot/pkg/xds/discovery.go#L536-L572)
and each generator's list of config kinds it ignores:
https://github.com/istio/istio/blob/1.19.0/pilot/pkg/xds/cds.go#L31-L41,
https://github.com/istio/istio/blob/1.19.0/pilot/pkg/xds/lds.go#L33-L55 (by proxy type),
https://github.com/istio/istio/blob/1.19.0/pilot/pkg/xds/rds.go#L30-L40,
https://github.com/istio/istio/blob/1.19.0/pilot/pkg/xds/eds.go#L309-L319.

Istio spreads these facts over five files; mesh keeps them in ``TYPES`` so the generators
(``needs_push``), ADS (push order, named subscriptions, metrics), the debug views (syncz,
proxy-status, config_dump), the wire encoding (``resources.to_bytes``) and the push recorder
(``mesh.xds.push_recorder``) read the same row. Adding a type is one row here and one generator.

StatusGen's debug and event types (``istio.io/debug/syncz``, ``istio.io/connect``, ...) have rows
of their own below: they are served to debug clients by ``mesh.xds.statusgen``, not pushed to Envoys.

Simplifications, named: only the four sidecar types (CDS, EDS, LDS, RDS); SDS, ECDS, NDS and the
ambient types are not served. An unknown type's short name is the last part of its URL (Go
returns the URL itself).
"""

from __future__ import annotations

from dataclasses import dataclass

import betterproto2
from envoy_data_plane.envoy.config.cluster.v3 import Cluster
from envoy_data_plane.envoy.config.endpoint.v3 import ClusterLoadAssignment
from envoy_data_plane.envoy.config.listener.v3 import Listener
from envoy_data_plane.envoy.config.route.v3 import RouteConfiguration

_PREFIX = "type.googleapis.com/"
CLUSTER = _PREFIX + "envoy.config.cluster.v3.Cluster"  # CDS
ENDPOINT = _PREFIX + "envoy.config.endpoint.v3.ClusterLoadAssignment"  # EDS
LISTENER = _PREFIX + "envoy.config.listener.v3.Listener"  # LDS
ROUTE = _PREFIX + "envoy.config.route.v3.RouteConfiguration"  # RDS

# betterproto2 (0.9.1) finds a field from a JSON key by snake-casing the key, which can never give
# a name with a digit after an underscore: ``consecutive5xx`` (the protobuf JSON name of
# OutlierDetection's ``consecutive_5xx``) and its own ``consecutive5Xx`` both become
# ``consecutive5_xx``, an unknown field, so ``from_dict`` of every message class would refuse them.
# The few such fields mesh writes are named here, in both spellings.
_DIGIT_FIELDS = ("consecutive_5xx", "enforcing_consecutive_5xx")
_JSON_TO_FIELD = {alias: name for name in _DIGIT_FIELDS for alias in (
    betterproto2.casing.camel_case(name), betterproto2.casing.camel_case(name).replace("5Xx", "5xx"))}
if getattr(betterproto2.safe_snake_case, "__wrapped__", None) is None:  # once, however often this is imported
    def _field_name(key: str, _original=betterproto2.safe_snake_case) -> str:
        return _JSON_TO_FIELD.get(key) or _original(key)

    _field_name.__wrapped__ = betterproto2.safe_snake_case
    betterproto2.safe_snake_case = _field_name

DEFAULT_PROXY_TYPE = "sidecar"


@dataclass(frozen=True)
class XdsType:
    url: str
    short: str  # GetShortType: CDS, EDS, ...
    sync_field: str  # the field prefix of /debug/syncz (``cluster_sent``, ``cluster_acked``)
    message: type[betterproto2.Message]
    # Does a request list every wanted name (EDS, RDS), rather than mean "everything" (CDS, LDS)?
    named: bool
    # proxy type → config kinds this type's resources do not depend on: a full push caused only by
    # these kinds skips the type. ``sidecar`` is the default for other proxy types.
    skipped: dict[str, frozenset[str]]
    generator: str  # "module:Class" of its generator (imported by ``mesh.xds.ads.default_generators``)


_CDS_SKIP = frozenset({"Gateway", "WorkloadEntry", "WorkloadGroup", "AuthorizationPolicy", "RequestAuthentication",
                       "Secret", "Telemetry", "WasmPlugin", "ProxyConfig"})
_EDS_SKIP = frozenset({"Gateway", "VirtualService", "WorkloadGroup", "AuthorizationPolicy", "RequestAuthentication",
                       "Secret", "Telemetry", "WasmPlugin", "ProxyConfig"})
_LDS_SKIP = {"router": frozenset({"WorkloadGroup", "WorkloadEntry", "Secret", "ProxyConfig"}),
             "sidecar": frozenset({"Gateway", "WorkloadGroup", "WorkloadEntry", "Secret", "ProxyConfig"})}
_RDS_SKIP = frozenset({"WorkloadEntry", "WorkloadGroup", "AuthorizationPolicy", "RequestAuthentication",
                       "PeerAuthentication", "Secret", "WasmPlugin", "Telemetry", "ProxyConfig"})

# In push order (``PushOrder``): clusters before the endpoints they need, listeners before the
# routes they name, so Envoy never waits on a reference it cannot resolve.
TYPES: tuple[XdsType, ...] = (
    XdsType(CLUSTER, "CDS", "cluster", Cluster, False, {DEFAULT_PROXY_TYPE: _CDS_SKIP}, "mesh.xds.cds:CdsGenerator"),
    XdsType(ENDPOINT, "EDS", "endpoint", ClusterLoadAssignment, True, {DEFAULT_PROXY_TYPE: _EDS_SKIP},
            "mesh.xds.eds:EdsGenerator"),
    XdsType(LISTENER, "LDS", "listener", Listener, False, _LDS_SKIP, "mesh.xds.lds:LdsGenerator"),
    XdsType(ROUTE, "RDS", "route", RouteConfiguration, True, {DEFAULT_PROXY_TYPE: _RDS_SKIP},
            "mesh.xds.rds:RdsGenerator"),
)
BY_URL = {t.url: t for t in TYPES}

PUSH_ORDER = tuple(t.url for t in TYPES)
NAMED_TYPES = tuple(t.url for t in TYPES if t.named)
MESSAGE_CLASSES = {t.url: t.message for t in TYPES}
SHORT_NAMES = {t.url: t.short for t in TYPES}


# StatusGen's types (``mesh.xds.statusgen``): about istiod itself, for debug clients, never for
# Envoy. https://github.com/istio/istio/blob/1.19.0/pilot/pkg/xds/statusgen.go#L31-L52 and
# ``DebugType`` https://github.com/istio/istio/blob/1.19.0/pilot/pkg/xds/v3/model.go#L36-L37;
# the ECDS type URL ``ExtensionConfigurationType`` (model.go#L31).
DEBUG_TYPE = "istio.io/debug"  # DebugGen's own (authenticated HTTP debug over xDS): not served
DEBUG_PREFIX = DEBUG_TYPE + "/"  # TypeDebugPrefix: answered on every request, never watched
DEBUG_SYNCZ = DEBUG_PREFIX + "syncz"  # TypeDebugSyncronization: what istioctl x proxy-status --xds-address reads
DEBUG_CONFIG_DUMP = DEBUG_PREFIX + "config_dump"  # TypeDebugConfigDump: one proxy's config dump
CONNECT = "istio.io/connect"  # TypeURLConnect: connected nodes, then connect events
DISCONNECT = "istio.io/disconnect"  # TypeURLDisconnect: disconnect events
NACK = "istio.io/nack"  # TypeURLNACK: the refused DiscoveryRequests
EVENT_GENERATOR = "event"  # node metadata GENERATOR of a debug client; StatusGen's key in the generator map
STATUS_GENERATOR = "mesh.xds.statusgen:StatusGen"
EXTENSION_CONFIG = _PREFIX + "envoy.config.core.v3.TypedExtensionConfig"  # ECDS: reported by syncz, not served
SYNCZ_TYPES = (LISTENER, ROUTE, ENDPOINT, CLUSTER, EXTENSION_CONFIG)  # debugSyncz's order


def short_name(type_url: str) -> str:
    """``GetShortType``: CDS, EDS, LDS, RDS; another type's last URL part."""
    return SHORT_NAMES.get(type_url, type_url.rsplit(".", 1)[-1])


def skipped_configs(type_url: str, proxy_type: str = DEFAULT_PROXY_TYPE) -> frozenset[str]:
    """The config kinds ``type_url``'s resources ignore, for a proxy of ``proxy_type``."""
    skipped = BY_URL[type_url].skipped
    return skipped.get(proxy_type, skipped[DEFAULT_PROXY_TYPE])
