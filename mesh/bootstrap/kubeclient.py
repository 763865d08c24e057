"""Stage 1, initKubeClient: a Kubernetes client, only when a cluster is a config or service source.

Go: https://github.com/istio/istio/blob/1.19.0/pilot/pkg/bootstrap/server.go#L510-L555 (istiod keeps
it in server.go). A client handed to ``Server`` is kept, as istiod keeps one set by its tests
(server.go#L511-L514). mesh's clusters are a trace (``ReplayClient``, on the server's clock) or a
kubeconfig (``LiveClient``, on the official ``kubernetes`` package).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from mesh.config.mesh import read_mesh_config_file
from mesh.kube.addresses import to_loopback
from mesh.kube.client import KubeClient, ReplayClient
from mesh.kube.trace import load_trace

if TYPE_CHECKING:
    from mesh.bootstrap.server import Server

log = logging.getLogger("mesh.bootstrap")


def init_kube_client(server: Server) -> None:
    args = server.args
    if server.kube_client is None:
        if not (has_k8s_config_store(server) or "Kubernetes" in args.registries):
            log.info("no Kubernetes config source or registry: running without a kube client")
            return
        server.kube_client = new_kube_client(server)
    server.environment.domain_suffix = args.domain_suffix or server.kube_client.domain_suffix


def new_kube_client(server: Server) -> KubeClient:
    args = server.args
    if args.trace is not None:
        trace = load_trace(args.trace)
        if args.loopback_addresses:  # real Envoys in the root namespace: never the trace's 10.x addresses
            trace = to_loopback(trace)
        return ReplayClient(trace, server.clock, speed=args.speed)
    if args.kubeconfig is not None:
        # Imported here on purpose: the official kubernetes package is slow to import and only a
        # live cluster needs it (a replayed one never does).
        from mesh.kube.live import LiveClient

        # Informer handlers run on the event loop serve runs on, like every other callback.
        return LiveClient(args.kubeconfig, loop=running_loop())
    raise ValueError(
        "init_kube_client: the Kubernetes registry is enabled but no cluster was given: "
        "pass a trace or a kubeconfig, or set registries=() to run without Kubernetes"
    )


def has_k8s_config_store(server: Server) -> bool:
    """Is Kubernetes a config source? (``configSources`` with ``k8s://``, or none and a cluster.)"""
    args = server.args
    if args.config_dir:
        return False  # a file config source replaces the cluster as the config store
    if args.mesh_config_file and Path(args.mesh_config_file).exists():
        sources = read_mesh_config_file(args.mesh_config_file).get("configSources") or []
        if not sources:
            return bool(args.kubeconfig or args.trace)
        return any(s.get("address") == "k8s://" for s in sources)
    return bool(args.kubeconfig or args.trace)


def running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:  # constructed outside asyncio (a notebook, a test): handlers run on watch threads
        return None
