"""Paths into a YAML tree — ``components.ingressGateways[0].k8s.env``, ``[name:istio-ingressgateway]``
— and istioctl's ``--set path=value``.

istioctl parses ``--set`` in ``operator/pkg/tpath``
(https://github.com/istio/istio/blob/1.19.0/operator/pkg/tpath/tree.go#L146-L320 finds or creates a
path node; https://github.com/istio/istio/blob/1.19.0/operator/pkg/util/path.go#L102-L180 reads the
``[N]`` index and ``[key:value]`` selector elements) and turns the string on the right of ``=`` into
a bool, an int, a float or a string
(``ParseValue``, https://github.com/istio/istio/blob/1.19.0/operator/pkg/util/util.go#L89-L105).
The same path syntax addresses rendered objects when an IstioOperator's ``k8s`` settings are laid
over them (``[Deployment:istiod].spec.template.spec.containers.[name:discovery].env``), so one
parser serves both.

A path is dot-separated; each element is a map key, a list index ``[N]`` (``a.b[0]`` and
``a.b.[0]`` mean the same), or a selector ``[key:value]`` that picks the list entry whose
``key`` equals ``value``. Setting creates missing maps on the way, appends when the index is
the list's length, and appends ``{key: value}`` when a selector matches nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


class PathError(ValueError):
    """A path that cannot be parsed or followed; the message names the path and the element."""


@dataclass(frozen=True)
class Element:
    key: str | None = None  # a map key
    index: int | None = None  # [N]
    match: tuple[str, str] | None = None  # [key:value]

    def __str__(self) -> str:
        if self.key is not None:
            return self.key
        if self.index is not None:
            return f"[{self.index}]"
        return f"[{self.match[0]}:{self.match[1]}]"


_BRACKET = re.compile(r"\[([^\[\]]*)\]")


def parse_path(path: str) -> list[Element]:
    """``a.b[0].[name:x].c`` → [a, b, [0], [name:x], c]; PathError for an empty or broken element."""
    if not path or not path.strip():
        raise PathError("empty path")
    elements: list[Element] = []
    # Dots inside a selector value ([name:foo.bar]) must not split: split outside brackets only.
    parts, depth, current = [], 0, ""
    for ch in path:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise PathError(f"{path}: unbalanced ']'")
        if ch == "." and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    if depth:
        raise PathError(f"{path}: unbalanced '['")
    parts.append(current)
    for part in parts:
        if not part:
            raise PathError(f"{path}: empty element (two dots in a row, or a dot at an end)")
        head, _, rest = part.partition("[")
        if head:
            elements.append(Element(key=head))
        rest = "[" + rest if rest else ""
        position = 0
        for found in _BRACKET.finditer(rest):
            if found.start() != position:
                raise PathError(f"{path}: unexpected text {rest[position:found.start()]!r} in {part!r}")
            elements.append(_bracket(found.group(1), path))
            position = found.end()
        if position != len(rest):
            raise PathError(f"{path}: unexpected text {rest[position:]!r} in {part!r}")
    return elements


def _bracket(inner: str, path: str) -> Element:
    if ":" in inner:
        key, _, value = inner.partition(":")
        if not key:
            raise PathError(f"{path}: selector [{inner}] needs a key before ':'")
        return Element(match=(key, value))
    if inner.isdigit():
        return Element(index=int(inner))
    raise PathError(f"{path}: [{inner}] is neither an index [N] nor a selector [key:value]")


def parse_value(text: str) -> object:
    """istioctl's ParseValue: an integer → int, else a number → float, else Go's boolean
    spellings (``true``, ``False``, ``t``...) → bool, else a string with ``\\,`` unescaped to
    ``,``. So ``--set tag=1.19.0`` is the string 1.19.0 and ``--set a=1.0`` the float 1.0."""
    if re.fullmatch(r"[-+]?\d+", text):
        return int(text)
    if re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", text):
        return float(text)
    if text in ("t", "T", "TRUE", "true", "True"):
        return True
    if text in ("f", "F", "FALSE", "false", "False"):
        return False
    return text.replace("\\,", ",")


def parse_set(flag: str) -> tuple[str, object]:
    """``"a.b[0].c=x"`` → ("a.b[0].c", "x"); the path is checked, the value converted."""
    path, sep, value = flag.partition("=")
    if not sep:
        raise PathError(f"--set {flag}: expected path=value")
    path = path.strip()
    parse_path(path)
    return path, parse_value(value)


def _entry_matches(entry: object, match: tuple[str, str]) -> bool:
    return isinstance(entry, dict) and str(entry.get(match[0])) == match[1]


def get_path(tree: object, path: str | list[Element]) -> object:
    """The node at ``path``; PathError naming the first element that is missing."""
    elements = parse_path(path) if isinstance(path, str) else path
    node = tree
    for i, element in enumerate(elements):
        where = ".".join(str(e) for e in elements[: i + 1])
        if element.key is not None:
            if not isinstance(node, dict) or element.key not in node:
                raise PathError(f"{where}: not found")
            node = node[element.key]
        elif element.index is not None:
            if not isinstance(node, list) or element.index >= len(node):
                raise PathError(f"{where}: no such list entry")
            node = node[element.index]
        else:
            if not isinstance(node, list):
                raise PathError(f"{where}: not a list")
            found = [entry for entry in node if _entry_matches(entry, element.match)]
            if not found:
                raise PathError(f"{where}: no entry with {element.match[0]}={element.match[1]}")
            node = found[0]
    return node


def set_path(tree: dict, path: str | list[Element], value: object) -> None:
    """Set the node at ``path`` to ``value`` in place, creating what is missing on the way."""
    elements = parse_path(path) if isinstance(path, str) else path
    node: object = tree
    for i, element in enumerate(elements):
        last = i == len(elements) - 1
        nxt = None if last else elements[i + 1]
        where = ".".join(str(e) for e in elements[: i + 1])
        empty = {} if nxt is None or nxt.key is not None else []
        if element.key is not None:
            if not isinstance(node, dict):
                raise PathError(f"{where}: the parent is a {type(node).__name__}, not a map")
            if last:
                node[element.key] = value
                return
            if not isinstance(node.get(element.key), dict | list):
                node[element.key] = empty
            node = node[element.key]
        elif element.index is not None:
            if not isinstance(node, list):
                raise PathError(f"{where}: the parent is a {type(node).__name__}, not a list")
            if element.index > len(node):
                raise PathError(f"{where}: index {element.index} is past the end (the list has {len(node)})")
            if element.index == len(node):
                node.append(None if last else empty)
            if last:
                node[element.index] = value
                return
            if not isinstance(node[element.index], dict | list):
                node[element.index] = empty
            node = node[element.index]
        else:
            if not isinstance(node, list):
                raise PathError(f"{where}: the parent is a {type(node).__name__}, not a list")
            key, wanted = element.match
            found = [j for j, entry in enumerate(node) if _entry_matches(entry, element.match)]
            if not found:
                node.append({key: parse_value(wanted)})
                found = [len(node) - 1]
            if last:
                node[found[0]] = value
                return
            node = node[found[0]]
