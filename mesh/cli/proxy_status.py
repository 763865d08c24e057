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
"""

from __future__ import annotations

import json

from mesh.cli import UsageError
from mesh.cli._debug_api import add_server_flags, get_json, server_url, table

COLUMNS = ["NAME", "CLUSTER", "CDS", "LDS", "EDS", "RDS", "ECDS", "ISTIOD", "VERSION"]


def register(subparsers) -> None:
    p = subparsers.add_parser("proxy-status", help="sync status of every proxy connected to a running server",
                              description=__doc__)
    p.add_argument("proxy", nargs="?", default=None, help="only this proxy, <pod>.<namespace>")
    add_server_flags(p)
    p.add_argument("-o", "--output", choices=["table", "json"], default="table", help="output format")
    p.set_defaults(func=run)


def rows(statuses: list[dict]) -> list[dict]:
    """Rows in istioctl's order (by cluster, then proxy), every column filled."""
    out = [{col: s.get(col, "NOT SENT" if col == "ECDS" else "") for col in COLUMNS} for s in statuses]
    return sorted(out, key=lambda r: (r["CLUSTER"], r["NAME"]))


def run(args) -> int:
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
