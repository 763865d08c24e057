"""The trace validator (mesh.kube.trace): every defect class names file:line and the field, and a
trace with any defect yields nothing at all."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mesh.kube.trace import TraceError, load_trace, parse_trace

HEADER = json.dumps({"trace": "mesh/v1", "name": "t", "domain_suffix": "cluster.local"})


def cm(name: str = "istio", namespace: str | None = "istio-system", **extra) -> dict:
    meta = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {}, **extra}


def line(t: float, event_type: str, obj: dict) -> str:
    return json.dumps({"t": t, "type": event_type, "object": obj})


def write(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "case.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def problems_of(path: Path) -> list:
    """Load a bad trace; it must raise (so nothing is returned) and say why."""
    result = None
    with pytest.raises(TraceError) as caught:
        result = load_trace(path)
    assert result is None
    return caught.value.problems


def assert_names(problem, path: Path, line_number: int, field: str) -> None:
    assert (problem.line, problem.field) == (line_number, field)
    assert str(problem).startswith(f"{path}:{line_number}: {field}: ")


def test_a_good_trace_loads_with_blank_lines_ignored(tmp_path):
    path = write(tmp_path, HEADER, line(0, "ADDED", cm()), "", line(1.5, "MODIFIED", cm()),
                 line(2, "DELETED", cm()))
    trace = load_trace(path)
    assert [(e.t, e.type, e.line) for e in trace.events] == [(0, "ADDED", 2), (1.5, "MODIFIED", 4),
                                                             (2, "DELETED", 5)]
    assert trace.name == "t" and trace.duration == 2


def test_bad_json_names_the_line_and_json(tmp_path):
    path = write(tmp_path, HEADER, line(0, "ADDED", cm()), '{"t": 1, "type": "MODIFIED", "object": {')
    (problem,) = problems_of(path)
    assert_names(problem, path, 3, "json")
    assert "not valid JSON" in problem.message


def test_unknown_event_type(tmp_path):
    path = write(tmp_path, HEADER, line(0, "CREATED", cm()))
    (problem,) = problems_of(path)
    assert_names(problem, path, 2, "type")
    assert "CREATED" in problem.message


def test_missing_kind(tmp_path):
    obj = cm()
    del obj["kind"]
    path = write(tmp_path, HEADER, line(0, "ADDED", obj))
    (problem,) = problems_of(path)
    assert str(problem) == f"{path}:2: object.kind: missing or empty"


def test_missing_name(tmp_path):
    obj = cm()
    del obj["metadata"]["name"]
    path = write(tmp_path, HEADER, line(0, "ADDED", cm("other")), line(1, "ADDED", obj))
    (problem,) = problems_of(path)
    assert str(problem) == f"{path}:3: object.metadata.name: missing or empty"


def test_missing_namespace_on_a_namespaced_kind(tmp_path):
    path = write(tmp_path, HEADER, line(0, "ADDED", cm(namespace=None)))
    (problem,) = problems_of(path)
    assert_names(problem, path, 2, "object.metadata.namespace")
    assert "ConfigMap is namespaced" in problem.message


def test_time_going_backwards(tmp_path):
    path = write(tmp_path, HEADER, line(5, "ADDED", cm("a")), line(4, "ADDED", cm("b")))
    (problem,) = problems_of(path)
    assert_names(problem, path, 3, "t")
    assert "backwards" in problem.message and "4" in problem.message


def test_modified_before_added(tmp_path):
    path = write(tmp_path, HEADER, line(0, "MODIFIED", cm()))
    (problem,) = problems_of(path)
    assert_names(problem, path, 2, "type")
    assert "never ADDED" in problem.message and "ConfigMap istio-system/istio" in problem.message


def test_missing_header(tmp_path):
    path = write(tmp_path, line(0, "ADDED", cm()), line(1, "MODIFIED", cm()))
    problems = problems_of(path)
    assert_names(problems[0], path, 1, "trace")
    assert "header" in problems[0].message


def test_empty_file_has_no_header(tmp_path):
    path = write(tmp_path, "")
    (problem,) = problems_of(path)
    assert_names(problem, path, 1, "trace")


def test_every_problem_is_reported_not_just_the_first(tmp_path):
    path = write(tmp_path, HEADER, "not json", line(1, "ADDED", cm()), line(0, "MODIFIED", cm("x")))
    problems = problems_of(path)
    assert [(p.line, p.field) for p in problems] == [(2, "json"), (4, "t"), (4, "type")]


def test_parse_trace_names_the_path_it_is_given():
    with pytest.raises(TraceError) as caught:
        parse_trace(HEADER + "\n" + line(0, "ADDED", cm(namespace=None)) + "\n", "memory.jsonl")
    assert str(caught.value).startswith("memory.jsonl:2: object.metadata.namespace:")
