"""The bridge's logic, no I/O: a skill and a target's keypoints → validated task frames [start, end].

:class:`Bridge` holds, per skill, what EndposeEstimate needs from the skill file (format version 2):
the interaction state learned from the demonstrations' final frames, the held object's keypoints in
the flange frame, and *checkpoints* — the demonstrations' mean flange poses relative to their end
pose at ``[bridge] check_phases`` (for ``pour_mug``: the pre-pour pose, the tilt, the end). For a
target it

1. validates the keypoints (K_i, K_p1, K_p2 present, finite, a real axis and rim; K_b optional) and
   refuses a target further than ``max_reach`` from the base at once;
2. runs :func:`kinebridge.kernels.bridge.endpose_estimate` from the arm's flange pose (FK of its
   joints), a candidate being *feasible* when the IK reaches every checkpoint mapped by it, chained
   from the arm's joints (what the trajectory planner's warm-started IK will follow);
3. returns the task frames: start = the arm's flange pose, end = P_target.

Every refusal is a :class:`BridgeError` with a ``code`` (``missing_keypoints``, ``invalid_keypoints``,
``out_of_reach``, ``unknown_skill``, ``no_interaction_state``) and a sentence saying what to do.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from kinebridge.kernels import bridge as kb
from kinebridge.kernels import quaternion as quat
from kinebridge.kernels import rm75
from kinebridge.runtime.bridge.config import BridgeSection

__all__ = ["BridgeError", "SkillModel", "Estimate", "Bridge", "checkpoints", "ERROR_CODES"]

ERROR_CODES = ("missing_keypoints", "invalid_keypoints", "stale_keypoints", "no_target", "no_arm_state",
               "out_of_reach", "unknown_skill", "no_interaction_state", "not_decided")


class BridgeError(ValueError):
    """A decision the bridge cannot turn into a task; ``code`` is one of :data:`ERROR_CODES`."""

    def __init__(self, code: str, reason: str):
        super().__init__(reason)
        self.code = code


def checkpoints(skill, phases) -> np.ndarray:
    """(K, 4, 4): the demonstrations' mean flange pose relative to their end pose at each phase
    (share of each demonstration's duration; positions averaged, rotations by their chordal mean)."""
    out = []
    for u in phases:
        P, R = [], []
        for d in skill.demos:
            t = d.t[0] + u * (d.t[-1] - d.t[0])
            k = int(np.clip(np.searchsorted(d.t, t), 0, d.t.size - 1))
            Re = quat.to_matrix(d.orientation[-1])
            Rk = quat.to_matrix(d.orientation[k])
            P.append(Re.T @ (d.position[k] - d.position[-1]))
            R.append(Re.T @ Rk)
        T = np.eye(4)
        T[:3, :3], T[:3, 3] = kb.rotation_mean(R), np.mean(P, axis=0)
        out.append(T)
    return np.array(out)


@dataclass
class SkillModel:
    """What the bridge needs of one skill (module docstring)."""

    name: str
    state: kb.InteractionState
    slave_kp_flange: dict
    checkpoints: np.ndarray
    skill: object = None

    @classmethod
    def from_skill(cls, name: str, skill, phases) -> "SkillModel":
        try:
            state = skill.interaction_state()
        except ValueError as exc:
            raise BridgeError("no_interaction_state", str(exc)) from None
        skf = (skill.keypoints or {}).get("slave_flange")
        if not skf:
            raise BridgeError("no_interaction_state", f"skill {name!r} does not say where the held object's keypoints "
                                                      f"are in the flange frame (keypoints.slave_flange)")
        return cls(name, state, {k: np.asarray(v, float) for k, v in skf.items()}, checkpoints(skill, phases), skill)


@dataclass
class Estimate:
    """A validated task: ``skill``, the task frames ``start`` and ``goal`` (4 × 4 flange poses) and how
    they were found (``endpose``: EndposeEstimate's result; ``ms``: stage timings)."""

    skill: str
    start: np.ndarray
    goal: np.ndarray
    endpose: kb.EndposeResult
    ms: dict = field(default_factory=dict)

    def pose7(self, which: str) -> list[float]:
        return [float(x) for x in rm75.matrix_to_pose7(getattr(self, which))]


class Bridge:
    """Skill + target keypoints + the arm's joints → :class:`Estimate` (module docstring)."""

    def __init__(self, cfg: BridgeSection | None = None, d7: float = rm75.D7_B, loader=None):
        self.cfg = cfg or BridgeSection()
        self.d7 = float(d7)
        self._models: dict[str, SkillModel] = {}
        self._loader = loader

    def skill_for(self, decision_skill: str) -> str:
        """The skill the bridge plans for a decision's skill (``[bridge] skills``)."""
        return self.cfg.skills.get(decision_skill, decision_skill)

    def model(self, name: str) -> SkillModel:
        m = self._models.get(name)
        if m is None:
            try:
                if self._loader is not None:
                    skill = self._loader(name)
                else:
                    from kinebridge.runtime.skills.registry import load_skill
                    skill = load_skill(name)
            except ValueError as exc:
                raise BridgeError("unknown_skill", str(exc)) from None
            m = self._models[name] = SkillModel.from_skill(name, skill, self.cfg.check_phases)
        return m

    def add_skill(self, name: str, skill) -> SkillModel:
        self._models[name] = m = SkillModel.from_skill(name, skill, self.cfg.check_phases)
        return m

    def check_keypoints(self, kp, target: str = "target") -> dict:
        """The keypoints as float arrays; BridgeError naming what is missing or malformed."""
        if not isinstance(kp, dict) or not kp:
            raise BridgeError("missing_keypoints", f"{target}: no keypoints; the bridge needs {list(kb.REQUIRED)} "
                                                   f"of the target")
        missing = [k for k in kb.REQUIRED if kp.get(k) is None]
        if missing:
            raise BridgeError("missing_keypoints", f"{target}: keypoints {missing} are missing (have "
                                                   f"{sorted(k for k in kp if kp[k] is not None)}); the bridge needs "
                                                   f"{list(kb.REQUIRED)} (and K_b) of the target")
        out = {}
        for k, v in kp.items():
            if v is None or not k.startswith("K_"):
                continue
            try:
                a = np.asarray(v, float)
            except (TypeError, ValueError):
                a = np.full(1, np.nan)
            if a.shape != (3,) or not np.all(np.isfinite(a)):
                raise BridgeError("invalid_keypoints", f"{target}: keypoint {k} must be 3 finite numbers (m), got "
                                                       f"{v!r}")
            out[k] = a
        try:
            kb.master_frame(out, target, calibrated=self.cfg.calibrate, upright_tol_deg=self.cfg.upright_tol_deg)
        except ValueError as exc:
            raise BridgeError("invalid_keypoints", str(exc)) from None
        return out

    def feasibility(self, model: SkillModel, q_start: np.ndarray):
        """``feasible(T)``: the IK reaches every checkpoint of ``model`` mapped by the end pose ``T``,
        chained from ``q_start`` (restarts only for the first, which is far from the start), with every
        joint at least ``[bridge] limit_margin_deg`` inside its limits."""
        cps = model.checkpoints
        d7 = self.d7
        m = math.radians(self.cfg.limit_margin_deg)
        lo, hi = rm75.Q_MIN + m, rm75.Q_MAX - m

        def feasible(T: np.ndarray) -> bool:
            q = q_start
            for i, L in enumerate(cps):
                r = rm75.ik(T @ L, q, d7, tol_pos=1e-5, tol_rot=1e-4, restarts=(i == 0))
                if not r.ok or np.any(r.q < lo) or np.any(r.q > hi):
                    return False
                q = r.q
            return True

        return feasible

    def estimate(self, skill: str, target_kp: dict, q_start, *, target: str = "target",
                 slave_kp_flange: dict | None = None) -> Estimate:
        """Task frames for ``skill`` (a bridge skill name) and the target's keypoints (base frame, m) from
        the arm's joints ``q_start`` (rad); BridgeError naming why not."""
        t0 = time.perf_counter()
        model = self.model(skill)
        kp = self.check_keypoints(target_kp, target)
        axis = 0.5 * (kp["K_p1"] + kp["K_p2"])
        dist = math.hypot(axis[0], axis[1])
        if dist > self.cfg.max_reach:
            raise BridgeError("out_of_reach", f"{target} stands {dist:.3f} m from the arm's base, beyond "
                                              f"[bridge] max_reach = {self.cfg.max_reach} m: move it closer")
        q_start = np.asarray(q_start, float)
        start = rm75.fk(q_start, self.d7)
        t1 = time.perf_counter()
        ik = self.feasibility(model, q_start)
        spent = [0.0, 0]                # the IK feasibility checks' share of the estimate: seconds, calls

        def feasible(T):
            tf = time.perf_counter()
            try:
                return ik(T)
            finally:
                spent[0] += time.perf_counter() - tf
                spent[1] += 1
        try:
            res = kb.endpose_estimate(kp, model.state, slave_kp_flange or model.slave_kp_flange, start,
                                      step_deg=self.cfg.step_deg, feasible=feasible,
                                      handle_clearance=self.cfg.handle_clearance,
                                      rotation_weight=self.cfg.rotation_weight, alpha_sigmas=self.cfg.alpha_sigmas,
                                      calibrated=self.cfg.calibrate, upright_tol_deg=self.cfg.upright_tol_deg)
        except ValueError as exc:
            raise BridgeError("out_of_reach", f"{target}: {exc}") from None
        t2 = time.perf_counter()
        # "endpose": Algorithm 1 (candidates, the α constraint, the nearest pose); "feasibility": the IK
        # checks of the candidates it tried, in order of cost ("checks" of them)
        return Estimate(skill, start, res.T, res, {"validate": (t1 - t0) * 1e3,
                                                   "endpose": (t2 - t1 - spent[0]) * 1e3,
                                                   "feasibility": spent[0] * 1e3, "checks": spent[1],
                                                   "total": (t2 - t0) * 1e3})
