"""Istio 1.19.0's own source, for tests that compare mesh with Istio's test data and line numbers.

One setting says where it is: ``ISTIO_SRC``, a checkout of istio/istio or a bare git directory
of it (any clone that has the ``1.19.0`` tag). Files are always read at that tag with
``git show``, so a checkout on another branch works too. Nothing read from it is committed.

Without ``ISTIO_SRC`` the tests that need it are skipped, and the skip reason says how to get it:
``make istio-src`` (or ``git clone -b 1.19.0 --depth 1 https://github.com/istio/istio``, then
``export ISTIO_SRC=$PWD/istio``).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

import pytest

TAG = "1.19.0"
HOW = ("set ISTIO_SRC to a clone of istio/istio with the 1.19.0 tag (`make istio-src`, or "
       "`git clone -b 1.19.0 --depth 1 https://github.com/istio/istio && export ISTIO_SRC=$PWD/istio`)")


@functools.cache
def root() -> Path | None:
    """The git directory or work tree named by ``ISTIO_SRC``, if it holds the 1.19.0 tag."""
    value = os.environ.get("ISTIO_SRC")
    if not value or not shutil.which("git"):
        return None
    path = Path(value).expanduser()
    ok = subprocess.run(["git", "-C", str(path), "rev-parse", "--verify", "-q", f"{TAG}^{{commit}}"],
                        capture_output=True, check=False).returncode == 0
    return path if ok else None


def available() -> bool:
    return root() is not None


# A marker for modules or tests that read Istio's source: ``pytestmark = istio_src.needed``.
needed = pytest.mark.skipif(not available(), reason=f"needs Istio 1.19.0: {HOW}")


@functools.cache
def show(path: str) -> str | None:
    """The text of ``path`` at 1.19.0, or None when the file does not exist there."""
    top = root()
    if top is None:
        pytest.skip(f"needs Istio 1.19.0: {HOW}")
    out = subprocess.run(["git", "-C", str(top), "show", f"{TAG}:{path}"],
                         capture_output=True, text=True, check=False)
    return out.stdout if out.returncode == 0 else None


def ls(directory: str) -> list[str]:
    """File names directly under ``directory`` at 1.19.0 (empty when it does not exist)."""
    top = root()
    if top is None:
        pytest.skip(f"needs Istio 1.19.0: {HOW}")
    out = subprocess.run(["git", "-C", str(top), "ls-tree", "--name-only", f"{TAG}:{directory}"],
                         capture_output=True, text=True, check=False)
    return out.stdout.split() if out.returncode == 0 else []
