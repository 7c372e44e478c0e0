"""``kinebridge run --instruction "…"``: the whole VL-MP pipeline on the simulated world, scored by it.

:func:`enable_in_config` turns a config dump into the end-to-end runtime: the world node (the MuJoCo
scene, its synthetic camera, ``world/truth`` with the pour's counts), perception (unless the keypoint
source is ``world``), the planner, the bridge, next to the control, trajectory and ingress nodes the
config has. ``keypoints`` chooses where the decision's candidates and the bridge's keypoints come from
(``[planner] candidates`` and ``[bridge] keypoints``):

* ``auto`` (default): perception's when usable — the planner decides on perception's candidates
  when its latest message has an object with keypoints, the bridge takes perception's keypoints of
  the target when they pass its checks —, else the world's ground truth (the same object: by id, or
  matched by class and position);
* ``perception``: perception's only (a weak model then fails the run, saying why);
* ``world``: the world's ground truth only (no perception node).

:func:`execute` runs one instruction on a launched runtime: wait until candidates flow (world truth,
and perception's first message when it runs), start counting a new pour (``world/truth_request``
``reset_pour``), send the instruction (``planner/instruction``), follow the decision (the world then
counts the pour into the decided target when that is one of its objects and not the scene's target)
and every sub-task on ``bridge/subtask`` until the sequence ends, let the water settle, and ask the
world for its final truth — the pour score (particles in the target, spilt, in flight, collisions,
VL-MP's success; ``world.target`` names the object scored). It
returns the summary's ``instruction`` section; which source the decision and each task used is in it.
"""

from __future__ import annotations

import time
import uuid

from kinebridge.runtime.bus import messages as M

__all__ = ["KEYPOINT_SOURCES", "enable_in_config", "execute", "LISTEN"]

KEYPOINT_SOURCES = ("auto", "perception", "world")
LISTEN = tuple(b.TOPIC for b in (M.Task, M.Decision, M.SubtaskReport, M.BridgeError, M.WorldTruth, M.Keypoints))
FINAL = ("done", "failed", "skipped")


def enable_in_config(data: dict, keypoints: str = "auto") -> dict:
    """The end-to-end runtime on a config dump ``data`` (module docstring); nodes the config already has
    (by kind) are kept as configured, missing ones added."""
    if keypoints not in KEYPOINT_SOURCES:
        raise ValueError(f"--keypoints {keypoints!r}: choose one of {list(KEYPOINT_SOURCES)}")
    if not data.get("arm", {}).get("simulate", True):
        raise ValueError("--instruction runs on the simulated world: the world scores the pour against the arm it "
                         "simulates; with arm.simulate = false use `kinebridge task --instruction` on a daemon")
    nodes = data.setdefault("nodes", {})
    kinds = {s.get("kind") or name for name, s in nodes.items() if s.get("enabled", True)}
    want = ["control", "trajectory", "ingress", "world", "planner", "bridge"] + \
        ([] if keypoints == "world" else ["perception"])
    for kind in want:
        if kind not in kinds:
            nodes[kind if kind not in nodes else f"{kind}_node"] = {"kind": kind, "critical": kind == "control",
                                                                    "enabled": True}
    if keypoints == "world":
        for spec in nodes.values():
            if spec.get("kind") == "perception":
                spec["enabled"] = False
    arm = data.setdefault("arm", {})
    if arm.get("sim_initial_deg") is None:
        # the simulated arm starts where the world's held mug is carried (its water at rest in it), as the
        # pour skill's demonstrations did
        import numpy as np

        from kinebridge.drivers.world.spec import ArmSpec
        from kinebridge.drivers.world.tool import carry_posture
        from kinebridge.kernels import rm75

        spec = ArmSpec.from_model(rm75.RM75Model.for_variant(arm.get("model", "RM75-B")))
        arm["sim_initial_deg"] = [float(v) for v in np.degrees(carry_posture(spec))]
    # the trajectory node fits the bridge's skill as it sets up (fitting it on the first task would stall
    # the node past its heartbeat while the task waits)
    skills = (data.get("bridge") or {}).get("skills") or {"pour": "pour_mug"}
    data.setdefault("trajectory", {})["skill"] = skills.get("pour", next(iter(skills.values())))
    data.setdefault("planner", {})["candidates"] = keypoints
    data.setdefault("bridge", {})["keypoints"] = keypoints
    return data


def _decision(m) -> dict:
    b: M.Decision = m.body
    src = next((d.topic for d in m.derived if d.topic in (M.Keypoints.TOPIC, M.WorldTruth.TOPIC)), None)
    out = {"status": b.status, "skill": b.skill, "target": b.target, "question": b.question, "reason": b.reason,
           "planner": b.planner, "standard_instruction": b.standard_instruction, "candidates": list(b.candidates),
           "candidates_from": {M.Keypoints.TOPIC: "perception", M.WorldTruth.TOPIC: "world"}.get(src),
           "subtasks": [{"skill": s.get("skill"), "target": s.get("target"), "description": s.get("description")}
                        for s in b.subtasks], "latency_ms": b.latency_ms}
    return out


def _score(truth) -> dict | None:
    if truth is None:
        return None
    b: M.WorldTruth = truth.body
    p = b.pour or {}
    out = {"target": b.target, "seed": b.seed,
           **{k: p.get(k) for k in ("total", "in_target", "in_source", "in_other", "spilt", "in_flight", "collisions",
                                    "collided_with", "target_moved_m", "success")}}
    out["world_time_s"] = round(b.world_time, 3)
    return out


def execute(sup, text: str, *, timeout_s: float, settle_s: float = 2.0, perception: bool = True,
            wait_candidates_s: float = 20.0, should_stop=lambda: False, log=print) -> dict:
    """One instruction through the launched runtime ``sup`` (module docstring); the summary's section."""
    out: dict = {"text": text, "decision": None, "subtasks": [], "world": None}
    t_begin = time.monotonic()

    def seen(topic):
        return any(m.topic == topic for m in sup.messages)

    # candidates flowing: the world's truth, and perception's first message when it runs
    end = time.monotonic() + wait_candidates_s
    while time.monotonic() < end and not should_stop() and not sup.failed:
        sup.poll(20)
        if seen(M.WorldTruth.TOPIC) and (not perception or seen(M.Keypoints.TOPIC)):
            break
    per = [m for m in sup.messages if m.topic == M.Keypoints.TOPIC]
    out["perception"] = None if not perception else {
        "messages": len(per), "objects": len(per[-1].body.objects) if per else 0,
        "reason": per[-1].body.reason if per else "no perception/keypoints before the instruction"}
    sup.send(M.TruthRequest(request_id="reset", reset_pour=True))
    _wait(sup, lambda: any(m.topic == M.WorldTruth.TOPIC and m.body.request_id == "reset" for m in sup.messages), 3.0)
    dialogue = "run-" + uuid.uuid4().hex[:8]
    stamp = sup.send(M.Instruction(text=text, dialogue_id=dialogue))
    log(f"instruction sent: {text!r}")
    deadline = time.monotonic() + timeout_s
    decision = None
    reports: dict[int, M.SubtaskReport] = {}
    cursor = 0
    while time.monotonic() < deadline and not should_stop() and not sup.failed:
        sup.poll(20)
        new, cursor = sup.messages[cursor:], len(sup.messages)
        for m in new:
            if decision is None and m.topic == M.Decision.TOPIC and any(
                    d.stamp_ns == stamp.stamp_ns and d.topic == M.Instruction.TOPIC for d in m.derived):
                decision = m
                b = decision.body
                log(f"decision ({b.planner}, {b.latency_ms} ms): {b.status} "
                    + (f"{b.skill} → {b.target}, {len(b.subtasks)} sub-task(s)" if b.status == "decided" else
                       (b.question or b.reason or "")))
                truth = next((t for t in reversed(sup.messages) if t.topic == M.WorldTruth.TOPIC), None)
                names = {o.get("name") for o in truth.body.objects} if truth is not None else set()
                if b.status == "decided" and b.target in names and b.target != truth.body.target:
                    # the world counts the pour into the decided target (the arm is only starting to move)
                    sup.send(M.TruthRequest(request_id="reset-target", reset_pour=True, target=b.target))
            elif decision is not None and m.topic == M.SubtaskReport.TOPIC and any(
                    d.stamp_ns == decision.stamp.stamp_ns for d in m.derived):
                r = m.body
                reports[r.index] = r
                log(f"sub-task {r.index + 1}/{r.count} {r.status}: {r.skill} on {r.target}"
                    + (f" (keypoints: {r.keypoints_source})" if r.status == "started" else "")
                    + (f" — {r.reason}" if r.reason else ""))
        if decision is not None and decision.body.status != "decided":
            break
        count = next(iter(reports.values())).count if reports else None
        if count is not None and len(reports) == count and all(r.status in FINAL for r in reports.values()):
            break
    sup.messages[:] = [m for m in sup.messages if m.topic != M.Keypoints.TOPIC]     # (only their count matters)
    out["elapsed_s"] = round(time.monotonic() - t_begin, 3)
    if decision is not None:
        out["decision"] = _decision(decision)
    out["subtasks"] = [{"index": r.index, "skill": r.skill, "target": r.target, "description": r.description,
                        "status": r.status, "reason": r.reason, "task_id": r.task_id,
                        "keypoints_source": r.keypoints_source} for _, r in sorted(reports.items())]
    out["bridge_errors"] = [{"code": m.body.code, "reason": m.body.reason} for m in sup.messages
                            if m.topic == M.BridgeError.TOPIC and decision is not None
                            and any(d.stamp_ns == decision.stamp.stamp_ns for d in m.derived)]
    srcs = sorted({r["keypoints_source"] for r in out["subtasks"] if r["keypoints_source"]})
    out["keypoints_source"] = srcs[0] if len(srcs) == 1 else (srcs or None)
    n = len(out["subtasks"])
    out["completed"] = bool(n) and all(r["status"] == "done" for r in out["subtasks"])
    if decision is None:
        out["error"] = f"no planner/decision within {timeout_s:g} s"
    elif decision.body.status != "decided":
        out["error"] = f"the planner {'asks' if decision.body.status == 'ask' else 'failed'}: " + \
            (decision.body.question or decision.body.reason or "")
    elif not out["completed"]:
        bad = [r for r in out["subtasks"] if r["status"] == "failed"]
        out["error"] = (f"sub-task {bad[0]['index']} failed: {bad[0]['reason']}" if bad else
                        f"the sub-tasks did not end within {timeout_s:g} s")
    # the world's score: the water settles (and the arm comes to rest) first
    if out["subtasks"] and any(r["status"] == "started" or r["task_id"] for r in out["subtasks"]):
        _settle(sup, settle_s, should_stop)
    sup.send(M.TruthRequest(request_id="final"))
    _wait(sup, lambda: any(m.topic == M.WorldTruth.TOPIC and m.body.request_id == "final" for m in sup.messages), 3.0)
    final = next((m for m in reversed(sup.messages) if m.topic == M.WorldTruth.TOPIC
                  and m.body.request_id == "final"), None)
    out["world"] = _score(final)
    # the tasks the bridge sent, for the per-task stage figures
    out["task_stamps"] = [m.stamp for m in sup.messages if m.topic == M.Task.TOPIC
                          and any(d.stamp_ns == getattr(decision, "stamp", stamp).stamp_ns for d in m.derived)]
    sup.messages[:] = [m for m in sup.messages if m.topic != M.WorldTruth.TOPIC or m is final]
    return out


def _wait(sup, pred, seconds: float) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        sup.poll(20)
        if pred():
            return True
    return False


def _settle(sup, seconds: float, should_stop) -> None:
    """Until the arm is at rest, then ``seconds`` more (the water runs out and settles)."""
    end = time.monotonic() + 10.0
    while time.monotonic() < end and not should_stop():
        sup.poll(20)
        st = next((m for m in reversed(sup.messages[-20:]) if m.topic == M.ControlState.TOPIC), None)
        if st is not None and st.body.at_rest:
            break
    end = time.monotonic() + seconds
    while time.monotonic() < end and not should_stop():
        sup.poll(20)
