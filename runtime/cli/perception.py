"""``kinebridge data|train|export|eval keypoints``: the perception model's pipeline.

    kinebridge data keypoints --n 6000 --seed 0 --out out/data/keypoints
    kinebridge train keypoints --data out/data/keypoints --out out/train/keypoints
    kinebridge export keypoints --checkpoint out/train/keypoints/best.pt --out export/keypoints/models/mug_kp.onnx
    kinebridge eval keypoints [--model FILE.onnx] [--scenes 40] [--seed 7] [--json]

Rendering needs the ``world`` extra (MuJoCo), training and export the ``training`` extra (torch),
evaluation only the world and onnxruntime (it runs the exported ONNX file, never torch).
``kinebridge bench perception`` lives with the other benchmarks (:mod:`kinebridge.runtime.cli.evaluate`).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from kinebridge.runtime.cli.groups import group

__all__ = ["add"]


def _command() -> str:
    return "kinebridge " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def add(sub) -> None:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    data = group(sub, "data", help="render or convert training data")
    p = data.add_parser("keypoints", formatter_class=fmt, help="render keypoint training data from the simulated world",
                        description="Render RGB-D frames of seeded random scenes with ground truth (boxes, keypoints "
                                    "2D/3D, camera depth, visibility) into shards of .npy files and a manifest. "
                                    "val/test scenes use mug shapes no training mug has.")
    p.add_argument("--n", type=int, required=True, help="frames in all (split 80/10/10 into train/val/test)")
    p.add_argument("--seed", type=int, default=0, help="data seed")
    p.add_argument("--out", type=Path, required=True, help="output directory (new)")
    p.add_argument("--views", type=int, default=3, help="camera views per object layout")
    p.add_argument("--layouts", type=int, default=4, help="object layouts per built scene")
    p.add_argument("--shard-size", type=int, default=64, help="frames per shard")
    p.add_argument("--workers", type=int, default=1,
                   help="rendering processes (>1: chunks of whole scenes, the same frames as one process)")
    p.add_argument("--time-limit-s", type=float, default=None,
                   help="with --workers: stop after this many seconds, keeping the held-out splits whole and "
                        "the training frames rendered so far (the manifest says how many)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_data)

    train = group(sub, "train", help="train models")
    p = train.add_parser("keypoints", formatter_class=fmt, help="train the keypoint network (torch; CPU by default)",
                         description="Train the HRNet-style keypoint network on a rendered data set: progress bar, "
                                     "checkpoints (last.pt, best.pt by validation error), per-keypoint validation "
                                     "metrics (metrics.json) and a figure of validation predictions (val.png).")
    p.add_argument("--data", type=Path, required=True, help="data set directory (kinebridge data keypoints)")
    p.add_argument("--out", type=Path, required=True, help="checkpoint directory")
    p.add_argument("--size", choices=("default", "tiny"), default="default", help="network size")
    p.add_argument("--width", type=int, default=None, help="override the branch width C")
    p.add_argument("--steps", type=int, default=12000, help="optimiser steps")
    p.add_argument("--batch", type=int, default=8, help="crops per step")
    p.add_argument("--crop", default="256x192", help="training crop WxH (the full frame is used for validation)")
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (AdamW, cosine decay)")
    p.add_argument("--val-every", type=int, default=1000, help="steps between validations")
    p.add_argument("--val-frames", type=int, default=120, help="validation frames per validation")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--device", default="cpu", help="torch device to train on (cpu, cuda, cuda:1, ...)")
    p.add_argument("--workers", type=int, default=1, help="data loader worker processes")
    p.add_argument("--seed", type=int, default=0, help="training seed")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument("--time-limit-min", type=float, default=None, help="stop (and validate) after this many minutes")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_train)

    export = group(sub, "export", help="export trained models to ONNX")
    p = export.add_parser("keypoints", formatter_class=fmt, help="export the keypoint network to ONNX with a manifest",
                          description="Export a checkpoint to ONNX (torch's dynamo exporter), check ONNX Runtime "
                                      "against torch on validation frames (max |diff| <= 1e-4) and write the "
                                      "manifest beside it (inputs, outputs, sha256, training data and metrics, "
                                      "the command).")
    p.add_argument("--checkpoint", type=Path, required=True, help="a training checkpoint (best.pt)")
    p.add_argument("--out", type=Path, required=True, help="the .onnx file to write (manifest: same name, .json)")
    p.add_argument("--data", type=Path, default=None, help="data set for the parity frames (default: the training one)")
    p.add_argument("--parity-frames", type=int, default=4, help="frames compared torch vs ONNX Runtime")
    p.add_argument("--tolerance", type=float, default=1e-4, help="largest allowed |ONNX − torch|")
    p.set_defaults(func=_export)

    ev = group(sub, "eval", help="accuracy evaluations")
    p = ev.add_parser("keypoints", formatter_class=fmt, help="keypoint accuracy on held-out scenes (ONNX model)",
                      description="Render held-out scenes with unseen mug shapes and score the exported ONNX model: "
                                  "per keypoint and overall 2D error (px) and 3D error (mm), detection recall and "
                                  "precision, inference latency. --json prints median_2d_px and median_3d_mm at "
                                  "the top level beside the details.")
    p.add_argument("--model", type=Path, default=None, help="ONNX model (default: the shipped one)")
    p.add_argument("--scenes", type=int, default=40, help="held-out scenes (3 views each)")
    p.add_argument("--seed", type=int, default=7, help="scene seed")
    p.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--out", type=Path, default=None, help="also write the JSON (and a figure) here")
    p.set_defaults(func=_eval)


def _data(args) -> int:
    from kinebridge.export.keypoints import data

    m = data.generate(args.out, args.n, args.seed, views_per_layout=args.views, layouts_per_scene=args.layouts,
                      shard_size=args.shard_size, progress=not args.no_progress, command=_command(),
                      workers=args.workers, time_limit_s=args.time_limit_s)
    s = m["splits"]
    print(f"wrote {m['frames']} frames to {args.out} in {m['seconds']:.0f} s: "
          + ", ".join(f"{k} {v['frames']} ({v['mugs']} mugs, {v['scenes']} scenes)" for k, v in s.items()))
    return 0


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--crop: expected WxH such as 320x256, got {text!r}") from None
    if w % 32 or h % 32 or not (64 <= w <= 640 and 64 <= h <= 480):
        raise ValueError(f"--crop: {w}x{h} must be multiples of 32 within 64x64 … 640x480")
    return w, h


def _train(args) -> int:
    import os
    # OpenMP threads that spin while waiting are ruinous on a shared 2-core box (measured 20-40x slower
    # convolutions under load); libgomp reads this when torch loads it, so set it before the import
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from kinebridge.export.keypoints import train

    res = train.train(args.data, args.out, size=args.size, width=args.width, steps=args.steps, batch=args.batch,
                      crop=_size(args.crop), lr=args.lr, val_every=args.val_every, val_frames=args.val_frames,
                      threads=args.threads, workers=args.workers, seed=args.seed, resume=args.resume,
                      time_limit_min=args.time_limit_min, progress=not args.no_progress, command=_command(),
                      device=args.device)
    print(json.dumps(res.get("summary", res), indent=1))
    return 0


def _export(args) -> int:
    import os
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")     # see _train
    from kinebridge.export.keypoints import export

    m = export.export(args.checkpoint, args.out, data=args.data, parity_frames=args.parity_frames,
                      tolerance=args.tolerance, command=_command())
    print(f"wrote {args.out} ({m['bytes'] / 1e6:.2f} MB, sha256 {m['sha256'][:12]}…), parity max |diff| "
          f"{m['parity']['max_abs_diff']:.2e} ≤ {m['parity']['tolerance']:.0e}; manifest {m['manifest_path']}")
    return 0


def _eval(args) -> int:
    from kinebridge.export.keypoints import evaluate

    res = evaluate.evaluate(model=args.model, scenes=args.scenes, seed=args.seed, threads=args.threads,
                            out=args.out, progress=not args.json)
    if args.json:
        print(json.dumps(res, indent=1))
    else:
        print(evaluate.report(res))
    return 0


def add_bench(be_sub) -> None:
    """``kinebridge bench perception`` (called from :mod:`kinebridge.runtime.cli.evaluate`)."""
    p = be_sub.add_parser(
        "perception", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        help="keypoint model latency per execution provider; camera frame → published keypoints in the node",
        description="Time the keypoint model's ONNX Runtime session on every execution provider this machine has "
                    "(the others listed with the reason), and a perception node in its own process fed held-out "
                    "frames: capture stamp → perception/keypoints received. --design compares the full-frame "
                    "network with the detector + crop path (needs torch). Writes JSON.")
    p.add_argument("--model", type=Path, default=None, help="ONNX model (default: the shipped one)")
    p.add_argument("--frames", type=int, default=12, help="held-out frames rendered for the measurement")
    p.add_argument("--repeats", type=int, default=40, help="session runs per provider")
    p.add_argument("--seconds", type=float, default=20.0, help="node measurement time")
    p.add_argument("--fps", type=float, default=30.0, help="frame rate fed to the node")
    p.add_argument("--design", action="store_true", help="also time full frame vs detector + crops (torch)")
    p.add_argument("--quick", action="store_true", help="small run (for tests)")
    p.add_argument("--out", type=Path, default=Path("out/bench/perception.json"), help="JSON output path")
    p.set_defaults(func=_bench)


def _bench(args) -> int:
    from kinebridge.bench import perception_bench

    res = perception_bench.run(args.model, frames=args.frames, repeats=args.repeats, seconds=args.seconds,
                               fps=args.fps, design=args.design, quick=args.quick, out=args.out)
    perception_bench.print_report(res)
    return 0
