"""``kinebridge train tokenizer``: the bi-level RVQ-VAE (§3.1) and its baselines at one token budget.

For a budget of B = 2M tokens per chunk (M residual levels per codebook, K codes each):

* ``bi-level-rvq`` — stage I: encoder, E_l (M levels) and decoder on the coarse split's training chunks;
  stage II: E_l and its quantiser frozen, E_h (M levels, same K and d) added on the residual, the encoder and
  decoder warm-started and fine-tuned, on the kine split's training chunks. Checkpoints ``stage1.pt``,
  ``stage2.pt``;
* ``rvq`` — the single-level RVQ-VAE (VQ-VLA style: one codebook stack of 2M levels), the same encoder,
  decoder, losses and number of gradient steps (both stages' worth), on the union of both splits;
* ``bins-256`` — OpenVLA's 256 uniform bins per dimension and step, within B tokens;
* ``fast`` — DCT + BPE (vocabulary 1024) trained here, its scale set for ≤ B tokens per chunk on average.

Every tokenizer's folder under ``--out`` holds a ``manifest.json``; the RVQs also ``decoder.onnx`` and
``decoder.npz`` (:mod:`.export`), a training log and codebook usage. ``reconstructions.png`` plots held-out
kine chunks and whole episodes, original against each tokenizer. The bi-level tokens of every episode are
written into the data set (``<data>/tokens/<tokenizer id>/``) for ``kinebridge run --policy replay-tokens``
and for the generator to come.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from kinebridge.export.tokenizer.baselines import BinsTokenizer, FASTTokenizer
from kinebridge.export.tokenizer.data import KineDataset, episode_chunks
from kinebridge.export.tokenizer.export import export_rvq, sequences
from kinebridge.export.tokenizer.model import RVQVAE, usage_stats

__all__ = ["main", "train_all", "joint_scale", "TrainConfig", "load_rvq", "write_tokens"]

NAMES = ("bi-level-rvq", "rvq", "bins-256", "fast")


class TrainConfig:
    def __init__(self, **kw):
        self.levels = kw.get("levels", 4)
        self.codebook = kw.get("codebook", 256)
        self.dim = kw.get("dim", 32)
        self.hidden = kw.get("hidden", 256)
        self.steps = kw.get("steps", 4000)
        self.batch = kw.get("batch", 512)
        self.lr = kw.get("lr", 1e-3)
        self.seed = kw.get("seed", 0)
        self.beta = kw.get("beta", 0.25)
        self.which = tuple(kw.get("which", NAMES))
        self.progress = kw.get("progress", True)
        self.exporter = kw.get("exporter", "dynamo")          # "torchscript": the faster legacy ONNX exporter
        self.fast_train = kw.get("fast_train", 2000)           # chunks the FAST BPE is trained on

    def as_dict(self) -> dict:
        return dict(vars(self), which=list(self.which))


def joint_scale(deltas: np.ndarray) -> np.ndarray:
    """Per-joint normalisation: the 99.5th percentile of |Δ| over the training chunks (at least 1 mrad)."""
    s = np.quantile(np.abs(np.asarray(deltas)).reshape(-1, deltas.shape[-1]), 0.995, axis=0)
    return np.maximum(s, 1e-3)


def _bar(total, desc, enabled):
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit="step", disable=not enabled, mininterval=2.0)


def _fit(model, x: torch.Tensor, steps: int, cfg: TrainConfig, desc: str, log: list, params=None, use_fine=None):
    """Adam on eq. 3 over ``steps`` batches drawn from ``x`` (n, H, D); logs losses and codebook usage."""
    gen = torch.Generator().manual_seed(cfg.seed + len(log))
    params = [p for p in (params if params is not None else model.parameters()) if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, steps), eta_min=cfg.lr * 0.05)
    model.train()
    bar = _bar(steps, desc, cfg.progress)
    codes_seen = []
    t0 = time.perf_counter()
    for s in range(steps):
        idx = torch.randint(0, x.shape[0], (min(cfg.batch, x.shape[0]),), generator=gen)
        out = model(x[idx], use_fine)
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        opt.step()
        sched.step()
        codes_seen.append(out["codes"].detach())
        if (s + 1) % 100 == 0 or s + 1 == steps:
            usage = usage_stats(torch.cat(codes_seen[-20:]), model.K)
            entry = {"stage": desc, "step": s + 1, "rec": round(float(out["rec"].detach()), 5),
                     "codebook": round(float(out["codebook"].detach()), 6),
                     "commit": round(float(out["commit"].detach()), 6),
                     "usage": [u["used"] for u in usage], "perplexity": [u["perplexity"] for u in usage],
                     "elapsed_s": round(time.perf_counter() - t0, 1)}
            log.append(entry)
            bar.set_postfix(rec=f"{entry['rec']:.4f}", used=f"{min(entry['usage']):.2f}-{max(entry['usage']):.2f}")
            codes_seen = codes_seen[-20:]
        bar.update(1)
    bar.close()
    model.eval()


def _rec_l1(model, x: torch.Tensor, scale: np.ndarray, use_fine=None) -> float:
    with torch.no_grad():
        out = model(x, use_fine)
    return float(np.mean(np.abs((out["x_hat"] - x).numpy() * scale)))


def _save(model, path: Path, extra: dict) -> None:
    torch.save({"state": model.state_dict(), "levels": model.levels, "H": model.H, "D": model.D, "dim": model.dim,
                "hidden": model.hidden, "K": model.K, "beta": model.beta, **extra}, path)


def load_rvq(path) -> RVQVAE:
    ck = torch.load(path, map_location="cpu", weights_only=False)
    m = RVQVAE(ck["H"], ck["D"], ck["dim"], ck["hidden"], ck["K"], ck["levels"][0], ck["beta"])
    if len(ck["levels"]) > 1:
        m.add_fine_level(ck["levels"][1])
    # the k-means state says "initialised": restoring the state dict restores it
    m.load_state_dict(ck["state"])
    m.eval()
    return m


def train_all(data: Path, out: Path, cfg: TrainConfig, log=print) -> dict:
    torch.manual_seed(cfg.seed)
    ds = KineDataset(data)
    H = 5
    ctr, ktr = ds.chunks("coarse", False, H), ds.chunks("kine", False, H)
    cte, kte = ds.chunks("coarse", True, H), ds.chunks("kine", True, H)
    if not len(ctr) or not len(ktr):
        raise ValueError(f"{data}: the tokenizers need training chunks in both splits (coarse {len(ctr)}, kine "
                         f"{len(ktr)}); generate more episodes")
    scale = joint_scale(np.concatenate([ctr.delta, ktr.delta]))
    to_t = lambda c: torch.as_tensor(np.asarray(c.delta) / scale, dtype=torch.float32)  # noqa: E731
    Xc, Xk, Xct, Xkt = to_t(ctr), to_t(ktr), to_t(cte), to_t(kte)
    dt = 1.0 / ds.action_hz
    B = 2 * cfg.levels
    out.mkdir(parents=True, exist_ok=True)
    data_info = {"root": str(Path(data).resolve()), "episodes": len(ds.entries), "train_chunks": {"coarse": len(ctr), "kine": len(ktr)},
                 "test_chunks": {"coarse": len(cte), "kine": len(kte)}, "H": H, "action_hz": ds.action_hz}
    log(f"chunks: coarse {len(ctr)} train / {len(cte)} held out, kine {len(ktr)} / {len(kte)}; budget {B} tokens; "
        f"scale (rad) {np.round(scale, 3).tolist()}")
    summary = {"budget": B, "scale": scale.tolist(), "data": data_info, "config": cfg.as_dict(), "tokenizers": {}}

    if "bi-level-rvq" in cfg.which:
        d = out / "bi-level-rvq"
        d.mkdir(exist_ok=True)
        tl: list = []
        m = RVQVAE(H, 7, cfg.dim, cfg.hidden, cfg.codebook, cfg.levels, cfg.beta)
        _fit(m, Xc, cfg.steps, cfg, "stage I (coarse, E_l)", tl)
        s1 = {"coarse_test_l1": _rec_l1(m, Xct, scale) if len(Xct) else None, "kine_test_l1": _rec_l1(m, Xkt, scale)}
        _save(m, d / "stage1.pt", {"scale": scale, "stage": 1, "metrics": s1})
        m.add_fine_level(cfg.levels)
        shared = list(m.encoder.parameters()) + list(m.decoder.parameters()) + list(m.q_h.parameters())
        _fit(m, Xk, cfg.steps, cfg, "stage II (kine, E_h)", tl, params=shared)
        s2 = {"coarse_test_l1": _rec_l1(m, Xct, scale) if len(Xct) else None,
              "coarse_test_l1_goal_level_only": _rec_l1(m, Xct, scale, use_fine=False) if len(Xct) else None,
              "kine_test_l1": _rec_l1(m, Xkt, scale)}
        _save(m, d / "stage2.pt", {"scale": scale, "stage": 2, "metrics": s2})
        (d / "training_log.json").write_text(json.dumps(tl))
        man = export_rvq(m, d, name="bi-level-rvq", scale=scale, dt=dt, data=data_info,
                         training={**cfg.as_dict(), "stage1": s1, "stage2": s2, "final": tl[-1]},
                         parity_codes=m.encode(Xkt[:256]).numpy() if len(Xkt) else None, exporter=cfg.exporter)
        summary["tokenizers"]["bi-level-rvq"] = {"stage1": s1, "stage2": s2, "id": man["id"], "parity": man["parity"]}
        mrad = lambda v: "n/a" if v is None else f"{v * 1e3:.2f}"  # noqa: E731
        log(f"bi-level-rvq: kine held-out L1 {mrad(s2['kine_test_l1'])} mrad (stage I alone {mrad(s1['kine_test_l1'])}); "
            f"coarse held-out {mrad(s1['coarse_test_l1'])} → {mrad(s2['coarse_test_l1'])} mrad; parity {man['parity']}")
        write_tokens(ds, m, man, scale, log)

    if "rvq" in cfg.which:
        d = out / "rvq"
        d.mkdir(exist_ok=True)
        tl = []
        m = RVQVAE(H, 7, cfg.dim, cfg.hidden, cfg.codebook, 2 * cfg.levels, cfg.beta)
        _fit(m, torch.cat([Xc, Xk]), 2 * cfg.steps, cfg, "single-level RVQ (both splits)", tl)
        s = {"coarse_test_l1": _rec_l1(m, Xct, scale) if len(Xct) else None, "kine_test_l1": _rec_l1(m, Xkt, scale)}
        _save(m, d / "model.pt", {"scale": scale, "stage": 0, "metrics": s})
        (d / "training_log.json").write_text(json.dumps(tl))
        man = export_rvq(m, d, name="rvq", scale=scale, dt=dt, data=data_info,
                         training={**cfg.as_dict(), "metrics": s, "final": tl[-1]},
                         parity_codes=m.encode(Xkt[:256]).numpy() if len(Xkt) else None, exporter=cfg.exporter)
        summary["tokenizers"]["rvq"] = {"metrics": s, "id": man["id"], "parity": man["parity"]}
        log(f"rvq: kine held-out L1 {s['kine_test_l1'] * 1e3:.2f} mrad; parity {man['parity']}")

    if "bins-256" in cfg.which:
        for name, budget in (("bins-256", B), ("bins-256-full", 7 * H)):
            t = BinsTokenizer(budget, H, 7)
            dd = out / name
            dd.mkdir(exist_ok=True)
            (dd / "manifest.json").write_text(json.dumps({"format": "kinebridge-tokenizer-1", "name": name,
                                                         "chunk": {"H": H, "joints": 7, "dt": dt, "scale": scale.tolist()},
                                                         **t.manifest()}, indent=1))
        log(f"bins-256: {BinsTokenizer(B, H, 7).tokens_per_chunk} tokens/chunk (steps "
            f"{BinsTokenizer(B, H, 7).steps.tolist()} of {H}); bins-256-full: {7 * H}")

    if "fast" in cfg.which:
        d = out / "fast"
        d.mkdir(exist_ok=True)
        t0 = time.perf_counter()
        f = FASTTokenizer(H, 7).fit(np.concatenate([np.asarray(ctr.delta), np.asarray(ktr.delta)]) / scale, B,
                                    seed=cfg.seed, n_train=cfg.fast_train, log=log)
        (d / "manifest.json").write_text(json.dumps({"format": "kinebridge-tokenizer-1", "name": "fast",
                                                    "chunk": {"H": H, "joints": 7, "dt": dt, "scale": scale.tolist()},
                                                    "budget": B, "fit_s": round(time.perf_counter() - t0, 1),
                                                    **f.manifest()}))
        log(f"fast: scale {f.scale:.3g}, {len(f.merges)} merges (vocabulary {f.base + len(f.merges)})")
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=float))
    try:
        from kinebridge.export.tokenizer.figure import figure
        figure(ds, out, out / "reconstructions.png")
        log(f"figure: {out / 'reconstructions.png'}")
    except ImportError as exc:          # matplotlib is in the eval extra
        log(f"no reconstruction figure ({exc}); pip install 'kinebridge[eval]'")
    return summary


def write_tokens(ds: KineDataset, model: RVQVAE, manifest: dict, scale: np.ndarray, log=print) -> Path:
    """Every episode's chunk tokens (one sequence per step, delimiters included) into
    ``<data>/tokens/<tokenizer id>/ep_NNNNNN.npy`` (int32 (T, length)) with ``index.json``."""
    d = ds.root / "tokens" / manifest["id"]
    d.mkdir(parents=True, exist_ok=True)
    layout = manifest["tokens"]
    for e in ds.entries:
        a = ds.arrays(e["id"], ("q", "action_q", "action_tcp"))
        c = episode_chunks(a, manifest["chunk"]["H"], 1, e["id"])
        codes = model.encode(torch.as_tensor(np.asarray(c.delta) / scale, dtype=torch.float32)).numpy()
        np.save(d / f"ep_{e['id']:06d}.npy", sequences(codes, layout))
    idx = {"tokenizer": manifest["id"], "name": manifest["name"], "layout": layout, "chunk": manifest["chunk"],
           "episodes": [e["id"] for e in ds.entries], "format": "kinebridge-tokens-1",
           "rows": "one token sequence per step t: the chunk of steps t+1 … t+H relative to q[t]"}
    (d / "index.json").write_text(json.dumps(idx, indent=1))
    log(f"tokens of {len(ds.entries)} episodes in {d}")
    return d


def main(args) -> dict:
    torch.set_num_threads(max(1, int(args.threads)))
    which = tuple(w.strip() for w in args.which.split(",") if w.strip())
    bad = [w for w in which if w not in NAMES]
    if bad:
        raise ValueError(f"--which: unknown tokenizers {bad}; choose from {list(NAMES)}")
    for name, v, lo in (("--levels", args.levels, 1), ("--codebook", args.codebook, 2), ("--dim", args.dim, 2),
                        ("--hidden", args.hidden, 8), ("--steps", args.steps, 1), ("--batch", args.batch, 2)):
        if v < lo:
            raise ValueError(f"{name} must be at least {lo}, got {v}")
    cfg = TrainConfig(levels=args.levels, codebook=args.codebook, dim=args.dim, hidden=args.hidden, steps=args.steps,
                      batch=args.batch, lr=args.lr, seed=args.seed, which=which, progress=not args.no_progress)
    import sys
    return train_all(args.data, args.out, cfg, log=lambda s: print(s, file=sys.stderr))
