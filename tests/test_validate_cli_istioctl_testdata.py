"""``mesh validate`` against istioctl 1.19's own verdicts.

``istioctl/pkg/validate/validate_test.go`` (TestValidateResource) feeds YAML documents, held in Go
raw-string constants, to ``validateResource`` and says which are valid and which warn. The same
documents are written to files here and run through ``python -m mesh validate -f`` (read at test
time from ``ISTIO_SRC``, ``tests/istio_src.py``; nothing committed): exit 1 exactly for Istio's
invalid ones, ``warning:`` lines exactly where Istio's test expects a warning.
"""

from __future__ import annotations

import re

import istio_src
import pytest

from mesh.cli import main

pytestmark = istio_src.needed

TEST_FILE = "istioctl/pkg/validate/validate_test.go"
# Cases mesh's document reader refuses as a usage error (exit 2) while istioctl reads them.
KNOWN = {
    "valid deployment list": "a v1 List has no metadata.name, which mesh's document loader requires "
                             "(mesh/cli/_documents.py)",
    "invalid service list": "the same: refused, but as a usage error (exit 2) before any check, not exit 1",
    "skip validating service": "no apiVersion: mesh's document loader requires one",
    "service with udp port": "no apiVersion: mesh's document loader requires one",
}


def _cases() -> list[tuple[str, str, bool, bool]]:
    if not istio_src.available():
        return []
    src = istio_src.show(TEST_FILE)
    documents = dict(re.findall(r"\n\t(\w+)\s*=\s*`(.*?)`", src, re.S))
    table = src[src.index("func TestValidateResource"):]
    table = table[:table.index("for i, c := range cases")]
    rows = re.findall(r'name:\s*"([^"]*)",\s*in:\s*(\w+),\s*valid:\s*(true|false),(?:\s*warn:\s*(true|false),)?',
                      table)
    return [(name, documents[ident], valid == "true", warn == "true") for name, ident, valid, warn in rows]


CASES = _cases()


def _param(case):
    marks = [pytest.mark.xfail(strict=True, reason=KNOWN[case[0]])] if case[0] in KNOWN else []
    return pytest.param(case, id=case[0], marks=marks)


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_mesh_validate_gives_istioctls_verdict(case, tmp_path, capsys):
    name, document, valid, warn = case
    path = tmp_path / "in.yaml"
    path.write_text(document)
    code = main(["validate", "-f", str(path)])
    out = capsys.readouterr().out
    assert code == (0 if valid else 1), out
    assert (": warning: " in out) == warn, out


def test_the_table_was_read():
    assert len(CASES) >= 20 and set(KNOWN) <= {c[0] for c in CASES}
