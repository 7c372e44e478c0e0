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

from dataclasses import dataclass, field

import msgpack
import numpy as np

__all__ = ["Message", "MessageError", "encode", "decode"]

_KINDS = frozenset("biufc")  # bool, int, uint, float, complex
ARRAYS_KEY = "_arrays"


class MessageError(ValueError):
    """A message that does not follow the wire format; the text names the offending part."""


@dataclass
class Message:
    topic: str
    header: dict
    arrays: dict = field(default_factory=dict)


def _plain(value, where: str):
    """Header values must be msgpack-native; numpy scalars are converted, anything else refused."""
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ValueError(f"header key {where}.{k!r} must be a string")
            out[k] = _plain(v, f"{where}.{k}")
        return out
    raise ValueError(f"header value {where} has type {type(value).__name__}; send plain numbers, strings, "
                     f"lists or maps (arrays go in `arrays`)")


def encode(topic: str, header: dict, arrays: dict | None = None) -> list:
    """Frames of one message. Raises ValueError for a header or array that cannot travel."""
    if not isinstance(header, dict):
        raise ValueError(f"header must be a dict, got {type(header).__name__}")
    if not isinstance(topic, str) or not topic:
        raise ValueError(f"topic must be a non-empty string, got {topic!r}")
    if ARRAYS_KEY in header:
        raise ValueError(f"header key {ARRAYS_KEY!r} is reserved for the array table")
    hdr = _plain(header, "header")
    frames: list = [topic.encode()]
    if arrays:
        table = []
        bufs = []
        for name, a in arrays.items():
            arr = np.asarray(a)
            if arr.dtype.kind not in _KINDS:
                raise ValueError(f"array {name!r} has dtype {arr.dtype}; only bool, integer, float and complex "
                                 f"arrays travel on the bus")
            if not arr.flags.c_contiguous:
                arr = arr.copy(order="C")  # (np.ascontiguousarray would turn a 0-d array into 1-d)
            table.append([str(name), arr.dtype.str, list(arr.shape)])
            bufs.append(memoryview(arr.reshape(-1).view(np.uint8)) if arr.size else b"")
        hdr[ARRAYS_KEY] = table
        frames.append(msgpack.packb(hdr, use_bin_type=True))
        frames.extend(bufs)
    else:
        frames.append(msgpack.packb(hdr, use_bin_type=True))
    return frames


def decode(frames) -> Message:
    """A :class:`Message` from received frames (bytes, memoryview or zmq.Frame); arrays are zero-copy views."""
    if len(frames) < 2:
        raise MessageError(f"a message has at least 2 frames (topic, header), got {len(frames)}")
    raw = [f.buffer if hasattr(f, "buffer") else f for f in frames]
    try:
        topic = bytes(raw[0]).decode()
    except UnicodeDecodeError as exc:
        raise MessageError("topic frame is not UTF-8") from exc
    try:
        header = msgpack.unpackb(raw[1], raw=False)
    except Exception as exc:  # msgpack raises several types for garbage
        raise MessageError(f"header of {topic!r} is not valid msgpack: {exc}") from exc
    if not isinstance(header, dict):
        raise MessageError(f"header of {topic!r} must be a map, got {type(header).__name__}")
    table = header.pop(ARRAYS_KEY, [])
    if not isinstance(table, list) or len(table) != len(raw) - 2:
        raise MessageError(f"{topic!r}: the header lists {len(table) if isinstance(table, list) else '?'} arrays "
                           f"but {len(raw) - 2} array frames arrived")
    arrays = {}
    for entry, buf in zip(table, raw[2:]):
        try:
            name, dtype_str, shape = entry
            dtype = np.dtype(dtype_str)
            shape = tuple(int(s) for s in shape)
        except (TypeError, ValueError) as exc:
            raise MessageError(f"{topic!r}: bad array table entry {entry!r} (expected [name, dtype, shape])") from exc
        if dtype.kind not in _KINDS:
            raise MessageError(f"{topic!r}: array {name!r} has dtype {dtype}, which the bus does not carry")
        n = int(np.prod(shape, dtype=np.int64)) if shape else 1
        nbytes = memoryview(buf).nbytes
        if any(s < 0 for s in shape) or nbytes != n * dtype.itemsize:
            raise MessageError(f"{topic!r}: array {name!r} should be {n * dtype.itemsize} bytes "
                               f"({dtype} {list(shape)}), its frame has {nbytes}")
        arrays[name] = np.frombuffer(buf, dtype=dtype, count=n).reshape(shape)
    return Message(topic, header, arrays)
