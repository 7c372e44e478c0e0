"""Recording the bus to MCAP: chunked, indexed, zstd-compressed files that Foxglove and the standard
seeking reader open lazily, crash-safe, rotated by size and duration.

**File format.** `MCAP <https://mcap.dev>`_ (profile ``kinebridge``) as the ``mcap`` library's writer
makes it: messages in zstd-compressed chunks, each followed by its message indexes; on close the
summary (schemas, channels, statistics, chunk and metadata indexes) and the footer. Foxglove and
``mcap.reader.make_reader(f).iter_messages()`` then read only the chunks a time range needs.

**Crash safety.** A chunk is closed and handed to the OS at most ``flush_every_s`` after its first
message arrived (and on close; ``os.fsync`` only on close), or sooner when it reaches
``CHUNK_BYTES``: a crash of any process — the recorder included — loses at most the last
``flush_every_s`` of messages, never what is already in the file (a crash of another node loses
nothing: the recorder keeps running; a power cut loses what the kernel had not yet written back,
whatever the interval). A file cut that way has no summary:
:func:`~kinebridge.runtime.recording.reader.read_recording` reads it up to its last whole chunk, and
:func:`~kinebridge.runtime.recording.reader.recover` (``kinebridge replay --recover``) rewrites it
into a complete indexed file for the standard readers.

Each flush costs a chunk (≈ 60 bytes, its message indexes of 15 bytes a channel + 16 a message, and
≈ 100 bytes of chunk index in the summary, which a reader parses on open), and zstd compresses each
chunk on its own, so the interval trades what a crash may lose against size and opening time.
Measured on the message stream of the default ``kinebridge run`` looped to one hour
(``python -m kinebridge.bench.recording_bench``; 200 Hz states, 10 Hz chunks, 5 Hz timing,
heartbeats; 713 k messages): unchunked JSON as before 529 MB/h; ``flush_every_s`` 0.05 s → 178 MB/h,
55 k chunks, 1.1 s for the standard reader to open the file; 0.25 s → 128 MB/h, 13 k chunks, 0.25 s;
1 s → 114 MB/h, 3.5 k chunks, 0.05 s. The default, 0.25 s, takes most of the gain (4.1× smaller than
before) for a quarter second at risk when the recorder itself dies; 0.05 s still gives 3×.

**Messages.** One channel per (topic, publishing node): ``channel.topic`` is the registered topic
(``[bus.topics]`` wire names are mapped back) and ``channel.metadata["src"]`` the node; one JSON
schema per topic from the message registry, with the body's named fields. The message JSON is the
bus header's fields with the arrays beside them as nested numbers, exact to the bit
(:mod:`kinebridge.runtime.recording.encoding`).

**Times.** ``log_time`` is the recorder's wall clock at receipt (``time.time_ns()``, ns since the
Unix epoch), so tools show the real date; ``publish_time`` is the sender's ``stamp_ns``
(CLOCK_MONOTONIC) moved onto the same axis by this file's fixed offset ``monotonic_to_unix_ns``
(sampled when the file was opened), so publish and log times compare and ``stamp_ns =
publish_time − monotonic_to_unix_ns`` exactly. The header keeps ``stamp_ns`` and every other
monotonic stamp unchanged. The metadata record ``clock`` holds the offset and what each time means.

**Rotation.** :class:`RotatingRecorder` writes a recording as ``<prefix>-000.mcap``, ``-001``, …:
the next message goes to a new file once the current one holds ``rotate_mb`` or has been open
``rotate_s``. Each file is complete on its own (its schemas, channels, clock and metadata records,
summary, footer) and names its part and the previous file in the metadata record ``recording``.
Files are created exclusively: nothing already written is ever opened for writing again. The
defaults (``[recorder] rotate_s = 3600``, ``rotate_mb = 512``): at ≈ 130 MB/h a file is an hour of
operation, which opens in a quarter second and closes (summary, fsync: the recorder's pause at a
rotation, well inside the seconds of messages its receive queue holds) in 0.2 s, and a crash cuts
at most the hour in progress; 512 MB bounds a file when the traffic is heavier than a run's.

**Malformed messages** (frames that do not decode, or headers that cannot be written as JSON) are
kept on the channel ``_malformed``: the error text and the raw frames in base64. Nothing received is
dropped.
"""

from __future__ import annotations

import base64
import datetime as _dt
import json
import os
import socket
import time
from pathlib import Path

import zmq

from kinebridge.runtime.bus import messages as M
from kinebridge.runtime.bus.codec import Message, MessageError, decode
from kinebridge.runtime.recording.encoding import (FORMAT, GENERIC_SCHEMA, MALFORMED, MALFORMED_SCHEMA,
                                                   message_json, topic_schema)
from kinebridge.runtime.recording.reader import RecordedMessage, read_recording, recover, summarize
from kinebridge.runtime.recording.replay import replay

__all__ = ["McapRecorder", "RotatingRecorder", "RecordedMessage", "read_recording", "record", "replay",
           "summarize", "recover", "CHUNK_BYTES", "MALFORMED", "FORMAT"]

CHUNK_BYTES = 1 << 20     # a chunk closes at this size even before its flush is due (uncompressed bytes)


def writer_options(chunk_bytes: int = CHUNK_BYTES) -> dict:
    """The ``mcap.writer.Writer`` settings of every kinebridge recording: chunked, zstd, all indexes,
    statistics and summary offsets, CRCs."""
    from mcap.writer import CompressionType, IndexType

    return dict(chunk_size=int(chunk_bytes), compression=CompressionType.ZSTD, index_types=IndexType.ALL,
                repeat_channels=True, repeat_schemas=True, use_chunking=True, use_statistics=True,
                use_summary_offsets=True, enable_crcs=True)


def _iso(unix_ns: int) -> str:
    return _dt.datetime.fromtimestamp(unix_ns / 1e9, _dt.timezone.utc).astimezone().isoformat()


def clock_offset() -> tuple[int, int, int]:
    """``(monotonic_ns, unix_ns, unix_ns − monotonic_ns)`` sampled together (the monotonic reading is
    the midpoint of two around the wall-clock one; the tightest of three tries)."""
    best = None
    for _ in range(3):
        a = time.monotonic_ns()
        u = time.time_ns()
        b = time.monotonic_ns()
        if best is None or b - a < best[0]:
            best = (b - a, (a + b) // 2, u)
    _, mono, unix = best
    return mono, unix, unix - mono


# ------------------------------------------------------------------------------------- recording
class McapRecorder:
    """Append bus messages to one MCAP file in compressed chunks, closing a chunk at most every
    ``flush_every_s``.

    ``metadata``: extra string key/values stored as the MCAP metadata record ``kinebridge``;
    ``recording``: the record ``recording`` (a rotated recording's part, see :class:`RotatingRecorder`).
    Counters: ``messages_written`` (malformed included), ``malformed``, ``bytes_written``.
    Not thread-safe: one thread writes. ``close()`` writes the summary and footer. ``path`` must not
    exist (FileExistsError). ``clock``: the monotonic clock (s) flushes go by — tests and benchmarks
    pass a simulated one."""

    def __init__(self, path, *, flush_every_s: float = 0.25, metadata: dict | None = None,
                 names: M.TopicNames | None = None, recording: dict | None = None,
                 chunk_bytes: int = CHUNK_BYTES, clock=time.monotonic):
        from mcap.writer import Writer

        if not flush_every_s >= 0:
            raise ValueError(f"flush_every_s must be ≥ 0, got {flush_every_s}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.path, "xb")
        self._w = Writer(self._f, **writer_options(chunk_bytes))
        self._w.start(profile="kinebridge", library="kinebridge recorder")
        self._schema = 0                   # the generic schema, for a topic the registry does not know
        self._schemas: dict[str, int] = {}  # topic → its schema id (registered on the topic's first message)
        self._bad_schema = 0
        self._channels: dict[tuple[str, str], int] = {}
        mono, unix, offset = clock_offset()
        self.monotonic_to_unix_ns = offset
        self._w.add_metadata("clock", {
            "clock": "CLOCK_REALTIME",
            "log_time": "the recorder's wall clock at receipt: time.time_ns(), ns since the Unix epoch",
            "publish_time": "the sender's stamp_ns + monotonic_to_unix_ns: its CLOCK_MONOTONIC stamp on this "
                            "file's wall-clock axis (a date only for senders on the recorder's machine)",
            "stamp_clock": "CLOCK_MONOTONIC",
            "stamp_ns": "header stamp_ns, derived stamps and the bodies' times (chunk t0, ...): the sender's "
                        "CLOCK_MONOTONIC, unchanged",
            "monotonic_to_unix_ns": str(offset),
            "monotonic_ns_at_start": str(mono), "unix_ns_at_start": str(unix), "wall_time_at_start": _iso(unix),
            "host": socket.gethostname(), "format": FORMAT})
        if recording:
            self._w.add_metadata("recording", {str(k): str(v) for k, v in recording.items()})
        if metadata:
            self._w.add_metadata("kinebridge", {str(k): str(v) for k, v in metadata.items()})
        self.names = names or M.DEFAULT_NAMES      # wire name → registered topic (``[bus.topics]``)
        self.flush_every_s = float(flush_every_s)
        self.messages_written = 0
        self.malformed = 0
        self.chunks = 0
        self._dirty = False
        self._closed = False
        self._size = 0
        self._clock = clock
        self._f.flush()
        self._first_unflushed = 0.0

    # ------------------------------------------------------------------ writing
    def _channel(self, topic: str, src: str) -> int:
        cid = self._channels.get((topic, src))
        if cid is None:
            if topic == MALFORMED:
                if not self._bad_schema:
                    self._bad_schema = self._w.register_schema("kinebridge.Malformed", "jsonschema",
                                                               MALFORMED_SCHEMA)
                schema = self._bad_schema
            elif topic in M.TOPICS:
                schema = self._schemas.get(topic)
                if schema is None:
                    schema = self._schemas[topic] = self._w.register_schema(
                        M.body_of(topic).SCHEMA_NAME or f"kinebridge.{topic}", "jsonschema", topic_schema(topic))
            else:
                if not self._schema:
                    self._schema = self._w.register_schema("kinebridge.Message", "jsonschema", GENERIC_SCHEMA)
                schema = self._schema
            cid = self._w.register_channel(topic, "json", schema, {"src": src})
            self._channels[(topic, src)] = cid
        return cid

    def _add(self, cid: int, log_time_ns: int, data: bytes, publish_time_ns: int, seq: int) -> None:
        if self._closed:
            raise ValueError(f"{self.path}: the recording is closed")
        self._w.add_message(cid, log_time=log_time_ns, data=data, publish_time=publish_time_ns, sequence=seq)
        self.messages_written += 1
        now = self._clock()
        if not self._dirty:
            self._dirty = True
            self._first_unflushed = now
        if now - self._first_unflushed >= self.flush_every_s:
            self.flush()

    def write(self, msg: Message, log_time_ns: int) -> None:
        """Record one decoded message received at ``log_time_ns`` (``time.time_ns()`` at receipt).
        Raises TypeError/ValueError for a header that cannot be written as JSON."""
        if msg.topic == MALFORMED:
            raise ValueError(f"topic {MALFORMED!r} is reserved for messages that failed to decode")
        h = msg.header
        data = message_json(h, msg.arrays)
        stamp, seq, src = h.get("stamp_ns"), h.get("seq"), h.get("src")
        log_time_ns = int(log_time_ns)
        publish = stamp + self.monotonic_to_unix_ns if type(stamp) is int else -1
        topic = self.names.logical(msg.topic) or msg.topic     # recorded under its registered name
        self._add(self._channel(topic, src if type(src) is str else ""), log_time_ns, data,
                  publish if 0 <= publish < 1 << 64 else log_time_ns,
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
        """Close the chunk in progress and hand everything written so far to the OS (it then survives a
        crash of this process)."""
        if self._dirty:
            self.chunks += 1
        self._w.flush()
        self._dirty = False

    def flush_if_due(self) -> float:
        """Flush if the oldest unflushed message is ``flush_every_s`` old; returns seconds until the next
        flush is due (``inf`` when nothing is pending). The recording loop calls this when no message
        arrives."""
        if not self._dirty:
            return float("inf")
        left = self._first_unflushed + self.flush_every_s - self._clock()
        if left <= 0:
            self.flush()
            return float("inf")
        return left

    @property
    def bytes_written(self) -> int:
        """Size of the file so far (what the writer still buffers included; the open chunk not)."""
        return self._size if self._closed else self._f.tell()

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Write the last chunk, the summary and footer, flush, fsync and close. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._dirty:
                self.chunks += 1
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


class RotatingRecorder:
    """A recording as a series of complete MCAP files ``<directory>/<prefix>-NNN.mcap``: the next
    message opens a new file once the current one holds ``rotate_mb`` MB or has been open ``rotate_s``
    seconds (0: no limit). Same interface as :class:`McapRecorder` (``write``, ``write_frames``,
    ``flush_if_due``, ``close``; counters over all files); ``path`` is the file being written,
    ``paths`` every file so far."""

    def __init__(self, directory, prefix: str, *, rotate_mb: float = 512.0, rotate_s: float = 3600.0,
                 flush_every_s: float = 0.25, metadata: dict | None = None, names: M.TopicNames | None = None,
                 chunk_bytes: int = CHUNK_BYTES, clock=time.monotonic):
        if not rotate_mb >= 0 or not rotate_s >= 0:
            raise ValueError(f"rotate_mb and rotate_s must be ≥ 0 (0 = no limit), got {rotate_mb}, {rotate_s}")
        self.directory = Path(directory)
        self.prefix = prefix
        self.rotate_bytes = int(rotate_mb * 1e6)
        self.rotate_s = float(rotate_s)
        self._clock = clock
        self._kw = dict(flush_every_s=flush_every_s, metadata=metadata, names=names, chunk_bytes=chunk_bytes,
                        clock=clock)
        self.paths: list[Path] = []
        self._done = [0, 0, 0]          # messages, malformed, bytes of the closed files
        self._cur: McapRecorder | None = None
        self._open()

    def _open(self) -> None:
        part = len(self.paths)
        path = self.directory / f"{self.prefix}-{part:03d}.mcap"
        rec = McapRecorder(path, recording={
            "session": self.prefix, "part": part, "previous": self.paths[-1].name if self.paths else "",
            "rotate_mb": self.rotate_bytes / 1e6, "rotate_s": self.rotate_s}, **self._kw)
        self.paths.append(path)
        self._cur = rec
        self._opened = self._clock()

    def _rotate_if_due(self) -> None:
        cur = self._cur
        if cur.messages_written and ((self.rotate_bytes and cur.bytes_written >= self.rotate_bytes)
                                     or (self.rotate_s and self._clock() - self._opened >= self.rotate_s)):
            self.rotate()

    def rotate(self) -> None:
        """Close the current file (summary, footer, fsync) and continue in the next."""
        cur = self._cur
        cur.close()
        self._done[0] += cur.messages_written
        self._done[1] += cur.malformed
        self._done[2] += cur.bytes_written
        self._open()

    def write(self, msg: Message, log_time_ns: int) -> None:
        self._rotate_if_due()
        self._cur.write(msg, log_time_ns)

    def write_frames(self, frames, log_time_ns: int) -> None:
        self._rotate_if_due()
        self._cur.write_frames(frames, log_time_ns)

    def flush(self) -> None:
        self._cur.flush()

    def flush_if_due(self) -> float:
        return self._cur.flush_if_due()

    def close(self) -> None:
        self._cur.close()

    @property
    def path(self) -> Path:
        return self._cur.path

    @property
    def messages_written(self) -> int:
        return self._done[0] + self._cur.messages_written

    @property
    def malformed(self) -> int:
        return self._done[1] + self._cur.malformed

    @property
    def bytes_written(self) -> int:
        return self._done[2] + self._cur.bytes_written

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def record(subscriber, recorder, stop_event, *, on_idle=None, idle_ms: int = 100, drain_s: float = 0.5) -> None:
    """The recorder loop: every raw message on ``subscriber.sock`` into ``recorder`` (a
    :class:`McapRecorder` or :class:`RotatingRecorder`), stamped ``time.time_ns()`` at receipt, until
    ``stop_event`` is set, then what is already queued (for up to ``drain_s``). Raw frames go to
    ``write_frames``, so malformed messages are recorded too (``Subscriber.recv`` would drop them).
    ``on_idle()`` runs at least every ``idle_ms`` (heartbeats), also under load. The file is always
    closed properly on the way out, exceptions included."""
    sock = subscriber.sock
    period = max(1, int(idle_ms)) / 1e3
    next_idle = time.monotonic()
    write, now_ns, mono, again = recorder.write_frames, time.time_ns, time.monotonic, zmq.Again
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
