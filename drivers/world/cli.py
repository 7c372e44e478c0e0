"""``kinebridge world``: build a scene from a seed, list its objects and keypoints, write a snapshot.

    kinebridge world [--seed N] [--ambiguous] [--mugs N] [--distractors N] [--drawer]
                     [--snapshot FILE.png] [--size 640x480] [--json]

The lead's CLI calls :func:`add_arguments` on its subparser and :func:`run` with the parsed
arguments; ``run`` returns the exit status (0, or 2 with a one-line error for bad input or no
render back end).
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

__all__ = ["add_arguments", "run", "describe"]

SNAPSHOT_VIEW = {"eye": (1.05, -0.45, 0.75), "target": (0.38, 0.0, 0.04)}


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--seed", type=int, default=0, help="scene seed (default 0)")
    parser.add_argument("--ambiguous", action="store_true", help="≥ 3 similar mugs and distractor boxes (VL-MP)")
    parser.add_argument("--mugs", type=int, default=3, help="number of mugs (default 3)")
    parser.add_argument("--distractors", type=int, default=2, help="number of distractors (default 2)")
    parser.add_argument("--drawer", action="store_true", help="add a cabinet with a drawer")
    parser.add_argument("--snapshot", metavar="FILE.png", help="write an RGB snapshot of the scene")
    parser.add_argument("--size", default="640x480", help="snapshot size WxH (default 640x480)")
    parser.add_argument("--json", action="store_true", help="print the scene as JSON")
    return parser


def describe(world) -> dict:
    """The scene's objects with their kind, pose and keypoints (base frame, m)."""
    kps = world.keypoints()
    poses = world.object_poses()
    objects = []
    for o in world.scene.objects:
        T = poses[o.name]
        objects.append({"name": o.name, "kind": o.kind, "position": np.round(T[:3, 3], 4).tolist(),
                        "yaw_deg": round(float(np.degrees(np.arctan2(T[1, 0], T[0, 0]))), 2),
                        "keypoints": {k: np.round(v, 4).tolist() for k, v in kps.get(o.name, {}).items()}})
    held = {k: np.round(v, 4).tolist() for k, v in kps.get("tool", {}).items()}
    return {"seed": world.scene.seed, "target": world.scene.target, "objects": objects,
            "held": held, "water": int(world.built.particle_bodies.size), "arm_d7": world.scene.arm.d7,
            "labels": list(world.labels)}


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--size: expected WxH such as 640x480, got {text!r}") from None
    if not (16 <= w <= 1280 and 16 <= h <= 720):
        raise ValueError(f"--size: {w}x{h} is outside 16x16 … 1280x720 (the world's offscreen buffer)")
    return w, h


def run(args: argparse.Namespace) -> int:
    from kinebridge.drivers.world.spec import SceneSpec

    try:
        size = _size(args.size)
        scene = SceneSpec.random(args.seed, n_mugs=args.mugs, n_distractors=args.distractors,
                                 ambiguous=args.ambiguous, drawer=args.drawer)
        from kinebridge.drivers.world.world import World

        world = World(scene)
        world.step(100)                   # let objects and water settle (0.25 s)
        info = describe(world)
        if args.snapshot:
            _snapshot(world, args.snapshot, size)
            info["snapshot"] = str(args.snapshot)
    except (ValueError, RuntimeError) as err:
        print(f"kinebridge world: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(info, indent=1))
        return 0
    print(f"scene seed {info['seed']}: {len(info['objects'])} objects, target {info['target']}, "
          f"{info['water']} water spheres in the held mug (base frame, m)")
    for o in info["objects"]:
        x, y, z = o["position"]
        print(f"  {o['name']:<10} {o['kind']:<10} at ({x:+.3f}, {y:+.3f}, {z:+.3f}) yaw {o['yaw_deg']:+7.1f}°")
        for k, p in o["keypoints"].items():
            print(f"      {k:<5} ({p[0]:+.4f}, {p[1]:+.4f}, {p[2]:+.4f})")
    if info["held"]:
        print("  held mug keypoints: " + ", ".join(f"{k} ({p[0]:+.3f}, {p[1]:+.3f}, {p[2]:+.3f})"
                                                  for k, p in info["held"].items() if k.startswith("K_")))
    if args.snapshot:
        print(f"snapshot: {args.snapshot}")
    return 0


def _snapshot(world, path: str, size: tuple[int, int]) -> None:
    import cv2

    from kinebridge.drivers.camera.geometry import Intrinsics, look_at
    from kinebridge.drivers.world.render import Renderer

    w, h = size
    intr = Intrinsics.from_fovy(w, h, 50.0)
    with Renderer(world, w, h) as r:
        rgb, _, _ = r.render(intr, look_at(SNAPSHOT_VIEW["eye"], SNAPSHOT_VIEW["target"]))
    if not cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1])):
        raise ValueError(f"--snapshot: could not write {path} (does its folder exist, and does it end in .png?)")


def main(argv=None) -> int:
    parser = add_arguments(argparse.ArgumentParser(prog="kinebridge world", description=__doc__.splitlines()[0]))
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
