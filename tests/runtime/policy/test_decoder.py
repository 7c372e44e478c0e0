"""The runtime's token decoder: valid sequences decode to anchored chunks; bad ones and untrusted files are
refused with a reason."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from kinebridge.kernels import rvq_decode
from kinebridge.kernels.ref import rvq_decode as ref
from kinebridge.runtime.policy.decoder import DecoderFileError, TokenDecoder, TokenError, benchmark
from tests.runtime.policy.conftest import make_tokenizer, sequence


def test_a_valid_sequence_decodes_to_an_anchored_chunk(tokenizer):
    d, m = tokenizer
    dec = TokenDecoder(d)
    assert dec.id == m["id"] and dec.H == 5 and dec.dt == 0.1
    codes = [3, 7, 1, 15]
    q = np.linspace(-0.5, 0.5, 7)
    rows = dec.decode(sequence(m, codes), q)
    assert rows.shape == (6, 7) and np.array_equal(rows[0], q)
    with np.load(d / "decoder.npz") as z:
        w = rvq_decode.weights_from_arrays(z)
    expect = q + 0.05 * ref.decode_normalised(w, np.array(codes), 5)
    assert np.allclose(rows[1:], expect, atol=1e-12)
    assert np.allclose(rvq_decode.decode_normalised(w, codes, 5), ref.decode_normalised(w, np.array(codes), 5), atol=1e-12)


@pytest.mark.parametrize("mutate,reason,text", [
    (lambda s, m: np.r_[s[:2], [m["tokens"]["groups"][0]["offset"] + 16], s[3:]], "range", "outside the coarse"),
    (lambda s, m: np.r_[s[:4], [m["tokens"]["groups"][1]["offset"] - 1], s[5:]], "range", "position 4: code 15 is outside the fine"),
    (lambda s, m: np.r_[s[:3], [5], s[3:]], "levels", "coarse group has 3 codes"),
    (lambda s, m: np.r_[s[:1], s[2:]], "levels", "coarse group has 1 codes, the tokenizer has 2"),
    (lambda s, m: np.r_[s[:3], s[4:]], "delimiter", "expected the fine delimiter 33 after the coarse group's 2 codes"),
    (lambda s, m: s[1:], "delimiter", "position 0"),
    (lambda s, m: s[:-1], "delimiter", "end token"),
    (lambda s, m: np.r_[s, [3]], "length", "after the end token"),
    (lambda s, m: s.astype(np.float32), "dtype", "integer"),
])
def test_malformed_sequences_are_refused_with_a_reason(tokenizer, mutate, reason, text):
    d, m = tokenizer
    dec = TokenDecoder(d)
    bad = mutate(sequence(m, [1, 2, 3, 4]), m)
    with pytest.raises(TokenError, match=text) as err:
        dec.decode(bad, np.zeros(7))
    assert err.value.reason == reason


def test_a_bad_anchor_is_refused(tokenizer):
    d, m = tokenizer
    with pytest.raises(TokenError, match="q_obs") as err:
        TokenDecoder(d).decode(sequence(m, [0, 0, 0, 0]), [0.0, np.nan, 0, 0, 0, 0, 0])
    assert err.value.reason == "anchor"


def test_decoder_files_that_do_not_match_the_manifest_are_refused(tmp_path):
    d = make_tokenizer(tmp_path / "a")
    with np.load(d / "decoder.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["b3"] = arrays["b3"] + 1.0
    np.savez(d / "decoder.npz", **arrays)                       # retrained or swapped: another file
    with pytest.raises(DecoderFileError, match="does not match the manifest"):
        TokenDecoder(d)
    d = make_tokenizer(tmp_path / "b")
    (d / "decoder.npz").unlink()
    with pytest.raises(DecoderFileError, match="missing"):
        TokenDecoder(d)
    d = make_tokenizer(tmp_path / "c")
    m = json.loads((d / "manifest.json").read_text())
    m["model"]["codebook_size"] = 32
    m["tokens"]["codebook_size"] = 32
    (d / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(DecoderFileError, match="do not match the manifest"):
        TokenDecoder(d)
    d = make_tokenizer(tmp_path / "d")
    m = json.loads((d / "manifest.json").read_text())
    m["tokens"]["groups"][1]["levels"] = 3
    (d / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(DecoderFileError, match="disagree"):
        TokenDecoder(d)
    with pytest.raises(DecoderFileError, match="no manifest"):
        TokenDecoder(tmp_path / "nothing")


def test_the_decode_path_is_fast_without_torch(tokenizer):
    d, m = tokenizer
    dec = TokenDecoder(d)
    rng = np.random.default_rng(1)
    seqs = [sequence(m, rng.integers(0, 16, 4)) for _ in range(600)]
    r = benchmark(dec, seqs, [np.zeros(7)] * 600)
    # the acceptance figure (≤ 50 µs) is measured by `kinebridge eval tokenizer` on the trained decoder; here a
    # generous bound on a shared CI box catches a decoder that has fallen off the compiled path
    assert r["median_us"] < 500, r
    t = time.perf_counter()
    for s in seqs[:100]:
        dec.parse(s)
    assert (time.perf_counter() - t) / 100 < 1e-3
