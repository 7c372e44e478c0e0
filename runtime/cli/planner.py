"""``kinebridge plan`` and ``kinebridge eval planner``: the decision layer on simulated scenes.

    kinebridge plan "pour into the mug on the left" [--scene-seed N] [--planner local|openai] [--json]
    kinebridge eval planner [--scenes 30] [--seed 0] [--planner local|openai] [--image] [--json]

The openai planner reads its endpoint from ``--config``'s ``[planner]`` table or from the environment:
``KINEBRIDGE_PLANNER_BASE_URL`` (e.g. http://gpu-box:8000/v1 for vLLM), ``KINEBRIDGE_PLANNER_MODEL``,
``KINEBRIDGE_PLANNER_API_KEY_ENV`` (the *name* of the variable holding the key; default OPENAI_API_KEY).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from kinebridge.runtime.cli.groups import group

__all__ = ["add", "task_hook"]


def add(sub) -> None:
    pl = sub.add_parser("plan", help="decide one instruction on a simulated ambiguous scene (the dialogue and the "
                                     "decision)",
                        description="Build the simulated ambiguous scene of --scene-seed, take its ground-truth "
                                    "candidates and let the planner decide INSTRUCTION; further --answer turns "
                                    "continue the dialogue (an answer to the planner's question).",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    pl.add_argument("instruction", help="what the user says, e.g. 'pour into the mug next to the blue box'")
    pl.add_argument("--answer", action="append", default=[], help="a follow-up turn in the same dialogue (repeatable)")
    pl.add_argument("--scene-seed", type=int, default=0, help="SceneSpec.random(seed, ambiguous=True)")
    _planner_args(pl)
    pl.add_argument("--json", action="store_true", help="print the candidates, dialogue and decision as JSON")
    pl.set_defaults(func=_run_plan)
    ev = group(sub, "eval", "accuracy evaluations")
    ep = ev.add_parser("planner", help="decision accuracy on ambiguous simulated scenes (decided, asked, guesses)",
                       description="Generate determined, undetermined and impossible instructions from ambiguous "
                                   "simulated scenes and score the planner: the intended target decided, an ask "
                                   "where the words do not single one out (a decision there is a guess: a "
                                   "failure), a failure where no skill applies.",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ep.add_argument("--scenes", type=int, default=30, help="ambiguous scenes (seeds SEED..SEED+N-1)")
    ep.add_argument("--seed", type=int, default=0, help="first scene seed")
    ep.add_argument("--image", action="store_true", help="render each scene and send the frame with ids drawn")
    _planner_args(ep)
    ep.add_argument("--json", action="store_true", help="print the result as JSON")
    ep.set_defaults(func=_run_eval)


def _planner_args(p) -> None:
    p.add_argument("--planner", choices=("local", "openai"), default="local",
                   help="local: the embedded grammar; openai: the endpoint of [planner] / KINEBRIDGE_PLANNER_*")
    p.add_argument("--config", default=None, help="runtime config whose [planner] table to use")


def _make(args):
    from kinebridge.runtime.config import load_config
    from kinebridge.runtime.planner.base import make_planner

    cfg = load_config(args.config).planner
    if args.planner == "openai":
        env = {k: os.environ[v] for k, v in (("base_url", "KINEBRIDGE_PLANNER_BASE_URL"),
                                             ("model", "KINEBRIDGE_PLANNER_MODEL"),
                                             ("api_key_env", "KINEBRIDGE_PLANNER_API_KEY_ENV")) if os.environ.get(v)}
        cfg = cfg.model_copy(update={"kind": "openai", **env})
    else:
        cfg = cfg.model_copy(update={"kind": "local"})
    try:
        return make_planner(cfg)
    except RuntimeError as exc:
        raise ValueError(str(exc)) from None


def task_hook(decision, candidates):
    """Where the bridge layer turns a decided target into the skill's task parameters (the lead adds it):
    returns a ``task`` body, or None until then."""
    return None


def _run_plan(args) -> int:
    from kinebridge.drivers.world import SceneSpec, World
    from kinebridge.runtime.planner.base import Dialogue
    from kinebridge.runtime.planner.candidates import describe, from_world

    planner = _make(args)
    world = World(SceneSpec.random(args.scene_seed, ambiguous=True, particles=0, tool="none"))
    cands = from_world(world)
    h = Dialogue(id="cli")
    turns = []
    for words in [args.instruction, *args.answer]:
        d = planner.decide(words, cands, history=h)
        turns.append({"user": words, "decision": d.model_dump(),
                      "standard_instruction": getattr(planner, "standard_instruction", None)})
    task = task_hook(d, cands)
    if args.json:
        print(json.dumps({"scene_seed": args.scene_seed, "planner": planner.name,
                          "candidates": [c.model_dump(by_alias=True) for c in cands], "dialogue": h.transcript(),
                          "turns": turns, "task": task.header() if task is not None else None}, indent=1))
        return 0 if d.status != "failed" else 1
    print(f"scene {args.scene_seed} (ambiguous), planner {planner.name}; candidates, as seen from the camera:")
    for c in cands:
        print(f"  {describe(c)}" + (f"; {', '.join(c.size_words)}" if c.size_words else ""))
    print("dialogue:")
    for line in h.transcript():
        print(f"  {line}")
    print(f"decision: {d.status}" + (f" {d.skill} → {d.target}" if d.status == "decided" else "")
          + (f"\n  question: {d.question}" if d.question else "") + (f"\n  reason: {d.reason}" if d.reason else ""))
    for i, s in enumerate(d.subtasks, 1):
        print(f"  {i}. {s.skill} on {s.target}: {s.description}; " + "; ".join(k.phrase for k in s.keypoints))
    print("task: " + (json.dumps(task.header()) if task is not None else "(the bridge layer fills in the task "
                                                                         "parameters: not yet)"))
    return 0 if d.status != "failed" else 1


def _run_eval(args) -> int:
    from kinebridge.bench import planner_eval

    planner = _make(args)
    r = planner_eval.run(args.scenes, args.seed, planner, image=args.image,
                         progress=None if args.json else lambda i, n: print(f"\r  scene {i}/{n}", end="",
                                                                             file=sys.stderr, flush=True))
    if not args.json:
        print(file=sys.stderr)
        planner_eval.print_report(r)
    else:
        print(json.dumps(r, indent=1, default=str))
    return 0
