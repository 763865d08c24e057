"""``python -m mesh profile list|dump|diff``: Istio 1.19's installation profiles, like ``istioctl profile``.

istioctl's ``profile`` commands (https://github.com/istio/istio/blob/1.19.0/operator/cmd/mesh/profile-dump.go#L122-L168,
https://github.com/istio/istio/blob/1.19.0/operator/cmd/mesh/profile-diff.go#L84-L104) print a profile
as the IstioOperator it is: ``default`` with the named profile laid over it. ``dump`` takes
``-f`` IstioOperator files and ``--set path=value`` overrides the same way ``install`` does, and
``--config-path`` prints one subtree (``components.pilot``).
"""

from __future__ import annotations

import difflib
import sys

import yaml

from mesh.cli import UsageError
from mesh.install import iop as iopmod
from mesh.install import tpath


def register(subparsers) -> None:
    p = subparsers.add_parser("profile", help="list, dump and diff installation profiles (like istioctl profile)",
                              description="Istio 1.19 installation profiles as IstioOperator objects.")
    sub = p.add_subparsers(dest="profile_command", metavar="ACTION")
    sub.add_parser("list", help="the profile names")
    dump = sub.add_parser("dump", help="print a profile as an IstioOperator")
    dump.add_argument("profile", nargs="?", default=None, help="profile name (default: default)")
    dump.add_argument("-f", "--filename", action="append", default=[], help="IstioOperator file(s) laid over the profile")
    dump.add_argument("--set", dest="sets", action="append", default=[], metavar="PATH=VALUE",
                      help="override a spec path, e.g. values.global.proxy.logLevel=debug")
    dump.add_argument("--config-path", default="", help="print only this path of the spec, e.g. components.pilot")
    diff = sub.add_parser("diff", help="the differences between two profiles")
    diff.add_argument("a")
    diff.add_argument("b")
    p.set_defaults(func=run)


def run(args) -> int:
    try:
        if args.profile_command == "list":
            print("Istio configuration profiles:")
            for name in iopmod.profile_names():
                print(f"    {name}")
            return 0
        if args.profile_command == "dump":
            effective = iopmod.generate_from_files(args.filename, args.profile, args.sets)
            if args.config_path:
                try:
                    found = tpath.get_path(effective["spec"], args.config_path)
                except tpath.PathError as err:
                    raise UsageError(f"--config-path {err}") from None
                sys.stdout.write(yaml.safe_dump(found, sort_keys=True, default_flow_style=False))
            else:
                sys.stdout.write(iopmod.dump(effective))
            return 0
        if args.profile_command == "diff":
            a, b = (iopmod.dump(iopmod.generate(profile=name)).splitlines(keepends=True) for name in (args.a, args.b))
            sys.stdout.writelines(difflib.unified_diff(a, b, args.a, args.b))
            return 0
    except iopmod.IstioOperatorError as err:
        raise UsageError(str(err)) from None
    raise UsageError("expected an action: list, dump or diff")
