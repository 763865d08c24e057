"""nbval and notebooks that need root: a notebook whose metadata says ``"mesh": {"needs_root": true}``
(it creates network namespaces, like notebook 20) is skipped, with the reason, when pytest does not
run as root, so ``make test`` passes for a non-root user and says what it left out. CI runs as root."""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path

import pytest


@cache
def _needs_root(path: Path) -> bool:
    meta = json.loads(path.read_text(encoding="utf-8")).get("metadata", {})
    return bool((meta.get("mesh") or {}).get("needs_root"))


def pytest_collection_modifyitems(config, items):
    if os.geteuid() == 0:
        return
    for item in items:
        path = Path(str(item.fspath))
        if path.suffix == ".ipynb" and _needs_root(path):
            item.add_marker(pytest.mark.skip(reason=f"{path.name} creates network namespaces: run as root"))
