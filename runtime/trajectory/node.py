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

Every time it publishes (plan ``t0``, chunk ``t0``) is on the control node's clock, estimated from the
stamps of ``control/state`` (:class:`~kinebridge.runtime.clock_sync.ControlClock`), so the node may
run on another machine (a ``tcp://`` endpoint with CurveZMQ keys) without synchronised clocks.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from kinebridge.runtime.bus import PRODUCER_IO_PRIORITY
from kinebridge.runtime.clock_sync import ControlClock
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


PENDING_TASK_TIMEOUT_S = 2.0    # a task waits this long for the first live control/state
TAIL_RESEND_S = 0.2             # the end of a plan, once sent, is not re-sent in a chunk shorter than this


class TrajectoryNode(Node):
    topics = ("task",)       # control/state is subscribed once the skill is fitted (see setup)

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
        # the arm's state from now on: subscribed before the fit, the fit's ~1 s of 200 Hz state would
        # queue up and be read back (stale, skipped by the clock) ahead of the first task
        self.sub.subscribe("control/state")
        self.plan = None
        self.q_now: np.ndarray | None = None
        self.clock = ControlClock()       # chunk times are on the control node's clock (maybe another machine)
        self.pending_task = None          # (task, local time): a task that came before any live control/state
        self.sent_to_end = False          # a chunk reaching the current plan's end has been published
        self.task_stamp = None
        self.plans = 0

    # ----------------------------------------------------------------------------- messages
    def on_message(self, msg) -> None:
        if msg.topic == "control/state":
            self.clock.observe(msg.header["stamp_ns"])
            self.q_now = np.array(msg.arrays["q_cmd"], dtype=np.float64)
            if self.pending_task is not None and self.clock.synced:
                self._task(self.pending_task[0])
                self.pending_task = None
            return
        if not self.clock.synced:       # the arm's state and clock are not known yet: plan once they are
            self.pending_task = (msg, time.monotonic())
            return
        self._task(msg)

    def _task(self, msg) -> None:
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
        t_start = self.clock.now() + self.cfg.trajectory.lead_s
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
        self._publish_chunk(self.clock.now())

    # -------------------------------------------------------------------------------- ticks
    def _publish_chunk(self, now: float, first: bool = True) -> None:
        plan = self.plan
        c = chunks(plan, now, self.cfg.trajectory.chunk_len)
        if c is None:
            return
        t0, dt, q = c
        ends_plan = t0 + dt * (len(q) - 1) >= plan.t_end - 1e-9
        # A chunk already sent reaches the plan's end: re-send it (in case one was lost) only while it
        # is long enough to arrive before it is over — a short tail would reach the control node stale.
        if not first and ends_plan and self.sent_to_end and plan.t_end - now < TAIL_RESEND_S:
            return
        self.sent_to_end = ends_plan
        self.pub.publish("chunk", {"t0": t0, "dt": dt}, {"q": q}, derived=[self.task_stamp])

    def on_tick(self, now: float) -> None:
        if self.pending_task is not None and now - self.pending_task[1] > PENDING_TASK_TIMEOUT_S:
            msg = self.pending_task[0]
            self.pending_task = None
            self.pub.publish("trajectory/error", {
                "reason": f"no live control/state within {PENDING_TASK_TIMEOUT_S:g} s of the task: is the control "
                          f"node running and reachable?"},
                derived=[{"src": msg.header["src"], "topic": msg.topic, "seq": msg.header["seq"],
                          "stamp_ns": msg.header["stamp_ns"]}])
        if self.plan is None:
            return
        now = self.clock.to_control(now)
        end = self.plan.t0 + self.plan.dt * (len(self.plan.q) - 1)
        if now > end:                     # the chunks published before `end` already cover the last sample
            self.pub.publish("trajectory/done", {"t_end": end}, derived=[self.task_stamp])
            self.plan = None
            return
        self._publish_chunk(now, first=False)
