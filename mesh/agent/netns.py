"""Reaching into a pod's network namespace from an agent that runs outside it.

Go: none. In Istio pilot-agent runs in the pod, next to Envoy, so ``localhost:15000`` (Envoy's
admin) and ``:15020`` (the agent's status port) are simply the pod's. mesh's agent runs in the
root namespace (DESIGN §6a) and Envoy inside the pod's namespace, so the agent does what a
process in the pod would do from a thread that has joined the pod's namespace:

* ``PodNetwork.listen`` opens a listening socket there (the status port 15020). A socket keeps
  the namespace it was created in, so the agent's event loop then serves it as any other.
* ``PodNetwork.call`` runs a blocking function there (an HTTP GET to Envoy's admin on
  ``127.0.0.1:15000`` of the pod).
* ``envoy_prefix`` is the command prefix that starts Envoy inside the namespace as the proxy's
  uid and gid 1337 (``ip netns exec <ns> setpriv --reuid 1337 --regid 1337``), as the injection
  template runs istio-proxy with REDIRECT capture: ``runAsUser: 1337``, ``runAsGroup: 1337``
  (https://github.com/istio/istio/blob/1.19.0/manifests/charts/istio-control/istio-discovery/files/injection-template.yaml#L381-L387).
  istio-iptables takes the proxy GID from the ``-u`` value
  (https://github.com/istio/istio/blob/1.19.0/tools/istio-iptables/pkg/cmd/root.go#L171-L174) and
  ISTIO_OUTPUT returns that uid's and gid's traffic uncaptured, except what goes to the pod's own
  address over ``lo``
  (https://github.com/istio/istio/blob/1.19.0/tools/istio-iptables/pkg/capture/run.go#L356-L438).
  The uid matters, not only the gid: the uid's rules come first, and their
  ``-o lo -m owner ! --uid-owner 1337 -j RETURN`` (L394-L395) would return an Envoy of uid 0
  calling its own pod's IP straight to the app, where Istio's Envoy is sent back into 15006 by
  ``-o lo ! -d 127.0.0.1/32 -m owner --uid-owner 1337 -j ISTIO_IN_REDIRECT`` (L373-L378): a pod
  calling its own Service through its sidecar. ``proxy_user`` picks uid 1337 when that user can
  run the Envoy binary and use the agent's directory, else keeps uid 0 with gid 1337 (say a
  virtualenv under a directory only root can read) and logs what that loses.

``setns(2)`` with ``CLONE_NEWNET`` moves only the calling thread, so a small pool of threads per
pod lives in its namespace for the agent's lifetime; the loop's threads never move.
Python 3.11 has no ``os.setns``, hence ``ctypes``.

Without a namespace (the loopback fallback) the same calls run on the agent's own network.
"""

from __future__ import annotations

import asyncio
import ctypes
import http.client
import os
import shutil
import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

CLONE_NEWNET = 0x40000000
PROXY_UID = 1337  # istio-proxy's user (the injection template's runAsUser)
PROXY_GID = 1337  # and group: ISTIO_OUTPUT returns their traffic before any REDIRECT
NETNS_DIR = Path("/run/netns")  # where `ip netns add` pins namespaces by name

T = TypeVar("T")


class NetnsError(RuntimeError):
    pass


def _join(name: str) -> None:
    """Move the calling thread into network namespace ``name`` (the executor's initializer)."""
    fd = os.open(NETNS_DIR / name, os.O_RDONLY | os.O_CLOEXEC)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns into network namespace {name}: {os.strerror(err)}")
    finally:
        os.close(fd)


class PodNetwork:
    """The network a pod's Envoy sees: namespace ``name``, or the agent's own when ``None``."""

    def __init__(self, name: str | None = None):
        if name is not None and not (NETNS_DIR / name).exists():
            raise NetnsError(f"no network namespace {name!r} ({NETNS_DIR / name} does not exist)")
        self.name = name
        self._pool: ThreadPoolExecutor | None = None

    def _executor(self) -> ThreadPoolExecutor:
        """The pod's own threads (joined to its namespace, if any). More than one: a readiness GET
        to Envoy's 15021 waits for the status server's own admin calls, which must not queue
        behind it; and not the loop's shared executor, which many pods would exhaust the same way.
        Threads start only when needed."""
        if self._pool is None:
            joins = {"initializer": _join, "initargs": (self.name,)} if self.name else {}
            self._pool = ThreadPoolExecutor(4, thread_name_prefix=f"podnet-{self.name or 'root'}", **joins)
        return self._pool

    async def call(self, fn: Callable[..., T], *args) -> T:
        """``fn(*args)`` on a thread in the pod's network."""
        return await asyncio.get_running_loop().run_in_executor(self._executor(), fn, *args)

    async def listen(self, host: str, port: int, backlog: int = 64) -> socket.socket:
        """A non-blocking TCP socket listening on ``host:port`` in the pod's network."""
        def make() -> socket.socket:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((host, port))
                sock.listen(backlog)
                sock.setblocking(False)
            except BaseException:
                sock.close()
                raise
            return sock
        return await self.call(make)

    async def get(self, host: str, port: int, path: str, timeout: float = 3.0) -> tuple[int, str]:
        """``GET http://host:port/path`` from the pod's network: (status, body)."""
        def fetch() -> tuple[int, str]:
            conn = http.client.HTTPConnection(host, port, timeout=timeout)
            try:
                conn.request("GET", path)
                resp = conn.getresponse()
                return resp.status, resp.read().decode("utf-8", "replace")
            finally:
                conn.close()
        return await self.call(fetch)

    def envoy_prefix(self, uid: int | None = PROXY_UID) -> list[str]:
        """The command prefix that runs Envoy in the pod's namespace as ``uid`` (None: stay 0) and
        gid 1337 (empty without a namespace)."""
        if self.name is None:
            return []
        ip, setpriv = shutil.which("ip"), shutil.which("setpriv")
        if not ip or not setpriv:
            raise NetnsError("running Envoy in a network namespace needs `ip` (iproute2) and `setpriv` (util-linux)")
        user = [] if uid is None else [f"--reuid={uid}"]
        return [ip, "netns", "exec", self.name, setpriv, *user, f"--regid={PROXY_GID}", "--clear-groups"]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None


def _permits(path: Path, uid: int, gid: int, bits: int) -> bool:
    """Do ``path``'s mode bits grant ``uid``/``gid`` (no supplementary groups) all of ``bits`` (4 r, 2 w, 1 x)?"""
    st = path.stat()
    shift = 6 if st.st_uid == uid else 3 if st.st_gid == gid else 0
    return (st.st_mode >> shift) & bits == bits


def usable_by(path: Path, uid: int, gid: int, bits: int) -> bool:
    """Can ``uid``/``gid`` reach ``path`` (search on every directory above it) with ``bits`` on it?"""
    path = Path(path).resolve()
    return all(_permits(d, uid, gid, 1) for d in path.parents) and _permits(path, uid, gid, bits)


def proxy_user(envoy: str | Path, workdir: Path) -> int | None:
    """The uid Envoy runs as in a pod: 1337 if that user can execute ``envoy`` and enter
    ``workdir`` (the agent's, made the proxy's own by ``EnvoyAgent``), else None (uid 0)."""
    return PROXY_UID if usable_by(Path(envoy), PROXY_UID, PROXY_GID, 5) and all(
        _permits(d, PROXY_UID, PROXY_GID, 1) for d in Path(workdir).resolve().parents) else None
