"""The ``python -m mesh`` command line.

istiod's binary is ``pilot-discovery`` (https://github.com/istio/istio/blob/1.19.0/pilot/cmd/pilot-discovery/app/cmd.go);
mesh folds istiod and a few istioctl-like tools into one CLI. Each subcommand lives in its own
module in this package and exposes::

    def register(subparsers) -> None   # adds its parser, with set_defaults(func=run)
    def run(args) -> int               # the exit status

Modules are discovered by name, so adding a subcommand is adding a file. Exit statuses:
0 success, 1 the command ran and found problems (e.g. ``validate``), 2 bad input.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys


class UsageError(Exception):
    """Bad input from the user: printed without a traceback, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mesh",
        description="mesh: a mini-istiod (Istio 1.19.0) for learning how the control plane works.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.func(args) or 0)
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `mesh proxy-status | head`: the reader left; say nothing more
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 0
