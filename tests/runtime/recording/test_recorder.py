"""The recorder: exact round trip through real sockets, crash safety (a SIGKILLed recorder process,
a file torn at every byte), the standard MCAP reader, malformed messages, replay and its timing,
and the summary used by ``kinebridge replay --info``."""

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
from kinebridge.runtime.recording import recorder as recorder_mod
from kinebridge.runtime.recording.recorder import (McapRecorder, _arrays_from_json, _float_text, _message_json,
                                                   _unbytes, read_recording, record, replay, summarize)
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
    assert r.idle >= 1 and r.rec.malformed == 0
    got = list(read_recording(tmp_path / "r.mcap", ["chunk"]))
    assert len(got) == 20
    for i, (m, s) in enumerate(zip(got, sent)):
        assert m.topic == "chunk" and m.publish_time_ns == s.stamp_ns
        assert m.header == {**headers[i], "v": 1, "seq": s.seq, "stamp_ns": s.stamp_ns, "src": "producer",
                            "derived": [{"src": "task", "topic": "task", "seq": i, "stamp_ns": 10 + i}]}
        assert type(m.header["blob"]) is bytes and type(m.header["big"]) is int
        _same_arrays(m.arrays, _arrays(i))
        assert m.log_time_ns >= s.stamp_ns                   # received after it was sent, same clock
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
    body = _message_json({"v": header}, arrs)
    doc = json.loads(body, object_hook=_unbytes)
    assert doc["header"] == {"v": header}
    _same_arrays(_arrays_from_json(doc["arrays"]), arrs)


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
    if not recorder_mod._LD_EXACT:
        pytest.skip("no 80-bit long double on this platform: floats take the repr path")
    text = _float_text(x)
    assert text is not None
    back = np.array(json.loads("[" + text + "]"), dtype=np.float64)
    assert back.tobytes() == x.tobytes()
    assert _float_text(np.array([1.0, np.nan])) is None and _float_text(np.array([-0.0])) is None


def test_nans_with_a_payload_keep_their_bits():
    a = np.array([0x7FF8000000000001, 0xFFF8000000000000, 0x7FF4000000000000], np.uint64).view(np.float64)
    doc = json.loads(_message_json({}, {"a": a, "b": np.array([np.nan])}))
    assert "data_b64" in doc["arrays"]["a"] and "data" not in doc["arrays"]["a"]
    assert np.isnan(doc["arrays"]["b"]["data"][0])                # a plain NaN stays a JSON number
    _same_arrays(_arrays_from_json(doc["arrays"]), {"a": a, "b": np.array([np.nan])})


# ---------------------------------------------------------------------------------- crash safety
def test_a_killed_recorder_process_loses_nothing_flushed(tmp_path):
    """SIGKILL the recorder process (while it is busy with another stream) 3 flush intervals after it
    wrote the last of n messages: all n are in the file, which has no summary or footer."""
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
    with open(path, "ab") as f:                                # a record torn in the middle: skipped
        f.write(b"\x05\x40\x00\x00\x00\x00\x00\x00\x00\x01\x02")
    assert len(list(read_recording(path, ["data"]))) == n
    assert summarize(path)["torn_bytes"] >= 11


def test_a_file_cut_at_any_byte_reads_every_complete_message(tmp_path):
    path = tmp_path / "full.mcap"
    rec = McapRecorder(path, flush_every_s=0)
    ends = []
    for i in range(6):
        rec.write(Message("t", {"seq": i, "stamp_ns": 100 + i, "src": "a"}, {"x": np.arange(i, dtype=np.int16)}),
                  1000 + i)
        ends.append(rec.bytes_written)                         # each message record ends here
    rec.write_frames([b"bad"], 2000)
    rec.close()
    data = path.read_bytes()
    cut = tmp_path / "cut.mcap"
    for n in range(len(data) + 1):
        cut.write_bytes(data[:n])
        got = [m.header["seq"] for m in read_recording(cut)]
        assert got == list(range(sum(e <= n for e in ends))), n
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
    assert len(msgs) == 12 == summary.statistics.message_count
    assert {(c.topic, c.metadata["src"]) for c in summary.channels.values()} == {("chunk", "trajectory"),
                                                                                 ("state", "control")}
    for schema, channel, m in msgs:
        assert channel.message_encoding == "json" and schema.encoding == "jsonschema"
        json.loads(schema.data)
        doc = json.loads(m.data)                                # plain JSON: what Foxglove plots
        assert doc["arrays"]["q"]["shape"] == [50, 7] and len(doc["arrays"]["q"]["data"]) == 350
        assert m.sequence == doc["header"]["seq"] and m.publish_time == doc["header"]["stamp_ns"]
    assert meta["kinebridge"] == {"node": "recorder", "run": "7"}
    assert meta["clock"]["clock"] == "CLOCK_MONOTONIC" and int(meta["clock"]["monotonic_ns_at_start"]) > 0
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
        assert np.all(np.abs(np.diff(t) - 20.0) < 5.0), np.diff(t)
        assert abs(t[-1] - t[0] - 180.0) < 5.0

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
    assert s["metadata"]["clock"]["clock"] == "CLOCK_MONOTONIC"


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
