"""Debug views of the ADS server (``/debug/syncz``, ``/debug/adsz``, ``/debug/config_dump``) and
the one "is this proxy synced" check the demo, the notebooks and the Envoy tests wait on.

Go: ``Syncz`` https://github.com/istio/istio/blob/1.19.0/pilot/pkg/xds/debug.go#L268-L295 (and
its ``SyncStatus`` fields, debug.go#L117-L133), ``adsz`` (debug.go#L561-L604), ``ConfigDump``
(debug.go#L629) and istioctl's status rule ``xdsStatus``
https://github.com/istio/istio/blob/1.19.0/istioctl/pkg/writer/pilot/status.go#L140-L156.

Each function returns plain JSON-able data; the bootstrap's debug mux serves it. Nonces stand
for versions, as in istiod: a type is SYNCED when the last nonce sent was ACKed, STALE when
something newer was sent than was ACKed (a NACK leaves it so), NOT SENT when nothing was.
"""

from __future__ import annotations

import betterproto2

from mesh.model.push_request import PushRequest, TriggerReason
from mesh.xds.fastpath import without_pydantic_validation
from mesh.xds.generator import WatchedResource, xds_status
from mesh.xds.types import CLUSTER, ENDPOINT, LISTENER, MESSAGE_CLASSES, PUSH_ORDER, ROUTE, TYPES

_ADMIN = "type.googleapis.com/envoy.admin.v3."


def proxy_synced(ads, proxy_id: str) -> bool:
    """Is this proxy caught up: has it asked for clusters and listeners, has the current push
    reached it, and has it ACKed everything sent to it (every type SYNCED)?

    Not "every type at the current version": a push sends only the types it concerns (a
    VirtualService change sends no EDS, as in istiod), so the others keep older versions."""
    con = ads.connection(proxy_id)
    if con is None or CLUSTER not in con.watched or LISTENER not in con.watched:
        return False
    return con.push_version == ads.push_context.version and con.synced() and con.pending_push is None


def proxy_answered(ads, proxy_id: str) -> bool:
    """Has this proxy answered the last response of every type it watches — ACK or NACK?"""
    con = ads.connection(proxy_id)
    if con is None or not con.watched:
        return False
    return all(w.answered() for t, w in con.watched.items() if t in PUSH_ORDER)


def syncz(ads, namespace: str | None = None) -> list[dict]:
    out = []
    for con in sorted(ads.connections.values(), key=lambda c: c.number):
        if con.state is None or (namespace and con.state.proxy.namespace != namespace):
            continue
        proxy = con.state.proxy
        row = {"cluster_id": proxy.metadata.get("CLUSTER_ID", "Kubernetes"), "proxy": proxy.id,
               "proxy_type": proxy.type, "istio_version": proxy.istio_version}
        for t in TYPES:
            name, w = t.sync_field, con.watched.get(t.url)
            if w is not None and w.nonce_sent:
                row[f"{name}_sent"] = w.nonce_sent
            if w is not None and w.nonce_acked:
                row[f"{name}_acked"] = w.nonce_acked
        out.append(row)
    return out


def proxy_status(ads) -> list[dict]:
    """``istioctl proxy-status`` rows: one per proxy, a status per type."""
    rows = []
    for s in syncz(ads):
        row = {"NAME": s["proxy"], "CLUSTER": s["cluster_id"]}
        for t in TYPES:
            row[t.short] = xds_status(s.get(f"{t.sync_field}_sent", ""), s.get(f"{t.sync_field}_acked", ""))
        row["ISTIOD"] = "mesh"
        row["VERSION"] = s["istio_version"]
        rows.append(row)
    return rows


def adsz(ads, push: bool = False) -> dict:
    """Connected clients and what they watch; ``push=True`` (``?push=true``) pushes to all first."""
    if push:
        ads.push(PushRequest.of(TriggerReason.DEBUG))
    clients = []
    for con in sorted(ads.connections.values(), key=lambda c: c.number):
        if con.state is None:
            continue
        clients.append({
            "connectionId": con.id, "address": con.peer, "protocol": con.protocol, "labels": dict(con.state.proxy.labels),
            "metadata": con.state.proxy.metadata,
            "watches": {t: list(w.names) for t, w in sorted(con.watched.items())},
            "sent": {t: w.version_sent for t, w in sorted(con.watched.items())},
            "acked": {t: w.version_acked for t, w in sorted(con.watched.items())},
            "nacks": {t: w.last_error for t, w in sorted(con.watched.items()) if w.last_error},
        })
    return {"totalClients": len(clients), "clients": clients}


def config_dump(ads, proxy_id: str, include_eds: bool = False) -> dict | None:
    """What istiod would send this proxy now, in the shape and field names of Envoy's own
    ``/config_dump`` (``connectionConfigDump``, debug.go#L761-L893): the sections in Envoy's order —
    an empty bootstrap (istiod never sees it), clusters, endpoints only with ``include_eds``,
    listeners, (scoped) routes, secrets (none: the agent serves them) and ECDS — each resource
    in protobuf JSON with the proto's own snake_case names, as Envoy prints them.
    None when the proxy is not connected."""
    con = ads.connection(proxy_id)
    if con is None or con.state is None:
        return None
    push = ads.push_context
    generated = {}
    for type_url in PUSH_ORDER:
        if type_url == ENDPOINT and not include_eds:
            continue
        watched = con.watched.get(type_url) or WatchedResource(type_url)
        resources = ads.generators[type_url].generate(con.state, push, watched, None) or []
        generated[type_url] = [envoy_json(type_url, r.body) for r in resources]
    version = push.version
    configs = [
        {"@type": _ADMIN + "BootstrapConfigDump"},
        {"@type": _ADMIN + "ClustersConfigDump", "version_info": version,
         "dynamic_active_clusters": [{"cluster": c} for c in generated[CLUSTER]]},
    ]
    if include_eds:
        configs.append({"@type": _ADMIN + "EndpointsConfigDump", "dynamic_endpoint_configs": [
            {"version_info": version, "endpoint_config": e} for e in generated[ENDPOINT]]})
    configs += [
        {"@type": _ADMIN + "ListenersConfigDump", "version_info": version, "dynamic_listeners": [
            {"name": li["name"], "active_state": {"version_info": version, "listener": li}} for li in generated[LISTENER]]},
        {"@type": _ADMIN + "ScopedRoutesConfigDump"},
        {"@type": _ADMIN + "RoutesConfigDump", "dynamic_route_configs": [
            {"version_info": version, "route_config": r} for r in generated[ROUTE]]},
        {"@type": _ADMIN + "SecretsConfigDump"},
        {"@type": _ADMIN + "EcdsConfigDump"},
    ]
    return {"configs": configs}


def envoy_json(type_url: str, body: dict) -> dict:
    """A resource as Envoy's admin API prints it: through its message class, snake_case, ``@type`` first."""
    with without_pydantic_validation():
        message = MESSAGE_CLASSES[type_url].from_dict(body)
    return {"@type": type_url, **message.to_dict(casing=betterproto2.Casing.SNAKE)}


def push_status(ads) -> dict:
    """A summary of the current push context and of what was sent and rejected."""
    push = ads.push_context
    return {
        "version": push.version,
        "services": len(push.services),
        "virtualServices": len(push.virtual_services),
        "destinationRules": len(push.destination_rules),
        "connectedProxies": sum(1 for c in ads.connections.values() if c.state is not None),
        "pushes": dict(sorted(ads.pushes_by_type.items())),
        "rejects": dict(sorted(ads.rejects.items())),
        "resourceTypes": sorted(t.rsplit(".", 1)[-1] for t in MESSAGE_CLASSES),
    }
