"""``python -m mesh trace``: build traces from scenarios, and check trace files.

* ``trace new SCENARIO [-o OUT]`` — build one trace from a scenario (``traces/src/*.yaml``,
  format in ``mesh.kube.tracebuild``);
* ``trace build-all [--check]`` — rebuild every top-level scenario into ``traces/<name>.jsonl``
  (what ``make traces`` runs); ``--check`` only reports traces that are out of date;
* ``trace check FILE...`` — validate trace files, naming ``file:line: field`` for each defect.

istiod has no such tool: it only ever reads a cluster through informers
(https://github.com/istio/istio/blob/1.19.0/pkg/kube/client.go#L99-L144). These traces are the
recorded clusters mesh reads instead.
"""

from __future__ import annotations

import sys
from pathlib import Path

from mesh.cli import UsageError
from mesh.kube import tracebuild
from mesh.kube.trace import TraceError, load_trace


def register(subparsers) -> None:
    parser = subparsers.add_parser("trace", help="build traces from scenarios; check trace files",
                                   description=__doc__.split("\n\n")[0])
    actions = parser.add_subparsers(dest="trace_command", metavar="ACTION", required=True)

    new = actions.add_parser("new", help="build one trace from a scenario YAML file")
    new.add_argument("scenario", help="scenario file, e.g. traces/src/canary.yaml")
    new.add_argument("-o", "--output", help="where to write the trace (default: stdout)")
    new.set_defaults(func=run)

    build_all = actions.add_parser("build-all",
                                   help="rebuild traces/<name>.jsonl from every traces/src/*.yaml")
    build_all.add_argument("--src", type=Path, default=tracebuild.SOURCE_DIR, help="scenario folder")
    build_all.add_argument("--out", type=Path, default=None,
                           help="output folder (default: the parent of --src)")
    build_all.add_argument("--check", action="store_true",
                           help="write nothing; exit 1 if a committed trace differs from its rebuild")
    build_all.set_defaults(func=run)

    check = actions.add_parser("check", help="validate trace files (exit 2 naming file:line on a bad one)")
    check.add_argument("files", nargs="+", help="trace files (.jsonl) or built-in trace names")
    check.set_defaults(func=run)


def run(args) -> int:
    if args.trace_command == "new":
        return _new(args)
    if args.trace_command == "build-all":
        return _build_all(args)
    return _check(args)


def _build(path: Path) -> str:
    try:
        return tracebuild.build_text(path)
    except tracebuild.ScenarioError as err:
        raise UsageError(str(err)) from None


def _new(args) -> int:
    text = _build(Path(args.scenario))
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote {args.output} ({len(text.splitlines()) - 1} events)", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def _build_all(args) -> int:
    source: Path = args.src
    out: Path = args.out or source.parent
    try:
        scenarios = tracebuild.top_level_scenarios(source)
    except tracebuild.ScenarioError as err:
        raise UsageError(str(err)) from None
    if not scenarios:
        raise UsageError(f"{source}: no scenarios (*.yaml with a name) found")
    built = {out / f"{path.stem}.jsonl": _build(path) for path in scenarios}  # all or nothing
    stale = []
    for target, text in built.items():
        current = target.read_text(encoding="utf-8") if target.exists() else None
        if current == text:
            print(f"{target.name}: up to date")
            continue
        stale.append(target.name)
        if args.check:
            print(f"{target.name}: differs from a rebuild of its scenario (run: make traces)")
        else:
            target.write_text(text, encoding="utf-8")
            print(f"{target.name}: written ({len(text.splitlines()) - 1} events)")
    return 1 if args.check and stale else 0


def _check(args) -> int:
    bad = False
    for name in args.files:
        try:
            trace = load_trace(name)
        except FileNotFoundError as err:
            print(f"error: {err}", file=sys.stderr)
            bad = True
        except TraceError as err:
            print(err, file=sys.stderr)
            bad = True
        else:
            print(f"{name}: ok ({len(trace.events)} events over {trace.duration:g} s)")
    return 2 if bad else 0
