"""The course notebooks keep their shape (DESIGN.md §7), and the tooling they rely on works.

Shape: every notebook has the four parts Read / Run / Watch / Check as headings, in that order;
every code cell has committed outputs and none is an error; every link into istio/istio points at
the 1.19.0 tag with a line anchor (and, when the local mirror is present, at lines that exist, and
at lines that hold the Go identifier the link's text names);
nothing printed looks like a memory address or a temp path; the course's table of contents lists
every notebook and every stage. Tooling: ``mesh.teach.views`` and ``mesh.tools.run_notebooks``.
"""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path

import istio_src
import nbformat
import pytest

from mesh.bootstrap.stages import STAGES
from mesh.teach import views
from mesh.tools import run_notebooks

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
ISTIO_LINK = re.compile(r"https?://github\.com/istio/istio/[^\s)\]\"'<>`]*")
GOOD_LINK = re.compile(r"^https://github\.com/istio/istio/blob/1\.19\.0/(?P<path>[^#]+)#L(?P<a>\d+)(?:-L(?P<b>\d+))?$")
PARTS = ("Read", "Run", "Watch", "Check")


def _ids(paths):
    return [p.name for p in paths]


def _read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def _output_texts(cell) -> list[str]:
    texts = []
    for out in cell.get("outputs", []):
        if "text" in out:
            texts.append(out["text"])
        for value in out.get("data", {}).values():
            if isinstance(value, str):
                texts.append(value)
    return texts


def _all_texts(nb) -> list[str]:
    texts = []
    for cell in nb.cells:
        texts.append(cell.source)
        texts += _output_texts(cell)
    return texts


def test_there_are_notebooks():
    names = [p.name for p in NOTEBOOKS]
    assert "00-overview.ipynb" in names, names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_four_parts_as_headings_in_order(path):
    headings = [line.lstrip("#").strip()
                for cell in _read(path).cells if cell.cell_type == "markdown"
                for line in cell.source.splitlines() if re.match(r"^#{1,3} ", line)]
    found = [h for h in headings if h in PARTS]
    assert found == list(PARTS), f"{path.name}: expected headings {PARTS} in order, found {found}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_every_code_cell_has_outputs_and_none_failed(path):
    for i, cell in enumerate(_read(path).cells):
        if cell.cell_type != "code":
            continue
        assert cell.outputs, f"{path.name} cell {i} has no outputs: run `make notebooks`\n{cell.source[:200]}"
        errors = [o for o in cell.outputs if o.output_type == "error"]
        assert not errors, f"{path.name} cell {i} committed an error: {errors[0].get('ename')}"
        assert not [o for o in cell.outputs if o.get("name") == "stderr"], \
            f"{path.name} cell {i} wrote to stderr (capture logs with views.capture_logs())"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_istio_links_point_at_1_19_0_lines(path):
    links = {m.group(0) for text in _all_texts(_read(path)) for m in ISTIO_LINK.finditer(text)}
    bad = sorted(link for link in links if not GOOD_LINK.match(link))
    assert not bad, f"{path.name}: istio links must be blob/1.19.0/<path>#L<n>[-L<m>]: {bad}"


def _istio_file_lengths(links: set[str]) -> dict[str, int]:
    lengths = {}
    for link in links:
        path = GOOD_LINK.match(link).group("path")
        if path not in lengths:
            shown = istio_src.show(path)
            lengths[path] = len(shown.splitlines()) if shown is not None else -1
    return lengths


@istio_src.needed
def test_istio_link_lines_exist_in_the_mirror():
    links = {m.group(0) for p in NOTEBOOKS for text in _all_texts(_read(p)) for m in ISTIO_LINK.finditer(text)}
    links = {link for link in links if GOOD_LINK.match(link)}
    lengths = _istio_file_lengths(links)
    problems = []
    for link in sorted(links):
        m = GOOD_LINK.match(link)
        first, last = int(m.group("a")), int(m.group("b") or m.group("a"))
        size = lengths[m.group("path")]
        if size < 0:
            problems.append(f"{link}: no such file at 1.19.0")
        elif not 1 <= first <= last <= size:
            problems.append(f"{link}: lines {first}-{last} outside 1-{size}")
    assert not problems, "\n".join(problems)


# A Markdown link whose text names Go identifiers in backticks, as in [`initDNSCerts`](...) or
# [`s.initServers()`](...): each must occur in the lines the link points at. A dotted name checks
# its last part (`XDSServer.InitGenerators` → InitGenerators, `spec.values` → values); a path, a
# file name, a phrase or a number (`pkg/kube/inject`, `server.go`, `kubectl apply`, `15010`) names
# none.
MD_LINK = re.compile(r"\[(?P<text>[^\]]*)\]\((?P<url>https://github\.com/istio/istio/blob/1\.19\.0/[^)\s]+)\)")
GO_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def link_identifiers(text: str) -> list[str]:
    names = []
    for code in re.findall(r"`([^`]+)`", text):
        code = re.sub(r"\(.*\)$", "", code.strip())
        if "/" in code or " " in code or code.endswith((".go", ".yaml")):
            continue
        last = code.split(".")[-1]
        if GO_IDENT.fullmatch(last):
            names.append(last)
    return names


def test_link_identifiers_pick_names_only():
    assert link_identifiers("`initDNSCerts`") == ["initDNSCerts"]
    assert link_identifiers("`s.initServers()` and `XDSServer.InitGenerators`") == ["initServers", "InitGenerators"]
    assert link_identifiers("`pkg/kube/inject` `server.go` `/inject` `kubectl apply` `15010`") == []
    assert link_identifiers("`PILOT_ENABLE_GATEWAY_API` `crdclient`") == ["PILOT_ENABLE_GATEWAY_API", "crdclient"]
    assert link_identifiers("L62-L74") == []


def _linked_identifiers():
    for path in NOTEBOOKS:
        for i, cell in enumerate(_read(path).cells):
            if cell.cell_type != "markdown":
                continue
            for m in MD_LINK.finditer(cell.source):
                link = GOOD_LINK.match(m.group("url"))
                if link and link_identifiers(m.group("text")):
                    yield path.name, i, m.group("text"), link


@istio_src.needed
def test_istio_links_hold_the_identifiers_their_text_names():
    problems, files = [], {}
    for name, i, text, link in _linked_identifiers():
        path, first = link.group("path"), int(link.group("a"))
        last = int(link.group("b") or first)
        if path not in files:
            shown = istio_src.show(path)
            files[path] = shown.splitlines() if shown is not None else []
        body = "\n".join(files[path][first - 1:last])
        missing = [ident for ident in link_identifiers(text) if not re.search(rf"\b{ident}\b", body)]
        if missing:
            problems.append(f"{name} cell {i}: [{text}]({link.group(0)}) lines hold no {', '.join(missing)}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_outputs_have_no_addresses_or_temp_paths(path):
    suspicious = re.compile(r"\bat 0x[0-9a-f]{6,}|/tmp/|/var/folders/|mesh-notebook-")
    for i, cell in enumerate(_read(path).cells):
        for text in _output_texts(cell):
            m = suspicious.search(text)
            assert m is None, f"{path.name} cell {i} prints {m.group(0)!r}, which differs between runs"


def test_table_of_contents_lists_every_notebook_and_stage():
    readme = (ROOT / "notebooks" / "README.md").read_text(encoding="utf-8")
    linked = set(re.findall(r"\]\(([^)]+\.ipynb)\)", readme))
    missing_files = [p.name for p in NOTEBOOKS if p.name not in linked]
    missing_stages = [s.notebook for s in STAGES if s.notebook not in linked]
    assert not missing_files, f"notebooks/README.md does not list {missing_files}"
    assert not missing_stages, f"notebooks/README.md does not list the stage notebooks {missing_stages}"
    rows = {cells[0]: cells for line in readme.splitlines()
            if (cells := [c.strip() for c in line.strip().strip("|").split("|")]) and len(cells) == 4}
    for s in STAGES:
        row = rows.get(f"{s.number:02d}")
        assert row is not None, f"notebooks/README.md has no row for stage {s.number}"
        assert row[2:] == [f"`{s.go_name}`", s.summary], f"stage {s.number}: README row {row} differs from stages.py"


# -- the tooling -----------------------------------------------------------------------------------
def test_table_aligns_columns_and_says_none():
    t = views.table(("a", "long header"), [("xyz", 1), ("q", None)])
    lines = t.text.splitlines()
    assert lines[0] == "a    long header"
    assert lines[1] == "---  -----------"
    assert lines[2] == "xyz  1"
    assert lines[3] == "q"
    assert views.table(("x",), []).text.splitlines()[-1] == "(none)"
    with pytest.raises(ValueError, match="2 cells"):
        views.table(("only",), [("a", "b")])


def test_mesh_diff_shows_only_changed_fields():
    before = {"trustDomain": "cluster.local", "defaultConfig": {"concurrency": 2, "statusPort": 15020},
              "defaultProviders": {}}
    after = {"trustDomain": "example.org", "defaultConfig": {"concurrency": 2},
             "defaultProviders": {"metrics": ["prometheus"]}}
    rows = views.mesh_diff(before, after).text.splitlines()[2:]
    assert [r.split()[0] for r in rows] == ["defaultConfig.statusPort", "defaultProviders.metrics", "trustDomain"]
    assert "'cluster.local'" in rows[2] and "'example.org'" in rows[2]
    assert views.mesh_diff(before, before).text.splitlines()[-1] == "(none)"


def test_stage_table_follows_the_stage_list():
    text = views.stage_table().text
    for s in STAGES:
        assert s.go_name in text and s.notebook in text
    assert views.stage_table().markdown.count("https://github.com/istio/istio/blob/1.19.0/") == len(STAGES)


def test_capture_logs_replaces_rather_than_doubles():
    first = views.capture_logs("mesh.test_views")
    second = views.capture_logs("mesh.test_views")
    logging.getLogger("mesh.test_views.child").warning("once %s", "only")
    assert first.lines == []
    assert second.new().text == "WARNING mesh.test_views.child: once only"
    assert second.new().text == "(no new log lines)"


def test_inline_trace_validates_and_names_the_trace():
    from mesh.kube.trace import TraceError, load_trace

    header = {"trace": "mesh/v1", "name": "tiny"}
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}}
    path = views.inline_trace([header, {"t": 0, "type": "ADDED", "object": ns}], "tiny.jsonl")
    assert [e.key.name for e in load_trace(path).events] == ["a"]
    with pytest.raises(TraceError, match=r"tiny-bad\.jsonl:2: type"):
        views.inline_trace([header, {"t": 0, "type": "MODIFIED", "object": ns}], "tiny-bad.jsonl")


def _notebook(path: Path, *sources: str) -> Path:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    nbformat.write(nb, path)
    return path


def test_find_notebooks_sorts_and_rejects_strangers(tmp_path):
    for name in ("b.ipynb", "a.ipynb"):
        _notebook(tmp_path / name, "1")
    (tmp_path / ".ipynb_checkpoints").mkdir()
    _notebook(tmp_path / ".ipynb_checkpoints" / "a-checkpoint.ipynb", "1")
    assert [p.name for p in run_notebooks.find_notebooks([tmp_path])] == ["a.ipynb", "b.ipynb"]
    with pytest.raises(FileNotFoundError):
        run_notebooks.find_notebooks([tmp_path / "nope.ipynb"])


def test_run_notebooks_executes_in_place_in_the_notebook_folder(tmp_path):
    good = _notebook(tmp_path / "good.ipynb", "import os, sys; print(os.path.basename(os.getcwd()))",
                     f"print(sys.executable == {sys.executable!r})")
    bad = _notebook(tmp_path / "zz-bad.ipynb", "raise RuntimeError('boom')")
    before_bad = bad.read_text()
    assert run_notebooks.main([str(good)]) == 0
    cells = nbformat.read(good, as_version=4).cells
    assert cells[0].outputs[0]["text"] == f"{tmp_path.name}\n"
    assert cells[1].outputs[0]["text"] == "True\n"  # the kernel runs on this very Python
    assert all("execution" not in c.metadata for c in cells)
    assert run_notebooks.main([str(bad)]) == 1
    assert bad.read_text() == before_bad
    assert run_notebooks.main([str(tmp_path / "missing")]) == 2
