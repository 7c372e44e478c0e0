"""The recorder: exact round trip through real sockets, crash safety (a SIGKILLed recorder process,
a file torn at every byte, both rewritten by ``recover`` into files the standard seeking reader
opens), chunked zstd files with every index, wall-clock log times, a JSON schema per topic with
named fields, rotation, malformed messages, replay and its timing, and the summary used by
``kinebridge replay --info``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import msgpack
import numpy as np
import pytest
import zmq
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from kinebridge.runtime.bus.sockets import Publisher, Subscriber
from kinebridge.runtime.bus.codec import Message, decode, encode
from kinebridge.runtime.recording import encoding as encoding_mod
from kinebridge.runtime.recording.encoding import _float_text, decode_message, message_json
from kinebridge.runtime.recording.recorder import (McapRecorder, RotatingRecorder, read_recording, record, recover,
                                                   replay, summarize)
from tests.runtime.conftest import A, B


def _arrays(i: int) -> dict:
    rng = np.random.default_rng(i)
    return {"q": rng.normal(size=(50, 7)), "n": np.arange(3, dtype=np.int32) - i, "ok": np.array([True, False]),
            "scalar": np.array(i / 7), "empty": np.zeros((0, 7)),
            "special": np.array([np.nan, np.inf, -np.inf, -0.0, 5e-324, 1.7976931348623157e308]),
            "f32": rng.normal(size=20).astype(np.float32), "c": np.array([1 + 2j, -3.5 - 0.25j]),
            "u64": np.array([0, 2**64 - 1], np.uint64), "be": (np.arange(18, dtype=">f8") / 3).reshape(3, 6)}


def _same_arrays(got: dict, want: dict) -> None:
    assert set(got) == set(want)
    for name, a in want.items():
        a = np.asarray(a)
        g = got[name]
        assert g.dtype == a.dtype and g.shape == a.shape, name
        assert g.tobytes() == a.tobytes(), name                 # bit-exact: NaN, -0.0, subnormals included


class _Recording:
    """The recorder loop in a thread, listening to ``endpoints``; ``sync()`` waits until it is connected."""

    def __init__(self, endpoints, path, flush_every_s=0.01, **kw):
        self.sub = Subscriber(endpoints, ())
        self.rec = McapRecorder(path, flush_every_s=flush_every_s)
        self.stop = threading.Event()
        self.idle = 0
        self.thread = threading.Thread(target=record, args=(self.sub, self.rec, self.stop),
                                       kwargs={"on_idle": self._on_idle, "idle_ms": 20, **kw}, daemon=True)
        self.thread.start()

    def _on_idle(self):
        self.idle += 1

    def sync(self, pub: Publisher, timeout=5.0) -> None:
        """Publish on ``sync`` until the recorder has one (ZeroMQ drops what precedes the connection)."""
        end = time.monotonic() + timeout
        while self.rec.messages_written == 0:
            assert time.monotonic() < end, "the recorder never connected"
            pub.publish("sync")
            time.sleep(0.01)

    def close(self):
        self.stop.set()
        self.thread.join(5)
        assert not self.thread.is_alive()
        self.sub.close()


# ------------------------------------------------------------------------------------ round trip
def test_round_trip_through_the_bus_is_exact(tmp_path):
    ep = f"ipc://{tmp_path}/p.sock"
    pub = Publisher(ep, "producer")
    wall_before = time.time_ns()
    r = _Recording([ep], tmp_path / "r.mcap")
    try:
        r.sync(pub)
        headers = [{"t0": 1.0 + i / 3, "nested": {"a": [1, 2.5, "x", None, True], "b": {"c": -(2**63)}},
                    "blob": b"\x00\xff" * i, "name": "ünï", "big": 2**64 - 1, "tiny": 5e-324} for i in range(20)]
        sent = [pub.publish("chunk", h, _arrays(i), derived=[{"src": "task", "topic": "task", "seq": i,
                                                              "stamp_ns": 10 + i}])
                for i, h in enumerate(headers)]
        end = time.monotonic() + 5
        while r.rec.messages_written < 21 and time.monotonic() < end:
            time.sleep(0.01)
    finally:
        r.close()
        pub.close()
    wall_after = time.time_ns()
    assert r.idle >= 1 and r.rec.malformed == 0
    got = list(read_recording(tmp_path / "r.mcap", ["chunk"]))
    assert len(got) == 20
    offset = int(summarize(tmp_path / "r.mcap")["metadata"]["clock"]["monotonic_to_unix_ns"])
    assert offset == r.rec.monotonic_to_unix_ns and abs(offset - (time.time_ns() - time.monotonic_ns())) < 1e9
    for i, (m, s) in enumerate(zip(got, sent)):
        assert m.topic == "chunk" and m.publish_time_ns == s.stamp_ns + offset   # the sender's stamp, exactly
        assert m.header == {**headers[i], "v": 1, "seq": s.seq, "stamp_ns": s.stamp_ns, "src": "producer",
                            "derived": [{"src": "task", "topic": "task", "seq": i, "stamp_ns": 10 + i}]}
        assert type(m.header["blob"]) is bytes and type(m.header["big"]) is int
        _same_arrays(m.arrays, _arrays(i))
        assert wall_before <= m.log_time_ns <= wall_after      # the recorder's wall clock at receipt
        assert m.log_time_ns - m.publish_time_ns > -1_000_000  # received after it was sent (± wall-clock slew)
        m.arrays["q"][0, 0] = 1.0                             # the arrays are the caller's to modify


_DTYPES = st.sampled_from(["<f8", ">f8", "<f4", "<f2", "<c16", "<c8", "|b1", "|i1", "<i2", "<i4", "<i8",
                           ">i4", "|u1", "<u2", "<u4", "<u8"])


@settings(max_examples=150, deadline=None)
@given(arrs=st.dictionaries(st.text(min_size=1, max_size=8),
                            _DTYPES.flatmap(lambda dt: hnp.arrays(dt, hnp.array_shapes(min_dims=0, max_dims=3,
                                                                                        min_side=0, max_side=6))),
                            max_size=4),
       header=st.recursive(st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1)
                           | st.floats(allow_nan=False) | st.text() | st.binary(),
                           lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(), c, max_size=3),
                           max_leaves=10))
def test_the_json_encoding_is_bit_exact_for_every_array_and_header(arrs, header):
    body = message_json({"v": header}, arrs)
    json.loads(body)                                           # one JSON document (array names may clash: "v")
    got_header, got_arrays = decode_message(body)
    assert got_header == {"v": header}
    _same_arrays(got_arrays, arrs)


def test_the_fast_float_text_is_exact():
    """The 17-digit long-double path (used for float arrays of ≥ 16 elements) reads back bit for bit."""
    rng = np.random.default_rng(7)
    x = rng.choice([-1, 1], 200_000) * 10.0 ** rng.uniform(-10, 16, 200_000)
    x = (x.view(np.int64) + rng.integers(-2, 3, x.size)).view(np.float64)        # odd low bits too
    edges = np.array([0.0, 1e-10, 1.0, 0.1, 0.5, 1e15, np.nextafter(1e16, 0), 123456789.0, 2.0**-33, -7.0])
    powers = np.concatenate([10.0 ** np.arange(-10, 16), np.nextafter(10.0 ** np.arange(-9, 16), 0),
                             np.nextafter(10.0 ** np.arange(-10, 15), 1e300)])
    x = np.concatenate([edges, powers, -powers, np.round(x, 3), x])
    x = x[(np.abs(x) < 1e16) & ((np.abs(x) >= 1e-10) | (x == 0)) & ~np.signbit(np.where(x == 0, x, 1.0))]
    if not encoding_mod._LD_EXACT:
        pytest.skip("no 80-bit long double on this platform: floats take the repr path")
    text = _float_text(x)
    assert text is not None
    back = np.array(json.loads("[" + text + "]"), dtype=np.float64)
    assert back.tobytes() == x.tobytes()
    assert _float_text(np.array([1.0, np.nan])) is None and _float_text(np.array([-0.0])) is None
    nested = x[: 7 * (x.size // 7)].reshape(-1, 7)             # the same numbers as (N, 7) rows
    doc = json.loads(message_json({}, {"q": nested}))
    assert len(doc["q"]) == nested.shape[0] and all(len(row) == 7 for row in doc["q"][:100])
    assert np.array(doc["q"], dtype=np.float64).tobytes() == nested.tobytes()


def test_nans_with_a_payload_keep_their_bits():
    a = np.array([0x7FF8000000000001, 0xFFF8000000000000, 0x7FF4000000000000], np.uint64).view(np.float64)
    body = message_json({}, {"a": a, "b": np.array([np.nan])})
    doc = json.loads(body)
    assert doc["_arrays"][0] == ["a", "<f8", [3], "b64"] and type(doc["a"]) is str   # raw bytes, not numbers
    assert np.isnan(doc["b"][0]) and doc["_arrays"][1] == ["b", "<f8", [1]]   # a plain NaN stays a JSON number
    _same_arrays(decode_message(body)[1], {"a": a, "b": np.array([np.nan])})


# ---------------------------------------------------------------------------------- crash safety
def test_a_killed_recorder_process_loses_nothing_flushed(tmp_path):
    """SIGKILL the recorder process (while it is busy with another stream) 3 flush intervals after it
    wrote the last of n messages: all n are in the file, which has no summary or footer; recovered,
    the standard seeking reader finds every one of them through the summary and indexes."""
    flush = 0.02
    ep, ep2 = f"ipc://{tmp_path}/data.sock", f"ipc://{tmp_path}/noise.sock"
    path = tmp_path / "crash.mcap"
    code = textwrap.dedent(f"""
        import threading
        from kinebridge.runtime.bus.sockets import Subscriber
        from kinebridge.runtime.recording.recorder import McapRecorder, record

        class Rec(McapRecorder):             # reports the last `data` message it has written
            last = -1

            def write(self, msg, log_time_ns):
                super().write(msg, log_time_ns)
                if msg.topic == "data":
                    self.last = msg.header["i"]

        sub = Subscriber([{ep!r}, {ep2!r}], ())
        rec = Rec({str(path)!r}, flush_every_s={flush})
        print("up", flush=True)
        record(sub, rec, threading.Event(), on_idle=lambda: print(rec.last, flush=True), idle_ms=10)
    """)
    pub, noise = Publisher(ep, "producer"), Publisher(ep2, "noisy")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    stop_noise = threading.Event()

    def make_noise():      # keeps the recorder writing while it is killed: the last record may be torn
        while not stop_noise.is_set():
            noise.publish("noise", {"pad": "x" * 3000}, {"q": np.zeros((50, 7))})
            time.sleep(0.001)

    th = threading.Thread(target=make_noise, daemon=True)
    try:
        assert proc.stdout.readline().strip() == b"up"
        end = time.monotonic() + 10
        while not list(read_recording(path, ["sync"])):       # connected: its messages reach the file
            assert time.monotonic() < end and proc.poll() is None, "the recorder never received anything"
            pub.publish("sync")
            time.sleep(0.02)
        th.start()
        n = 300
        for i in range(n):
            pub.publish("data", {"i": i}, {"q": np.full((50, 7), float(i)), "k": np.arange(i % 5)})
            if i % 50 == 49:
                time.sleep(0.005)                              # stay well under the high-water marks
        end = time.monotonic() + 10
        while int(proc.stdout.readline() or -2) != n - 1:     # the recorder has written the last one
            assert time.monotonic() < end and proc.poll() is None, "the recorder fell behind"
        time.sleep(3 * flush)                                  # ≥ one flush interval later: it must survive
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)
    finally:
        stop_noise.set()
        if th.is_alive():
            th.join(2)
        pub.close(), noise.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        proc.stdout.close()
    info = summarize(path)
    assert not info["complete"]                                # no summary, no footer: killed mid-run
    got = list(read_recording(path, ["data"]))
    assert [m.header["i"] for m in got] == list(range(n))
    assert [m.header["seq"] for m in got] == list(range(n))
    for m in got[::37]:
        np.testing.assert_array_equal(m.arrays["q"], np.full((50, 7), float(m.header["i"])))
    assert info["topics"]["data"]["count"] == n and info["topics"]["data"]["gaps"] == 0
    assert info["topics"]["noise"]["count"] > 0
    assert info["chunks"] > 1 and info["compression"] == ["zstd"]
    with open(path, "ab") as f:                                # a record torn in the middle: skipped
        f.write(b"\x05\x40\x00\x00\x00\x00\x00\x00\x00\x01\x02")
    assert len(list(read_recording(path, ["data"]))) == n
    assert summarize(path)["torn_bytes"] >= 11
    cut = path.read_bytes()
    res = recover(path)                                         # → crash-recovered.mcap beside it
    assert path.read_bytes() == cut                             # the cut file is left as it was
    assert res["out"] == str(tmp_path / "crash-recovered.mcap") and not res["complete"] and res["torn_bytes"] >= 11
    assert res["messages"] == info["messages"] and res["corrupt"] is None
    from mcap.reader import make_reader
    with open(res["out"], "rb") as f:
        reader = make_reader(f)
        summary = reader.get_summary()
        data = list(reader.iter_messages(topics=["data"]))     # through the chunk indexes
        meta = {m.name: m.metadata for m in reader.iter_metadata()}
    assert summary.statistics.message_count == info["messages"] and len(summary.chunk_indexes) >= 1
    assert [json.loads(m.data)["i"] for _s, _c, m in data] == list(range(n))
    assert [m.sequence for _s, _c, m in data] == list(range(n))
    assert meta["recovered"]["from"] == "crash.mcap" and meta["clock"] == info["metadata"]["clock"]
    again = list(read_recording(res["out"], ["data"]))          # and the arrays still round-trip exactly
    assert [m.header for m in again] == [m.header for m in got]
    _same_arrays(again[-1].arrays, got[-1].arrays)
    assert summarize(res["out"])["complete"]
    with pytest.raises(ValueError, match="never overwrites"):
        recover(path)


def test_a_file_cut_at_any_byte_reads_every_complete_message(tmp_path):
    """flush_every_s=0: every message is a chunk of its own, readable once that chunk is whole; a cut
    file recovered holds, for the standard seeking reader, exactly what the tolerant reader reads."""
    from mcap.reader import make_reader

    path = tmp_path / "full.mcap"
    rec = McapRecorder(path, flush_every_s=0)
    written = []
    for i in range(6):
        rec.write(Message("t", {"seq": i, "stamp_ns": 100 + i, "src": "a"}, {"x": np.arange(i, dtype=np.int16)}),
                  1000 + i)
        written.append(rec.bytes_written)                      # the chunk and its message index are out
    rec.write_frames([b"bad"], 2000)
    rec.close()
    with open(path, "rb") as f:
        chunks = make_reader(f).get_summary().chunk_indexes
    assert len(chunks) == 7                                    # one per message, the malformed one included
    ends = [c.chunk_start_offset + c.chunk_length for c in chunks[:6]]   # each message's chunk ends here
    assert all(e <= w for e, w in zip(ends, written))
    data = path.read_bytes()
    cut = tmp_path / "cut.mcap"
    for n in range(len(data) + 1):
        cut.write_bytes(data[:n])
        got = [m.header["seq"] for m in read_recording(cut)]
        assert got == list(range(sum(e <= n for e in ends))), n
        if n % 97 == 0 and n >= 8:
            fixed = tmp_path / f"fixed{n}.mcap"
            recover(cut, fixed)
            with open(fixed, "rb") as f:
                std = [json.loads(m.data)["seq"] for _s, c, m in make_reader(f).iter_messages() if c.topic == "t"]
            assert std == got, n
    assert summarize(path)["complete"] and summarize(path)["torn_bytes"] == 0


def test_not_an_mcap_file_is_refused_with_its_path(tmp_path):
    p = tmp_path / "x.mcap"
    p.write_bytes(b"hello world, not a recording")
    with pytest.raises(ValueError, match=r"x\.mcap: not an MCAP file"):
        read_recording(p)
    with pytest.raises(ValueError, match="no such recording"):
        summarize(tmp_path / "missing.mcap")
    from mcap.writer import Writer
    with open(tmp_path / "ros.mcap", "wb") as f:               # an MCAP file from another tool
        w = Writer(f, use_chunking=False)
        w.start()
        sid = w.register_schema("std_msgs/String", "ros1msg", b"string data")
        w.add_message(w.register_channel("/chatter", "ros1", sid), log_time=1, data=b"\0\0\0\0", publish_time=1)
        w.finish()
    with pytest.raises(ValueError, match="message encoding 'ros1'"):
        list(read_recording(tmp_path / "ros.mcap"))


# ------------------------------------------------------------------------------- standard reader
def _iter_from(reader, start_ns):
    try:
        return reader.iter_messages(starting_at=start_ns)
    except TypeError:                                            # mcap < 1.6
        return reader.iter_messages(start_time=start_ns)


def test_the_standard_mcap_reader_opens_it(tmp_path):
    from mcap.reader import make_reader

    path = tmp_path / "r.mcap"
    with McapRecorder(path, metadata={"node": "recorder", "run": 7}) as rec:
        for i in range(12):
            src = "control" if i % 2 else "trajectory"
            rec.write(Message("state" if i % 2 else "chunk", {"seq": i // 2, "stamp_ns": 10 * i, "src": src},
                              {"q": np.full((50, 7), i / 3)}), 1000 + i)
    with open(path, "rb") as f:
        reader = make_reader(f)
        msgs = list(reader.iter_messages())
        summary = reader.get_summary()
        meta = {m.name: m.metadata for m in reader.iter_metadata()}
        late = [m.log_time for _s, _c, m in _iter_from(reader, 1009)]   # seeks by the chunk index
    assert len(msgs) == 12 == summary.statistics.message_count
    assert late == [1009, 1010, 1011]
    assert {(c.topic, c.metadata["src"]) for c in summary.channels.values()} == {("chunk", "trajectory"),
                                                                                 ("state", "control")}
    # chunked, zstd, and the message indexes Foxglove's indexed reader needs beside every chunk
    assert summary.chunk_indexes and all(c.compression == "zstd" for c in summary.chunk_indexes)
    assert all(c.message_index_length > 0 and c.message_index_offsets for c in summary.chunk_indexes)
    assert sum(c.compressed_size for c in summary.chunk_indexes) < sum(c.uncompressed_size for c in summary.chunk_indexes)
    offset = int(meta["clock"]["monotonic_to_unix_ns"])
    for schema, channel, m in msgs:
        assert channel.message_encoding == "json" and schema.encoding == "jsonschema"
        json.loads(schema.data)
        doc = json.loads(m.data)                                # plain JSON: what Foxglove plots (.q[0][3])
        assert np.array(doc["q"]).shape == (50, 7) and doc["_arrays"] == [["q", "<f8", [50, 7]]]
        assert m.sequence == doc["seq"] and m.publish_time == doc["stamp_ns"] + offset
    schemas = {c.topic: json.loads(summary.schemas[c.schema_id].data) for c in summary.channels.values()}
    assert {"t0", "dt", "q", "seq", "stamp_ns"} <= set(schemas["chunk"]["properties"])   # registered: named fields
    assert schemas["chunk"]["properties"]["q"]["items"]["maxItems"] == 7
    assert schemas["state"]["title"] == "kinebridge bus message"           # not registered: the generic schema
    assert meta["kinebridge"] == {"node": "recorder", "run": "7"}
    assert meta["clock"]["clock"] == "CLOCK_REALTIME" and meta["clock"]["stamp_clock"] == "CLOCK_MONOTONIC"
    assert int(meta["clock"]["monotonic_ns_at_start"]) > 0
    assert offset == int(meta["clock"]["unix_ns_at_start"]) - int(meta["clock"]["monotonic_ns_at_start"])
    assert [len(list(read_recording(path, [t]))) for t in ("chunk", "state")] == [6, 6]


# --------------------------------------------------------------------------------------- malformed
def test_malformed_messages_are_kept_and_counted(tmp_path):
    ep = f"ipc://{tmp_path}/raw.sock"
    ctx = zmq.Context.instance()
    raw = ctx.socket(zmq.PUB)
    raw.setsockopt(zmq.LINGER, 0)
    raw.bind(ep)
    r = _Recording([ep], tmp_path / "m.mcap")
    ext = msgpack.packb({"seq": 0, "stamp_ns": 1, "src": "x", "odd": msgpack.ExtType(5, b"?")})
    bad = [[b"chunk", b"\xc1 not msgpack"], [b"lonely"], [b"chunk", msgpack.packb({"_arrays": [["q", "<f8", [2]]]})],
           [b"chunk", ext]]
    try:
        end = time.monotonic() + 5
        while r.rec.messages_written == 0:                       # sync with well-formed messages
            assert time.monotonic() < end
            raw.send_multipart(encode("sync", {"seq": 0, "stamp_ns": 1, "src": "x"}))
            time.sleep(0.01)
        for frames in bad:
            raw.send_multipart(frames)
        while r.rec.malformed < len(bad) and time.monotonic() < end:
            time.sleep(0.01)
    finally:
        r.close()
        raw.close()
    assert r.rec.malformed == len(bad)
    assert all(m.topic == "sync" for m in read_recording(tmp_path / "m.mcap"))   # left out unless asked for
    kept = list(read_recording(tmp_path / "m.mcap", ["_malformed"]))
    assert [m.header["frames"] for m in kept] == bad
    assert "msgpack" in kept[0].header["error"] and "at least 2 frames" in kept[1].header["error"]
    assert "arrays" in kept[2].header["error"] and "ExtType" in kept[3].header["error"]
    assert summarize(tmp_path / "m.mcap")["malformed"] == len(bad)


# ------------------------------------------------------------------------------------------ replay
def _sequence(path, n=10, dt_ns=20_000_000):
    with McapRecorder(path) as rec:
        for i in range(n):
            frames = encode(A if i % 3 else B, {"v": 1, "seq": i, "stamp_ns": 1000 + i, "src": "trajectory",
                                                 "t0": float(i)}, {"q": np.full((3, 7), float(i))})
            rec.write(decode([bytes(f) for f in frames]), log_time_ns=5_000_000_000 + i * dt_ns)


def _collect(sub: Subscriber, n: int, timeout=3.0) -> list:
    out = []
    end = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < end:
        m = sub.recv(20)
        if m is not None:
            out.append(m)
    time.sleep(0.02)
    return out + sub.drain()                                    # and nothing more


def test_replay_reproduces_topics_arrays_stamps_and_timing(tmp_path):
    _sequence(tmp_path / "r.mcap")
    ep = f"ipc://{tmp_path}/replay.sock"
    pub = Publisher(ep, "replay")
    sub = Subscriber([ep], (A, B))
    try:
        end = time.monotonic() + 5
        while not sub.recv(10):
            assert time.monotonic() < end
            pub.publish(A, {"sync": True})
        sub.drain()
        res = replay(tmp_path / "r.mcap", pub, speed=1.0, progress=False)
        got = _collect(sub, 10)
        assert res["count"] == 10 and len(got) == 10
        assert [m.topic for m in got] == [B if i % 3 == 0 else A for i in range(10)]
        for i, m in enumerate(got):
            assert m.header["replayed"] is True and m.header["t0"] == float(i) and m.header["src"] == "replay"
            assert m.header["derived"] == [{"src": "trajectory", "topic": m.topic, "seq": i, "stamp_ns": 1000 + i}]
            np.testing.assert_array_equal(m.arrays["q"], np.full((3, 7), float(i)))
        # paced by the recorded log times (20 ms apart), from an absolute schedule: no drift
        t = np.array([m.header["stamp_ns"] for m in got]) / 1e6
        # (each message on its schedule: a late wake-up on a loaded box delays one, the next is on time again)
        assert abs(np.median(np.diff(t)) - 20.0) < 2.0, np.diff(t)
        assert np.all(np.abs(t - t[0] - 20.0 * np.arange(len(t))) < 15.0), np.diff(t)
        assert abs(t[-1] - t[0] - 180.0) < 10.0

        res = replay(tmp_path / "r.mcap", pub, speed=0, progress=False, topics=[A])
        got = _collect(sub, 6)
        assert res["count"] == 6 and [m.topic for m in got] == [A] * 6 and res["duration_s"] < 0.1
        res = replay(tmp_path / "r.mcap", pub, speed=4.0, progress=False)
        assert 0.045 - 0.005 < res["duration_s"] < 0.045 + 0.05
        assert len(_collect(sub, 10)) == 10

        stop = threading.Event()
        threading.Timer(0.45, stop.set).start()                 # loop: 180 ms a pass, stopped in the 3rd
        res = replay(tmp_path / "r.mcap", pub, speed=1.0, loop=True, stop_event=stop, progress=False)
        assert 20 < res["count"] < 30 and res["duration_s"] < 0.6
        with pytest.raises(ValueError, match="speed"):
            replay(tmp_path / "r.mcap", pub, speed=-1)
    finally:
        pub.close(), sub.close()


# ----------------------------------------------------------------------------------------- summary
def test_summarize_counts_rates_gaps_and_restarts(tmp_path):
    path = tmp_path / "s.mcap"
    rec = McapRecorder(path, flush_every_s=0)
    t = 0

    def put(topic, src, seq):
        nonlocal t
        rec.write(Message(topic, {"seq": seq, "stamp_ns": t, "src": src}, {}), 10_000_000_000 + t)
        t += 10_000_000                                           # 100 Hz

    for seq in (0, 1, 2, 5, 6, 7):                               # 3, 4 dropped upstream
        put("state", "control", seq)
    for seq in (0, 1, 2, 0, 1, 9):                               # restarted, then 2..8 lost
        put("state", "control2", seq)
    for seq in range(4):
        put("chunk", "trajectory", seq)
    rec.write_frames([b"junk"], 10_000_000_000 + t)
    s = summarize(path)                                           # while still open: no footer yet
    assert not s["complete"] and s["messages"] == 17 and s["malformed"] == 1
    rec.close()
    s = summarize(path)
    assert s["complete"] and s["messages"] == 17
    st_ = s["topics"]["state"]
    assert st_["count"] == 12 and st_["gaps"] == 2 + 7
    assert st_["publishers"]["control"] == {"count": 6, "first_seq": 0, "last_seq": 7, "gaps": 2, "restarts": 0}
    assert st_["publishers"]["control2"] == {"count": 6, "first_seq": 0, "last_seq": 9, "gaps": 7, "restarts": 1}
    assert st_["first_s"] == 10.0 and st_["rate_hz"] == pytest.approx(11 / 0.11)
    assert s["topics"]["chunk"]["count"] == 4 and s["topics"]["chunk"]["gaps"] == 0
    assert s["duration_s"] == pytest.approx(0.16)
    assert s["metadata"]["clock"]["clock"] == "CLOCK_REALTIME" and s["metadata"]["clock"]["stamp_clock"] == "CLOCK_MONOTONIC"
    assert s["chunks"] == 17 and s["compression"] == ["zstd"]
    import datetime
    assert datetime.datetime.fromisoformat(s["start"]).timestamp() == 10.0    # log times are Unix ns


def test_record_calls_on_idle_and_closes_the_file_when_stopped(tmp_path):
    ep = f"ipc://{tmp_path}/p.sock"
    pub = Publisher(ep, "producer")
    r = _Recording([ep], tmp_path / "r.mcap")
    try:
        r.sync(pub)
        time.sleep(0.3)
    finally:
        r.close()
        pub.close()
    assert r.idle >= 8                                           # idle_ms=20 for ≥ 0.3 s
    assert summarize(tmp_path / "r.mcap")["complete"]
    with pytest.raises(ValueError, match="closed"):
        r.rec.write(Message("t", {}, {}), 0)


# ----------------------------------------------------------------------------------- schemas, layout
def test_every_registered_topic_has_a_schema_with_its_named_fields_and_arrays():
    from kinebridge.runtime.bus import messages as M
    from kinebridge.runtime.recording.encoding import topic_schema

    for topic, spec in M.TOPICS.items():
        s = json.loads(topic_schema(topic))
        props = s["properties"]
        assert s["type"] == "object" and s["description"] == spec.description, topic
        assert set(spec.body.model_fields) | {"v", "seq", "stamp_ns", "src", "derived", "_arrays"} <= set(props)
        for name, a in (spec.body.ARRAYS or {}).items():
            node, shape = props[name], a.shape
            for n in shape:                                       # nested arrays, one level per axis
                assert node["type"] == "array", (topic, name)
                if n is not None:
                    assert node["minItems"] == node["maxItems"] == n
                node = node["items"]
            assert node["type"] == ("integer" if np.dtype(a.dtype).kind in "iu" else "number"), (topic, name)
    state = json.loads(topic_schema(M.ControlState.TOPIC))["properties"]
    assert state["q"]["items"] == {"type": "number"} and state["tick"]["type"] == "integer"


def test_a_control_state_reads_as_foxglove_plots_it(tmp_path):
    """/control/state.q[0], /control/state.tick: values at the top level, arrays as plain numbers."""
    from kinebridge.runtime.bus import messages as M

    q = np.linspace(-1, 1, 7)
    body = message_json({"v": 1, "seq": 3, "stamp_ns": 5, "src": "control", "t": 0.5, "tick": 3, "sent": True,
                         "starved": 0, "held": 0, "at_rest": False}, {"q_cmd": q + 1e-3, "q": q})
    doc = json.loads(body)
    assert doc["q"][0] == q[0] and doc["q"][6] == q[6] and doc["tick"] == 3 and doc["q_cmd"][1] == q[1] + 1e-3
    assert set(doc) - {"_arrays"} <= set(json.loads(__import__("kinebridge.runtime.recording.encoding",
                                                                fromlist=["x"]).topic_schema(
        M.ControlState.TOPIC))["properties"])


def test_recordings_of_the_previous_layout_still_read(tmp_path):
    """kinebridge-json-1 files (header and {dtype, shape, data} arrays, unchunked) read as before."""
    from mcap.writer import Writer

    path = tmp_path / "v1.mcap"
    with open(path, "wb") as f:
        w = Writer(f, use_chunking=False)
        w.start(profile="kinebridge")
        w.add_metadata("clock", {"clock": "CLOCK_MONOTONIC", "format": "kinebridge-json-1"})
        cid = w.register_channel("chunk", "json", w.register_schema("kinebridge.chunk", "jsonschema", b"{}"),
                                 {"src": "trajectory"})
        doc = {"header": {"v": 1, "seq": 0, "stamp_ns": 7, "src": "trajectory", "t0": 1.5, "blob": {"$bytes": "AAE="}},
               "arrays": {"q": {"dtype": "<f8", "shape": [2, 1], "data": [0.1, 0.2]},
                          "v": {"dtype": "<f8", "shape": [1], "data_b64": "AQAAAAAA+H8="}}}
        w.add_message(cid, log_time=9, data=json.dumps(doc).encode(), publish_time=7)
        w.finish()
    (m,) = list(read_recording(path))
    assert m.header == {"v": 1, "seq": 0, "stamp_ns": 7, "src": "trajectory", "t0": 1.5, "blob": b"\x00\x01"}
    assert m.arrays["q"].shape == (2, 1) and m.arrays["q"][1, 0] == 0.2
    assert m.arrays["v"].view(np.uint64)[0] == 0x7FF8000000000001
    assert summarize(path)["start"] is None                     # monotonic log times: no date claimed


# ------------------------------------------------------------------------------------------ rotation
class _Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def _msg(i, n=7):
    return Message("t", {"seq": i, "stamp_ns": 10 * i, "src": "a", "i": i},
                   {"q": np.random.default_rng(i).normal(size=(n, 7))})


def test_rotation_by_duration_makes_complete_files_that_chain(tmp_path):
    from mcap.reader import make_reader

    clock = _Clock()
    rec = RotatingRecorder(tmp_path, "kb-x", rotate_s=1.0, rotate_mb=0, flush_every_s=0.05, clock=clock,
                           metadata={"node": "recorder"})
    for i in range(35):                                          # 0.1 s apart: 10 messages a file
        clock.now = 100.0 + i / 10
        rec.write(_msg(i), 1_700_000_000_000_000_000 + i)
    done = list(rec.paths)
    sizes = [p.stat().st_size for p in done[:-1]]
    rec.write(_msg(35), 1_700_000_000_000_000_035)              # the closed files are not touched again
    assert [p.stat().st_size for p in done[:-1]] == sizes
    rec.close()
    assert [p.name for p in rec.paths] == [f"kb-x-{k:03d}.mcap" for k in range(4)] == sorted(
        p.name for p in tmp_path.glob("*.mcap"))
    assert rec.messages_written == 36 and rec.bytes_written == sum(p.stat().st_size for p in rec.paths)
    seen = []
    for k, p in enumerate(rec.paths):
        with open(p, "rb") as f:                                 # each file complete and self-describing
            reader = make_reader(f)
            summary = reader.get_summary()
            meta = {m.name: m.metadata for m in reader.iter_metadata()}
            seen += [json.loads(m.data)["i"] for _s, _c, m in reader.iter_messages()]
        assert summary.statistics.message_count == (10 if k < 3 else 6) and summary.chunk_indexes
        assert meta["recording"]["part"] == str(k) and meta["recording"]["session"] == "kb-x"
        assert meta["recording"]["previous"] == (rec.paths[k - 1].name if k else "")
        assert meta["kinebridge"] == {"node": "recorder"} and "monotonic_to_unix_ns" in meta["clock"]
    assert seen == list(range(36))
    with pytest.raises(FileExistsError):                         # a file is never opened for writing twice
        RotatingRecorder(tmp_path, "kb-x")


def test_rotation_by_size(tmp_path):
    clock = _Clock()
    rec = RotatingRecorder(tmp_path, "kb-s", rotate_mb=0.02, rotate_s=0, flush_every_s=0, clock=clock)
    for i in range(60):                                          # ≈ 1 kB compressed a message
        rec.write(_msg(i, 20), i)
        clock.now += 10.0                                        # no duration limit
    rec.close()
    assert len(rec.paths) >= 2
    per_file = [summarize(p) for p in rec.paths]
    assert all(s["complete"] for s in per_file) and sum(s["messages"] for s in per_file) == 60
    for p in rec.paths[:-1]:
        assert 20_000 <= p.stat().st_size < 20_000 + 12_000      # rotated once past the limit (+ its summary)
    assert [m.header["i"] for p in rec.paths for m in read_recording(p)] == list(range(60))
    with pytest.raises(ValueError, match="rotate_mb"):
        RotatingRecorder(tmp_path, "kb-bad", rotate_mb=-1)


# ----------------------------------------------------------------------------------------------- CLI
def _run_recording(path):
    """A short synthetic run: control/state at 200 Hz, control/timing at 5 Hz, chunk latencies at 10 Hz."""
    from kinebridge.runtime.bus import messages as M

    clock = _Clock()
    with McapRecorder(path, flush_every_s=0.05, clock=clock) as rec:   # a chunk every 10 states
        for i in range(200):
            t_ns = 5_000_000_000 + i * 5_000_000
            clock.now = t_ns / 1e9
            q = np.sin(np.arange(7) + i / 50)
            rec.write(Message(M.ControlState.TOPIC, {
                "v": 1, "seq": i, "stamp_ns": t_ns, "src": "control", "t": t_ns / 1e9, "tick": i, "sent": True,
                "starved": 0, "held": 0, "at_rest": False}, {"q_cmd": q, "q": q - 1e-3}), 1_700_000_000_000_000_000 + t_ns)
            if i % 40 == 39:
                rec.write(Message(M.ControlTiming.TOPIC, {"v": 1, "seq": i // 40, "stamp_ns": t_ns, "src": "control",
                                                          "rate_hz": 200.0},
                                  {"lateness_ns": np.arange(40, dtype=np.int64) * 100,
                                   "tick_ns": np.full(40, 1000, np.int64)}), 1_700_000_000_000_000_000 + t_ns)
            if i % 20 == 10:
                rec.write(Message(M.ChunkLatency.TOPIC, {"v": 1, "seq": i // 20, "stamp_ns": t_ns, "src": "control",
                                                         "latency_ns": 2_500_000, "waiting_ns": 2_000_000,
                                                         "tick_work_ns": 500_000}), 1_700_000_000_000_000_000 + t_ns)


def test_replay_info_and_recover_on_the_command_line(tmp_path, capsys):
    from kinebridge.runtime.cli.main import main

    path = tmp_path / "run.mcap"
    _run_recording(path)
    data = path.read_bytes()
    cut = tmp_path / "cut.mcap"
    cut.write_bytes(data[: len(data) * 2 // 3])                  # what a crash leaves
    assert main(["replay", "--info", str(cut)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert not info["complete"] and 0 < info["topics"]["control/state"]["count"] < 200
    assert info["topics"]["control/state"]["gaps"] == 0 and info["topics"]["control/state"]["rate_hz"] == pytest.approx(200)
    assert main(["replay", "--recover", str(cut), "--out", str(tmp_path / "fixed.mcap")]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["out"] == str(tmp_path / "fixed.mcap") and res["messages"] == info["messages"]
    fixed = summarize(tmp_path / "fixed.mcap")
    assert fixed["complete"] and fixed["topics"]["control/state"]["count"] == info["topics"]["control/state"]["count"]
    assert main(["replay", "--recover", str(cut), "--out", str(tmp_path / "fixed.mcap")]) == 2   # never overwrites
    assert "never overwrites" in capsys.readouterr().err
    assert main(["replay", "--out", "x.mcap", str(cut)]) == 2


def test_plot_draws_a_run_and_names_what_is_missing(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from kinebridge.runtime.cli.main import main
    from kinebridge.runtime.recording.plot import load_run

    path = tmp_path / "run.mcap"
    _run_recording(path)
    d = load_run(path)
    assert d["q_cmd"].shape == (200, 7) and d["lateness_us"].size == 5 * 40 and d["latency_ms"].size == 10
    np.testing.assert_allclose(np.diff(d["lateness_t"][:40]), 0.005)   # a batch spread over its ticks
    assert d["lateness_t"][39] == d["state_t"][39]
    assert main(["plot", str(path)]) == 0
    png = tmp_path / "run.png"
    assert capsys.readouterr().out.strip() == str(png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    other = tmp_path / "other.mcap"
    with McapRecorder(other) as rec:
        rec.write(_msg(0), 1)
    assert main(["plot", str(other), "--out", str(tmp_path / "o.png")]) == 2
    err = capsys.readouterr().err
    assert "nothing to plot" in err and "control/state" in err and "holds: t" in err
    assert not (tmp_path / "o.png").exists()


def test_plot_without_matplotlib_names_the_extra(tmp_path):
    path = tmp_path / "run.mcap"
    _run_recording(path)
    block = tmp_path / "block" / "matplotlib"
    block.mkdir(parents=True)
    (block / "__init__.py").write_text("raise ImportError('matplotlib is blocked')\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "block") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    r = subprocess.run([sys.executable, "-m", "kinebridge.runtime.cli.main", "plot", str(path)], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "kinebridge[eval]" in r.stderr, r.stderr
    assert not (tmp_path / "run.png").exists()
