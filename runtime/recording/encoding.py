"""How a bus message is written into a recording: one flat JSON object per message, and a JSON
schema per topic from the message registry.

**Layout** (``FORMAT = "kinebridge-json-2"``): the bus header's fields at the top level, each array
under its own name as nested JSON numbers in its shape, and ``_arrays`` — the bus's own array table
(``[name, dtype.str, shape]``, as in the wire header) — so the numpy arrays come back exactly::

    {"v": 1, "seq": 812, "stamp_ns": 3311950301124, "src": "control", "t": 3311.95, "tick": 812, ...,
     "q_cmd": [-0.6695083117176692, 0.9588838670772348, ...7 numbers],
     "q": [-0.66950831171766, ...],
     "_arrays": [["q_cmd", "<f8", [7]], ["q", "<f8", [7]]]}

A plot panel (Foxglove's message path syntax) picks values directly: ``/control/state.q[0]``,
``/control/state.tick``, ``/control/timing.lateness_ns[3]``, ``/chunk.q[0][6]``. Arrays are plain
number arrays rather than named values (``q.j1``): Foxglove indexes arrays, and one layout then
serves (7,) joints, (N, 7) chunks and plans and every array to come. An (N, 7) array is N rows of 7.

Exactness: floats are written as 17-significant-digit integers with an exponent
(``12573022109339330e-17``; cheap to produce, see :func:`_float_text`) or Python's shortest repr,
both of which parse back to the same binary value; float32/float16 through float64, exactly. NaN and
±inf are the non-standard JSON tokens ``NaN``/``Infinity``/``-Infinity`` (Python reads them; a strict
JSON reader — Foxglove's ``JSON.parse`` among them — refuses such a message). An array whose NaNs
carry a payload or a sign bit, which no JSON number can express, is written as its raw bytes in
base64 (table entry ``[name, dtype, shape, "b64"]``). Complex arrays get a last axis of 2 (re, im).
Header ``bytes`` values become ``{"$bytes": base64}`` (a header map that is itself exactly
``{"$bytes": str}`` reads back as bytes). An array whose name is also a header field (possible only
for a message that breaks its topic's schema) is stored under another key, named by the table entry's
fifth element. Recordings of the previous layout (``kinebridge-json-1``: ``{"header", "arrays":
{name: {dtype, shape, data}}}``) are still read.
"""

from __future__ import annotations

import base64
import json

import numpy as np

from kinebridge.runtime.bus import messages as M

__all__ = ["FORMAT", "FORMAT_V1", "MALFORMED", "ARRAYS_KEY", "message_json", "decode_message", "topic_schema",
           "GENERIC_SCHEMA", "MALFORMED_SCHEMA"]

FORMAT = "kinebridge-json-2"
FORMAT_V1 = "kinebridge-json-1"
MALFORMED = "_malformed"
ARRAYS_KEY = "_arrays"          # the bus codec's name for the array table, never a header field

# ------------------------------------------------------------------------------------------ schemas
_TABLE_SCHEMA = {
    "type": "array", "description": "the arrays of this message, as in the bus header: [name, numpy dtype.str, "
                                    "shape] each; a 4th element 'b64': the value is the raw bytes in base64 "
                                    "(NaNs with a payload); a 5th: the key the value is stored under",
    "items": {"type": "array"}}
_STAMP_PROPS = {"v": {"type": "integer", "description": "bus schema version"},
                "seq": {"type": "integer", "description": "per-topic sequence number of the publisher"},
                "stamp_ns": {"type": "integer", "description": "CLOCK_MONOTONIC ns at publication (the sender's)"},
                "src": {"type": "string", "description": "publishing node"},
                "derived": {"type": "array", "description": "stamps of the messages this one was computed from",
                            "items": {"type": "object"}},
                "replayed": {"type": "boolean", "description": "re-published by kinebridge replay"}}


def _item_schema(kind: str) -> dict:
    if kind == "b":
        return {"type": "boolean"}
    if kind in "iu":
        return {"type": "integer"}
    if kind == "c":
        return {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2,
                "description": "[re, im]"}
    return {"type": "number"}


def _array_schema(spec: M.ArraySpec) -> dict:
    """A registry array as nested JSON arrays in its shape (a 0-d array: one value)."""
    s = _item_schema(np.dtype(spec.dtype).kind)
    for axis in range(len(spec.shape) - 1, -1, -1):
        n = spec.shape[axis]
        s = {"type": "array", "items": s}
        if n is not None:
            s["minItems"] = s["maxItems"] = n
        elif axis == 0:
            if spec.min_rows:
                s["minItems"] = spec.min_rows
            if spec.max_rows is not None:
                s["maxItems"] = spec.max_rows
    shape = "(" + ", ".join("N" if n is None else str(n) for n in spec.shape) + ("," if len(spec.shape) == 1 else "") + ")"
    return {**s, "description": f"{spec.description or 'array'}: {spec.dtype} {shape}",
            "x-dtype": spec.dtype, "x-shape": [n if n is not None else -1 for n in spec.shape]}


def topic_schema(topic: str) -> bytes:
    """The JSON schema of ``topic``'s recorded messages, from the bus's message registry: the bus stamp,
    the body's named fields and its arrays at the top level, as :func:`message_json` lays them out."""
    s = M.json_schema(topic)
    props = dict(_STAMP_PROPS)
    props.update(s.get("properties", {}))
    for name, spec in (M.body_of(topic).ARRAYS or {}).items():
        props[name] = _array_schema(spec)
    props[ARRAYS_KEY] = _TABLE_SCHEMA
    out = {"title": f"kinebridge {topic}", "description": s.get("description", ""), "type": "object",
           "properties": props, "x-publishers": s.get("x-publishers", []), "x-format": FORMAT}
    if "$defs" in s:
        out["$defs"] = s["$defs"]
    return json.dumps(out, separators=(",", ":")).encode()


GENERIC_SCHEMA = json.dumps({
    "title": "kinebridge bus message", "type": "object", "x-format": FORMAT,
    "description": "a topic the message registry does not know: the bus header's fields, each array by name "
                   "as nested numbers, the array table in _arrays",
    "properties": {**_STAMP_PROPS, ARRAYS_KEY: _TABLE_SCHEMA}, "additionalProperties": True},
    separators=(",", ":")).encode()

MALFORMED_SCHEMA = json.dumps({
    "title": "kinebridge malformed bus message", "type": "object",
    "properties": {"error": {"type": "string"},
                   "frames_b64": {"type": "array", "items": {"type": "string", "contentEncoding": "base64"}}}},
    separators=(",", ":")).encode()

# --------------------------------------------------------------------------------------------- JSON
_json_header = json.JSONEncoder(allow_nan=True, separators=(",", ":"), ensure_ascii=False,
                                default=lambda o: _bytes_default(o)).encode
_json_list = json.JSONEncoder(allow_nan=True, separators=(",", ":")).encode


def _bytes_default(o):
    if isinstance(o, (bytes, bytearray, memoryview)):
        return {"$bytes": base64.b64encode(bytes(o)).decode()}
    raise TypeError(f"header value of type {type(o).__name__} cannot be recorded")


def _unbytes(d: dict):
    if len(d) == 1 and "$bytes" in d and type(d["$bytes"]) is str:
        return base64.b64decode(d["$bytes"])
    return d


# Fast exact float text. CPython's float repr costs ~0.5 µs a number, which made a 50×7 chunk cost
# ~200 µs; instead each float x (1e-10 ≤ |x| < 1e16, or 0) is written as "De-K", D the 17-digit
# integer rint(x·10^K) computed in 80-bit long double. That product is off by at most 2^-64
# relatively, so |D·10^-K − x| < 0.5·10^-16·|x| + 2^-64·|x| < half an ulp of x: any correctly
# rounding parser (Python, JavaScript) reads back exactly x. Other values take the repr path.
_LD_EXACT = np.finfo(np.longdouble).nmant >= 63
_POW10 = np.array([np.longdouble(10) ** k for k in range(28)], dtype=np.longdouble) if _LD_EXACT else None
_EXP_SUFFIX = np.array(["e-%d" % k for k in range(28)], dtype=object)
_TEMPLATES: dict[tuple, str] = {}


def _float_parts(x: np.ndarray):
    """``(D, "e-K")`` interleaved (an object array of 2n items) for 1-d float64 ``x``, or None when the
    fast path does not apply (NaN, inf, -0.0, a magnitude outside the exact band)."""
    ax = np.abs(x)
    nz = ax != 0
    if not _LD_EXACT or not np.all((ax < 1e16) & ((ax >= 1e-10) | ~nz)) or np.any(np.signbit(x) & ~nz):
        return None
    k = 16 - np.floor(np.log10(np.where(nz, ax, 1.0))).astype(np.intp)
    xl = x.astype(np.longdouble)
    m = np.rint(xl * _POW10[k])
    short = nz & (np.abs(m) < 1e16)       # log10 rounded up at a power of ten: one digit more
    if short.any():
        k = k + short
        m = np.rint(xl * _POW10[k])
    parts = np.empty((x.size, 2), dtype=object)     # D, "e-K" interleaved: one % for the whole array
    parts[:, 0] = m.astype(np.int64)
    parts[:, 1] = _EXP_SUFFIX[k]
    return tuple(parts.ravel().tolist())


def _template(shape: tuple) -> str:
    """``%``-format of nested JSON numbers in ``shape`` (each number ``%d%s``); () = one number."""
    t = _TEMPLATES.get(shape)
    if t is None:
        t = "%d%s"
        for n in reversed(shape):
            t = "[" + ",".join([t] * n) + "]"
        if len(_TEMPLATES) < 64 and int(np.prod(shape)) <= 4096:     # chunks yes, one-off plans no
            _TEMPLATES[shape] = t
    return t


def _float_text(x: np.ndarray) -> str | None:
    """``x`` (1-d float64) as comma-separated exact JSON numbers, or None when the fast path does not apply."""
    parts = _float_parts(x)
    if parts is None:
        return None
    return _template((x.size,))[1:-1] % parts


def _canonical_nans(a: np.ndarray) -> bool:
    """Do all NaNs in ``a`` (1-d) have the bit pattern that a JSON ``NaN`` reads back as?"""
    nan = np.isnan(a)
    if not nan.any():
        return True
    ref = np.frombuffer(np.array(np.nan, dtype=a.dtype).tobytes(), np.uint8)
    return bool((a[nan].view(np.uint8).reshape(-1, a.dtype.itemsize) == ref).all())


def _array_text(a: np.ndarray) -> tuple[str, str]:
    """One array as JSON text of nested numbers in its shape, and its encoding ("" or "b64")."""
    dt = a.dtype
    kind = dt.kind
    if kind not in "fc":
        return _json_list(a.tolist()), ""
    flat = np.ascontiguousarray(a.reshape(-1))
    shape = a.shape
    if kind == "c":
        flat = flat.view(dt.str[0] + "f%d" % (dt.itemsize // 2))
        shape = shape + (2,)
    if not _canonical_nans(flat):
        return '"%s"' % base64.b64encode(a.tobytes()).decode(), "b64"
    if flat.size >= 16:
        parts = _float_parts(flat.astype(np.float64))
        if parts is not None:
            return _template(shape) % parts, ""
    return _json_list(flat.reshape(shape).tolist()), ""


_PLAIN = frozenset((str, int, float, bool, type(None), bytes))


def _check_plain(v) -> None:
    """TypeError unless ``v`` is made of what JSON (plus bytes) carries exactly: str-keyed maps, lists,
    str, int, float, bool, None, bytes. (msgpack's ExtType, a tuple, would silently become a list.)"""
    t = type(v)
    if t in _PLAIN:
        return
    if t is list:
        for x in v:
            if type(x) not in _PLAIN:
                _check_plain(x)
    elif t is dict:
        for k, x in v.items():
            if type(k) is not str:
                raise TypeError(f"header key {k!r} is not a string")
            if type(x) not in _PLAIN:
                _check_plain(x)
    elif not isinstance(v, (str, int, float)):   # subclasses (IntEnum) are written as their value
        raise TypeError(f"header value {v!r} of type {t.__name__} cannot be recorded")


def message_json(header: dict, arrays: dict) -> bytes:
    """The JSON of one recorded message (:mod:`layout <kinebridge.runtime.recording.encoding>`).
    TypeError/ValueError for a header that cannot be written."""
    if type(header) is not dict:
        raise TypeError(f"header must be a dict, got {type(header).__name__}")
    _check_plain(header)
    if ARRAYS_KEY in header:
        raise ValueError(f"header key {ARRAYS_KEY!r} is reserved for the array table")
    text = _json_header(header)
    if not arrays:
        return text.encode()
    parts = [text[:-1]]
    sep = "," if len(header) else ""
    taken = None
    table = []
    for i, (name, a) in enumerate(arrays.items()):
        name = name if type(name) is str else str(name)
        if type(a) is not np.ndarray:
            a = np.asarray(a)
        value, enc = _array_text(a)
        key = name
        if name in header or name == ARRAYS_KEY:          # a header field of that name: store it aside
            if taken is None:
                taken = set(header) | {str(n) for n in arrays} | {ARRAYS_KEY}
            key = f"_array{i}"
            while key in taken:
                key = "_" + key
            taken.add(key)
        entry = [name, a.dtype.str, list(a.shape)]
        if enc or key != name:
            entry.append(enc)
            if key != name:
                entry.append(key)
        table.append(entry)
        parts += (sep, _json_list(key), ":", value)
        sep = ","
    parts += (',"', ARRAYS_KEY, '":', _json_list(table), "}")
    return "".join(parts).encode()


def _array_from(value, dstr, shape, enc) -> np.ndarray:
    dt = np.dtype(dstr)
    shape = tuple(shape)
    if enc == "b64":
        return np.frombuffer(bytearray(base64.b64decode(value)), dtype=dt).reshape(shape)
    if enc:
        raise ValueError(f"unknown array encoding {enc!r}")
    if dt.kind == "c":
        return np.array(value, dtype=dt.str[0] + "f%d" % (dt.itemsize // 2)).reshape(-1).view(dt).reshape(shape)
    return np.array(value, dtype=dt).reshape(shape)


def decode_message(data: bytes) -> tuple[dict, dict]:
    """``(header, arrays)`` of a message written by :func:`message_json` (arrays writable, exact).
    Raises ValueError/KeyError/TypeError for anything else."""
    doc = json.loads(data, object_hook=_unbytes)
    if type(doc) is not dict:
        raise ValueError("the message is not a JSON object")
    table = doc.pop(ARRAYS_KEY, None)
    arrays = {}
    if table is not None:
        for e in table:
            name, dstr, shape = e[0], e[1], e[2]
            enc = e[3] if len(e) > 3 else ""
            arrays[name] = _array_from(doc.pop(e[4] if len(e) > 4 else name), dstr, shape, enc)
    return doc, arrays


def arrays_from_v1(spec: dict) -> dict:
    """The arrays of a ``kinebridge-json-1`` message (``{name: {dtype, shape, data | data_b64}}``)."""
    out = {}
    for name, a in spec.items():
        dt = np.dtype(a["dtype"])
        shape = tuple(a["shape"])
        if "data_b64" in a:
            arr = np.frombuffer(bytearray(base64.b64decode(a["data_b64"])), dtype=dt)
        elif dt.kind == "c":
            arr = np.array(a["data"], dtype=dt.str[0] + "f%d" % (dt.itemsize // 2)).view(dt)
        else:
            arr = np.array(a["data"], dtype=dt)
        out[name] = arr.reshape(shape)
    return out


def decode_message_v1(data: bytes) -> tuple[dict, dict]:
    doc = json.loads(data, object_hook=_unbytes)
    return doc["header"], arrays_from_v1(doc["arrays"])
