"""The typed XdsCache: built resources kept across pushes, keyed as istiod keys them and dropped
exactly when a config they were built from changes.

Go: ``XdsCache`` https://github.com/istio/istio/blob/1.19.0/pilot/pkg/model/xds_cache.go#L36-L97 and
its LRU ``Add`` / ``Get`` / ``Clear`` / ``ClearAll``
https://github.com/istio/istio/blob/1.19.0/pilot/pkg/model/typed_xds_cache.go#L240-L334, cleared
by ``dropCacheForRequest`` https://github.com/istio/istio/blob/1.19.0/pilot/pkg/xds/discovery.go#L261-L270
(``ClearAll`` when ConfigsUpdated is empty, else ``Clear`` of those keys) when a push starts.

Each entry has a key (what istiod hashes: for a cluster its name, the service, the
DestinationRule's name and namespace and the proxy facts that shape it; for an endpoint
assignment the cluster name, service and rule) and ``dependent_configs``: the ConfigKeys it was
built from (the ServiceEntry key of its service, its DestinationRule). ``clear(configs)`` drops
every entry that depends on one of them — and nothing else; an entry then stays valid across
pushes as long as nothing it reads changes.

Stale writes: ``clear`` moves the cache's token to "now"; ``add`` with an older token (a push that
started before the clear, still building) is dropped, and so is a write older than the entry it
would replace (``Add``'s two token checks).

Which caches istiod has and mesh's: istiod caches CDS clusters (``clusterCache``), EDS
assignments (``EndpointBuilder``), RDS route configurations (``routeCache``) and SDS secrets; mesh
keeps the first two here, and RDS only through the per-push memo (``PushContext.memo``). Mesh's
own fast paths sit beside it: the content-keyed serializer (``cache.py``, betterproto2 is slow), the
per-push memo shared by alike proxies, and shared responses (``mesh/xds/fastpath.py``) — istiod
has none of those, it marshals each resource once when building it.

Simplifications, named: no size bound (istiod's LRU has ``PILOT_XDS_CACHE_SIZE``, 60000), the
token is the virtual clock's time, no ``PILOT_ENABLE_XDS_CACHE`` switch.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from mesh.model.push_request import ConfigKey


class TypedXdsCache:
    def __init__(self):
        self._store: dict[tuple, tuple[float, frozenset[ConfigKey], object]] = {}  # key → (token, deps, value)
        self._config_index: dict[ConfigKey, set[tuple]] = {}
        self.token = float("-inf")
        self.hits: Counter = Counter()  # by type (the key's first element: CDS, EDS)
        self.misses: Counter = Counter()
        self.cleared: list[tuple] = []  # the keys the last clear dropped (for notebooks and tests)

    def __len__(self) -> int:
        return len(self._store)

    def size(self, type_name: str) -> int:
        return sum(1 for k in self._store if k[0] == type_name)

    def get(self, key: tuple):
        entry = self._store.get(key)
        if entry is None:
            self.misses[key[0]] += 1
            return None
        self.hits[key[0]] += 1
        return entry[2]

    def add(self, key: tuple, dependent_configs: Iterable[ConfigKey], token: float, value) -> bool:
        """Keep ``value``; False (and nothing kept) for a stale write."""
        if token < self.token:
            return False  # built by a push that started before the last clear
        current = self._store.get(key)
        if current is not None and token < current[0]:
            return False
        deps = frozenset(dependent_configs)
        if current is not None:
            self._unindex(key, current[1])
        self._store[key] = (token, deps, value)
        for dep in deps:
            self._config_index.setdefault(dep, set()).add(key)
        return True

    def clear(self, configs: Iterable[ConfigKey], token: float) -> None:
        """Drop every entry that depends on one of ``configs``."""
        self.token = max(self.token, token)
        dropped = []
        for config in configs:
            for key in self._config_index.pop(config, set()):
                entry = self._store.pop(key, None)
                if entry is not None:
                    self._unindex(key, entry[1])
                    dropped.append(key)
        self.cleared = sorted(dropped, key=repr)

    def clear_all(self, token: float) -> None:
        self.token = max(self.token, token)
        self.cleared = sorted(self._store, key=repr)
        self._store.clear()
        self._config_index.clear()

    def keys(self, type_name: str | None = None) -> list[tuple]:
        return [k for k in self._store if type_name is None or k[0] == type_name]

    def dependents(self, key: tuple) -> frozenset[ConfigKey]:
        entry = self._store.get(key)
        return entry[1] if entry is not None else frozenset()

    def _unindex(self, key: tuple, deps: frozenset[ConfigKey]) -> None:
        for dep in deps:
            keys = self._config_index.get(dep)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._config_index[dep]
