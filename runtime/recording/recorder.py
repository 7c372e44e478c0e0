"""Recording the bus to MCAP, reading recordings back (also ones cut short by a crash), replaying them.

**File format.** `MCAP <https://mcap.dev>`_ (profile ``kinebridge``), written **unchunked**: every
message is one complete Message record in the data section, handed to the OS at most
``flush_every_s`` after it arrived (and on close; ``os.fsync`` only on close). A crash of any
process — the recorder included — loses at most the last ``flush_every_s`` of messages, never what
is already in the file. :func:`read_recording` reads a file that has no summary or footer and skips
a last record that was torn mid-write. A cleanly closed file carries the usual summary (statistics,
channels, schemas) and opens in Foxglove and the ``mcap`` CLI.

**Messages.** One channel per (topic, publishing node): ``channel.topic`` is the bus topic and
``channel.metadata["src"]`` the node. Each message is JSON (``message_encoding = "json"``, a
``jsonschema`` schema) so standard tools can show and plot it::

    {"header": {...the bus header, "seq", "stamp_ns", "src", "derived" included...},
     "arrays": {"q": {"dtype": "<f8", "shape": [50, 7], "data": [flat, C-order numbers]}}}

The round trip is bit-exact: floats are written as 17-significant-digit integers with an exponent
(``12573022109339330e-17``; cheap to produce, see :func:`_float_text`) or Python's shortest repr,
both of which parse back to the same binary value. NaN and ±inf are written as the non-standard JSON
tokens ``NaN``/``Infinity``/``-Infinity`` (``allow_nan``; Python and most JSON readers accept them,
strict ones may refuse such a message). An array whose NaNs carry a payload or a sign bit — which no
JSON number can express — is stored as ``"data_b64"`` (its raw bytes) instead of ``"data"``.
Complex arrays are stored as interleaved ``[re, im, ...]``. Header ``bytes`` values become
``{"$bytes": base64}`` (a header dict that is itself exactly ``{"$bytes": str}`` would read back as
bytes).

**Times.** ``log_time`` is when the recorder received the message and ``publish_time`` the sender's
``stamp_ns``; both are CLOCK_MONOTONIC nanoseconds, the clock every node on the machine shares. The
metadata record ``clock`` holds ``monotonic_ns_at_start``, ``unix_ns_at_start`` and
``wall_time_at_start`` so wall time can be recovered (wall = t − monotonic_ns_at_start + unix_ns_at_start).

**Malformed messages** (frames that do not decode, or headers that cannot be written as JSON) are
kept on the channel ``_malformed``: the error text and the raw frames in base64. Nothing received is
dropped.
"""

from __future__ import annotations

import base64
import datetime as _dt
import io
import json
import os
import socket
import struct
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zmq
from mcap.exceptions import McapError

from kinebridge.runtime.bus import messages as M
from kinebridge.runtime.bus.codec import Message, MessageError, decode

__all__ = ["McapRecorder", "RecordedMessage", "read_recording", "record", "replay", "summarize"]

MALFORMED = "_malformed"
FORMAT = "kinebridge-json-1"
_MAGIC = b"\x89MCAP0\r\n"
_RESERVED = M.RESERVED   # stamped by the bus on publish

_SCHEMA = json.dumps({
    "title": "kinebridge bus message", "type": "object", "required": ["header", "arrays"],
    "properties": {
        "header": {"type": "object", "description": "the bus header: seq, stamp_ns (CLOCK_MONOTONIC ns), src, "
                                                    "derived, and the publisher's fields"},
        "arrays": {"type": "object", "additionalProperties": {
            "type": "object", "required": ["dtype", "shape"],
            "properties": {"dtype": {"type": "string", "description": "numpy dtype.str, e.g. <f8"},
                           "shape": {"type": "array", "items": {"type": "integer"}},
                           "data": {"type": "array", "items": {"type": ["number", "boolean"]},
                                    "description": "the elements, flat in C order (complex: re, im interleaved)"},
                           "data_b64": {"type": "string", "contentEncoding": "base64",
                                        "description": "raw bytes instead of data (NaNs with a payload)"}}}}}},
    separators=(",", ":")).encode()


def _topic_schema(topic: str) -> bytes:
    """The JSON schema of ``topic``'s recorded messages, from the bus's message registry: the header
    with its named fields, the arrays it carries."""
    s = M.json_schema(topic)
    arrays = {k: s["properties"].pop(k) for k in (M.body_of(topic).ARRAYS or {})}
    out = {"title": f"kinebridge {topic}", "description": s["description"], "type": "object",
           "required": ["header", "arrays"], "x-publishers": s["x-publishers"],
           "properties": {"header": {"type": "object", "properties": s["properties"]},
                          "arrays": {"type": "object", "properties": {
                              k: {**v, "required": ["dtype", "shape"]} for k, v in arrays.items()}}}}
    if "$defs" in s:
        out["$defs"] = s["$defs"]
    return json.dumps(out, separators=(",", ":")).encode()


_MALFORMED_SCHEMA = json.dumps({
    "title": "kinebridge malformed bus message", "type": "object",
    "properties": {"error": {"type": "string"},
                   "frames_b64": {"type": "array", "items": {"type": "string", "contentEncoding": "base64"}}}},
    separators=(",", ":")).encode()

# ------------------------------------------------------------------------------------------ JSON
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
_EXP_SUFFIX = np.array(["e-%d," % k for k in range(28)], dtype=object)
_FMT_CACHE: dict[int, str] = {}


def _float_text(x: np.ndarray) -> str | None:
    """``x`` (1-d float64) as comma-separated exact JSON numbers, or None when the fast path does not apply."""
    ax = np.abs(x)
    nz = ax != 0
    if not _LD_EXACT or not np.all((ax < 1e16) & ((ax >= 1e-10) | ~nz)) or np.any(np.signbit(x) & ~nz):
        return None                       # NaN, inf, -0.0, or a magnitude outside the exact band
    k = 16 - np.floor(np.log10(np.where(nz, ax, 1.0))).astype(np.intp)
    xl = x.astype(np.longdouble)
    m = np.rint(xl * _POW10[k])
    short = nz & (np.abs(m) < 1e16)       # log10 rounded up at a power of ten: one digit more
    if short.any():
        k = k + short
        m = np.rint(xl * _POW10[k])
    n = x.size
    fmt = _FMT_CACHE.get(n)
    if fmt is None:
        fmt = "%d%s" * n
        if n <= 65536 and len(_FMT_CACHE) < 64:
            _FMT_CACHE[n] = fmt
    parts = np.empty((n, 2), dtype=object)     # D, "e-K," interleaved: one % for the whole array
    parts[:, 0] = m.astype(np.int64)
    parts[:, 1] = _EXP_SUFFIX[k]
    return (fmt % tuple(parts.ravel().tolist()))[:-1]


def _canonical_nans(a: np.ndarray) -> bool:
    """Do all NaNs in ``a`` (1-d) have the bit pattern that a JSON ``NaN`` reads back as?"""
    nan = np.isnan(a)
    if not nan.any():
        return True
    ref = np.frombuffer(np.array(np.nan, dtype=a.dtype).tobytes(), np.uint8)
    return bool((a[nan].view(np.uint8).reshape(-1, a.dtype.itemsize) == ref).all())


def _array_json(a: np.ndarray) -> str:
    """One array as ``{"dtype", "shape", "data"}`` (or ``data_b64``) JSON text."""
    dt = a.dtype
    head = '{"dtype":"%s","shape":%s,' % (dt.str, _json_list(list(a.shape)))
    flat = a.reshape(-1)
    kind = dt.kind
    if kind in "fc":
        if kind == "c":
            flat = flat.view(dt.str[0] + "f%d" % (dt.itemsize // 2))
        if not _canonical_nans(flat):
            return head + '"data_b64":"%s"}' % base64.b64encode(np.ascontiguousarray(a).tobytes()).decode()
        text = _float_text(flat.astype(np.float64)) if flat.size >= 16 else None
        if text is None:
            text = _json_list(flat.tolist())[1:-1]
        return head + '"data":[' + text + "]}"
    return head + '"data":' + _json_list(flat.tolist()) + "}"


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


def _message_json(header: dict, arrays: dict) -> bytes:
    """The JSON body of one recorded message. TypeError/ValueError for a header that cannot be written."""
    _check_plain(header)
    parts = ['{"header":', _json_header(header), ',"arrays":{']
    for i, (name, a) in enumerate(arrays.items()):
        if i:
            parts.append(",")
        parts.append(_json_list(str(name)))
        parts.append(":")
        parts.append(_array_json(a if type(a) is np.ndarray else np.asarray(a)))
    parts.append("}}")
    return "".join(parts).encode()


def _arrays_from_json(spec: dict) -> dict:
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


# ------------------------------------------------------------------------------------- recording
class McapRecorder:
    """Append bus messages to an MCAP file, unchunked, flushing at most every ``flush_every_s``.

    ``metadata``: extra string key/values stored as the MCAP metadata record ``kinebridge``.
    Counters: ``messages_written`` (malformed included), ``malformed``, ``bytes_written``.
    Not thread-safe: one thread writes. ``close()`` writes the summary and footer."""

    def __init__(self, path, *, flush_every_s: float = 0.05, metadata: dict | None = None,
                 names: M.TopicNames | None = None):
        from mcap.writer import Writer

        if flush_every_s < 0:
            raise ValueError(f"flush_every_s must be ≥ 0, got {flush_every_s}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.path, "wb")
        self._w = Writer(self._f, use_chunking=False, enable_crcs=True)
        self._w.start(profile="kinebridge", library="kinebridge recorder")
        self._schema = 0                   # the generic schema, for a topic the registry does not know
        self._schemas: dict[str, int] = {}  # topic → its schema id (registered on the topic's first message)
        self._bad_schema = 0
        self._channels: dict[tuple[str, str], int] = {}
        mono, unix = time.monotonic_ns(), time.time_ns()
        self._w.add_metadata("clock", {
            "clock": "CLOCK_MONOTONIC", "log_time": "receive time, CLOCK_MONOTONIC ns",
            "publish_time": "the sender's stamp_ns, CLOCK_MONOTONIC ns",
            "monotonic_ns_at_start": str(mono), "unix_ns_at_start": str(unix),
            "wall_time_at_start": _dt.datetime.fromtimestamp(unix / 1e9, _dt.timezone.utc).astimezone().isoformat(),
            "host": socket.gethostname(), "format": FORMAT})
        if metadata:
            self._w.add_metadata("kinebridge", {str(k): str(v) for k, v in metadata.items()})
        self.names = names or M.DEFAULT_NAMES      # wire name → registered topic (``[bus.topics]``)
        self.flush_every_s = float(flush_every_s)
        self.messages_written = 0
        self.malformed = 0
        self._dirty = False
        self._closed = False
        self._size = 0
        self._f.flush()
        self._last_flush = time.monotonic()

    # ------------------------------------------------------------------ writing
    def _channel(self, topic: str, src: str) -> int:
        cid = self._channels.get((topic, src))
        if cid is None:
            if topic == MALFORMED:
                if not self._bad_schema:
                    self._bad_schema = self._w.register_schema("kinebridge.Malformed", "jsonschema",
                                                               _MALFORMED_SCHEMA)
                schema = self._bad_schema
            elif topic in M.TOPICS:
                schema = self._schemas.get(topic)
                if schema is None:
                    schema = self._schemas[topic] = self._w.register_schema(
                        f"kinebridge.{topic}", "jsonschema", _topic_schema(topic))
            else:
                if not self._schema:
                    self._schema = self._w.register_schema("kinebridge.Message", "jsonschema", _SCHEMA)
                schema = self._schema
            cid = self._w.register_channel(topic, "json", schema, {"src": src})
            self._channels[(topic, src)] = cid
        return cid

    def _add(self, cid: int, log_time_ns: int, data: bytes, publish_time_ns: int, seq: int) -> None:
        if self._closed:
            raise ValueError(f"{self.path}: the recording is closed")
        self._w.add_message(cid, log_time=log_time_ns, data=data, publish_time=publish_time_ns, sequence=seq)
        self.messages_written += 1
        self._dirty = True
        if time.monotonic() - self._last_flush >= self.flush_every_s:
            self.flush()

    def write(self, msg: Message, log_time_ns: int) -> None:
        """Record one decoded message received at ``log_time_ns`` (CLOCK_MONOTONIC).
        Raises TypeError/ValueError for a header that cannot be written as JSON."""
        if msg.topic == MALFORMED:
            raise ValueError(f"topic {MALFORMED!r} is reserved for messages that failed to decode")
        h = msg.header
        data = _message_json(h, msg.arrays)
        stamp, seq, src = h.get("stamp_ns"), h.get("seq"), h.get("src")
        log_time_ns = int(log_time_ns)
        topic = self.names.logical(msg.topic) or msg.topic     # recorded under its registered name
        self._add(self._channel(topic, src if type(src) is str else ""), log_time_ns, data,
                  stamp if type(stamp) is int and 0 <= stamp < 1 << 64 else log_time_ns,
                  seq if type(seq) is int and 0 <= seq < 1 << 32 else 0)

    def write_frames(self, frames, log_time_ns: int) -> None:
        """Record raw received frames; what does not decode (or cannot be written) goes to ``_malformed``."""
        try:
            self.write(decode(frames), log_time_ns)
            return
        except (MessageError, TypeError, ValueError, OverflowError, RecursionError) as exc:
            if self._closed:
                raise
            error = f"{type(exc).__name__}: {exc}"
        raw = [bytes(f.buffer if hasattr(f, "buffer") else f) for f in frames]
        body = json.dumps({"error": error, "frames_b64": [base64.b64encode(b).decode() for b in raw]}).encode()
        self.malformed += 1
        self._add(self._channel(MALFORMED, ""), int(log_time_ns), body, int(log_time_ns), 0)

    # ------------------------------------------------------------------ flushing, closing
    def flush(self) -> None:
        """Hand everything written so far to the OS (it then survives a crash of this process)."""
        self._f.flush()
        self._dirty = False
        self._last_flush = time.monotonic()

    def flush_if_due(self) -> float:
        """Flush if unflushed data is older than ``flush_every_s``; returns seconds until the next is due
        (``inf`` when nothing is pending). The recording loop calls this when no message arrives."""
        if not self._dirty:
            return float("inf")
        left = self._last_flush + self.flush_every_s - time.monotonic()
        if left <= 0:
            self.flush()
            return float("inf")
        return left

    @property
    def bytes_written(self) -> int:
        """Size of the file so far (what is still buffered included)."""
        return self._size if self._closed else self._f.tell()

    def close(self) -> None:
        """Write the summary and footer, flush, fsync and close. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            self._w.finish()
            self._f.flush()
            os.fsync(self._f.fileno())
            self._size = self._f.tell()
        finally:
            self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def record(subscriber, recorder: McapRecorder, stop_event, *, on_idle=None, idle_ms: int = 100,
           drain_s: float = 0.5) -> None:
    """The recorder loop: every raw message on ``subscriber.sock`` into ``recorder`` until ``stop_event``
    is set, then what is already queued (for up to ``drain_s``). Raw frames go to
    :meth:`McapRecorder.write_frames`, so malformed messages are recorded too (``Subscriber.recv``
    would drop them). ``on_idle()`` runs at least every ``idle_ms`` (heartbeats), also under load.
    The file is always closed properly on the way out, exceptions included."""
    sock = subscriber.sock
    period = max(1, int(idle_ms)) / 1e3
    next_idle = time.monotonic()
    write, now_ns, mono, again = recorder.write_frames, time.monotonic_ns, time.monotonic, zmq.Again
    try:
        while not stop_event.is_set():
            now = mono()
            if now >= next_idle:
                if on_idle is not None:
                    on_idle()
                next_idle = now + period
            wait = min(next_idle - now, recorder.flush_if_due())
            if sock.poll(max(0, int(wait * 1e3) + 1)):
                while True:               # the queue, but back to on_idle/flush when they are due
                    try:
                        frames = sock.recv_multipart(flags=zmq.NOBLOCK, copy=False)
                    except again:
                        break
                    write(frames, now_ns())
                    if mono() >= next_idle:
                        break
            recorder.flush_if_due()
        end = mono() + drain_s
        while mono() < end:
            try:
                frames = sock.recv_multipart(flags=zmq.NOBLOCK, copy=False)
            except again:
                break
            write(frames, now_ns())
    finally:
        recorder.close()


# --------------------------------------------------------------------------------------- reading
@dataclass(slots=True)
class RecordedMessage:
    topic: str
    header: dict
    arrays: dict
    log_time_ns: int
    publish_time_ns: int


_OP_FOOTER, _OP_CHANNEL, _OP_MESSAGE, _OP_CHUNK, _OP_METADATA, _OP_DATA_END = 0x02, 0x04, 0x05, 0x06, 0x0C, 0x0F
_MSG = struct.Struct("<HIQQ")


class _Scan:
    """The records of an MCAP file in order, tolerating a file cut short: a record whose length runs
    past the end of the file is the torn last write of a crashed recorder and ends the scan.

    Iterating yields ``(opcode, record, offset)``: for a Message ``(channel_id, sequence, log_time,
    publish_time, data)``, for a Channel ``(id, topic, message_encoding, metadata)``, for Metadata
    ``(name, dict)``, else None. Chunks (files from other writers) are opened into their records.
    Afterwards ``complete`` says whether the footer was reached and ``torn_bytes`` how many bytes
    followed the last whole record."""

    def __init__(self, path):
        self.path = Path(path)
        if not self.path.is_file():
            raise ValueError(f"{self.path}: no such recording")
        with open(self.path, "rb") as f:
            head = f.read(8)
        if head != _MAGIC and not (len(head) < 8 and _MAGIC.startswith(head)):
            raise ValueError(f"{self.path}: not an MCAP file (it does not start with the MCAP magic bytes)")
        self.complete = False
        self.torn_bytes = 0

    def __iter__(self):
        with open(self.path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if f.read(8) != _MAGIC:          # a file cut short inside the magic: nothing recorded yet
                self.torn_bytes = size
                return
            pos = 8
            while True:
                prefix = f.read(9)
                if len(prefix) < 9:
                    self.torn_bytes = len(prefix)
                    return
                op, length = prefix[0], int.from_bytes(prefix[1:], "little")
                if length > size - pos - 9:
                    self.torn_bytes = size - pos
                    return
                body = f.read(length)
                if len(body) < length:       # the file shrank while being read
                    self.torn_bytes = 9 + len(body)
                    return
                try:
                    if op == _OP_MESSAGE:
                        yield op, _MSG.unpack_from(body) + (body[22:],), pos
                    elif op == _OP_CHUNK:
                        yield from self._chunk(body, pos)
                    elif op in (_OP_CHANNEL, _OP_METADATA):
                        yield op, self._parse(op, body), pos
                    else:
                        yield op, None, pos
                except (struct.error, ValueError, KeyError, McapError) as exc:
                    raise ValueError(f"{self.path}: the record at byte {pos} (opcode {op:#04x}) is corrupt "
                                     f"({type(exc).__name__}: {exc})") from exc
                if op == _OP_FOOTER:
                    self.complete = True
                    return
                pos += 9 + length

    @staticmethod
    def _parse(op, body):
        from mcap.data_stream import ReadDataStream
        from mcap.records import Channel, Metadata

        stream = ReadDataStream(io.BytesIO(body))
        if op == _OP_CHANNEL:
            c = Channel.read(stream)
            return c.id, c.topic, c.message_encoding, c.metadata
        m = Metadata.read(stream)
        return m.name, m.metadata

    @staticmethod
    def _chunk(body, pos):
        from mcap.data_stream import ReadDataStream
        from mcap.records import Channel, Chunk, Message as McapMessage
        from mcap.stream_reader import breakup_chunk

        for rec in breakup_chunk(Chunk.read(ReadDataStream(io.BytesIO(body)))):
            if isinstance(rec, McapMessage):
                yield _OP_MESSAGE, (rec.channel_id, rec.sequence, rec.log_time, rec.publish_time, rec.data), pos
            elif isinstance(rec, Channel):
                yield _OP_CHANNEL, (rec.id, rec.topic, rec.message_encoding, rec.metadata), pos


def read_recording(path, topics=None):
    """Iterate a recording's messages in file order as :class:`RecordedMessage` (arrays rebuilt as
    numpy with the recorded dtype and shape; writable).

    Works on a complete file and on one cut short by a crash (no summary or footer, a torn last
    record): it yields every complete message and stops. ``topics``: only these; ``_malformed`` is
    left out unless named (its messages have header ``{"error", "frames"}`` with the raw frames).
    Raises ValueError naming the path for a file that is not an MCAP file, is corrupt before its
    end, or holds messages that are not kinebridge JSON."""
    scan = _Scan(path)
    want = frozenset(topics) if topics is not None else None
    return _messages(scan, want)


def _messages(scan: _Scan, want):
    channels: dict[int, str | None] = {}     # id → topic, or None when filtered out
    for op, rec, pos in scan:
        if op == _OP_MESSAGE:
            cid, _seq, log_time, publish_time, data = rec
            if cid not in channels:
                raise ValueError(f"{scan.path}: the message at byte {pos} names channel {cid}, which was never defined")
            topic = channels[cid]
            if topic is None:
                continue
            try:
                doc = json.loads(data, object_hook=_unbytes)
                if topic == MALFORMED:
                    header = {"error": doc["error"], "frames": [base64.b64decode(s) for s in doc["frames_b64"]]}
                    msg = RecordedMessage(topic, header, {}, log_time, publish_time)
                else:
                    msg = RecordedMessage(topic, doc["header"], _arrays_from_json(doc["arrays"]), log_time,
                                          publish_time)
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{scan.path}: the message at byte {pos} on {topic!r} is not a kinebridge "
                                 f"JSON message ({type(exc).__name__}: {exc})") from exc
            yield msg
        elif op == _OP_CHANNEL:
            cid, topic, encoding, _meta = rec
            if (want is not None and topic not in want) or (want is None and topic == MALFORMED):
                channels[cid] = None
            elif encoding != "json":
                raise ValueError(f"{scan.path}: channel {topic!r} has message encoding {encoding!r}; kinebridge "
                                 f"recordings are JSON (this file was not written by the kinebridge recorder)")
            else:
                channels[cid] = topic
        elif op == _OP_DATA_END:
            return                     # the summary section only repeats schemas and channels


# -------------------------------------------------------------------------------------- summary
def summarize(path) -> dict:
    """What a recording holds, without decoding the messages (``kinebridge replay --info``).

    Per topic: count, first/last log time (CLOCK_MONOTONIC s), mean rate, and per publishing node
    the seq range, ``gaps`` (messages missing between consecutive seqs — dropped before the
    recorder) and ``restarts`` (seq going back: the node restarted). Also whether the file is
    ``complete`` (closed properly) or was cut short (``torn_bytes`` after the last whole record)."""
    scan = _Scan(path)
    channels: dict[int, tuple[str, str]] = {}
    metadata: dict = {}
    topics: dict = {}
    pubs: dict = {}
    malformed = 0
    t_first = t_last = None
    for op, rec, _pos in scan:
        if op == _OP_MESSAGE:
            cid, seq, log_time, _pt, _data = rec
            topic, src = channels.get(cid, ("?", "?"))
            t_first = log_time if t_first is None else min(t_first, log_time)
            t_last = log_time if t_last is None else max(t_last, log_time)
            if topic == MALFORMED:
                malformed += 1
                continue
            t = topics.get(topic)
            if t is None:
                t = topics[topic] = {"count": 0, "first_s": log_time / 1e9, "last_s": 0.0, "rate_hz": None,
                                     "gaps": 0, "publishers": {}}
            t["count"] += 1
            t["last_s"] = log_time / 1e9
            p = pubs.get(cid)
            if p is None:
                p = pubs[cid] = t["publishers"][src] = {"count": 0, "first_seq": seq, "last_seq": seq,
                                                         "gaps": 0, "restarts": 0}
            elif seq > p["last_seq"] + 1:
                p["gaps"] += seq - p["last_seq"] - 1
                t["gaps"] += seq - p["last_seq"] - 1
            elif seq <= p["last_seq"]:
                p["restarts"] += 1
            p["count"] += 1
            p["last_seq"] = seq
        elif op == _OP_CHANNEL:
            cid, topic, _enc, meta = rec
            channels[cid] = (topic, meta.get("src", ""))
        elif op == _OP_METADATA:
            name, meta = rec
            metadata[name] = meta
    for t in topics.values():
        span = t["last_s"] - t["first_s"]
        t["rate_hz"] = (t["count"] - 1) / span if span > 0 else None
    n = sum(t["count"] for t in topics.values())
    return {"path": str(path), "complete": scan.complete, "torn_bytes": scan.torn_bytes,
            "messages": n + malformed, "malformed": malformed,
            "duration_s": (t_last - t_first) / 1e9 if t_first is not None else 0.0,
            "topics": topics, "metadata": metadata}


# --------------------------------------------------------------------------------------- replay
def _count(path, topics) -> int | None:
    """Messages replay will send, from the summary of a complete file (None when there is none)."""
    try:
        from mcap.reader import make_reader
        with open(path, "rb") as f:
            s = make_reader(f).get_summary()
        if s is None or s.statistics is None:
            return None
        return sum(n for cid, n in s.statistics.channel_message_counts.items()
                   if s.channels[cid].topic != MALFORMED and (topics is None or s.channels[cid].topic in topics))
    except Exception:
        return None


def replay(path, publisher, *, speed: float = 1.0, topics=None, loop: bool = False, stop_event=None,
           progress: bool = True) -> dict:
    """Publish a recording through ``publisher`` (a :class:`~kinebridge.runtime.bus.sockets.Publisher`) with its
    recorded timing: message i goes out ``(log_time_i − log_time_0) / speed`` after the first
    (``speed=0``: as fast as possible). The publisher stamps new seq/stamp_ns/src; each header gets
    ``replayed = true`` and ``derived`` = the original message's stamp, so consumers can tell replayed
    data and trace it to the recording. A recording of another bus schema version is refused. ``_malformed`` is never replayed.
    ``loop``: start again at the end until ``stop_event`` is set. Returns ``{count, duration_s}``."""
    from tqdm import tqdm

    if speed < 0:
        raise ValueError(f"replay speed must be ≥ 0 (0 = as fast as possible), got {speed}")
    want = None if topics is None else [t for t in topics if t != MALFORMED]
    total = _count(path, want) if progress else None
    count = 0
    t_start = time.monotonic()
    stopped = False
    while not stopped:
        sent = 0
        t0 = t0_rec = None
        with tqdm(total=total, desc=f"replay {Path(path).name}", unit="msg", disable=not progress) as bar:
            for m in read_recording(path, want):
                if m.topic == MALFORMED:
                    continue
                if stop_event is not None and stop_event.is_set():
                    stopped = True
                    break
                if t0 is None:
                    t0, t0_rec = time.monotonic(), m.log_time_ns
                elif speed > 0:
                    delay = t0 + (m.log_time_ns - t0_rec) / 1e9 / speed - time.monotonic()
                    if delay > 0:
                        if stop_event is not None:
                            if stop_event.wait(delay):
                                stopped = True
                                break
                        else:
                            time.sleep(delay)
                h = m.header
                if h.get("v") != M.SCHEMA_VERSION:
                    raise ValueError(f"{path}: {m.topic!r} was recorded with bus schema version {h.get('v')!r}; "
                                     f"this kinebridge replays version {M.SCHEMA_VERSION} (replay it with the "
                                     f"kinebridge that recorded it)")
                seq, stamp_ns, src = h.get("seq"), h.get("stamp_ns"), h.get("src")
                orig = {"src": src if type(src) is str else "", "topic": m.topic,
                        "seq": seq if type(seq) is int and seq >= 0 else 0,
                        "stamp_ns": stamp_ns if type(stamp_ns) is int else 0}
                header = {k: v for k, v in h.items() if k not in _RESERVED}
                publisher.publish(m.topic, header, m.arrays, derived=[orig], replayed=True)
                sent += 1
                bar.update()
        count += sent
        if not loop or sent == 0:
            break
    return {"count": count, "duration_s": time.monotonic() - t_start}
