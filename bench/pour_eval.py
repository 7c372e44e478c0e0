"""Pouring in the simulated world — VL-MP Table I: normal and ambiguous scenes, VL-MP against two baselines.

    run(trials, seed, methods, envs, ...) -> dict          kinebridge eval pour [--trials N] [--seed S] [--json]

**Scenes** (drawn from ``seed``; the same for every method):

* *normal* — one target mug (radius, height, wall, bottom, handle shape/reach/side drawn by
  ``SceneSpec.random``), placed in the reachable pour region
  (:data:`kinebridge.runtime.skills.pour_mug.POUR_REGION`: 0.27–0.38 m from the base, ±55°), the
  fixed instruction "pour water into the mug";
* *ambiguous* — three or more visually similar mugs (one shape and hue, ±4 % size) and two or more
  distractor boxes of distinct colours, every mug in the pour region; the intended target drawn from
  the seed; the vague instruction "pour me some water" and, when the planner asks which, an answer
  that singles the intended mug out in words (its position words as seen from the camera — "the
  leftmost one" — else its id), resolved in the same dialogue by the planner
  (:class:`~kinebridge.runtime.planner.local_planner.LocalPlanner`, ``Planner.decide``) on the world's
  ground-truth candidates.

The target's keypoints are the world's ground truth plus Gaussian noise (``keypoint_noise``, 1 mm by
default: perception's error), the same noise for every method.

**Methods** (all through the trajectory planner's :class:`SkillPlanner` pipeline — re-timing with the
rest ramps, start fade, warm-started IK, joint-limit slow-down — on the skill ``pour_mug``'s
demonstrations):

* ``vl-mp`` — the bridge (:class:`~kinebridge.runtime.bridge.core.Bridge`: calibration, the interaction
  state, EndposeEstimate with IK feasibility) gives the task frames [start pose, end pose] and
  LFE-KMP generalises to them (the same plan the trajectory node makes for the bridge node's task);
* ``vlm-prim`` — VLM+Prim (Code as Policies): the VLM parameterises a predefined pour primitive with
  the object's centre only (the mean of its keypoints K_p1, K_p2: a detection's 3D box centre) — the
  held mug's lip ``PRIM_LIP_ABOVE`` above that centre, the demonstrations' mean final orientation — and
  plain KMP (GMR reference of the demonstrations in the base frame) takes the start and that end as
  via-points;
* ``kmp`` — KMP without the bridge: the end = the object's centre plus the demonstrations' mean end
  offset from their targets' centres (base frame) with their mean final orientation; no keypoint
  normalisation, no choice of the pouring direction; plain KMP via-points as above.

**Execution**: the joint plan (``dt`` = 10 ms) drives the world the way the simulated controller
streams it — piecewise linear between samples, MuJoCo at its 2.5 ms step — offline, as fast as the
physics runs (not real time), then ``settle_s`` of holding before the score (VL-MP's success: ≥ half of
the water in the target, none spilt, no collision; :class:`~kinebridge.drivers.world.scoring.PourMonitor`).

**Failure classes** (VL-MP Fig. 10, ascending priority — a failure is counted in the highest class
that applies):

* ``dynamics`` — a collision-free pour whose executed end put the held mug's lip over the target's
  mouth, that still spilt or left less than half in the target: the water's and the execution's
  dynamics (in this world mostly spheres falling through a floor thinner than ~7 mm: counted as
  ``through_floor``);
* ``trajectory`` — no plan (the bridge found no reachable end pose, the planner's IK or limits
  refused it), a collision of the held mug, or an executed end with the lip outside the target's mouth
  (horizontally beyond the inner rim radius, or below the rim);
* ``decision`` — the decision layer did not decide the intended target (a wrong target, a question
  left unanswered, a failure).
"""

from __future__ import annotations

import math
import time

import numpy as np

__all__ = ["run", "print_table", "METHODS", "ENVS", "KMPPlanner", "PRIM_LIP_ABOVE", "classify"]

METHODS = ("vl-mp", "vlm-prim", "kmp")
ENVS = ("normal", "ambiguous")
PRIM_LIP_ABOVE = 0.07          # m: the pour primitive puts the lip this far above the object's centre
NORMAL_INSTRUCTION = "pour water into the mug"
VAGUE_INSTRUCTION = "pour me some water"
VIA = np.diag([1e-8] * 3 + [1e-8] * 3)      # via-points: position and (zero) velocity pinned


# ------------------------------------------------------------------------------------------ methods
class KMPPlanner:
    """Plain KMP on the demonstrations in the base frame (no task frames): a GMM/GMR reference of
    [t, x, ẋ] and of [t, ζ, ζ̇] (orientation in one auxiliary chart around the demonstrations' mean
    final orientation), the start and the goal as via-points — wrapped in :class:`SkillPlanner` so the
    path → joints pipeline is the trajectory node's."""

    def __new__(cls, skill, config=None, arm=None):
        from kinebridge.runtime.trajectory.planner import SkillPlanner

        class _KMPSkillPlanner(SkillPlanner):
            def __init__(self, skill, config=None, arm=None):
                from kinebridge.drivers.arm.model import arm_model
                from kinebridge.runtime.trajectory.planner import PlannerConfig

                self.skill = skill
                self.cfg = config or PlannerConfig()
                self.arm = arm or arm_model("RM75-B")
                t = time.perf_counter()
                self._fit_kmp()
                self.fit_ms = (time.perf_counter() - t) * 1e3
                self._warm_up()

            def _fit_kmp(self):
                from kinebridge.kernels import quaternion as quat
                from kinebridge.kernels.bridge import rotation_mean
                from kinebridge.kernels.gmm import fit_gmm
                from kinebridge.kernels.gmr import reference
                from kinebridge.kernels.kmp import KMP
                from kinebridge.runtime.trajectory.planner import fit_components

                demos = self.skill.demos
                n = self.cfg.n_ref
                dur = float(np.median([d.t[-1] - d.t[0] for d in demos]))
                self.t_ref = np.linspace(0.0, dur, n)
                self.R_aux = rotation_mean([quat.to_matrix(d.orientation[-1]) for d in demos])
                self.q_aux = quat.from_matrix(self.R_aux)
                rows_p, rows_o = [], []
                for d in demos:
                    u = (d.t - d.t[0]) / (d.t[-1] - d.t[0]) * dur
                    p = np.stack([np.interp(self.t_ref, u, d.position[:, k]) for k in range(3)], axis=1)
                    z = quat.project_continuous(d.orientation, self.q_aux)
                    z = np.stack([np.interp(self.t_ref, u, z[:, k]) for k in range(3)], axis=1)
                    for arr, rows in ((p, rows_p), (z, rows_o)):
                        v = np.gradient(arr, self.t_ref, axis=0)
                        rows.append(np.column_stack([self.t_ref, arr, v]))
                self.kmps = []
                for rows in (rows_p, rows_o):
                    gmm, _ = fit_gmm(np.concatenate(rows), fit_components(self.cfg, self.skill))
                    mu, sigma = reference(gmm, self.t_ref)
                    self.kmps.append(KMP(h=60.0 / dur ** 2, lam=1.0, kernel="analytic").fit(self.t_ref, mu, sigma))

            def generalize(self, frames):
                from kinebridge.kernels import quaternion as quat

                t = self.t_ref
                out = []
                for k, kmp in enumerate(self.kmps):
                    mu = np.zeros((2, 6))
                    if k == 0:
                        mu[0, :3], mu[1, :3] = frames[0].origin, frames[1].origin
                    else:
                        q = np.stack([quat.from_matrix(frames[0].rotation), quat.from_matrix(frames[1].rotation)])
                        mu[:, :3] = quat.project(q, self.q_aux)
                    kmp.set_via_points([t[0], t[-1]], mu, np.stack([VIA, VIA]))
                    out.append(kmp.predict(t)[:, :3])
                ori = quat.unproject(out[1], self.q_aux)
                return t, out[0], quat.make_continuous(ori)

        return _KMPSkillPlanner(skill, config, arm)


def _mean_end(skill):
    """(mean end offset from the demonstrations' target centres (base frame), mean end rotation)."""
    from kinebridge.kernels import quaternion as quat
    from kinebridge.kernels.bridge import rotation_mean

    offs, rots = [], []
    for i, d in enumerate(skill.demos):
        m = skill.final_keypoints[i]["master"]
        c = 0.5 * (np.asarray(m["K_p1"]) + np.asarray(m["K_p2"]))
        offs.append(d.position[-1] - c)
        rots.append(quat.to_matrix(d.orientation[-1]))
    return np.mean(offs, axis=0), rotation_mean(rots)


# ------------------------------------------------------------------------------------------ scenes
def _scene(env: str, seed: int, i: int, min_bottom):
    from kinebridge.runtime.skills.pour_mug import reachable_scene

    s = int(seed) * 1000 + (0 if env == "normal" else 500) + i
    spec = (reachable_scene(s, n_mugs=1, n_distractors=0) if env == "normal"
            else reachable_scene(s, n_mugs=3, n_distractors=2, ambiguous=True))
    rng = np.random.default_rng([s, 3])
    mugs = [o.name for o in spec.objects if o.kind == "mug"]
    target = mugs[0] if env == "normal" else mugs[int(rng.integers(len(mugs)))]
    if min_bottom:
        objs = tuple(o.model_copy(update={"bottom": max(o.bottom, float(min_bottom))}) if o.kind == "mug" else o
                     for o in spec.objects)
        spec = type(spec).model_validate(spec.model_copy(update={"objects": objs}).model_dump())
    spec = type(spec).model_validate(spec.model_copy(update={"target": target}).model_dump())
    return spec, target, s, rng


def _answer(cands, intended: str) -> str:
    """Words that single ``intended`` out among the mugs (its superlative position words), else its id."""
    me = next(c for c in cands if c.id == intended)
    for w in me.position_words:
        if w in ("leftmost", "rightmost", "nearest the camera", "farthest from the camera"):
            return {"nearest the camera": "the one nearest the camera",
                    "farthest from the camera": "the one farthest from the camera"}.get(w, f"the {w} one")
    return intended


def _decide(env, world, intended):
    """(decided target or None, dialogue turns, decision latency ms) through the planner."""
    from kinebridge.runtime.planner.base import Dialogue
    from kinebridge.runtime.planner.candidates import from_world
    from kinebridge.runtime.planner.local_planner import LocalPlanner

    planner = LocalPlanner()
    cands = from_world(world)
    dlg = Dialogue(id="eval")
    t = time.perf_counter()
    turns = [NORMAL_INSTRUCTION if env == "normal" else VAGUE_INSTRUCTION]
    d = planner.decide(turns[0], cands, history=dlg)
    if d.status == "ask":
        turns.append(_answer(cands, intended))
        d = planner.decide(turns[-1], cands, history=dlg)
    ms = (time.perf_counter() - t) * 1e3
    return (d.target if d.status == "decided" else None), turns, d, ms


# --------------------------------------------------------------------------------------- scoring
def _through_floor(world, target: str, spilt_mask) -> int:
    """Spilt spheres lying within the target's footprint below its floor's top: fallen through it."""
    o = world.scene.object(target)
    T = world.object_poses()[target]
    P = (world.particles() - T[:3, 3]) @ T[:3, :3]
    inside = (np.hypot(P[:, 0], P[:, 1]) < o.radius) & (P[:, 2] < o.bottom + 0.0045)
    return int((inside & spilt_mask).sum())


def _lip_over_mouth(world, target: str) -> tuple[bool, float]:
    """(the held mug's lip is over the target's mouth now, its horizontal distance from the axis in m)."""
    o = world.scene.object(target)
    kp = world.keypoints()
    lip = kp["tool"]["K_i"]
    T = world.object_poses()[target]
    loc = T[:3, :3].T @ (lip - T[:3, 3])
    r = float(math.hypot(loc[0], loc[1]))
    return bool(r < o.radius - o.wall and loc[2] > o.height - 0.002), r


def classify(decided_ok: bool, planned: bool, score, lip_over: bool) -> str | None:
    """The failure class (module docstring), None for a success."""
    if not decided_ok:
        return "decision"
    if not planned or score is None:
        return "trajectory"
    if score.success:
        return None
    if score.collisions > 0 or not lip_over:
        return "trajectory"
    return "dynamics"


# -------------------------------------------------------------------------------------------- run
def run(trials: int = 10, seed: int = 0, methods=METHODS, envs=ENVS, *, keypoint_noise: float = 0.001,
        settle_s: float = 1.0, min_bottom: float | None = None, skill=None, progress=None) -> dict:
    """Table I on the world (module docstring). Returns {config, methods → name → env → {successes,
    trials, failures}, trials: per-trial records, failure_classes}."""
    from kinebridge.drivers.world.scoring import PourMonitor
    from kinebridge.drivers.world.world import World
    from kinebridge.kernels import rm75
    from kinebridge.kernels.lfe_kmp import TaskFrame
    from kinebridge.runtime.bridge.core import Bridge, BridgeError
    from kinebridge.runtime.skills.pour_mug import execute_joint_path
    from kinebridge.runtime.skills.registry import bundled_skill
    from kinebridge.runtime.trajectory.planner import PlanError, SkillPlanner

    bad = [m for m in methods if m not in METHODS] + [e for e in envs if e not in ENVS]
    if bad or trials < 1:
        raise ValueError(f"eval pour: methods from {METHODS}, envs from {ENVS}, trials ≥ 1 (got {bad or trials})")
    t_all = time.perf_counter()
    skill = skill or bundled_skill("pour_mug")
    planners, fit_ms = {}, {}
    for m in methods:
        t = time.perf_counter()
        planners[m] = SkillPlanner(skill) if m == "vl-mp" else KMPPlanner(skill)
        fit_ms[m] = round((time.perf_counter() - t) * 1e3, 1)
    bridge = Bridge()
    bridge.add_skill("pour_mug", skill)
    mean_off, R_end = _mean_end(skill)
    ki_f = np.asarray(skill.keypoints["slave_flange"]["K_i"], float)
    out = {m: {e: {"successes": 0, "trials": 0, "failures": {"decision": 0, "trajectory": 0, "dynamics": 0}}
               for e in envs} for m in methods}
    records = []
    for env in envs:
        for i in range(trials):
            spec, intended, s, rng = _scene(env, seed, i, min_bottom)
            world = World(spec)
            decided, turns, decision, dec_ms = _decide(env, world, intended)
            truth = {k: v.copy() for k, v in world.keypoints().get(decided or intended, {}).items()}
            noisy = {k: v + rng.normal(0.0, keypoint_noise, 3) for k, v in truth.items()}
            q0 = world.arm_q
            for m in methods:
                world.reset()
                rec = {"env": env, "trial": i, "scene_seed": s, "method": m, "intended": intended, "decided": decided,
                       "dialogue": turns}
                plan, err, est_ms, feas_ms = None, None, None, None
                if decided is not None:
                    try:
                        if m == "vl-mp":
                            est = bridge.estimate("pour_mug", noisy, q0, target=decided)
                            est_ms = est.ms["endpose"]
                            feas_ms = est.ms["feasibility"]
                            goal = TaskFrame(est.goal[:3, 3].copy(), est.goal[:3, :3].copy())
                        else:
                            c = 0.5 * (noisy["K_p1"] + noisy["K_p2"])
                            if m == "kmp":
                                p = c + mean_off
                            else:
                                p = c + np.array([0.0, 0.0, PRIM_LIP_ABOVE]) - R_end @ ki_f
                            goal = TaskFrame(p, R_end.copy())
                        plan = planners[m].plan(goal, q_start=q0, t_start=0.0)
                    except (BridgeError, PlanError, ValueError) as exc:
                        err = f"{type(exc).__name__}: {exc}"[:300]
                score, lip_over, lip_r, through = None, False, None, 0
                if plan is not None:
                    mon = PourMonitor(world, spec.target)
                    try:
                        score = execute_joint_path(world, plan.q, plan.dt, spec.target, settle_s=settle_s,
                                                   monitor=mon)
                        lip_over, lip_r = _lip_over_mouth(world, spec.target)
                        through = _through_floor(world, spec.target, mon.spilt)
                    finally:
                        mon.close()
                cls = classify(decided == intended, plan is not None, score, lip_over)
                ok = cls is None
                o = out[m][env]
                o["trials"] += 1
                o["successes"] += int(ok)
                if cls:
                    o["failures"][cls] += 1
                rec.update(success=ok, failure=cls, error=err, endpose_ms=est_ms, feasibility_ms=feas_ms,
                           plan_ms=None if plan is None else round(plan.plan_ms.get("total", 0.0), 1),
                           speed=None if plan is None else plan.speed, lip_from_axis_m=lip_r, through_floor=through,
                           score=None if score is None else {k: score.to_dict()[k] for k in (
                               "in_target", "in_source", "in_other", "spilt", "in_flight", "under_floor", "collisions",
                               "collided_with", "target_moved_m")})
                records.append(rec)
                if progress:
                    sc = rec["score"] or {}
                    progress(f"{env:9s} {i:2d} {m:8s} {'ok  ' if ok else 'FAIL'} {cls or '':10s} in {sc.get('in_target')}"
                             f" spilt {sc.get('spilt')} (floor {through}) coll {sc.get('collisions')} "
                             f"{sc.get('collided_with') or ''} {err or ''}")
    return {"config": {"trials": trials, "seed": seed, "methods": list(methods), "envs": list(envs),
                       "keypoint_noise_m": keypoint_noise, "settle_s": settle_s, "min_bottom_m": min_bottom,
                       "skill": skill.name, "demonstrations": len(skill.demos), "fit_ms": fit_ms,
                       "execution": "offline, faster than real time: the joint plan piecewise linear at the "
                                    "physics step (2.5 ms), as the simulated controller streams it",
                       "planner": "LocalPlanner (Planner.decide) on the world's ground-truth candidates",
                       "seconds": round(time.perf_counter() - t_all, 1)},
            "methods": out, "trials": records,
            "failure_classes": {
                "decision": "the planner did not decide the intended target",
                "trajectory": "no plan (no reachable end pose, IK or limits), a collision of the held mug, or the "
                              "executed lip not over the target's mouth",
                "dynamics": "collision-free, lip over the mouth, yet spilt or under half in the target (e.g. "
                            "spheres through a thin floor: through_floor)"}}


def print_table(res: dict) -> None:
    envs = res["config"]["envs"]
    print(f"\npour, {res['config']['trials']} trials per environment, seed {res['config']['seed']} "
          f"({res['config']['seconds']} s)")
    print(f"{'method':10s} " + " ".join(f"{e:>10s}" for e in envs) + "   failures (decision/trajectory/dynamics)")
    for m, row in res["methods"].items():
        cells = " ".join(f"{row[e]['successes']:>4d}/{row[e]['trials']:<5d}" for e in envs)
        fails = "  ".join(f"{e}: {row[e]['failures']['decision']}/{row[e]['failures']['trajectory']}/"
                          f"{row[e]['failures']['dynamics']}" for e in envs)
        print(f"{m:10s} {cells}   {fails}")
