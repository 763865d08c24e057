"""``python -m mesh exec <pod>[.<namespace>] -- <command>``: run a command inside a running pod.

Like ``kubectl exec`` (https://kubernetes.io/docs/reference/kubectl/generated/kubectl_exec/): the
command runs in the pod's network namespace (``ip netns exec``), so it sees the pod's ``eth0``,
its ``/etc/hosts`` (Service names → ClusterIPs) and its iptables capture — ``mesh exec
productpage -- curl http://reviews:9080/`` goes through productpage's sidecar. ``<pod>`` is a pod
name or a unique prefix of one (``productpage``); the namespace defaults to ``default``. The pods
are those of a running ``mesh demo`` in network-namespace mode (as root).
"""

from __future__ import annotations

import os

from mesh.cli import UsageError
from mesh.cni.node import find_pod


def register(subparsers) -> None:
    p = subparsers.add_parser("exec", help="run a command inside a running demo pod (like kubectl exec)",
                              description=__doc__)
    p.add_argument("pod", help="<pod>[.<namespace>], a pod name or a unique prefix of one")
    p.add_argument("command", nargs="+", help="the command, after --")
    p.set_defaults(func=run)


def run(args) -> int:
    if os.geteuid() != 0:
        raise UsageError("mesh exec enters a pod's network namespace: run it as root")
    try:
        netns, _ = find_pod(args.pod)
    except LookupError as err:
        raise UsageError(str(err)) from err
    os.execvp("ip", ["ip", "netns", "exec", netns, *args.command])
    return 0  # not reached
