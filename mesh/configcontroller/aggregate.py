"""The aggregate config store over every source, plus the sources that *convert*: Ingress and Gateway API.

Go: ``aggregate.MakeCache`` https://github.com/istio/istio/blob/1.19.0/pilot/pkg/config/aggregate/config.go#L79-L126
— ``Get`` asks each store that serves the kind and returns the first hit; ``List`` concatenates,
keeping the first config of each namespace/name; ``RegisterEventHandler`` (#L177-L183) registers
with every store of the kind. istiod builds it in ``initConfigController``
(https://github.com/istio/istio/blob/1.19.0/pilot/pkg/bootstrap/configcontroller.go#L61-L133)
from: the CRD store or the file source, then the Ingress controller (unless
``ingressControllerMode: OFF``), then the Gateway API controller.

The Ingress and Gateway API controllers are read-only stores that serve Istio Gateways and
VirtualServices generated from other objects
(https://github.com/istio/istio/blob/1.19.0/pilot/pkg/config/kube/ingress/controller.go,
https://github.com/istio/istio/blob/1.19.0/pilot/pkg/config/kube/gateway/controller.go). Here both
are a ``ConvertedStore``: it watches its input kinds, runs the converter
(``mesh.configcontroller.ingress.convert``, ``mesh.configcontroller.gateway_api.convert``) whenever an input
changes, and reports each generated object that appeared, changed or went away.

When conversion runs. istiod's Gateway API controller converts once per PushContext
(``Reconcile``, called from ``PushContext.InitContext``), and its Ingress controller on every
``List`` — never once per Service event. mesh: an event on a converter's own kinds (Ingress,
IngressClass, Gateway API kinds, Namespaces) converts at once and reports each generated object
that appeared, changed or went away, so the push it triggers names them. A **Service** event only
marks the output stale: the next read (the PushContext build of the full push that every Service
event triggers anyway) converts once, however many Services arrived, and reports nothing — that
push already sends everything. So 3000 Services arriving cost one conversion, not 3000 (each of
which read all 3000).

Simplifications, named: istiod's Ingress controller reports a change as a synthetic
``<name>-virtualservice``/``<name>-gateway`` event; mesh reports the generated objects
themselves. Gateway API status is not written back.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable

from mesh.kube.client import KubeClient
from mesh.model.config import Config, ConfigHandler

log = logging.getLogger(__name__)

EVENT_ADD, EVENT_UPDATE, EVENT_DELETE = "add", "update", "delete"
GENERATED_KINDS = ("Gateway", "VirtualService")  # networking.istio.io kinds converters produce

# Inputs whose events only mark the conversion stale (see the module docstring).
DEFERRED_INPUTS = ("services",)
INGRESS_INPUTS = ("ingresses.networking.k8s.io", "ingressclasses.networking.k8s.io", "services")
GATEWAY_API_INPUTS = (
    "gatewayclasses.gateway.networking.k8s.io", "gateways.gateway.networking.k8s.io",
    "httproutes.gateway.networking.k8s.io", "tcproutes.gateway.networking.k8s.io",
    "tlsroutes.gateway.networking.k8s.io", "referencegrants.gateway.networking.k8s.io",
    "services", "namespaces",
)


def load_converter(module: str) -> Callable | None:
    """``module.convert`` if that module can be imported (converters are optional)."""
    try:
        return importlib.import_module(module).convert
    except (ImportError, AttributeError) as err:
        log.info("%s is not available (%s): its converted configs are skipped", module, err)
        return None


class ConvertedStore:
    """A read-only store of the Istio objects a converter makes from some Kubernetes kinds."""

    def __init__(self, name: str, client: KubeClient, inputs: tuple[str, ...],
                 convert: Callable[[list[dict]], list[dict]], domain_suffix: str = "cluster.local"):
        self.name = name
        self.client = client
        self.inputs = inputs
        self._convert = convert
        self.domain_suffix = domain_suffix
        self.configs: dict[tuple[str, str, str], Config] = {}  # (kind, namespace, name)
        self.handlers: dict[str, list[ConfigHandler]] = {}
        self.errors: list[str] = []
        self.conversions = 0
        self._ready = False
        self._stale = False
        self._lock = threading.RLock()  # informer threads (live clusters) and readers
        for kind in inputs:
            changed = self._mark_stale if kind in DEFERRED_INPUTS else self.refresh
            self.client.informer(kind).add_event_handler(
                on_add=lambda o, f=changed: f(), on_update=lambda a, b, f=changed: f(),
                on_delete=lambda o, f=changed: f(),
            )
        self._ready = True
        self.refresh()

    def schemas(self) -> list[str]:
        return list(GENERATED_KINDS)

    def input_objects(self) -> list[dict]:
        return [o for kind in self.inputs for o in self.client.informer(kind).list()]

    def _mark_stale(self) -> None:
        self._stale = True

    def _refresh_if_stale(self) -> None:
        if self._stale:
            self.refresh(notify=False)

    def refresh(self, notify: bool = True) -> None:
        """Convert again and (``notify``) report what changed."""
        if not self._ready:
            return  # still subscribing to inputs: convert once at the end
        with self._lock:
            self._stale = False
            self._convert_and_diff(notify)

    def _convert_and_diff(self, notify: bool) -> None:
        try:
            generated = self._convert(self.input_objects())
        except ValueError as err:  # a converter's input error: keep the last good output
            log.warning("%s conversion failed: %s", self.name, err)
            self.errors.append(str(err))
            del self.errors[:-100]  # the recent ones: a bad input failing on every event must not grow this
            return
        self.conversions += 1
        if not notify:
            self.configs = self._generated_configs(generated, keep=self.configs)
            return
        fresh = self._generated_configs(generated)
        for key in sorted(k for k in self.configs if k not in fresh):
            old = self.configs.pop(key)
            self._notify(None, old, EVENT_DELETE)
        for key, cfg in sorted(fresh.items()):
            old = self.configs.get(key)
            if old is None:
                self.configs[key] = cfg
                self._notify(None, cfg, EVENT_ADD)
            elif (old.spec, old.labels, old.annotations) != (cfg.spec, cfg.labels, cfg.annotations):
                self.configs[key] = cfg
                self._notify(old, cfg, EVENT_UPDATE)

    def _generated_configs(self, generated: list[dict], keep: dict | None = None) -> dict:
        """The generated objects as Configs by key; an unchanged one stays the object in ``keep``."""
        fresh = {}
        for obj in generated:
            cfg = Config.from_object(obj, self.domain_suffix)
            if cfg.kind in GENERATED_KINDS:
                old = (keep or {}).get(cfg.key)
                unchanged = old is not None and (old.spec, old.labels, old.annotations) == \
                    (cfg.spec, cfg.labels, cfg.annotations)
                fresh[cfg.key] = old if unchanged else cfg
        return fresh

    def get(self, kind: str, name: str, namespace: str) -> Config | None:
        self._refresh_if_stale()
        return self.configs.get((kind, namespace, name))

    def list(self, kind: str, namespace: str | None = None) -> list[Config]:
        self._refresh_if_stale()
        return [c for (k, ns, _), c in sorted(self.configs.items(), key=lambda i: (i[0][1], i[0][2]))
                if k == kind and (namespace is None or ns == namespace)]

    def register_event_handler(self, kind: str, handler: ConfigHandler) -> None:
        if kind not in GENERATED_KINDS:
            return
        self.handlers.setdefault(kind, []).append(handler)
        for cfg in self.list(kind):
            handler(None, cfg, EVENT_ADD)

    def has_synced(self) -> bool:
        return all(self.client.informer(k).has_synced() for k in self.inputs)

    def _notify(self, old: Config | None, new: Config, event: str) -> None:
        for handler in list(self.handlers.get(new.kind, [])):
            try:
                handler(old, new, event)
            except Exception:
                log.exception("%s handler failed", new.kind)


def ingress_store(client: KubeClient, mesh: Callable[[], dict], domain_suffix: str) -> ConvertedStore | None:
    convert = load_converter("mesh.configcontroller.ingress")
    if convert is None:
        return None
    return ConvertedStore("ingress", client, INGRESS_INPUTS,
                          lambda objects: convert(objects, mesh(), domain_suffix), domain_suffix)


def gateway_api_store(client: KubeClient, domain_suffix: str) -> ConvertedStore | None:
    convert = load_converter("mesh.configcontroller.gateway_api")
    if convert is None:
        return None
    return ConvertedStore("gateway-api", client, GATEWAY_API_INPUTS,
                          lambda objects: convert(objects, domain_suffix), domain_suffix)


class AggregateConfigStore:
    """``MakeCache``: one ConfigStore over many."""

    def __init__(self, stores: list):
        self.stores = [s for s in stores if s is not None]

    def stores_for(self, kind: str) -> list:
        return [s for s in self.stores if kind in s.schemas()]

    def schemas(self) -> list[str]:
        return sorted({k for s in self.stores for k in s.schemas()})

    def get(self, kind: str, name: str, namespace: str) -> Config | None:
        for store in self.stores_for(kind):
            found = store.get(kind, name, namespace)
            if found is not None:
                return found
        return None

    def list(self, kind: str, namespace: str | None = None) -> list[Config]:
        seen: set[tuple[str, str]] = set()
        out: list[Config] = []
        for store in self.stores_for(kind):
            for cfg in store.list(kind, namespace):
                if (cfg.namespace, cfg.name) not in seen:
                    seen.add((cfg.namespace, cfg.name))
                    out.append(cfg)
        return out

    def register_event_handler(self, kind: str, handler: ConfigHandler) -> None:
        for store in self.stores_for(kind):
            store.register_event_handler(kind, handler)

    def has_synced(self) -> bool:
        return all(s.has_synced() for s in self.stores)

    def all_configs(self) -> list[Config]:
        """Every config of every kind, sorted by kind, namespace, name (``/debug/configz``)."""
        out: list[Config] = []
        for kind in self.schemas():
            out += sorted(self.list(kind), key=lambda c: (c.namespace, c.name))
        return out
