"""The bridge node executing a decision's sub-tasks in order (real ZeroMQ, the node in this process): the
second step's task goes out only after the trajectory node's trajectory/done for the first; every sub-task
is reported on bridge/subtask; a failing step stops the sequence; [bridge] keypoints = auto falls back
from unusable perception keypoints to the world's ground truth of the same object, and says so."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from kinebridge.kernels import rm75
from kinebridge.runtime.bridge.core import Bridge
from kinebridge.runtime.bus import messages as M
from kinebridge.runtime.bus.sockets import Publisher, Subscriber
from kinebridge.runtime.config import RuntimeConfig, load_config
from tests.runtime.bridge.test_bridge_node import Q0, mug_kp

A, B = mug_kp(0.33, 0.06), mug_kp(0.30, -0.05)
FAR = mug_kp(0.62, 0.1)


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    from kinebridge.runtime.node import node_class

    tmp = tmp_path_factory.mktemp("bridge_seq")
    data = load_config(None).model_dump()
    data["bus"]["ipc_dir"] = str(tmp / "bus")
    data["nodes"] = {"bridge": {}, "trajectory": {}}        # the trajectory node is played by this test
    data["supervisor"]["heartbeat_hz"] = 20.0
    data["bridge"].update(wait_s=0.3, max_age_s=30.0)
    cfg = RuntimeConfig.model_validate(data)
    (tmp / "bus").mkdir(exist_ok=True)
    sup = Publisher(cfg.endpoint("supervisor"), "supervisor")
    traj = Publisher(cfg.endpoint("trajectory"), "trajectory")
    n = node_class("bridge")("bridge", cfg)
    th = threading.Thread(target=n.run, daemon=True)
    th.start()
    out = Subscriber([cfg.endpoint("bridge")], (M.Task.TOPIC, M.BridgeError.TOPIC, M.SubtaskReport.TOPIC))
    end = time.monotonic() + 120
    while n.status != "ready" and time.monotonic() < end:
        time.sleep(0.05)
    assert n.status == "ready", n.detail
    time.sleep(0.3)                                          # slow joiners
    yield n, sup, traj, out
    n.stop()
    th.join(10)
    for s in (sup, traj, out):
        s.close()


def _until(out, pred, seconds=10.0):
    """Messages received until one satisfies ``pred`` (included), or the time is up."""
    got, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        m = out.recv(50)
        if m is not None:
            got.append(m)
            if pred(m):
                break
    return got


def _world(sup, objects):
    sup.send(M.ControlState(t=0.0, tick=1, sent=True, starved=0, held=0, at_rest=True), {"q_cmd": Q0, "q": Q0})
    sup.send(M.WorldTruth(world_time=1.0, flange=[0.3, -0.18, 0.26, 0.0, 1.0, 0.0, 0.0], following=True,
                          objects=[{"name": k, "kind": "mug", "class": "mug", "pose": [*v["K_p2"], 1, 0, 0, 0],
                                    "keypoints": v} for k, v in objects.items()]), {"q": Q0})
    time.sleep(0.15)


def _sub(target, desc):
    return {"skill": "pour", "target": target, "description": desc,
            "keypoints": [{"object": target, "keypoint": "K_i", "phrase": f"rim of {target}"}]}


def _decide(sup, subtasks, dialogue):
    sup.send(M.Decision(instruction="pour into a then into b", status="decided", skill="pour",
                        target=subtasks[0]["target"], subtasks=subtasks, planner="test", dialogue_id=dialogue))


def _reports(msgs):
    return [(m.body.index, m.body.status) for m in msgs if m.topic == M.SubtaskReport.TOPIC]


def test_subtasks_run_in_order_each_after_the_previous_tasks_end(node):
    n, sup, traj, out = node
    _world(sup, {"a": A, "b": B})
    _decide(sup, [_sub("a", "rim over a"), _sub("a", "tilt over a"), _sub("b", "rim over b"), _sub("b", "tilt over b")],
            "s1")
    got = _until(out, lambda m: m.topic == M.SubtaskReport.TOPIC and m.body.index == 1)
    tasks = [m for m in got if m.topic == M.Task.TOPIC]
    assert len(tasks) == 1 and tasks[0].body.task_id.endswith(":0"), [m.body for m in got]
    np.testing.assert_allclose(tasks[0].body.goal, Bridge().estimate("pour_mug", A, Q0).pose7("goal"), atol=1e-9)
    assert _reports(got) == [(0, "started"), (1, "started")]
    first = [m for m in got if m.topic == M.SubtaskReport.TOPIC][0].body
    assert (first.count, first.step, first.target, first.keypoints_source, first.task_id) == \
        (4, 0, "a", "world", tasks[0].body.task_id)
    # the second step waits for the first task's end: nothing while the trajectory node is silent,
    # nor for the end of some other task
    traj.send(M.TaskDone(t_end=1.0, task_id="someone-else"))
    assert [m for m in _until(out, lambda m: False, 1.5) if m.topic == M.Task.TOPIC] == []
    traj.send(M.TaskDone(t_end=2.0, task_id=tasks[0].body.task_id))
    got = _until(out, lambda m: m.topic == M.SubtaskReport.TOPIC and m.body.index == 3)
    assert _reports(got) == [(0, "done"), (1, "done"), (2, "started"), (3, "started")]
    second = [m for m in got if m.topic == M.Task.TOPIC]
    assert len(second) == 1 and second[0].body.task_id.endswith(":1")
    np.testing.assert_allclose(second[0].body.goal, Bridge().estimate("pour_mug", B, Q0).pose7("goal"), atol=1e-9)
    # the reports are derived from the decision and the task they were executed as
    traj.send(M.TaskDone(t_end=3.0, task_id=second[0].body.task_id))
    got = _until(out, lambda m: m.topic == M.SubtaskReport.TOPIC and m.body.index == 3)
    assert _reports(got) == [(2, "done"), (3, "done")]
    topics = {d.topic for d in got[-1].derived}
    assert {M.Decision.TOPIC, M.Task.TOPIC, M.TaskDone.TOPIC} <= topics
    assert n.detail["sequence"]["state"] == "done"


def test_a_failing_subtask_stops_the_sequence_with_a_clear_report(node):
    n, sup, traj, out = node
    _world(sup, {"a": A, "far": FAR, "b": B})
    _decide(sup, [_sub("a", "pour a"), _sub("far", "pour far"), _sub("b", "pour b")], "s2")
    got = _until(out, lambda m: m.topic == M.Task.TOPIC)
    task = got[-1].body
    traj.send(M.TaskError(reason="IK failed at t = 1.2 s", task_id="not-this-one"))
    traj.send(M.TaskDone(t_end=2.0, task_id=task.task_id))
    got = _until(out, lambda m: m.topic == M.SubtaskReport.TOPIC and m.body.index == 2)
    assert _reports(got) == [(0, "started"), (0, "done"), (1, "failed"), (2, "skipped")] or \
        _reports(got) == [(0, "done"), (1, "failed"), (2, "skipped")]
    rep = {m.body.index: m.body for m in got if m.topic == M.SubtaskReport.TOPIC}
    assert "out_of_reach" in rep[1].reason and rep[1].task_id is None
    assert "sub-task 1" in rep[2].reason and "far" in rep[2].reason
    errs = [m.body for m in got if m.topic == M.BridgeError.TOPIC]
    assert len(errs) == 1 and errs[0].code == "out_of_reach" and errs[0].target == "far"
    assert [m for m in got if m.topic == M.Task.TOPIC] == []              # nothing more was sent: the arm holds
    assert [m for m in _until(out, lambda m: False, 1.0) if m.topic == M.Task.TOPIC] == []
    # a trajectory/error for the running task fails its sub-task likewise
    _decide(sup, [_sub("a", "pour a"), _sub("b", "pour b")], "s3")
    got = _until(out, lambda m: m.topic == M.Task.TOPIC)
    traj.send(M.TaskError(reason="IK failed at t = 1.2 s", task_id=got[-1].body.task_id))
    got = _until(out, lambda m: m.topic == M.SubtaskReport.TOPIC and m.body.index == 1)
    rep = {m.body.index: m.body for m in got if m.topic == M.SubtaskReport.TOPIC}
    assert rep[0].status == "failed" and "IK failed at t = 1.2 s" in rep[0].reason and rep[1].status == "skipped"


def test_auto_keypoints_fall_back_from_unusable_perception_to_the_matched_world_object(node):
    n, sup, traj, out = node
    assert n.bcfg.keypoints == "auto"
    _world(sup, {"mug0": A})
    seen = {k: v for k, v in A.items() if k != "K_p2"}                # perception lost the base: unusable
    sup.send(M.Keypoints(camera="cam", objects=[{"id": "mug-1", "class": "mug", "keypoints": seen,
                                                 "position": [A["K_p2"][0] + 0.02, A["K_p2"][1], 0.0]}]))
    time.sleep(0.15)
    _decide(sup, [_sub("mug-1", "pour into mug-1")], "s4")
    got = _until(out, lambda m: m.topic == M.SubtaskReport.TOPIC)
    tasks = [m for m in got if m.topic == M.Task.TOPIC]
    assert tasks, [m.body for m in got]
    np.testing.assert_allclose(tasks[0].body.goal, Bridge().estimate("pour_mug", A, Q0).pose7("goal"), atol=1e-9)
    src = got[-1].body.keypoints_source
    assert src.startswith("world (mug0") and "20 mm" in src
    # usable perception keypoints are used as they are
    B2 = {k: (np.asarray(v) + [0.01, 0.0, 0.0]).tolist() for k, v in B.items()}
    sup.send(M.Keypoints(camera="cam", objects=[{"id": "mug-2", "class": "mug", "keypoints": B2}]))
    time.sleep(0.15)
    _decide(sup, [_sub("mug-2", "pour into mug-2")], "s5")
    got = _until(out, lambda m: m.topic == M.SubtaskReport.TOPIC and m.body.status == "started")
    skipped = [m.body for m in got if m.topic == M.SubtaskReport.TOPIC and m.body.status == "skipped"]
    assert [(s.target, "superseded" in s.reason) for s in skipped] == [("mug-1", True)]   # the newer decision wins
    assert got[-1].body.keypoints_source == "perception" and got[-1].body.target == "mug-2"
    task = [m for m in got if m.topic == M.Task.TOPIC][0].body
    np.testing.assert_allclose(task.goal, Bridge().estimate("pour_mug", B2, Q0).pose7("goal"), atol=1e-9)
