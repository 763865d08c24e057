"""Gateway API → Istio config: what istiod's gateway controller does on every PushContext init.

istiod never stores the result: on each push its ``Controller.Reconcile``
(https://github.com/istio/istio/blob/1.19.0/pilot/pkg/config/kube/gateway/controller.go#L176-L234)
lists the GatewayClasses, Gateways, HTTP/TCP/TLS routes and ReferenceGrants, turns them into
Istio Gateways and VirtualServices in memory (``convertResources``,
https://github.com/istio/istio/blob/1.19.0/pilot/pkg/config/kube/gateway/conversion.go#L46-L84)
and queues the status it computed for every input (written back only by the leader). The
generated objects show up in ``/debug/configz`` and are what the proxy config is built from.

The order of the work matters and is kept here:

1. HTTPRoutes are sorted oldest first (then by namespace/name), so the oldest route wins where
   routes are merged;
2. ReferenceGrants are indexed;
3. Gateways are converted, one Istio Gateway per listener; this yields the parents routes can
   bind to (``gateways.py``);
4. TCP, TLS, then HTTP routes are bound to parents and converted (``routes.py``, ``backends.py``);
5. only then is each listener's ``attachedRoutes`` known and reported.

Use::

    from mesh.configcontroller.gateway_api import convert, reconcile
    istio_objects = convert(objects)                 # Gateways, then VirtualServices
    result = reconcile(objects)                      # the same, plus status per input object
    result.status_of("HTTPRoute", "reviews", "default")["parents"][0]["conditions"]
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mesh.configcontroller.gateway_api.backends import Context
from mesh.configcontroller.gateway_api.gateways import convert_gateways
from mesh.configcontroller.gateway_api.resources import AllowedReferences, GatewayAPIError, load
from mesh.configcontroller.gateway_api.routes import build_http, build_tcp, build_tls

__all__ = ["ConversionResult", "GatewayAPIError", "StatusUpdate", "convert", "reconcile"]


@dataclass
class StatusUpdate:
    """The status istiod computed for one input object, and whether it differs from the input's."""

    kind: str
    namespace: str  # "" for GatewayClass
    name: str
    status: dict
    changed: bool


@dataclass
class ConversionResult:
    gateways: list[dict] = field(default_factory=list)
    virtual_services: list[dict] = field(default_factory=list)
    statuses: list[StatusUpdate] = field(default_factory=list)  # in input order

    def objects(self) -> list[dict]:
        """Gateways first, then VirtualServices, each sorted by namespace/name."""
        def key(o: dict) -> tuple[str, str]:
            return o["metadata"]["namespace"], o["metadata"]["name"]
        return sorted(self.gateways, key=key) + sorted(self.virtual_services, key=key)

    def status_of(self, kind: str, name: str, namespace: str = "") -> dict:
        for s in self.statuses:
            if (s.kind, s.name) == (kind, name) and (kind == "GatewayClass" or s.namespace == namespace):
                return s.status
        raise KeyError(f"no status for {kind} {namespace + '/' if namespace else ''}{name}")


def reconcile(objects: list[dict], domain_suffix: str = "cluster.local", now: str | None = None
              ) -> ConversionResult:
    """Convert Gateway API objects (plus any Services, ServiceEntries and Namespaces they refer
    to) and compute the status istiod would write back.

    ``now``, if given, is stamped as ``lastTransitionTime`` on new conditions; by default none is
    set, so the output is the same on every run. Raises GatewayAPIError on malformed input.
    """
    r = load(objects, domain_suffix)
    # Oldest route first; ties broken by namespace/name.
    r.http_routes.sort(key=lambda o: (o.creation_timestamp, f"{o.namespace}/{o.name}"))
    refs = AllowedReferences(r.reference_grants)
    result = ConversionResult()
    if not any((r.gateway_classes, r.gateways, r.http_routes, r.tcp_routes, r.tls_routes, r.reference_grants)):
        return result  # istiod's early exit when no Gateway API object exists

    gateways, parents = convert_gateways(r, refs, now)
    result.gateways = gateways
    ctx = Context(r, refs)
    vs: list[dict] = []
    for route in r.tcp_routes:
        vs += build_tcp(ctx, route, parents, now)
    for route in r.tls_routes:
        vs += build_tls(ctx, route, parents, now)
    gateway_vs: dict = {}
    mesh_vs: dict = {}
    for route in r.http_routes:
        build_http(ctx, route, parents, gateway_vs, mesh_vs, now)
    for by_key in (gateway_vs, mesh_vs):
        for by_host in by_key.values():
            vs += by_host.values()
    result.virtual_services = vs

    # Every route is bound now, so the listeners' attachedRoutes can be reported.
    for infos in parents.values():
        for info in infos:
            if info.report_attached is not None:
                info.report_attached()

    for obj in r.status_objects():
        before = (obj.raw.get("status") or {})
        result.statuses.append(StatusUpdate(obj.kind, obj.namespace, obj.name, obj.status, obj.status != before))
    return result


def convert(objects: list[dict], domain_suffix: str = "cluster.local") -> list[dict]:
    """The Istio Gateways and VirtualServices istiod 1.19 generates from these Gateway API
    objects: Gateways first, then VirtualServices, each sorted by namespace/name."""
    return reconcile(objects, domain_suffix).objects()
