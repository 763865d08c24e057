"""``python -m mesh operator --kubeconfig K``: the IstioOperator controller, like Istio's in-cluster
operator (https://github.com/istio/istio/blob/1.19.0/operator/cmd/operator/server.go#L101-L201
starts it; mesh/install/operator.py is the loop).

It watches IstioOperator objects (and the objects they installed) in the cluster of ``K`` — a
real one or ``python -m mesh apiserver`` — and reconciles each with the renderer ``mesh install``
uses, printing one line per reconcile. ``--once`` reconciles what is there, waits until a round
changes nothing, and exits (for scripts and tests); otherwise it runs until interrupted.
"""

from __future__ import annotations

import signal
import threading

from mesh.cli import UsageError

QUIET_SECONDS = 1.0  # --once: a round with no new work for this long means converged


def register(subparsers) -> None:
    p = subparsers.add_parser("operator", help="reconcile IstioOperator objects in a cluster (the Istio operator)",
                              description="Watch IstioOperator objects and keep the cluster equal to what they render.")
    p.add_argument("--kubeconfig", metavar="K", required=True, help="kubeconfig of the cluster to watch")
    p.add_argument("--once", action="store_true", help="reconcile until nothing changes, then exit")
    p.add_argument("--wait", action="store_true", help="wait for Deployments to be Available while reconciling")
    p.set_defaults(func=run)


def run(args) -> int:
    from mesh.install.operator import Operator
    from mesh.kube.live import LiveClient

    try:
        client = LiveClient(args.kubeconfig)
        operator = Operator(client, wait=args.wait)
    except Exception as err:  # an unreadable kubeconfig, a server that is not there
        raise UsageError(f"--kubeconfig {args.kubeconfig}: {err}") from None
    stop = threading.Event()
    if not args.once:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
    print(f"mesh operator: watching IstioOperator objects ({len(operator.iops)} found)", flush=True)
    try:
        while not stop.is_set():
            done = operator.process(block_seconds=QUIET_SECONDS)
            for outcome in done:
                print(outcome, flush=True)
            if args.once and not done:
                break
    finally:
        client.close()
    return 0
