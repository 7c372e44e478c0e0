"""``kinebridge train keypoints``: train the keypoint network on rendered data, on the CPU (or ``--device cuda``).

Training samples are random crops (default 256 × 192, biased to contain a mug) of the full
640 × 480 frames at native resolution — the network is fully convolutional and its attention
takes any token count (conditional positional encoding), so it trains on crops at a quarter of
the cost and runs on whole frames; validation runs on whole frames. Augmentation: horizontal flip,
colour gains and noise, extra depth holes. Targets at 1/4 resolution (CenterNet multi-pose):

* centre and keypoint heatmaps — Gaussians at the sub-cell position, 1 at the nearest cell —
  with CenterNet's penalty-reduced focal loss (α = 2, β = 4); keypoint heatmaps are amodal
  (occluded keypoints inside the image are targets too);
* at the 3 × 3 cells around each keypoint: sub-cell offset (L1, cells) and depth (L1, cm);
* at the 3 × 3 cells around each centre: the displacement to every keypoint (L1, cells), the box
  edges (L1, cells) and each keypoint's visibility (binary cross-entropy).

AdamW, linear warm-up then cosine decay; checkpoints ``last.pt`` (every validation) and
``best.pt`` (lowest validation median 3D error); ``metrics.json`` holds every validation's
per-keypoint figures; ``val.png`` the predictions on validation frames.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from kinebridge.export.keypoints import data as D
from kinebridge.export.keypoints.decode import DecodeConfig, decode
from kinebridge.export.keypoints.lift import lift_detections
from kinebridge.export.keypoints.metrics import Accumulator
from kinebridge.export.keypoints.net import OUTPUTS, STRIDE, KeypointNet, KeypointNetConfig, to_cell

__all__ = ["KeypointDataset", "targets", "loss_fn", "train", "load_checkpoint", "validate", "figure"]

NB = 9          # 3 × 3 neighbourhood
_NBH = [(di, dj) for di in (-1, 0, 1) for dj in (-1, 0, 1)]


# ------------------------------------------------------------------------------------ targets
def _splat(hm: np.ndarray, ci: float, cj: float, sigma: float) -> None:
    h, w = hm.shape
    r = int(math.ceil(3 * sigma))
    i0, i1 = max(0, int(round(ci)) - r), min(h, int(round(ci)) + r + 1)
    j0, j1 = max(0, int(round(cj)) - r), min(w, int(round(cj)) + r + 1)
    if i0 >= i1 or j0 >= j1:
        return
    ii, jj = np.mgrid[i0:i1, j0:j1]
    g = np.exp(-((ii - ci) ** 2 + (jj - cj) ** 2) / (2 * sigma * sigma)).astype(np.float32)
    np.maximum(hm[i0:i1, j0:j1], g, out=hm[i0:i1, j0:j1])
    ri, rj = int(round(ci)), int(round(cj))
    if 0 <= ri < h and 0 <= rj < w:
        hm[ri, rj] = 1.0


def targets(lab: dict, x0: int, y0: int, cw: int, ch: int, flip: bool, n_classes: int = 1) -> dict:
    """Training targets of one frame's labels for the crop (x0, y0, cw, ch), mirrored if ``flip``."""
    K, M = len(D.KEYPOINTS), D.MAX_OBJECTS
    h, w = ch // STRIDE, cw // STRIDE
    t = {"centre_hm": np.zeros((n_classes, h, w), np.float32), "kp_hm": np.zeros((K, h, w), np.float32),
         "cen_idx": np.zeros((M, NB), np.int64), "cen_mask": np.zeros((M, NB), np.float32),
         "disp": np.zeros((M, NB, K, 2), np.float32), "disp_mask": np.zeros((M, NB, K), np.float32),
         "box": np.zeros((M, NB, 4), np.float32), "vis": np.zeros((M, K), np.float32),
         "kp_idx": np.zeros((M, K, NB), np.int64), "kp_mask": np.zeros((M, K, NB), np.float32),
         "offset": np.zeros((M, K, NB, 2), np.float32), "depth": np.zeros((M, K), np.float32)}

    def tx(u):
        u = u - x0
        return cw - 1 - u if flip else u

    for m in range(int(lab["n_objects"])):
        c = int(lab["cls"][m])
        if c < 0 or c >= n_classes:
            continue
        bx0, by0, bx1, by1 = lab["box"][m]
        bx0, bx1 = sorted((tx(bx0), tx(bx1)))
        by0, by1 = by0 - y0, by1 - y0
        size = max(1.0, math.sqrt(max(bx1 - bx0, 1) * max(by1 - by0, 1)) / STRIDE)
        kc = np.stack([to_cell(tx(lab["kp_uv"][m, :, 0])), to_cell(lab["kp_uv"][m, :, 1] - y0)], 1)   # (K, 2) x, y
        inside_kp = (kc[:, 0] > -0.5) & (kc[:, 0] < w - 0.5) & (kc[:, 1] > -0.5) & (kc[:, 1] < h - 0.5)
        sig_k = max(0.8, 0.06 * size)
        for k in range(K):
            if not inside_kp[k]:
                continue
            _splat(t["kp_hm"][k], kc[k, 1], kc[k, 0], sig_k)
            ri, rj = int(round(kc[k, 1])), int(round(kc[k, 0]))
            for n, (di, dj) in enumerate(_NBH):
                i, j = ri + di, rj + dj
                if 0 <= i < h and 0 <= j < w:
                    t["kp_idx"][m, k, n] = i * w + j
                    t["kp_mask"][m, k, n] = 1.0
                    t["offset"][m, k, n] = (kc[k, 0] - j, kc[k, 1] - i)
            t["depth"][m, k] = lab["kp_z"][m, k]
        cx, cy = to_cell(tx(lab["centre"][m, 0])), to_cell(lab["centre"][m, 1] - y0)
        if not (-0.5 < cx < w - 0.5 and -0.5 < cy < h - 0.5):
            continue
        _splat(t["centre_hm"][c], cy, cx, max(0.7, 0.12 * size))
        ri, rj = int(round(cy)), int(round(cx))
        ex0, ey0, ex1, ey1 = to_cell(bx0), to_cell(by0), to_cell(bx1), to_cell(by1)
        for n, (di, dj) in enumerate(_NBH):
            i, j = ri + di, rj + dj
            if 0 <= i < h and 0 <= j < w:
                t["cen_idx"][m, n] = i * w + j
                t["cen_mask"][m, n] = 1.0
                t["disp"][m, n] = kc - np.array([j, i], np.float32)
                t["disp_mask"][m, n] = 1.0
                t["box"][m, n] = (j - ex0, i - ey0, ex1 - j, ey1 - i)
        t["vis"][m] = lab["kp_vis"][m] & inside_kp
    return t


class KeypointDataset(torch.utils.data.Dataset):
    """Crops (training) or whole frames (``crop=None``) of a split, with targets."""

    def __init__(self, root, split: str, crop: tuple[int, int] | None = (320, 256), augment: bool = True,
                 seed: int = 0, n_classes: int = 1):
        self.root, self.split = Path(root), split
        self.shards = None
        self.n = len(D.Shards(root, split))
        if self.n == 0:
            raise ValueError(f"{root}: the {split!r} split is empty")
        self.crop, self.augment, self.seed, self.n_classes = crop, augment, seed, n_classes
        self.epoch = 0

    def __len__(self):
        return self.n

    def _open(self):
        if self.shards is None:        # per worker process: memory maps are opened where they are read
            self.shards = D.Shards(self.root, self.split)
        return self.shards

    def __getitem__(self, i):
        sh = self._open()
        rgb, depth = sh.frame(i)
        lab = sh.labels(i)
        H, W = depth.shape
        rng = np.random.default_rng([self.seed, self.epoch, i])
        if self.crop is None:
            x0, y0, cw, ch, flip = 0, 0, W, H, False
        else:
            cw, ch = self.crop
            n = int(lab["n_objects"])
            if n and rng.uniform() < 0.85:
                m = int(rng.integers(n))
                cx, cy = lab["centre"][m]
                x0 = int(np.clip(cx - rng.uniform(0.15, 0.85) * cw, 0, W - cw))
                y0 = int(np.clip(cy - rng.uniform(0.15, 0.85) * ch, 0, H - ch))
            else:
                x0, y0 = int(rng.integers(0, W - cw + 1)), int(rng.integers(0, H - ch + 1))
            flip = bool(self.augment and rng.uniform() < 0.5)
        rgb = rgb[y0:y0 + ch, x0:x0 + cw]
        depth = depth[y0:y0 + ch, x0:x0 + cw]
        if flip:
            rgb, depth = rgb[:, ::-1], depth[:, ::-1]
        rgb = np.ascontiguousarray(rgb)
        depth = np.ascontiguousarray(depth)
        if self.augment:
            img = rgb.astype(np.float32) * rng.uniform(0.85, 1.15, 3).astype(np.float32)
            img += np.float32(rng.uniform(-15, 15))
            if rng.uniform() < 0.5:
                img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(rng.uniform(0, 4))
            rgb = np.clip(img, 0, 255).astype(np.uint8)
            if rng.uniform() < 0.3:          # extra holes, so the depth head learns where it has none
                for _ in range(int(rng.integers(1, 4))):
                    hy, hx = int(rng.integers(0, ch)), int(rng.integers(0, cw))
                    ry, rx = int(rng.integers(2, 20)), int(rng.integers(2, 20))
                    depth[max(0, hy - ry):hy + ry, max(0, hx - rx):hx + rx] = 0.0
        t = targets(lab, x0, y0, cw, ch, flip, self.n_classes)
        t = {k: torch.from_numpy(v) for k, v in t.items()}
        return torch.from_numpy(rgb), torch.from_numpy(depth), t, i


# --------------------------------------------------------------------------------------- loss
def _focal(pred, gt):
    pred = pred.clamp(1e-4, 1 - 1e-4)
    pos = gt.eq(1).float()
    neg = 1.0 - pos
    pl = torch.log(pred) * (1 - pred) ** 2 * pos
    nl = torch.log(1 - pred) * pred ** 2 * (1 - gt) ** 4 * neg
    n = pos.sum()
    return -(pl.sum() + nl.sum()) / n.clamp_min(1.0)


def _gather(m, idx):
    """m (B, C, h, w), idx (B, N) flat cell indices → (B, C, N)."""
    B, C = m.shape[:2]
    return m.flatten(2).gather(2, idx.unsqueeze(1).expand(B, C, idx.shape[1]))


WEIGHTS = {"centre": 1.0, "kp_heat": 1.0, "offset": 1.0, "disp": 0.1, "box": 0.05, "depth": 1.0, "vis": 0.2}


def loss_fn(out, t, weights=WEIGHTS) -> tuple[torch.Tensor, dict]:
    cen, heat, off, disp, box, kz, kvis, frac = out
    B, K = heat.shape[:2]
    M = t["cen_idx"].shape[1]
    parts = {"centre": _focal(cen, t["centre_hm"]), "kp_heat": _focal(heat, t["kp_hm"])}
    # keypoint neighbourhoods: offsets and depth
    idx = t["kp_idx"].reshape(B, M * K * NB)
    mask = t["kp_mask"]                                                     # (B, M, K, NB)
    g_off = _gather(off, idx).reshape(B, K, 2, M, K, NB)
    g_off = torch.diagonal(g_off, dim1=1, dim2=4).permute(0, 2, 4, 3, 1)     # (B, M, K, NB, 2)... see below
    # diagonal puts the matched keypoint axis last: (B, 2, M, NB, K) → (B, M, K, NB, 2)
    l_off = (torch.abs(g_off - t["offset"]).sum(-1) * mask).sum() / mask.sum().clamp_min(1.0)
    g_z = torch.diagonal(_gather(kz, idx).reshape(B, K, M, K, NB), dim1=1, dim2=3)   # (B, M, NB, K)
    g_fr = _gather(frac, idx).reshape(B, M, K, NB)
    zmask = mask * (g_fr >= 0.15).float() * (t["depth"] > 0).float().unsqueeze(-1)
    l_z = (torch.abs(g_z.permute(0, 1, 3, 2) - t["depth"].unsqueeze(-1)) * 100.0 * zmask).sum() / zmask.sum().clamp_min(1.0)
    parts["offset"], parts["depth"] = l_off, l_z
    # centre neighbourhoods: displacements, boxes, visibility
    cidx = t["cen_idx"].reshape(B, M * NB)
    cm = t["cen_mask"]                                                      # (B, M, NB)
    g_disp = _gather(disp, cidx).reshape(B, K, 2, M, NB).permute(0, 3, 4, 1, 2)   # (B, M, NB, K, 2)
    dm = t["disp_mask"]
    parts["disp"] = (torch.abs(g_disp - t["disp"]).sum(-1) * dm).sum() / dm.sum().clamp_min(1.0)
    g_box = _gather(box, cidx).reshape(B, 4, M, NB).permute(0, 2, 3, 1)
    parts["box"] = (torch.abs(g_box - t["box"]).sum(-1) * cm).sum() / cm.sum().clamp_min(1.0)
    g_vis = _gather(kvis, cidx).reshape(B, K, M, NB).permute(0, 2, 3, 1)    # (B, M, NB, K)
    vt = t["vis"].unsqueeze(2).expand_as(g_vis)
    bce = F.binary_cross_entropy_with_logits(g_vis, vt, reduction="none")
    parts["vis"] = (bce * cm.unsqueeze(-1)).sum() / (cm.sum() * K).clamp_min(1.0)
    total = sum(weights[k] * v for k, v in parts.items())
    return total, {k: float(v.detach()) for k, v in parts.items()}


# ------------------------------------------------------------------------------------ training
def _collate(batch):
    rgb = torch.stack([b[0] for b in batch])
    depth = torch.stack([b[1] for b in batch])
    t = {k: torch.stack([b[2][k] for b in batch]) for k in batch[0][2]}
    return rgb, depth, t, [b[3] for b in batch]


def _outputs_np(out) -> dict:
    return {name: o.detach().cpu().numpy() for name, o in zip(OUTPUTS, out)}


def _device_of(model) -> torch.device:
    return next(model.parameters()).device


def _run(model, rgb: np.ndarray, depth: np.ndarray) -> dict:
    """The model's outputs (numpy) for one frame, on the model's device."""
    dev = _device_of(model)
    return _outputs_np(model(torch.from_numpy(rgb)[None].to(dev), torch.from_numpy(depth)[None].to(dev)))


@torch.no_grad()
def validate(model, shards: D.Shards, frames, decode_cfg=DecodeConfig()) -> dict:
    """Per-keypoint figures (:class:`~kinebridge.export.keypoints.metrics.Accumulator`) on ``frames``."""
    model.eval()
    acc = Accumulator(D.KEYPOINTS)
    for i in frames:
        rgb, depth = shards.frame(i)
        lab = shards.labels(i)
        out = _run(model, rgb, depth)
        dets = decode(out, decode_cfg)
        fx, fy, cx, cy = lab["intrinsics"]
        K = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]])
        lift_detections(dets, D.KEYPOINTS, K, lab["T_base_cam"])        # the world's table top is z = 0
        acc.add(dets, lab, K, lab["T_base_cam"])
    return acc.summary()


def figure(model, shards: D.Shards, frames, path: Path, title: str = "") -> None:
    """Predictions (circles) against ground truth (crosses) on validation frames, PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    model.eval()
    frames = list(frames)[:6]
    cols = 3
    rows = max(1, math.ceil(len(frames) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 5.3, rows * 4.1), squeeze=False)
    colours = ["tab:red", "tab:green", "tab:blue", "gold"]
    for ax, i in zip(axes.flat, frames):
        rgb, depth = shards.frame(i)
        lab = shards.labels(i)
        with torch.no_grad():
            out = _run(model, rgb, depth)
        dets = decode(out)
        fx, fy, cx, cy = lab["intrinsics"]
        lift_detections(dets, D.KEYPOINTS, np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]]), lab["T_base_cam"])
        ax.imshow(rgb)
        for m in range(int(lab["n_objects"])):
            for k in range(len(D.KEYPOINTS)):
                ax.plot(*lab["kp_uv"][m, k], "x", color=colours[k], ms=6, mew=1.5)
        for d in dets:
            x0, y0, x1, y1 = d.box
            ax.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec="white", lw=0.8))
            ax.text(x0, y0 - 3, f"{d.score:.2f}", color="white", fontsize=7)
            for k in range(len(D.KEYPOINTS)):
                ax.plot(*d.uv[k], "o", mfc="none", color=colours[k], ms=7, mew=1.2)
        ax.set_axis_off()
    for ax in list(axes.flat)[len(frames):]:
        ax.set_axis_off()
    handles = [plt.Line2D([], [], ls="", marker="o", mfc="none", color=c, label=k) for c, k in zip(colours, D.KEYPOINTS)]
    fig.legend(handles=handles, loc="lower center", ncol=4, frameon=False)
    fig.suptitle(title or "validation: o prediction, x ground truth (held-out mug shapes)")
    fig.tight_layout(rect=(0, 0.04, 1, 0.96))
    fig.savefig(path, dpi=80)
    plt.close(fig)


def load_checkpoint(path) -> tuple[KeypointNet, dict]:
    ck = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(ck, dict) or "model" not in ck or "config" not in ck:
        raise ValueError(f"{path} is not a kinebridge keypoint checkpoint (no model/config)")
    model = KeypointNet(KeypointNetConfig.from_dict(ck["config"]))
    model.load_state_dict(ck["model"])
    model.eval()
    return model, ck


def train(data, out, *, size: str = "default", width: int | None = None, steps: int = 20000, batch: int = 8,
          crop=(256, 192), lr: float = 2e-3, val_every: int = 1000, val_frames: int = 120, threads: int = 2,
          workers: int = 1, seed: int = 0, resume: bool = False, time_limit_min: float | None = None,
          progress: bool = True, command: str = "", device: str = "cpu", log_every: int = 250) -> dict:
    """Train (see the module docstring); returns the final summary (also in OUT/metrics.json).

    ``device``: where the network trains (``cpu``, ``cuda``, ``cuda:N``); crops are made on the CPU by
    ``workers`` loader processes either way, checkpoints are loadable on the CPU. Without a progress bar
    a line of losses and speed is printed every ``log_every`` steps."""
    from tqdm import tqdm

    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {device}: torch {torch.__version__} sees no CUDA device")
        torch.backends.cudnn.benchmark = True          # fixed crop size: pick the fastest kernels once
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    torch.set_num_threads(max(1, threads))
    torch.manual_seed(seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = KeypointNetConfig.tiny() if size == "tiny" else KeypointNetConfig()
    if width is not None:
        cfg.width = int(width)
    start_step, history, best = 0, [], math.inf
    earlier: list = []                  # the commands of the runs this one resumes (reproduce in order)
    model = KeypointNet(cfg).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    if resume:
        if not (out / "last.pt").exists():
            raise ValueError(f"--resume: {out / 'last.pt'} does not exist")
        model, ck = load_checkpoint(out / "last.pt")
        model = model.to(dev)
        cfg = model.cfg
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
        opt.load_state_dict(ck["optimizer"])
        start_step, history, best = ck["step"], ck.get("history", []), ck.get("best", math.inf)
        earlier = ck.get("commands") or ([ck["command"]] if ck.get("command") else [])
    ds = KeypointDataset(data, "train", crop=crop, augment=True, seed=seed, n_classes=cfg.n_classes)
    val = D.Shards(data, "val")
    if len(val) == 0:
        raise ValueError(f"{data}: the val split is empty; render more frames")
    rng = np.random.default_rng(seed)
    val_idx = np.sort(rng.choice(len(val), size=min(val_frames, len(val)), replace=False))
    warm = min(500, max(1, steps // 20))

    t0 = time.time()
    limit = None if time_limit_min is None else time_limit_min * 60.0

    def lr_at(s):
        """Warm-up, then cosine decay over the run — by steps, or by time when a time limit comes first,
        so a run cut by --time-limit-min still ends with a decayed learning rate."""
        if s < warm:
            return lr * (s + 1) / warm
        p = (s - warm) / max(1, steps - warm)
        if limit is not None:
            p = max(p, (time.time() - t0) / limit)
        return lr * 0.5 * (1 + math.cos(math.pi * min(1.0, p)))
    step = start_step
    bar = tqdm(total=steps, initial=start_step, desc="train", unit="step", disable=not progress, dynamic_ncols=True)
    run_loss: dict = {}
    data_manifest = json.loads((Path(data) / "manifest.json").read_text())

    def checkpoint(summary):
        nonlocal best
        ck = {"model": model.state_dict(), "config": cfg.to_dict(), "optimizer": opt.state_dict(), "step": step,
              "history": history, "best": best, "data": str(data), "command": command, "seed": seed,
              "commands": earlier + [command],
              "data_manifest": {k: data_manifest.get(k) for k in ("generator_version", "seed", "frames", "splits",
                                                                   "command", "seconds", "workers",
                                                                   "requested_frames") if k in data_manifest},
              "train": {"steps": steps, "batch": batch, "crop": list(crop), "lr": lr, "threads": threads,
                        "device": f"{dev} ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else str(dev),
                        "workers": workers, "time_limit_min": time_limit_min, "torch": torch.__version__,
                        "minutes": round((time.time() - t0) / 60, 2)}}
        torch.save(ck, out / "last.pt")
        m3 = summary.get("median_3d_mm")
        if m3 is not None and m3 < best:
            best = m3
            ck["best"] = best
            torch.save(ck, out / "best.pt")

    def run_validation():
        s = validate(model, val, val_idx)
        s["step"] = step
        s["minutes"] = round((time.time() - t0) / 60, 2)
        s["train_loss"] = {k: round(v, 4) for k, v in run_loss.items()}
        history.append(s)
        checkpoint(s)
        figure(model, val, val_idx[:6], out / "val.png",
               title=f"step {step}: median 2D {s['median_2d_px']} px, 3D {s['median_3d_mm']} mm (validation)")
        (out / "metrics.json").write_text(json.dumps({"history": history,
                                                      "best_median_3d_mm": None if best == math.inf else best,
                                                      "config": cfg.to_dict(), "command": command}, indent=1))
        bar.write(f"step {step}: val median 2D {s['median_2d_px']} px, 3D {s['median_3d_mm']} mm, recall "
                  f"{s['detection']['recall_unoccluded']}, precision {s['detection']['precision']}")
        model.train()
        return s

    stop = False
    epoch = 0
    while step < steps and not stop:
        ds.epoch = epoch
        loader = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers,
                                             collate_fn=_collate, drop_last=True, persistent_workers=False,
                                             pin_memory=dev.type == "cuda",
                                             generator=torch.Generator().manual_seed(seed * 1000 + epoch))
        model.train()
        for rgb, depth, t, _idx in loader:
            for g in opt.param_groups:
                g["lr"] = lr_at(step)
            if dev.type != "cpu":
                rgb, depth = rgb.to(dev, non_blocking=True), depth.to(dev, non_blocking=True)
                t = {k: v.to(dev, non_blocking=True) for k, v in t.items()}
            out_ = model(rgb, depth)
            loss, parts = loss_fn(out_, t)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            step += 1
            for k, v in parts.items():
                run_loss[k] = 0.98 * run_loss.get(k, v) + 0.02 * v
            bar.update(1)
            bar.set_postfix({k: f"{v:.3f}" for k, v in run_loss.items()}, refresh=False)
            if not progress and log_every and step % log_every == 0:
                el = time.time() - t0
                print(f"step {step} {el:.0f} s ({(step - start_step) / max(el, 1e-9):.1f} steps/s) lr "
                      f"{opt.param_groups[0]['lr']:.2e} loss " + " ".join(f"{k} {v:.3f}" for k, v in run_loss.items()),
                      flush=True)
            if step % val_every == 0 or step >= steps:
                run_validation()
            if limit is not None and time.time() - t0 > limit:
                stop = True
            if step >= steps or stop:
                break
        epoch += 1
    bar.close()
    if not history or history[-1]["step"] != step:
        run_validation()
    return {"summary": {"steps": step, "minutes": round((time.time() - t0) / 60, 1),
                        "best_median_3d_mm": None if best == math.inf else best,
                        "last": {k: history[-1][k] for k in ("median_2d_px", "median_3d_mm", "detection")},
                        "out": str(out)}}
