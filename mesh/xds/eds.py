"""EDS generator: ClusterLoadAssignments for the clusters a proxy asked about.

Go: ``EdsGenerator.Generate`` and ``buildEndpoints``
https://github.com/istio/istio/blob/1.19.0/pilot/pkg/xds/eds.go#L334-L340 and
https://github.com/istio/istio/blob/1.19.0/pilot/pkg/xds/eds.go#L410-L500.

EDS is the only type an incremental push carries. Then only the clusters of the services whose
endpoints changed are rebuilt and sent; State-of-the-World lets EDS (unlike CDS and LDS) send a
subset of the watched names, and Envoy keeps the others as they were.
"""

from __future__ import annotations

from mesh.model.push_request import ConfigKey, PushRequest
from mesh.networking.cluster import parse_cluster_name
from mesh.networking.endpoints import build_cluster_load_assignment
from mesh.networking.push_context import PushContext
from mesh.xds.generator import (
    ProxyState,
    Resource,
    WatchedResource,
    needs_push,
    updated_hostnames,
)
from mesh.xds.types import ENDPOINT


class EdsGenerator:
    def generate(self, state: ProxyState, push: PushContext, watched: WatchedResource,
                 request: PushRequest | None) -> list[Resource] | None:
        if request is not None and request.full and not needs_push(request, ENDPOINT):
            return None
        hosts = updated_hostnames(request)
        names = tuple(watched.names)
        # Sidecars watch the same clusters, so the whole answer is shared, per push and per set
        # of changed hosts; each ClusterLoadAssignment is built once however many sets hold it.
        key = ("eds-set", names, frozenset(hosts) if hosts is not None else None)
        out = push.memo(key, lambda: [self._assignment(push, n) for n in names
                                      if hosts is None or _hostname(n) in hosts])
        if hosts is not None and not out:
            return None
        return out

    @staticmethod
    def _assignment(push: PushContext, name: str) -> Resource:
        return push.memo(("eds", name), lambda: _cached_assignment(push, name))


def _cached_assignment(push: PushContext, name: str) -> Resource:
    """Through the typed XdsCache, keyed as ``EndpointBuilder`` keys it (cluster name, the
    service, its DestinationRule by name) and depending on the service's ServiceEntry key and the rule."""
    def build():
        return Resource(name, build_cluster_load_assignment(push, name))
    host = _hostname(name)
    service = push.service(host) if host else None
    cache = push.xds_cache
    if cache is None or service is None:
        return build()
    sources = push.destination_rule_sources(host)  # every rule a merged one came from
    key = ("EDS", name, service.namespace, sources)
    found = cache.get(key)
    if found is None:
        found = build()
        deps = [ConfigKey("ServiceEntry", host, service.namespace)]
        deps += [ConfigKey("DestinationRule", rule_name, ns) for ns, rule_name in sources]
        cache.add(key, deps, push.cache_token, found)
    return found


def _hostname(cluster_name: str) -> str:
    try:
        return parse_cluster_name(cluster_name)[3]
    except ValueError:
        return ""
