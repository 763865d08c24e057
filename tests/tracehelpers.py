"""Small traces built in memory, for tests."""

from __future__ import annotations

import json
from pathlib import Path


def configmap(data: dict, name: str = "istio", namespace: str = "istio-system") -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace},
            "data": data}


def write_trace(path: Path, events: list[tuple[float, str, dict]], name: str = "test") -> Path:
    lines = [json.dumps({"trace": "mesh/v1", "name": name, "domain_suffix": "cluster.local"})]
    lines += [json.dumps({"t": t, "type": kind, "object": obj}) for t, kind, obj in events]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


