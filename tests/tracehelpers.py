"""Small traces built in memory, for tests."""

from __future__ import annotations

import json
import time
from pathlib import Path


def configmap(data: dict, name: str = "istio", namespace: str = "istio-system") -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace},
            "data": data}


def write_trace(path: Path, events: list[tuple[float, str, dict]], name: str = "test") -> Path:
    lines = [json.dumps({"trace": "mesh/v1", "name": name, "domain_suffix": "cluster.local"})]
    lines += [json.dumps({"t": t, "type": kind, "object": obj}) for t, kind, obj in events]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path




def replay_with_recorder(trace: str):
    """Run a shipped trace to its end through the real Server, recording every push:
    ``(server, recorder)``; the caller closes the server."""
    from mesh.bootstrap import Server, ServerArgs
    from mesh.demo.pods import record_pushes

    server = Server(ServerArgs(trace=trace)).run_all()
    recorder = record_pushes(server)
    server.xds.start()
    server.clock.run()
    return server, recorder


def wait_for(condition, timeout: float = 5.0) -> None:
    """Poll ``condition`` until it holds; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)
