"""Recording the bus to MCAP, reading recordings back, and replaying them into the bus.

Format: `MCAP <https://mcap.dev>`_, written **unchunked** — every message is a complete record in
the file as soon as it is flushed (at most every ``flush_every_s``), so a crash of any process
loses at most that much, and :func:`read_recording` reads a file that was cut short (no summary,
a torn last record) up to its last complete message. A cleanly closed file has the usual summary
and opens in Foxglove and the ``mcap`` CLI.

Messages are stored as JSON (``message_encoding = "json"``, a JSON schema per channel) so standard
tools can show and plot them: ``{"header": {...}, "arrays": {name: {"dtype", "shape", "data"}}}``.
Python's JSON float text round-trips float64 exactly (NaN/±inf are written as the non-standard
``NaN``/``Infinity`` tokens Python and Foxglove accept). One channel per (topic, publishing node);
``log_time`` is the receive time and ``publish_time`` the sender's stamp, both CLOCK_MONOTONIC ns
(the metadata record ``clock`` maps them to wall time). Messages that fail to decode are kept on the
``_malformed`` channel (raw frames base64, the error text): nothing received is dropped.
"""

from __future__ import annotations

import base64
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zmq

from kinebridge.runtime.codec import Message, MessageError, decode

__all__ = ["McapRecorder", "RecordedMessage", "read_recording", "record", "replay", "summarize"]

_SCHEMA = json.dumps({
    "type": "object", "title": "kinebridge bus message",
    "properties": {"header": {"type": "object"},
                   "arrays": {"type": "object", "additionalProperties": {
                       "type": "object", "properties": {"dtype": {"type": "string"},
                                                        "shape": {"type": "array", "items": {"type": "integer"}},
                                                        "data": {"type": "array"}}}}}}).encode()


def _jsonable(a: np.ndarray):
    if a.dtype.kind == "c":
        return [[float(z.real), float(z.imag)] for z in a.reshape(-1)]
    return a.reshape(-1).tolist()


class McapRecorder:
    """Append bus messages to an MCAP file; ``close()`` writes the summary."""

    def __init__(self, path, *, flush_every_s: float = 0.05, metadata: dict | None = None):
        from mcap.writer import Writer

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.path, "wb")
        self._w = Writer(self._f, use_chunking=False, enable_crcs=True)
        self._w.start(profile="kinebridge", library="kinebridge")
        self._schema = self._w.register_schema("kinebridge.Message", "jsonschema", _SCHEMA)
        self._channels: dict[tuple[str, str], int] = {}
        self._w.add_metadata("clock", {"log_time": "CLOCK_MONOTONIC ns at receipt", "publish_time": "sender stamp_ns",
                                       "monotonic_ns_at_start": str(time.monotonic_ns()),
                                       "unix_ns_at_start": str(time.time_ns())})
        if metadata:
            self._w.add_metadata("kinebridge", {str(k): str(v) for k, v in metadata.items()})
        self.flush_every_s = float(flush_every_s)
        self._next_flush = 0.0
        self.messages_written = 0
        self.malformed = 0
        self._closed = False
        self._f.flush()

    def _channel(self, topic: str, src: str) -> int:
        key = (topic, src)
        cid = self._channels.get(key)
        if cid is None:
            cid = self._w.register_channel(topic, "json", self._schema, {"src": src})
            self._channels[key] = cid
        return cid

    def write(self, msg: Message, log_time_ns: int) -> None:
        h = msg.header
        body = {"header": h, "arrays": {n: {"dtype": a.dtype.str, "shape": list(a.shape), "data": _jsonable(a)}
                                        for n, a in msg.arrays.items()}}
        stamp = h.get("stamp_ns")
        self._w.add_message(self._channel(msg.topic, str(h.get("src", "?"))), log_time=int(log_time_ns),
                            data=json.dumps(body, default=str).encode(),
                            publish_time=stamp if isinstance(stamp, int) and stamp >= 0 else int(log_time_ns),
                            sequence=h.get("seq", 0) if isinstance(h.get("seq"), int) and 0 <= h["seq"] < 2**32 else 0)
        self.messages_written += 1
        self._maybe_flush()

    def write_frames(self, frames, log_time_ns: int) -> None:
        """Record raw received frames; a message that does not decode goes to ``_malformed``."""
        try:
            msg = decode(frames)
        except MessageError as exc:
            raw = [bytes(f.buffer if hasattr(f, "buffer") else f) for f in frames]
            body = {"error": str(exc), "frames_b64": [base64.b64encode(b).decode() for b in raw]}
            self._w.add_message(self._channel("_malformed", "?"), log_time=int(log_time_ns),
                                data=json.dumps(body).encode(), publish_time=int(log_time_ns))
            self.malformed += 1
            self.messages_written += 1
            self._maybe_flush()
            return
        self.write(msg, log_time_ns)

    def _maybe_flush(self) -> None:
        now = time.monotonic()
        if now >= self._next_flush:
            self._f.flush()
            self._next_flush = now + self.flush_every_s

    def flush(self) -> None:
        self._f.flush()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._w.finish()
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()


@dataclass
class RecordedMessage:
    topic: str
    header: dict
    arrays: dict
    log_time_ns: int
    publish_time_ns: int


def _arrays(spec: dict) -> dict:
    out = {}
    for name, a in spec.items():
        dt = np.dtype(a["dtype"])
        data = a["data"]
        if dt.kind == "c":
            data = [complex(re, im) for re, im in data]
        out[name] = np.array(data, dtype=dt).reshape(a["shape"])
    return out


def read_recording(path, topics=None):
    """Yield :class:`RecordedMessage` in file order; a file cut short by a crash reads up to its last
    complete message. ``topics``: only these (``_malformed`` included only when asked for)."""
    from mcap.stream_reader import StreamReader
    from mcap.records import Channel, Message as McapMessage

    path = Path(path)
    with open(path, "rb") as f:
        if f.read(8) != b"\x89MCAP0\r\n":
            raise ValueError(f"{path}: not an MCAP file (bad magic); kinebridge recordings end in .mcap")
        f.seek(0)
        channels: dict[int, str] = {}
        want = set(topics) if topics else None
        reader = StreamReader(f, validate_crcs=False)
        it = reader.records
        while True:
            try:
                rec = next(it)
            except StopIteration:
                return
            except Exception:          # a record torn by a crash: everything before it was yielded
                return
            if isinstance(rec, Channel):
                channels[rec.id] = rec.topic
            elif isinstance(rec, McapMessage):
                topic = channels.get(rec.channel_id, "?")
                if (want is not None and topic not in want) or (want is None and topic == "_malformed"):
                    continue
                body = json.loads(rec.data)
                if topic == "_malformed":
                    yield RecordedMessage(topic, {"error": body["error"]}, {}, rec.log_time, rec.publish_time)
                    continue
                yield RecordedMessage(topic, body["header"], _arrays(body["arrays"]), rec.log_time, rec.publish_time)


def record(subscriber, recorder: McapRecorder, stop_event, *, on_idle=None, idle_ms: int = 100) -> None:
    """The recorder loop: every raw message from ``subscriber``'s socket into ``recorder`` until
    ``stop_event`` is set; ``on_idle`` runs at least every ``idle_ms``. Closes the file on exit."""
    sock = subscriber.sock
    next_idle = time.monotonic()
    try:
        while not stop_event.is_set():
            if sock.poll(idle_ms):
                for _ in range(1000):
                    try:
                        frames = sock.recv_multipart(flags=zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break
                    recorder.write_frames(frames, time.monotonic_ns())
            now = time.monotonic()
            if now >= next_idle:
                recorder.flush()
                if on_idle is not None:
                    on_idle()
                next_idle = now + idle_ms / 1e3
    finally:
        recorder.close()


def replay(path, publisher, *, speed: float = 1.0, topics=None, loop: bool = False, stop_event=None,
           progress: bool = True) -> dict:
    """Publish a recording through ``publisher`` with its recorded timing (÷ ``speed``; 0 = as fast
    as possible). Headers get ``replayed = true`` and the original stamp in ``derived``."""
    from tqdm import tqdm

    msgs = [m for m in read_recording(path, topics) if m.topic != "_malformed"]
    if not msgs:
        return {"count": 0, "duration_s": 0.0}
    count = 0
    t_start = time.monotonic()
    while True:
        t0_rec = msgs[0].log_time_ns
        t0 = time.monotonic()
        bar = tqdm(msgs, desc=f"replay {Path(path).name}", unit="msg", disable=not progress)
        for m in bar:
            if stop_event is not None and stop_event.is_set():
                loop = False
                break
            if speed > 0:
                due = t0 + (m.log_time_ns - t0_rec) / 1e9 / speed
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            h = {k: v for k, v in m.header.items() if k not in ("seq", "stamp_ns", "src", "derived")}
            h["replayed"] = True
            orig = [m.header.get("src", "?"), m.topic, m.header.get("seq", -1), m.header.get("stamp_ns", 0)]
            publisher.publish(m.topic, h, m.arrays, derived=[orig])
            count += 1
        bar.close()
        if not loop:
            break
    return {"count": count, "duration_s": time.monotonic() - t_start}


def summarize(path) -> dict:
    """Per topic: message count, first/last log time, mean rate, sequence gaps per publisher."""
    topics: dict = {}
    malformed = 0
    for m in read_recording(path, None):
        t = topics.setdefault(m.topic, {"count": 0, "first_s": m.log_time_ns / 1e9, "last_s": 0.0, "gaps": 0,
                                        "_seq": {}})
        t["count"] += 1
        t["last_s"] = m.log_time_ns / 1e9
        src, seq = m.header.get("src"), m.header.get("seq")
        prev = t["_seq"].get(src)
        if isinstance(seq, int) and prev is not None and seq > prev + 1:
            t["gaps"] += seq - prev - 1
        t["_seq"][src] = seq
    for m in read_recording(path, ["_malformed"]):
        malformed += 1
    for t in topics.values():
        span = t["last_s"] - t["first_s"]
        t["rate_hz"] = (t["count"] - 1) / span if span > 0 else None
        t["publishers"] = sorted(str(s) for s in t.pop("_seq"))
    return {"path": str(path), "topics": topics, "malformed": malformed,
            "messages": sum(t["count"] for t in topics.values()) + malformed}
