"""The ``@type`` names of the Envoy extensions mesh's builders put in ``typed_config`` fields.

Go: istiod keeps them as ``wellknown`` names and ``protoconv.MessageToAny`` calls, e.g.
https://github.com/istio/istio/blob/1.19.0/pilot/pkg/networking/core/v1alpha3/listener_builder.go#L289.
``mesh.xds.resources`` imports each module that defines these messages, so they can be serialized.
"""

_PREFIX = "type.googleapis.com/"
HCM_TYPE = _PREFIX + "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER_TYPE = _PREFIX + "envoy.extensions.filters.http.router.v3.Router"
FAULT_TYPE = _PREFIX + "envoy.extensions.filters.http.fault.v3.HTTPFault"
HTTP_PROTOCOL_OPTIONS_TYPE = _PREFIX + "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
PREVIOUS_HOSTS_TYPE = _PREFIX + "envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"
CORS_TYPE = _PREFIX + "envoy.extensions.filters.http.cors.v3.Cors"
GRPC_STATS_TYPE = _PREFIX + "envoy.extensions.filters.http.grpc_stats.v3.FilterConfig"
TCP_PROXY_TYPE = _PREFIX + "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
HTTP_INSPECTOR_TYPE = _PREFIX + "envoy.extensions.filters.listener.http_inspector.v3.HttpInspector"
ORIGINAL_DST_TYPE = _PREFIX + "envoy.extensions.filters.listener.original_dst.v3.OriginalDst"
UUID_REQUEST_ID_TYPE = _PREFIX + "envoy.extensions.request_id.uuid.v3.UuidRequestIdConfig"
