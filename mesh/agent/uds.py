"""Unix sockets the agent listens on for Envoy: the XDS proxy's and SDS's.

Go: ``uds.NewListener`` https://github.com/istio/istio/blob/1.19.0/pkg/uds/listener.go#L26-L54
— remove a stale socket, create the directory, listen, make the socket ``0666`` so Envoy
(another user in a pod) can connect.

The paths are Istio's, relative to the agent's working directory, which is Envoy's too: Envoy
connects to ``./etc/istio/proxy/XDS`` and ``./var/run/secrets/workload-spiffe-uds/socket``.
A Unix socket address holds at most 107 bytes, and a workdir under pytest's ``tmp_path`` can
make the absolute path longer; then the socket is bound in a short private directory under
``/tmp`` and the Istio path is a symlink to it (``connect`` follows symlinks), so Envoy's
bootstrap and the files a reader finds in the workdir stay the same.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

MAX_PATH = 107  # sizeof(sockaddr_un.sun_path) - 1 on Linux


class UnixListenPath:
    """Where to bind a socket that Envoy will find at ``path``; ``close`` removes what it made."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._short_dir: str | None = None

    def prepare(self) -> str:
        """Remove a stale socket, create the directory; the address to give ``grpc`` (``unix:...``)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.is_symlink() or self.path.exists():
            self.path.unlink()
        bind = self.path
        if len(os.fsencode(self.path.absolute())) > MAX_PATH:
            self._short_dir = tempfile.mkdtemp(prefix="mesh-uds-")
            bind = Path(self._short_dir) / self.path.name
            self.path.symlink_to(bind)
        return f"unix:{bind.absolute()}"

    def permit(self) -> None:
        """``0666`` once bound, as Istio does, so an Envoy with another uid can connect."""
        target = self.path.resolve()
        if target.exists():
            os.chmod(target, 0o666)
        if self._short_dir is not None:  # mkdtemp's 0700 would keep that Envoy out of the directory
            os.chmod(self._short_dir, 0o755)

    def close(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        if self._short_dir is not None:
            shutil.rmtree(self._short_dir, ignore_errors=True)
            self._short_dir = None
