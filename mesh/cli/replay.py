"""``python -m mesh replay TRACE``: run the mini istiod on a trace, on a virtual clock, and print
what happened as a timeline.

The same trace always prints the same timeline: time is the trace's, not the wall clock's
(DESIGN.md §5). Views (``--show``):

* ``events``   — every watch event as applied (the default);
* ``mesh``     — each mesh config change, field by field, and the push requests it caused;
* ``registry`` — services and endpoints known at the end (needs stage 7, init_controllers);
* ``injection`` — each pod admission: injected or not, and why (stage 13);
* ``validation`` — every call of the ``/validate`` webhook and what kube-apiserver refused (stage 14);
* ``pushes``   — each push request, debounce window and debounced push, with what every injected
  sidecar would be sent (types, resource counts, bytes), from the real generators (stage 16);
  ``--delta`` models the sidecars as Delta xDS streams (cells ``+added -removed / bytes``).

A bad trace prints every problem as ``file:line: field: message`` and exits 2.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from rich.console import Console
from rich.table import Table

from mesh.bootstrap import Server, ServerArgs
from mesh.cli import UsageError
from mesh.kube.trace import TraceError, load_trace
from mesh.tools.timeline import MeshChangeRecorder, event_rows


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "replay", help="replay a trace through the mini istiod on a virtual clock and print a timeline",
        description=__doc__, formatter_class=_raw())
    p.add_argument("trace", nargs="?", default=None,
                   help="a trace file or the name of a built-in trace (default: bookinfo)")
    p.add_argument("--until", type=float, default=None, metavar="SECONDS",
                   help="stop the virtual clock at this trace time (default: the end of the trace)")
    p.add_argument("--show", action="append", choices=sorted(VIEWS), default=None,
                   help="what to print; repeat for several (default: events)")
    p.add_argument("--delta", action="store_true",
                   help="with --show pushes: model every sidecar as a Delta xDS stream (default: those whose "
                        "pod sets ISTIO_DELTA_XDS=true)")
    p.add_argument("--width", type=int, default=None, help="table width (default: terminal width, or 120)")
    p.set_defaults(func=run)


def _raw():
    import argparse

    return argparse.RawDescriptionHelpFormatter


def run(args) -> int:
    views = args.show or ["events"]
    try:
        trace = load_trace(args.trace)
    except TraceError as err:
        print(f"error: the trace cannot be replayed; nothing was applied:\n{err}", file=sys.stderr)
        return 2
    except FileNotFoundError as err:
        raise UsageError(str(err)) from err

    logger = logging.getLogger("mesh")
    level = logger.level
    if not args.verbose:  # stage-by-stage logs belong to serve; replay prints its own summary
        logger.setLevel(logging.ERROR)
    try:
        return _replay(args, trace, views)
    finally:
        logger.setLevel(level)  # callers in the same process (tests, notebooks) get their logs back


def _replay(args, trace, views) -> int:
    server = Server(ServerArgs(trace=trace.path))
    server.run_all()
    recorder = MeshChangeRecorder(server)
    # Views that watch the replay as it happens hook in before the clock moves.
    watching = {view: WATCHERS[view](server, args) for view in views if view in WATCHERS}
    until = trace.duration if args.until is None else args.until
    server.clock.advance_to(until)
    if args.until is None:  # let the debounce window of the last change close, so its push shows
        server.clock.run()

    console = Console(width=args.width or (None if sys.stdout.isatty() else 120), highlight=False,
                      soft_wrap=False)
    console.print(f"trace [bold]{trace.name}[/bold]: {len(trace.events)} events over {trace.duration:g}s "
                  f"(virtual time), replayed until t={until:g}s")
    console.print(f"stages run: {len(server.completed)}/16")
    for view in views:
        VIEWS[view](server, watching.get(view, recorder), console)
    server.close()
    return 0


def _events_view(server: Server, _recorder, console: Console) -> None:
    table = Table(title="watch events", show_lines=False)
    for column in ("t (s)", "event", "kind", "namespace/name", "what"):
        table.add_column(column, overflow="fold")
    for row in event_rows(server.kube_client.applied):
        table.add_row(*row)
    console.print(table)


def _mesh_view(server: Server, recorder: MeshChangeRecorder, console: Console) -> None:
    table = Table(title="mesh config changes")
    for column in ("t (s)", "field", "before", "after"):
        table.add_column(column, overflow="fold")
    for change in recorder.changes:
        for path, old, new in change.changes:
            table.add_row(f"{change.at:.3f}", path, repr(old), repr(new))
    console.print(table if recorder.changes else "no mesh config changes")
    errors = server.environment.mesh_watcher.errors
    for message in errors:
        console.print(f"[yellow]refused:[/yellow] {message}")
    pushes = Table(title="push requests")
    for column in ("t (s)", "full", "reason", "configs"):
        pushes.add_column(column)
    for r in server.xds.requests:
        pushes.add_row(f"{r.at:.3f}", str(r.request.full), ", ".join(f"{k}×{v}" for k, v in sorted(r.request.reason.items())),
                       ", ".join(sorted(map(str, r.request.configs_updated))) or "all")
    console.print(pushes)
    console.print(f"trust domain now: {server.trust_domain}")


def _registry_view(server: Server, _recorder, console: Console) -> None:
    registry = server.environment.service_discovery
    table = Table(title="services and endpoints")
    for column in ("hostname", "ports", "endpoints"):
        table.add_column(column, overflow="fold")
    for svc in sorted(registry.services(), key=lambda s: s.hostname):
        ports = ", ".join(f"{p.name}:{p.port}/{p.protocol}" for p in svc.ports)
        eps = sorted({f"{e.address}:{e.endpoint_port}" for p in svc.ports for e in registry.endpoints(svc.hostname, p.port)})
        table.add_row(svc.hostname, ports, " ".join(eps))
    console.print(table)


def _validation_view(server: Server, _recorder, console: Console) -> None:
    from mesh.tools.validation_view import DECISION_HEADERS, decision_rows

    checker = getattr(server, "config_validation", None)
    if checker is None:
        console.print("no replay validation: stage 14 init_config_validation did not run on a replayed cluster")
        return
    table = Table(title="validation webhook decisions")
    for column in DECISION_HEADERS:
        table.add_column(column, overflow="fold")
    for row in decision_rows(checker.decisions):
        table.add_row(*row)
    console.print(table if checker.decisions else "no object went through a validating webhook")
    refused = len(server.kube_client.denied)
    console.print(f"refused by admission: {refused} write{'s' if refused != 1 else ''} (never stored)")


def _injection_view(server: Server, _recorder, console: Console) -> None:
    from mesh.inject.webhook import describe_decisions

    webhook = server.injection_webhook
    if webhook is None:
        console.print("no sidecar injector: the trace has no istio-sidecar-injector ConfigMap")
        return
    rows = describe_decisions(webhook.decisions)
    if not rows:
        console.print("no pod went through the injection webhook")
        return
    table = Table(title="sidecar injection decisions")
    for column in rows[0]:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(str(v) for v in row.values()))
    console.print(table)


def _watch_pushes(server: Server, args):
    from mesh.demo.pods import record_pushes

    recorder = record_pushes(server, delta=getattr(args, "delta", False))
    server.xds.start()  # the debounce loop, as the "xds server" start func does in Server.start
    return recorder


def _pushes_view(server: Server, pushes, console: Console) -> None:
    from mesh.tools.push_timeline import pushes_summary, timeline

    console.print(f"{len(server.kube_client.applied)} watch events, {len(server.xds.requests)} push requests, "
                  f"{len(pushes.records)} debounced pushes; types read 'resources / bytes'")
    console.out(timeline(server, pushes).text, highlight=False)
    console.out(pushes_summary(pushes).text, highlight=False)


# Views whose data must be gathered while the clock runs: view → fn(server) returning what the view
# is then given instead of the mesh change recorder (``args``: the command line, for their options).
WATCHERS: dict[str, Callable[[Server, object], object]] = {"pushes": _watch_pushes}

VIEWS: dict[str, Callable[[Server, object, Console], None]] = {
    "events": _events_view,
    "mesh": _mesh_view,
    "registry": _registry_view,
    "validation": _validation_view,
    "injection": _injection_view,
    "pushes": _pushes_view,
}
