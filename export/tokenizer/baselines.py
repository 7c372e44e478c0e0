"""The baselines the bi-level RVQ is compared with at the same token budget (numpy only).

* :class:`BinsTokenizer` — OpenVLA's discretisation: each normalised action dimension cut into 256 uniform
  bins over [−1, 1], one token per dimension and step. A chunk of H × 7 values needs 7·H tokens; at a budget
  of B tokens it carries ⌊B / 7⌋ steps (at least one; evenly spaced, ending at the chunk's last step) and the decoder
  interpolates the others linearly from the observation (Δ = 0 at step 0). ``budget = 7·H`` is plain OpenVLA.
* :class:`FASTTokenizer` — FAST (Pertsch et al. 2025): the DCT of each joint over the chunk (orthonormal),
  coefficients scaled and rounded, flattened low frequencies first (all joints' coefficient 0, then 1, …),
  then byte-pair encoding trained here (vocabulary 1024). Its scale is chosen so the mean number of tokens
  per chunk on the training set meets the budget; a sequence that does not expand to H·7 coefficients is
  a decode error (FAST's processor returns zeros then; here it is counted).
"""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
from scipy.fft import dct, idct

__all__ = ["BinsTokenizer", "FASTTokenizer", "bpe_train", "bpe_encode", "bpe_expand"]


class BinsTokenizer:
    name = "bins-256"

    def __init__(self, budget: int, H: int = 5, D: int = 7, bins: int = 256):
        if budget < 1:
            raise ValueError(f"budget: expected at least one token per chunk, got {budget}")
        self.H, self.D, self.bins = H, D, bins
        self.n_steps = min(H, max(1, budget // D))         # below 7 tokens it still needs one step (7 tokens)
        self.steps = np.unique(np.round(np.linspace(H / self.n_steps, H, self.n_steps)).astype(int))   # 1-based
        self.tokens_per_chunk = len(self.steps) * D

    def encode(self, x: np.ndarray) -> np.ndarray:
        """(n, H, D) normalised chunks → (n, steps·D) int tokens in [0, bins)."""
        v = np.asarray(x, float)[:, self.steps - 1, :]
        t = np.floor((np.clip(v, -1.0, 1.0) + 1.0) * 0.5 * self.bins).astype(np.int64)
        return np.clip(t, 0, self.bins - 1).reshape(len(x), -1)

    def decode(self, tokens: np.ndarray) -> np.ndarray:
        tok = np.asarray(tokens, np.int64).reshape(-1, len(self.steps), self.D)
        if tok.min(initial=0) < 0 or tok.max(initial=0) >= self.bins:
            raise ValueError(f"bins tokens must lie in [0, {self.bins})")
        vals = -1.0 + (tok + 0.5) * (2.0 / self.bins)
        full = np.concatenate([np.zeros((tok.shape[0], 1, self.D)), vals], axis=1)     # Δ = 0 at the observation
        knots = np.r_[0, self.steps]
        out = np.empty((tok.shape[0], self.H, self.D))
        for k in range(1, self.H + 1):
            if k >= knots[-1]:
                out[:, k - 1] = full[:, -1]
                continue
            i = int(np.searchsorted(knots, k, side="right")) - 1
            a = (k - knots[i]) / (knots[i + 1] - knots[i])
            out[:, k - 1] = (1.0 - a) * full[:, i] + a * full[:, i + 1]
        return out

    def manifest(self) -> dict:
        return {"kind": "bins", "bins": self.bins, "steps": self.steps.tolist(), "tokens_per_chunk": self.tokens_per_chunk,
                "range": [-1.0, 1.0]}


# ------------------------------------------------------------------------------------------- BPE
def bpe_train(seqs: list[tuple], vocab_size: int, base: int) -> list[tuple[int, int]]:
    """Merges (a, b) → base + i, most frequent adjacent pair first (ties: the smallest pair), until
    ``vocab_size`` tokens or no pair occurs twice. ``seqs``: sequences of base ids in [0, base). Pair counts
    are kept incrementally: a merge only revisits the (unique) sequences that contain its pair."""
    from collections import defaultdict
    counts = Counter(seqs)
    words = [list(s) for s in counts]
    mult = list(counts.values())
    pairs: Counter = Counter()
    where: dict = defaultdict(set)
    for i, w in enumerate(words):
        for p in zip(w, w[1:]):
            pairs[p] += mult[i]
            where[p].add(i)
    merges: list[tuple[int, int]] = []
    nxt = base
    while nxt < vocab_size and pairs:
        (a, b), c = max(pairs.items(), key=lambda kv: (kv[1], -kv[0][0], -kv[0][1]))
        if c < 2:
            break
        for i in sorted(where.pop((a, b), ())):
            w, m = words[i], mult[i]
            for p in zip(w, w[1:]):
                pairs[p] -= m
                if pairs[p] <= 0:
                    del pairs[p]
                s_ = where.get(p)
                if s_ is not None:
                    s_.discard(i)
            out, k = [], 0
            while k < len(w):
                if k + 1 < len(w) and w[k] == a and w[k + 1] == b:
                    out.append(nxt)
                    k += 2
                else:
                    out.append(w[k])
                    k += 1
            words[i] = out
            for p in zip(out, out[1:]):
                pairs[p] += m
                where[p].add(i)
        pairs.pop((a, b), None)
        merges.append((a, b))
        nxt += 1
    return merges


def bpe_encode(seq, merges: list[tuple[int, int]], base: int, ranks: dict | None = None) -> list[int]:
    """Apply ``merges`` in their order of rank (the standard greedy BPE encoding)."""
    ranks = ranks if ranks is not None else {p: i for i, p in enumerate(merges)}
    w = list(seq)
    while len(w) > 1:
        best, at = None, -1
        for k in range(len(w) - 1):
            r = ranks.get((w[k], w[k + 1]))
            if r is not None and (best is None or r < best):
                best, at = r, k
        if best is None:
            break
        tok = base + best
        out, k = [], 0
        a, b = merges[best]
        while k < len(w):
            if k + 1 < len(w) and w[k] == a and w[k + 1] == b:
                out.append(tok)
                k += 2
            else:
                out.append(w[k])
                k += 1
        w = out
    return w


def bpe_expand(tokens, merges: list[tuple[int, int]], base: int) -> list[int]:
    out: list[int] = []
    stack = list(reversed(list(tokens)))
    n_tok = base + len(merges)
    while stack:
        t = int(stack.pop())
        if t < 0 or t >= n_tok:
            raise ValueError(f"token {t} is outside the vocabulary [0, {n_tok})")
        if t < base:
            out.append(t)
        else:
            a, b = merges[t - base]
            stack.append(b)
            stack.append(a)
    return out


class FASTTokenizer:
    name = "fast"

    def __init__(self, H: int = 5, D: int = 7, vocab_size: int = 1024):
        self.H, self.D, self.vocab_size = H, D, vocab_size
        self.scale = 10.0
        self.lo = 0
        self.base = 1
        self.merges: list[tuple[int, int]] = []
        self._ranks: dict = {}

    # ------------------------------------------------------------------ symbols
    def _symbols(self, x: np.ndarray) -> np.ndarray:
        c = dct(np.asarray(x, float), axis=1, norm="ortho")              # (n, H, D) over time
        return np.round(c * self.scale).astype(np.int64).reshape(len(x), -1)   # row-major: low frequencies first

    def _fit_bpe(self, sym: np.ndarray, n_train: int, rng) -> None:
        self.lo = int(sym.min())
        self.base = int(sym.max()) - self.lo + 1
        pick = sym if len(sym) <= n_train else sym[rng.choice(len(sym), n_train, replace=False)]
        seqs = [tuple((r - self.lo).tolist()) for r in pick]
        self.merges = bpe_train(seqs, self.vocab_size, self.base)
        self._ranks = {p: i for i, p in enumerate(self.merges)}

    def fit(self, x: np.ndarray, budget: float, seed: int = 0, n_train: int = 2000, log=None) -> "FASTTokenizer":
        """Train BPE on ``x`` (n, H, D normalised chunks) at the DCT scale whose mean tokens per chunk is the
        largest not above ``budget`` (bisection on the scale in log space)."""
        rng = np.random.default_rng(seed)
        probe = x if len(x) <= 1000 else x[rng.choice(len(x), 1000, replace=False)]
        lo, hi = np.log(1.0), np.log(100.0)
        best = None
        for _ in range(6):
            mid = 0.5 * (lo + hi)
            self.scale = float(np.exp(mid))
            sym = self._symbols(x)
            self._fit_bpe(sym, n_train, rng)
            n = float(np.mean([len(t) for t in self.encode(probe)]))
            if log:
                log(f"fast: scale {self.scale:.3g} → {n:.2f} tokens/chunk (base {self.base}, merges {len(self.merges)})")
            if n <= budget:
                best = (self.scale, n)
                lo = mid
            else:
                hi = mid
        self.scale = best[0] if best else float(np.exp(lo))
        self._fit_bpe(self._symbols(x), n_train, rng)
        return self

    def encode(self, x: np.ndarray) -> list[list[int]]:
        sym = np.clip(self._symbols(x) - self.lo, 0, self.base - 1)
        return [bpe_encode(r.tolist(), self.merges, self.base, self._ranks) for r in sym]

    def decode_one(self, tokens) -> np.ndarray:
        sym = bpe_expand(tokens, self.merges, self.base)
        if len(sym) != self.H * self.D:
            raise ValueError(f"FAST tokens expand to {len(sym)} coefficients, expected {self.H * self.D}")
        c = (np.asarray(sym, float) + self.lo).reshape(self.H, self.D) / self.scale
        return idct(c, axis=0, norm="ortho")

    def decode(self, seqs) -> tuple[np.ndarray, int]:
        """(n, H, D) and the number of sequences that failed to decode (zeros then, as FAST's processor)."""
        out = np.zeros((len(seqs), self.H, self.D))
        bad = 0
        for i, s in enumerate(seqs):
            try:
                out[i] = self.decode_one(s)
            except ValueError:
                bad += 1
        return out, bad

    def manifest(self) -> dict:
        return {"kind": "fast", "scale": self.scale, "lo": self.lo, "base": self.base, "vocab_size": self.vocab_size,
                "merges": [list(m) for m in self.merges]}

    @classmethod
    def from_manifest(cls, m: dict, H: int, D: int) -> "FASTTokenizer":
        t = cls(H, D, m["vocab_size"])
        t.scale, t.lo, t.base = float(m["scale"]), int(m["lo"]), int(m["base"])
        t.merges = [tuple(p) for p in m["merges"]]
        t._ranks = {p: i for i, p in enumerate(t.merges)}
        return t

    def save(self, path) -> None:
        with open(path, "w") as f:
            json.dump(self.manifest(), f)
