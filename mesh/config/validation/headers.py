"""Header checks: the names a route may add, set or remove (``ValidateHTTPHeader*OperationName``,
https://github.com/istio/istio/blob/1.19.0/pkg/config/validation/validation.go#L329-L374), and
values: ``ValidateHTTPHeaderValue``
(https://github.com/istio/istio/blob/1.19.0/pkg/config/validation/validation.go#L376-L395) and the
port of Envoy's header formatter parser it runs
(https://github.com/istio/istio/blob/1.19.0/pkg/config/validation/header_value_validator.go#L34-L158).

A header value may hold ``%VARIABLE%`` and ``%VARIABLE(["arg", ...])%`` expressions that Envoy
expands; ``%%`` is a literal percent sign. The parser is a small state machine over the value's
bytes; the only question asked of it is whether it ends outside an expression without an error.
"""

from __future__ import annotations

import re

from mesh.config.validation.report import Report, quote

_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")

LITERAL, VARIABLE, EXPECT_ARRAY, EXPECT_STRING, STRING, EXPECT_DELIMITER, EXPECT_ARGS_END, EXPECT_VAR_END = range(8)


def header_value_error(value: str) -> str | None:
    """ValidateHTTPHeaderValue: no control characters, and well-formed ``%...%`` expressions."""
    if _CONTROL.search(value):
        return f"header value configuration {value} is invalid"
    err = _formatter_error(value)
    return f"header value configuration: {err}" if err else None


def _formatter_error(value: str) -> str | None:  # noqa: C901 - one state machine, as in Go and Envoy
    state, pos = LITERAL, 0
    while pos < len(value):
        ch, has_next = value[pos], pos + 1 < len(value)
        if state == LITERAL:
            if ch == "%":
                if not has_next:
                    return "invalid header configuration. Un-escaped %"
                if value[pos + 1] == "%":
                    pos += 1  # an escaped %
                else:
                    state = VARIABLE
        elif state == VARIABLE:
            if ch == "%":
                state = LITERAL
            elif ch == "(":
                state = EXPECT_ARRAY
        elif state == EXPECT_ARRAY:
            if ch == "[":
                state = EXPECT_STRING
            elif ch != " ":
                state = STRING
        elif state == EXPECT_DELIMITER:
            if ch == ",":
                state = EXPECT_STRING
            elif ch == "]":
                state = EXPECT_ARGS_END
            elif ch != " ":
                return "invalid header configuration. Expecting ',', ']', or whitespace"
        elif state == EXPECT_STRING:
            if ch == '"':
                state = STRING
            elif ch != " ":
                return "invalid header configuration. Expecting '\"'"
        elif state == STRING:
            if ch == "\\":
                if not has_next:
                    return "invalid header configuration. Un-terminated backslash in JSON string"
                pos += 1
            elif ch == ")":
                state = EXPECT_VAR_END
            elif ch == '"':
                state = EXPECT_DELIMITER
        elif state == EXPECT_ARGS_END:
            if ch == ")":
                state = EXPECT_VAR_END
            elif ch != " ":
                return "invalid header configuration. Expecting ')' or whitespace after '{}', but found '{}'"
        elif state == EXPECT_VAR_END:
            if ch == "%":
                state = LITERAL
            elif ch != " ":
                return "invalid header configuration. Expecting '%' or whitespace after"
        pos += 1
    if state != LITERAL:
        return f"invalid header configuration. Un-terminated variable expression '{value}'"
    return None


def header_name_error(name: str, op: str) -> str | None:
    """ValidateHTTPHeader*OperationName: no empty names, no pseudo-headers, Host only where allowed."""
    if name == "":
        return "header name cannot be empty"
    internal = name.startswith(":") or name.lower() == "host"
    if op == "set-request":  # request add/set may target the authority
        if internal and name.lower() not in (":authority", "host"):
            return f'invalid header {quote(name)}: header cannot have ":" prefix'
        return None
    if op == "set-destination-request":
        if internal and name.lower() != "host":
            return f'invalid header {quote(name)}: header cannot have ":" prefix'
        return None
    if name.lower() == "host":
        return f'invalid header {quote(name)}: cannot set Host header'
    if internal:
        return f'invalid header {quote(name)}: header cannot have ":" prefix'
    return None


def validate_header_operations(r: Report, path: str, headers, destination: bool = False) -> None:
    headers = r.dict(path, headers)
    for side in ("request", "response"):
        ops = r.dict(f"{path}.{side}", headers.get(side))
        for op in ("add", "set"):
            for name, value in r.dict(f"{path}.{side}.{op}", ops.get(op)).items():
                kind = ("set-destination-request" if destination else "set-request") if side == "request" else "other"
                r.error(f"{path}.{side}.{op}.{name}", header_name_error(name, kind))
                if isinstance(value, str):
                    r.error(f"{path}.{side}.{op}.{name}", header_value_error(value))
        for i, name in enumerate(r.list(f"{path}.{side}.remove", ops.get("remove"))):
            r.error(f"{path}.{side}.remove[{i}]", header_name_error(name, "other"))
