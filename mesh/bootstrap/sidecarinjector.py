"""Stage 13, initSidecarInjector: the injector config watcher, the ``/inject`` webhook and, on a
replayed cluster, the admission step that sends new pods through it.

Go: https://github.com/istio/istio/blob/1.19.0/pilot/pkg/bootstrap/sidecarinjector.go#L43-L112.
Config files (``inject_config_file`` + ``inject_values_file``) win over the ConfigMap
``istio-sidecar-injector[-<rev>]``; with neither, istiod runs without injection. The ConfigMap is
watched through the ConfigMap informer; a bad edit is logged and the last good config kept, but a
bad config at startup stops the server, as it stops istiod. ``/inject`` is served on the HTTPS
webhook port and on the debug HTTP port; the decisions are at ``/debug/injection`` and in
``server.injection_webhook.decisions``. The injection itself is ``mesh.inject``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from mesh.inject.admission import ReplayAdmission
from mesh.inject.config import InjectorConfigError, InjectorConfigWatcher, injector_configmap_name, load_files
from mesh.inject.webhook import Webhook, add_routes, describe_decisions
from mesh.kube.client import ReplayClient
from mesh.kube.configmapwatcher import watch_configmap

if TYPE_CHECKING:
    from mesh.bootstrap.server import Server

log = logging.getLogger("mesh.bootstrap")


def injector_config_watcher(server: Server) -> InjectorConfigWatcher | None:
    """The files if given, else the ConfigMap; None when there is neither (no injection)."""
    args, client = server.args, server.kube_client
    if args.inject_config_file:
        config, values = load_files(args.inject_config_file, args.inject_values_file)
        return InjectorConfigWatcher(config, values, source=f"file {args.inject_config_file}")
    if client is None:
        log.info("skipping sidecar injector: no injection config files and no kube client")
        return None
    name, namespace = injector_configmap_name(args.revision), args.namespace
    if client.get("configmaps", name, namespace) is None:
        log.info("skipping sidecar injector: ConfigMap %s/%s not found", namespace, name)
        return None
    watcher = InjectorConfigWatcher()
    watch_configmap(client, namespace, name, watcher.handle_configmap)
    if watcher.generation == 0:
        raise InjectorConfigError(watcher.errors[-1] if watcher.errors else f"{namespace}/{name}: unusable")
    return watcher


def init_sidecar_injector(server: Server) -> Webhook | None:
    watcher = injector_config_watcher(server)
    if watcher is None:
        return None
    args = server.args
    webhook = Webhook(watcher, server.environment.mesh, revision=args.revision, clock=server.clock)
    if isinstance(server.kube_client, ReplayClient):
        ReplayAdmission(server.kube_client, webhook, args.namespace, args.revision).install()
    server.http_route_adders.append(lambda app: add_routes(app, webhook))
    server.webhook_route_adders.append(lambda app: add_routes(app, webhook))
    server.debug_routes["/debug/injection"] = lambda q: describe_decisions(webhook.decisions)
    return webhook
