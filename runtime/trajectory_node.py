"""The trajectory node: task parameters in, timestamped joint chunks out.

It loads a skill (the bundled pouring demonstrations or a skill file), fits LFE-KMP once at start
and then, for every ``task`` message — the goal frame as a 7-vector ``goal`` = x, y, z, qw, qx, qy,
qz (optionally the start frame as ``start``), or for the pouring skill ``cup`` = x, y, z (m), yaw (°):

1. generalises the skill to the new task frames (LFE-KMP, position and orientation) and converts
   it to joint space with the RM75 IK kernel, starting from the arm's current setpoint (taken from
   ``control/state``) — :class:`~kinebridge.runtime.trajectory_planner.SkillPlanner`;
2. publishes ``trajectory/plan`` (the whole joint and Cartesian plan, stage timings) and then, at
   ``trajectory.publish_hz``, the ``chunk`` covering the next ``chunk_len`` samples;
3. when a new task arrives mid-motion, re-plans from the state the current plan reaches
   ``lead_s`` from now, so the new chunks continue the motion; the control loop's seam blend keeps
   position and velocity continuous across the switch;
4. publishes ``trajectory/done`` when the plan's last sample is due, or ``trajectory/error`` with the
   reason when a goal cannot be planned (unreachable, too fast) — the arm then simply finishes or
   holds what it had.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from kinebridge.runtime.bus import PRODUCER_IO_PRIORITY
from kinebridge.runtime.node import Node
from kinebridge.runtime.trajectory_planner import (PlanError, PlannerConfig, Skill, SkillPlanner, bundled_skill,
                                                   chunks, cup_frame, task_frame_from_pose7)

__all__ = ["TrajectoryNode", "load_skill"]


def load_skill(spec: str) -> Skill:
    """A bundled skill by name, or a skill file by path."""
    if spec.endswith(".npz") or "/" in spec:
        if not Path(spec).is_file():
            raise ValueError(f"trajectory.skill: no skill file {spec!r} (or give a bundled name, e.g. 'pour')")
        return Skill.load(spec)
    return bundled_skill(spec)


class TrajectoryNode(Node):
    topics = ("task", "control/state")

    def io_priority(self, cfg) -> int:
        # chunks leave at once even while this node's planning (and the recorder) keep the other CPU
        # busy: ZeroMQ's I/O thread gets a low SCHED_FIFO priority, far below the control loop's
        return PRODUCER_IO_PRIORITY if cfg.control.realtime.priority > 0 else 0

    def setup(self) -> None:
        t = self.cfg.trajectory
        self.tick_hz = t.publish_hz
        t0 = time.perf_counter()
        self.planner = SkillPlanner(load_skill(t.skill), PlannerConfig(dt=t.dt, speed=t.speed, chunk_len=t.chunk_len,
                                                                       d7=self.cfg.control.d7))
        self.detail["fit_ms"] = round((time.perf_counter() - t0) * 1e3, 1)
        self.plan = None
        self.q_now: np.ndarray | None = None
        self.task_stamp = None
        self.plans = 0

    # ----------------------------------------------------------------------------- messages
    def on_message(self, msg) -> None:
        if msg.topic == "control/state":
            self.q_now = np.array(msg.arrays["q_cmd"], dtype=np.float64)
            return
        stamp = {"src": msg.header["src"], "topic": msg.topic, "seq": msg.header["seq"],
                 "stamp_ns": msg.header["stamp_ns"]}
        try:
            self._plan(msg, stamp)
        except (PlanError, ValueError, KeyError, TypeError) as exc:
            reason = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
            self.pub.publish("trajectory/error", {"reason": reason}, derived=[stamp])

    def _pose(self, msg, key):
        v = msg.arrays.get(key)
        if v is None:
            v = msg.header.get(key)
        if v is None:
            return None
        v = np.asarray(v, dtype=np.float64)
        if v.shape != (7,) or not np.all(np.isfinite(v)):
            raise ValueError(f"task.{key} must be 7 finite numbers [x, y, z, qw, qx, qy, qz] (m), got {v.tolist()}")
        return task_frame_from_pose7(v)

    def _plan(self, msg, stamp) -> None:
        goal = self._pose(msg, "goal")
        if goal is None and "cup" in msg.header:
            cup = msg.header["cup"]
            if (not isinstance(cup, list) or len(cup) != 4
                    or not all(isinstance(v, (int, float)) and np.isfinite(v) for v in cup)):
                raise ValueError(f"task.cup must be 4 finite numbers [x, y, z (m), yaw (°)], got {cup!r}")
            goal = cup_frame(cup[0], cup[1], cup[2], np.radians(cup[3]))
        if goal is None:
            raise ValueError("task has neither 'goal' (the goal frame: x, y, z, qw, qx, qy, qz) nor 'cup' "
                             "(x, y, z, yaw°)")
        start = self._pose(msg, "start")
        t_start = time.monotonic() + self.cfg.trajectory.lead_s
        t0 = time.perf_counter()
        if self.plan is not None and t_start < self.plan.t0 + self.plan.dt * (len(self.plan.q) - 1):
            plan = self.planner.replan(self.plan, goal, t_start)
            kind = "replan"
        else:
            if self.q_now is None:
                raise ValueError("no control/state received yet: is the control node running?")
            plan = self.planner.plan(goal, start_pose=start, q_start=self.q_now, t_start=t_start)
            kind = "plan"
        plan_ms = (time.perf_counter() - t0) * 1e3
        self.plan, self.task_stamp = plan, stamp
        self.plans += 1
        self.detail["plans"] = self.plans
        p = self.pub.publish("trajectory/plan", {
            "kind": kind, "t0": plan.t0, "dt": plan.dt, "samples": len(plan.q), "plan_ms": plan_ms,
            "stages_ms": {k: float(v) for k, v in plan.plan_ms.items()}, "max_pos_err": float(plan.max_pos_err),
            "max_rot_err": float(plan.max_rot_err)}, {"q": plan.q, "pose": plan.pose}, derived=[stamp])
        self.plan_stamp = p
        self._publish_chunk(time.monotonic())

    # -------------------------------------------------------------------------------- ticks
    def _publish_chunk(self, now: float) -> None:
        c = chunks(self.plan, now, self.cfg.trajectory.chunk_len)
        if c is None:
            return
        t0, dt, q = c
        self.pub.publish("chunk", {"t0": t0, "dt": dt}, {"q": q}, derived=[self.task_stamp])

    def on_tick(self, now: float) -> None:
        if self.plan is None:
            return
        end = self.plan.t0 + self.plan.dt * (len(self.plan.q) - 1)
        if now > end:                     # the chunks published before `end` already cover the last sample
            self.pub.publish("trajectory/done", {"t_end": end}, derived=[self.task_stamp])
            self.plan = None
            return
        self._publish_chunk(now)
