"""The recorder: exact round trip through real sockets, crash safety, standard-reader compatibility, replay."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from kinebridge.runtime.bus import Publisher, Subscriber
from kinebridge.runtime.recorder import McapRecorder, read_recording, record, replay, summarize


def _arrays(i):
    return {"q": np.random.default_rng(i).normal(size=(50, 7)), "n": np.arange(3, dtype=np.int32) + i,
            "ok": np.array([True, False]), "scalar": np.float64(i / 7), "empty": np.zeros((0, 7)),
            "bad": np.array([np.nan, np.inf, -np.inf])}


def _record_in_thread(ep, path):
    sub = Subscriber([ep], ())
    rec = McapRecorder(path, flush_every_s=0.02)
    stop = threading.Event()
    th = threading.Thread(target=record, args=(sub, rec, stop), kwargs={"idle_ms": 20}, daemon=True)
    th.start()
    return stop, th, sub


def test_round_trip_through_the_bus_is_exact(tmp_path):
    ep = f"ipc://{tmp_path}/p.sock"
    pub = Publisher(ep, "producer")
    stop, th, sub = _record_in_thread(ep, tmp_path / "r.mcap")
    time.sleep(0.2)
    sent = [pub.publish("chunk", {"t0": 1.0 + i, "nested": {"a": [1, 2.5, "x"], "b": None}}, _arrays(i))
            for i in range(20)]
    time.sleep(0.2)
    stop.set(), th.join(5)
    pub.close(), sub.close()
    got = list(read_recording(tmp_path / "r.mcap"))
    assert len(got) == 20
    for i, (m, s) in enumerate(zip(got, sent)):
        assert m.topic == "chunk" and m.header["seq"] == s["seq"] and m.header["stamp_ns"] == s["stamp_ns"]
        assert m.header["nested"] == {"a": [1, 2.5, "x"], "b": None} and m.publish_time_ns == s["stamp_ns"]
        for name, a in _arrays(i).items():
            a = np.asarray(a)
            assert m.arrays[name].dtype == a.dtype and m.arrays[name].shape == a.shape
            assert m.arrays[name].tobytes() == a.tobytes()        # bit-exact, NaN and inf included
    # the standard MCAP reader opens it too
    from mcap.reader import make_reader
    with open(tmp_path / "r.mcap", "rb") as f:
        msgs = list(make_reader(f).iter_messages())
    assert len(msgs) == 20 and msgs[0][1].message_encoding == "json" and msgs[0][0].encoding == "jsonschema"


def test_a_killed_recorder_loses_nothing_flushed(tmp_path):
    ep = f"ipc://{tmp_path}/p.sock"
    path = tmp_path / "crash.mcap"
    code = textwrap.dedent(f"""
        import threading, sys
        from kinebridge.runtime.bus import Subscriber
        from kinebridge.runtime.recorder import McapRecorder, record
        sub = Subscriber([{ep!r}], ())
        print("up", flush=True)
        record(sub, McapRecorder({str(path)!r}, flush_every_s=0.02), threading.Event(), idle_ms=20)
    """)
    pub = Publisher(ep, "producer")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline().strip() == b"up"
        time.sleep(0.3)
        for i in range(200):
            pub.publish("control/state", {"i": i}, {"q": np.full(7, float(i))})
            time.sleep(0.001)
        time.sleep(0.2)                      # ≥ several flush intervals
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)
    finally:
        pub.close()
        if proc.poll() is None:
            proc.kill()
    got = list(read_recording(path))         # no summary, no footer: read up to the last record
    assert [m.header["i"] for m in got] == list(range(200))
    np.testing.assert_array_equal(got[-1].arrays["q"], np.full(7, 199.0))
    with open(path, "ab") as f:              # a record torn in the middle is skipped, not raised
        f.write(b"\x05\x40\x00\x00\x00\x00\x00\x00\x00\x01\x02")
    assert len(list(read_recording(path))) == 200
    assert summarize(path)["topics"]["control/state"]["count"] == 200


def test_malformed_messages_are_kept(tmp_path):
    rec = McapRecorder(tmp_path / "m.mcap")
    rec.write_frames([b"chunk", b"\xc1 not msgpack"], 1)
    rec.close()
    assert list(read_recording(tmp_path / "m.mcap")) == []
    bad = list(read_recording(tmp_path / "m.mcap", ["_malformed"]))
    assert len(bad) == 1 and "msgpack" in bad[0].header["error"]
    assert summarize(tmp_path / "m.mcap")["malformed"] == 1


def test_not_an_mcap_file(tmp_path):
    p = tmp_path / "x.mcap"
    p.write_bytes(b"hello world")
    with pytest.raises(ValueError, match="not an MCAP file"):
        list(read_recording(p))


def test_replay_reproduces_topics_arrays_and_timing(tmp_path):
    rec = McapRecorder(tmp_path / "r.mcap")
    from kinebridge.runtime.codec import decode, encode
    for i in range(10):
        frames = encode("chunk", {"seq": i, "stamp_ns": 1000 + i, "src": "trajectory", "t0": float(i)},
                        {"q": np.full((3, 7), float(i))})
        rec.write(decode([bytes(f) for f in frames]), log_time_ns=i * 20_000_000)   # 20 ms apart
    rec.close()
    ep = f"ipc://{tmp_path}/replay.sock"
    pub = Publisher(ep, "replay")
    sub = Subscriber([ep], ("chunk",))
    time.sleep(0.2)
    try:
        res = replay(tmp_path / "r.mcap", pub, speed=1.0, progress=False)
        assert res["count"] == 10 and 0.17 <= res["duration_s"] < 0.6
        got = sub.drain()
        assert len(got) == 10
        m = got[7]
        assert m.header["replayed"] is True and m.header["t0"] == 7.0
        assert m.header["derived"] == [["trajectory", "chunk", 7, 1007]]
        np.testing.assert_array_equal(m.arrays["q"], np.full((3, 7), 7.0))
        res = replay(tmp_path / "r.mcap", pub, speed=0, progress=False)
        assert res["duration_s"] < 0.15
    finally:
        pub.close(), sub.close()
