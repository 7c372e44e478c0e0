"""The planner node in this process against a raw supervisor publisher: heartbeats keep coming while a
slow VLM takes seconds, a decision that overruns decision_timeout_s fails naming it, decisions are stamped
with the instruction and the keypoints (and their frame), no candidates fail with the reason."""

from __future__ import annotations

import json
import threading
import time

import pytest

from kinebridge.runtime.bus import messages as M
from kinebridge.runtime.bus.sockets import Publisher, Subscriber
from kinebridge.runtime.config import RuntimeConfig, load_config
from kinebridge.runtime.planner.candidates import Candidate, enrich, to_keypoints_objects

from .conftest import Reply, completion

GI_OK = {"status": "ok", "skill": "pour", "target_class": "mug", "target_description": "the left mug",
         "instruction": "pour(target=mug: the left mug)", "question": None, "reason": "r"}


def _objects():
    def mug(i, y):
        return Candidate(id=i, cls="mug", position=(0.45, y, 0.0), rgb=(0.2, 0.7, 0.2), size=(0.08, 0.08, 0.1),
                         keypoints={"K_p1": (0.45, y, 0.1), "K_i": (0.41, y, 0.1), "K_p2": (0.45, y, 0.0)})
    return to_keypoints_objects(enrich([mug("mugL", -0.2), mug("mugM", 0.0), mug("mugR", 0.2)]))


@pytest.fixture
def node(tmp_path, monkeypatch):
    from kinebridge.runtime.node import node_class

    def start(**planner):
        data = load_config(None).model_dump()
        data["bus"]["ipc_dir"] = str(tmp_path / "bus")
        data["nodes"] = {"planner": {}}
        data["supervisor"]["heartbeat_hz"] = 20.0
        data["planner"].update(planner)
        cfg = RuntimeConfig.model_validate(data)
        (tmp_path / "bus").mkdir(exist_ok=True)
        sup = Publisher(cfg.endpoint("supervisor"), "supervisor")
        n = node_class("planner")("planner", cfg)
        th = threading.Thread(target=n.run, daemon=True)
        th.start()
        out = Subscriber([cfg.endpoint("planner")], (M.Decision.TOPIC, M.Heartbeat.TOPIC))
        end = time.monotonic() + 30
        while n.status != "ready" and time.monotonic() < end:
            time.sleep(0.02)
        time.sleep(0.3)                                   # slow joiners
        started.append((n, th, sup, out))
        return n, sup, out

    started = []
    monkeypatch.setenv("KB_NODE_KEY", "sk-node-test-key")
    yield start
    for n, th, sup, out in started:
        n.stop()
        th.join(10)
        sup.close()
        out.close()


def _collect(out, seconds, until=None):
    got = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        m = out.recv(50)
        if m is not None:
            got.append(m)
            if until is not None and until(got):
                break
    return got


def test_heartbeats_continue_while_a_slow_vlm_thinks_and_a_timeout_fails_the_decision(node, vlm):
    vlm.replies += [Reply(completion(json.dumps(GI_OK)), delay=2.5)] * 2
    n, sup, out = node(kind="openai", base_url=vlm.url, model="slow-vlm", api_key_env="KB_NODE_KEY",
                       timeout_s=10.0, retries=0, decision_timeout_s=1.5)
    kp = sup.publish(M.Keypoints.TOPIC, M.Keypoints(camera="sim", objects=_objects()).header(),
                     derived=[M.Stamp(src="camera", topic=M.FrameRef.TOPIC, seq=7, stamp_ns=1)])
    time.sleep(0.1)
    t0 = time.monotonic()
    ins = sup.send(M.Instruction(text="pour into the left mug", dialogue_id="d1"))
    got = _collect(out, 4.0, until=lambda g: any(m.topic == M.Decision.TOPIC for m in g))
    decisions = [m for m in got if m.topic == M.Decision.TOPIC]
    beats = [m.stamp.stamp_ns * 1e-9 for m in got if m.topic == M.Heartbeat.TOPIC and m.stamp.stamp_ns * 1e-9 > t0]
    assert decisions, "no decision"
    d = decisions[0]
    assert d.body.status == "failed" and "decision_timeout_s = 1.5" in d.body.reason
    assert 1.4 < time.monotonic() - t0 < 3.0
    # the node kept heartbeating at its rate while the planner was stuck in the HTTP call
    assert len(beats) >= 20 and max(b - a for a, b in zip(beats, beats[1:])) < 0.3
    hb = [m for m in got if m.topic == M.Heartbeat.TOPIC][-1]
    assert hb.body.detail["planner"]["busy_s"] is not None and hb.body.detail["planner"]["busy_s"] > 1.0
    assert {s.topic for s in d.derived} == {M.Instruction.TOPIC, M.Keypoints.TOPIC, M.FrameRef.TOPIC}
    assert [s.seq for s in d.derived if s.topic == M.Keypoints.TOPIC] == [kp.seq]
    assert d.derived[0] == ins and d.body.dialogue_id == "d1" and d.body.planner == "openai:slow-vlm"


def test_the_local_planner_node_decides_asks_and_resolves_the_answer(node):
    n, sup, out = node(kind="local")
    sup.publish(M.Keypoints.TOPIC, M.Keypoints(objects=_objects()).header())
    time.sleep(0.1)
    sup.send(M.Instruction(text="pour me some water", dialogue_id="a"))
    d = next(m for m in _collect(out, 10, until=lambda g: any(m.topic == M.Decision.TOPIC for m in g))
             if m.topic == M.Decision.TOPIC)
    assert d.body.status == "ask" and "mugL" in d.body.question and d.body.candidates == ["mugL", "mugM", "mugR"]
    sup.send(M.Instruction(text="the one on the right", dialogue_id="a"))
    d = next(m for m in _collect(out, 10, until=lambda g: any(m.topic == M.Decision.TOPIC for m in g))
             if m.topic == M.Decision.TOPIC)
    assert d.body.status == "decided" and d.body.target == "mugR" and d.body.skill == "pour"
    assert d.body.subtasks and d.body.subtasks[0]["keypoints"][0]["object"] == "mugR"
    assert d.body.latency_ms is not None and d.body.latency_ms < 1000


def test_no_candidates_fails_naming_why(node):
    n, sup, out = node(kind="local")
    sup.send(M.Instruction(text="pour into the left mug"))
    d = next(m for m in _collect(out, 5, until=lambda g: any(m.topic == M.Decision.TOPIC for m in g))
             if m.topic == M.Decision.TOPIC)
    assert d.body.status == "failed" and "no perception/keypoints" in d.body.reason
