"""``kinebridge world`` (the simulated world: a seeded scene, its objects and keypoints, a snapshot) and
``kinebridge bench camera`` (render rates, the shared-memory frame hop, camera → subscriber latency, the
world's real-time factor and the control loop's period error with and without the world node).

``kinebridge world`` takes the options of :mod:`kinebridge.drivers.world.cli` (``kinebridge world
--help``); they are parsed when the command runs, so ``kinebridge --help`` stays instant (that module
needs numpy)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["add", "add_bench_camera"]

_WORLD_HELP = "the simulated MuJoCo world: a seeded scene, its objects and keypoints, a PNG snapshot"


def add(sub):
    w = sub.add_parser(
        "world", help=_WORLD_HELP, add_help=False, prefix_chars="+",   # every option goes to the world's parser
        description=_WORLD_HELP + " (kinebridge world --help for the options)")
    w.add_argument("args", nargs=argparse.REMAINDER)
    w.set_defaults(func=_run_world)


def _run_world(args) -> int:
    from kinebridge.drivers.world import cli

    parser = cli.add_arguments(argparse.ArgumentParser(
        prog="kinebridge world",
        description=("Build the simulated world of a seed (the arm, a table, mugs with VL-MP's semantic keypoints, "
                     "distractors, the held mug with its water), print its objects and keypoints in the arm's base "
                     "frame (--json: as JSON) and optionally write an RGB snapshot. Needs the world extra "
                     "(pip install 'kinebridge[world]') and a headless GL (MUJOCO_GL=egl or osmesa).")))
    return cli.run(parser.parse_args(args.args))


def add_bench_camera(be_sub):
    ca = be_sub.add_parser(
        "camera", help="cameras and the simulated world: render rates, shared-memory frame hop, frame → subscriber "
                       "latency, world real-time factor, control-loop period error with the world node",
        description=("Measure the camera path on real processes: synthetic RGB-D render rate per resolution and "
                     "back end (EGL, OSMesa); the shared-memory ring's hop (a frame written → a reader in another "
                     "process has its copy) at 640x480 RGB-D; a camera node's frame → subscriber latency (capture "
                     "stamp → camera/frame received and the frame copied out of the ring, in another process); the "
                     "world's real-time factor; and the control node's period error with and without a world node "
                     "following it. Prints a table, writes JSON."),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ca.add_argument("--seconds", type=float, default=5.0, help="seconds per measurement")
    ca.add_argument("--parts", default="render,world,hop,latency,control",
                    help="comma-separated parts to run (render, world, hop, latency, control)")
    ca.add_argument("--out", type=Path, default=Path("out/bench/camera.json"), help="JSON output path")
    ca.set_defaults(func=_run_bench_camera)


def _run_bench_camera(args) -> int:
    from kinebridge.bench import camera_bench

    if not args.seconds > 0:
        raise ValueError(f"--seconds must be positive, got {args.seconds}")
    parts = tuple(p.strip() for p in args.parts.split(",") if p.strip())
    bad = [p for p in parts if p not in camera_bench.PARTS]
    if bad or not parts:
        raise ValueError(f"--parts: unknown {bad or parts}; choose from {', '.join(camera_bench.PARTS)}")
    result = camera_bench.run(args.seconds, args.out, parts=parts)
    camera_bench.print_report(result)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0
