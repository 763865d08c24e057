"""The Envoy bootstrap a sidecar starts from, field by field as pilot-agent writes it.

Go: pilot-agent renders https://github.com/istio/istio/blob/1.19.0/tools/packaging/common/envoy_bootstrap.json
with values computed in https://github.com/istio/istio/blob/1.19.0/pkg/bootstrap/config.go; the node id
comes from ``ServiceNode`` (https://github.com/istio/istio/blob/1.19.0/pilot/pkg/model/context.go#L884-L892).
The result keeps the template's snake_case field names, so it diffs line by line against a real
sidecar's ``istioctl proxy-config bootstrap``.

What it holds (template lines in brackets):

* ``node`` [L2-L23]: ``sidecar~<pod-ip>~<pod>.<ns>~<ns>.svc.cluster.local``, the cluster
  ``<app>.<ns>``, an empty locality, and the metadata istiod reads (what the injected
  ``ISTIO_META_*`` environment gives pilot-agent: namespace, name, labels, instance IPs,
  service account, ``INTERCEPTION_MODE``, the status/Prometheus ports, ``PROXY_CONFIG``...).
* ``layered_runtime`` [L24-L35]: a static layer with Istio's runtime flags
  (``extractRuntimeFlags``, config.go#L305-L336: ``overload.global_downstream_max_connections``,
  ``re2.max_program_size.error_level``...) and the admin layer.
* ``bootstrap_extensions`` [L36-L59]: the internal listener.
* ``stats_config`` [L60-L168]: Istio's stat tags, and an inclusion list with the prefixes the
  readiness probe needs (``requiredEnvoyStatsMatcherInclusionPrefixes``, config.go#L58-L66) after
  those of the pod's ``sidecar.istio.io/statsInclusion{Prefixes,Suffixes,Regexps}`` annotations.
  Everything else (per-cluster counters such as ``cluster.outbound|...upstream_rq_200``) is not
  kept, as in a real sidecar.
* ``admin`` [L169-L186]: ``localhost:15000``, access log to ``/dev/null``.
* ``dynamic_resources`` [L187-L210]: LDS and CDS over ADS, ``api_type`` ``GRPC`` or
  ``DELTA_GRPC`` when ``ISTIO_DELTA_XDS`` is on (config.go#L86-L89), node on the first message only.
* ``static_resources.clusters`` [L211-L334]: ``prometheus_stats`` (Envoy's admin),
  ``agent`` (the agent's status port 15020), ``sds-grpc`` (the agent's SDS socket,
  ``./var/run/secrets/workload-spiffe-uds/socket``) and ``xds-grpc`` (the agent's XDS proxy,
  ``./etc/istio/proxy/XDS``), with the template's timeouts, circuit breakers and keepalive.
* ``static_resources.listeners`` [L495-L594]: ``<wildcard>:15090`` routing ``/stats/prometheus``
  to ``prometheus_stats`` and ``<wildcard>:15021`` routing ``/healthz/ready`` to ``agent``.

Pod networking decides two template values. In a pod's network namespace (``netns=True``)
they are Istio's: ``localhost`` 127.0.0.1, ``wildcard`` 0.0.0.0, ``INTERCEPTION_MODE``
REDIRECT. In the loopback fallback every pod shares the root namespace, so **both are the
pod's loopback IP** (127.10.x.y): admin, status and Prometheus ports of different pods do not
collide, and the proxy runs in Istio's ``INTERCEPTION_MODE`` NONE (no capture: the apps use the
HTTP proxy listener, ``HTTP_PROXY_PORT``). A caller may name the mode itself.

With a workload certificate the node metadata also says ``MESH_WORKLOAD_CERT: SDS`` so istiod
gives this proxy mTLS clusters and listeners (mesh's signal; Istio sends mTLS to every sidecar).

Simplifications, named: no tracing/metrics-service/access-log-service clusters (the template's
optional parts), no ``WORKLOAD_NAME``/``OWNER``/``APP_CONTAINERS``/``POD_PORTS`` metadata, no
``ProxyConfig.proxyStatsMatcher`` or extra stat tags (the ``sidecar.istio.io/statsInclusion*``
annotations do work), the profile path under the agent's workdir; the ADS gRPC service has a retry back-off
of 0.1-1 s (Envoy's default reaches 30 s) so a restarted istiod is picked up quickly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mesh.networking.tls import SDS_CLUSTER, SDS_METADATA

ISTIO_VERSION = "1.19.0"
XDS_CLUSTER = "xds-grpc"
PROMETHEUS_CLUSTER = "prometheus_stats"
AGENT_CLUSTER = "agent"
CONFIG_PATH = "./etc/istio/proxy"  # ProxyConfig.configPath, relative to the agent's (and Envoy's) workdir
XDS_SOCKET = f"{CONFIG_PATH}/XDS"  # pilot-agent's XdsUdsPath: <configPath>/XDS
SDS_SOCKET = "./var/run/secrets/workload-spiffe-uds/socket"
PROFILE_PATH = "./var/lib/istio/data/envoy.prof"
ADMIN_PORT = 15000  # ProxyConfig.proxyAdminPort
STATUS_PORT = 15020  # ProxyConfig.statusPort: the agent's status server
ENVOY_STATUS_PORT = 15021  # ENVOY_STATUS_PORT: Envoy's /healthz/ready listener
ENVOY_PROMETHEUS_PORT = 15090  # ENVOY_PROMETHEUS_PORT: Envoy's /stats/prometheus listener
DELTA_ENV = "ISTIO_DELTA_XDS"  # features.DeltaXds, off by default in 1.19

# extractRuntimeFlags' defaults (config.go#L307-L312)
RUNTIME_FLAGS = {
    "overload.global_downstream_max_connections": "2147483647",
    "re2.max_program_size.error_level": "32768",
    "envoy.deprecated_features:envoy.config.listener.v3.Listener.hidden_envoy_deprecated_use_original_dst": True,
    "envoy.reloadable_features.http_reject_path_with_fragment": False,
}

# The template's stats_tags (L62-L129), in its order; no extraStatTags.
STATS_TAGS = [
    ("cluster_name", r"^cluster\.((.+?(\..+?\.svc\.cluster\.local)?)\.)"),
    ("tcp_prefix", r"^tcp\.((.*?)\.)\w+?$"),
    ("response_code", r"_rq(_(\d{3}))$"),
    ("response_code_class", r"_rq(_(\dxx))$"),
    ("http_conn_manager_listener_prefix",
     r"^listener(?=\.).*?\.http\.(((?:[_.[:digit:]]*|[_\[\]aAbBcCdDeEfF[:digit:]]*))\.)"),
    ("http_conn_manager_prefix", r"^http\.(((?:[_.[:digit:]]*|[_\[\]aAbBcCdDeEfF[:digit:]]*))\.)"),
    ("listener_address", r"^listener\.(((?:[_.[:digit:]]*|[_\[\]aAbBcCdDeEfF[:digit:]]*))\.)"),
    ("mongo_prefix", r"^mongo\.(.+?)\.(collection|cmd|cx_|op_|delays_|decoding_)(.*?)$"),
    ("cache", r"(cache\.(.+?)\.)"),
    ("component", r"(component\.(.+?)\.)"),
    ("tag", r"(tag\.(.+?);\.)"),
    ("wasm_filter", r"(wasm_filter\.(.+?)\.)"),
    ("authz_enforce_result", r"rbac(\.(allowed|denied))"),
    ("authz_dry_run_action", r"(\.istio_dry_run_(allow|deny)_)"),
    ("authz_dry_run_result", r"(\.shadow_(allowed|denied))"),
]
# config.go#L58-L66: what the readiness probe and draining read, always included
INCLUSION_PREFIXES = ["cluster_manager", "listener_manager", "server", "cluster.xds-grpc", "wasm"]
INCLUSION_SUFFIXES = ["rbac.allowed", "rbac.denied", "shadow_allowed", "shadow_denied"]
INCLUSION_REGEXPS = [r"vhost\.*\.route\.*"]
# the pod annotations that add to them (getStatsOptions, config.go#L204-L283)
STATS_ANNOTATIONS = {"prefix": "sidecar.istio.io/statsInclusionPrefixes",
                     "suffix": "sidecar.istio.io/statsInclusionSuffixes",
                     "safe_regex": "sidecar.istio.io/statsInclusionRegexps"}


@dataclass
class PodIdentity:
    name: str
    namespace: str
    ip: str
    labels: dict[str, str] = field(default_factory=dict)
    domain: str = "cluster.local"
    service_account: str = "default"
    proxy_type: str = "sidecar"  # or "router": an ingress gateway
    annotations: dict[str, str] = field(default_factory=dict)
    # More node metadata, as ``ISTIO_META_<NAME>`` environment variables give pilot-agent (a VM's
    # ``AUTO_REGISTER_GROUP``, ``NETWORK``): added last, so they win (config.go#L563-L680).
    extra_metadata: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_pod(cls, pod: dict, proxy_type: str = "sidecar", domain: str = "cluster.local") -> PodIdentity:
        """What pilot-agent learns about its pod (from the downward API): name, namespace, IP,
        labels, annotations, service account."""
        meta = pod["metadata"]
        return cls(meta["name"], meta["namespace"], pod["status"]["podIP"], dict(meta.get("labels") or {}),
                   domain=domain, service_account=(pod.get("spec") or {}).get("serviceAccountName", "default"),
                   proxy_type=proxy_type, annotations=dict(meta.get("annotations") or {}))

    @property
    def node_id(self) -> str:
        return f"{self.proxy_type}~{self.ip}~{self.name}.{self.namespace}~{self.namespace}.svc.{self.domain}"

    @property
    def service_cluster(self) -> str:
        """``node.cluster``: the workload's app label (or pod name) and namespace."""
        app = self.labels.get("app") or self.name
        return f"{app}.{self.namespace}"


def delta_from_env(env: dict[str, str]) -> bool:
    """``ISTIO_DELTA_XDS`` as Istio parses a boolean env var (``strconv.ParseBool``)."""
    value = env.get(DELTA_ENV, "").strip()
    if value in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if value in ("", "0", "f", "F", "FALSE", "false", "False"):
        return False
    raise ValueError(f"{DELTA_ENV}={value!r}: not a boolean (true/false/1/0)")


def build_bootstrap(pod: PodIdentity, xds_host: str, xds_port: int, http_proxy_port: int | None = 15080,
                    sds_socket: str | None = None, interception_mode: str | None = None, *,
                    xds_socket: str | None = None, delta: bool = False, netns: bool = False,
                    concurrency: int = 2) -> dict:
    """The bootstrap for ``pod``. Envoy reaches xDS through ``xds_socket`` (the agent's XDS
    proxy) when given, else straight at ``xds_host:xds_port``; ``sds_socket`` set means the agent
    serves a workload certificate there; ``interception_mode`` None means REDIRECT in a pod's
    namespace and NONE in the loopback fallback; ``http_proxy_port`` None: no HTTP proxy listener."""
    # Istio's IPv4 values in a pod's namespace; the pod's own loopback IP in the fallback
    localhost, wildcard = ("127.0.0.1", "0.0.0.0") if netns else (pod.ip, pod.ip)
    mode = interception_mode or ("REDIRECT" if netns else "NONE")
    metadata = _node_metadata(pod, f"{xds_host}:{xds_port}", http_proxy_port, mode, concurrency)
    if sds_socket:
        metadata[SDS_METADATA] = "SDS"
    xds_address = {"pipe": {"path": xds_socket}} if xds_socket else _socket_address(xds_host, xds_port)
    return {
        "node": {"id": pod.node_id, "cluster": pod.service_cluster, "locality": {}, "metadata": metadata},
        "layered_runtime": {"layers": [{"name": "global config", "static_layer": dict(RUNTIME_FLAGS)},
                                       {"name": "admin", "admin_layer": {}}]},
        "bootstrap_extensions": [{"name": "envoy.bootstrap.internal_listener", "typed_config": {
            "@type": "type.googleapis.com/udpa.type.v1.TypedStruct",
            "type_url": "type.googleapis.com/envoy.extensions.bootstrap.internal_listener.v3.InternalListener",
            "value": {"buffer_size_kb": 64}}}],
        "stats_config": _stats_config(pod),
        "admin": {
            "access_log": [{"name": "envoy.access_loggers.file", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                "path": "/dev/null"}}],
            "profile_path": PROFILE_PATH,
            "address": _socket_address(localhost, ADMIN_PORT),
        },
        "dynamic_resources": {
            "lds_config": {"ads": {}, "initial_fetch_timeout": "0s", "resource_api_version": "V3"},
            "cds_config": {"ads": {}, "initial_fetch_timeout": "0s", "resource_api_version": "V3"},
            "ads_config": {
                "api_type": "DELTA_GRPC" if delta else "GRPC",
                "set_node_on_first_message_only": True,
                "transport_api_version": "V3",
                "grpc_services": [{"envoy_grpc": {"cluster_name": XDS_CLUSTER, "retry_policy": {
                    "retry_back_off": {"base_interval": "0.1s", "max_interval": "1s"}}}}],
            },
        },
        "static_resources": {
            "clusters": [
                _static_cluster(PROMETHEUS_CLUSTER, _socket_address(localhost, ADMIN_PORT, tcp=True), "0.250s"),
                _static_cluster(AGENT_CLUSTER, _socket_address(localhost, STATUS_PORT, tcp=True), "0.250s"),
                {**_static_cluster(SDS_CLUSTER, {"pipe": {"path": sds_socket or SDS_SOCKET}}, "1s"),
                 "typed_extension_protocol_options": _http2()},
                _xds_cluster(xds_address),
            ],
            "listeners": [
                _http_listener(wildcard, ENVOY_PROMETHEUS_PORT, "stats", "/stats/prometheus", PROMETHEUS_CLUSTER),
                _http_listener(wildcard, ENVOY_STATUS_PORT, "agent", "/healthz/ready", AGENT_CLUSTER),
            ],
        },
    }


def _node_metadata(pod: PodIdentity, discovery_address: str, http_proxy_port: int | None,
                   interception_mode: str, concurrency: int) -> dict:
    """What the injected pod's ``ISTIO_META_*`` environment and pilot-agent's own options put in
    the node (``GetNodeMetaData``, config.go#L563-L680)."""
    metadata = {
        "NAMESPACE": pod.namespace,
        "NAME": pod.name,
        "INSTANCE_IPS": pod.ip,
        "LABELS": dict(pod.labels),
        "ANNOTATIONS": dict(pod.annotations),
        "SERVICE_ACCOUNT": pod.service_account,
        "ISTIO_VERSION": ISTIO_VERSION,
        "CLUSTER_ID": "Kubernetes",
        "MESH_ID": pod.domain,  # the injector's default: the trust domain
        "INTERCEPTION_MODE": interception_mode,
        "ENVOY_STATUS_PORT": ENVOY_STATUS_PORT,
        "ENVOY_PROMETHEUS_PORT": ENVOY_PROMETHEUS_PORT,
        "PILOT_SAN": ["istiod.istio-system.svc"],
        "PROXY_CONFIG": {"configPath": CONFIG_PATH, "discoveryAddress": discovery_address,
                         "proxyAdminPort": ADMIN_PORT, "statusPort": STATUS_PORT, "concurrency": concurrency,
                         "serviceCluster": pod.service_cluster},
    }
    if http_proxy_port is not None:
        metadata["HTTP_PROXY_PORT"] = str(http_proxy_port)  # mesh's: the apps' outbound HTTP proxy listener
    metadata.update(pod.extra_metadata)
    return metadata


def _inclusions(pod: PodIdentity, kind: str, required: list[str]) -> list[str]:
    """An annotation's comma-separated values, then the required ones; ``{pod_ip}`` filled in
    (``parseOption`` in getStatsOptions)."""
    given = [v for v in pod.annotations.get(STATS_ANNOTATIONS[kind], "").split(",") if v]
    return [v.replace("{pod_ip}", pod.ip) for v in [*given, *required]]


def _stats_config(pod: PodIdentity) -> dict:
    patterns = [{"prefix": "reporter="}, *({"prefix": p} for p in _inclusions(pod, "prefix", INCLUSION_PREFIXES)),
                *({"suffix": s} for s in _inclusions(pod, "suffix", INCLUSION_SUFFIXES)),
                *({"safe_regex": {"regex": r}} for r in _inclusions(pod, "safe_regex", INCLUSION_REGEXPS)),
                {"prefix": "component"}, {"prefix": "istio"}]
    return {"use_all_default_tags": False,
            "stats_tags": [{"tag_name": name, "regex": regex} for name, regex in STATS_TAGS],
            "stats_matcher": {"inclusion_list": {"patterns": patterns}}}


def _socket_address(host: str, port: int, tcp: bool = False) -> dict:
    address = {"address": host, "port_value": port}
    return {"socket_address": {"protocol": "TCP", **address} if tcp else address}


def _http2() -> dict:
    return {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
        "explicit_http_config": {"http2_protocol_options": {}}}}


def _static_cluster(name: str, address: dict, connect_timeout: str) -> dict:
    return {"name": name, "type": "STATIC", "connect_timeout": connect_timeout, "lb_policy": "ROUND_ROBIN",
            "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {
                "address": address}}]}]}}


def _xds_cluster(address: dict) -> dict:
    limits = {"max_connections": 100000, "max_pending_requests": 100000, "max_requests": 100000}
    return {**_static_cluster(XDS_CLUSTER, address, "1s"),
            "circuit_breakers": {"thresholds": [{"priority": "DEFAULT", **limits}, {"priority": "HIGH", **limits}]},
            "upstream_connection_options": {"tcp_keepalive": {"keepalive_time": 300}},
            # deprecated in Envoy (it logs a warning) and still what the template sets
            "max_requests_per_connection": 1,
            "typed_extension_protocol_options": _http2()}


def _http_listener(address: str, port: int, stat_prefix: str, prefix: str, cluster: str) -> dict:
    """The template's two static listeners: one route, ``prefix`` to ``cluster``."""
    return {
        "address": _socket_address(address, port, tcp=True),
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3"
                         ".HttpConnectionManager",
                "codec_type": "AUTO",
                "stat_prefix": stat_prefix,
                "route_config": {"virtual_hosts": [{"name": "backend", "domains": ["*"], "routes": [
                    {"match": {"prefix": prefix}, "route": {"cluster": cluster}}]}]},
                "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
            }}]}],
    }
