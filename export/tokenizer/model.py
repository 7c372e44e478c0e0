"""The bi-level RVQ-VAE of KineVLA §3.1 (and the single-level RVQ-VAE it is compared with), in torch.

An encoder f_θ maps a chunk A_{t:t+H} (H × 7 joint deltas, normalised) to a latent z ∈ R^d; residual vector
quantisation with M levels per codebook (eq. 1) quantises it, level after level on the residual,

    k^(m) = argmin_k ‖r^(m−1) − e_k^(m)‖²,   z̃^(m) = e^(m)_{k^(m)},   r^(m) = r^(m−1) − z̃^(m),   r^(0) = z,

the tokens are the indices (eq. 2) and a decoder g_φ reconstructs the chunk from z̃ = Σ_m z̃^(m). The loss is
eq. 3: L1 reconstruction (mean over the H steps of the L1 norm over joints), the codebook term
Σ_m ‖sg(r^(m−1)) − z̃^(m)‖² (it moves the codes) and the commitment term Σ_m β_m ‖r^(m−1) − sg(z̃^(m))‖² (it moves
the encoder). The decoder is reached through the straight-through estimator (z + sg(z̃ − z)).

**Bi-level**: two codebooks of identical capacity — E_l (goal level, M levels of K codes of dimension d) and
E_h (kinematics level, the same) — whose codes are summed and decoded together. Stage I trains the encoder,
E_l and the decoder on the coarse split; stage II freezes E_l and its quantiser (no gradient, no code
replacement), initialises a new residual RVQ stack E_h on r after E_l, warm-starts the shared encoder and
decoder from stage I and trains on the kine split: E_h from scratch, the shared modules fine-tuned.

The quantisers are vector-quantize-pytorch's ``ResidualVQ`` with learnable codebooks (the codebook term of eq. 3
trains them; no EMA), k-means initialisation on the first batch, and dead-code replacement: a code whose
exponential moving usage falls below ``dead_threshold`` is replaced by a residual drawn from the batch.
The library's own commitment loss is off — the losses above are computed here from the per-level codes.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from vector_quantize_pytorch import ResidualVQ

__all__ = ["MLP", "RVQVAE", "make_rvq", "usage_stats"]


class MLP(nn.Module):
    """Linear → SiLU → Linear → SiLU → Linear (the compiled runtime decoder implements exactly this)."""

    def __init__(self, n_in: int, hidden: int, n_out: int):
        super().__init__()
        self.l1, self.l2, self.l3 = nn.Linear(n_in, hidden), nn.Linear(hidden, hidden), nn.Linear(hidden, n_out)

    def forward(self, x):
        return self.l3(F.silu(self.l2(F.silu(self.l1(x)))))


def make_rvq(dim: int, levels: int, codebook_size: int, dead_threshold: float = 0.05,
             kmeans_init: bool = True) -> ResidualVQ:
    rvq = ResidualVQ(dim=dim, num_quantizers=levels, codebook_size=codebook_size, kmeans_init=kmeans_init,
                     kmeans_iters=10, learnable_codebook=True, ema_update=False, decay=0.99,
                     threshold_ema_dead_code=dead_threshold, commitment_weight=0.0, rotation_trick=False)
    for layer in rvq.layers:      # a replaced code starts as if used once a batch, not at the threshold
        layer._codebook.reset_cluster_size = 1.0
    return rvq


class RVQVAE(nn.Module):
    """Encoder, goal-level RVQ ``q_l`` (``levels_l``), optional kinematics-level RVQ ``q_h`` (``levels_h``,
    added by :meth:`add_fine_level`), decoder. ``levels_h = 0`` and ``levels_l = 2M`` is the single-level
    baseline."""

    def __init__(self, H: int = 5, D: int = 7, dim: int = 32, hidden: int = 256, codebook_size: int = 256,
                 levels_l: int = 4, beta: float = 0.25, dead_threshold: float = 0.05):
        super().__init__()
        self.H, self.D, self.dim, self.hidden, self.K = H, D, dim, hidden, codebook_size
        self.beta = beta
        self.dead_threshold = dead_threshold
        self.encoder = MLP(H * D, hidden, dim)
        self.decoder = MLP(dim, hidden, H * D)
        self.q_l = make_rvq(dim, levels_l, codebook_size, dead_threshold)
        self.q_h: ResidualVQ | None = None
        self.levels = [levels_l]

    # ------------------------------------------------------------------------------ structure
    def add_fine_level(self, levels_h: int) -> None:
        """Stage II: freeze E_l and its quantiser, add E_h (same K and d) on the residual."""
        for p in self.q_l.parameters():
            p.requires_grad_(False)
        self.q_l.eval()
        self.q_h = make_rvq(self.dim, levels_h, self.K, self.dead_threshold)
        self.levels = [self.levels[0], levels_h]

    def train(self, mode: bool = True):
        super().train(mode)
        if self.q_h is not None:          # a frozen goal-level quantiser stays in eval: no k-means, no replacement
            self.q_l.eval()
        return self

    def codebooks(self) -> torch.Tensor:
        """(L, K, d) every level's codebook, goal levels first."""
        books = [self.q_l.codebooks]
        if self.q_h is not None:
            books.append(self.q_h.codebooks)
        return torch.cat(books, dim=0)

    # -------------------------------------------------------------------------------- forward
    def _level(self, rvq: ResidualVQ, r: torch.Tensor):
        """Quantise ``r`` with one RVQ stack; returns (Σ codes, indices (B, M), per-level codes, losses)."""
        _, idx, _, codes = rvq(r[:, None, :], return_all_codes=True)       # codes (M, B, 1, d)
        codes = codes[:, :, 0]
        idx = idx[:, 0]
        cb = cm = r.new_zeros(())
        res = r
        total = torch.zeros_like(r)
        for m in range(codes.shape[0]):
            e = codes[m]
            cb = cb + ((res.detach() - e) ** 2).sum(-1).mean()               # ‖sg(r) − z̃‖²
            cm = cm + self.beta * ((res - e.detach()) ** 2).sum(-1).mean()   # β ‖r − sg(z̃)‖²
            total = total + e
            res = res - e.detach()
        return total, idx, cb, cm, res

    def forward(self, x: torch.Tensor, use_fine: bool | None = None) -> dict:
        """``x`` (B, H, D) normalised chunks → reconstruction and the eq. 3 losses."""
        B = x.shape[0]
        z = self.encoder(x.reshape(B, -1))
        zq_l, idx_l, cb_l, cm_l, r = self._level(self.q_l, z)
        zq, idx = zq_l, [idx_l]
        cb, cm = cb_l, cm_l
        fine = self.q_h is not None if use_fine is None else use_fine
        if fine:
            zq_h, idx_h, cb_h, cm_h, _ = self._level(self.q_h, z - zq_l.detach())
            zq = zq_l + zq_h
            idx.append(idx_h)
            cb, cm = cb + cb_h, cm + cm_h
        z_st = z + (zq - z).detach()                                         # straight-through estimator
        x_hat = self.decoder(z_st).reshape(B, self.H, self.D)
        rec = (x_hat - x).abs().sum(-1).mean()                               # (1/T) Σ_t ‖A_t − Â_t‖₁
        return {"x_hat": x_hat, "codes": torch.cat(idx, dim=1), "rec": rec, "codebook": cb, "commit": cm,
                "loss": rec + cb + cm}

    @torch.no_grad()
    def encode(self, x: torch.Tensor, use_fine: bool | None = None) -> torch.Tensor:
        """(B, H, D) → codes (B, L), goal levels first."""
        was = self.training
        self.eval()
        try:
            return self.forward(x, use_fine)["codes"]
        finally:
            self.train(was)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, L') → (B, H, D); L' may be the goal levels only (the coarse decode)."""
        books = self.codebooks()
        z = books[0].new_zeros(codes.shape[0], self.dim)
        for lvl in range(codes.shape[1]):
            z = z + books[lvl][codes[:, lvl]]
        return self.decoder(z).reshape(codes.shape[0], self.H, self.D)


def usage_stats(codes: torch.Tensor, K: int) -> list[dict]:
    """Per level: share of the K codes used and the perplexity of their use."""
    out = []
    for lvl in range(codes.shape[1]):
        counts = torch.bincount(codes[:, lvl], minlength=K).float()
        p = counts / counts.sum().clamp(min=1)
        ent = -(p[p > 0] * p[p > 0].log()).sum().item()
        out.append({"used": round(float((counts > 0).float().mean()), 4), "perplexity": round(math.exp(ent), 1)})
    return out
