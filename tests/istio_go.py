"""Tests-only: reading the tables of Istio's Go tests (struct literals) from ``ISTIO_SRC``.

Only what the tables mesh replays need: a function's text, the block between two braces, the quoted
strings of a piece. Nothing read is committed; see ``istio_src``.
"""

from __future__ import annotations

import re

import istio_src


def block(text: str, start: int) -> str:
    """The text between the brace at ``start`` and its partner."""
    depth = 0
    for i in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[start + 1:i]
    raise ValueError("unbalanced braces")


def go_test(path: str, name: str) -> str:
    """The source of ``func <name>(`` in ``path`` at 1.19.0, up to the next top-level func."""
    source = istio_src.show(path)
    start = source.index(f"func {name}(")
    end = source.find("\nfunc ", start + 1)
    return source[start:end]


def strings(text: str) -> list[str]:
    return re.findall(r'"([^"]*)"', text)


def rows(table: str) -> list[str]:
    """The ``{ ... }`` entries of a table literal's body, each as its inner text."""
    out, i = [], 0
    while (i := table.find("{", i)) != -1:
        inner = block(table, i)
        out.append(inner)
        i += len(inner) + 2
    return out
