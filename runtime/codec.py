"""The wire format of kinebridge's bus: ``[topic, msgpack header, *raw array buffers]``.

* ``topic``: UTF-8 bytes (ZeroMQ SUB filters on its prefix).
* ``header``: a msgpack map of plain values (str, int, float, bool, None, bytes, lists, maps); the
  arrays it carries are listed under ``"_arrays"`` as ``[name, dtype.str, shape]`` in frame order.
* each array: its C-contiguous bytes, one frame each — never pickled. :func:`decode` builds the
  arrays with ``np.frombuffer`` on the received frames, so receiving copies nothing (the arrays are
  read-only views; copy one to modify it).

Only plain numeric dtypes travel (bool, signed/unsigned integers, floats, complex), in the sender's
byte order as recorded in ``dtype.str``. Anything malformed raises :class:`MessageError` naming the
part that is wrong.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import msgpack
import numpy as np

__all__ = ["Message", "MessageError", "encode", "decode"]

_KINDS = frozenset("biufc")  # bool, int, uint, float, complex
ARRAYS_KEY = "_arrays"


class MessageError(ValueError):
    """A message that does not follow the wire format; the text names the offending part."""


@dataclass(slots=True)
class Message:
    topic: str
    header: dict
    arrays: dict = field(default_factory=dict)


_SCALARS = frozenset((type(None), bool, int, float, str, bytes))
_DTYPE_STR: dict = {}       # np.dtype → dtype.str, filled on first use (the property is slow)
_DTYPES: dict = {}          # dtype.str → np.dtype, for decoding
_local = threading.local()  # one msgpack Packer per thread (a Packer is not thread-safe)


def _packer() -> msgpack.Packer:
    p = getattr(_local, "packer", None)
    if p is None:
        p = _local.packer = msgpack.Packer(use_bin_type=True, autoreset=True)
    return p


def _plain(value, where: str):
    """Header values must be msgpack-native; numpy scalars are converted, anything else refused."""
    if type(value) in _SCALARS:
        return value
    if isinstance(value, (bool, int, float, str, bytes)):   # subclasses (e.g. IntEnum) travel as the base value
        return value
    if isinstance(value, np.generic):
        return value.item()
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


def _header(header: dict) -> dict:
    """A copy of ``header`` with every value checked; plain top-level values take the fast path."""
    out = {}
    for k, v in header.items():
        if type(k) is not str:
            raise ValueError(f"header key header.{k!r} must be a string")
        out[k] = v if type(v) in _SCALARS else _plain(v, f"header.{k}")
    return out


def encode(topic: str, header: dict, arrays: dict | None = None) -> list:
    """Frames of one message. Raises ValueError for a header or array that cannot travel."""
    if type(header) is not dict and not isinstance(header, dict):
        raise ValueError(f"header must be a dict, got {type(header).__name__}")
    if type(topic) is not str or not topic:
        raise ValueError(f"topic must be a non-empty string, got {topic!r}")
    if ARRAYS_KEY in header:
        raise ValueError(f"header key {ARRAYS_KEY!r} is reserved for the array table")
    hdr = _header(header)
    frames: list = [topic.encode()]
    if arrays:
        table = []
        bufs = []
        for name, a in arrays.items():
            arr = a if type(a) is np.ndarray else np.asarray(a)
            dt = arr.dtype
            dstr = _DTYPE_STR.get(dt)
            if dstr is None:
                if dt.kind not in _KINDS:
                    raise ValueError(f"array {name!r} has dtype {dt}; only bool, integer, float and complex "
                                     f"arrays travel on the bus")
                dstr = _DTYPE_STR[dt] = dt.str
            if not arr.flags.c_contiguous:
                arr = arr.copy(order="C")  # (np.ascontiguousarray would turn a 0-d array into 1-d)
            table.append([name if type(name) is str else str(name), dstr, list(arr.shape)])
            bufs.append(arr.data if arr.size else b"")
        hdr[ARRAYS_KEY] = table
        frames.append(_packer().pack(hdr))
        frames.extend(bufs)
    else:
        frames.append(_packer().pack(hdr))
    return frames


def _dtype(dtype_str):
    dt = _DTYPES.get(dtype_str)
    if dt is None:
        dt = np.dtype(dtype_str)          # TypeError for garbage: reported by the caller
        if dt.kind not in _KINDS:
            raise MessageError(f"has dtype {dt}, which the bus does not carry")
        if len(_DTYPES) < 256:
            _DTYPES[dtype_str] = dt
    return dt


def decode(frames) -> Message:
    """A :class:`Message` from received frames (bytes, memoryview or zmq.Frame); arrays are zero-copy views."""
    if len(frames) < 2:
        raise MessageError(f"a message has at least 2 frames (topic, header), got {len(frames)}")
    raw = [f.buffer if hasattr(f, "buffer") else f for f in frames]
    try:
        topic = str(raw[0], "utf-8") if type(raw[0]) is bytes else bytes(raw[0]).decode()
    except UnicodeDecodeError as exc:
        raise MessageError("topic frame is not UTF-8") from exc
    try:
        header = msgpack.unpackb(raw[1], raw=False)
    except Exception as exc:  # msgpack raises several types for garbage
        raise MessageError(f"header of {topic!r} is not valid msgpack: {exc}") from exc
    if type(header) is not dict:
        raise MessageError(f"header of {topic!r} must be a map, got {type(header).__name__}")
    table = header.pop(ARRAYS_KEY, None)
    if table is None:
        if len(raw) != 2:
            raise MessageError(f"{topic!r}: the header lists 0 arrays but {len(raw) - 2} array frames arrived")
        return Message(topic, header, {})
    if type(table) is not list or len(table) != len(raw) - 2:
        raise MessageError(f"{topic!r}: the header lists {len(table) if isinstance(table, list) else '?'} arrays "
                           f"but {len(raw) - 2} array frames arrived")
    arrays = {}
    for i, entry in enumerate(table):
        buf = raw[i + 2]
        try:
            name, dtype_str, shape = entry
            dtype = _dtype(dtype_str)
            n = 1
            for s in shape:
                if type(s) is not int:
                    s = int(s)
                if s < 0:
                    raise ValueError
                n *= s
        except MessageError as exc:
            raise MessageError(f"{topic!r}: array {entry[0]!r}: {exc}") from None
        except (TypeError, ValueError) as exc:
            raise MessageError(f"{topic!r}: bad array table entry {entry!r} (expected [name, dtype, shape])") from exc
        nbytes = len(buf) if type(buf) is bytes else memoryview(buf).nbytes
        if nbytes != n * dtype.itemsize:
            raise MessageError(f"{topic!r}: array {name!r} should be {n * dtype.itemsize} bytes "
                               f"({dtype} {list(shape)}), its frame has {nbytes}")
        arrays[name] = np.frombuffer(buf, dtype=dtype, count=n).reshape(shape)
    return Message(topic, header, arrays)
