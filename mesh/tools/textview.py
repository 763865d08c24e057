"""Fixed-width text for people: ``TextView``, ``table`` and ``as_yaml``, shared by the CLI's
timelines (``mesh replay``) and the notebooks' views (``mesh.teach``). No Go counterpart.

A ``TextView`` is what Jupyter prints as it is (no HTML, no colour) and what ``print`` writes, so a
notebook's committed output is exactly what ``pytest --nbval`` compares, and the CLI prints the same
rows. Callers sort their rows; nothing here prints wall-clock times, ports, paths or addresses.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import yaml


class TextView:
    """Text shown verbatim by Jupyter (``_repr_pretty_``) and by ``print``.

    ``markdown`` is an optional richer rendering (a Markdown table with links) that Jupyter
    prefers when it can; the plain text is always there too.
    """

    def __init__(self, text: str, markdown: str | None = None):
        self.text = text.rstrip("\n")
        self.markdown = markdown

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return self.text

    def _repr_pretty_(self, p, cycle) -> None:  # IPython's pretty printer
        p.text(self.text)

    def _repr_markdown_(self) -> str | None:
        return self.markdown

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TextView) and other.text == self.text

    __hash__ = None  # mutable-ish value object; not meant for sets


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value).replace("\n", "\\n")


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], title: str | None = None) -> TextView:
    """A fixed-width table: one header line, a rule, then the rows as given (callers sort)."""
    body = [[_cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in body:
        if len(row) != len(headers):
            raise ValueError(f"table: row {row!r} has {len(row)} cells, expected {len(headers)}")
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    out = [title] if title else []
    out += [line(list(headers)), line(["-" * w for w in widths])]
    out += [line(row) for row in body] or ["(none)"]
    return TextView("\n".join(out))


def as_yaml(obj: Any) -> TextView:
    """An object as YAML, keys in the order they were written (what a user would type)."""
    return TextView(yaml.safe_dump(obj, sort_keys=False, default_flow_style=False, width=100))
