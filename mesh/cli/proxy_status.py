"""``python -m mesh proxy-status``: every connected proxy and whether it has ACKed what it was sent.

Go: ``istioctl proxy-status`` reads istiod's ``/debug/syncz``
(https://github.com/istio/istio/blob/1.19.0/istioctl/pkg/proxystatus/proxystatus.go#L107-L116)
and prints one row per proxy
(https://github.com/istio/istio/blob/1.19.0/istioctl/pkg/writer/pilot/status.go#L95-L136):
NAME, CLUSTER, then per xDS type SYNCED (the last response sent was ACKed), STALE (something
newer was sent than was ACKed: in flight, or NACKed) or NOT SENT, then which istiod and which
version. The status rule is ``mesh.xds.debug.xds_status``; this command asks the server's
``/debug/proxy_status`` (which applies it) and prints the table. mesh sends no extension
configs, so ECDS reads NOT SENT unless the server reports one.

``--xds-address HOST:PORT`` asks over xDS instead, as ``istioctl x proxy-status --xds-address``
does: one ADS stream with istioctl's debug node (``GENERATOR: event``), one request for
``istio.io/debug/syncz`` answered by StatusGen (``mesh/xds/statusgen.py``), and istioctl's
``XdsStatusWriter`` table
(https://github.com/istio/istio/blob/1.19.0/istioctl/pkg/writer/pilot/status.go#L175-L251): the
statuses are the ``ConfigStatus`` names (SYNCED, STALE, NOT_SENT), rows sorted by proxy id, and
ISTIOD is the responding control plane's id — empty, as mesh's responses carry none.
"""

from __future__ import annotations

import asyncio
import json

import grpc

from mesh.cli import UsageError
from mesh.cli._debug_api import add_server_flags, get_json, server_url, table
from mesh.demo.ads_client import AdsClient, debug_node
from mesh.util.net import is_loopback
from mesh.xds.statusgen import decode_client_configs
from mesh.xds.types import CLUSTER, DEBUG_SYNCZ, ENDPOINT, EXTENSION_CONFIG, LISTENER, ROUTE

COLUMNS = ["NAME", "CLUSTER", "CDS", "LDS", "EDS", "RDS", "ECDS", "ISTIOD", "VERSION"]


def register(subparsers) -> None:
    p = subparsers.add_parser("proxy-status", help="sync status of every proxy connected to a running server",
                              description=__doc__)
    p.add_argument("proxy", nargs="?", default=None, help="only this proxy, <pod>.<namespace>")
    add_server_flags(p)
    p.add_argument("--xds-address", default=None, metavar="HOST:PORT",
                   help="ask the xDS server itself (StatusGen's istio.io/debug/syncz) instead of the debug port")
    p.add_argument("-o", "--output", choices=["table", "json"], default="table", help="output format")
    p.set_defaults(func=run)


def rows(statuses: list[dict]) -> list[dict]:
    """Rows in istioctl's order (by cluster, then proxy), every column filled."""
    out = [{col: s.get(col, "NOT SENT" if col == "ECDS" else "") for col in COLUMNS} for s in statuses]
    return sorted(out, key=lambda r: (r["CLUSTER"], r["NAME"]))


def xds_rows(address: str, timeout: float = 10.0) -> list[dict]:
    """istioctl's ``--xds-address`` path: StatusGen's syncz as proxy-status rows."""
    host, colon, port = address.rpartition(":")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--xds-address {address!r}: expected HOST:PORT")
    if not is_loopback(host):
        raise UsageError(f"--xds-address {address}: mesh only talks to loopback addresses (127.0.0.0/8)")

    async def ask():
        client = AdsClient(int(port), debug_node(), host=host)
        try:
            client.send(DEBUG_SYNCZ)
            return await client.recv(timeout)
        finally:
            await client.close()
    try:
        resp = asyncio.run(ask())
    except (grpc.aio.AioRpcError, EOFError, TimeoutError) as err:
        detail = err.details() if isinstance(err, grpc.aio.AioRpcError) else str(err) or "no answer"
        raise UsageError(f"--xds-address {address}: {detail}") from err
    return syncz_rows(resp.resources)


def syncz_rows(resources) -> list[dict]:
    """A syncz response's ClientConfigs as istioctl's ``XdsStatusWriter`` rows, sorted by proxy id."""
    out = []
    for config in decode_client_configs(resources):
        meta = config["node"].get("metadata") or {}
        status = {c["type_url"]: c.get("config_status", "UNKNOWN") for c in config.get("generic_xds_configs", [])}
        row = {"NAME": config["node"]["id"], "CLUSTER": meta.get("CLUSTER_ID", ""), "ISTIOD": "",
               "VERSION": meta.get("ISTIO_VERSION", "")}
        for short, type_url in (("CDS", CLUSTER), ("LDS", LISTENER), ("EDS", ENDPOINT), ("RDS", ROUTE),
                                ("ECDS", EXTENSION_CONFIG)):
            value = status.get(type_url, "")
            row[short] = "IGNORED" if value == "UNKNOWN" else value  # istioctl's ignoredStatus
        out.append(row)
    return sorted(out, key=lambda r: r["NAME"])


def run(args) -> int:
    if args.xds_address is not None:
        if args.server or args.debug_port is not None:
            raise UsageError("--xds-address asks the xDS server: leave out --server and --debug-port")
        base = args.xds_address
        found = xds_rows(args.xds_address)
    else:
        base = server_url(args)
        found = rows(get_json(base, "/debug/proxy_status"))
    if args.proxy is not None:
        found = [r for r in found if r["NAME"] == args.proxy]
        if not found:
            raise UsageError(f"proxy {args.proxy} is not connected to the server at {base}")
    if args.output == "json":
        print(json.dumps(found, indent=2))
    else:
        print(table(COLUMNS, [[r[c] for c in COLUMNS] for r in found]))
    return 0
