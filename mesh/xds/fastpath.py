"""Fast paths: what it takes to serve thousands of sidecars from Python, in one place.

The readable path is: generators build dicts, ``resources.to_bytes`` turns each into Envoy's
binary form, ADS sends a DiscoveryResponse. Done naively that is far too slow — betterproto2 is
pure Python, some 300 times slower per message than the C protobuf istiod uses — so mesh takes
these shortcuts (bench/bench_push.py measures them):

1. **Serialize each distinct resource once** — ``XdsCache`` (cache.py), keyed by content;
   route configurations are cached per virtual host and spliced (cache.py's docstring).
2. **Build once per push, share across proxies** — ``PushContext.memo``: outbound clusters,
   endpoint sets and routes are alike for many sidecars.
3. **Share whole responses** — ADS (ads.py ``_send``) gives proxies that get the very same
   resources one assembled message and one nonce, found by the resource list's identity
   (``PushContext.memo_by_identity``: generators hand alike proxies the very same list — CDS
   builds even the inbound clusters once per alike set of instances) before its contents'.
4. **Write responses from cached bytes** — below: a DiscoveryResponse is assembled from
   pre-encoded ``Any`` entries, never re-encoded.
5. **Read requests with the C parser** — below: ACKs are recognised without betterproto2.
6. **Skip Python-side re-validation while serializing** — below: Envoy validates anyway (and
   betterproto2's per-field warnings guard, for the same bytes at two thirds of the cost).
7. **Bound writes in flight** — ADS's semaphore keeps a push to thousands of streams from
   buffering every response at once.
8. **Collect garbage less often** — below: a push allocates in bursts (thousands of requests,
   responses, coroutine frames), and CPython's default of a young collection every 700
   allocations spent a tenth of a full push's CPU walking objects that were about to die anyway;
   and what the server loaded at start is frozen out of the collector's walks.

The wire format makes 4 and 5 simple. A protobuf message is a sequence of fields, each a tag
``(field number << 3 | wire type)`` followed by its value; strings, bytes and nested messages are
length-delimited (wire type 2): a varint length, then the bytes. So a nested message is just a
byte string, and a response can be concatenated from parts:

* ``DiscoveryResponse``: ``version_info`` = field 1, ``resources`` = field 2 (repeated ``Any``),
  ``type_url`` = field 4, ``nonce`` = field 5;
* ``google.protobuf.Any``: ``type_url`` = field 1, ``value`` = field 2.

istiod marshals a ``DiscoveryResponse`` whose resources are already ``Any`` bytes
(https://github.com/istio/istio/blob/1.19.0/pilot/pkg/xds/xdsgen.go#L147-L170); mesh does the
same by hand.

Reading goes the same way in reverse. Envoy's requests are small except for EDS, whose
``resource_names`` list every cluster (tens of kilobytes in a big mesh); betterproto2 takes
milliseconds to parse one, which across thousands of ACKs is seconds (a hand-written decoder in
Python still took 2.5 ms). ``decode_discovery_request`` hands the bytes to the C protobuf runtime
with a look-alike message declaring only what ADS needs: ``version_info`` (1), ``node`` (2, kept
as bytes and read by ``decode_node`` on a stream's first message: its ``id`` (1) and its ``metadata``
(3)), ``resource_names`` (3),
``type_url`` (4), ``response_nonce`` (5) and ``error_detail`` (6, a ``google.rpc.Status``:
code 1, message 2). Fields it does not declare are skipped by the parser.

The field numbers are those of ``envoy/service/discovery/v3/discovery.proto``; tests check the
results against the betterproto2 parser.
"""

from __future__ import annotations

import contextlib
import gc
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import betterproto2


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """One length-delimited field: tag (number << 3 | wire type 2), length, bytes."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def length_delimited_field(number: int, payload: bytes) -> bytes:
    return _field(number, payload)


def encode_resource_entry(type_url: str, value: bytes) -> bytes:
    """One serialized resource as a ``resources`` entry: field 2 holding an ``Any``. Computed once
    per resource and reused in every response that carries it."""
    return _field(2, _field(1, type_url.encode()) + _field(2, value))


def assemble_discovery_response(version: str, type_url: str, nonce: str, entries: list[bytes]) -> bytes:
    """A whole DiscoveryResponse from entries made by ``encode_resource_entry``."""
    head = _field(1, version.encode()) if version else b""
    return b"".join((head, *entries, _field(4, type_url.encode()), _field(5, nonce.encode())))


def encode_discovery_response(version: str, type_url: str, nonce: str, resources: list[bytes]) -> bytes:
    """The same from serialized resource messages of ``type_url`` (not yet wrapped in Any)."""
    return assemble_discovery_response(version, type_url, nonce,
                                       [encode_resource_entry(type_url, r) for r in resources])


@dataclass
class RequestFields:
    """The parts of a DiscoveryRequest that ADS uses."""

    version_info: str = ""
    node: bytes | None = None  # the serialized core.v3.Node, parsed by the caller when needed
    resource_names: Sequence[str] = field(default_factory=list)
    type_url: str = ""
    response_nonce: str = ""
    error_code: int = 0
    error_message: str = ""


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(data: bytes):
    """Yield (field number, wire type, value) for each field of one message."""
    pos, end = 0, len(data)
    while pos < end:
        tag, pos = _read_varint(data, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _read_varint(data, pos)
        elif wire == 2:
            length, pos = _read_varint(data, pos)
            value, pos = data[pos:pos + length], pos + length
        elif wire == 1:
            value, pos = data[pos:pos + 8], pos + 8
        elif wire == 5:
            value, pos = data[pos:pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire} for field {number}")
        yield number, wire, value


def _lite_request_class():
    """Look-alikes of ``DiscoveryRequest`` (and ``DeltaDiscoveryRequest``) declaring only the fields ADS reads, for the C protobuf
    runtime (upb) to parse. ``node`` is declared as plain bytes — a nested message is
    length-delimited bytes on the wire — so it is kept undecoded until someone asks."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    f = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(name="mesh_xds_lite.proto", package="mesh.xds.lite", syntax="proto3")
    status = file.message_type.add(name="StatusLite")
    status.field.add(name="code", number=1, type=f.TYPE_INT32, label=f.LABEL_OPTIONAL)
    status.field.add(name="message", number=2, type=f.TYPE_STRING, label=f.LABEL_OPTIONAL)
    req = file.message_type.add(name="DiscoveryRequestLite")
    for name, number, kind, label in (("version_info", 1, f.TYPE_STRING, f.LABEL_OPTIONAL),
                                      ("node", 2, f.TYPE_BYTES, f.LABEL_OPTIONAL),
                                      ("resource_names", 3, f.TYPE_STRING, f.LABEL_REPEATED),
                                      ("type_url", 4, f.TYPE_STRING, f.LABEL_OPTIONAL),
                                      ("response_nonce", 5, f.TYPE_STRING, f.LABEL_OPTIONAL)):
        req.field.add(name=name, number=number, type=kind, label=label)
    req.field.add(name="error_detail", number=6, type=f.TYPE_MESSAGE, label=f.LABEL_OPTIONAL,
                  type_name=".mesh.xds.lite.StatusLite")
    node = file.message_type.add(name="NodeLite")  # core.v3.Node: id (1); metadata (3), a Struct, as bytes
    node.field.add(name="id", number=1, type=f.TYPE_STRING, label=f.LABEL_OPTIONAL)
    node.field.add(name="metadata", number=3, type=f.TYPE_BYTES, label=f.LABEL_OPTIONAL)
    # DeltaDiscoveryRequest's look-alike (mesh.xds.delta reads it), sharing StatusLite.
    delta = file.message_type.add(name="DeltaRequestLite")
    entry = delta.nested_type.add(name="InitialResourceVersionsEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=f.TYPE_STRING, label=f.LABEL_OPTIONAL)
    entry.field.add(name="value", number=2, type=f.TYPE_STRING, label=f.LABEL_OPTIONAL)
    for name, number, kind, label in (("node", 1, f.TYPE_BYTES, f.LABEL_OPTIONAL),
                                      ("type_url", 2, f.TYPE_STRING, f.LABEL_OPTIONAL),
                                      ("resource_names_subscribe", 3, f.TYPE_STRING, f.LABEL_REPEATED),
                                      ("resource_names_unsubscribe", 4, f.TYPE_STRING, f.LABEL_REPEATED),
                                      ("response_nonce", 6, f.TYPE_STRING, f.LABEL_OPTIONAL)):
        delta.field.add(name=name, number=number, type=kind, label=label)
    delta.field.add(name="initial_resource_versions", number=5, type=f.TYPE_MESSAGE, label=f.LABEL_REPEATED,
                    type_name=".mesh.xds.lite.DeltaRequestLite.InitialResourceVersionsEntry")
    delta.field.add(name="error_detail", number=7, type=f.TYPE_MESSAGE, label=f.LABEL_OPTIONAL,
                    type_name=".mesh.xds.lite.StatusLite")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return tuple(message_factory.GetMessageClass(pool.FindMessageTypeByName(f"mesh.xds.lite.{name}"))
                 for name in ("DiscoveryRequestLite", "NodeLite", "DeltaRequestLite"))


_LiteRequest, _LiteNode, LiteDeltaRequest = _lite_request_class()


def decode_discovery_request(data: bytes) -> RequestFields:
    msg = _LiteRequest.FromString(data)
    return RequestFields(
        version_info=msg.version_info,
        node=msg.node or None,
        # Left in the C parser's memory (a list-like container that compares equal to a list) and
        # turned into Python strings only when ADS compares them: a push to thousands of proxies
        # queues thousands of EDS ACKs at once, and a thousand names cost 2-3 times as much as
        # Python objects.
        resource_names=msg.resource_names,
        type_url=msg.type_url, response_nonce=msg.response_nonce,
        error_code=msg.error_detail.code, error_message=msg.error_detail.message,
    )


def decode_node(data: bytes) -> tuple[str, dict]:
    """``node.id`` and ``node.metadata`` (a ``google.protobuf.Struct``, as plain JSON values) of a
    stream's first request. betterproto2 took about a millisecond per node, most of it building
    validators; in a connect storm of thousands of proxies that alone was seconds."""
    from google.protobuf import json_format, struct_pb2

    node = _LiteNode.FromString(data)
    metadata = json_format.MessageToDict(struct_pb2.Struct.FromString(node.metadata)) if node.metadata else {}
    return node.id, metadata


# 6. Skip Python-side re-validation. envoy-data-plane's messages are pydantic dataclasses, and
# betterproto2 re-validates every message (each nested one too, with a freshly built pydantic validator) both in
# ``from_dict`` and in ``bytes()``: about 90% of the cost of serializing a cluster. mesh's
# resources come from its own builders, and Envoy checks every field rule anyway (a bad value
# comes back as a NACK), so ``to_bytes`` turns that Python-side check off while it runs. The
# switch is betterproto2's own test for "is this a pydantic class"; the lock keeps two threads
# from interleaving the swap. The same switch also takes betterproto2's per-field warnings guard
# out: it wraps each default value it makes (a hundred per cluster) in ``catch_warnings`` so that
# deprecated fields stay quiet, a third of what serializing a cluster cost after validation was
# off; one guard around the whole serialization does the same. The bytes are the same either way.
VALIDATE_IN_PYTHON = False
_swap_lock = threading.Lock()


def _field_default(self, field_name: str):
    return self._betterproto.default_gen[field_name]()


@contextlib.contextmanager
def without_pydantic_validation():
    if VALIDATE_IN_PYTHON:
        yield
        return
    with _swap_lock, warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # what _get_field_default did per field
        original, original_default = betterproto2.Message._is_pydantic, betterproto2.Message._get_field_default
        betterproto2.Message._is_pydantic = lambda self: False
        betterproto2.Message._get_field_default = _field_default
        try:
            yield
        finally:
            betterproto2.Message._is_pydantic = original
            betterproto2.Message._get_field_default = original_default


# 8. Collect garbage less often. CPython starts a young-generation collection every 700 net
# container allocations; a full push to 2000 proxies makes a hundred of them, plus collections of
# the older generations, each walking every live object of those generations (the connections'
# state among them) — measured at 0.25-0.5 s of a full push's 2 s of server CPU. Reference
# counting frees almost everything anyway (requests, responses and frames have no cycles), so
# the collector only needs to run rarely; istiod's analogue is Go's GOGC. Process-wide, so set
# once by the server when it starts listening, and never lowered.
GC_YOUNG_THRESHOLD = 50_000


def collect_garbage_less_often() -> None:
    young, middle, old = gc.get_threshold()
    if 0 < young < GC_YOUNG_THRESHOLD:  # 0: someone disabled automatic collection; leave it so
        gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


def freeze_what_is_loaded() -> None:
    """Once the caches have synced: what is alive then (informers' objects, the registry, the
    config store — millions of objects for a big mesh) lives as long as the server, yet every
    full collection walked all of it: one took a second in the middle of a push to 2000 proxies
    (``bench/bench_push.py --pipeline``). ``gc.freeze`` moves it to a generation the collector
    never walks; reference counting still frees any of it that is dropped later, only reference
    cycles among those objects would stay (the state loaded from a trace or an API server holds
    none that are ever dropped). Garbage is collected first, so none is frozen; ``thaw`` (when the
    server stops) gives everything back to the collector."""
    if gc.isenabled():
        gc.collect()
        gc.freeze()


def thaw() -> None:
    gc.unfreeze()
