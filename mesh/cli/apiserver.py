"""``python -m mesh apiserver``: serve a trace as a Kubernetes API for kubectl and friends.

Not an istiod command: it plays the cluster that istiod
(https://github.com/istio/istio/blob/1.19.0/pilot/cmd/pilot-discovery/app/cmd.go) would
watch, so ``kubectl get pods -A -w`` or ``mesh serve --kubeconfig`` can watch a trace unfold.
"""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

from mesh.cli import UsageError
from mesh.kube.trace import TraceError, load_trace


def register(subparsers) -> None:
    p = subparsers.add_parser("apiserver", help="serve a trace as a Kubernetes API server (for kubectl)",
                              description="Replay a trace into an in-memory Kubernetes API server.")
    p.add_argument("--trace", default=None, help="trace file or built-in trace name (default: bookinfo)")
    p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0 picks a free one)")
    p.add_argument("--speed", type=float, default=1.0,
                   help="replay speed: 1 real time, 2 twice as fast, 0 everything at once")
    p.add_argument("--tls", action="store_true", help="serve HTTPS with a fresh self-signed CA")
    p.add_argument("--kubeconfig-out", metavar="K", help="write a kubeconfig for this server to K")
    p.add_argument("--ready-file", metavar="F", help='write {"port": N} to F once serving')
    p.add_argument("--kube-version", default=None, help="Kubernetes version reported by /version (e.g. 1.28.0)")
    p.set_defaults(func=run)


def run(args) -> int:
    from mesh.kube.apiserver import ApiServer
    from mesh.kube.apiserver.discovery import DEFAULT_KUBE_VERSION

    if args.speed < 0:
        raise UsageError(f"--speed must be >= 0, got {args.speed}")
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be between 0 and 65535, got {args.port}")
    try:
        server = ApiServer(load_trace(args.trace), port=args.port, speed=args.speed, tls=args.tls,
                           kube_version=args.kube_version or DEFAULT_KUBE_VERSION)
    except (FileNotFoundError, TraceError) as err:
        raise UsageError(str(err)) from err
    try:
        return asyncio.run(_serve(server, args))
    except OSError as err:  # the port is taken, the kubeconfig folder is missing...
        raise UsageError(f"{err.strerror or err}{f': {err.filename}' if err.filename else ''}") from err


async def _serve(server, args) -> int:
    await server.start()
    print(f"mesh apiserver: serving {server.trace.name if server.trace else '(empty)'} on {server.url}", flush=True)
    if args.kubeconfig_out:
        server.write_kubeconfig(args.kubeconfig_out)
        print(f"mesh apiserver: wrote kubeconfig {args.kubeconfig_out}", flush=True)
    if args.ready_file:
        Path(args.ready_file).write_text(json.dumps({"port": server.port}), encoding="utf-8")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await server.stop()
    return 0
