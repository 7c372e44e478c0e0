"""``kinebridge eval keypoints``: the exported ONNX model on held-out scenes with unseen mug shapes.

Scenes are drawn fresh from the held-out shape ranges (:data:`~kinebridge.export.keypoints.data.HELDOUT_SHAPES`:
radius 38–42 mm, height 94–106 mm, handle reach 26.5–30.5 mm, the ``ear`` handle — none of which a
training mug has) with the generator's scene sampler (split code 4, ``eval``: other seeds than the
data set's val/test), rendered at 640 × 480 from 3 random viewpoints per scene with the same sensor
noise as the training data, and scored with :mod:`kinebridge.export.keypoints.metrics`: per
keypoint and overall 2D error (px) and 3D error (mm, back-projected with the frame's calibration —
VL-MP eq. 2), detection recall (unoccluded mugs, all mugs in view) and precision, and the model's
latency (ONNX Runtime, ``threads`` intra-op threads) — inference and decoding separately.

Only ONNX Runtime and the world (MuJoCo) are needed: torch is never imported.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from kinebridge.export.keypoints import data as D
from kinebridge.export.keypoints.metrics import Accumulator

__all__ = ["evaluate", "report", "TARGETS"]

TARGETS = {"median_2d_px": 3.0, "median_3d_mm": 5.0, "recall_unoccluded": 0.98, "inference_ms_640x480": 25.0}


def _stats(v) -> dict:
    v = np.asarray(v, float)
    if not v.size:
        return {"n": 0}
    return {"n": int(v.size), "median": round(float(np.median(v)), 3), "p95": round(float(np.percentile(v, 95)), 3),
            "mean": round(float(v.mean()), 3), "min": round(float(v.min()), 3)}


def evaluate(model=None, scenes: int = 40, seed: int = 7, threads: int = 2, views: int = 3, out=None,
             progress: bool = True, providers="auto") -> dict:
    """Score the ONNX model at ``model`` (default: the shipped one); see the module docstring."""
    from tqdm import tqdm

    from kinebridge.drivers.world.render import Renderer
    from kinebridge.drivers.world.world import World
    from kinebridge.export.keypoints.decode import decode
    from kinebridge.export.keypoints.lift import lift_detections
    from kinebridge.export.keypoints.model import load

    if scenes < 1:
        raise ValueError(f"--scenes: expected at least 1, got {scenes}")
    os.environ.setdefault("MUJOCO_GL", "egl")
    m = load(model, threads=threads, providers=providers)
    acc = Accumulator(m.keypoints)
    acc_amb = Accumulator(m.keypoints)
    infer, dec, render_s = [], [], []
    sampler = D.SceneSampler("eval")
    samples = []
    t0 = time.time()
    with tqdm(total=scenes * views, desc="eval", unit="frame", disable=not progress, dynamic_ncols=True) as bar:
        for s in range(scenes):
            rng = D.scene_rng(seed, "eval", s)
            scene, ambiguous = sampler.scene(rng)
            first = sampler.placements(rng, scene, ambiguous)
            scene = D.with_placements(scene, first)
            world = World(scene)
            renderer = Renderer(world, D.WIDTH, D.HEIGHT)
            try:
                tr = time.perf_counter()
                for rgb, dq, lab, intr, T, _f in D.render_views(world, renderer, rng, scene, views):
                    render_s.append(time.perf_counter() - tr)
                    depth = dq.astype(np.float32) * np.float32(D.DEPTH_UNIT)
                    ti = time.perf_counter()
                    outputs = m.run(rgb, depth)
                    tj = time.perf_counter()
                    dets = decode(outputs, m.decode_cfg)
                    lift_detections(dets, m.keypoints, intr.K, T)        # the world's table top: z = 0
                    tk = time.perf_counter()
                    infer.append((tj - ti) * 1e3)
                    dec.append((tk - tj) * 1e3)
                    acc.add(dets, lab, intr.K, T, count_held=False)
                    if ambiguous:
                        acc_amb.add(dets, lab, intr.K, T, count_held=False)
                    if len(samples) < 6 and lab["n_objects"]:
                        samples.append((rgb, dets, lab))
                    bar.update(1)
                    tr = time.perf_counter()
            finally:
                renderer.close()
    summary = acc.summary()
    res = {
        "median_2d_px": summary["median_2d_px"], "median_3d_mm": summary["median_3d_mm"],
        "recall_unoccluded": summary["detection"]["recall_unoccluded"],
        "precision": summary["detection"]["precision"],
        "model": {"path": str(m.path), "name": m.name, "provider": m.session.provider, "threads": threads,
                  "provider_reason": m.session.reason},
        "scenes": scenes, "views_per_scene": views, "seed": seed, "frames": summary["frames"],
        "held_out_shapes": {"radius_m": D.HELDOUT_SHAPES.radius, "height_m": D.HELDOUT_SHAPES.height,
                            "handle_reach_m": D.HELDOUT_SHAPES.reach, "handles": D.HELDOUT_SHAPES.handles,
                            "train_handles": D.TRAIN_SHAPES.handles},
        "overall": summary["overall"], "per_keypoint": summary["per_keypoint"], "detection": summary["detection"],
        "3d_mm_by_handle": {D.HANDLES[int(k)]: v for k, v in summary["3d_mm_by_handle"].items()},
        "ambiguous_scenes": {k: acc_amb.summary()[k] for k in ("median_2d_px", "median_3d_mm", "detection")},
        "latency_ms": {"inference": _stats(infer), "decode": _stats(dec)},
        "targets": TARGETS,
        "seconds": round(time.time() - t0, 1),
    }
    inf_med = res["latency_ms"]["inference"].get("median")
    res["meets"] = {
        "median_2d_px": res["median_2d_px"] is not None and res["median_2d_px"] <= TARGETS["median_2d_px"],
        "median_3d_mm": res["median_3d_mm"] is not None and res["median_3d_mm"] <= TARGETS["median_3d_mm"],
        "recall_unoccluded": (res["recall_unoccluded"] or 0) >= TARGETS["recall_unoccluded"],
        "inference_ms_640x480": inf_med is not None and inf_med <= TARGETS["inference_ms_640x480"],
    }
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "eval_keypoints.json").write_text(json.dumps(res, indent=1))
        try:
            _figure(samples, m.keypoints, out / "eval_keypoints.png")
            res["figure"] = str(out / "eval_keypoints.png")
        except ImportError:         # matplotlib is the eval extra's
            pass
    return res


def _figure(samples, keypoints, path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = ["tab:red", "tab:green", "tab:blue", "gold"]
    fig, axes = plt.subplots(2, 3, figsize=(16, 8.4), squeeze=False)
    for ax, (rgb, dets, lab) in zip(axes.flat, samples):
        ax.imshow(rgb)
        for m in range(int(lab["n_objects"])):
            for k in range(len(keypoints)):
                ax.plot(*lab["kp_uv"][m, k], "x", color=colours[k], ms=6, mew=1.5)
        for d in dets:
            for k in range(len(keypoints)):
                ax.plot(*d.uv[k], "o", mfc="none", color=colours[k], ms=7, mew=1.2)
        ax.set_axis_off()
    for ax in list(axes.flat)[len(samples):]:
        ax.set_axis_off()
    handles = [plt.Line2D([], [], ls="", marker="o", mfc="none", color=c, label=k) for c, k in zip(colours, keypoints)]
    fig.legend(handles=handles, loc="lower center", ncol=4, frameon=False)
    fig.suptitle("held-out mug shapes: o ONNX model, x ground truth")
    fig.tight_layout(rect=(0, 0.04, 1, 0.96))
    fig.savefig(path, dpi=70)
    plt.close(fig)


def report(res: dict) -> str:
    d = res["detection"]
    lines = [f"kinebridge eval keypoints — {res['model']['name']} on {res['model']['provider']}, "
             f"{res['scenes']} held-out scenes × {res['views_per_scene']} views ({res['frames']} frames, seed {res['seed']})",
             f"  median 2D error {res['median_2d_px']} px (target ≤ {TARGETS['median_2d_px']}), median 3D error "
             f"{res['median_3d_mm']} mm (target ≤ {TARGETS['median_3d_mm']})",
             f"  recall {d['recall_unoccluded']} of {d['unoccluded_mugs']} unoccluded mugs (target ≥ "
             f"{TARGETS['recall_unoccluded']}), {d['recall_all']} of {d['mugs_in_view']} in view; precision "
             f"{d['precision']} of {d['detections']} detections",
             "  per keypoint (2D px median / p90, 3D mm median / p90, no depth):"]
    for k, v in res["per_keypoint"].items():
        lines.append(f"    {k:5s} {v['2d_px']['median']} / {v['2d_px']['p90']} px   {v['3d_mm']['median']} / "
                     f"{v['3d_mm']['p90']} mm   {v['no_depth']}")
    li, ld = res["latency_ms"]["inference"], res["latency_ms"]["decode"]
    lines.append(f"  inference {li.get('median')} ms median, {li.get('p95')} ms p95 ({res['model']['threads']} threads); "
                 f"decode {ld.get('median')} ms")
    lines.append("  meets: " + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in res["meets"].items()))
    return "\n".join(lines)
