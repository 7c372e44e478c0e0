"""The bridge node in this process against a raw publisher: a decided decision + the target's keypoints
(world/truth or perception/keypoints) + the arm's state → a task whose frames are the bridge's; a missing
target, a missing keypoint, a target out of reach or no arm state → bridge/error and no task; questions are
left alone."""

from __future__ import annotations

import math
import threading
import time

import numpy as np
import pytest

from kinebridge.kernels import rm75
from kinebridge.runtime.bridge.core import Bridge
from kinebridge.runtime.bus import messages as M
from kinebridge.runtime.bus.sockets import Publisher, Subscriber
from kinebridge.runtime.config import RuntimeConfig, load_config
from kinebridge.runtime.skills.pour_mug import CARRY_FLANGE

Q0 = rm75.ik(CARRY_FLANGE, rm75.Q_HOME).q


def mug_kp(x, y, r=0.04, h=0.1, yaw=1.4):
    c = np.array([x, y, 0.0])
    d = np.array([math.cos(yaw), math.sin(yaw), 0.0])
    return {"K_p1": (c + [0, 0, h]).tolist(), "K_p2": c.tolist(), "K_i": (c + [0, 0, h] - (r - 0.002) * d).tolist(),
            "K_b": (c + [0, 0, h / 2] + (r + 0.03) * d).tolist()}


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    from kinebridge.runtime.node import node_class

    tmp = tmp_path_factory.mktemp("bridge")
    data = load_config(None).model_dump()
    data["bus"]["ipc_dir"] = str(tmp / "bus")
    data["nodes"] = {"bridge": {}}
    data["supervisor"]["heartbeat_hz"] = 20.0
    data["bridge"].update(wait_s=0.3, max_age_s=5.0)
    cfg = RuntimeConfig.model_validate(data)
    (tmp / "bus").mkdir(exist_ok=True)
    sup = Publisher(cfg.endpoint("supervisor"), "supervisor")
    n = node_class("bridge")("bridge", cfg)
    th = threading.Thread(target=n.run, daemon=True)
    th.start()
    out = Subscriber([cfg.endpoint("bridge")], (M.Task.TOPIC, M.BridgeError.TOPIC))
    end = time.monotonic() + 120
    while n.status != "ready" and time.monotonic() < end:
        time.sleep(0.05)
    assert n.status == "ready", n.detail
    time.sleep(0.3)                                              # slow joiners
    yield n, sup, out
    n.stop()
    th.join(10)
    sup.close()
    out.close()


def _collect(out, seconds, n=1):
    got, end = [], time.monotonic() + seconds
    while time.monotonic() < end and len(got) < n:
        m = out.recv(50)
        if m is not None:
            got.append(m)
    return got


def _state(sup):
    sup.send(M.ControlState(t=0.0, tick=1, sent=True, starved=0, held=0, at_rest=True),
             {"q_cmd": Q0, "q": Q0})


def _decide(sup, target, status="decided", dialogue="d1"):
    sup.send(M.Decision(instruction="pour water into the mug", status=status, skill="pour" if status == "decided" else None,
                        target=target if status == "decided" else None, question="which?" if status == "ask" else None,
                        planner="test", dialogue_id=dialogue))


def test_a_decision_with_the_targets_keypoints_becomes_a_task_with_the_bridges_frames(node):
    n, sup, out = node
    kp = mug_kp(0.33, 0.06)
    _state(sup)
    sup.send(M.WorldTruth(world_time=1.0, target="mug1", flange=[0.3, -0.18, 0.26, 0.0, 1.0, 0.0, 0.0], following=True,
                          objects=[{"name": "mug1", "kind": "mug", "pose": [0.33, 0.06, 0, 1, 0, 0, 0], "keypoints": kp}]),
             {"q": Q0})
    time.sleep(0.1)
    _decide(sup, "mug1")
    got = _collect(out, 10)
    assert got and got[0].topic == M.Task.TOPIC, [g.body for g in got]
    task = got[0].body
    assert task.skill == "pour_mug" and task.task_id.startswith("bridge:d1:")
    ref = Bridge().estimate("pour_mug", kp, Q0)
    np.testing.assert_allclose(task.goal, ref.pose7("goal"), atol=1e-9)
    np.testing.assert_allclose(task.start, ref.pose7("start"), atol=1e-9)
    assert {d.topic for d in got[0].derived} >= {M.Decision.TOPIC, M.WorldTruth.TOPIC, M.ControlState.TOPIC}
    assert n.detail["last"]["target"] == "mug1" and n.detail["last"]["endpose_ms"] > 0
    # Algorithm 1's own time and its IK feasibility checks are reported apart, and add up to the estimate
    assert ref.ms["checks"] >= 1 and ref.ms["feasibility"] > 0
    assert ref.ms["validate"] + ref.ms["endpose"] + ref.ms["feasibility"] == pytest.approx(ref.ms["total"], abs=0.05)


def test_perception_keypoints_serve_as_well(node):
    n, sup, out = node
    _state(sup)
    sup.send(M.Keypoints(camera="cam", objects=[{"id": "cup7", "class": "mug", "keypoints": mug_kp(0.30, -0.05)}]))
    time.sleep(0.1)
    _decide(sup, "cup7", dialogue="d2")
    got = _collect(out, 10)
    assert got and got[0].topic == M.Task.TOPIC and got[0].body.skill == "pour_mug"


def test_missing_target_missing_keypoint_and_out_of_reach_are_errors_and_no_task(node):
    n, sup, out = node
    _state(sup)
    _decide(sup, "ghost", dialogue="d3")
    got = _collect(out, 5)
    assert [g.topic for g in got] == [M.BridgeError.TOPIC]
    assert got[0].body.code == "no_target" and "ghost" in got[0].body.reason and got[0].body.dialogue_id == "d3"
    bad = mug_kp(0.32, 0.0)
    del bad["K_p2"]
    far = mug_kp(0.62, 0.1)
    sup.send(M.Keypoints(camera="cam", objects=[{"id": "nob", "class": "mug", "keypoints": bad},
                                                {"id": "far", "class": "mug", "keypoints": far}]))
    time.sleep(0.1)
    _decide(sup, "nob", dialogue="d4")
    got = _collect(out, 5)
    assert [g.topic for g in got] == [M.BridgeError.TOPIC] and got[0].body.code == "missing_keypoints"
    assert "K_p2" in got[0].body.reason
    _decide(sup, "far", dialogue="d5")
    got = _collect(out, 5)
    assert [g.topic for g in got] == [M.BridgeError.TOPIC] and got[0].body.code == "out_of_reach"


def test_questions_are_left_alone(node):
    n, sup, out = node
    before = dict(n.counts)
    _decide(sup, None, status="ask", dialogue="d6")
    assert _collect(out, 1.0) == []
    assert n.counts["ignored"] == before["ignored"] + 1
