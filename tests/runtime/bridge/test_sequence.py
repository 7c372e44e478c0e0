"""The sub-task sequencer's core (no I/O): steps, order, ends matched by task id, failure stops it."""

from __future__ import annotations

import pytest

from kinebridge.runtime.bridge.sequence import Sequence, steps_of


def sub(skill, target, desc=""):
    return {"skill": skill, "target": target, "description": desc, "keypoints": []}


POUR2 = [sub("pour", "mug0", "bring the rim over mug0"), sub("pour", "mug0", "tilt over mug0"),
         sub("pour", "mug1", "bring the rim over mug1"), sub("pour", "mug1", "tilt over mug1")]


def test_consecutive_subtasks_on_one_target_are_one_step_and_a_bare_decision_is_one():
    steps = steps_of("pour", "mug0", POUR2)
    assert [(s.target, s.indices) for s in steps] == [("mug0", [0, 1]), ("mug1", [2, 3])]
    bare = steps_of("pour", "mug0", [])
    assert [(s.skill, s.target, s.indices) for s in bare] == [("pour", "mug0", [0])]
    # the same target again after another one is a new step (it is executed again)
    again = steps_of("pour", "a", [sub("pour", "a"), sub("pour", "b"), sub("pour", "a")])
    assert [s.indices for s in again] == [[0], [1], [2]]
    with pytest.raises(ValueError, match=r"subtasks\[1\]"):
        steps_of("pour", "a", [sub("pour", "a"), {"skill": "pour"}])
    with pytest.raises(ValueError):
        steps_of(None, None, [])


def test_steps_run_in_order_each_after_the_previous_ended():
    s = Sequence("pour", "mug0", POUR2)
    st = s.next_step()
    assert st.number == 0 and st.target == "mug0"
    r = s.sent("t0", now=0.0, keypoints_source="world")
    assert [(x.index, x.status, x.task_id, x.keypoints_source, x.count) for x in r] == \
        [(0, "started", "t0", "world", 4), (1, "started", "t0", "world", 4)]
    assert s.next_step() is None                       # the next waits for the end of this one
    assert s.done("other") == [] and s.failed("other", "x") == []   # another task's end is not this one's
    assert s.next_step() is None
    r = s.done("t0")
    assert [(x.index, x.status) for x in r] == [(0, "done"), (1, "done")]
    st = s.next_step()
    assert st.number == 1 and st.target == "mug1" and not s.finished
    s.sent("t1", now=1.0)
    assert s.done("t0") == []                          # a late duplicate of the first end changes nothing
    r = s.done("t1")
    assert [(x.index, x.status, x.step) for x in r] == [(2, "done", 1), (3, "done", 1)]
    assert s.finished and s.state == "done" and s.next_step() is None


def test_a_failure_stops_the_sequence_and_skips_the_rest_naming_it():
    s = Sequence("pour", "mug0", POUR2)
    s.sent("t0", 0.0)
    r = s.failed("t0", "IK did not converge")
    assert [(x.index, x.status) for x in r] == [(0, "failed"), (1, "failed"), (2, "skipped"), (3, "skipped")]
    assert "IK did not converge" in r[0].reason and "trajectory" in r[0].reason
    assert "sub-task 0" in r[2].reason and "mug0" in r[2].reason
    assert s.state == "failed" and s.next_step() is None and s.done("t0") == []


def test_a_refusal_by_the_bridge_fails_the_step_before_any_task():
    s = Sequence("pour", "mug0", POUR2)
    s.sent("t0", 0.0)
    s.done("t0")
    r = s.refused("out_of_reach: mug1 stands 0.6 m from the base")
    assert [(x.index, x.status, x.task_id) for x in r] == [(2, "failed", None), (3, "failed", None)]
    assert "out_of_reach" in r[0].reason and s.state == "failed"


def test_a_task_that_never_ends_times_out_and_a_newer_decision_cancels():
    s = Sequence("pour", "mug0", POUR2, timeout_s=5.0)
    s.sent("t0", now=10.0)
    assert s.tick(14.9) == []
    r = s.tick(15.1)
    assert [x.status for x in r] == ["failed", "failed", "skipped", "skipped"] and "5 s" in r[0].reason
    c = Sequence("pour", "mug0", POUR2)
    c.sent("t0", 0.0)
    r = c.cancel("superseded")
    assert [x.status for x in r] == ["skipped"] * 4 and c.finished and c.cancel("again") == []
    with pytest.raises(RuntimeError):
        c.sent("t9", 1.0)
