"""Stages 2 and 3, initMeshConfiguration and initMeshNetworks: MeshConfig and MeshNetworks, watched.

Go: https://github.com/istio/istio/blob/1.19.0/pilot/pkg/bootstrap/mesh.go (``initMeshConfiguration``
#L47-L97, ``initMeshNetworks`` #L101-L118, ``getMeshConfigMapName`` #L120-L126). The watchers
themselves (defaults, merge, validation) are ``mesh.config.mesh`` and ``mesh.config.meshnetworks``;
this module only decides where the config comes from.

Simplification, named: a mesh config file (``--meshConfig``) or networks file (``--networksConfig``)
is read once, when the stage runs; istiod watches both files (``mesh.NewFileWatcher``,
``mesh.NewNetworksWatcher`` on its file watcher) and applies an edited file. The ConfigMap is
watched in both.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from mesh.config.mesh import (
    MESH_CONFIGMAP_KEY,
    MESH_CONFIGMAP_NAME,
    NETWORKS_CONFIGMAP_KEY,
    MeshWatcher,
    default_mesh_config,
    read_mesh_config_file,
)
from mesh.config.meshnetworks import MeshNetworksError, NetworksWatcher, parse_mesh_networks
from mesh.kube.configmapwatcher import watch_configmap

if TYPE_CHECKING:
    from mesh.bootstrap.server import Server

log = logging.getLogger("mesh.bootstrap")


def mesh_configmap_name(revision: str) -> str:
    """``istio``, or ``istio-<rev>`` for a revision other than the default (``getMeshConfigMapName``)."""
    return MESH_CONFIGMAP_NAME if revision in ("", "default") else f"{MESH_CONFIGMAP_NAME}-{revision}"


def init_mesh_configuration(server: Server) -> None:
    args, env = server.args, server.environment
    if args.mesh_config_file and Path(args.mesh_config_file).exists():
        env.mesh_watcher = MeshWatcher(read_mesh_config_file(args.mesh_config_file),
                                       source=f"file {args.mesh_config_file}")
        log.warning("using local mesh config file %s, in-cluster config ignored", args.mesh_config_file)
    elif server.kube_client is None:
        env.mesh_watcher = MeshWatcher(default_mesh_config(), source="defaults")
        log.warning("using default mesh config: no mesh config file%s and no kube client",
                    f" {args.mesh_config_file}" if args.mesh_config_file else "")
    else:
        watch_mesh_configmap(server)
    server.trust_domain = env.mesh()["trustDomain"]


def watch_mesh_configmap(server: Server) -> None:
    """One ConfigMap informer feeds both watchers: the ``mesh`` and the ``meshNetworks`` keys."""
    name, namespace = mesh_configmap_name(server.args.revision), server.args.namespace
    origin = f"ConfigMap {namespace}/{name}"
    mesh_watcher = MeshWatcher(source=origin)
    networks_watcher = NetworksWatcher(source=origin)

    def on_configmap(cm: dict | None) -> None:
        data = (cm or {}).get("data") or {}
        if NETWORKS_CONFIGMAP_KEY in data:
            # A bad meshNetworks key makes istiod skip the whole ConfigMap, mesh key included
            # (https://github.com/istio/istio/blob/1.19.0/pkg/config/mesh/kubemesh/watcher.go#L33-L38).
            networks_watcher.handle_yaml(data[NETWORKS_CONFIGMAP_KEY], f"{origin} key {NETWORKS_CONFIGMAP_KEY}")
            if networks_watcher.last_failed:
                return
        if cm is None:  # deleted: back to the defaults, as ReadConfigMap(nil) does
            mesh_watcher.set_mesh(default_mesh_config())
        elif MESH_CONFIGMAP_KEY not in data:
            message = f"{origin}: missing key {MESH_CONFIGMAP_KEY!r}; keeping the last good mesh config"
            log.warning("%s", message)
            mesh_watcher.errors.append(message)
        else:
            mesh_watcher.handle_yaml(data[MESH_CONFIGMAP_KEY], f"{origin} key {MESH_CONFIGMAP_KEY}")

    watch_configmap(server.kube_client, namespace, name, on_configmap)
    server.environment.mesh_watcher = mesh_watcher
    server.environment.networks_watcher = networks_watcher


def init_mesh_networks(server: Server) -> None:
    env = server.environment
    if env.networks_watcher is not None:
        log.info("mesh networks come from the mesh ConfigMap watcher")
        return
    path = server.args.networks_file
    if path:
        try:
            networks = parse_mesh_networks(Path(path).read_text(encoding="utf-8"))
            env.networks_watcher = NetworksWatcher(networks, source=f"file {path}")
            return
        except (OSError, MeshNetworksError) as err:
            log.warning("failed to read mesh networks configuration from %s: %s", path, err)
    log.info("mesh networks configuration not provided")
    env.networks_watcher = NetworksWatcher(source="defaults")
