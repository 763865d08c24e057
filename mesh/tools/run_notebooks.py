"""Re-execute the course notebooks in place: ``python -m mesh.tools.run_notebooks notebooks/``.

``make notebooks`` calls this after a code change, so the committed outputs are one command away
from what the code now does; review the diff of outputs like code (DESIGN.md §7). Notebooks run
one at a time, in sorted file-name order, each in a fresh kernel on the Python running this
module (the project's venv) with the notebook's folder as working directory — the same set-up
``pytest --nbval --nbval-current-env`` uses to check them, so what is written here is what CI
compares against.

Not part of the mini-istiod; there is no Go counterpart (istio's docs are tested with
``istio.io``'s own tooling).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import ipykernel.kernelspec
import nbformat
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

CURRENT_ENV_KERNEL = "mesh-current-env"


class _CurrentEnvKernelSpecs(KernelSpecManager):
    """Resolves one extra kernel name to an ipykernel running on ``sys.executable``, whatever
    kernels the user has installed (a stale ``python3`` kernelspec must not be picked up)."""

    def get_kernel_spec(self, kernel_name: str):
        if kernel_name == CURRENT_ENV_KERNEL:
            return self.kernel_spec_class(resource_dir=ipykernel.kernelspec.RESOURCES,
                                          **ipykernel.kernelspec.get_kernel_dict())
        return super().get_kernel_spec(kernel_name)


def find_notebooks(paths: list[Path]) -> list[Path]:
    """Every ``.ipynb`` named or inside a named folder (checkpoints skipped), sorted, no duplicates."""
    found: set[Path] = set()
    for path in paths:
        if path.is_dir():
            found |= {p for p in path.glob("*.ipynb") if ".ipynb_checkpoints" not in p.parts}
        elif path.suffix == ".ipynb" and path.exists():
            found.add(path)
        else:
            raise FileNotFoundError(f"{path}: not a notebook or a folder of notebooks")
    return sorted(found, key=lambda p: (str(p.parent), p.name))


def execute_notebook(path: Path, timeout: int = 600) -> nbformat.NotebookNode:
    """Run every cell of ``path`` in a fresh kernel and write the outputs back to the file."""
    nb = nbformat.read(path, as_version=4)
    km = KernelManager(kernel_name=CURRENT_ENV_KERNEL, kernel_spec_manager=_CurrentEnvKernelSpecs())
    client = NotebookClient(nb, km=km, timeout=timeout, allow_errors=False,
                            resources={"metadata": {"path": str(path.parent.resolve())}})
    client.execute()
    # Keep the committed file free of run-to-run noise: no timing metadata, no kernel paths.
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
    nbformat.validate(nb)
    nbformat.write(nb, path)
    return nb


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mesh.tools.run_notebooks",
                                     description="re-execute notebooks in place, in sorted order")
    parser.add_argument("paths", nargs="*", type=Path, default=[Path("notebooks")],
                        help="notebooks or folders of notebooks (default: notebooks/)")
    parser.add_argument("--timeout", type=int, default=600, help="seconds allowed per cell (default 600)")
    args = parser.parse_args(argv)
    try:
        notebooks = find_notebooks(args.paths)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not notebooks:
        print("error: no notebooks found", file=sys.stderr)
        return 2
    for path in notebooks:
        print(f"executing {path}", flush=True)
        try:
            execute_notebook(path, timeout=args.timeout)
        except CellExecutionError as err:
            print(f"error: {path}: a cell failed; the file was left unchanged\n{err}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
