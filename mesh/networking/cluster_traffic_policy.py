"""A DestinationRule's traffic policy applied to one outbound cluster: connection pool, outlier
detection, load balancer, and which policy a cluster gets (top level, port level, subset).

Go (1.19 keeps these in cluster.go and cluster_builder.go; 1.20 moved them to
cluster_traffic_policy.go): ``applyTrafficPolicy``
https://github.com/istio/istio/blob/1.19.0/pilot/pkg/networking/core/v1alpha3/cluster_builder.go#L774-L796
— connection pool first, then for outbound clusters the HTTP/2 upgrade, outlier detection, the
load balancer and TLS (``networking/cluster_tls.py``). The pieces:

* ``MergeTrafficPolicy`` (cluster_builder.go#L313-L359): the rule's ``portLevelSettings`` entry
  for the cluster's port replaces all four parts of the top-level policy — a part the entry leaves
  out falls back to the default, not to the top level — and a subset's policy then replaces the
  parts it sets, its own port-level entry again replacing all four.
* ``applyConnectionPool`` (cluster_builder.go#L887-L962) with the "unlimited" default thresholds
  ``getDefaultCircuitBreakerThresholds`` (cluster.go#L62-L76) and keepalive ``applyTCPKeepalive``
  / ``setKeepAliveSettings`` (cluster.go#L740-L771). Zero means "unset" for every number, as in Go.
* ``applyH2Upgrade`` / ``shouldH2Upgrade`` (cluster_builder.go#L710-L752), ``setH2Options``
  (#L754-L772), ``setUseDownstreamProtocol`` (#L1249-L1260) and the options' final form
  ``MutableCluster.build`` (#L1339-L1360).
* ``applyOutlierDetection`` (cluster.go#L773-L841): success-rate ejection always off, each
  consecutive-error kind enforced at 100% when its count is above zero, and the panic threshold
  set to ``minHealthPercent`` (0 when unset: a small k8s service should not fall into panic mode).
* ``applyLoadBalancer`` (cluster.go#L847-L894) with ``applyRoundRobinLoadBalancer``,
  ``applyLeastRequestLoadBalancer`` and ``setSlowStartConfig`` (#L907-L938),
  ``ApplyRingHashLoadBalancer`` (#L940-L984), and whether localities are weighted
  ``loadbalancer.GetLocalityLbSetting``
  https://github.com/istio/istio/blob/1.19.0/pilot/pkg/networking/core/v1alpha3/loadbalancer/loadbalancer.go#L37-L64.

Durations arrive as Istio accepts them (Go's ``time.ParseDuration``: ``5m``, ``100ms``) and leave
in protobuf-JSON form (``300s``, ``0.100s``).

Simplifications, named: MeshConfig's ``tcpKeepalive``, ``h2UpgradePolicy`` and
``localityLbSetting`` are taken at their 1.19 defaults (none, DO_NOT_UPGRADE, enabled) rather than
read from the mesh's config; locality ``distribute``/``failover``/``failoverPriority`` rewrite an
EDS cluster's endpoints per proxy in Istio (``ApplyLocalityLBSetting``, loadbalancer.go#L66-L90),
which mesh's EDS (one answer per cluster, shared by all proxies) does not do: what one cluster
carries — weighted localities on or off — is applied. The deprecated ``consecutiveErrors`` is
ignored, as 1.19 ignores it; ``PILOT_SEND_UNHEALTHY_ENDPOINTS`` and the Redis filter are off, as
by default.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

from mesh.config.validation.report import parse_go_duration
from mesh.networking.extensions import HTTP_PROTOCOL_OPTIONS_TYPE

UINT32_MAX = 4294967295
HTTP_PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
POLICY_PARTS = ("connectionPool", "loadBalancer", "outlierDetection", "tls")
DEFAULT_RING_SIZE = 1024  # Envoy's own default, written out by Istio (cluster.go#L971-L972)


@dataclass
class MutableCluster:
    """A cluster under construction and its HTTP protocol options, which only become the
    ``typedExtensionProtocolOptions`` entry at the end (``MutableCluster``, cluster_builder.go#L89-L93)."""

    cluster: dict
    http_options: dict | None = field(default=None)

    def options(self) -> dict:
        if self.http_options is None:
            self.http_options = {}
        return self.http_options

    def is_http2(self) -> bool:
        """``isHttp2Cluster`` (cluster_builder.go#L1268-L1271)."""
        return "http2ProtocolOptions" in ((self.http_options or {}).get("explicitHttpConfig") or {})

    def build(self) -> dict:
        if self.http_options is not None:
            opts = self.http_options
            if "explicitHttpConfig" not in opts and "useDownstreamProtocolConfig" not in opts:
                opts["explicitHttpConfig"] = {"httpProtocolOptions": {}}  # the field Envoy requires
            self.cluster["typedExtensionProtocolOptions"] = {
                HTTP_PROTOCOL_OPTIONS: {"@type": HTTP_PROTOCOL_OPTIONS_TYPE, **opts}}
        return self.cluster


@lru_cache(maxsize=256)  # a mesh uses a handful of distinct values, on every cluster of every push
def proto_duration(text: str) -> str:
    """``5m`` → ``300s``, ``100ms`` → ``0.100s``: protobuf JSON, the form Envoy's parser takes."""
    nanos, err = parse_go_duration(str(text))
    if err or nanos is None:
        raise ValueError(f"bad duration {text!r}: {err}")
    seconds, rest = divmod(nanos, 10**9)
    if not rest:
        return f"{seconds}s"
    for digits in (3, 6, 9):
        unit = 10 ** (9 - digits)
        if rest % unit == 0:
            return f"{seconds}.{rest // unit:0{digits}d}s"
    raise AssertionError("unreachable")


def _seconds(text: str) -> int:
    """Whole seconds, as Go's ``uint32(d.Seconds)`` keeps them."""
    nanos, err = parse_go_duration(str(text))
    if err or nanos is None:
        raise ValueError(f"bad duration {text!r}: {err}")
    return nanos // 10**9


# -- which policy ---------------------------------------------------------------------------------

def merge_traffic_policy(original: dict | None, subset: dict | None, port: int | None) -> dict | None:
    """``MergeTrafficPolicy``: ``merge_traffic_policy(None, rule_policy, port)`` is the rule's
    policy for one port; merging a subset's over that gives the subset cluster's."""
    if subset is None:
        return original
    if original is not None and original.get("portLevelSettings"):
        original = merge_traffic_policy(None, original, port)
    merged = {k: original[k] for k in POLICY_PARTS if original and original.get(k) is not None}
    merged.update({k: subset[k] for k in POLICY_PARTS if subset.get(k) is not None})
    if port is not None:
        for pls in subset.get("portLevelSettings") or []:
            if int((pls.get("port") or {}).get("number") or 0) == port:
                # port-level settings do not inherit: what the entry leaves out is the default
                merged = {k: pls[k] for k in POLICY_PARTS if pls.get(k) is not None}
                break
    return merged


# -- connection pool ------------------------------------------------------------------------------

def default_thresholds() -> dict:
    """Envoy's small defaults (1024 connections, 3 retries) lifted to "unlimited": during pod
    churn they would trip before istiod's next endpoint update arrives."""
    return {"maxConnections": UINT32_MAX, "maxPendingRequests": UINT32_MAX, "maxRequests": UINT32_MAX,
            "maxRetries": UINT32_MAX, "trackRemaining": True}


def apply_connection_pool(mc: MutableCluster, pool: dict, mesh_connect_timeout: str) -> None:
    http, tcp = pool.get("http") or {}, pool.get("tcp") or {}
    threshold = default_thresholds()
    if int(http.get("http2MaxRequests") or 0) > 0:  # Envoy applies it to HTTP/2 only
        threshold["maxRequests"] = int(http["http2MaxRequests"])
    if int(http.get("http1MaxPendingRequests") or 0) > 0:  # and this to HTTP/1.1 only
        threshold["maxPendingRequests"] = int(http["http1MaxPendingRequests"])
    if int(http.get("maxRetries") or 0) > 0:
        threshold["maxRetries"] = int(http["maxRetries"])
    if int(tcp.get("maxConnections") or 0) > 0:
        threshold["maxConnections"] = int(tcp["maxConnections"])
    mc.cluster["connectTimeout"] = proto_duration(tcp.get("connectTimeout") or mesh_connect_timeout)
    _apply_tcp_keepalive(mc.cluster, tcp.get("tcpKeepalive"))
    mc.cluster["circuitBreakers"] = {"thresholds": [threshold]}

    common: dict = {}
    if http.get("idleTimeout"):
        common["idleTimeout"] = proto_duration(http["idleTimeout"])
    if int(http.get("maxRequestsPerConnection") or 0) > 0:
        common["maxRequestsPerConnection"] = int(http["maxRequestsPerConnection"])
    if tcp.get("maxConnectionDuration"):
        common["maxConnectionDuration"] = proto_duration(tcp["maxConnectionDuration"])
    if common:
        mc.options().setdefault("commonHttpProtocolOptions", {}).update(common)
    if http.get("useClientProtocol"):
        set_use_downstream_protocol(mc)


def _apply_tcp_keepalive(cluster: dict, keepalive: dict | None) -> None:
    """An empty ``tcpKeepalive`` turns SO_KEEPALIVE on with the kernel's timings; each field set
    overrides one (whole seconds)."""
    if keepalive is None:
        return
    ka = cluster.setdefault("upstreamConnectionOptions", {"tcpKeepalive": {}})["tcpKeepalive"]
    if int(keepalive.get("probes") or 0) > 0:
        ka["keepaliveProbes"] = int(keepalive["probes"])
    if keepalive.get("time"):
        ka["keepaliveTime"] = _seconds(keepalive["time"])
    if keepalive.get("interval"):
        ka["keepaliveInterval"] = _seconds(keepalive["interval"])


def set_h2_options(mc: MutableCluster) -> None:
    """Speak HTTP/2 upstream. Go checks ``UpstreamHttpProtocolOptions`` (auto SNI, off by default)
    rather than the protocol choice, so this replaces a ``useClientProtocol`` set before it."""
    opts = mc.options()
    if "upstreamHttpProtocolOptions" not in opts:
        opts.pop("useDownstreamProtocolConfig", None)
        opts["explicitHttpConfig"] = {"http2ProtocolOptions": {}}


def set_use_downstream_protocol(mc: MutableCluster) -> None:
    """HTTP/1.1 upstream for HTTP/1.1 callers, HTTP/2 for HTTP/2 ones."""
    opts = mc.options()
    opts.pop("explicitHttpConfig", None)
    opts["useDownstreamProtocolConfig"] = {"httpProtocolOptions": {}, "http2ProtocolOptions": {}}


def apply_h2_upgrade(mc: MutableCluster, pool: dict) -> None:
    """``h2UpgradePolicy: UPGRADE`` upgrades even a sniffed port; without it, only the mesh-wide
    policy could (DO_NOT_UPGRADE by default)."""
    if (pool.get("http") or {}).get("h2UpgradePolicy") == "UPGRADE":
        set_h2_options(mc)


# -- outlier detection ----------------------------------------------------------------------------

def apply_outlier_detection(cluster: dict, outlier: dict | None) -> None:
    if outlier is None:
        return
    out: dict = {"enforcingSuccessRate": 0}
    if outlier.get("consecutive5xxErrors") is not None:
        n = int(outlier["consecutive5xxErrors"])
        out["consecutive5xx"] = n
        out["enforcingConsecutive5xx"] = 100 if n > 0 else 0
    if outlier.get("consecutiveGatewayErrors") is not None:
        n = int(outlier["consecutiveGatewayErrors"])
        out["consecutiveGatewayFailure"] = n
        out["enforcingConsecutiveGatewayFailure"] = 100 if n > 0 else 0
    if outlier.get("interval"):
        out["interval"] = proto_duration(outlier["interval"])
    if outlier.get("baseEjectionTime"):
        out["baseEjectionTime"] = proto_duration(outlier["baseEjectionTime"])
    if int(outlier.get("maxEjectionPercent") or 0) > 0:
        out["maxEjectionPercent"] = int(outlier["maxEjectionPercent"])
    if outlier.get("splitExternalLocalOriginErrors"):
        out["splitExternalLocalOriginErrors"] = True
        if int(outlier.get("consecutiveLocalOriginFailures") or 0) > 0:
            out["consecutiveLocalOriginFailure"] = int(outlier["consecutiveLocalOriginFailures"])
            out["enforcingConsecutiveLocalOriginFailure"] = 100
        out["enforcingLocalOriginSuccessRate"] = 0
    cluster["outlierDetection"] = out
    min_health = int(outlier.get("minHealthPercent") or 0)
    if min_health >= 0:
        cluster["commonLbConfig"]["healthyPanicThreshold"] = {"value": float(min_health)} if min_health else {}


# -- load balancer --------------------------------------------------------------------------------

def locality_lb_setting(rule_setting: dict | None, mesh_setting: dict | None = None) -> dict | None:
    """``GetLocalityLbSetting``: on unless the mesh turns it off, and the rule's own setting (if
    any) decides over the mesh's."""
    mesh_setting = {"enabled": True} if mesh_setting is None else mesh_setting
    enabled = bool(mesh_setting) and mesh_setting.get("enabled", True) is not False
    if rule_setting is not None:
        enabled = rule_setting.get("enabled", True) is not False
    if not enabled:
        return None
    return rule_setting if rule_setting is not None else mesh_setting


def apply_load_balancer(cluster: dict, lb: dict | None) -> None:
    lb = lb or {}
    if locality_lb_setting(lb.get("localityLbSetting")) is not None:
        cluster["commonLbConfig"]["localityWeightedLbConfig"] = {}
    if cluster["type"] == "ORIGINAL_DST":
        cluster["lbPolicy"] = "CLUSTER_PROVIDED"
        return
    simple = lb.get("simple", "")
    if simple in ("LEAST_CONN", "LEAST_REQUEST"):
        _slow_start(cluster, "LEAST_REQUEST", "leastRequestLbConfig", lb)
    elif simple == "RANDOM":
        cluster["lbPolicy"] = "RANDOM"
    elif simple == "ROUND_ROBIN":
        _slow_start(cluster, "ROUND_ROBIN", "roundRobinLbConfig", lb)
    elif simple == "PASSTHROUGH":
        cluster["lbPolicy"] = "CLUSTER_PROVIDED"
        cluster["type"] = "ORIGINAL_DST"
        cluster.pop("loadAssignment", None)
    else:  # unset: Istio's default algorithm is LEAST_REQUEST
        _slow_start(cluster, "LEAST_REQUEST", "leastRequestLbConfig", lb)
    _apply_ring_hash(cluster, lb.get("consistentHash"))


def _slow_start(cluster: dict, policy: str, config_key: str, lb: dict) -> None:
    cluster["lbPolicy"] = policy
    if lb.get("warmupDurationSecs"):
        cluster[config_key] = {"slowStartConfig": {"slowStartWindow": proto_duration(lb["warmupDurationSecs"])}}


def _apply_ring_hash(cluster: dict, hashing: dict | None) -> None:
    if hashing is None:
        return
    cluster.pop("leastRequestLbConfig", None)  # Go replaces the one LbConfig oneof
    cluster.pop("roundRobinLbConfig", None)
    if hashing.get("maglev") is not None:
        cluster["lbPolicy"] = "MAGLEV"
        if int(hashing["maglev"].get("tableSize") or 0):
            cluster["maglevLbConfig"] = {"tableSize": str(int(hashing["maglev"]["tableSize"]))}
    elif hashing.get("ringHash") is not None:
        cluster["lbPolicy"] = "RING_HASH"
        if int(hashing["ringHash"].get("minimumRingSize") or 0):
            cluster["ringHashLbConfig"] = {"minimumRingSize": str(int(hashing["ringHash"]["minimumRingSize"]))}
    else:  # neither: the deprecated top-level minimumRingSize, or Envoy's 1024 written out
        cluster["lbPolicy"] = "RING_HASH"
        size = int(hashing.get("minimumRingSize") or 0) or DEFAULT_RING_SIZE
        cluster["ringHashLbConfig"] = {"minimumRingSize": str(size)}
