"""PushRequest: "something changed, proxies may need new config" — and how requests merge.

Go: https://github.com/istio/istio/blob/1.19.0/pilot/pkg/model/push_context.go#L340-L376
(the struct), the trigger reasons at
https://github.com/istio/istio/blob/1.19.0/pilot/pkg/model/push_context.go#L437-L469 and the
merge rules at https://github.com/istio/istio/blob/1.19.0/pilot/pkg/model/push_context.go#L471-L552.

The merge rules are the heart of debouncing: many events become one push.
* ``full`` is OR-ed: one full request makes the merged push full.
* ``configs_updated`` is unioned — but an empty set means "everything may have changed",
  so merging with an empty set gives an empty set.
* ``reason`` counts are added, never de-duplicated (they feed the ``pilot_push_triggers`` metric).
* ``start`` keeps the older time.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import NamedTuple


class TriggerReason:
    """Why a push was requested (a fixed set, to keep metric cardinality bounded)."""

    ENDPOINT = "endpoint"
    HEADLESS_ENDPOINT = "headlessendpoint"
    CONFIG = "config"
    SERVICE = "service"
    PROXY = "proxy"
    GLOBAL = "global"  # mesh config changed
    AMBIENT = "ambient"
    UNKNOWN = "unknown"
    DEBUG = "debug"
    SECRET = "secret"
    NETWORKS = "networks"
    PROXY_REQUEST = "proxyrequest"
    NAMESPACE = "namespace"
    CLUSTER = "cluster"


class ConfigKey(NamedTuple):
    """Which config changed: kind, name, namespace (``model.ConfigKey``)."""

    kind: str
    name: str
    namespace: str = ""

    def __str__(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}" if self.namespace else f"{self.kind}/{self.name}"


@dataclass
class PushRequest:
    full: bool = False
    configs_updated: set[ConfigKey] = field(default_factory=set)  # empty: all configs
    reason: Counter = field(default_factory=Counter)
    start: float = 0.0  # clock time the request was made

    @classmethod
    def of(cls, *reasons: str, full: bool = True, configs: set[ConfigKey] | None = None,
           start: float = 0.0) -> PushRequest:
        return cls(full=full, configs_updated=set(configs or ()), reason=Counter(reasons), start=start)

    def merge(self, other: PushRequest | None) -> PushRequest:
        """A new request equal to both (neither input is changed)."""
        if other is None:
            return self
        both_scoped = bool(self.configs_updated) and bool(other.configs_updated)
        return PushRequest(
            full=self.full or other.full,
            configs_updated=(self.configs_updated | other.configs_updated) if both_scoped else set(),
            reason=self.reason + other.reason,
            start=min(self.start, other.start),
        )

    def is_proxy_update(self) -> bool:
        """``IsProxyUpdate``: one of the merged requests was a ``ProxyUpdate`` (a pod's labels or IP
        changed), so ``computeProxyState`` re-reads the proxy's labels."""
        return self.reason.get(TriggerReason.PROXY, 0) > 0

    def describe(self) -> str:
        kind = "full" if self.full else "incremental (EDS)"
        reasons = ", ".join(f"{r}×{n}" if n > 1 else r for r, n in sorted(self.reason.items())) or "unknown"
        configs = ", ".join(sorted(str(c) for c in self.configs_updated)) or "all"
        return f"{kind} push; reason: {reasons}; configs: {configs}"
