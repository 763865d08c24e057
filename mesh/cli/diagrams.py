"""``python -m mesh diagrams``: regenerate diagrams/ (DOT + SVG) from the code."""

from __future__ import annotations

from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser("diagrams", help="generate the Graphviz diagrams in diagrams/ from the code")
    p.add_argument("-o", "--out", default="diagrams", help="output folder (default: diagrams)")
    p.add_argument("--readme", metavar="FILE", help="also rewrite the package-map section of this README")
    p.set_defaults(func=run)


def run(args) -> int:
    from mesh.cli import UsageError
    from mesh.tools.diagrams import write_all

    try:
        written = write_all(Path(args.out))
    except Exception as err:  # graphviz.ExecutableNotFound and friends
        raise UsageError(f"could not render diagrams ({err}); is Graphviz's `dot` installed? "
                         "(apt-get install -y graphviz)") from err
    for path in written:
        print(path)
    if args.readme:
        from mesh.tools.packagemap import update_readme

        try:
            changed = update_readme(args.readme)
        except (OSError, ValueError) as err:
            raise UsageError(str(err)) from err
        print(f"{args.readme}: package map {'rewritten' if changed else 'unchanged'}")
    return 0
