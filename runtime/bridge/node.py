"""The bridge node (kind ``bridge``): ``planner/decision`` + the target's keypoints → a validated ``task``.

    [nodes.bridge]          # the table enables it; [bridge] configures it

It listens to

* ``planner/decision`` — what the decision layer chose: a *decided* decision names a skill and the
  target's candidate id (others — asking the user, failed — are counted and left alone);
* ``perception/keypoints`` (perception) and ``world/truth`` (the simulated world's ground truth) — the
  objects' 3D keypoints in the base frame, by id; ``[bridge] keypoints`` says which source counts
  (``any``: the newest that has the target);
* ``control/state`` — the arm's joints (the commanded setpoint ``q_cmd``, where the next plan starts).

For a decided decision it maps the skill (``[bridge] skills``: the planner's ``pour`` → ``pour_mug``),
takes the target's newest keypoints (at most ``max_age_s`` old) and the arm's state — waiting up to
``wait_s`` for either — and runs :class:`~kinebridge.runtime.bridge.core.Bridge`: calibration,
EndposeEstimate with the skill's interaction state from the arm's flange pose, each candidate checked
for IK reach along the demonstrated motion. Only then does it publish a ``task`` (the skill, ``start``
= the flange pose, ``goal`` = P_target, derived from the decision, the keypoints message and the
arm state). Anything missing or wrong — no keypoints for the target, a keypoint missing or not
finite, stale keypoints, no arm state, a target out of reach, a skill without an interaction state —
is published on ``bridge/error`` (a code and a sentence, derived from the decision) and no task is.
Heartbeat detail: counts, the last estimate (target, azimuth, α, EndposeEstimate's time), the sequence.

**Sub-tasks (CLAP).** A decision's ``subtasks`` run in order
(:class:`~kinebridge.runtime.bridge.sequence.Sequence`): consecutive sub-tasks with the same skill and
target are one step, one task; the next step's task is built (keypoints and arm state as they are
then) only once the trajectory node reports the previous one's ``trajectory/done`` (matched by task
id). Each sub-task's outcome is published on ``bridge/subtask`` — started (with the task id and where
its keypoints came from), done, failed (a bridge refusal, ``trajectory/error``, or no end within
``subtask_timeout_s``) or skipped (after a failure, or superseded by a newer decision). A failure stops
the sequence; nothing more is sent, so the arm holds where the last plan left it.

**Keypoint source** (``[bridge] keypoints``): ``auto`` (the default) takes perception's keypoints of the
target when they pass the bridge's checks and otherwise the simulated world's ground truth of that
object — the same id, or, for an id perception gave, the world object of the same class nearest to
where perception saw it (within ``match_m``); ``perception`` / ``world`` use only that source; ``any``
the newest that has the target. ``bridge/subtask.keypoints_source`` says which one a task used.
"""

from __future__ import annotations

import time

import numpy as np

from kinebridge.drivers.arm.factory import model_of
from kinebridge.runtime.bridge.core import Bridge, BridgeError
from kinebridge.runtime.bridge.sequence import Sequence
from kinebridge.runtime.bus import messages as M
from kinebridge.runtime.node import Node

__all__ = ["BridgeNode", "objects_by_id"]


def objects_by_id(objects) -> dict[str, dict]:
    """``{id: keypoints}`` from the ``objects`` of a ``perception/keypoints`` (``id``) or ``world/truth``
    (``name``) message; objects without an id or keypoints are skipped."""
    return {k: v[0] for k, v in _objects(objects).items()}


def _objects(objects) -> dict[str, tuple]:
    """``{id: (keypoints, class, position xy or None)}`` (see :func:`objects_by_id`)."""
    out = {}
    for o in objects or ():
        if not isinstance(o, dict):
            continue
        oid = o.get("id", o.get("name"))
        kp = o.get("keypoints")
        if isinstance(oid, str) and isinstance(kp, dict):
            pos = o.get("position") or kp.get("K_p2") or (o.get("pose") or [None])[:3]
            try:
                xy = np.asarray(pos, float)[:2] if pos is not None and len(pos) >= 2 else None
            except (TypeError, ValueError):
                xy = None
            out[oid] = (kp, o.get("class", o.get("kind")), xy)
    return out


class BridgeNode(Node):
    topics = (M.Decision.TOPIC, M.Keypoints.TOPIC, M.WorldTruth.TOPIC, M.ControlState.TOPIC, M.TaskDone.TOPIC,
              M.TaskError.TOPIC)
    tick_hz = 20.0

    def setup(self) -> None:
        self.bcfg = self.cfg.bridge
        self.bridge = Bridge(self.bcfg, model_of(self.cfg.arm).d7)
        self.sources: dict[str, tuple] = {}      # source → (received at, stamp, {id: keypoints})
        self.q: np.ndarray | None = None
        self.q_at = -np.inf
        self.q_stamp = None
        self.seq: Sequence | None = None          # the decision whose sub-tasks run
        self.seq_msg = None                       # … its message
        self.deadline = 0.0                       # the step waiting for keypoints / arm state waits until then
        self.task_stamps: dict = {}               # task id → the task message's stamp (derived of the reports)
        self.counts = {"decisions": 0, "tasks": 0, "errors": 0, "ignored": 0, "subtasks_done": 0,
                       "subtasks_failed": 0}
        loaded = []
        for name in sorted(set(self.bcfg.skills.values())):
            try:
                self.bridge.model(name)
                loaded.append(name)
            except BridgeError as exc:
                self.detail.setdefault("skill_errors", {})[name] = str(exc)[:300]
        self.detail["skills"] = loaded
        self.detail["counts"] = self.counts

    # ----------------------------------------------------------------------------- messages
    def on_message(self, msg) -> None:
        now = time.monotonic()
        if msg.topic == M.ControlState.TOPIC:
            self.q = np.array(msg.arrays["q_cmd"], np.float64)
            self.q_at, self.q_stamp = now, msg.stamp
            return
        if msg.topic == M.Keypoints.TOPIC:
            self.sources["perception"] = (now, msg.stamp, _objects(msg.body.objects))
        elif msg.topic == M.WorldTruth.TOPIC:
            self.sources["world"] = (now, msg.stamp, _objects(msg.body.objects))
        elif msg.topic == M.TaskDone.TOPIC:
            if self.seq is not None:
                self._report(self.seq.done(msg.body.task_id), [msg.stamp])
                self.deadline = now + self.bcfg.wait_s
        elif msg.topic == M.TaskError.TOPIC:
            if self.seq is not None:
                self._report(self.seq.failed(msg.body.task_id, msg.body.reason), [msg.stamp])
        elif msg.topic == M.Decision.TOPIC:
            self.counts["decisions"] += 1
            if msg.body.status != "decided":
                self.counts["ignored"] += 1
                return
            if self.seq is not None:
                self._report(self.seq.cancel(f"superseded by a newer decision ({msg.body.instruction[:200]!r})"))
            try:
                self.seq = Sequence(msg.body.skill, msg.body.target, msg.body.subtasks,
                                    timeout_s=self.bcfg.subtask_timeout_s)
            except ValueError as exc:
                self.seq = None
                self._error(msg, "not_decided", str(exc))
                return
            self.seq_msg = msg
            self.deadline = now + self.bcfg.wait_s
        self._work(now)

    def on_tick(self, now: float) -> None:
        if self.seq is not None:
            self._report(self.seq.tick(now))
        self._work(now)

    # ------------------------------------------------------------------------------- work
    def _keypoints(self, target: str, now: float):
        """(keypoints, stamp, source) of ``target`` from the configured source(s), or a BridgeError."""
        mode = self.bcfg.keypoints
        wanted = ("perception", "world") if mode in ("any", "auto") else (mode,)
        best, stale = None, None
        if mode == "auto":
            got = self._auto(target, now)
            if got is not None:
                return got
        for src in wanted:
            got = self.sources.get(src)
            if got is None or target not in got[2]:
                continue
            if now - got[0] > self.bcfg.max_age_s:
                stale = (src, now - got[0])
                continue
            if best is None or got[0] > best[0]:
                best = (*got, src)
        if best is not None:
            return best[2][target][0], best[1], best[3]
        if stale is not None:
            raise BridgeError("stale_keypoints", f"the newest keypoints of {target!r} ({stale[0]}) are {stale[1]:.1f} s "
                                                 f"old (> [bridge] max_age_s = {self.bcfg.max_age_s} s)")
        have = sorted({i for s in wanted if s in self.sources for i in self.sources[s][2]})
        topics = {"perception": M.Keypoints.TOPIC, "world": M.WorldTruth.TOPIC}
        raise BridgeError("no_target", f"no keypoints of {target!r} on {', '.join(topics[s] for s in wanted)} "
                                       f"(objects seen: {have or 'none'})")

    def _auto(self, target: str, now: float):
        """``auto``: perception's keypoints of ``target`` if fresh and valid, else the world's of the same
        object (by id, or matched by class and position to what perception saw); None if neither."""
        per, world = self.sources.get("perception"), self.sources.get("world")
        per = per if per is not None and now - per[0] <= self.bcfg.max_age_s else None
        world = world if world is not None and now - world[0] <= self.bcfg.max_age_s else None
        seen = per[2].get(target) if per is not None else None
        if seen is not None:
            try:
                self.bridge.check_keypoints(seen[0], target)
                return seen[0], per[1], "perception"
            except BridgeError:
                pass
        if world is None:
            return None
        if target in world[2]:
            return world[2][target][0], world[1], "world"
        if seen is None or seen[2] is None:
            return None
        best = None
        for oid, (kp, cls, xy) in world[2].items():
            if xy is None or (seen[1] and cls and cls != seen[1]):
                continue
            d = float(np.linalg.norm(xy - seen[2]))
            if d <= self.bcfg.match_m and (best is None or d < best[0]):
                best = (d, oid, kp)
        if best is None:
            return None
        return best[2], world[1], f"world ({best[1]}, {best[0] * 1e3:.0f} mm from where perception saw it)"

    def _work(self, now: float) -> None:
        seq = self.seq
        step = seq.next_step() if seq is not None else None
        if step is None:
            return
        try:
            self._decide(self.seq_msg, step, now)
        except BridgeError as exc:
            waitable = exc.code in ("no_target", "no_arm_state", "stale_keypoints")
            if waitable and now < self.deadline:
                return
            self._error(self.seq_msg, exc.code, str(exc), step)
            self._report(seq.refused(f"{exc.code}: {exc}"))

    def _decide(self, msg, step, now: float) -> None:
        d = msg.body
        skill = self.bridge.skill_for(step.skill)
        kp, kp_stamp, source = self._keypoints(step.target, now)
        if self.q is None or now - self.q_at > self.bcfg.max_age_s:
            raise BridgeError("no_arm_state", f"no {M.ControlState.TOPIC} from the control node in the last "
                                              f"{self.bcfg.max_age_s} s: the start pose is unknown")
        est = self.bridge.estimate(skill, kp, self.q, target=step.target)
        suffix = f":{step.number}" if len(self.seq.steps) > 1 else ""
        task_id = f"bridge:{d.dialogue_id or 'decision'}:{msg.stamp.seq}{suffix}"[-100:]
        stamp = self.pub.send(M.Task(skill=skill, goal=est.pose7("goal"), start=est.pose7("start"), task_id=task_id),
                              derived=[s for s in (msg.stamp, kp_stamp, self.q_stamp) if s is not None])
        self.task_stamps = {task_id: stamp}
        self.counts["tasks"] += 1
        self._report(self.seq.sent(task_id, now, source), [stamp])
        r = est.endpose
        self.detail["last"] = {"target": step.target, "skill": skill, "task_id": task_id, "keypoints": source,
                               "azimuth_deg": round(float(np.degrees(r.azimuth)), 2),
                               "alpha_deg": round(float(np.degrees(r.alpha)), 2),
                               "endpose_ms": round(est.ms["endpose"], 3), "refused": r.refused_feasible,
                               "goal": [round(x, 4) for x in est.pose7("goal")]}

    def _error(self, msg, code: str, reason: str, step=None) -> None:
        d = msg.body
        self.counts["errors"] += 1
        self.detail["last_error"] = f"{code}: {reason}"[:500]
        self.pub.send(M.BridgeError(code=code, reason=reason[:4000], target=step.target if step else d.target,
                                    skill=step.skill if step else d.skill, dialogue_id=d.dialogue_id),
                      derived=[msg.stamp])

    def _report(self, reports, derived=()) -> None:
        """Publish sub-task reports (``bridge/subtask``), derived from the decision (and ``derived``)."""
        if not reports:
            return
        d = self.seq_msg.body
        for r in reports:
            if r.status == "done":
                self.counts["subtasks_done"] += 1
            elif r.status == "failed":
                self.counts["subtasks_failed"] += 1
            task = self.task_stamps.get(r.task_id)
            der = [self.seq_msg.stamp, *([task] if task is not None and task not in derived else []), *derived]
            self.pub.send(M.SubtaskReport(index=r.index, count=r.count, step=r.step, status=r.status, skill=r.skill,
                                          target=r.target, description=(r.description or None) and r.description[:1000],
                                          reason=r.reason and r.reason[:4000], task_id=r.task_id,
                                          keypoints_source=r.keypoints_source and r.keypoints_source[:100],
                                          dialogue_id=d.dialogue_id), derived=der[:16])
        seq = self.seq
        self.detail["sequence"] = {"state": seq.state, "step": seq.current, "steps": len(seq.steps),
                                   "subtasks": seq.count, "last": f"{reports[-1].index}: {reports[-1].status}"}
