"""Shared fixtures."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from kubeobjects import bookinfo_events
from tracehelpers import configmap, write_trace


@pytest.fixture(scope="session", autouse=True)
def _contain_cluster_addresses():
    """As root, blackhole routes for the pod and Service ranges for the whole session
    (mesh.cni.node.Guard): a test that sent to a trace's 10.x address from the root namespace
    fails at once instead of sending it off the machine."""
    from mesh.cni.ip import unavailable

    if unavailable() is not None:
        yield
        return
    from mesh.cni.node import Guard

    guard = Guard().start()
    try:
        yield
    finally:
        guard.stop()


@pytest.fixture(autouse=True)
def _restore_mesh_log_level():
    """A test that quietens the ``mesh`` logger must not take the logs of the tests after it."""
    logger = logging.getLogger("mesh")
    level = logger.level
    yield
    logger.setLevel(level)


@pytest.fixture
def mesh_change_trace(tmp_path: Path) -> Path:
    """The istio ConfigMap at t=0, then access log on (t=10), a bad edit (t=15), a trust domain (t=20)."""
    return write_trace(tmp_path / "mesh-change.jsonl", [
        (0, "ADDED", configmap({"mesh": "accessLogFile: ''\n", "meshNetworks": "networks: {}\n"})),
        (10, "MODIFIED", configmap({"mesh": "accessLogFile: /dev/stdout\n"})),
        (15, "MODIFIED", configmap({"mesh": "accessLogFile: [unclosed\n"})),
        (20, "MODIFIED", configmap({"mesh": "accessLogFile: /dev/stdout\ntrustDomain: example.org\n"})),
    ])


@pytest.fixture
def trace_file(tmp_path: Path) -> Path:
    """A small bookinfo trace (tests/kubeobjects.py) for the API server, live client and recorder."""
    return write_trace(tmp_path / "bookinfo-small.jsonl", bookinfo_events())


@pytest.fixture
def server(trace_file: Path):
    """The replay API server on ``trace_file``, applied at once, in a thread."""
    from mesh.kube.apiserver import ApiServer

    with ApiServer(trace_file, speed=None) as srv:
        yield srv
