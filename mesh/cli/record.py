"""``python -m mesh record``: record a cluster's list + watch events into a trace file.

The recording is what istiod's informers would have seen through their list and watch
functions (https://github.com/istio/istio/blob/1.19.0/pkg/config/schema/kubeclient/common.go#L78-L103); replay it
with ``mesh serve --trace FILE`` or ``mesh apiserver --trace FILE``.
"""

from __future__ import annotations

import signal
import threading

from mesh.cli import UsageError


def register(subparsers) -> None:
    p = subparsers.add_parser("record", help="record a cluster's watch events into a trace",
                              description="List then watch each kind and write a mesh/v1 trace.")
    p.add_argument("--kubeconfig", required=True, help="kubeconfig of the cluster to record")
    p.add_argument("--context", default=None, help="kubeconfig context (default: the current one)")
    p.add_argument("-o", "--output", required=True, help="trace file to write (.jsonl)")
    p.add_argument("--duration", type=float, default=None,
                   help="seconds to record (default: until Ctrl-C)")
    p.add_argument("--kinds", nargs="+", default=None,
                   help="kinds to record, e.g. pods services vs (default: every kind mesh knows but Secrets)")
    p.add_argument("--name", default=None, help="trace name for the header (default: the file name)")
    p.set_defaults(func=run)


def run(args) -> int:
    from mesh.kube.live import ApiError
    from mesh.kube.record import Recorder, resolve_kinds

    if args.duration is not None and args.duration < 0:
        raise UsageError(f"--duration must be >= 0, got {args.duration}")
    try:
        chosen = resolve_kinds(args.kinds) if args.kinds else None
    except ValueError as err:
        raise UsageError(str(err)) from err
    try:
        recorder = Recorder(args.kubeconfig, chosen, context=args.context)
    except Exception as err:  # kubernetes.config raises several types for a bad kubeconfig
        raise UsageError(f"{args.kubeconfig}: cannot use this kubeconfig: {err}") from err
    done = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: done.set())
    try:
        try:
            recorder.start()
        except (ApiError, OSError) as err:
            raise UsageError(f"cannot list from the cluster: {err}") from err
        print(f"mesh record: recording {len(recorder.kinds) - len(recorder.skipped)} kinds"
              f"{'' if args.duration is not None else ' (Ctrl-C to stop)'}", flush=True)
        done.wait(args.duration)
    finally:
        signal.signal(signal.SIGINT, previous)
        recorder.stop()
    trace = recorder.write(args.output, args.name)
    print(f"mesh record: wrote {len(trace.events)} events to {args.output}", flush=True)
    return 0
