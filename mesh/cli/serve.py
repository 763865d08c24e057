"""``python -m mesh serve``: run the mini istiod — all 16 stages, then Server.start.

Like ``pilot-discovery discovery``
(https://github.com/istio/istio/blob/1.19.0/pilot/cmd/pilot-discovery/app/cmd.go#L93-L115):
build the server, start it, wait for a signal, shut down cleanly. The cluster is the embedded
bookinfo trace unless ``--trace`` or ``--kubeconfig`` says otherwise; the trace replays on the
real clock at ``--speed``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
from pathlib import Path

from mesh.bootstrap import Server, ServerArgs
from mesh.bootstrap.args import DEFAULT_PORTS
from mesh.cli import UsageError
from mesh.clock import RealClock
from mesh.kube.trace import TraceError
from mesh.util.net import PortInUse, is_loopback

log = logging.getLogger("mesh.serve")


def register(subparsers) -> None:
    p = subparsers.add_parser("serve", help="run the mini istiod (default: on the embedded bookinfo trace)",
                              description=__doc__)
    source = p.add_mutually_exclusive_group()
    source.add_argument("--trace", default=None, help="trace file or built-in trace name (default: bookinfo)")
    source.add_argument("--kubeconfig", default=None, help="watch a live cluster instead of a trace")
    p.add_argument("--mesh-config", dest="mesh_config_file", default=None,
                   help="mesh config file (istiod --meshConfig); default: the istio ConfigMap")
    p.add_argument("--networks", dest="networks_file", default=None, help="mesh networks file")
    p.add_argument("--config-dir", default=None, help="read Istio config from YAML files in this folder")
    p.add_argument("--inject-config", dest="inject_config_file", default=None,
                   help="sidecar injector config file (default: the istio-sidecar-injector ConfigMap)")
    p.add_argument("--values", dest="inject_values_file", default=None, help="sidecar injector values file")
    p.add_argument("--domain", dest="domain_suffix", default=None, help="DNS domain suffix (cluster.local)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; loopback only)")
    for name, port in DEFAULT_PORTS.items():
        p.add_argument(f"--{name.replace('_', '-')}-port", type=int, default=port, dest=f"port_{name}",
                       help=f"{name} port (default {port}; 0 picks a free one)")
    p.add_argument("--speed", type=float, default=1.0, help="trace replay speed (1 = real time, 0 = all at once)")
    p.add_argument("--loopback-addresses", action="store_true",
                   help="replay the trace with loopback stand-ins for its 10.x pod/Service addresses "
                        "(127.10.x.y, 127.96.x.y), for real Envoys started with `mesh proxy`")
    p.add_argument("--ready-file", default=None,
                   help="write the bound ports as JSON here once everything is up and synced")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.set_defaults(func=run)


def run(args) -> int:
    if not is_loopback(args.host):
        raise UsageError(f"--host {args.host}: mesh binds to loopback addresses (127.0.0.0/8) only")
    if args.trace is None and args.kubeconfig is None:
        args.trace = "bookinfo"
    try:
        return asyncio.run(_serve(args))
    except TraceError as err:
        print(f"error: the trace cannot be replayed; nothing was applied:\n{err}", file=sys.stderr)
        return 2
    except PortInUse as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except FileNotFoundError as err:
        raise UsageError(str(err)) from err


async def _serve(args) -> int:
    ports = {name: getattr(args, f"port_{name}") for name in DEFAULT_PORTS}
    server_args = ServerArgs(trace=args.trace, kubeconfig=args.kubeconfig, mesh_config_file=args.mesh_config_file,
                             networks_file=args.networks_file, config_dir=args.config_dir,
                             inject_config_file=args.inject_config_file, inject_values_file=args.inject_values_file,
                             domain_suffix=args.domain_suffix, host=args.host, ports=ports, speed=args.speed,
                             loopback_addresses=args.loopback_addresses, clock=RealClock())
    server = Server(server_args)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    server.run_all()
    _log_replay(server)
    try:
        await server.start()
    except BaseException:
        await server.stop()  # what did start is stopped before the error is reported
        raise
    log.info("mesh is up: ports %s; %d/16 stages implemented", json.dumps(server.bound_ports),
             len(server.completed))
    if args.ready_file:
        Path(args.ready_file).write_text(json.dumps(server.bound_ports) + "\n", encoding="utf-8")
    try:
        if args.duration is not None:
            await asyncio.wait_for(stop.wait(), timeout=args.duration)
        else:
            await stop.wait()
    except TimeoutError:
        pass
    log.info("shutting down")
    await server.stop()
    log.info("stopped cleanly")
    return 0


def _log_replay(server: Server) -> None:
    """Log each trace event when it is applied, so the user sees the cluster change."""
    client = server.kube_client
    if client is None or not hasattr(client, "applied"):
        return
    seen = len(client.applied)
    log.info("cluster: %d objects from the trace at start", seen)

    def tick() -> None:
        nonlocal seen
        for event in client.applied[seen:]:
            meta = event.object.get("metadata", {})
            where = f"{meta.get('namespace')}/{meta.get('name')}" if meta.get("namespace") else meta.get("name")
            log.info("t=%.1fs %s %s %s", event.t, event.type, event.object.get("kind"), where)
        seen = len(client.applied)
        server.clock.call_later(0.2, tick)

    server.clock.call_later(0.2, tick)
