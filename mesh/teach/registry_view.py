"""Plain-text views of what stage 7 built: services, endpoints, EDS updates, configs, config events.

Nothing here is part of the mini-istiod; the notebooks use it to show the registries and config
stores of ``mesh.bootstrap.controllers``. Like ``views``, every function sorts what it shows and
prints no time, port, path or address that varies between runs. The same data is served as JSON on
``/debug/registryz``, ``/debug/endpointz`` and ``/debug/configz``
(https://github.com/istio/istio/blob/1.19.0/pilot/pkg/xds/debug.go#L298-L384).
"""

from __future__ import annotations

from collections.abc import Iterable

from mesh.model.config import Config
from mesh.teach.views import TextView, as_yaml, table


def _ports(svc) -> str:
    return ", ".join(f"{p.name or '-'}/{p.port} {p.protocol}" for p in svc.ports)


def services_table(service_discovery) -> TextView:
    """One row per service: hostname, registry, VIP, resolution, ports (name/port protocol)."""
    rows = sorted(
        (s.hostname, s.registry, s.cluster_vip or "-", s.resolution.value, _ports(s))
        for s in service_discovery.services()
    )
    return table(("hostname", "registry", "VIP", "resolution", "ports (name/port protocol)"), rows)


def _short_sa(sa: str) -> str:
    return sa.split("/ns/", 1)[1] if "/ns/" in sa else (sa or "-")


def endpoints_table(service_discovery, hostname: str | None = None) -> TextView:
    """One row per endpoint of each service port (``/debug/endpointz``, trimmed)."""
    rows = []
    for svc in sorted(service_discovery.services(), key=lambda s: s.hostname):
        if hostname is not None and svc.hostname != hostname:
            continue
        for p in svc.ports:
            for ep in service_discovery.endpoints(svc.hostname, p.port):
                rows.append(
                    (
                        f"{svc.hostname.split('.svc.')[0]}:{p.port}",
                        f"{ep.address}:{ep.endpoint_port}",
                        ep.workload_name or "-",
                        ep.tls_mode,
                        ep.locality or "-",
                        _short_sa(ep.service_account),
                        ep.health.value,
                    )
                )
    return table(
        ("service:port", "endpoint", "workload", "tlsMode", "locality", "identity (ns/…/sa/…)", "health"),
        sorted(rows),
    )


def endpoint_counts(service_discovery, hostnames: Iterable[str]) -> dict[str, int]:
    return {h: len({e.address for e in service_discovery.all_endpoints(h)}) for h in hostnames}


def eds_updates_table(service_discovery, since: float | None = None) -> TextView:
    """What registries reported as endpoint changes, in order."""
    rows = [
        (
            f"{u.at:7.3f}",
            u.hostname,
            u.namespace,
            len(u.endpoints),
            "EDS update (push)" if u.push else "cache only",
        )
        for u in service_discovery.eds_updates
        if since is None or u.at >= since
    ]
    return table(("at (s)", "hostname", "namespace", "endpoints", "kind"), rows)


def _source_of(store, cfg: Config) -> str:
    for source in store.stores_for(cfg.kind):
        if source.get(cfg.kind, cfg.name, cfg.namespace) is not None:
            return getattr(source, "name", None) or type(source).__name__
    return "-"


def configs_table(config_store) -> TextView:
    """Every config the aggregate store serves, and which source it came from."""
    rows = [
        (c.kind, c.namespace, c.name, f"{c.group}/{c.version}", _source_of(config_store, c))
        for c in config_store.all_configs()
    ]
    return table(("kind", "namespace", "name", "apiVersion", "source"), rows)


def sources_table(controllers) -> TextView:
    """The config sources stage 7 assembled, in the aggregate's order, and the registries."""
    rows = []
    for i, store in enumerate(controllers.config_store.stores, start=1):
        name = getattr(store, "name", None) or type(store).__name__
        rows.append((f"config source {i}", name, ", ".join(store.schemas())))
    for i, reg in enumerate(controllers.service_discovery.registries, start=1):
        rows.append((f"service registry {i}", type(reg).__name__, reg.provider))
    return table(("role", "what", "serves"), rows)


class ConfigEventLog:
    """Records config store events for the given kinds; ``new()`` shows those since the last call."""

    def __init__(self, config_store, kinds: Iterable[str], clock=None):
        self.rows: list[tuple] = []
        self._shown = 0
        self._clock = clock
        for kind in kinds:
            config_store.register_event_handler(kind, self._handler(kind))

    def _handler(self, kind: str):
        def record(old: Config | None, new: Config | None, event: str) -> None:
            cfg = new if new is not None else old
            at = f"{self._clock.now():7.3f}" if self._clock is not None else "-"
            self.rows.append((at, event, kind, f"{cfg.namespace}/{cfg.name}"))

        return record

    def new(self) -> TextView:
        fresh, self._shown = self.rows[self._shown :], len(self.rows)
        return table(("at (s)", "event", "kind", "namespace/name"), fresh)


def generated_yaml(configs: Iterable[Config]) -> TextView:
    """Generated Istio objects as YAML documents, Gateways first (as ``mesh convert`` prints them)."""
    ordered = sorted(configs, key=lambda c: (c.kind != "Gateway", c.namespace, c.name))
    docs = [as_yaml(c.to_object()).text for c in ordered]
    return TextView("\n---\n".join(docs) or "(none)")
