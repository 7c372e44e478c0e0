"""The bus wire format: exact round trips, zero-copy receive, clear errors for malformed messages."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from kinebridge.runtime.bus.codec import MessageError, decode, encode

dtypes = st.sampled_from([np.bool_, np.int8, np.uint16, np.int32, np.int64, np.float32, np.float64, np.complex128,
                          np.dtype(">f8"), np.dtype("<i4")])
arrays = dtypes.flatmap(lambda d: hnp.arrays(d, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5)))
headers = st.dictionaries(st.text(min_size=1, max_size=8).filter(lambda k: k != "_arrays"),
                          st.one_of(st.none(), st.booleans(), st.integers(-2**62, 2**62), st.floats(allow_nan=False),
                                    st.text(max_size=10), st.lists(st.integers(0, 9), max_size=4)), max_size=5)


@settings(max_examples=150, deadline=None)
@given(header=headers, arrs=st.dictionaries(st.text(min_size=1, max_size=6), arrays, max_size=4))
def test_round_trip_is_exact(header, arrs):
    frames = [bytes(f) for f in encode("chunk/joints", header, arrs)]  # what the wire delivers
    msg = decode(frames)
    assert msg.topic == "chunk/joints" and msg.header == header
    assert set(msg.arrays) == set(arrs)
    for k, a in arrs.items():
        b = msg.arrays[k]
        assert b.dtype == a.dtype and b.shape == a.shape
        assert np.array_equal(a, b, equal_nan=a.dtype.kind in "fc")


def test_receive_is_zero_copy_and_read_only():
    q = np.arange(350, dtype=np.float64).reshape(50, 7)
    frames = [bytes(f) for f in encode("chunk", {"seq": 1, "t0": np.float64(0.5)}, {"q": q})]
    msg = decode(frames)
    assert msg.header == {"seq": 1, "t0": 0.5}            # numpy scalars travel as plain numbers
    assert np.shares_memory(msg.arrays["q"], np.frombuffer(frames[2], dtype=np.uint8))
    assert not msg.arrays["q"].flags.writeable
    assert np.array_equal(msg.arrays["q"], q)


def test_non_contiguous_arrays_travel_in_c_order():
    a = np.arange(24.0).reshape(4, 6)[:, ::2]
    msg = decode([bytes(f) for f in encode("t", {}, {"a": a})])
    assert np.array_equal(msg.arrays["a"], a)


@pytest.mark.parametrize("header, arrays, match", [
    ({"x": object()}, None, "header value header.x"),
    ({"_arrays": 1}, None, "reserved"),
    ({}, {"o": np.array(["a"], dtype=object)}, "dtype object"),
    ({1: 2}, None, "must be a string"),
])
def test_what_cannot_travel_is_refused_at_the_sender(header, arrays, match):
    with pytest.raises(ValueError, match=match):
        encode("t", header, arrays)


def _frames(q=np.zeros((2, 7))):
    return [bytes(f) for f in encode("chunk", {"seq": 3}, {"q": q})]


@pytest.mark.parametrize("mutate, match", [
    (lambda f: f[:1], "at least 2 frames"),
    (lambda f: [f[0], b"\xc1", *f[2:]], "not valid msgpack"),
    (lambda f: [f[0], msgpack.packb([1, 2]), *f[2:]], "must be a map"),
    (lambda f: f[:2], "lists 1 arrays but 0"),
    (lambda f: [f[0], f[1], f[2][:-8]], "should be 112 bytes"),
    (lambda f: [f[0], msgpack.packb({"_arrays": [["q", "O", [1]]]}), b"x" * 8], "does not carry"),
    (lambda f: [f[0], msgpack.packb({"_arrays": [["q"]]}), b"x"], "bad array table entry"),
    (lambda f: [b"\xff", *f[1:]], "UTF-8"),
])
def test_malformed_messages_name_what_is_wrong(mutate, match):
    with pytest.raises(MessageError, match=match):
        decode(mutate(_frames()))


# ------------------------------------------------------------------ fast paths keep the slow paths' rules
class _Mode(__import__("enum").IntEnum):
    FAST = 2


class _Name(str):
    pass


@pytest.mark.parametrize("header, sent", [
    ({"pair": (1, 2.5), "nested": [[(3,)]]}, {"pair": [1, 2.5], "nested": [[[3]]]}),          # tuples → lists
    ({"mode": _Mode.FAST, "name": _Name("arm")}, {"mode": 2, "name": "arm"}),                # subclasses → base
    ({"x": {"y": [np.int64(3), np.float32(0.5), np.bool_(True)]}}, {"x": {"y": [3, 0.5, True]}}),  # numpy scalars
    ({"d": __import__("collections").OrderedDict(a=1)}, {"d": {"a": 1}}),                      # dict subclass
    ({"b": b"\x00\xff", "none": None, "big": 2**63, "neg": -2**63, "u": "µ"},
     {"b": b"\x00\xff", "none": None, "big": 2**63, "neg": -2**63, "u": "µ"}),
])
def test_headers_off_the_fast_path_travel_converted(header, sent):
    msg = decode([bytes(f) for f in encode("t", header, {"a": np.ones(2)})])
    assert msg.header == sent
    msg = decode([bytes(f) for f in encode("t", header)])
    assert msg.header == sent


@pytest.mark.parametrize("header, match", [
    ({"a": {1: 2}}, r"header key header\.a\.1 must be a string"),
    ({"a": [1, [2, object()]]}, r"header value header\.a\[1\]\[1\] has type object"),
    ({"a": {"b": {3.5}}}, r"header value header\.a\.b has type set"),
    ({"a": np.zeros(3)}, r"header value header\.a has type ndarray"),
])
def test_nested_header_errors_name_their_path(header, match):
    with pytest.raises(ValueError, match=match):
        encode("t", header)


def test_encode_leaves_the_callers_header_alone():
    header = {"seq": 1, "derived": [["task", 4, 5]]}
    encode("t", header, {"q": np.zeros(3)})
    assert header == {"seq": 1, "derived": [["task", 4, 5]]}


@pytest.mark.parametrize("a", [np.arange(350.0).reshape(50, 7), np.array(2.5), np.zeros((0, 3)),
                               np.arange(24, dtype=np.int32).reshape(2, 3, 4)[:, ::2].transpose(2, 0, 1)])
def test_array_frames_are_flat_bytes(a):
    frame = encode("t", {}, {"a": a})[2]
    assert len(frame) == a.nbytes and bytes(frame) == a.tobytes(order="C")


def test_decode_takes_frames_as_encode_gives_them_and_as_zmq_delivers_them():
    zmq = pytest.importorskip("zmq")
    q, s = np.arange(350.0).reshape(50, 7), np.array([1, 2, 3], dtype=">i4")
    frames = encode("chunk", {"seq": 7}, {"q": q, "s": s})
    msg = decode(frames)                                   # memoryviews, same process
    assert np.array_equal(msg.arrays["q"], q) and np.array_equal(msg.arrays["s"], s) and msg.header == {"seq": 7}
    assert np.shares_memory(msg.arrays["q"], q) and not msg.arrays["q"].flags.writeable and q.flags.writeable
    ctx = zmq.Context.instance()
    a, b = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
    try:
        a.bind("inproc://codec-test")
        b.connect("inproc://codec-test")
        a.send_multipart(frames)
        got = b.recv_multipart(copy=False)                 # zmq.Frame objects
        msg = decode(got)
        assert msg.topic == "chunk" and msg.header == {"seq": 7}
        assert np.array_equal(msg.arrays["q"], q) and msg.arrays["s"].dtype == np.dtype(">i4")
        assert not msg.arrays["q"].flags.writeable
    finally:
        a.close(0)
        b.close(0)


@pytest.mark.parametrize("mutate, match", [
    (lambda f: [f[0], f[1], f[2] + b"x" * 8], "should be 112 bytes"),                          # frame too big
    (lambda f: [f[0], msgpack.packb({"_arrays": [["q", "<f8", [-1, 2]]]}), b""], "bad array table entry"),
    (lambda f: [f[0], msgpack.packb({"_arrays": [["q", "<f8", [1.0]]]}), b"x" * 8], "bad array table entry"),
    (lambda f: [f[0], msgpack.packb({"_arrays": [["q", "<f8", 1]]}), b"x" * 8], "bad array table entry"),
    (lambda f: [f[0], msgpack.packb({"_arrays": [["q", "nonsense", [1]]]}), b"x" * 8], "bad array table entry"),
    (lambda f: [f[0], msgpack.packb({"_arrays": [["q", ["<f8"], [1]]]}), b"x" * 8], "bad array table entry"),
    (lambda f: [f[0], msgpack.packb({"_arrays": [["q", "<M8[s]", [1]]]}), b"x" * 8], "does not carry"),
    (lambda f: [f[0], msgpack.packb({"_arrays": None})], r"lists \? arrays"),
    (lambda f: [f[0], msgpack.packb({"seq": 1}), b"x"], "lists 0 arrays but 1"),
    (lambda f: [f[0], f[1], f[2], b"x"], "lists 1 arrays but 2"),
])
def test_more_malformed_messages(mutate, match):
    with pytest.raises(MessageError, match=match):
        decode(mutate(_frames()))


def test_decoded_arrays_match_every_table_dtype_the_fast_path_caches():
    for dt in ["<f8", ">f8", "<i4", "|b1", "<c16", "|u1"]:
        a = np.arange(6).astype(dt).reshape(2, 3)
        for _ in range(2):   # first through the slow path (fills the cache), then the fast one
            b = decode([bytes(f) for f in encode("t", {}, {"a": a})]).arrays["a"]
            assert b.dtype == a.dtype and np.array_equal(a, b)


def test_encoding_from_several_threads_at_once_gives_correct_messages():
    import threading

    errors, barrier = [], threading.Barrier(4)

    def work(k):
        try:
            barrier.wait()
            for i in range(3000):
                header = {"seq": i, "src": f"thread-{k}", "derived": [["task", k, i]], "pad": "x" * (k * 40)}
                q = np.full((k + 1, 7), float(i * 10 + k))
                frames = encode(f"t{k}", header, {"q": q})
                msg = decode([bytes(f) for f in frames])
                if msg.topic != f"t{k}" or msg.header != header or not np.array_equal(msg.arrays["q"], q):
                    errors.append((k, i, msg))
                    return
        except Exception as exc:  # noqa: BLE001 — reported below
            errors.append((k, exc))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]


def test_codec_bench_runs_and_reports():
    from kinebridge.bench import codec_bench

    r = codec_bench.run(n=50, repeats=2, batch=10)
    for case in ("chunk_50x7", "state_7"):
        c = r["cases"][case]
        for what in ("encode", "decode", "encode_decode", "pickle5_dumps_loads"):
            assert 0 < c[what]["min"] <= c[what]["p50"] and c[what]["p99"] > 0
        assert c["speedup_vs_pickle"] > 0
    codec_bench.print_report(r)


@settings(max_examples=100, deadline=None)
@given(header=headers)
def test_headers_are_plain_msgpack_both_ways(header):
    """The header frame is standard msgpack: msgpack-python (what a client in another process or
    language would use) reads what kinebridge writes, and kinebridge reads what it writes."""
    q = np.arange(14.0).reshape(2, 7)
    frames = [bytes(f) for f in encode("chunk", header, {"q": q})]
    assert msgpack.unpackb(frames[1]) == {**header, "_arrays": [["q", "<f8", [2, 7]]]}
    theirs = [b"chunk", msgpack.packb({**header, "_arrays": [["q", "<f8", [2, 7]]]}, use_bin_type=True), q.tobytes()]
    msg = decode(theirs)
    assert msg.header == header and np.array_equal(msg.arrays["q"], q)
