"""The xDS mesh sends, pinned byte for byte: every response of every push of every trace, replayed on
the virtual clock through the push recorder (the real generators and ``AdsServer.generate``), reduced
to one digest per push and compared with ``golden/xds_pin.json``.

A performance change (sharing scopes, caching, response assembly) must leave these digests as they
were. A change meant to alter what proxies get updates the file on purpose:
``MESH_UPDATE_PIN=1 python -m pytest tests/test_xds_pin.py`` — and the diff of the file says which
traces and pushes it touched.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from mesh.bootstrap import Server, ServerArgs
from mesh.demo.pods import record_pushes

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).with_name("golden") / "xds_pin.json"
TRACES = sorted(p.stem for p in (ROOT / "traces").glob("*.jsonl") if p.stem != "bad-config")


def digests(trace: str, delta: bool) -> list[str]:
    """Per push, a digest of what every modelled proxy was sent: proxy, step, type, and each
    resource's name and serialized ``Any`` entry (with Delta's removals), in order."""
    server = Server(ServerArgs(trace=trace)).run_all()
    try:
        recorder = record_pushes(server, delta=delta)
        server.xds.start()
        server.clock.run()
        out = []
        for record in recorder.records:
            h = hashlib.sha256()
            for delivery in record.deliveries:
                h.update(f"{delivery.proxy}|{delivery.step}\n".encode())
                for sent in delivery.sent:
                    h.update(f"{sent.type}|{','.join(sent.removed)}\n".encode())
                    for r in sent.resources:
                        h.update(r.name.encode() + b"\0" + r.encoded)
            for skipped in record.skipped:
                h.update(f"skip {skipped.proxy}\n".encode())
            out.append(h.hexdigest()[:16])
        return out
    finally:
        server.close()


@pytest.fixture(scope="module")
def golden() -> dict:
    return json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}


@pytest.mark.parametrize("delta", [False, True], ids=["sotw", "delta"])
@pytest.mark.parametrize("trace", TRACES)
def test_pushes_are_byte_for_byte_as_pinned(trace, delta, golden):
    key = f"{trace}/{'delta' if delta else 'sotw'}"
    got = digests(trace, delta)
    if os.environ.get("MESH_UPDATE_PIN"):
        pinned = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
        pinned[key] = got
        GOLDEN.write_text(json.dumps(dict(sorted(pinned.items())), indent=1) + "\n")
        return
    assert key in golden, f"no pin for {key}: run with MESH_UPDATE_PIN=1 to record it"
    want = golden[key]
    changed = [i + 1 for i, (a, b) in enumerate(zip(got, want, strict=False)) if a != b]
    assert len(got) == len(want) and not changed, (
        f"{key}: {len(got)} pushes (pinned {len(want)}); pushes whose responses differ: {changed}")
