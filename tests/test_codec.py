"""The bus wire format: exact round trips, zero-copy receive, clear errors for malformed messages."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from kinebridge.runtime.codec import MessageError, decode, encode

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
