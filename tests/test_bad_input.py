"""Every bad input file gets one clean line and exit 2: validate, inject, convert and traces."""

from __future__ import annotations

import json
import resource

import pytest

from mesh.cli import main
from mesh.kube.trace import TraceError, load_trace
from mesh.util import safeinput

POD = "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n"
BOMB = "".join(f"{a}: &{a} [{','.join([f'*{p}'] * 9) if p else ','.join(['lol'] * 9)}]\n"
               for a, p in zip("abcdefghi", ["", *"abcdefgh"], strict=True)) + POD
BAD_FILES = {
    "binary": (bytes(range(256)) * 4, "binary data (a NUL byte)"),
    "utf16": (POD.encode("utf-16"), "UTF-16-encoded"),
    "nul": (b"apiVersion: v1\x00\nkind: Pod\n", "nul.yaml:1: binary data"),
    "latin1": (POD.replace("x}", "caf\xe9}").encode("latin-1"), "latin1.yaml:3: not valid UTF-8"),
    "deep": ((POD + "spec: " + "[" * 5000 + "]" * 5000 + "\n").encode(), "nested more than 100 levels"),
    "deepmap": ((POD + "spec: " + "{a: " * 3000 + "1" + "}" * 3000 + "\n").encode(), "nested more than 100 levels"),
    "bomb": (BOMB.encode(), "alias bomb"),
    "namespace": (b"apiVersion: v1\nkind: Pod\nmetadata: {name: x, namespace: {a: 1}}\n", "metadata.namespace"),
}


@pytest.mark.parametrize("command", ["validate", "inject", "convert"])
@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_cli_refuses_bad_files_with_one_line(tmp_path, capsys, command, name):
    data, message = BAD_FILES[name]
    path = tmp_path / f"{name}.yaml"
    path.write_bytes(data)
    argv = [command, "-f", str(path)] if command != "convert" else ["convert", "ingress", "-f", str(path)]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert main(argv) == 2
    err = capsys.readouterr()
    assert err.out == ""
    lines = err.err.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and message in lines[0], lines
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 100, grown_mb  # the bomb is refused before it is expanded


def trace_lines(*events: dict) -> str:
    header = {"trace": "mesh/v1", "name": "t"}
    return "\n".join(json.dumps(x) for x in (header, *events)) + "\n"


def ns_event(**meta) -> dict:
    return {"t": 0, "type": "ADDED", "object": {"apiVersion": "v1", "kind": "ConfigMap",
                                                  "metadata": {"name": "c", "namespace": "default", **meta}}}


@pytest.mark.parametrize("data, message", [
    (trace_lines(ns_event()).encode().replace(b"default", b"d\xe9fault", 1), "t.jsonl:2: file: not valid UTF-8"),
    (trace_lines(ns_event()).encode("utf-16"), "t.jsonl:1: file: UTF-16"),
    ((trace_lines() + '{"t": 0, "type": "ADDED", "object": ' + "[" * 5000 + "]" * 5000 + "}\n").encode(),
     "t.jsonl:2: json: nested more than 100 levels"),
    (trace_lines(ns_event(namespace={"a": 1})).encode(), "t.jsonl:2: object.metadata.namespace: must be a string"),
    (trace_lines(ns_event(labels=5)).encode(), "t.jsonl:2: object.metadata.labels: must be a map"),
    (trace_lines({"t": 0, "type": "ADDED", "object": {"apiVersion": 5, "kind": [], "metadata": {"name": "c"}}}).encode(),
     "t.jsonl:2: object.apiVersion: missing or empty"),
])
def test_trace_loader_refuses_bad_input_naming_file_and_line(tmp_path, data, message):
    path = tmp_path / "t.jsonl"
    path.write_bytes(data)
    with pytest.raises(TraceError) as err:
        load_trace(path)
    assert message in str(err.value)


def test_serve_prints_trace_errors_on_stderr(tmp_path, capsys):
    path = tmp_path / "t.jsonl"
    path.write_text(trace_lines(ns_event(namespace=7)))
    assert main(["serve", "--trace", str(path), "--duration", "0"]) == 2
    out = capsys.readouterr()
    assert out.out == "" and "t.jsonl:2: object.metadata.namespace" in out.err


def test_expanded_size_counts_aliases_without_expanding_them():
    import yaml

    node = yaml.compose(BOMB.split("apiVersion")[0])
    assert safeinput.expanded_size(node) > 9 ** 9  # measured, not built
