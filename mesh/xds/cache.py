"""XdsCache: serialize each distinct resource once and hand out the same bytes afterwards.

Go: ``XdsCache`` https://github.com/istio/istio/blob/1.19.0/pilot/pkg/model/xds_cache.go#L36-L97
and its typed LRU https://github.com/istio/istio/blob/1.19.0/pilot/pkg/model/typed_xds_cache.go.

istiod's cache saves the cost of *building* a resource: entries are keyed by what went into
them (service, DestinationRule, push version) and cleared when one of those changes. In mesh
building is cheap (a dict) and *serializing* is what hurts: betterproto2 is pure Python, some
300 times slower than the C protobuf istiod uses. So mesh keys the cache by the resource's
content — its canonical JSON — which makes invalidation automatic: a changed resource has a
different key, an unchanged one (the same ``outbound|9080||reviews...`` cluster for a thousand
sidecars) is serialized once. Old entries fall out in least-recently-used order.

Big resources are cached piece by piece. A route configuration holds one virtual host per
service, and editing one VirtualService changes one of them; serializing the whole thing again
would cost tens of milliseconds on every push. Protobuf makes pieces composable: a repeated
message field is written as one tag-length-value entry per element, and fields may come in any
order, so ``bytes(config without virtual hosts)`` followed by one ``field 2`` entry per separately
serialized virtual host *is* the serialized configuration. Only the changed host is encoded anew.
"""

from __future__ import annotations

import json
from collections import OrderedDict

from envoy_data_plane.envoy.config.route.v3 import VirtualHost

from mesh.xds.fastpath import length_delimited_field
from mesh.xds.resources import message_bytes, to_bytes
from mesh.xds.types import ROUTE

# type URL → (the repeated field's JSON name, its field number, its message class)
SPLIT_FIELDS = {ROUTE: ("virtualHosts", 2, VirtualHost)}


class XdsCache:
    def __init__(self, max_entries: int = 20_000):
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def serialize(self, type_url: str, resource: dict) -> bytes:
        split = SPLIT_FIELDS.get(type_url)
        if split is None or not resource.get(split[0]):
            return self._whole(type_url, resource, lambda: to_bytes(type_url, resource))
        name, number, cls = split
        rest = {k: v for k, v in resource.items() if k != name}
        head = self._whole(type_url, rest, lambda: to_bytes(type_url, rest))
        parts = [length_delimited_field(number, self._whole(cls.__name__, item, lambda i=item: message_bytes(cls, i)))
                 for item in resource[name]]
        return head + b"".join(parts)

    def _whole(self, type_url: str, resource: dict, encode) -> bytes:
        key = (type_url, json.dumps(resource, sort_keys=True, separators=(",", ":")))
        data = self._entries.get(key)
        if data is not None:
            self.hits += 1
            self._entries.move_to_end(key)
            return data
        self.misses += 1
        data = encode()
        self._entries[key] = data
        if len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return data

    def clear(self) -> None:
        self._entries.clear()
