"""Reading recordings: every message in file order (also from a file cut short by a crash), what a
recording holds (``kinebridge replay --info``), and rewriting a cut file into a complete, indexed one
(``kinebridge replay --recover``).

The reader here is a tolerant scan of the MCAP records from the start of the file: a record whose
length runs past the end of the file is the torn last write of a crashed recorder and ends the scan.
It does not need the summary, the footer or the indexes, so it reads what a killed recorder left
behind; the standard seeking reader (``mcap.reader.make_reader(f).iter_messages()``, Foxglove) needs
the summary and indexes, which :func:`recover` writes.
"""

from __future__ import annotations

import base64
import datetime as _dt
import io
import json
import os
import struct
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

from kinebridge.runtime.recording.encoding import (FORMAT_V1, MALFORMED, decode_message, decode_message_v1)

__all__ = ["RecordedMessage", "read_recording", "summarize", "recover", "MAGIC"]

MAGIC = b"\x89MCAP0\r\n"
_OP_HEADER, _OP_FOOTER, _OP_SCHEMA, _OP_CHANNEL, _OP_MESSAGE, _OP_CHUNK = 0x01, 0x02, 0x03, 0x04, 0x05, 0x06
_OP_CHUNK_INDEX, _OP_ATTACHMENT, _OP_METADATA, _OP_DATA_END = 0x08, 0x09, 0x0C, 0x0F
_MSG = struct.Struct("<HIQQ")
_CHUNK = struct.Struct("<QQQI")


@dataclass(slots=True)
class RecordedMessage:
    topic: str
    header: dict
    arrays: dict
    log_time_ns: int
    publish_time_ns: int


def _str(b: bytes, p: int) -> tuple[str, int]:
    """An MCAP string (uint32 length, UTF-8) at ``p``; and where the next field starts."""
    (n,) = struct.unpack_from("<I", b, p)
    if p + 4 + n > len(b):
        raise ValueError("a string runs past its record")
    return b[p + 4:p + 4 + n].decode(), p + 4 + n


def _map(b: bytes, p: int) -> tuple[dict, int]:
    """An MCAP map<string, string> (uint32 byte length, then key/value strings)."""
    (n,) = struct.unpack_from("<I", b, p)
    end = p + 4 + n
    if end > len(b):
        raise ValueError("a map runs past its record")
    out, p = {}, p + 4
    while p < end:
        k, p = _str(b, p)
        v, p = _str(b, p)
        out[k] = v
    if p != end:
        raise ValueError("a map's entries overrun its length")
    return out, end


class _Scan:
    """The records of an MCAP file in order, tolerating a file cut short: a record whose length runs
    past the end of the file is the torn last write of a crashed recorder and ends the scan.

    Iterating yields ``(opcode, record, offset)``: for a Message ``(channel_id, sequence, log_time,
    publish_time, data)``, for a Channel ``(id, topic, message_encoding, metadata, schema_id)``, for
    a Schema ``(id, name, encoding, data)``, for Metadata ``(name, dict)``, for the Header
    ``(profile, library)``, for a Chunk ``(start_time, end_time, compression)`` followed by the
    records inside it (decompressed, CRC checked), else None. Afterwards ``complete`` says whether the
    footer was reached and ``torn_bytes`` how many bytes followed the last whole record; ``chunks``
    counts the chunks. With ``stop_on_corrupt`` a corrupt record ends the scan like a torn one
    (``corrupt`` then names it) instead of raising ValueError."""

    def __init__(self, path, *, stop_on_corrupt: bool = False):
        self.path = Path(path)
        if not self.path.is_file():
            raise ValueError(f"{self.path}: no such recording")
        with open(self.path, "rb") as f:
            head = f.read(8)
        if head != MAGIC and not (len(head) < 8 and MAGIC.startswith(head)):
            raise ValueError(f"{self.path}: not an MCAP file (it does not start with the MCAP magic bytes)")
        self.complete = False
        self.torn_bytes = 0
        self.chunks = 0
        self.corrupt: str | None = None
        self.stop_on_corrupt = stop_on_corrupt
        self._zstd = None

    def __iter__(self):
        with open(self.path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if f.read(8) != MAGIC:          # a file cut short inside the magic: nothing recorded yet
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
                    if op == _OP_CHUNK:
                        records = self._chunk(body)     # whole chunk checked before anything is yielded
                    else:
                        records = [(op, self._record(op, body))]
                except Exception as exc:     # struct.error, ValueError, KeyError, McapError, zstd errors
                    why = (f"{self.path}: the record at byte {pos} (opcode {op:#04x}) is corrupt "
                           f"({type(exc).__name__}: {exc})")
                    if self.stop_on_corrupt:
                        self.corrupt = why
                        self.torn_bytes = size - pos
                        return
                    raise ValueError(why) from exc
                for o, rec in records:
                    yield o, rec, pos
                if op == _OP_FOOTER:
                    self.complete = True
                    return
                pos += 9 + length

    @staticmethod
    def _record(op, body):
        if op == _OP_MESSAGE:
            return _MSG.unpack_from(body) + (body[22:],)
        if op == _OP_CHANNEL:
            cid, sid = struct.unpack_from("<HH", body)
            topic, p = _str(body, 4)
            encoding, p = _str(body, p)
            return cid, topic, encoding, _map(body, p)[0], sid
        if op == _OP_SCHEMA:
            (sid,) = struct.unpack_from("<H", body)
            name, p = _str(body, 2)
            encoding, p = _str(body, p)
            (n,) = struct.unpack_from("<I", body, p)
            if p + 4 + n > len(body):
                raise ValueError("schema data runs past the record")
            return sid, name, encoding, body[p + 4:p + 4 + n]
        if op == _OP_METADATA:
            name, p = _str(body, 0)
            return name, _map(body, p)[0]
        if op == _OP_HEADER:
            profile, p = _str(body, 0)
            return profile, _str(body, p)[0]
        if op == _OP_ATTACHMENT:
            from mcap.data_stream import ReadDataStream
            from mcap.records import Attachment

            return Attachment.read(ReadDataStream(io.BytesIO(body)))
        return None

    def _chunk(self, body):
        start, end, usize, crc = _CHUNK.unpack_from(body)
        n = int.from_bytes(body[28:32], "little")
        compression = body[32:32 + n].decode()
        dlen = int.from_bytes(body[32 + n:40 + n], "little")
        data = body[40 + n:40 + n + dlen]
        if len(data) != dlen:
            raise ValueError("chunk records run past the chunk")
        if compression == "zstd":
            if self._zstd is None:
                import zstandard
                self._zstd = zstandard.ZstdDecompressor()
            data = self._zstd.decompress(data, max_output_size=usize)
        elif compression == "lz4":
            import lz4.frame
            data = lz4.frame.decompress(data)
        elif compression:
            raise ValueError(f"unknown chunk compression {compression!r}")
        if len(data) != usize:
            raise ValueError(f"chunk holds {len(data)} bytes, its record says {usize}")
        if crc and zlib.crc32(data) != crc:
            raise ValueError("chunk CRC mismatch")
        out = [(_OP_CHUNK, (start, end, compression))]
        p, total = 0, len(data)
        while p < total:
            if p + 9 > total:
                raise ValueError("a record inside the chunk is cut short")
            op, length = data[p], int.from_bytes(data[p + 1:p + 9], "little")
            if p + 9 + length > total:
                raise ValueError("a record inside the chunk runs past its end")
            rec = data[p + 9:p + 9 + length]
            if op in (_OP_MESSAGE, _OP_CHANNEL, _OP_SCHEMA):
                out.append((op, self._record(op, rec)))
            p += 9 + length
        self.chunks += 1
        return out


def read_recording(path, topics=None):
    """Iterate a recording's messages in file order as :class:`RecordedMessage` (header and numpy
    arrays exactly as sent: dtype, shape and bits; writable).

    Works on a complete file and on one cut short by a crash (no summary or footer, a torn last
    chunk): it yields every complete message and stops. ``topics``: only these; ``_malformed`` is
    left out unless named (its messages have header ``{"error", "frames"}`` with the raw frames).
    Reads both layouts (``kinebridge-json-2`` and the earlier ``-1``). Raises ValueError naming the
    path for a file that is not an MCAP file, is corrupt before its end, or holds messages that are
    not kinebridge JSON."""
    scan = _Scan(path)
    want = frozenset(topics) if topics is not None else None
    return _messages(scan, want)


def _messages(scan: _Scan, want):
    channels: dict[int, str | None] = {}     # id → topic, or None when filtered out
    decode = decode_message
    for op, rec, pos in scan:
        if op == _OP_MESSAGE:
            cid, _seq, log_time, publish_time, data = rec
            if cid not in channels:
                raise ValueError(f"{scan.path}: the message at byte {pos} names channel {cid}, which was never defined")
            topic = channels[cid]
            if topic is None:
                continue
            try:
                if topic == MALFORMED:
                    doc = json.loads(data)
                    header = {"error": doc["error"], "frames": [base64.b64decode(s) for s in doc["frames_b64"]]}
                    msg = RecordedMessage(topic, header, {}, log_time, publish_time)
                else:
                    header, arrays = decode(data)
                    msg = RecordedMessage(topic, header, arrays, log_time, publish_time)
            except (ValueError, KeyError, TypeError, IndexError) as exc:
                raise ValueError(f"{scan.path}: the message at byte {pos} on {topic!r} is not a kinebridge "
                                 f"JSON message ({type(exc).__name__}: {exc})") from exc
            yield msg
        elif op == _OP_CHANNEL:
            cid, topic, encoding, _meta, _sid = rec
            if (want is not None and topic not in want) or (want is None and topic == MALFORMED):
                channels[cid] = None
            elif encoding != "json":
                raise ValueError(f"{scan.path}: channel {topic!r} has message encoding {encoding!r}; kinebridge "
                                 f"recordings are JSON (this file was not written by the kinebridge recorder)")
            else:
                channels[cid] = topic
        elif op == _OP_METADATA:
            name, meta = rec
            if name == "clock" and meta.get("format") == FORMAT_V1:
                decode = decode_message_v1
        elif op == _OP_DATA_END:
            return                     # the summary section only repeats schemas and channels


# -------------------------------------------------------------------------------------- summary
def _iso(ns: int) -> str:
    return _dt.datetime.fromtimestamp(ns / 1e9, _dt.timezone.utc).astimezone().isoformat()


def summarize(path) -> dict:
    """What a recording holds, without decoding the messages (``kinebridge replay --info``).

    Per topic: count, first/last log time (s since the Unix epoch: the recorder's wall clock at
    receipt; CLOCK_MONOTONIC in recordings of the ``kinebridge-json-1`` layout), mean rate, and per
    publishing node the seq range, ``gaps`` (messages missing between consecutive seqs — dropped
    before the recorder) and ``restarts`` (seq going back: the node restarted). Also whether the file
    is ``complete`` (closed properly, with its summary and indexes) or was cut short (``torn_bytes``
    after the last whole record), its ``chunks``, and ``start``/``end`` as local dates."""
    scan = _Scan(path)
    channels: dict[int, tuple[str, str]] = {}
    metadata: dict = {}
    topics: dict = {}
    pubs: dict = {}
    malformed = 0
    t_first = t_last = None
    compression = set()
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
            cid, topic, _enc, meta, _sid = rec
            channels[cid] = (topic, meta.get("src", ""))
        elif op == _OP_METADATA:
            name, meta = rec
            metadata[name] = meta
        elif op == _OP_CHUNK:
            compression.add(rec[2] or "none")
    for t in topics.values():
        span = t["last_s"] - t["first_s"]
        t["rate_hz"] = (t["count"] - 1) / span if span > 0 else None
    n = sum(t["count"] for t in topics.values())
    wall = metadata.get("clock", {}).get("format") != FORMAT_V1
    return {"path": str(path), "complete": scan.complete, "torn_bytes": scan.torn_bytes,
            "messages": n + malformed, "malformed": malformed,
            "duration_s": (t_last - t_first) / 1e9 if t_first is not None else 0.0,
            "start": _iso(t_first) if wall and t_first is not None else None,
            "end": _iso(t_last) if wall and t_last is not None else None,
            "bytes": os.path.getsize(path), "chunks": scan.chunks, "compression": sorted(compression),
            "topics": topics, "metadata": metadata}


# -------------------------------------------------------------------------------------- recover
def recover(path, out=None) -> dict:
    """Rewrite ``path`` — typically a recording cut short by a crash, which the standard seeking
    reader cannot open — into a complete, chunked, indexed, zstd-compressed MCAP file ``out``
    (default: ``<stem>-recovered.mcap`` beside it). Every whole record is carried over unchanged
    (schemas, channels, metadata, attachments, messages with their times and sequence numbers, in
    file order); a torn last chunk — at most ``flush_every_s`` of messages — is what is lost. A
    metadata record ``recovered`` says from what. ``path`` is only read; ``out`` must not exist.
    Returns ``{path, out, messages, complete, torn_bytes, corrupt}`` (``complete``: the input was
    already complete; ``corrupt``: the record where a damaged file stopped being readable)."""
    from mcap.writer import Writer

    from kinebridge.runtime.recording.recorder import CHUNK_BYTES, writer_options

    path = Path(path)
    out = Path(out) if out is not None else path.with_name(path.stem + "-recovered.mcap")
    scan = _Scan(path, stop_on_corrupt=True)
    if out.exists() and out.resolve() == path.resolve():
        raise ValueError(f"{out}: recover writes a new file; give another --out")
    schemas: dict[int, int] = {}      # old id → new id
    channels: dict[int, int] = {}
    n = orphans = 0
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        f = open(out, "xb")
    except FileExistsError:
        raise ValueError(f"{out}: exists; recover never overwrites a file (give another --out)") from None
    with f:
        w = Writer(f, **writer_options(CHUNK_BYTES))
        started = False
        for op, rec, _pos in scan:
            if op == _OP_HEADER:
                w.start(profile=rec[0] or "kinebridge", library="kinebridge recover")
                started = True
                continue
            if not started:
                w.start(profile="kinebridge", library="kinebridge recover")
                started = True
            if op == _OP_MESSAGE:
                cid, seq, log_time, publish_time, data = rec
                new = channels.get(cid)
                if new is None:
                    orphans += 1
                    continue
                w.add_message(new, log_time=log_time, data=data, publish_time=publish_time, sequence=seq)
                n += 1
            elif op == _OP_SCHEMA:
                sid, name, encoding, data = rec
                if sid not in schemas:
                    schemas[sid] = w.register_schema(name, encoding, data)
            elif op == _OP_CHANNEL:
                cid, topic, encoding, meta, sid = rec
                if cid not in channels:
                    channels[cid] = w.register_channel(topic, encoding, schemas.get(sid, 0), dict(meta))
            elif op == _OP_METADATA:
                w.add_metadata(rec[0], dict(rec[1]))
            elif op == _OP_ATTACHMENT:
                w.add_attachment(rec.create_time, rec.log_time, rec.name, rec.media_type, rec.data)
            elif op == _OP_DATA_END:
                break                  # the summary only repeats what came before
        if not started:
            w.start(profile="kinebridge", library="kinebridge recover")
        w.add_metadata("recovered", {"from": path.name, "complete": str(scan.complete).lower(),
                                     "torn_bytes": str(scan.torn_bytes), "messages": str(n),
                                     "corrupt": scan.corrupt or "", "at": _iso(time.time_ns())})
        w.finish()
        f.flush()
        os.fsync(f.fileno())
    return {"path": str(path), "out": str(out), "messages": n, "complete": scan.complete,
            "torn_bytes": scan.torn_bytes, "corrupt": scan.corrupt, "orphan_messages": orphans}
