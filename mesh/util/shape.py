"""Check that decoded JSON/YAML has the types a reader expects, naming the first field that does not.

Go: none — Go decodes into typed structs, and a wrongly typed field fails the decode with
``json: cannot unmarshal string into Go struct field PodSpec.spec.containers of type
[]v1.Container``. Python code that indexes plain dicts needs the same check up front, or a
``containers: 'x'`` turns into a TypeError deep inside. A shape is a small literal:

* ``str``, ``int``, ``bool``, ``dict``, ``list`` (or a tuple of them): the value's JSON type;
* ``{"key": shape}``: a mapping whose listed keys, when present and not null, have those shapes
  (other keys are not looked at); ``Req(shape)`` marks a key that must be present;
* ``[shape]``: a list of items of that shape; ``MapOf(shape)``: a mapping of string keys to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Req:
    shape: Any


@dataclass(frozen=True)
class MapOf:
    shape: Any


_NAMES = {str: "a string", int: "an integer", bool: "a boolean", float: "a number", dict: "a mapping",
          list: "a list"}


def type_name(shape: Any) -> str:
    if isinstance(shape, tuple):
        return " or ".join(_NAMES[t] for t in shape)
    return _NAMES[shape]


def shape_problem(value: Any, shape: Any, path: str) -> str | None:
    """``"path.to.field: must be a list, got 'x'"`` for the first mismatch, or None."""
    if isinstance(shape, Req):
        shape = shape.shape
    if isinstance(shape, dict):
        if not isinstance(value, dict):
            return f"{path}: must be a mapping, got {_short(value)}"
        for key, sub in shape.items():
            if value.get(key) is None:
                if isinstance(sub, Req):
                    return f"{path}.{key}: required field is missing"
                continue
            problem = shape_problem(value[key], sub, f"{path}.{key}")
            if problem:
                return problem
        return None
    if isinstance(shape, MapOf):
        if not isinstance(value, dict):
            return f"{path}: must be a mapping, got {_short(value)}"
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{path}: keys must be strings, got {_short(key)}"
            problem = shape_problem(item, shape.shape, f"{path}[{key[:60]!r}]")
            if problem:
                return problem
        return None
    if isinstance(shape, list):
        if not isinstance(value, list):
            return f"{path}: must be a list, got {_short(value)}"
        for i, item in enumerate(value):
            problem = shape_problem(item, shape[0], f"{path}[{i}]")
            if problem:
                return problem
        return None
    types = shape if isinstance(shape, tuple) else (shape,)
    if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
        return f"{path}: must be {type_name(shape)}, got {_short(value)}"
    return None


def _short(value: Any) -> str:
    text = repr(value) if isinstance(value, str | int | float | bool) or value is None else type(value).__name__
    return text if len(text) <= 60 else text[:60] + "..."
