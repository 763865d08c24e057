"""Reading untrusted input files and bodies within bounded memory: text, YAML, JSON.

Go: none as such. istiod and istioctl read YAML with ``sigs.k8s.io/yaml`` (go-yaml), which
refuses alias expansion past a budget ("excessive aliasing") and JSON with ``encoding/json``,
which caps nesting at 10 000 levels; a bad file is then one error line. Python's readers need
the same guards added: PyYAML expands aliases on demand (a 600-byte "billion laughs" document
becomes gigabytes once anything walks it, e.g. ``json.dumps``), its composer and ``json.loads``
recurse once per nesting level (a deep document is a ``RecursionError``), and ``open().read()``
raises ``UnicodeDecodeError`` on UTF-16 or binary files.

Every entry point here raises :class:`InputError` — one line naming the file, the line when
known, and what is wrong — so the CLI (``validate``, ``inject``, ``convert``), the trace loader
and the webhooks answer bad input cleanly, and nothing is applied from it.

Bounds, stated:

* ``MAX_INPUT_BYTES`` (128 MiB): a file or body larger than this is refused before it is read;
* ``MAX_DEPTH`` (100): mappings and lists nested deeper (Kubernetes objects nest < 30);
* ``MAX_YAML_NODES`` (1 000 000): YAML nodes of one document *after* alias expansion, counted
  on the composed graph (each shared node once per reference) before any Python object is built;
* no NUL bytes, strict UTF-8 (a UTF-8 byte-order mark is dropped; UTF-16/32 are named).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import yaml

MAX_INPUT_BYTES = 128 << 20
MAX_DEPTH = 100
MAX_YAML_NODES = 1_000_000

_BOMS = {b"\xff\xfe\x00\x00": "UTF-32", b"\x00\x00\xfe\xff": "UTF-32", b"\xff\xfe": "UTF-16",
         b"\xfe\xff": "UTF-16"}


class InputError(ValueError):
    """Input that cannot be read; ``str()`` is one line: ``path[:line]: message``."""

    def __init__(self, path: str, message: str, line: int | None = None):
        self.path, self.line, self.message = path, line, message
        super().__init__(f"{path}:{line}: {message}" if line else f"{path}: {message}")


def read_bytes(path: str | Path, limit: int = MAX_INPUT_BYTES) -> bytes:
    """A file's bytes (``-`` = stdin), refusing more than ``limit``."""
    import sys

    name = str(path)
    try:
        if name == "-":
            data = sys.stdin.buffer.read(limit + 1)
        else:
            with open(name, "rb") as f:
                data = f.read(limit + 1)
    except OSError as err:
        raise InputError(name, f"cannot read: {err.strerror}") from err
    if len(data) > limit:
        raise InputError(name, f"larger than {limit >> 20} MiB: refused")
    return data


def decode_text(data: bytes, path: str) -> str:
    """Strict UTF-8 text without NUL bytes, or an InputError naming the line."""
    for bom, encoding in _BOMS.items():
        if data.startswith(bom):
            raise InputError(path, f"{encoding}-encoded; save it as UTF-8", 1)
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    nul = data.find(b"\x00")
    if nul >= 0:
        raise InputError(path, "binary data (a NUL byte): not a text file", data.count(b"\n", 0, nul) + 1)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InputError(path, f"not valid UTF-8 (byte 0x{data[err.start]:02x} at offset {err.start})",
                         data.count(b"\n", 0, err.start) + 1) from None


def read_text(path: str | Path, limit: int = MAX_INPUT_BYTES) -> str:
    """``read_bytes`` then ``decode_text``."""
    return decode_text(read_bytes(path, limit), str(path))


def check_depth(value: object, path: str, line: int | None = None, limit: int = MAX_DEPTH) -> None:
    """Refuse a decoded value nested deeper than ``limit`` (iteratively: no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            raise InputError(path, f"nested more than {limit} levels deep: refused", line)
        stack.extend((child, depth + 1) for child in children)


def parse_json(text: str | bytes, path: str = "<body>", line: int | None = None) -> object:
    """``json.loads`` with the depth bound; any failure is an InputError."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise InputError(path, f"nested more than {MAX_DEPTH} levels deep: refused", line) from None
    except UnicodeDecodeError as err:
        raise InputError(path, f"not valid UTF-8 (offset {err.start})", line) from None
    except json.JSONDecodeError as err:
        raise InputError(path, f"not valid JSON ({err.msg} at column {err.colno})", line or err.lineno) from None
    check_depth(value, path, line)
    return value


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing over-deep documents while composing and alias bombs
    after composing (before any Python object exists)."""

    def __init__(self, stream, path: str):
        super().__init__(stream)
        self._path = path
        self._depth = 0

    def compose_node(self, parent, index):
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise InputError(self._path, f"nested more than {MAX_DEPTH} levels deep: refused", mark.line + 1)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def expanded_size(node: yaml.Node) -> int:
    """Nodes of ``node`` with every alias expanded, counted over the shared graph (each distinct
    node once, memoized), so even an exponential bomb is measured in linear time."""
    sizes: dict[int, int] = {}
    order, stack = [], [node]
    while stack:  # post-order without recursion
        n = stack.pop()
        if id(n) in sizes:
            continue
        sizes[id(n)] = -1  # visiting
        order.append(n)
        if isinstance(n, yaml.SequenceNode):
            stack.extend(n.value)
        elif isinstance(n, yaml.MappingNode):
            stack.extend(x for pair in n.value for x in pair)
    for n in reversed(order):
        if isinstance(n, yaml.SequenceNode):
            children = n.value
        elif isinstance(n, yaml.MappingNode):
            children = [x for pair in n.value for x in pair]
        else:
            children = []
        sizes[id(n)] = 1 + sum(max(sizes[id(c)], 1) for c in children)
    return sizes[id(node)]


def yaml_documents(text: str, path: str) -> Iterator[tuple[int, object]]:
    """Each non-empty YAML document of ``text`` as (1-based start line, value); InputError on
    bad YAML, over-deep nesting or too many nodes after alias expansion."""
    loader = None
    try:
        loader = _BoundedLoader(text, path)  # the reader checks the characters here already
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            line = node.start_mark.line + 1
            if expanded_size(node) > MAX_YAML_NODES:
                raise InputError(path, f"more than {MAX_YAML_NODES} nodes once its aliases are expanded "
                                       f"(an alias bomb?): refused", line)
            value = loader.construct_document(node)
            if value is not None:
                yield line, value
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise InputError(path, f"invalid YAML: {problem}", mark.line + 1 if mark else None) from None
    except RecursionError:
        raise InputError(path, f"nested more than {MAX_DEPTH} levels deep: refused") from None
    finally:
        if loader is not None:
            loader.dispose()


def load_yaml(text: str, path: str) -> object:
    """The single YAML document of ``text`` (None if empty), with ``yaml_documents``' bounds."""
    docs = list(yaml_documents(text, path))
    if len(docs) > 1:
        raise InputError(path, f"expected one YAML document, found {len(docs)}", docs[1][0])
    return docs[0][1] if docs else None
