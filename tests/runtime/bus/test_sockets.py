"""The bus: stamping, drain-to-latest, bounded queues, malformed input, endpoint and key rules."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import zmq

from kinebridge.runtime.bus import messages as M
from kinebridge.runtime.bus.sockets import (BusError, CurveKeys, Publisher, Subscriber, check_endpoint,
                                            endpoint_is_remote, write_keys)


from tests.runtime.conftest import A, B

Q = np.zeros((50, 7))


@pytest.fixture
def ep(tmp_path):
    return f"ipc://{tmp_path}/node.sock"


def _pair(ep, topics=(A,), **kw):
    pub = Publisher(ep, "producer")
    sub = Subscriber([ep], topics, **kw)
    time.sleep(0.15)  # slow joiner: let the subscription reach the publisher
    return pub, sub


def test_stamps_and_arrays_arrive(ep):
    pub, sub = _pair(ep, ("chunk",))
    try:
        q = np.arange(21.0).reshape(3, 7)
        s0 = pub.send(M.Chunk(t0=1.5, dt=0.01), {"q": q})
        s1 = pub.send(M.Chunk(t0=2.5, dt=0.01), {"q": q + 1}, derived=[s0])
        m0, m1 = sub.recv(1000), sub.recv(1000)
        assert (m0.header["seq"], m1.header["seq"]) == (0, 1) and m0.header["v"] == M.SCHEMA_VERSION
        assert m0.header["src"] == "producer" and m0.header["t0"] == 1.5 and m0.body.t0 == 1.5
        assert m0.header["stamp_ns"] <= m1.header["stamp_ns"] <= time.monotonic_ns()
        assert m1.header["derived"] == [{"src": "producer", "topic": "chunk", "seq": 0, "stamp_ns": s0.stamp_ns}]
        assert m1.derived == [s0] and m1.stamp == s1
        np.testing.assert_array_equal(m1.arrays["q"], q + 1)
        assert s1.seq == 1 and s1.topic == "chunk"
    finally:
        pub.close(), sub.close()


def test_topics_are_exact_names(ep):
    pub, sub = _pair(ep, ("chunk",))
    try:
        pub.publish("chunks", {"t0": 1.0, "dt": 0.01}, {"q": Q})      # shares the prefix, must not be delivered
        pub.publish("chunk", {"t0": 2.0, "dt": 0.01}, {"q": Q})
        m = sub.recv(1000)
        assert m.topic == "chunk" and m.body.t0 == 2.0
        assert sub.recv(50) is None
    finally:
        pub.close(), sub.close()


def test_latest_keeps_the_newest_per_topic_and_counts_gaps(ep):
    pub, sub = _pair(ep, (A, B))
    try:
        for i in range(20):
            pub.publish(A, {"i": i})
        pub.publish(B, {"i": 99})
        time.sleep(0.1)
        newest = sub.latest()
        assert newest[A].header["i"] == 19 and newest[B].header["i"] == 99
        assert sub.counters.received == 21 and sub.counters.gaps == 0
        pub._seq[A] += 5                     # five messages "lost" upstream
        pub.publish(A, {"i": 20})
        assert sub.recv(1000).header["seq"] == 25
        assert sub.counters.gaps == 5
    finally:
        pub.close(), sub.close()


def test_bounded_queue_drops_instead_of_blocking(ep):
    pub = Publisher(ep, "producer", sndhwm=10)
    sub = Subscriber([ep], ("chunk",), rcvhwm=10)
    time.sleep(0.15)
    try:
        t0 = time.perf_counter()
        for i in range(5000):
            pub.send(M.Chunk(t0=float(i), dt=0.01), {"q": Q})
        assert time.perf_counter() - t0 < 5.0      # never blocked on the slow reader
        got = []
        while True:                                # drain until the pipe stays empty (in-flight frames too)
            batch = sub.drain()
            got += batch
            if not batch and sub.sock.poll(200) == 0:
                break
        assert 0 < len(got) < 5000                 # bounded: most were dropped, none blocked
        pub.send(M.Chunk(t0=5000.0, dt=0.01), {"q": Q})   # the next message after the loss reveals the gap
        m = sub.recv(1000)
        assert m.body.t0 == 5000.0 and 0 < sub.counters.gaps <= 5000 - len(got)
    finally:
        pub.close(), sub.close()


def test_malformed_messages_are_counted_not_raised(ep):
    raw = zmq.Context.instance().socket(zmq.PUB)
    raw.setsockopt(zmq.LINGER, 0)
    raw.bind(ep)
    sub = Subscriber([ep], (A,))
    time.sleep(0.15)
    try:
        a = A.encode()
        raw.send_multipart([a, b"\xc1garbage"])                    # not msgpack
        raw.send_multipart([a, b"\x80"])                           # valid map, no bus stamp
        import msgpack
        raw.send_multipart([a, msgpack.packb({"v": 1, "seq": 0, "stamp_ns": 1, "src": "x",
                                              "_arrays": [["q", "<f8", [3]]]}), b"\x00" * 8])  # short frame
        raw.send_multipart([a, msgpack.packb({"seq": 1, "stamp_ns": 2, "src": "x", "ok": True})])  # no version
        raw.send_multipart([a, msgpack.packb({"v": 1, "seq": 2, "stamp_ns": 3, "src": "x", "ok": True})])
        m = sub.recv(1000)
        assert m.header["ok"] is True
        c = sub.counters             # counted by reason: garbage and a short frame; no / no valid version
        assert c.malformed == 4 and c.dropped == {"undecodable": 2, "schema version": 2}
        assert "schema version None" in c.last_error
    finally:
        raw.close(), sub.close()


def test_reserved_header_keys_are_refused(ep):
    pub = Publisher(ep, "producer")
    try:
        with pytest.raises(ValueError, match="stamped by the bus"):
            pub.publish(A, {"seq": 3})
        with pytest.raises(ValueError, match="stamped by the bus"):
            pub.publish(A, {"v": 2})
    finally:
        pub.close()


def test_restarted_publisher_rebinds_a_stale_socket_file(ep):
    a = Publisher(ep, "p")
    a.close()                                    # left its socket file behind, like a crash would
    b = Publisher(ep, "p")
    sub = Subscriber([ep], (A,))
    time.sleep(0.15)
    try:
        b.publish(A, {"n": 1})
        assert sub.recv(1000).header["n"] == 1
    finally:
        b.close(), sub.close()


@pytest.mark.parametrize("ep,remote", [("ipc:///tmp/x.sock", False), ("tcp://127.0.0.1:5000", False),
                                       ("tcp://localhost:5000", False), ("tcp://192.168.1.20:5000", True),
                                       ("tcp://*:5000", True), ("tcp://[::1]:5000", False)])
def test_endpoint_is_remote(ep, remote):
    assert endpoint_is_remote(ep) is remote


@pytest.mark.parametrize("bad,match", [("udp://1.2.3.4:5", "unsupported transport"), ("ipc://rel/path", "absolute"),
                                       ("tcp://host", "PORT"), ("tcp://h:99999", "PORT"),
                                       ("ipc:///" + "x" * 120, "107")])
def test_bad_endpoints_are_named(bad, match):
    with pytest.raises(BusError, match=match):
        check_endpoint(bad)


def test_remote_endpoint_without_keys_is_refused():
    with pytest.raises(BusError, match="CurveZMQ"):
        Publisher("tcp://192.0.2.1:5999", "control")
    with pytest.raises(BusError, match="CurveZMQ"):
        Subscriber(["tcp://192.0.2.1:5999"], (A,))


def test_curve_authenticates_both_ends(tmp_path):
    """A CURVE publisher talks to a subscriber holding an allowed key, and to nobody else."""
    keys = tmp_path / "keys"
    write_keys(str(keys), ["trajectory", "control"])
    ep = "tcp://127.0.0.1:47913"
    ctx = zmq.Context()
    pub = Publisher(ep, "trajectory", ctx=ctx, curve=CurveKeys(str(keys), "trajectory"))
    good = Subscriber([ep], (A,), ctx=ctx, curve=CurveKeys(str(keys), "control"), servers={ep: "trajectory"})

    def raw_sub(curve_pair=None):
        s = ctx.socket(zmq.SUB)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.SUBSCRIBE, b"")
        if curve_pair:
            s.curve_publickey, s.curve_secretkey = curve_pair
            s.curve_serverkey = CurveKeys(str(keys), "control").public("trajectory")
        s.connect(ep)
        return s

    intruder = raw_sub(zmq.curve_keypair())      # a valid keypair that is not in the key directory
    plain = raw_sub()                            # no CURVE at all
    time.sleep(0.5)
    try:
        for i in range(5):
            pub.publish(A, {"i": i})
            time.sleep(0.02)
        m = good.recv(1000)
        assert m is not None and m.header["src"] == "trajectory"
        assert intruder.poll(300) == 0
        assert plain.poll(100) == 0
    finally:
        intruder.close(), plain.close(), good.close(), pub.close()
        ctx.term()


def test_curve_subscriber_needs_the_publisher_name(tmp_path):
    write_keys(str(tmp_path), ["control"])
    with pytest.raises(BusError, match="name of the node"):
        Subscriber(["tcp://127.0.0.1:47914"], (A,), curve=CurveKeys(str(tmp_path), "control"))


def test_missing_key_file_names_the_fix(tmp_path):
    with pytest.raises(BusError, match="kinebridge keys"):
        CurveKeys(str(tmp_path), "control").own()


def test_wait_until_returns_at_the_deadline_or_when_a_message_is_queued(ep):
    pub, sub = _pair(ep, (A,))
    try:
        # nothing queued: returns False, not before the deadline (µs deadlines, not zmq's whole ms)
        deadline = time.monotonic_ns() + 1_500_000
        assert sub.wait_until(deadline) is False
        assert time.monotonic_ns() >= deadline
        assert sub.wait_until(time.monotonic_ns() - 1) is False          # a deadline already past
        # a message published during the wait ends it early; one already queued returns at once
        threading.Timer(0.05, lambda: pub.publish(A, {"k": 1})).start()
        t0 = time.monotonic_ns()
        assert sub.wait_until(t0 + 2_000_000_000) is True
        assert time.monotonic_ns() - t0 < 1_500_000_000
        assert sub.wait_until(time.monotonic_ns() + 2_000_000_000) is True   # still queued: not consumed
        assert [m.header["k"] for m in sub.drain()] == [1]
        assert sub.wait_until(time.monotonic_ns() + 20_000_000) is False   # drained: waits the 20 ms out
    finally:
        pub.close(), sub.close()


def test_subscribe_adds_a_topic_from_then_on(ep):
    pub, sub = _pair(ep, (A,))
    try:
        pub.publish(B, {"k": 0})                   # not yet subscribed: never delivered
        time.sleep(0.05)
        sub.subscribe(B)
        time.sleep(0.15)                           # the subscription travels to the publisher
        pub.publish(B, {"k": 1})
        pub.publish(A, {"k": 2})
        got = [(m.topic, m.header["k"]) for m in (sub.recv(1000), sub.recv(1000))]
        assert got == [(B, 1), (A, 2)] and sub.drain() == []
    finally:
        pub.close(), sub.close()
