"""One package map (mesh/tools/packagemap.py) behind README's table, the diagram and notebook 00."""

from __future__ import annotations

from pathlib import Path

import istio_src
import pytest

from mesh.tools import packagemap
from mesh.tools.diagrams import package_map

ROOT = Path(__file__).resolve().parent.parent


def test_readme_section_is_the_generated_table():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split(packagemap.START, 1)[1].split(packagemap.END, 1)[0].strip()
    assert section == packagemap.markdown(), "README's package map is stale: run `make diagrams`"


def test_update_readme_rewrites_only_the_section(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# t\nbefore\n{packagemap.START}\nold\n{packagemap.END}\nafter\n", encoding="utf-8")
    assert packagemap.update_readme(readme) is True
    text = readme.read_text(encoding="utf-8")
    assert text.startswith("# t\nbefore\n") and text.endswith("after\n") and "old" not in text
    assert packagemap.update_readme(readme) is False  # a second run changes nothing


def test_update_readme_without_markers_is_refused(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("no section\n", encoding="utf-8")
    with pytest.raises(ValueError, match="README.md: no <!-- package-map:start -->"):
        packagemap.update_readme(readme)
    assert readme.read_text(encoding="utf-8") == "no section\n"


def test_every_module_of_the_map_exists_and_the_diagram_draws_each_row():
    missing = [py for _, py, _ in packagemap.PACKAGE_MAP if not packagemap.module_exists(py)]
    assert missing == []
    source = package_map().source
    for go, py, _ in packagemap.PACKAGE_MAP:
        assert go in source and py in source


@istio_src.needed
def test_every_go_package_exists_at_1_19_0():
    gone = [go for go, _, _ in packagemap.PACKAGE_MAP if not istio_src.ls(go)]
    assert gone == []
