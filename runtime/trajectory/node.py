"""The trajectory node: task parameters in, timestamped joint chunks out.

It loads its default skill (``trajectory.skill``: a bundled skill or a skill file; others on first
use), fits LFE-KMP once and then, for every ``task`` message — a skill and its goal frame as a
7-vector ``goal`` = x, y, z, qw, qx, qy, qz (optionally the start frame as ``start``), or the skill's
task parameters ``params`` which the skill registry resolves into frames (the pour skill:
``{"cup": [x, y, z (m), yaw (°)]}``):

1. generalises the skill to the new task frames (LFE-KMP, position and orientation) and converts
   it to joint space with the RM75 IK kernel, starting from the arm's current setpoint (taken from
   ``control/state``) — :class:`~kinebridge.runtime.trajectory.planner.SkillPlanner`;
2. publishes ``trajectory/plan`` (the whole joint and Cartesian plan, stage timings) and then, at
   ``trajectory.publish_hz``, the ``chunk`` covering the next ``chunk_len`` samples;
3. when a new task arrives mid-motion, re-plans from the state the current plan reaches
   ``lead_s`` from now, so the new chunks continue the motion; the control loop's seam blend keeps
   position and velocity continuous across the switch;
4. plans within the joint limits the control loop enforces, as the control node announces them on
   ``control/limits`` (until then: the configured arm model's);
5. publishes ``trajectory/done`` when the plan's last sample is due, or ``trajectory/error`` with the
   reason when a goal cannot be planned (unreachable, too fast) — the arm then simply finishes or
   holds what it had.

Every time it publishes (plan ``t0``, chunk ``t0``) is on the control node's clock, estimated from the
stamps of ``control/state`` (:class:`~kinebridge.runtime.trajectory.clock_sync.ControlClock`), so the node may
run on another machine (a ``tcp://`` endpoint with CurveZMQ keys) without synchronised clocks.
"""

from __future__ import annotations

import time

import numpy as np

from kinebridge.drivers.arm.factory import model_of
from kinebridge.drivers.arm.limits import JointLimits
from kinebridge.runtime.bus import messages as M
from kinebridge.runtime.bus.sockets import PRODUCER_IO_PRIORITY
from kinebridge.runtime.node import Node
from kinebridge.runtime.skills import registry as skills
from kinebridge.runtime.skills.format import task_frame_from_pose7
from kinebridge.runtime.trajectory.clock_sync import ControlClock
from kinebridge.runtime.trajectory.planner import PlanError, SkillPlanner, chunks

__all__ = ["TrajectoryNode"]

PENDING_TASK_TIMEOUT_S = 2.0    # a task waits this long for the first live control/state
TAIL_RESEND_S = 0.2             # the end of a plan, once sent, is not re-sent in a chunk shorter than this


class TrajectoryNode(Node):
    topics = (M.Task.TOPIC,)  # control/state and control/limits are subscribed once the skill is fitted

    def io_priority(self, cfg) -> int:
        # chunks leave at once even while this node's planning (and the recorder) keep the other CPU
        # busy: ZeroMQ's I/O thread gets a low SCHED_FIFO priority, far below the control loop's
        return PRODUCER_IO_PRIORITY if cfg.control.realtime.priority > 0 else 0

    def setup(self) -> None:
        t = self.cfg.trajectory
        self.tick_hz = t.publish_hz
        self.arm = model_of(self.cfg.arm)      # until the control node announces the limits it enforces
        self.planners: dict[str, SkillPlanner] = {}
        t0 = time.perf_counter()
        self._planner(t.skill)
        self.detail["fit_ms"] = round((time.perf_counter() - t0) * 1e3, 1)
        # the arm's state from now on: subscribed before the fit, the fit's ~1 s of 200 Hz state would
        # queue up and be read back (stale, skipped by the clock) ahead of the first task
        self.sub.subscribe(M.ControlState.TOPIC)
        self.sub.subscribe(M.ArmLimitsMsg.TOPIC)
        self.sub.subscribe(M.ControlCommand.TOPIC)
        self.plan = None
        self.q_now: np.ndarray | None = None
        self.clock = ControlClock()       # chunk times are on the control node's clock (maybe another machine)
        self.pending_task = None          # (task, local time): a task that came before any live control/state
        self.sent_to_end = False          # a chunk reaching the current plan's end has been published
        self.task_stamp = None
        self.task_id = None
        self.plan_skill = None
        self.latched = None               # the control loop's latch, from control/state
        self.plans = 0
        # the task in progress survives a restart of this node: kept in the run directory until it ends
        self.task_file = (self.run_dir / "state" / f"{self.name}.task.json") if self.run_dir else None
        resumed = _load_task(self.task_file) if self.task_file else None
        if resumed is not None:
            self.pending_task = (resumed, time.monotonic() + PENDING_TASK_TIMEOUT_S)   # waits for live state
            self.detail["resuming"] = resumed.body.task_id or "a task"

    def _planner(self, spec: str) -> SkillPlanner:
        """The fitted planner of skill ``spec`` (fitted on first use, then kept)."""
        p = self.planners.get(spec)
        if p is None:
            p = self.planners[spec] = SkillPlanner(skills.load_skill(spec), self.cfg.trajectory, self.arm)
        return p

    # ----------------------------------------------------------------------------- messages
    def on_message(self, msg) -> None:
        if msg.topic == M.ControlState.TOPIC:
            self.clock.observe(msg.stamp.stamp_ns)
            self.q_now = np.array(msg.arrays["q_cmd"], dtype=np.float64)
            self.latched = msg.body.latched
            if self.latched and self.plan is not None:   # e-stopped or held: this plan will not run
                self._abandon(f"the arm is held ({self.latched})")
            if self.pending_task is not None and self.clock.synced:
                self._task(self.pending_task[0])
                self.pending_task = None
            return
        if msg.topic == M.ArmLimitsMsg.TOPIC:
            self._limits(msg)
            return
        if msg.topic == M.ControlCommand.TOPIC:
            if msg.body.action == "hold" and self.plan is not None:
                self._abandon(f"stopped by the operator ({msg.body.reason})")
            return
        if not self.clock.synced:       # the arm's state and clock are not known yet: plan once they are
            self.pending_task = (msg, time.monotonic())
            return
        self._task(msg)

    def _limits(self, msg) -> None:
        a = msg.arrays
        try:
            lim = JointLimits(a["q_min"], a["q_max"], a["qd_max"], a["qdd_max"])
        except ValueError as exc:
            self.detail["limits_error"] = str(exc)
            return
        if msg.body.model != self.arm.name:
            self.detail["limits_error"] = (f"the control node drives an {msg.body.model}, this node is configured "
                                           f"for an {self.arm.name}")
            return
        cur = self.arm.limits
        if all(np.array_equal(getattr(cur, k), getattr(lim, k)) for k in ("q_min", "q_max", "qd_max", "qdd_max")):
            return
        self.arm = self.arm.with_limits(lim)
        for p in self.planners.values():
            p.set_limits(lim)
        self.detail["limits"] = "from the control node"

    def _abandon(self, reason: str) -> None:
        """Drop the current plan and say why (the task did not complete)."""
        self.pub.send(M.TaskError(reason=reason[:4000], task_id=self.task_id), derived=[self.task_stamp])
        self.plan = None
        if self.task_file:
            self.task_file.unlink(missing_ok=True)

    def _task(self, msg) -> None:
        self.task_id = msg.body.task_id
        try:
            self._plan(msg)
        except (PlanError, ValueError) as exc:
            self.pub.send(M.TaskError(reason=str(exc)[:4000], task_id=msg.body.task_id), derived=[msg.stamp])
            return
        if self.task_file:
            _save_task(self.task_file, msg)
        self.detail.pop("resuming", None)

    def _goal(self, task: M.Task, skill: str):
        if task.goal is not None:
            return task_frame_from_pose7(_pose7(task.goal, "goal"))
        if task.params:
            return skills.resolve_goal(skill, task.params)
        raise ValueError("task has neither 'goal' (the goal frame: x, y, z, qw, qx, qy, qz) nor 'params' "
                         "(the skill's task parameters, e.g. pour: {'cup': [x, y, z, yaw°]})")

    def _plan(self, msg) -> None:
        task: M.Task = msg.body
        if self.latched:
            raise ValueError(f"the arm is held ({self.latched}); `kinebridge clear` resumes")
        spec = task.skill or self.cfg.trajectory.skill
        skills.check_skill_spec(spec, "task.skill")
        planner = self._planner(spec)
        goal = self._goal(task, spec)
        start = task_frame_from_pose7(_pose7(task.start, "start")) if task.start is not None else None
        t_start = self.clock.now() + self.cfg.trajectory.lead_s
        t0 = time.perf_counter()
        moving = self.plan is not None and t_start < self.plan.t_end
        if moving and self.plan_skill == spec:
            plan = planner.replan(self.plan, goal, t_start)
            kind = "replan"
        else:
            if self.q_now is None:
                raise ValueError("no control/state received yet: is the control node running?")
            # another skill mid-motion starts from where the current plan is; the loop's seam blend joins them
            q_from = self.plan.q_at(t_start) if moving else self.q_now
            plan = planner.plan(goal, start_pose=start, q_start=q_from, t_start=t_start)
            kind = "plan"
        plan_ms = (time.perf_counter() - t0) * 1e3
        self.plan, self.task_stamp, self.plan_skill = plan, msg.stamp, spec
        self.plans += 1
        self.detail["plans"] = self.plans
        self.pub.send(M.PlanMsg(kind=kind, t0=plan.t0, dt=plan.dt, samples=len(plan.q), plan_ms=plan_ms,
                                stages_ms={k: float(v) for k, v in plan.plan_ms.items()},
                                max_pos_err=float(plan.max_pos_err), max_rot_err=float(plan.max_rot_err),
                                skill=spec, speed=float(plan.speed), task_id=task.task_id),
                      {"q": plan.q, "pose": plan.pose}, derived=[msg.stamp])
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
        self.pub.send(M.Chunk(t0=t0, dt=dt), {"q": q}, derived=[self.task_stamp])

    def on_tick(self, now: float) -> None:
        if self.pending_task is not None and now - self.pending_task[1] > PENDING_TASK_TIMEOUT_S:
            msg = self.pending_task[0]
            self.pending_task = None
            self.pub.send(M.TaskError(
                reason=f"no live control/state within {PENDING_TASK_TIMEOUT_S:g} s of the task: is the control "
                       f"node running and reachable?", task_id=msg.body.task_id), derived=[msg.stamp])
        if self.plan is None:
            self.detail.pop("task", None)
            return
        now = self.clock.to_control(now)
        end = self.plan.t0 + self.plan.dt * (len(self.plan.q) - 1)
        if now > end:                     # the chunks published before `end` already cover the last sample
            self.pub.send(M.TaskDone(t_end=end, task_id=self.task_id), derived=[self.task_stamp])
            self.plan = None
            if self.task_file:
                self.task_file.unlink(missing_ok=True)
            return
        self.detail["task"] = {"task_id": self.task_id, "skill": self.plan_skill,
                               "progress": round(float(np.clip((now - self.plan.t0) / max(1e-9, end - self.plan.t0),
                                                               0, 1)), 3)}
        self._publish_chunk(now, first=False)


def _pose7(v, key: str) -> np.ndarray:
    a = np.asarray(v, dtype=np.float64)
    if a.shape != (7,) or not np.all(np.isfinite(a)):
        raise ValueError(f"task.{key} must be 7 finite numbers [x, y, z, qw, qx, qy, qz] (m), got {v!r}")
    n = np.linalg.norm(a[3:])
    if abs(n - 1.0) > 1e-3:
        raise ValueError(f"task.{key}: the quaternion [qw, qx, qy, qz] must have unit norm (got {n:.4f})")
    return a


def _save_task(path, msg) -> None:
    """Keep the task being executed (its body and stamp) so a restarted node resumes it."""
    import json
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"body": msg.body.header(), "stamp": msg.stamp.wire()}))
        tmp.replace(path)
    except OSError:
        pass


def _load_task(path):
    """The task a previous incarnation of this node was executing, as a received message, or None."""
    import json

    from kinebridge.runtime.bus.codec import Message
    try:
        d = json.loads(path.read_text())
        msg = Message(M.Task.TOPIC, {}, {})
        msg.body, msg.stamp = M.Task.model_validate(d["body"]), M.Stamp.model_validate(d["stamp"])
        return msg
    except (OSError, ValueError, KeyError, TypeError):
        return None
