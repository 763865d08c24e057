"""Reading multi-document YAML input files for ``convert`` and ``validate``.

Everything is read and checked before anything is printed, so a malformed document (bad YAML,
not a mapping, no ``kind``) stops the command with an error naming the file, the document's
index (1-based, counting non-empty documents) and line, and the field — and no partial output.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import yaml

from mesh.cli import UsageError


@dataclass(frozen=True)
class Document:
    index: int  # 1-based, among the non-empty documents of the file
    line: int  # 1-based line where the document starts
    obj: dict

    @property
    def label(self) -> str:
        meta = self.obj.get("metadata") if isinstance(self.obj.get("metadata"), dict) else {}
        where = f"{meta['namespace']}/{meta.get('name', '')}" if meta.get("namespace") else meta.get("name", "")
        return f"{self.obj.get('kind')} {where}"


def read_text(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as err:
        raise UsageError(f"{path}: cannot read: {err.strerror}") from err


def load_documents(path: str, require_name: bool = True) -> list[Document]:
    """Parse every YAML document of ``path`` (``-`` = stdin); raise UsageError on the first defect.

    Each document must be a mapping with ``apiVersion``, ``kind`` and (unless ``require_name`` is
    false: a ``v1 List`` has no name) ``metadata.name``.
    """
    text = read_text(path)
    docs: list[Document] = []
    loader = yaml.SafeLoader(text)
    try:
        index = 0
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            line = node.start_mark.line + 1
            obj = loader.construct_document(node)
            if obj is None:
                continue
            index += 1
            where = f"{path}: document {index} (line {line})"
            if not isinstance(obj, dict):
                raise UsageError(f"{where}: expected a mapping (a Kubernetes object), got {type(obj).__name__}")
            for field in ("apiVersion", "kind"):
                value = obj.get(field)
                if not isinstance(value, str) or not value:
                    raise UsageError(f"{where}: missing or empty field {field!r}")
            meta = obj.get("metadata")
            if require_name and not isinstance(meta, dict):
                raise UsageError(f"{where}: missing field 'metadata' (a mapping with a name)")
            if require_name and (not isinstance(meta.get("name"), str) or not meta["name"]):
                raise UsageError(f"{where}: missing or empty field 'metadata.name'")
            docs.append(Document(index, line, obj))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        raise UsageError(f"{path}: document {len(docs) + 1}:{at}: invalid YAML: {problem}") from err
    finally:
        loader.dispose()
    return docs


def dump_documents(objects: list[dict]) -> str:
    """Objects as a multi-document YAML stream, keys in the order the objects hold them."""
    return "---\n".join(yaml.safe_dump(o, sort_keys=False, default_flow_style=False) for o in objects)
