"""Istio 1.19's own validation test cases, read from ``pkg/config/validation/validation_test.go``
(through :mod:`istio_src`, never committed) and turned into Kubernetes objects for mesh.

Each ``TestValidate<Kind>`` function there holds a table of cases: a Go proto literal
(``&networking.VirtualService{Hosts: []string{"foo.bar"}, ...}``) and Istio's verdict (valid or
not, warning or not). This module parses those Go composite literals with a small tokenizer and
recursive-descent parser and converts each proto literal to the JSON form a user would write
(protojson: camelCase names, oneof wrappers flattened, enums by name, durations as ``"1.5s"``,
wrapper types as bare values, proto3 zero values left out).

Cases whose literal uses something the converter does not understand (``anypb`` typed configs,
test-local variables, helper calls other than the few known) are reported as ``unconverted`` with
the reason, so a figure "N of M" always says how many cases were left out and why.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field

import istio_src

from mesh.config.validation import headers, primitives, trafficpolicy
from mesh.config.validation.report import parse_go_duration
from mesh.util.net import is_ip_address

TEST_FILE = "pkg/config/validation/validation_test.go"

# TestValidate<Kind> function → (apiVersion, kind): the kind-level tables, whose loop calls
# Validate<Kind>(config.Config{Meta: ..., Spec: in}).
KIND_TESTS = {
    "TestValidateGateway": ("networking.istio.io/v1beta1", "Gateway"),
    "TestValidateVirtualService": ("networking.istio.io/v1beta1", "VirtualService"),
    "TestValidateWorkloadEntry": ("networking.istio.io/v1beta1", "WorkloadEntry"),
    "TestValidateWorkloadGroup": ("networking.istio.io/v1beta1", "WorkloadGroup"),
    "TestValidateDestinationRule": ("networking.istio.io/v1beta1", "DestinationRule"),
    "TestValidateEnvoyFilter": ("networking.istio.io/v1alpha3", "EnvoyFilter"),
    "TestValidateServiceEntries": ("networking.istio.io/v1beta1", "ServiceEntry"),
    "TestValidateSidecar": ("networking.istio.io/v1beta1", "Sidecar"),
    "TestValidateAuthorizationPolicy": ("security.istio.io/v1beta1", "AuthorizationPolicy"),
    "TestValidateRequestAuthentication": ("security.istio.io/v1beta1", "RequestAuthentication"),
    "TestValidatePeerAuthentication": ("security.istio.io/v1beta1", "PeerAuthentication"),
    "TestValidateTelemetry": ("telemetry.istio.io/v1alpha1", "Telemetry"),
    "TestValidateProxyConfig": ("networking.istio.io/v1beta1", "ProxyConfig"),
    "TestValidateWasmPlugin": ("extensions.istio.io/v1alpha1", "WasmPlugin"),
}
# The name and namespace each test's loop puts in config.Meta (someName/someNamespace, or literals).
META = {"TestValidateSidecar": ("foo", "bar"), "TestValidateAuthorizationPolicy": ("name", "namespace")}
CONSTANTS = {"kb": 1024, "mb": 1024 * 1024,  # validation.go#L90-L91
             "someName": "foo", "someNamespace": "bar", "constants.DefaultAuthenticationPolicyName": "default",
             "annotation.IoIstioDryRun.Name": "istio.io/dry-run",
             "wellknown.HTTPConnectionManager": "envoy.filters.network.http_connection_manager", "true": True, "false": False, "nil": None}
NANOS = {"time.Nanosecond": 1, "time.Microsecond": 1_000, "time.Millisecond": 1_000_000, "time.Second": 10**9,
         "time.Minute": 60 * 10**9, "time.Hour": 3600 * 10**9}
WRAPPER_PACKAGES = {"wrappers", "wrapperspb", "wrappers1", "types"}


class Unsupported(Exception):
    """The literal uses Go the converter does not model."""


@dataclass
class Case:
    test: str
    name: str
    obj: dict | None  # the Kubernetes object, or None when unconverted
    valid: bool
    warning: bool
    error_text: str = ""  # the substring Istio's test expects in the error, when it names one
    unconverted: str = ""  # why obj is None
    line: int = 0
    checks_warning: bool = True  # False for field-level tables that only look at the error
    primitive: tuple | None = None  # (mesh's check, the input) for tables of one-value checks

    @property
    def id(self) -> str:
        return f"{self.test}/{self.name}"


# --- tokens ------------------------------------------------------------------------------------

_TOKEN = re.compile(r"""
    (?P<ws>\s+|//[^\n]*|/\*.*?\*/)
  | (?P<raw>`[^`]*`)
  | (?P<str>"(?:[^"\\\n]|\\.)*")
  | (?P<char>'(?:[^'\\]|\\.)')
  | (?P<num>0[xX][0-9a-fA-F]+|\d+\.\d*(?:[eE][-+]?\d+)?|\.\d+|\d+(?:[eE][-+]?\d+)?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>\.\.\.|<<|>>|[{}()\[\],:.&*+\-/=;<>!|])
""", re.S | re.X)


@dataclass
class Tok:
    kind: str
    text: str
    line: int


def tokenize(src: str) -> list[Tok]:
    out, pos, line = [], 0, 1
    while pos < len(src):
        m = _TOKEN.match(src, pos)
        if not m:
            raise Unsupported(f"cannot tokenize at line {line}: {src[pos:pos + 20]!r}")
        if m.lastgroup != "ws":
            out.append(Tok(m.lastgroup, m.group(), line))
        line += m.group().count("\n")
        pos = m.end()
    return out


# --- a Go expression tree, just enough for test tables -----------------------------------------

@dataclass
class Composite:
    type: str  # "networking.VirtualService", "[]string", "map[string]string", "" for an elided type
    elements: list = field(default_factory=list)  # (key or None, value)
    line: int = 0


@dataclass
class Call:
    func: str
    args: list


@dataclass
class Ref:
    name: str  # a (possibly qualified) identifier


@dataclass
class BinOp:
    op: str
    left: object
    right: object


class Parser:
    def __init__(self, toks: list[Tok], pos: int = 0) -> None:
        self.toks, self.pos = toks, pos

    def peek(self, offset: int = 0) -> Tok:
        return self.toks[self.pos + offset]

    def take(self, text: str | None = None) -> Tok:
        tok = self.toks[self.pos]
        if text is not None and tok.text != text:
            raise Unsupported(f"line {tok.line}: expected {text!r}, found {tok.text!r}")
        self.pos += 1
        return tok

    def type_expr(self) -> str:
        """A type: ``[]*pkg.T``, ``map[string]string``, ``pkg.T``, ``struct{...}``."""
        tok = self.peek()
        if tok.text == "[":
            self.take("[")
            self.take("]")
            return "[]" + self.type_expr()
        if tok.text == "*":
            self.take()
            return self.type_expr()
        if tok.text == "map":
            self.take()
            self.take("[")
            key = self.type_expr()
            self.take("]")
            return f"map[{key}]{self.type_expr()}"
        if tok.text == "struct":
            self.take()
            self.take("{")
            depth = 1
            while depth:
                t = self.take().text
                depth += (t == "{") - (t == "}")
            return "struct"
        name = self.take().text
        while self.peek().text == "." and self.peek(1).kind == "ident":
            self.take()
            name += "." + self.take().text
        return name

    def expr(self):
        left = self.unary()
        while self.peek().text in ("*", "+", "-", "/", "<<") and self.peek(1).text not in (",", "}"):
            op = self.take().text
            left = BinOp(op, left, self.unary())
        return left

    def unary(self):
        tok = self.peek()
        if tok.text == "&":
            self.take()
            return self.unary()
        if tok.text == "-":
            self.take()
            return BinOp("*", -1, self.unary())
        if tok.text == "(":
            self.take()
            inner = self.expr()
            self.take(")")
            return inner
        if tok.text == "{":  # an element whose type is elided
            return self.composite_body("", tok.line)
        if tok.text in ("[", "map"):
            typ = self.type_expr()
            if self.peek().text == "(":  # a conversion: []byte("...")
                self.take("(")
                arg = self.expr()
                self.take(")")
                return Call(typ, [arg])
            return self.composite_body(typ, tok.line)
        if tok.kind == "str":
            self.take()
            return json.loads(tok.text)
        if tok.kind == "raw":
            self.take()
            return tok.text[1:-1]
        if tok.kind == "num":
            self.take()
            return float(tok.text) if any(c in tok.text for c in ".eE") and not tok.text.startswith("0x") \
                else int(tok.text, 0)
        if tok.kind == "ident":
            name = self.take().text
            while self.peek().text == "." and self.peek(1).kind == "ident":
                self.take()
                name += "." + self.take().text
            if self.peek().text == "{":
                return self.composite_body(name, tok.line)
            if self.peek().text == "(":
                self.take("(")
                args = []
                while self.peek().text != ")":
                    args.append(self.expr())
                    if self.peek().text == ",":
                        self.take()
                self.take(")")
                return Call(name, args)
            return Ref(name)
        raise Unsupported(f"line {tok.line}: unexpected {tok.text!r}")

    def composite_body(self, typ: str, line: int) -> Composite:
        self.take("{")
        out = Composite(typ, [], line)
        while self.peek().text != "}":
            first = self.expr()
            if self.peek().text == ":":
                self.take()
                out.elements.append((first, self.expr()))
            else:
                out.elements.append((None, first))
            if self.peek().text == ",":
                self.take()
        self.take("}")
        return out


# --- Go value → protojson ----------------------------------------------------------------------

def json_name(go_name: str) -> str:
    """protoc-gen-go's field name back to the JSON name: ``SniHosts`` → ``sniHosts``,
    ``Consecutive_5XxErrors`` → ``consecutive5xxErrors``."""
    head, *rest = go_name.split("_")
    name = head[:1].lower() + head[1:]
    for part in rest:
        m = re.match(r"(\d+)([A-Z])(.*)", part)
        name += m.group(1) + m.group(2).lower() + m.group(3) if m else part
    return name


def enum_value(name: str) -> str | None:
    """``ClientTLSSettings_ISTIO_MUTUAL`` → ``ISTIO_MUTUAL``: the trailing segments without lower
    case letters, after a type name that has them (``ConnectionPoolSettings_HTTPSettings_UPGRADE``)."""
    parts = name.split("_")
    n = len(parts)
    while n > 1 and not any(c.islower() for c in parts[n - 1]):
        n -= 1
    if n == len(parts) or not any(c.islower() for c in parts[0]):
        return None
    return "_".join(parts[n:])


def scalar(node, consts: dict):
    if isinstance(node, (str, int, float, bool)) or node is None:
        return node
    if isinstance(node, Call):  # strings.Repeat, int64(...), durationpb.New(...)
        return convert(node, consts)
    if isinstance(node, Ref):
        if node.name in consts:
            return consts[node.name]
        if node.name in NANOS:
            return NANOS[node.name]
        value = enum_value(node.name.rpartition(".")[2])
        if "." in node.name and value:
            return value
        raise Unsupported(f"unknown identifier {node.name}")
    if isinstance(node, BinOp):
        a, b = scalar(node.left, consts), scalar(node.right, consts)
        if not isinstance(a, (int, float)) or not isinstance(b, (int, float)):
            raise Unsupported("arithmetic on non-numbers")
        if node.op == "<<":
            return a << b
        return {"*": a * b, "+": a + b, "-": a - b, "/": a / b if isinstance(a, float) else a // b}[node.op]
    raise Unsupported(f"not a scalar: {type(node).__name__}")


def go_duration(nanos: int) -> str:
    """protojson's Duration text: seconds with up to nine decimals and an ``s``."""
    sign = "-" if nanos < 0 else ""
    secs, frac = divmod(abs(nanos), 10**9)
    text = f"{secs}.{frac:09d}".rstrip("0").rstrip(".") if frac else str(secs)
    return f"{sign}{text}s"


def is_zero(value) -> bool:
    return value in (0, "", False, None) and not isinstance(value, float) or value == 0.0 and isinstance(value, float)


def convert(node, consts: dict):
    """A Go value to its protojson form."""
    if isinstance(node, Call):
        if node.func == "durationpb.New" or node.func == "types.DurationProto":
            return go_duration(int(scalar(node.args[0], consts)))
        if node.func == "strings.Repeat":
            return str(scalar(node.args[0], consts)) * int(scalar(node.args[1], consts))
        if node.func == "[]byte":  # protojson writes bytes in base64
            return base64.b64encode(str(scalar(node.args[0], consts)).encode()).decode()
        if node.func in ("time.Duration", "int32", "uint32", "int64", "uint64", "float64"):
            return scalar(node.args[0], consts)
        raise Unsupported(f"call to {node.func}")
    if not isinstance(node, Composite):
        return scalar(node, consts)
    typ = node.type
    if typ.startswith("[]"):
        return [convert(v, consts) for _, v in node.elements]
    if typ.startswith("map["):
        return {str(scalar(k, consts)): convert(v, consts) for k, v in node.elements}
    pkg, _, short = typ.rpartition(".")
    if short in ("Duration",) and pkg in ("durationpb", "types", "duration"):
        f = {k.name: scalar(v, consts) for k, v in node.elements}
        return go_duration(int(f.get("Seconds", 0)) * 10**9 + int(f.get("Nanos", 0)))
    if short.endswith("Value") and pkg in WRAPPER_PACKAGES:
        f = {k.name: convert(v, consts) for k, v in node.elements}
        return f.get("Value", 0)
    if pkg == "structpb" and short == "Struct":
        return struct_value(node, consts)
    if short in ("Any", "Value", "ListValue") and pkg in ("structpb", "anypb", "types", "_struct"):
        raise Unsupported(f"{typ} literal")
    out = {}
    for key, value in node.elements:
        if key is None or not isinstance(key, Ref):
            raise Unsupported(f"positional fields in {typ or 'an elided'} literal")
        inner = value
        # a oneof wrapper (&networking.StringMatch_Exact{Exact: "x"}) stands for its one field
        if isinstance(inner, Composite) and "_" in inner.type and len(inner.elements) == 1 \
                and isinstance(inner.elements[0][0], Ref) \
                and inner.type.endswith("_" + inner.elements[0][0].name):
            one_key, one_value = inner.elements[0]
            out[json_name(one_key.name)] = convert(one_value, consts)
            continue
        converted = convert(value, consts)
        if is_zero(converted) and not isinstance(value, Composite):
            continue  # proto3 zero values are not written
        out[json_name(key.name)] = converted
    return out


def struct_value(node: Composite, consts: dict):
    """A ``structpb.Struct`` literal (``Fields: map[string]*structpb.Value{...}``) as plain JSON."""
    fields = dict((k.name, v) for k, v in node.elements if isinstance(k, Ref)).get("Fields")
    if fields is None:
        return {}
    return {str(scalar(k, consts)): _struct_member(v, consts) for k, v in fields.elements}


def _struct_member(value: Composite, consts: dict):
    (key, kind), = value.elements  # {Kind: &structpb.Value_StringValue{StringValue: "x"}}
    (_, inner), = kind.elements
    which = kind.type.rpartition("_")[2]
    if which == "StructValue":
        return struct_value(inner, consts)
    if which == "ListValue":
        values = dict((k.name, v) for k, v in inner.elements).get("Values")
        return [_struct_member(v, consts) for _, v in (values.elements if values else [])]
    return scalar(inner, consts)


# --- the test tables ---------------------------------------------------------------------------

def _function_tokens(src_toks: list[Tok], func: str) -> int:
    for i, tok in enumerate(src_toks):
        if tok.text == "func" and src_toks[i + 1].text == func:
            return i
    raise LookupError(func)


def _struct_fields(toks: list[Tok], i: int) -> tuple[list[str], int]:
    """The field names of the ``struct {...}`` whose ``{`` is at ``i``, and the index after its ``}``."""
    depth, names = 0, []
    i += 1
    while not (toks[i].text == "}" and depth == 0):
        tok = toks[i]
        depth += (tok.text in "{[(") - (tok.text in "}])")
        if depth == 0 and tok.kind == "ident" and (not names or toks[i - 1].line != tok.line):
            names.append(tok.text)
        i += 1
    return names, i + 1


def _table(toks: list[Tok], start: int) -> tuple[list[str], list[Composite]]:
    """The first case table after ``start`` — ``[]struct{...}{...}``, or ``type T struct{...}``
    then ``[]T{...}`` — as its field names and its case literals."""
    i = start
    while True:
        if toks[i].text == "[" and toks[i + 1].text == "]" and toks[i + 2].text == "struct":
            fields, i = _struct_fields(toks, i + 3)
            break
        if toks[i].text == "type" and toks[i + 2].text == "struct":
            named, (fields, i) = toks[i + 1].text, _struct_fields(toks, i + 3)
            while not (toks[i].text == "[" and toks[i + 1].text == "]" and toks[i + 2].text == named):
                i += 1
            i += 3
            break
        i += 1
    table = Parser(toks, i).composite_body("[]struct", toks[i].line)
    return fields, [v for _, v in table.elements]


def _field_values(fields: list[str], case: Composite) -> dict:
    values = {}
    for n, (key, value) in enumerate(case.elements):
        name = key.name if isinstance(key, Ref) else fields[n]
        values[name] = value
    return values


def _verdict(values: dict, case: Case) -> None:
    """Istio's expectation from a row: ``valid`` (bool), ``out``/``error``/``err`` (the error text
    expected, "" for none; ``err`` is a bool in some tables), and a warning flag or text."""
    flag = next((k for k in ("valid", "ok", "isValid") if k in values), None)
    if flag:
        case.valid = scalar(values[flag], CONSTANTS)
    elif "expected" in values:  # an error value, or nil
        case.valid = isinstance(values["expected"], Ref) and values["expected"].name == "nil"
    else:
        text = next((values[k] for k in ("out", "error", "err", "wantErr") if k in values), None)
        text = scalar(text, CONSTANTS) if text is not None else ""
        if isinstance(text, bool):
            case.valid = not text
        else:
            case.error_text, case.valid = text, text == ""
    warn = next((values[k] for k in ("warning", "warn", "Warning") if k in values), None)
    case.checks_warning = warn is not None or case.test in KIND_TESTS
    case.warning = bool(scalar(warn, CONSTANTS)) if warn is not None else False


def _locals(toks: list[Tok], start: int) -> dict:
    """``name := <literal>`` statements before a test's table (``duration := durationpb.Duration{...}``),
    converted, so cases can refer to them (``&duration`` reads as the value)."""
    found: dict = {}
    i = start
    while not (toks[i].text == "[" and toks[i + 1].text == "]" and toks[i + 2].text == "struct"):
        if toks[i].kind == "ident" and toks[i + 1].text == ":" and toks[i + 2].text == "=" \
                and toks[i].line != toks[i - 1].line:
            parser = Parser(toks, i + 3)
            try:
                found[toks[i].text] = convert(parser.expr(), {**CONSTANTS, **found})
            except Unsupported:
                pass
        i += 1
    return found


def _rows(toks: list[Tok], test: str):
    start = _function_tokens(toks, test)
    fields, rows = _table(toks, start)
    consts = {**CONSTANTS, **_locals(toks, start)}
    for row in rows:
        values = _field_values(fields, row)
        name = values.get("name")
        name = name if isinstance(name, str) else f"line {row.line}"
        case = Case(test, name, None, True, False, line=row.line)
        _verdict(values, case)
        yield values, case, consts


def cases() -> list[Case]:
    toks = tokenize(istio_src.show(TEST_FILE))
    out: list[Case] = []
    for test, (api_version, kind) in KIND_TESTS.items():
        name, namespace = META.get(test, ("foo", "bar"))
        for values, case, consts in _rows(toks, test):
            try:
                spec_node = values["in"]
                if not isinstance(spec_node, Composite) or not spec_node.type.endswith(kind):
                    raise Unsupported(f"input is not a {kind} ({getattr(spec_node, 'type', spec_node)})")
                meta = {"name": name, "namespace": namespace}
                if "configName" in values:
                    meta["name"] = scalar(values["configName"], consts)
                if "annotations" in values and scalar_or_map(values["annotations"]):
                    meta["annotations"] = convert(values["annotations"], consts)
                case.obj = {"apiVersion": api_version, "kind": kind, "metadata": meta,
                            "spec": convert(spec_node, consts)}
            except Unsupported as err:
                case.unconverted = str(err)
            out.append(case)
    for test, (kind, field_name, wrap) in WRAPPED_TESTS.items():
        for values, case, consts in _rows(toks, test):
            try:
                node = values.get(field_name)
                if node is None or isinstance(node, Ref) and node.name == "nil":
                    raise Unsupported("nil input (the field-level function accepts nil; an object has no such field)")
                extra = {k: convert(v, consts) for k, v in values.items() if k == "outlier" and not
                         (isinstance(v, Ref) and v.name == "nil")}
                case.obj = {"apiVersion": API_VERSIONS[kind], "kind": kind,
                            "metadata": {"name": "foo", "namespace": "bar"},
                            "spec": wrap(convert(node, consts), **extra)}
            except Unsupported as err:
                case.unconverted = str(err)
            out.append(case)
    out += _export_to_cases(toks)
    for test, (field_name, check) in PRIMITIVE_TESTS.items():
        for values, case, consts in _rows(toks, test):
            try:
                case.primitive = (check, convert(values[field_name], consts))
            except (Unsupported, KeyError) as err:
                case.unconverted = f"unconverted input: {err}"
            out.append(case)
    return out


def _nanos(text: str) -> int:
    return parse_go_duration(text)[0]


def _primitive_checks() -> dict:
    """Tables of one-value checks: test → (the row's input field, mesh's check: value → error or None)."""
    return {
        "TestValidateFQDN": ("fqdn", primitives.validate_fqdn),
        "TestValidateWildcardDomain": ("in", primitives.validate_wildcard_domain),
        "TestValidatePortName": ("name", primitives.validate_port_name),
        "TestValidationIPAddress": ("addr", lambda a: None if is_ip_address(a) else f"{a} is not a valid IP"),
        "TestValidationIPSubnet": ("subnet", primitives.validate_ip_subnet),
        "TestValidateLocalities": ("localities", trafficpolicy.localities_error),
        "TestValidateHTTPHeaderValue": ("input", headers.header_value_error),
        "TestValidateDuration": ("duration", lambda d: primitives.validate_duration(_nanos(d))),
    }


def _export_to_cases(toks: list[Tok]) -> list[Case]:
    """Test_validateExportTo: the list goes into a VirtualService, a ServiceEntry
    (``isServiceEntry``) or a DestinationRule with a workload selector, in the row's namespace."""
    out = []
    for values, case, consts in _rows(toks, "Test_validateExportTo"):
        row = {k: convert(v, consts) for k, v in values.items()}
        export = {"exportTo": row["exportTo"]} if row.get("exportTo") else {}
        if row.get("isServiceEntry"):
            kind, spec = "ServiceEntry", {"hosts": ["foo.example.com"], **export}
        elif row.get("isDestinationRuleWithSelector"):
            kind, spec = "DestinationRule", {"host": "reviews", "workloadSelector": {"matchLabels": {"app": "a"}},
                                             **export}
        else:
            kind, spec = "VirtualService", {"hosts": ["foo.bar"], "http": [ROUTE], **export}
        case.obj = {"apiVersion": "networking.istio.io/v1beta1", "kind": kind,
                    "metadata": {"name": "foo", "namespace": row.get("namespace") or "default"}, "spec": spec}
        out.append(case)
    return out


PRIMITIVE_TESTS = _primitive_checks()


# Field-level tables (validateHTTPRoute, validateConnectionPool, ...): the input is set into the
# smallest object that is otherwise valid, so the object's verdict is the field's. The test →
# (kind, the row's input field, how to wrap it).
ROUTE = {"route": [{"destination": {"host": "foo.baz"}}]}
API_VERSIONS = {"DestinationRule": "networking.istio.io/v1beta1", "VirtualService": "networking.istio.io/v1beta1",
                "Gateway": "networking.istio.io/v1beta1", "Telemetry": "telemetry.istio.io/v1alpha1"}


def _dr(**policy):
    return {"host": "reviews", "trafficPolicy": policy}


def _vs(**route):
    return {"hosts": ["foo.bar"], "http": [route]}


def _gateway_server(**server):
    return {"servers": [{"hosts": ["foo.bar.com"], **server}]}


WRAPPED_TESTS = {
    "TestValidateTrafficPolicy": ("DestinationRule", "in", lambda v: {"host": "reviews", "trafficPolicy": v}),
    "TestValidateConnectionPool": ("DestinationRule", "in", lambda v: _dr(connectionPool=v)),
    "TestValidateLoadBalancer": ("DestinationRule", "in", lambda v: _dr(loadBalancer=v)),
    "TestValidateOutlierDetection": ("DestinationRule", "in", lambda v: _dr(outlierDetection=v)),
    "TestValidateTLS": ("DestinationRule", "tls", lambda v: _dr(tls=v)),
    "TestValidateLocalityLbSetting": ("DestinationRule", "in", lambda v, outlier=None: _dr(
        loadBalancer={"localityLbSetting": v}, **({"outlierDetection": outlier} if outlier is not None else {}))),
    "TestValidateHTTPRoute": ("VirtualService", "route", lambda v: {"hosts": ["foo.bar"], "http": [v]}),
    "TestValidateHTTPRetry": ("VirtualService", "in", lambda v: _vs(retries=v, **ROUTE)),
    "TestValidateHTTPRewrite": ("VirtualService", "in", lambda v: _vs(rewrite=v, **ROUTE)),
    "TestValidateUriRegexRewrite": ("VirtualService", "in", lambda v: _vs(rewrite={"uriRegexRewrite": v}, **ROUTE)),
    "TestValidateHTTPFaultInjectionAbort": ("VirtualService", "in", lambda v: _vs(fault={"abort": v}, **ROUTE)),
    "TestValidateHTTPFaultInjectionDelay": ("VirtualService", "in", lambda v: _vs(fault={"delay": v}, **ROUTE)),
    "TestValidateCORSPolicy": ("VirtualService", "in", lambda v: _vs(corsPolicy=v, **ROUTE)),
    "TestValidateHTTPRedirect": ("VirtualService", "redirect", lambda v: _vs(redirect=v)),
    "TestValidateHTTPDirectResponse": ("VirtualService", "directResponse", lambda v: _vs(directResponse=v)),
    "TestValidateRouteDestination": ("VirtualService", "routes",
                                     lambda v: {"hosts": ["foo.bar"], "tcp": [{"route": v}]}),
    "TestValidateDestination": ("VirtualService", "destination", lambda v: _vs(route=[{"destination": v}])),
    "TestValidateServer": ("Gateway", "in", lambda v: {"servers": [v]}),
    "TestValidateServerPort": ("Gateway", "in", lambda v: _gateway_server(port=v)),
    "TestValidateTlsOptions": ("Gateway", "in", lambda v: _gateway_server(
        port={"number": 443, "name": "https", "protocol": "HTTPS"}, tls=v)),
    "TestValidateTelemetryFilter": ("Telemetry", "filter", lambda v: {"accessLogging": [{"filter": v}]}),
}


def scalar_or_map(node) -> bool:
    return isinstance(node, Composite) and bool(node.elements)
