"""``python -m mesh iptables [--dry-run] [--netns NS] -- <istio-iptables args>``: istio-init's rules.

The sidecar template gives the ``istio-init`` container the args of ``istio-iptables``
(https://github.com/istio/istio/blob/1.19.0/tools/istio-iptables/pkg/cmd/root.go); this command
takes the same args. ``--dry-run`` (or istio-iptables' own ``-n``) prints the ``iptables-restore``
input that would be applied, as ``istio-iptables --dry-run`` logs it; otherwise the rules are
applied inside a pod's network namespace (``--pod`` as ``mesh exec`` names pods, or ``--netns``, a
namespace mesh created) — never in the namespace this command runs in. The logic is in ``mesh.iptables``.
"""

from __future__ import annotations

import sys

from mesh.cli import UsageError
from mesh.cni.node import find_pod
from mesh.cni.state import NETNS_NAME
from mesh.iptables.apply import ApplyError, apply, dry_run_text
from mesh.iptables.config import ConfigError, parse_args


def register(subparsers) -> None:
    p = subparsers.add_parser("iptables", help="istio-iptables (istio-init): print or apply a pod's capture rules",
                              description=__doc__)
    p.add_argument("--dry-run", action="store_true", help="print the rules instead of applying them")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--netns", default=None, help="apply in this mesh-created network namespace")
    where.add_argument("--pod", default=None, help="apply in a running demo pod, <pod>[.<namespace>] (as mesh exec)")
    p.add_argument("--pod-ip", default=None, help="the pod's IP (an IPv6 one also writes the ip6tables rules)")
    p.add_argument("args", nargs="*", help="istio-iptables' arguments, after --")
    p.set_defaults(func=run)


def run(args) -> int:
    try:
        cfg = parse_args(args.args, pod_ip=args.pod_ip)
    except ConfigError as err:
        raise UsageError(f"istio-iptables args: {err}") from err
    if args.dry_run or cfg.dry_run:
        sys.stdout.write(dry_run_text(cfg))
        return 0
    netns = args.netns
    if args.pod:
        try:
            netns, _ = find_pod(args.pod)
        except LookupError as err:
            raise UsageError(str(err)) from err
    if not netns:
        raise UsageError("say where to apply the rules: --pod or --netns (or print them with --dry-run)")
    if not NETNS_NAME.match(netns):  # never another tool's namespace, never the root namespace
        raise UsageError(f"--netns {netns}: not a namespace mesh created (mesh<pid>.<n>-<pod>.<namespace>)")
    try:
        apply(cfg, netns)
    except ApplyError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"applied istio-iptables rules in network namespace {netns}")
    return 0
