"""The message registry: every topic typed and described, strict bodies (no casts), exact arrays, one
named stamp type, the schema version, wire renames, the JSON schema a recording carries."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kinebridge.runtime.bus import messages as M
from kinebridge.runtime.bus.codec import Message, MessageError, decode, encode

REAL = {n: s for n, s in M.TOPICS.items() if not n.startswith("test/")}


def _msg(topic, body: dict, arrays=None, **stamp):
    hdr = {"v": M.SCHEMA_VERSION, "seq": 0, "stamp_ns": 123, "src": "x", **stamp, **body}
    return decode([bytes(f) for f in encode(topic, hdr, arrays)])


def test_every_topic_has_a_body_publishers_and_a_description():
    assert {"task", "chunk", "control/state", "control/timing", "control/chunk_latency", "control/reject",
            "control/limits", "heartbeat", "estop", "trajectory/plan", "trajectory/done", "trajectory/error",
            "camera/frame", "perception/keypoints", "planner/decision", "policy/tokens"} <= set(REAL)
    for name, spec in REAL.items():
        assert spec.body.TOPIC == name and spec.publishers and spec.description
        assert not set(spec.body.model_fields) & set(M.RESERVED)
        s = M.json_schema(name)
        json.dumps(s)
        assert s["properties"]["v"]["const"] == M.SCHEMA_VERSION
        assert set(spec.body.ARRAYS or {}) <= set(s["properties"])


def test_a_valid_chunk_fills_body_stamp_and_derived():
    q = np.zeros((5, 7))
    m = M.validate(_msg("chunk", {"t0": 1.0, "dt": 0.01, "derived": [
        {"src": "supervisor", "topic": "task", "seq": 3, "stamp_ns": 99}]}, {"q": q}))
    assert m.body == M.Chunk(t0=1.0, dt=0.01) and m.stamp == M.Stamp(src="x", topic="chunk", seq=0, stamp_ns=123)
    assert m.derived == [M.Stamp(src="supervisor", topic="task", seq=3, stamp_ns=99)] and m.derived[0].topic == "task"


@pytest.mark.parametrize("body,arrays,match", [
    ({"t0": 1.0, "dt": "0.01"}, {"q": np.zeros((5, 7))}, "dt"),                       # a string number
    ({"t0": 1.0, "dt": 0.01, "x": 1}, {"q": np.zeros((5, 7))}, "unknown field"),
    ({"dt": 0.01}, {"q": np.zeros((5, 7))}, "t0: missing"),
    ({"t0": float("nan"), "dt": 0.01}, {"q": np.zeros((5, 7))}, "t0"),
    ({"t0": 1.0, "dt": 0.0}, {"q": np.zeros((5, 7))}, "dt"),
    ({"t0": True, "dt": 0.01}, {"q": np.zeros((5, 7))}, "t0"),                       # a bool is not a time
    ({"t0": 1.0, "dt": 0.01}, {"q": np.zeros((5, 7), np.int64)}, "dtype int64, expected float64"),
    ({"t0": 1.0, "dt": 0.01}, {"q": np.zeros((5, 7), np.float16)}, "float16"),
    ({"t0": 1.0, "dt": 0.01}, {"q": np.zeros((5, 7), np.complex128)}, "complex128"),
    ({"t0": 1.0, "dt": 0.01}, {"q": np.zeros((5, 6))}, r"shape \(5, 6\), expected \(N, 7\)"),
    ({"t0": 1.0, "dt": 0.01}, {"q": np.zeros((M.MAX_CHUNK_ROWS + 1, 7))}, "rows"),
    ({"t0": 1.0, "dt": 0.01}, {}, "missing \\['q'\\]"),
    ({"t0": 1.0, "dt": 0.01}, {"q": np.zeros((5, 7)), "extra": np.zeros(3)}, "unexpected \\['extra'\\]"),
])
def test_a_bad_chunk_is_refused_naming_what_is_wrong(body, arrays, match):
    with pytest.raises(MessageError, match=match):
        M.validate(_msg("chunk", body, arrays))


def test_another_schema_version_and_bad_stamps_are_refused():
    with pytest.raises(MessageError, match="schema version 0, this kinebridge speaks 1"):
        M.validate(_msg("estop", {"reason": "x"}, v=0))
    with pytest.raises(MessageError, match="schema version None"):
        M.validate(Message("estop", {"seq": 0, "stamp_ns": 1, "src": "x", "reason": "x"}))
    with pytest.raises(MessageError, match="bus stamp"):
        M.validate(_msg("estop", {"reason": "x"}, seq=-1))
    with pytest.raises(MessageError, match="seq"):
        M.validate(_msg("estop", {"reason": "x", "derived": [{"src": "a", "topic": "b", "seq": "1", "stamp_ns": 2}]}))
    with pytest.raises(MessageError, match="unknown topic 'nope'"):
        M.validate(_msg("nope", {}))


def test_tasks_take_a_skill_with_frames_or_parameters():
    t = M.validate(_msg("task", {"skill": "pour", "params": {"cup": [0.4, 0.1, 0.08, 20]}})).body
    assert t.params == {"cup": [0.4, 0.1, 0.08, 20.0]} and t.goal is None
    with pytest.raises(MessageError, match="goal"):
        M.validate(_msg("task", {"goal": [0.4, 0.1, 0.2, 1.0, 0.0, 0.0]}))          # 6 numbers, not 7
    with pytest.raises(MessageError, match="cup"):                                    # the old pour-only field
        M.validate(_msg("task", {"cup": [0.4, 0.1, 0.08, 20]}))


def test_wire_names_rename_topics_for_both_ends():
    names = M.TopicNames({"chunk": "arm1/chunk"})
    assert names.wire("chunk") == "arm1/chunk" and names.logical("arm1/chunk") == "chunk"
    assert names.wire("task") == "task" and names.logical("task") == "task" and names.logical("chunk") is None
    with pytest.raises(MessageError, match="unknown topic"):
        M.TopicNames({"chunks": "x"})
    with pytest.raises(MessageError, match="both travel as"):
        M.TopicNames({"chunk": "x", "task": "x"})
    with pytest.raises(MessageError, match="another topic"):
        M.TopicNames({"chunk": "task"})


def test_bodies_go_on_the_wire_as_plain_headers():
    b = M.ControlTiming(final=False, ticks=1, sent=1, starved_ticks=0, held_ticks=0, chunks_accepted=0,
                        chunks_rejected=0, workspace_violations=0, setpoints_rejected=0, overruns=0, rate_hz=200.0)
    h = b.header()
    assert h["chunks_superseded"] == 0 and h["chunk_latency_ns"] == [] and "v" not in h
    assert M.ControlTiming.model_validate(h) == b


def test_the_architecture_page_lists_every_topic():
    from pathlib import Path
    doc = (Path(__file__).resolve().parents[3] / "docs" / "architecture.md").read_text()
    missing = [n for n in REAL if f"| `{n}` |" not in doc]
    assert not missing, f"docs/architecture.md's message table lacks {missing}"
