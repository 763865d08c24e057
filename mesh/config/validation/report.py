"""What validation returns: :class:`Problem` (path, istiod's message, error or warning, stage) and
the :class:`Report` that collects problems while a validator walks a spec.

Go has no single counterpart: istiod's validators return ``(Warning, error)`` pairs joined with
go-multierror (``Warning`` and ``Validation`` in https://github.com/istio/istio/blob/1.19.0/pkg/config/validation/validation.go#L142-L197). mesh records one
:class:`Problem` per finding instead, so each names the field it is about.

The typed accessors (``r.list``, ``r.dict``, ``r.str``, ``r.int``, ``r.duration``) stand in for
istiod *decoding* the spec into its proto before validating
(https://github.com/istio/istio/blob/1.19.0/pilot/pkg/config/kube/crd/conversion.go#L93-L124): a
value of the wrong JSON type, or a duration Go's ``time.ParseDuration`` refuses, is a problem with
``stage="decode"``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    path: str  # e.g. "spec.http[0].route[1].weight"
    message: str  # istiod's wording
    severity: str = "error"  # "error" | "warning"
    stage: str = "validate"  # "decode" when istiod fails while reading the spec into its proto

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    def __str__(self) -> str:
        prefix = "warning: " if self.severity == "warning" else ""
        return f"{self.path}: {prefix}{self.message}"


class Report:
    """Collects problems while walking a spec."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def error(self, path: str, message: str | None) -> None:
        if message:
            self.problems.append(Problem(path, message))

    def warn(self, path: str, message: str | None) -> None:
        if message:
            self.problems.append(Problem(path, message, "warning"))

    def decode(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message, stage="decode"))

    # typed accessors: a wrong JSON type is a decoding failure in istiod
    def _typed(self, path: str, value, types, want: str, default):
        if value is None:
            return default
        if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
            self.decode(path, f"cannot decode {json.dumps(value)} as {want}")
            return default
        if not isinstance(value, types):
            self.decode(path, f"cannot decode {json.dumps(value)} as {want}")
            return default
        return value

    def list(self, path: str, value) -> list:
        return self._typed(path, value, list, "a list", [])

    def dict(self, path: str, value) -> dict:
        return self._typed(path, value, dict, "an object", {})

    def str(self, path: str, value) -> str:
        return self._typed(path, value, str, "a string", "")

    def int(self, path: str, value) -> int:
        return self._typed(path, value, int, "an integer", 0)

    def number(self, path: str, value) -> float:
        """A double (or a DoubleValue wrapper, which JSON writes as a bare number)."""
        return self._typed(path, value, (int, float), "a number", 0)

    def duration(self, path: str, value) -> int | None:
        """Nanoseconds, or None (absent or undecodable)."""
        if value is None:
            return None
        if not isinstance(value, str):
            self.decode(path, f"bad Duration: {json.dumps(value)} is not a string")
            return None
        nanos, err = parse_go_duration(value)
        if err:
            self.decode(path, f"bad Duration: {err}")
            return None
        return nanos


def quote(s: str) -> str:
    """Go's %q for the strings that matter here."""
    return json.dumps(s)


# --- Go time.ParseDuration -------------------------------------------------------------------

_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000, "s": 10**9, "m": 60 * 10**9,
          "h": 3600 * 10**9}
_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)([^\d.]*)")


def parse_go_duration(text: str) -> tuple[int | None, str | None]:
    """Parse like Go's ``time.ParseDuration``: ``"1h2m3.5s"``, ``"-10ms"``, ``"0"``."""
    orig, s, sign = text, text, 1
    if s[:1] in "+-" and s:
        sign, s = (-1 if s[0] == "-" else 1), s[1:]
    if s == "0":
        return 0, None
    if not s:
        return None, f"time: invalid duration {quote(orig)}"
    total, pos = 0.0, 0
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        if not m:
            return None, f"time: invalid duration {quote(orig)}"
        number, unit = m.group(1), m.group(2)
        if not unit:
            return None, f"time: missing unit in duration {quote(orig)}"
        if unit not in _UNITS:
            return None, f"time: unknown unit {quote(unit)} in duration {quote(orig)}"
        total += float(number) * _UNITS[unit]
        pos = m.end()
    return sign * int(round(total)), None


