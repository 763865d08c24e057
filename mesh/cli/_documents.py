"""Reading multi-document YAML input files for ``convert`` and ``validate``.

Everything is read and checked before anything is printed, so a malformed document (bad YAML,
not a mapping, no ``kind``) stops the command with an error naming the file, the document's
index (1-based, counting non-empty documents) and line, and the field — and no partial output.
Binary, mis-encoded, over-deep and alias-bomb files are refused the same way, in bounded memory
(``mesh/util/safeinput.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import yaml

from mesh.cli import UsageError
from mesh.util import safeinput


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
    """A file's text (``-`` = stdin), refusing binary, mis-encoded and oversized input (exit 2)."""
    try:
        return safeinput.read_text(path)
    except safeinput.InputError as err:
        raise UsageError(str(err)) from err


def load_documents(path: str, require_name: bool = True) -> list[Document]:
    """Parse every YAML document of ``path`` (``-`` = stdin); raise UsageError on the first defect.

    Each document must be a mapping with ``apiVersion``, ``kind`` and (unless ``require_name`` is
    false: a ``v1 List`` has no name) ``metadata.name``. The reading is bounded
    (``mesh/util/safeinput.py``: size, nesting depth, alias expansion).
    """
    text = read_text(path)
    docs: list[Document] = []
    try:
        for line, obj in safeinput.yaml_documents(text, path):
            index = len(docs) + 1
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
            if isinstance(meta, dict) and meta.get("namespace") is not None and not isinstance(meta["namespace"], str):
                raise UsageError(f"{where}: field 'metadata.namespace' must be a string")
            docs.append(Document(index, line, obj))
    except safeinput.InputError as err:
        at = f" line {err.line}" if err.line else ""
        raise UsageError(f"{path}: document {len(docs) + 1}:{at}: {err.message}") from err
    return docs


def dump_documents(objects: list[dict]) -> str:
    """Objects as a multi-document YAML stream, keys in the order the objects hold them."""
    return "---\n".join(yaml.safe_dump(o, sort_keys=False, default_flow_style=False) for o in objects)
