"""Executing an episode's joint plan in the simulated world, recording it, and scoring its goal.

The world runs offline, faster than real time: each 10 ms plan sample is four 2.5 ms physics steps with
the arm driven kinematically along the plan (:meth:`World.step`). The world has no actuated gripper, so
what the gripper does is modelled at the contact the instruction names:

* ``rigid`` (place, facing) — at the grasp event the object is attached to the tool centre point only if
  the TCP is within ``GRASP_TOL`` of the planned grasp point *on the object as it is now*; it then follows
  the TCP rigidly (its free joint set every physics step) until the release, when it is let go at rest
  and the physics settles it;
* ``planar`` (push) — the plate under the pusher follows the TCP in the table plane (same test);
* ``slide`` (drawer) — the drawer's slide joint follows the TCP's displacement along the pull axis,
  within the joint's travel;
* ``held`` (pour) — the held mug is the tool; the water is the world's 3-DOF spheres.

A trajectory that misses the part takes nothing, and the goal check — made on the physics state after
``SETTLE_S`` of settling — fails. Observations are recorded at ``action_hz`` (joint state, TCP and flange
poses, gripper command, every keypoint), images (scene camera and a wrist camera on the flange) at
``image_hz``.
"""

from __future__ import annotations

import math

import numpy as np

from kinebridge.kernels import rm75
from kinebridge.bench.kine.plan import T_FLANGE_TCP

__all__ = ["GRASP_TOL", "SETTLE_S", "execute", "Attacher", "T_FLANGE_WRIST_CAM", "score_goal"]

GRASP_TOL = 0.02         # m: how close the TCP must be to the grasp point for the grasp to take
SETTLE_S = 0.6           # s of physics after the plan before the goal is checked
PHYSICS_PER_SAMPLE = 4   # 2.5 ms steps per 10 ms plan sample
T_FLANGE_WRIST_CAM = np.eye(4)
T_FLANGE_WRIST_CAM[:3, 3] = [0.0, 0.075, 0.0]     # beside the gripper, looking along the tool axis


def _mat_to_quat(R) -> np.ndarray:
    return rm75.matrix_to_quat(R)


class Attacher:
    """The step hook that makes grasps, pushes and pulls (see the module docstring)."""

    def __init__(self, world, spec: dict, d7: float):
        self.world, self.spec, self.d7 = world, spec or {}, d7
        self.kind = self.spec.get("kind")
        self.active = False
        self.grasped = False
        self.miss_m: float | None = None
        self._T = np.eye(4)
        m = world.model
        self._obj = self.spec.get("object")
        self._body = world.built.object_bodies.get(self._obj) if self._obj else None
        self._adr = None
        if self._body is not None and self.kind in ("rigid", "planar"):
            j = m.body_jntadr[self._body]
            self._adr, self._dof = int(m.jnt_qposadr[j]), int(m.jnt_dofadr[j])
        if self.kind == "slide":
            self._adr = world.built.drawer_joints[self._obj]
            import mujoco
            jid = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, f"{self._obj}/slide")
            self._dof = int(m.jnt_dofadr[jid])
            self._travel = float(m.jnt_range[jid][1])
        self._T0 = self._pose_now() if self._body is not None and self.kind in ("rigid", "planar") else None
        world.add_step_hook(self.on_step)

    def close(self):
        try:
            self.world.remove_step_hook(self.on_step)
        except ValueError:
            pass

    def _tcp(self) -> np.ndarray:
        q = self.world.data.qpos[self.world.built.arm_qpos]
        rm75.fk_into(np.ascontiguousarray(q), self.d7, self._T)
        return self._T @ T_FLANGE_TCP

    def _pose_now(self) -> np.ndarray:
        return self.world.pose_of_body(self._body)

    def grasp(self) -> bool:
        """The grasp event: attach if the TCP is at the grasp point (moved with the object since the start)."""
        if self.kind in (None, "held"):
            return False
        tcp = self._tcp()
        p = np.asarray(self.spec["point"], float)
        if self.kind in ("rigid", "planar"):
            T_now = self._pose_now()
            p = (T_now @ np.linalg.inv(self._T0) @ np.r_[p, 1.0])[:3]
        else:       # the drawer's handle moves with its joint
            p = p + np.asarray(self.spec["axis"], float) * float(self.world.data.qpos[self._adr])
        self.miss_m = float(np.linalg.norm(tcp[:3, 3] - p))
        if self.miss_m > GRASP_TOL:
            return False
        self.active = self.grasped = True
        self._tcp0 = tcp.copy()
        if self.kind in ("rigid", "planar"):
            self._rel = np.linalg.inv(tcp) @ self._pose_now()
            self._obj0 = self._pose_now()
        else:
            self._j0 = float(self.world.data.qpos[self._adr])
        return True

    def release(self) -> None:
        if self.active and self._adr is not None:
            d = self.world.data
            n = 6 if self.kind in ("rigid", "planar") else 1
            d.qvel[self._dof:self._dof + n] = 0.0
            if self.kind == "rigid":       # let go moving down a little: a body at rest in the air would sleep there
                d.qvel[self._dof + 2] = -0.05
        self.active = False

    def on_step(self, event: str) -> None:
        if event != "step" or not self.active:
            return
        d = self.world.data
        tcp = self._tcp()
        if self.kind == "slide":
            s = self._j0 + float((tcp[:3, 3] - self._tcp0[:3, 3]) @ np.asarray(self.spec["axis"], float))
            d.qpos[self._adr] = min(max(s, 0.0), self._travel)
            d.qvel[self._dof] = 0.0
            return
        if self.kind == "rigid":
            T = tcp @ self._rel
        else:
            T = self._obj0.copy()
            T[:2, 3] += tcp[:2, 3] - self._tcp0[:2, 3]
        a = self._adr
        d.qpos[a:a + 3] = T[:3, 3]
        d.qpos[a + 3:a + 7] = _mat_to_quat(T[:3, :3])
        d.qvel[self._dof:self._dof + 6] = 0.0


def _cameras(world, image_size):
    from kinebridge.drivers.camera.geometry import Intrinsics, look_at
    from kinebridge.drivers.world.render import Renderer
    w, h = image_size
    scene_intr = Intrinsics.from_fovy(w, h, 48.0)
    wrist_intr = Intrinsics.from_fovy(w, h, 75.0)
    T_scene = look_at((1.0, 0.0, 0.65), (0.3, 0.0, 0.03))
    return Renderer(world, w, h), scene_intr, wrist_intr, T_scene


def execute(world, plan, layout, d7: float, *, action_hz: float = 10.0, image_hz: float = 5.0,
            image_size=(128, 96), images: bool = True, dt: float = 0.01, monitor=None) -> dict:
    """Run ``plan`` (an :class:`~kinebridge.bench.kine.tasks.EpisodePlan` or ``(q, grip, events)``) in
    ``world`` and record it; returns the episode's arrays, the grasp outcome and the goal score."""
    q_plan, grip_plan, events = plan.joints() if hasattr(plan, "joints") else plan
    attach = plan.attach if hasattr(plan, "attach") else layout_attach(layout, plan)
    q_plan = np.asarray(q_plan, float)
    if np.max(np.abs(q_plan[0] - world.arm_q)) > 1e-6:
        world.set_arm(q_plan[0])
    att = Attacher(world, attach, d7)
    ev = dict(events)
    every = max(1, int(round(1.0 / (action_hz * dt))))
    img_every = max(1, int(round(1.0 / (image_hz * dt)))) if images and image_hz > 0 else 0
    rec = {k: [] for k in ("t", "q", "tcp", "flange", "grip", "keypoints")}
    imgs = {"scene": [], "wrist": [], "t": []}
    renderer = None
    if img_every:
        renderer, s_intr, w_intr, T_scene = _cameras(world, image_size)
    kp_names = None
    T = np.eye(4)
    grasp_ok = None
    try:
        n = len(q_plan)
        for i in range(n):
            e = ev.get(i)
            if e == "grasp":
                grasp_ok = att.grasp()
            elif e == "release":
                att.release()
            if i % every == 0:
                q = world.arm_q
                rm75.fk_into(np.ascontiguousarray(q), d7, T)
                rec["t"].append(i * dt)
                rec["q"].append(q)
                rec["flange"].append(rm75.matrix_to_pose7(T))
                rec["tcp"].append(rm75.matrix_to_pose7(T @ T_FLANGE_TCP))
                rec["grip"].append(bool(grip_plan[i]))
                kps = world.keypoints()
                if kp_names is None:
                    kp_names = [f"{o}/{k}" for o in sorted(kps) for k in sorted(kps[o])]
                rec["keypoints"].append(np.array([kps[nm.split("/")[0]][nm.split("/")[1]] for nm in kp_names]))
            if img_every and i % img_every == 0:
                rgb, _, _ = renderer.render(s_intr, T_scene)
                rm75.fk_into(np.ascontiguousarray(world.arm_q), d7, T)
                wr, _, _ = renderer.render(w_intr, T @ T_FLANGE_WRIST_CAM)
                imgs["scene"].append(rgb)
                imgs["wrist"].append(wr)
                imgs["t"].append(i * dt)
            if i + 1 < n:
                world.step(PHYSICS_PER_SAMPLE, q_plan[i + 1])
        att.release()
        world.step(int(round(SETTLE_S / world.timestep)), q_plan[-1])
        goal = score_goal(world, layout, att, monitor)
    finally:
        att.close()
        if renderer is not None:
            renderer.close()
    qa = np.asarray(rec["q"])
    idx = np.minimum(np.arange(len(qa)) * every + every, n - 1)
    act_q = q_plan[idx]
    act_tcp = np.array([rm75.matrix_to_pose7(rm75.fk(x, d7) @ T_FLANGE_TCP) for x in act_q])
    out = {"t": np.asarray(rec["t"]), "q": qa, "tcp": np.asarray(rec["tcp"]), "flange": np.asarray(rec["flange"]),
           "grip": np.asarray(rec["grip"], np.int8), "keypoints": np.asarray(rec["keypoints"], np.float32),
           "keypoint_names": np.array(kp_names or []), "action_q": act_q, "action_tcp": act_tcp}
    if img_every:
        out["image_scene"] = np.asarray(imgs["scene"], np.uint8)
        out["image_wrist"] = np.asarray(imgs["wrist"], np.uint8)
        out["image_t"] = np.asarray(imgs["t"])
    return {"arrays": out, "grasp": {"made": att.grasped, "miss_m": att.miss_m}, "goal": goal}


def layout_attach(layout, plan) -> dict:
    return getattr(plan, "attach", {})


def score_goal(world, layout, att: Attacher, monitor=None) -> dict:
    """The goal, from the physics state: on the plate (upright, resting), in front of the box, the drawer
    open, the water in the bowl."""
    t, info = layout.task, layout.info
    poses = world.object_poses()
    if t in ("place", "facing"):
        Po, Pt = poses[info["object"]], poses[info["target"]]
        d = float(np.linalg.norm(Po[:2, 3] - Pt[:2, 3]))
        up = float(Po[2, 2])
        z = float(Po[2, 3] - Pt[2, 3])
        moved = float(np.linalg.norm(Pt[:2, 3] - np.asarray(info["target_xy"])))
        ok = att.grasped and d <= 0.85 * info["target_radius"] and up >= math.cos(math.radians(15)) \
            and -0.005 <= z <= 0.03 and moved < 0.03
        out = {"success": bool(ok), "object_xy": Po[:2, 3].tolist(), "on_target_m": d, "upright": up,
               "height_m": z, "target_moved_m": moved}
        if t == "facing":
            out["facing_xy"] = Po[:2, 0].tolist()        # the mug frame's x axis points at its handle
        return out
    if t == "push":
        from kinebridge.kernels import kine_predicates as kp
        Pp, Pb = poses[info["object"]], poses[info["reference"]]
        ref = np.asarray(info["reference_xy"])
        along = kp.distance_along(Pp[:2, 3], ref, info["distance_word"])
        u = kp.DIRECTIONS[info["distance_word"]]
        off = Pp[:2, 3] - ref
        across = abs(float(off[0] * u[1] - off[1] * u[0]))
        box_moved = float(np.linalg.norm(Pb[:2, 3] - ref))
        ok = att.grasped and 0.06 <= along <= info["distances"]["far"] + 0.06 and across <= 0.07 and box_moved < 0.02
        return {"success": bool(ok), "object_xy": Pp[:2, 3].tolist(), "along_m": along, "across_m": across,
                "reference_moved_m": box_moved}
    if t == "drawer":
        opening = float(world.data.qpos[world.built.drawer_joints[info["object"]]])
        return {"success": bool(opening >= 0.15 * info["travel"]), "opening_m": opening,
                "extent": opening / info["travel"]}
    if t == "pour":
        s = monitor.score()
        return {"success": bool(s.success), **{k: v for k, v in s.to_dict().items() if k != "success"}}
    raise ValueError(t)
