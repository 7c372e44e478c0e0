"""``kinebridge skill record|fit|show`` (the skill library) and ``kinebridge eval pour`` (VL-MP Table I).

    kinebridge skill record world [--demos 12] [--seed 0] --out pour_mug.npz     # physics-verified pours in the world
    kinebridge skill record video [--seed 0] [--fps 10] [--pixel-noise 0.5] --out demo.npz
    kinebridge skill record mcap RECORDING.mcap [--target-keypoints JSON] --out demo.npz   # kinesthetic teaching
    kinebridge skill fit demo1.npz demo2.npz … --out skill.npz [--name NAME]
    kinebridge skill show pour_mug|FILE.npz [--plot FILE.png] [--json]
    kinebridge eval pour [--trials 10] [--seed 0] [--methods vl-mp,vlm-prim,kmp] [--json]

``record`` writes a skill file (format version 2) holding the demonstrations it recorded; ``fit``
merges skill files into one, learns the interaction state from every demonstration's final frame,
fits LFE-KMP on them and reports how exactly it reproduces each demonstration's end; ``show`` prints
a skill's demonstrations, task frames, interaction state and keypoints (and draws them with
``--plot``, matplotlib from the eval extra).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from kinebridge.runtime.cli.groups import group

__all__ = ["add", "add_eval_pour"]


def add(sub) -> None:
    sk = group(sub, "skill", "the skill library: record demonstrations, fit a skill, show one")
    rec = sk.add_parser("record", help="record demonstrations into a skill file (world, video, mcap)",
                        description="Record demonstrations into a skill file (format version 2).",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    rs = rec.add_subparsers(dest="source", required=True)
    w = rs.add_parser("world", help="the world's scripted demonstrator pouring into random mugs, each pour kept only "
                                    "when the physics judges it a success (the bundled pour_mug)",
                      formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    w.add_argument("--demos", type=int, default=12, help="successful demonstrations to keep")
    w.add_argument("--seed", type=int, default=0, help="first scene seed (a failed pour moves on to the next)")
    _out(w, "pour_mug")
    w.set_defaults(func=_record_world)
    v = rs.add_parser("video", help="a demonstration filmed by the world's synthetic camera: keypoints per frame "
                                    "(ground truth + pixel noise; perception's detector plugs in here), a local frame "
                                    "per frame, the last frame as the interaction state",
                      formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    v.add_argument("--seed", type=int, default=0, help="scene seed")
    v.add_argument("--fps", type=float, default=10.0, help="frames per second of the video")
    v.add_argument("--size", default="640x480", help="image size WxH")
    v.add_argument("--pixel-noise", type=float, default=0.5, help="keypoint pixel noise (px, 1σ)")
    v.add_argument("--depth-noise", type=float, default=0.001, help="keypoint depth noise (m, 1σ)")
    _out(v, "pour_mug_video")
    v.set_defaults(func=_record_video)
    m = rs.add_parser("mcap", help="kinesthetic teaching: control/state of a kinebridge recording → FK → a "
                                   "demonstration (the target's keypoints from its world/truth, or given)",
                      formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    m.add_argument("recording", type=Path, help="a kinebridge MCAP recording")
    m.add_argument("--target", default=None, help="the target's name in the recording's world/truth (default: its "
                                                  "target)")
    m.add_argument("--target-keypoints", default=None,
                   help='the target\'s keypoints as JSON {"K_i": [x, y, z], "K_p1": …} (base frame, m)')
    m.add_argument("--rest-speed", type=float, default=0.02, help="joint speed (rad/s) under which the arm is still")
    m.add_argument("--model", default="RM75-B", help="arm model (its flange length)")
    _out(m, "pour_mug_taught")
    m.set_defaults(func=_record_mcap)
    fit = sk.add_parser("fit", help="merge skill files, learn the interaction state, fit and check LFE-KMP",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    fit.add_argument("inputs", nargs="+", type=Path, help="skill files whose demonstrations to merge")
    _out(fit, None)
    fit.set_defaults(func=_fit)
    sh = sk.add_parser("show", help="a skill's demonstrations, frames, interaction state (and a plot)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sh.add_argument("skill", help="a bundled skill name or a skill .npz")
    sh.add_argument("--plot", type=Path, default=None, help="draw the demonstrations and their ends to this PNG")
    sh.add_argument("--json", action="store_true", help="print as JSON")
    sh.set_defaults(func=_show)


def _out(p, name) -> None:
    p.add_argument("--out", type=Path, required=True, help="skill file to write (.npz)")
    p.add_argument("--name", default=name, help="the skill's name (default: the file's stem)")


def _name(args) -> str:
    return args.name or args.out.stem


def _progress(info) -> None:
    sc = info.get("score") or {}
    what = info.get("dropped") or "kept"
    print(f"  scene {info['seed']}: {what}" + (f" (in target {sc.get('in_target')}, spilt {sc.get('spilt')}, "
                                               f"collisions {sc.get('collisions')})" if sc else ""), flush=True)


def _record_world(args) -> int:
    from kinebridge.runtime.skills import pour_mug as pm

    print(f"recording {args.demos} physics-verified pours from scene seed {args.seed} …", flush=True)
    recs = pm.record_world_demos(args.demos, args.seed, progress=_progress)
    skill = pm.skill_from_records(recs, _name(args))
    skill.save(args.out)
    print(f"wrote {args.out}: {len(skill.demos)} demonstrations")
    return 0


def _record_video(args) -> int:
    from kinebridge.runtime.skills import pour_mug as pm
    from kinebridge.runtime.skills import recording as rc

    w, h = (int(x) for x in args.size.lower().split("x"))
    frames, truth = rc.render_demo_video(args.seed, fps=args.fps, width=w, height=h,
                                         detector=rc.GroundTruthKeypoints(args.pixel_noise, args.depth_noise,
                                                                          args.seed))
    rec = rc.demo_from_video(frames, pm.held_keypoints_flange(), target=truth["target"])
    rec.update(seed=args.seed, score=truth["score"], target=truth["target_spec"])
    skill = pm.skill_from_records([rec], _name(args), source="video")
    skill.metadata.update(video={"fps": args.fps, "size": [w, h], "pixel_noise": args.pixel_noise,
                                 "depth_noise": args.depth_noise, "frames": len(frames), "detector": "ground truth"})
    skill.save(args.out)
    print(f"wrote {args.out}: 1 demonstration from {len(frames)} frames ({rec['seen']} with the held mug seen)")
    return 0


def _record_mcap(args) -> int:
    import numpy as np

    from kinebridge.drivers.arm.model import arm_model
    from kinebridge.runtime.skills import pour_mug as pm
    from kinebridge.runtime.skills import recording as rc

    t, q, truth = rc.states_from_mcap(args.recording)
    if args.target_keypoints:
        kp = json.loads(args.target_keypoints)
    else:
        if truth is None:
            raise ValueError(f"{args.recording}: no world/truth in the recording: give --target-keypoints")
        name = args.target or truth.get("target")
        objs = {o.get("name"): o for o in truth.get("objects", [])}
        if name not in objs:
            raise ValueError(f"{args.recording}: no object {name!r} in world/truth (objects: {sorted(objs)})")
        kp = objs[name]["keypoints"]
    rec = rc.demo_from_states(t, q, d7=arm_model(args.model).d7, target_kp={k: np.asarray(v, float)
                                                                           for k, v in kp.items()},
                              slave_kp_flange=pm.held_keypoints_flange(), rest_speed=args.rest_speed)
    skill = pm.skill_from_records([rec], _name(args), source="kinesthetic")
    skill.metadata.update(recording=str(args.recording), states=int(len(t)), trimmed=rec["trimmed"])
    skill.save(args.out)
    print(f"wrote {args.out}: 1 demonstration ({len(rec['t'])} samples, {rec['t'][-1]:.2f} s) from {len(t)} states")
    return 0


def _fit(args) -> int:
    import numpy as np

    from kinebridge.kernels import bridge
    from kinebridge.runtime.skills.format import Skill
    from kinebridge.runtime.trajectory.planner import SkillPlanner

    skills = [Skill.load(p) for p in args.inputs]
    demos, frames, objects, finals, kp, meta = [], [], [], [], {}, {"merged": [str(p) for p in args.inputs]}
    for s in skills:
        demos += s.demos
        frames += s.frames
        objects += s.objects or [None] * len(s.demos)
        finals += s.final_keypoints or [{} for _ in s.demos]
        kp = kp or dict(s.keypoints)
        for k in ("source", "design"):
            if k in s.metadata:
                meta.setdefault(k, s.metadata[k])
    have = [f for f in finals if f.get("master") and f.get("slave")]
    inter = None
    if have:
        st = bridge.learn_interaction([f["slave"] for f in have], [f["master"] for f in have])
        hc = next((s.interaction.get("handle_clearance") for s in skills if s.interaction), None)
        inter = st.to_dict() | ({"handle_clearance": hc} if hc is not None else {})
    skill = Skill(_name(args), demos, frames, skills[0].description, objects=objects,
                  final_keypoints=finals if have else None, interaction=inter, keypoints=kp, metadata=meta)
    planner = SkillPlanner(skill)
    worst = 0.0
    for f in frames:
        traj = planner.model.generalize(f)
        worst = max(worst, float(np.linalg.norm(traj.position[-1] - f[1].origin)))
    skill.metadata["fit"] = {"fit_ms": round(planner.fit_ms, 1), "end_error_mm": worst * 1e3}
    skill.save(args.out)
    print(f"wrote {args.out}: {len(demos)} demonstrations from {len(skills)} files; LFE-KMP fitted in "
          f"{planner.fit_ms:.0f} ms, reproduces every demonstration's end within {worst * 1e3:.3g} mm"
          + (f"; interaction state from {len(have)} final frames" if have else "; no interaction state (no target "
                                                                              "keypoints)"))
    return 0


def _describe(skill) -> dict:
    import numpy as np

    from kinebridge.runtime.skills.format import pose7_from_task_frame

    d = {"name": skill.name, "format_version": skill.version, "description": skill.description,
         "demonstrations": [], "interaction": skill.interaction, "keypoints": skill.keypoints,
         "metadata": skill.metadata}
    for i, demo in enumerate(skill.demos):
        p = demo.position
        d["demonstrations"].append({
            "samples": int(demo.t.size), "duration_s": round(float(demo.t[-1] - demo.t[0]), 3),
            "path_m": round(float(np.linalg.norm(np.diff(p, axis=0), axis=1).sum()), 3),
            "start": [round(x, 4) for x in pose7_from_task_frame(skill.frames[i][0]).tolist()],
            "goal": [round(x, 4) for x in pose7_from_task_frame(skill.frames[i][1]).tolist()],
            "object_frames": skill.objects is not None and skill.objects[i] is not None,
            "final_keypoints": sorted((skill.final_keypoints[i].get("master") or {}))
            if skill.final_keypoints else []})
    return d


def _show(args) -> int:
    from kinebridge.runtime.skills.registry import load_skill

    skill = load_skill(args.skill)
    d = _describe(skill)
    if args.json:
        print(json.dumps(d, indent=2, default=float))
    else:
        print(f"skill {skill.name!r} (format {skill.version}): {skill.description}")
        print(f"{len(skill.demos)} demonstrations, median duration {skill.duration:.2f} s")
        for i, x in enumerate(d["demonstrations"]):
            print(f"  demo {i}: {x['samples']} samples, {x['duration_s']} s, path {x['path_m']} m; start "
                  f"{x['start'][:3]} → goal {x['goal'][:3]}" + ("; object frames" if x["object_frames"] else "")
                  + (f"; final keypoints {x['final_keypoints']}" if x["final_keypoints"] else ""))
        it = skill.interaction
        if it:
            pm, pv = it["pos_mean"], it["pos_var"]
            print(f"interaction state ({it['n']} final frames): pos = ({pm[0]:.3f} r, {pm[1]:.3f} r, "
                  f"{pm[2] * 1e3:.1f} mm) ± ({math.sqrt(pv[0]):.3f}, {math.sqrt(pv[1]):.3f}, "
                  f"{math.sqrt(pv[2]) * 1e3:.1f} mm); α = {math.degrees(it['alpha_mean']):.2f}° ± "
                  f"{math.degrees(math.sqrt(it['alpha_var'])):.2f}°; θ from K_i spread {it['theta_spread']:.2f}; "
                  f"handle clearance {it['handle_clearance']} m")
        else:
            print("no interaction state")
        if skill.keypoints.get("definitions"):
            for k, v in skill.keypoints["definitions"].items():
                print(f"  {k}: {v}")
    if args.plot:
        _plot(skill, args.plot)
        print(f"wrote {args.plot}")
    return 0


def _plot(skill, path: Path) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ValueError("kinebridge skill show --plot needs matplotlib (pip install 'kinebridge[eval]')") from None
    import numpy as np

    from kinebridge.kernels import quaternion as quat

    fig = plt.figure(figsize=(12, 4.5))
    ax = fig.add_subplot(1, 3, 1, projection="3d")
    for i, d in enumerate(skill.demos):
        ax.plot(*d.position.T, lw=1)
        ax.scatter(*d.position[-1], s=10)
        fk = skill.final_keypoints[i].get("master") if skill.final_keypoints else None
        if fk:
            pts = np.array(list(fk.values()))
            ax.scatter(*pts.T, s=4, c="k")
    ax.set_title("flange paths (m) and the targets' keypoints")
    bx = fig.add_subplot(1, 3, 2)
    for d in skill.demos:
        R = quat.to_matrix(d.orientation)
        tilt = np.degrees(np.arccos(np.clip(-R[:, 2, 2], -1, 1)))
        bx.plot(d.t - d.t[0], tilt, lw=1)
    bx.set_xlabel("t (s)")
    bx.set_ylabel("flange tilt from tool-down (°)")
    cx = fig.add_subplot(1, 3, 3)
    if skill.final_keypoints and skill.interaction:
        from kinebridge.kernels import bridge
        for fk in skill.final_keypoints:
            if not (fk.get("master") and fk.get("slave")):
                continue
            f = bridge.master_frame(fk["master"])
            S = bridge.keypoint_frame(fk["slave"])
            phi = bridge.pour_azimuth(f, S[:3, 2])
            dn = bridge.normalize(fk["slave"]["K_i"], f, phi)
            cx.scatter(dn[0], dn[2] * 1e3, s=12)
        cx.axvline(-1.0, c="grey", lw=0.5)
        cx.set_xlabel("held K_i along the pour (target rim radii)")
        cx.set_ylabel("height above the mouth (mm)")
        cx.set_title("final interaction state")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------------- eval pour
def add_eval_pour(ev_sub) -> None:
    ep = ev_sub.add_parser(
        "pour", help="pouring in the simulated world, VL-MP Table I: normal and ambiguous scenes, three methods",
        description="Pour into simulated mugs (one target: normal; three similar mugs and two boxes with a vague "
                    "instruction resolved in dialogue: ambiguous) with VL-MP (bridge + LFE-KMP), VLM+Prim (the "
                    "object's centre, plain KMP via-points) and KMP (the centre and the demonstrations' mean end "
                    "offset); the joint plan of the trajectory planner executed in the world offline; success = "
                    "half the water in the target, none spilt, no collision. Failures are classified as decision, "
                    "trajectory or dynamics errors (VL-MP Fig. 10).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ep.add_argument("--trials", type=int, default=10, help="trials per environment")
    ep.add_argument("--seed", type=int, default=0, help="seed of the scenes (mug shapes, poses, targets)")
    ep.add_argument("--methods", default="vl-mp,vlm-prim,kmp", help="comma-separated methods")
    ep.add_argument("--envs", default="normal,ambiguous", help="comma-separated environments")
    ep.add_argument("--keypoint-noise", type=float, default=0.001, help="noise added to the keypoints (m, 1σ)")
    ep.add_argument("--settle", type=float, default=1.0, help="time after the plan before scoring (s)")
    ep.add_argument("--min-bottom", type=float, default=None,
                    help="thicken target mugs' bottoms to at least this (m): the world's floors thinner than ~7 mm "
                         "let a fast water sphere through (a world defect, see the report)")
    ep.add_argument("--out", type=Path, default=None, help="write the JSON result here too")
    ep.add_argument("--json", action="store_true", help="print the result as JSON")
    ep.set_defaults(func=_eval_pour)


def _eval_pour(args) -> int:
    from kinebridge.bench import pour_eval

    res = pour_eval.run(trials=args.trials, seed=args.seed, methods=[m for m in args.methods.split(",") if m],
                        envs=[e for e in args.envs.split(",") if e], keypoint_noise=args.keypoint_noise,
                        settle_s=args.settle, min_bottom=args.min_bottom,
                        progress=None if args.json else lambda s: print(s, flush=True))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(res, indent=2))
    if args.json:
        json.dump(res, sys.stdout, indent=2)
        print()
    else:
        pour_eval.print_table(res)
    return 0
