"""The wire format of kinebridge's bus: ``[topic, msgpack header, *raw array buffers]``.

* ``topic``: UTF-8 bytes (ZeroMQ SUB filters on its prefix).
* ``header``: a msgpack map of plain values (str, int, float, bool, None, bytes, lists, maps); the
  arrays it carries are listed under ``"_arrays"`` as ``[name, dtype.str, shape]`` in frame order.
* each array: its C-contiguous bytes, one frame each — never pickled. :func:`decode` builds the
  arrays as ``np.ndarray`` views on the received frames, so receiving copies nothing (the arrays are
  read-only views; copy one to modify it).

Both directions are on the runtime's hot path (a few µs per message). Headers are packed and unpacked
with ormsgpack (msgpack in Rust: the same bytes on the wire, about a third of msgpack-python's cost,
measured by ``python -m kinebridge.bench.codec_bench``). The fast path hands ormsgpack the header as it
is, with every non-plain type refused (tuples, numpy scalars, enums, dataclasses, datetimes, subclasses);
anything refused goes to the spelled-out conversion, which turns numpy scalars, tuples and subclasses
into plain values and names what cannot travel. Decoding takes fast paths for dtypes and array-table
entries seen before and falls back to checks that name what is wrong. Every function here is safe to
call from several threads at once.

Only plain numeric dtypes travel (bool, signed/unsigned integers, floats, complex), in the sender's
byte order as recorded in ``dtype.str``. Anything malformed raises :class:`MessageError` naming the
part that is wrong.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field

import numpy as np
import ormsgpack

__all__ = ["Message", "MessageError", "encode", "decode"]

_KINDS = frozenset("biufc")  # bool, int, uint, float, complex
ARRAYS_KEY = "_arrays"


class MessageError(ValueError):
    """A message that does not follow the wire format; the text names the offending part."""


@dataclass(slots=True)
class Message:
    """One received message. ``body``, ``stamp`` and ``derived`` are filled when it is validated
    against its topic's schema (:func:`kinebridge.runtime.bus.messages.validate`)."""

    topic: str
    header: dict
    arrays: dict = field(default_factory=dict)
    body: object = None
    stamp: object = None
    derived: list = field(default_factory=list)


_SCALARS = frozenset((type(None), bool, int, float, str, bytes))  # exact types msgpack packs as they are
_DTYPE_STR: dict = {}       # np.dtype → dtype.str for dtypes that travel (``dtype.str`` is slow to build)
_DTYPES: dict = {}          # dtype.str → np.dtype, for decoding (bounded: its keys come from the wire)
_NO_TABLE = object()
_BASES = (bool, int, float, str, bytes)
_packb = ormsgpack.packb
_unpackb = ormsgpack.unpackb   # str for str, bytes for bin; raises ValueError for anything malformed
# the fast path: exact plain types only (a refused type sends the header to _plain, which converts it or
# names what is wrong)
_STRICT = (ormsgpack.OPT_PASSTHROUGH_SUBCLASS | ormsgpack.OPT_PASSTHROUGH_TUPLE | ormsgpack.OPT_PASSTHROUGH_ENUM
           | ormsgpack.OPT_PASSTHROUGH_DATACLASS | ormsgpack.OPT_PASSTHROUGH_DATETIME
           | ormsgpack.OPT_PASSTHROUGH_UUID)


def _plain(value, where: str):
    """Header values must be msgpack-native; numpy scalars are converted, anything else refused."""
    if type(value) in _SCALARS:
        return value
    if isinstance(value, np.generic):
        return value.item()
    for base in _BASES:    # subclasses (e.g. IntEnum, a str enum) travel as their base value
        if isinstance(value, base):
            return base(value)
    if isinstance(value, (list, tuple)):
        return [v if type(v) in _SCALARS else _plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ValueError(f"header key {where}.{k!r} must be a string")
            out[k] = _plain(v, f"{where}.{k}")
        return out
    raise ValueError(f"header value {where} has type {type(value).__name__}; send plain numbers, strings, "
                     f"lists or maps (arrays go in `arrays`)")


def _array_error(name, dt) -> ValueError:
    return ValueError(f"array {name!r} has dtype {dt}; only bool, integer, float and complex arrays travel "
                      f"on the bus")


def encode(topic: str, header: dict, arrays: dict | None = None) -> list:
    """Frames of one message. Raises ValueError for a header or array that cannot travel.

    Array frames are flat byte views (``memoryview``, format ``B``) of the arrays' memory (of a C-ordered
    copy for a non-contiguous array): send them before modifying the arrays. Safe to call from several
    threads at once.
    """
    if type(header) is not dict and not isinstance(header, dict):
        raise ValueError(f"header must be a dict, got {type(header).__name__}")
    if type(topic) is not str or not topic:
        raise ValueError(f"topic must be a non-empty string, got {topic!r}")
    if ARRAYS_KEY in header:
        raise ValueError(f"header key {ARRAYS_KEY!r} is reserved for the array table")
    hdr = header.copy() if type(header) is dict else dict(header)
    frames = [topic.encode(), None]
    table = None
    if arrays:
        table = []
        for name, arr in arrays.items():
            if type(arr) is not np.ndarray:
                arr = np.asarray(arr)
            dstr = _DTYPE_STR.get(arr.dtype)
            if dstr is None:
                dt = arr.dtype
                if dt.kind not in _KINDS:
                    raise _array_error(name, dt)
                dstr = _DTYPE_STR[dt] = dt.str
            buf = arr.data
            if not buf.c_contiguous:
                arr = arr.copy(order="C")  # (np.ascontiguousarray would turn a 0-d array into 1-d)
                buf = arr.data
            table.append([name if type(name) is str else str(name), dstr, [*arr.shape]])
            try:
                frames.append(buf.cast("B"))
            except TypeError:  # memoryview will not cast a shape with a 0 in it (an empty array: no bytes)
                frames.append(memoryview(arr.reshape(-1).view(np.uint8)) if arr.size else b"")
        hdr[ARRAYS_KEY] = table
    try:
        frames[1] = _packb(hdr, option=_STRICT)
    except TypeError:   # not exact plain types: convert (numpy scalars, tuples, subclasses) or name the culprit
        hdr = _plain(header, "header")
        if table is not None:
            hdr[ARRAYS_KEY] = table
        try:
            frames[1] = _packb(hdr)
        except TypeError as exc:   # e.g. an integer beyond 64 bits
            raise ValueError(f"header cannot travel: {exc}") from None
    return frames


def _dtype(dtype_str):
    dt = np.dtype(dtype_str)          # TypeError for garbage: reported by the caller
    if dt.kind not in _KINDS:
        raise MessageError(f"has dtype {dt}, which the bus does not carry")
    if len(_DTYPES) < 256 and type(dtype_str) is str:
        _DTYPES[dtype_str] = dt
    return dt


def _buffer(frame):
    """A received frame's bytes-like object: bytes and memoryviews as they are, a zmq.Frame's buffer."""
    return frame.buffer if hasattr(frame, "buffer") else frame


def _array(topic: str, entry, buf, nbytes: int) -> np.ndarray:
    """The slow path of :func:`decode` for one array: every check spelled out, the error naming what is wrong."""
    try:
        name, dtype_str, shape = entry
        dtype = _DTYPES.get(dtype_str) if type(dtype_str) is str else None
        if dtype is None:
            dtype = _dtype(dtype_str)
        shape = [operator.index(s) for s in shape]   # ints (numpy ints too); not floats or strings
        if any(s < 0 for s in shape):
            raise ValueError("negative dimension")
    except MessageError as exc:
        raise MessageError(f"{topic!r}: array {entry[0]!r}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise MessageError(f"{topic!r}: bad array table entry {entry!r} (expected [name, dtype, shape])") from exc
    n = math.prod(shape)
    if nbytes != n * dtype.itemsize:
        raise MessageError(f"{topic!r}: array {name!r} should be {n * dtype.itemsize} bytes "
                           f"({dtype} {shape}), its frame has {nbytes}")
    return np.ndarray(shape, dtype, buf)


def decode(frames) -> Message:
    """A :class:`Message` from received frames (bytes, memoryview or zmq.Frame); arrays are zero-copy,
    read-only views of the frames."""
    nf = len(frames)
    if nf < 2:
        raise MessageError(f"a message has at least 2 frames (topic, header), got {nf}")
    topic = frames[0]
    try:
        topic = topic.decode() if type(topic) is bytes else str(_buffer(topic), "utf-8")
    except UnicodeDecodeError as exc:
        raise MessageError("topic frame is not UTF-8") from exc
    hbuf = frames[1]
    try:
        header = _unpackb(hbuf if type(hbuf) is bytes else _buffer(hbuf))
    except Exception as exc:  # ValueError for garbage (ormsgpack); anything else, to be safe
        if "ext_hook" in str(exc):
            raise MessageError(f"header of {topic!r} holds a msgpack extension type (ExtType), which the bus "
                               f"does not carry; send plain numbers, strings, lists or maps") from None
        raise MessageError(f"header of {topic!r} is not valid msgpack: {exc}") from exc
    if type(header) is not dict:
        raise MessageError(f"header of {topic!r} must be a map, got {type(header).__name__}")
    for k in header:
        if type(k) is not str:
            raise MessageError(f"header of {topic!r}: keys must be strings, got {type(k).__name__} {k!r:.40}")
    table = header.pop(ARRAYS_KEY, _NO_TABLE)
    if table is _NO_TABLE:
        if nf != 2:
            raise MessageError(f"{topic!r}: the header lists 0 arrays but {nf - 2} array frames arrived")
        return Message(topic, header, {})
    if type(table) is not list or len(table) != nf - 2:
        raise MessageError(f"{topic!r}: the header lists {len(table) if isinstance(table, list) else '?'} arrays "
                           f"but {nf - 2} array frames arrived")
    arrays = {}
    i = 2
    for entry in table:
        buf = frames[i]
        i += 1
        t = type(buf)
        if t is bytes:
            size = len(buf)
        else:   # a memoryview or a zmq.Frame: a read-only view of it, so the array is read-only too
            if t is not memoryview:
                buf = memoryview(_buffer(buf))
            if not buf.readonly:
                buf = buf.toreadonly()
            size = buf.nbytes
        # Fast path: a well-formed entry, np.ndarray checking the dimensions and that the frame is big
        # enough; anything it refuses, and a frame too big, goes to _array for the exact error.
        try:
            name, dtype_str, shape = entry
            arr = np.ndarray(shape, _DTYPES[dtype_str], buf) if type(shape) is list else None
        except Exception:
            arr = None
        if arr is None or arr.nbytes != size:
            arr = _array(topic, entry, buf, size)
            name = entry[0]
        if type(name) is not str:
            raise MessageError(f"{topic!r}: an array's name must be a string, got {type(name).__name__}")
        if name in arrays:
            raise MessageError(f"{topic!r}: two arrays are named {name!r}")
        arrays[name] = arr
    return Message(topic, header, arrays)
