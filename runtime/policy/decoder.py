"""The token decoder: a VLA's code sequence → a timestamped joint chunk, without torch.

A tokenizer folder (``kinebridge train tokenizer``) holds ``manifest.json`` (format ``kinebridge-tokenizer-1``)
and the decoder twice: ``decoder.npz`` for the compiled decoder (:mod:`kinebridge.kernels.rvq_decode`, numba)
and ``decoder.onnx`` for ONNX Runtime. :class:`TokenDecoder` loads one of them and refuses to start — naming
the file and what is wrong — when a file is missing, its SHA-256 is not the manifest's, or its shapes do
not match the manifest's model (levels, codebook size, latent and chunk dimensions).

:meth:`TokenDecoder.parse` validates a sequence against the manifest's token layout before anything is
decoded: ``[open_g, codes of group g …]`` for each group in order, then ``end``; each code of group g within
``[offset_g, offset_g + K)``; each group exactly its level count. Every failure is a :class:`TokenError`
with a ``reason`` key (``length``, ``delimiter``, ``levels``, ``range``, ``dtype``) for counting and a text
naming the position. :meth:`TokenDecoder.decode` turns valid codes and the observation's joints into the
chunk rows ``[q_obs, q_obs + scale ⊙ Δ̂_1, …, q_obs + scale ⊙ Δ̂_H]`` (``H + 1`` rows, ``dt`` apart).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path

import numpy as np

from kinebridge.kernels import rvq_decode

__all__ = ["TokenDecoder", "TokenError", "DecoderFileError", "MANIFEST_FORMAT", "benchmark"]

MANIFEST_FORMAT = "kinebridge-tokenizer-1"


class TokenError(ValueError):
    """A code sequence the decoder refuses; ``reason`` is the counter's key."""

    def __init__(self, reason: str, text: str):
        super().__init__(text)
        self.reason = reason


class DecoderFileError(ValueError):
    """A tokenizer folder the decoder cannot trust (missing file, hash or shape mismatch)."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class TokenDecoder:
    """Decodes code sequences of one tokenizer (``path``: its folder) with ``backend`` "compiled" or "onnx"."""

    def __init__(self, path, backend: str = "compiled"):
        self.dir = Path(path)
        mf = self.dir / "manifest.json"
        if not mf.is_file():
            raise DecoderFileError(f"{self.dir}: no manifest.json — not a tokenizer folder (train one with "
                                   f"`kinebridge train tokenizer`)")
        try:
            m = json.loads(mf.read_text())
        except json.JSONDecodeError as exc:
            raise DecoderFileError(f"{mf}: not valid JSON ({exc})") from None
        if m.get("format") != MANIFEST_FORMAT:
            raise DecoderFileError(f"{mf}: format {m.get('format')!r}, this kinebridge reads {MANIFEST_FORMAT!r}")
        if m.get("kind") != "rvq":
            raise DecoderFileError(f"{mf}: a {m.get('kind')!r} tokenizer; the runtime decodes RVQ tokenizers only")
        self.manifest = m
        self.id, self.name = m["id"], m["name"]
        ch, mo, tk = m["chunk"], m["model"], m["tokens"]
        self.H, self.joints, self.dt = int(ch["H"]), int(ch["joints"]), float(ch["dt"])
        self.scale = np.asarray(ch["scale"], dtype=np.float64)
        self.levels = [int(v) for v in mo["levels"]]
        self.K = int(mo["codebook_size"])
        self.layout = tk
        if self.scale.shape != (self.joints,) or not np.all(np.isfinite(self.scale)) or np.any(self.scale <= 0):
            raise DecoderFileError(f"{mf}: chunk.scale must hold {self.joints} positive numbers")
        if [g["levels"] for g in tk["groups"]] != self.levels or tk["codebook_size"] != self.K:
            raise DecoderFileError(f"{mf}: the token layout's groups {[g['levels'] for g in tk['groups']]} / K "
                                   f"{tk['codebook_size']} disagree with the model's levels {self.levels} / K {self.K}")
        if backend not in ("compiled", "onnx"):
            raise ValueError(f"backend: expected 'compiled' or 'onnx', got {backend!r}")
        self.backend = backend
        entry = m["decoder"][backend]
        f = self.dir / entry["file"]
        if not f.is_file():
            raise DecoderFileError(f"{f}: missing — the manifest names it as the {backend} decoder")
        digest = _sha256(f)
        if digest != entry["sha256"]:
            raise DecoderFileError(f"{f}: SHA-256 {digest[:16]}… does not match the manifest's {entry['sha256'][:16]}… "
                                   f"— the decoder file is not the one this tokenizer was exported with")
        L = sum(self.levels)
        if backend == "compiled":
            with np.load(f, allow_pickle=False) as z:
                self.w = rvq_decode.weights_from_arrays(z)
            cb = self.w.codebooks.shape
            if cb[:2] != (L, self.K) or cb[2] != mo["latent_dim"] or self.w.w3.shape[1] != self.H * self.joints:
                raise DecoderFileError(f"{f}: codebooks {cb} / output {self.w.w3.shape[1]} do not match the manifest "
                                       f"(L={L}, K={self.K}, d={mo['latent_dim']}, H·joints={self.H * self.joints})")
            self._buf = rvq_decode.Buffers(self.w)
            self._codes = np.zeros(L, np.int64)
        else:
            import onnxruntime as ort
            so = ort.SessionOptions()
            so.intra_op_num_threads = 1
            self._sess = ort.InferenceSession(str(f), so, providers=["CPUExecutionProvider"])
            self._codes = np.zeros((1, L), np.int64)
        self._groups = [(g["open"], g["offset"], g["levels"], g["name"]) for g in tk["groups"]]
        self._delims = {g["open"] for g in tk["groups"]} | {tk["end"]}
        self._length = int(tk["length"])
        self.decode(self._valid_example(), np.zeros(self.joints))      # compile / warm the session now

    def _valid_example(self) -> np.ndarray:
        seq = []
        for op, off, lv, _ in self._groups:
            seq += [op] + [off] * lv
        return np.asarray(seq + [self.layout["end"]], np.int32)

    # ------------------------------------------------------------------------------- validation
    def parse(self, codes) -> np.ndarray:
        """The codebook indices (L,) of a valid sequence; :class:`TokenError` naming what is wrong otherwise."""
        a = np.asarray(codes)
        if a.ndim != 1 or a.dtype.kind not in "iu":
            raise TokenError("dtype", f"codes must be a 1-D integer array, got {a.dtype} {a.shape}")
        n = a.shape[0]
        pos = 0
        out = self._codes.reshape(-1)
        col = 0
        for gi, (op, off, lv, name) in enumerate(self._groups):
            if pos >= n or int(a[pos]) != op:
                got = "the end of the sequence" if pos >= n else f"{int(a[pos])}"
                raise TokenError("delimiter", f"position {pos}: expected the {name} delimiter {op}, got {got}")
            pos += 1
            start = pos
            while pos < n and int(a[pos]) not in self._delims:
                pos += 1
            if pos - start != lv:
                nxt = self._groups[gi + 1][0] if gi + 1 < len(self._groups) else self.layout["end"]
                if pos - start > lv and (pos >= n or int(a[pos]) != nxt):
                    what = self._groups[gi + 1][3] + " delimiter" if gi + 1 < len(self._groups) else "end token"
                    raise TokenError("delimiter", f"position {start + lv}: expected the {what} {nxt} after the {name} "
                                                  f"group's {lv} codes, got {int(a[start + lv])} (a missing delimiter)")
                raise TokenError("levels", f"the {name} group has {pos - start} codes, the tokenizer has {lv} levels")
            seg = a[start:pos].astype(np.int64) - off
            bad = np.flatnonzero((seg < 0) | (seg >= self.K))
            if bad.size:
                i = int(bad[0])
                raise TokenError("range", f"position {start + i}: code {int(a[start + i])} is outside the {name} "
                                          f"group's range [{off}, {off + self.K})")
            out[col:col + lv] = seg
            col += lv
        if pos >= n or int(a[pos]) != self.layout["end"]:
            got = "the end of the sequence" if pos >= n else f"{int(a[pos])}"
            raise TokenError("delimiter", f"position {pos}: expected the end token {self.layout['end']}, got {got}")
        if pos + 1 != n:
            raise TokenError("length", f"{n - pos - 1} tokens after the end token (a chunk is {self._length} tokens)")
        return self._codes

    # ----------------------------------------------------------------------------------- decode
    def decode_normalised(self, idx) -> np.ndarray:
        if self.backend == "compiled":
            w, b = self.w, self._buf
            rvq_decode.decode_into(idx.reshape(-1), w.codebooks, w.w1, w.b1, w.w2, w.b2, w.w3, w.b3, b.z, b.h1, b.h2, b.y)
            return b.y.reshape(self.H, self.joints)
        return self._sess.run(None, {"codes": idx.reshape(1, -1)})[0][0].astype(np.float64)

    def decode(self, codes, q_obs) -> np.ndarray:
        """Chunk rows (H + 1, joints): q_obs, then q_obs + scale ⊙ Δ̂ for each step (validated first)."""
        q = np.asarray(q_obs, dtype=np.float64)
        if q.shape != (self.joints,) or not np.all(np.isfinite(q)):
            raise TokenError("anchor", f"q_obs must be {self.joints} finite joint angles, got {q.shape}")
        d = self.decode_normalised(self.parse(codes))
        out = np.empty((self.H + 1, self.joints))
        out[0] = q
        out[1:] = q + self.scale * d
        return out


def benchmark(decoder: TokenDecoder, sequences, anchors, warmup: int = 100) -> dict:
    """Per chunk, the whole runtime path (validate + decode + anchor): median and p99 µs."""
    ts = []
    for i, (s, q) in enumerate(zip(sequences, anchors)):
        t = time.perf_counter_ns()
        decoder.decode(s, q)
        if i >= warmup:
            ts.append(time.perf_counter_ns() - t)
    ts = np.asarray(ts, float) / 1e3
    return {"median_us": round(float(np.median(ts)), 2), "p99_us": round(float(np.percentile(ts, 99)), 2),
            "n": int(ts.size), "backend": decoder.backend}


