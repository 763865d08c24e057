"""``python -m mesh port-forward <pod>[.<namespace>] [LOCAL:]PORT``: 127.0.0.1 to a port in a pod.

Like ``kubectl port-forward`` (https://kubernetes.io/docs/reference/kubectl/generated/kubectl_port-forward/):
``127.0.0.1:LOCAL`` in the root namespace reaches ``<pod ip>:PORT`` inside a running demo pod,
through a Unix socket (``mesh.cni.portforward``); LOCAL 0 or left out picks a free port. Ctrl-C
stops it. The pods are those of a running ``mesh demo`` in network-namespace mode (as root).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal

from mesh.cli import UsageError
from mesh.cni.node import find_pod
from mesh.cni.pod import PodSandbox
from mesh.cni.portforward import PortForward
from mesh.cni.state import STATE_DIR


def register(subparsers) -> None:
    p = subparsers.add_parser("port-forward", help="forward 127.0.0.1:LOCAL to a port in a demo pod (like kubectl)",
                              description=__doc__)
    p.add_argument("pod", help="<pod>[.<namespace>], a pod name or a unique prefix of one")
    p.add_argument("ports", help="[LOCAL:]PORT, e.g. 9080 or 8000:9080")
    p.set_defaults(func=run)


def parse_ports(text: str) -> tuple[int, int]:
    local, _, remote = text.rpartition(":")
    if not remote.isdigit() or (local and not local.isdigit()):
        raise UsageError(f"ports {text!r}: expected [LOCAL:]PORT")
    return int(local or 0), int(remote)


def run(args) -> int:
    local, remote = parse_ports(args.ports)
    if os.geteuid() != 0:
        raise UsageError("mesh port-forward enters a pod's network namespace: run it as root")
    try:
        netns, info = find_pod(args.pod)
    except LookupError as err:
        raise UsageError(str(err)) from err
    name, _, namespace = netns.split("-", 1)[1].rpartition(".")
    pod = PodSandbox(name, namespace, info["ip"], netns, veth="")
    return asyncio.run(_forward(pod, remote, local))


async def _forward(pod: PodSandbox, remote: int, local: int) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    path = STATE_DIR / f"pf-{os.getpid()}.sock"
    forward = await PortForward(pod, remote, path, local).start()
    try:
        print(f"Forwarding from 127.0.0.1:{forward.local_port} -> {pod.ip}:{remote} in pod {pod.key}", flush=True)
        await stop.wait()
    finally:
        with contextlib.suppress(Exception):
            await forward.stop()
    return 0
