"""Prometheus metrics of the push pipeline, named as istiod names them.

Go: https://github.com/istio/istio/blob/1.19.0/pilot/pkg/xds/monitoring.go#L35-L140 (names,
labels and histogram buckets). Label values come from fixed sets only (known xDS types,
trigger reasons), so no client can grow the number of series. ``XdsMetrics`` owns its own ``CollectorRegistry`` so several
servers (tests, notebooks) never collide; ``generate_latest(metrics.registry)`` is the body of
``/metrics`` on the monitoring port.

| metric | what |
| --- | --- |
| ``pilot_xds_pushes{type,protocol}`` | responses sent, by xDS type (``cds``, ``eds``, ``lds``, ``rds``) and protocol (``sotw``, ``delta``; mesh's label) |
| ``pilot_xds_config_size_bytes{type}`` | size of each response sent |
| ``mesh_xds_sent_bytes{type,protocol}`` | bytes of responses sent (mesh's own: istiod has only the size histogram) |
| ``pilot_total_xds_rejects{type}`` | NACKs received |
| ``pilot_xds`` | connected proxies |
| ``pilot_push_triggers{type}`` | why pushes were asked for (the PushRequest reasons) |
| ``pilot_debounce_time`` | how long a push waited in the debouncer |
| ``pilot_pushcontext_init_seconds`` | building a PushContext |
| ``pilot_proxy_convergence_time`` | from the change to a proxy's ACK |
| ``xds_cache_size`` | entries in the typed XdsCache (``typed_cache.py``) |
| ``xds_cache_reads{type}`` | its reads, ``type`` ``hit`` or ``miss`` |

The two cache metrics are named as typed_xds_cache.go names them (no ``pilot_`` prefix,
https://github.com/istio/istio/blob/1.19.0/pilot/pkg/model/typed_xds_cache.go#L37-L54); istiod
records them only with ``PILOT_XDS_CACHE_STATS=true``, mesh always.

"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from mesh.model.push_request import PushRequest
from mesh.xds.debounce import DebouncedPush
from mesh.xds.types import SHORT_NAMES


def type_label(type_url: str) -> str:
    """The ``type`` label of a type URL: ``cds``/``eds``/``lds``/``rds``, and ``other`` for any
    other — a label value per client-chosen type URL would be a series that is never freed."""
    short = SHORT_NAMES.get(type_url)
    return short.lower() if short else "other"


class XdsMetrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.pushes = Counter("pilot_xds_pushes", "Pilot build and send errors for lds, rds, cds and eds.",
                              ["type", "protocol"], registry=r)
        self.config_size = Histogram("pilot_xds_config_size_bytes", "Distribution of configuration sizes pushed to clients",
                                     ["type"], buckets=(1, 10_000, 1_000_000, 4_000_000, 10_000_000, 40_000_000),
                                     registry=r)
        self.sent_bytes = Counter("mesh_xds_sent_bytes", "Bytes of xDS responses sent, by type and protocol.",
                                  ["type", "protocol"], registry=r)
        self.rejects = Counter("pilot_total_xds_rejects", "Total number of XDS responses from pilot rejected by proxy.",
                               ["type"], registry=r)
        self.connected = Gauge("pilot_xds", "Number of endpoints connected to this pilot using XDS.", registry=r)
        self.triggers = Counter("pilot_push_triggers", "Total number of times a push was triggered, labeled by reason.",
                                ["type"], registry=r)
        self.debounce_time = Histogram("pilot_debounce_time", "Delay in seconds between the first config enters "
                                       "debouncing and the merged push request is pushed into the push queue.",
                                       buckets=(.01, .1, 1, 3, 5, 10, 20, 30), registry=r)
        self.push_context_init = Histogram("pilot_pushcontext_init_seconds", "Total time in seconds Pilot takes "
                                           "to init pushContext.", buckets=(.01, .1, 0.5, 1, 3, 5), registry=r)
        self.convergence = Histogram("pilot_proxy_convergence_time", "Delay in seconds between config change and "
                                     "a proxy receiving all required configuration.",
                                     buckets=(.1, .5, 1, 3, 5, 10, 20, 30), registry=r)

        self.cache_size = Gauge("xds_cache_size", "Current size of xds cache", registry=r)
        self.cache_reads = Counter("xds_cache_reads", "Total number of xds cache xdsCacheReads.", ["type"],
                                   registry=r)
        self._cache_seen = (0, 0)

    # The ADS server and the debouncer call these.
    def on_cache(self, cache) -> None:
        """The typed cache's size and the reads since the last call."""
        self.cache_size.set(len(cache))
        hits, misses = sum(cache.hits.values()), sum(cache.misses.values())
        seen_hits, seen_misses = self._cache_seen
        self.cache_reads.labels("hit").inc(hits - seen_hits)
        self.cache_reads.labels("miss").inc(misses - seen_misses)
        self._cache_seen = (hits, misses)

    def on_debounced(self, push: DebouncedPush) -> None:
        self.debounce_time.observe(push.waited)
        for reason, count in push.request.reason.items():
            self.triggers.labels(reason).inc(count)

    def on_push_context(self, seconds: float) -> None:
        self.push_context_init.observe(seconds)

    def on_send(self, type_url: str, protocol: str = "sotw", size: int = 0) -> None:
        short = type_label(type_url)
        self.pushes.labels(short, protocol).inc()
        self.config_size.labels(short).observe(size)
        self.sent_bytes.labels(short, protocol).inc(size)

    def on_reject(self, type_url: str) -> None:
        self.rejects.labels(type_label(type_url)).inc()

    def on_connections(self, count: int) -> None:
        self.connected.set(count)

    def on_converged(self, request: PushRequest | None, now: float) -> None:
        if request is not None and request.start:
            self.convergence.observe(max(0.0, now - request.start))
