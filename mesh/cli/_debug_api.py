"""What ``proxy-status`` and ``proxy-config`` share: asking a running server's debug port, and tables.

istioctl reaches istiod's debug endpoints through the Kubernetes API (``AllDiscoveryDo``, a
port-forward to every istiod pod, e.g. for ``debug/syncz`` in
https://github.com/istio/istio/blob/1.19.0/istioctl/pkg/proxystatus/proxystatus.go#L107-L116);
mesh's server runs on this machine, so these commands GET ``http://127.0.0.1:<debug port>/debug/...``.
Tables are aligned like Go's ``tabwriter`` with istioctl's settings (each column as wide as its
widest cell plus 5 spaces, https://github.com/istio/istio/blob/1.19.0/istioctl/pkg/writer/pilot/status.go#L95).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request

from mesh.bootstrap.args import DEFAULT_PORTS
from mesh.cli import UsageError
from mesh.util.net import is_loopback


def add_server_flags(parser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--debug-port", type=int, default=None,
                       help=f"the server's debug port on 127.0.0.1 (default {DEFAULT_PORTS['debug']})")
    where.add_argument("--server", default=None, help="the server's debug URL, e.g. http://127.0.0.1:8080")


def server_url(args) -> str:
    if args.server:
        parsed = urllib.parse.urlsplit(args.server)
        if parsed.scheme != "http" or not parsed.hostname:
            raise UsageError(f"--server {args.server}: expected http://<loopback address>:<port>")
        if not is_loopback(parsed.hostname):
            raise UsageError(f"--server {args.server}: mesh only talks to loopback addresses (127.0.0.0/8)")
        return args.server.rstrip("/")
    port = args.debug_port if args.debug_port is not None else DEFAULT_PORTS["debug"]
    if not 0 < port < 65536:
        raise UsageError(f"--debug-port {port}: not a TCP port")
    return f"http://127.0.0.1:{port}"


def get_json(base: str, path: str, query: dict | None = None, timeout: float = 10.0, unreachable: str = ""):
    """GET a debug endpoint; a server that is not there, or says no, is a UsageError naming it
    (``unreachable``: what to say when nothing answers, for something other than a mesh server)."""
    url = base + path + ("?" + urllib.parse.urlencode(query) if query else "")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as err:
        try:
            detail = json.loads(err.read()).get("error", "")
        except (ValueError, AttributeError):
            detail = ""
        raise UsageError(f"{url}: {err.code} {detail or err.reason}".rstrip()) from err
    except (urllib.error.URLError, ConnectionError, TimeoutError) as err:
        reason = getattr(err, "reason", err)
        if unreachable:
            raise UsageError(f"{unreachable} ({reason})") from err
        raise UsageError(f"no mesh server answers at {base} ({reason}); start one with `python -m mesh serve` "
                         "or `python -m mesh demo`, or pass --debug-port/--server") from err
    except ValueError as err:
        raise UsageError(f"{url}: the answer is not JSON ({err})") from err


def table(header: list[str], rows: list[list[object]], padding: int = 5) -> str:
    """Left-aligned columns, each as wide as its widest cell plus ``padding`` (the last unpadded)."""
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = []
    for row in cells:
        padded = [c.ljust(widths[i] + padding) for i, c in enumerate(row[:-1])] + [row[-1]]
        lines.append("".join(padded).rstrip())
    return "\n".join(lines)
