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
