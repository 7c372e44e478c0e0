"""KineVLA's data and action tokens on the command line.

    kinebridge data kine       the Kine data set: tabletop tasks whose goal stays fixed while kinematic
                               attributes vary, planned (LFE-KMP + via-points, IK), executed in the world
    kinebridge train tokenizer the bi-level RVQ-VAE (stage I on the coarse split, stage II on the kine split)
                               and the baselines at the same token budget (single-level RVQ, 256 bins, FAST);
                               ONNX + compiled decoders with their manifests; the data set's tokens
    kinebridge eval tokenizer  reconstruction, predicates preserved, goals reached in the world, codebook
                               usage, tokens per chunk, decode latency — per tokenizer

Modules load only when their subcommand runs (torch only for ``train``/``eval``).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from kinebridge.runtime.cli.groups import group

__all__ = ["add"]


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WxH (e.g. 128x96), got {text!r}") from None
    return w, h


def add(sub) -> None:
    data = group(sub, "data", "data sets for training kinebridge's models")
    dk = data.add_parser(
        "kine", help="the Kine data set (kinematics-rich tabletop episodes in the simulated world)",
        description=("Generate KineVLA-style episodes on the simulated RM75: place, facing, push, drawer and pour tasks "
                     "whose goal stays fixed while the kinematic attributes vary (object part, path shape and "
                     "direction, ordering, final facing/placement, extent, tilt), planned with LFE-KMP + KMP "
                     "via-points and RM75 IK, executed in the MuJoCo world (offline, faster than real time) so the "
                     "physics says whether the goal was reached. Writes per-episode arrays (joint state, TCP/flange "
                     "poses, keypoints, joint and TCP actions, scene and wrist images) and JSON (kinematics-rich and "
                     "coarse instruction, coarse/fine reasoning, attribute labels, predicates, goal), a manifest, "
                     "a coarse split (stage I) and a kine split (stage II) with held-out goal groups."),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    dk.add_argument("--episodes", type=int, required=True, help="episodes to generate")
    dk.add_argument("--seed", type=int, default=0, help="the data set's seed (same seed, same episodes)")
    dk.add_argument("--out", type=Path, required=True, help="output directory (must not hold a data set yet)")
    dk.add_argument("--workers", type=int, default=2, help="worker processes")
    dk.add_argument("--coarse-share", type=float, default=0.3, help="share of episodes in the coarse split")
    dk.add_argument("--group-size", type=int, default=4, help="episodes per goal group in the kine split")
    dk.add_argument("--holdout-share", type=float, default=0.1, help="share of jobs held out for evaluation")
    dk.add_argument("--tasks", default="place,facing,push,drawer,pour", help="comma-separated tasks")
    dk.add_argument("--image-hz", type=float, default=5.0, help="images per second per camera (0: none)")
    dk.add_argument("--image-size", type=_size, default=(128, 96), help="image size WxH")
    dk.add_argument("--particles", type=int, default=60, help="water spheres in the pour's held mug")
    dk.add_argument("--no-progress", action="store_true", help="no progress bar")
    dk.set_defaults(func=_run_data_kine)

    train = group(sub, "train", "training kinebridge's models")
    tt = train.add_parser(
        "tokenizer", help="the bi-level RVQ-VAE and its baselines at the same token budget",
        description=("Train KineVLA's bi-level RVQ-VAE exactly as §3.1: stage I learns the encoder, the goal-level "
                     "codebook E_l (M residual levels) and the decoder on the coarse split; stage II freezes E_l and "
                     "its quantizer, warm-starts the encoder and decoder and learns the kinematics codebook E_h "
                     "(M levels, same size) on the kine split; losses: L1 reconstruction + codebook + β-weighted "
                     "commitment (eq. 3), k-means initialisation, dead codes replaced from the batch, codebook usage "
                     "logged. The baselines use the same budget of tokens per chunk: a single-level RVQ (VQ-VLA "
                     "style: 2M levels, same data and steps), OpenVLA-style 256-bin tokens, FAST (DCT + BPE trained "
                     "here). Writes checkpoints, a reconstruction figure, ONNX and compiled decoders with manifests "
                     "and parity, and the data set's tokens (for `kinebridge run --policy replay-tokens`)."),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    tt.add_argument("--data", type=Path, required=True, help="a Kine data set (kinebridge data kine)")
    tt.add_argument("--out", type=Path, default=Path("out/tokenizer"), help="output directory (one folder per tokenizer)")
    tt.add_argument("--which", default="bi-level-rvq,rvq,bins-256,fast", help="tokenizers to train")
    tt.add_argument("--levels", type=int, default=4, help="residual levels per codebook (M); budget = 2M tokens")
    tt.add_argument("--codebook", type=int, default=256, help="codes per level (K)")
    tt.add_argument("--dim", type=int, default=32, help="latent dimension d")
    tt.add_argument("--hidden", type=int, default=256, help="encoder/decoder width")
    tt.add_argument("--steps", type=int, default=4000, help="gradient steps per stage (the single-level RVQ gets both)")
    tt.add_argument("--batch", type=int, default=512, help="batch size")
    tt.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    tt.add_argument("--seed", type=int, default=0)
    tt.add_argument("--threads", type=int, default=1, help="torch threads")
    tt.add_argument("--no-progress", action="store_true")
    tt.set_defaults(func=_run_train_tokenizer)

    ev = group(sub, "eval", "accuracy evaluations")
    et = ev.add_parser(
        "tokenizer", help="the tokenizers on the kine split's held-out episodes",
        description=("Per tokenizer: reconstruction L1 (joint, rad; end effector, m), the share of kinematic "
                     "predicates of each held-out episode its decoded trajectory preserves, goal success of the decoded "
                     "trajectories executed in the world, codebook usage, tokens per chunk and decode latency (ONNX "
                     "Runtime and the compiled decoder, median and p99); the seam between consecutive decoded chunks "
                     "through the control loop's blend and limiter; stage II's effect on the coarse split."),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    et.add_argument("--data", type=Path, required=True, help="the Kine data set the tokenizers were trained on")
    et.add_argument("--tokenizers", type=Path, default=Path("out/tokenizer"), help="the `train tokenizer` output")
    et.add_argument("--which", default="bi-level-rvq,rvq,bins-256,fast")
    et.add_argument("--world-episodes", type=int, default=20,
                    help="held-out episodes executed in the world per tokenizer (0: skip the world)")
    et.add_argument("--json", action="store_true", help="print the result as JSON")
    et.add_argument("--out", type=Path, default=None, help="where to write the JSON (default <tokenizers>/eval.json)")
    et.set_defaults(func=_run_eval_tokenizer)


def _quiet_threads():
    for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(k, "1")


def _run_data_kine(args) -> int:
    _quiet_threads()
    from kinebridge.bench.kine.generate import KineConfig, generate

    cfg = KineConfig(episodes=args.episodes, seed=args.seed, out=str(args.out), workers=args.workers,
                     coarse_share=args.coarse_share, group_size=args.group_size, holdout_share=args.holdout_share,
                     tasks=tuple(t.strip() for t in args.tasks.split(",") if t.strip()), image_hz=args.image_hz,
                     image_size=tuple(args.image_size), particles=args.particles)
    generate(cfg, progress=not args.no_progress, log=lambda s: print(s, file=sys.stderr))
    return 0


def _run_train_tokenizer(args) -> int:
    _quiet_threads()
    from kinebridge.export.tokenizer import train

    train.main(args)
    return 0


def _run_eval_tokenizer(args) -> int:
    _quiet_threads()
    from kinebridge.bench.kine import tokenizer_eval

    tokenizer_eval.main(args)
    return 0
