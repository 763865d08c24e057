"""``python -m mesh demo``: mesh serve on bookinfo, plus the pods — tiny apps and real Envoys.

``mesh serve`` is istiod alone (https://github.com/istio/istio/blob/1.19.0/pilot/cmd/pilot-discovery/app/cmd.go#L93-L115);
the demo adds what a cluster would run next to it: every bookinfo pod's app on its pod IP (in its
own network namespace as root, else on a loopback stand-in; ``mesh.demo.podmode``) and its sidecar (one Envoy each, as pilot-agent starts it), waits until every sidecar is
SYNCED, prints the ``curl`` commands that send traffic through them, and stops everything on
Ctrl-C, SIGTERM or ``--duration``. The logic is in ``mesh.demo``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from pathlib import Path

from mesh.bootstrap.args import DEFAULT_PORTS
from mesh.cli import UsageError
from mesh.cli.proxy import delta_setting
from mesh.demo.podmode import MODES
from mesh.demo.runner import BookinfoDemo, DemoOptions
from mesh.kube.addresses import check_subnet
from mesh.kube.trace import TraceError

log = logging.getLogger("mesh.demo")


def register(subparsers) -> None:
    p = subparsers.add_parser("demo", help="bookinfo with real Envoy sidecars: mesh serve + apps + one Envoy per pod",
                              description=__doc__)
    p.add_argument("--trace", default="bookinfo", help="trace file or built-in trace name (default: bookinfo)")
    p.add_argument("--speed", type=float, default=1.0, help="trace replay speed (1 = real time, 0 = all at once)")
    p.add_argument("--pods", choices=MODES, default="auto",
                   help="where pods run: network namespaces on their trace IPs with iptables capture (netns, "
                        "needs root), loopback stand-ins 127.10.0.x (loopback), or the best available (auto)")
    p.add_argument("--subnet", default=None,
                   help="loopback mode: run the pods on <subnet>.x instead of 127.10.0.x (e.g. 127.10.7)")
    for name, port in DEFAULT_PORTS.items():
        p.add_argument(f"--{name.replace('_', '-')}-port", type=int, default=port, dest=f"port_{name}",
                       help=f"{name} port (default {port}; 0 picks a free one)")
    p.add_argument("--envoy-log-level", default="warning", help="Envoy's --log-level (default warning)")
    p.add_argument("--delta", action="store_true",
                   help="sidecars use Delta xDS (api_type DELTA_GRPC; also ISTIO_DELTA_XDS=true in the environment)")
    p.add_argument("--ready-file", default=None,
                   help="once every sidecar is synced, write the ports and each pod's sidecar address here (JSON)")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds of running")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.subnet is not None:
        try:
            check_subnet(args.subnet)
        except ValueError as err:
            raise UsageError(f"--subnet: {err}") from err
    options = DemoOptions(trace=args.trace, speed=args.speed, subnet=args.subnet, pods=args.pods,
                          ports={name: getattr(args, f"port_{name}") for name in DEFAULT_PORTS},
                          envoy_log_level=args.envoy_log_level, delta=delta_setting(args, dict(os.environ)))
    try:
        return asyncio.run(_demo(options, args))
    except TraceError as err:
        print(f"error: the trace cannot be replayed; nothing was started:\n{err}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError) as err:  # no such trace, or one without pods to run
        raise UsageError(str(err)) from err
    except TimeoutError as err:  # everything started was stopped again
        print(f"error: {err}", file=sys.stderr)
        return 1
    except OSError as err:  # a port or pod address already taken, most often by another demo
        print(f"error: {err}\n(is another `mesh serve` or `mesh demo` running? try --subnet and port 0)",
              file=sys.stderr)
        return 1


async def _demo(options: DemoOptions, args) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    demo = BookinfoDemo(options)
    starting = asyncio.ensure_future(demo.start())
    # A signal during start-up also stops cleanly: start() tears down what it began.
    stopped = asyncio.ensure_future(stop.wait())
    await asyncio.wait([starting, stopped], return_when=asyncio.FIRST_COMPLETED)
    if not starting.done():
        starting.cancel()
        try:
            await starting
        except asyncio.CancelledError:
            pass
        log.info("stopped before the demo was up")
        return 130
    stopped.cancel()
    await starting  # raises what start() raised, after it cleaned up
    try:
        _announce(demo)
        if args.ready_file:
            ready = {"ports": demo.server.bound_ports,
                     "mode": demo.mode.name, "forwards": demo.forward_urls(),
                     # loopback: each sidecar's HTTP proxy address; netns: the pod's network namespace
                     "sidecars": {key: p.agent.netns or f"{p.ip}:{p.agent.http_proxy_port}"
                                  for key, p in sorted(demo.pods.items()) if p.agent is not None}}
            Path(args.ready_file).write_text(json.dumps(ready, indent=2) + "\n", encoding="utf-8")
        try:
            await asyncio.wait_for(stop.wait(), timeout=args.duration)
        except TimeoutError:
            pass
    finally:
        log.info("shutting down: Envoys, apps, then the server")
        await demo.stop()
        log.info("stopped cleanly")
    return 0


def _announce(demo: BookinfoDemo) -> None:
    kinds = [p.agent.pod.proxy_type for p in demo.pods.values() if p.agent is not None]
    gateways = f", {kinds.count('router')} ingress gateway" if "router" in kinds else ""
    lines = ["", f"{Path(demo.options.trace).stem} is up: {len(demo.pods)} pods ({demo.mode.name}), "
                 f"{kinds.count('sidecar')} with a SYNCED Envoy sidecar{gateways}."]
    # the ingress gateway's port-forward: bookinfo-gateway's VirtualService routes /productpage through it
    lines += [f"  {name}: {url}productpage" if name == "istio-ingressgateway" else f"  {name}: {url}"
              for name, url in demo.forward_urls().items()]
    lines += [f"Send traffic through {demo.entry_pod().app.app}'s sidecar:"]
    lines += [f"  {c}" for c in demo.curl_commands()]
    lines += ["What istiod sent the sidecars:"]
    lines += [f"  {c}" for c in demo.status_commands()]
    lines += ["Ctrl-C stops everything.", ""]
    print("\n".join(lines), flush=True)
