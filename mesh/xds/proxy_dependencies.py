"""Push scoping: does this push concern this proxy at all?

Go: https://github.com/istio/istio/blob/1.19.0/pilot/pkg/xds/proxy_dependencies.go —
``UnAffectedConfigKinds`` (#L26-L31), ``ConfigAffectsProxy`` (#L35-L53), ``proxyDependentOnConfig``
(#L55-L90) and ``DefaultProxyNeedsPush`` (#L93-L111); the proxy's state is refreshed first by
``computeProxyState`` https://github.com/istio/istio/blob/1.19.0/pilot/pkg/xds/ads.go#L654-L706
(which recomputes the SidecarScope only when a kind that shapes it changed, and re-reads the
proxy's labels from the registry on connect and on a ``ProxyUpdate`` — ``SetWorkloadLabels``,
https://github.com/istio/istio/blob/1.19.0/pilot/pkg/model/context.go#L947-L971 — so a relabelled
pod's proxy is selected by what now selects its labels) and the decision is taken in
``pushConnection`` (ads.go#L732-L747).

A push whose ``ConfigsUpdated`` is empty concerns everyone. Otherwise a sidecar is pushed when
its SidecarScope — or the scope it had before this push, so a proxy that *loses* a service hears
about it — depends on one of the changed configs (``SidecarScope.depends_on_config``), or when one
of them is the proxy's own service. Gateways skip Sidecar changes, sidecars Gateway changes.

``needs_push`` returns the reason as well, for ``replay --show pushes`` and ``/debug``: mesh's
addition; Go only logs "Skipping push to ..., no updates required".

Simplifications, named: gateways are pushed for every change but Sidecars
(``PILOT_FILTER_GATEWAY_CLUSTER_CONFIG`` off, the default: no check of the services bound to them).
Workload labels come from the Kubernetes registry only (the ServiceEntry registry's
``GetProxyWorkloadLabels``, a WorkloadEntry's labels for a VM's proxy, is not there: such a proxy
keeps its metadata labels), and a proxy without a locality anywhere gets none (istiod falls back to
the locality Envoy's node sent).
"""

from __future__ import annotations

from mesh.model.proxy import Proxy
from mesh.model.push_request import ConfigKey, PushRequest
from mesh.networking.push_context import GATEWAY, SIDECAR, PushContext
from mesh.serviceregistry.kube.endpoints import LOCALITY_LABEL, augment_labels
from mesh.xds.generator import ProxyState

SERVICE_ENTRY = "ServiceEntry"
UNAFFECTED_CONFIG_KINDS = {"router": frozenset({SIDECAR}), "sidecar": frozenset({GATEWAY})}
# computeProxyState: the kinds that can change which SidecarScope a proxy has, or its content.
SCOPE_KINDS = frozenset({SERVICE_ENTRY, "DestinationRule", "VirtualService", SIDECAR, "HTTPRoute", "TCPRoute",
                         "Ingress"})


def compute_proxy_state(state: ProxyState, push: PushContext, request: PushRequest | None) -> None:
    """``computeProxyState``: the proxy's own service instances; on connecting and on a
    ``ProxyUpdate`` its labels, read again from the registry with the topology labels added; and
    its SidecarScope when it may have changed (the previous one is kept for ``needs_push``)."""
    state.instances = push.service_instances(state.proxy)
    if request is None or request.is_proxy_update():
        state.proxy.set_workload_labels(workload_labels(push.registry, state.proxy))
        set_topology_labels(state.proxy, state.instances)
    kinds = {c.kind for c in request.configs_updated} if request is not None else set()
    if request is None or not request.configs_updated or kinds & SCOPE_KINDS or state.sidecar_scope is None:
        state.prev_sidecar_scope = state.sidecar_scope
        state.sidecar_scope = push.sidecar_scope_for(state.proxy)
    else:  # the same scope, as the reused sidecar index holds it
        state.prev_sidecar_scope = state.sidecar_scope


def workload_labels(registry, proxy: Proxy) -> dict[str, str] | None:
    """``Environment.GetProxyWorkloadLabels``: what the registry knows of the proxy's workload
    (the aggregate's ``proxy_workload_labels``); None from a registry without workloads."""
    find = getattr(registry, "proxy_workload_labels", None)  # test registries have no pods
    return find(proxy) if find is not None else None


def set_topology_labels(proxy: Proxy, instances: list) -> None:
    """``setTopologyLabels`` (ads.go#L601-L630): the locality of the proxy's first service instance
    (else its ``istio-locality`` label), its cluster, node and network, added as topology labels
    (``AugmentLabels``) as endpoints carry them."""
    locality = instances[0].endpoint.locality if instances else proxy.labels.get(LOCALITY_LABEL, "")
    proxy.labels = augment_labels(proxy.labels, str(proxy.metadata.get("CLUSTER_ID") or ""), locality,
                                  proxy.node_name, str(proxy.metadata.get("NETWORK") or ""))


def _dependent_on(state: ProxyState, config: ConfigKey) -> bool:
    """``proxyDependentOnConfig``."""
    proxy_type = state.proxy.type
    if config.kind in UNAFFECTED_CONFIG_KINDS.get(proxy_type, ()):
        return False
    if proxy_type != "sidecar":
        return True
    scopes = [s for s in (state.sidecar_scope, state.prev_sidecar_scope) if s is not None]
    return not scopes or any(s.depends_on_config(config) for s in scopes)


def needs_push(state: ProxyState, request: PushRequest) -> tuple[bool, str]:
    """``DefaultProxyNeedsPush`` with its reason: (push?, why)."""
    if not request.configs_updated:
        return True, "all configs may have changed"
    for config in sorted(request.configs_updated):
        if _dependent_on(state, config):
            return True, f"depends on {config}"
    for inst in state.instances[:1]:  # the proxy's own service changed
        own = ConfigKey(SERVICE_ENTRY, inst.service.hostname, inst.service.namespace)
        if own in request.configs_updated:
            return True, f"its own service {own}"
    kinds = sorted({c.kind for c in request.configs_updated})
    if set(kinds) <= UNAFFECTED_CONFIG_KINDS.get(state.proxy.type, frozenset()):
        return False, f"{state.proxy.type}s ignore {', '.join(kinds)}"
    return False, "not in scope: its SidecarScope depends on none of " + ", ".join(
        str(c) for c in sorted(request.configs_updated))
