"""The LocalPlanner on generated ambiguous scenes: the intended target when the words determine it, a question
when they do not (never a guess), a failure when no skill applies; follow-up answers in the same dialogue;
the candidates' words and the keypoints-message adapter."""

from __future__ import annotations

import pytest

from kinebridge.runtime.planner.base import Decision, Dialogue
from kinebridge.runtime.planner.candidates import (Candidate, CandidateError, color_name, enrich,
                                                   from_keypoints_message, to_keypoints_objects)
from kinebridge.runtime.planner.local_planner import LocalPlanner


@pytest.fixture(scope="module")
def lp():
    return LocalPlanner()


def test_accuracy_on_30_ambiguous_scenes_and_no_guesses(lp):
    pytest.importorskip("mujoco")
    from kinebridge.bench import planner_eval

    r = planner_eval.run(30, 0, lp)
    assert r["scenes"] == 30 and r["determined"]["n"] >= 300 and r["undetermined"]["n"] >= 200
    assert r["guesses"] == 0                                     # it never decides where it had to ask
    assert r["undetermined"]["accuracy"] == 1.0 and r["impossible"]["accuracy"] == 1.0
    assert r["determined"]["accuracy"] >= 0.95, r["mistakes"]
    assert r["determined"].get("wrong", 0) == 0                  # a miss is an ask, never another mug


def test_decisions_and_asks_on_a_scene(lp, scenes):
    cs = scenes[3]                   # mug1 leftmost, mug2 rightmost and nearest the blue box, mug0 in the middle
    want = {"pour into the mug on the left": "mug1", "fill the cup next to the blue box": "mug2",
            "pour into the mug with the handle pointing right": "mug2", "pour into the second mug from the left": "mug0",
            "pour into mug 2": "mug2", "pour water into the mug closest to the robot": "mug2"}
    for words, target in want.items():
        d = lp.decide(words, cs)
        assert (d.status, d.target) == ("decided", target), (words, d)
        assert d.subtasks and all(k.object == target for s in d.subtasks for k in s.keypoints)
        assert any("rim of the green mug (%s)" % target in k.phrase for s in d.subtasks for k in s.keypoints)
    for words in ("pour me some water", "pour into a mug", "the cup over there", "pour into the green mug",
                  "pour into the tallest mug", "pour into the second mug", "pour into the mug that is not on the left",
                  "pour into mug9"):
        d = lp.decide(words, cs)
        assert d.status == "ask" and d.target is None and d.question, (words, d)
    for words in ("wipe the table", "pour water into the blue box", "pick up the leftmost mug"):
        assert lp.decide(words, cs).status == "failed", words


def test_two_steps_become_ordered_subtasks(lp, scenes):
    d = lp.decide("pour into the leftmost mug, then into the rightmost one", scenes[3])
    assert d.status == "decided" and d.target == "mug1"
    assert list(dict.fromkeys(s.target for s in d.subtasks)) == ["mug1", "mug2"]


def test_a_follow_up_answer_is_resolved_among_the_candidates_asked_about(lp, scenes):
    h = Dialogue()
    assert lp.decide("pour me some water", scenes[3], history=h).status == "ask"
    assert lp.decide("hmm", scenes[3], history=h).status == "ask"            # still no attribute: ask again
    d = lp.decide("the one next to the blue box", scenes[3], history=h)
    assert (d.status, d.target) == ("decided", "mug2")
    h = Dialogue()
    assert "What should I do" in lp.decide("the cup over there", scenes[3], history=h).question
    assert lp.decide("pour water into it", scenes[3], history=h).status == "ask"
    assert lp.decide("the leftmost", scenes[3], history=h).target == "mug1"
    assert [t.role for t in h.turns] == ["user", "assistant"] * 3


def test_candidate_words_follow_the_camera_viewer(scenes):
    cs = {c.id: c for c in scenes[3]}
    assert "leftmost" in cs["mug1"].position_words and "rightmost" in cs["mug2"].position_words
    assert cs["mug1"].view[0] < cs["mug0"].view[0] < cs["mug2"].view[0]
    assert cs["mug2"].handle == "right" and cs["box1"].color == "blue" and cs["mug0"].cls == "mug"
    assert color_name((0.9, 0.1, 0.1)) == "red" and color_name((0.5, 0.5, 0.5)) == "grey"


def test_the_keypoints_message_adapter_reads_fields_by_name_and_refuses_what_lacks_them(scenes):
    objs = to_keypoints_objects(scenes[3])
    back = {c.id: c for c in from_keypoints_message({"objects": objs})}
    assert back["mug2"].handle == "right" and back["box1"].color == "blue"
    assert back["mug1"].position_words == {c.id: c for c in scenes[3]}["mug1"].position_words
    with pytest.raises(CandidateError, match=r"objects\[0\] \('m'\): lacks class, keypoints"):
        from_keypoints_message([{"id": "m"}])
    with pytest.raises(CandidateError, match=r"objects\[1\]: lacks id"):
        from_keypoints_message([objs[0], {"class": "mug", "keypoints": {"K_p1": [0, 0, 0]}}])
    with pytest.raises(CandidateError, match="K_p1: expected 3 finite numbers"):
        from_keypoints_message([{"id": "a", "class": "cup", "keypoints": {"K_p1": [0, float("nan"), 0]}}])
    one = from_keypoints_message([{"name": "a", "kind": "cup", "keypoints": {"K_p1": [0.4, 0, 0.1]}}])[0]
    assert one.cls == "mug" and one.color is None


def test_decisions_are_checked_against_the_candidates_and_skills():
    c = enrich([Candidate(id="m", cls="mug", keypoints={"K_p1": (0.4, 0, 0.1)}, position=(0.4, 0, 0))])
    assert Decision.decided("pour", "x").check(c, ["pour"]).status == "failed"
    assert Decision.decided("stir", "m").check(c, ["pour"]).status == "failed"
    assert Decision.decided("pour", "m").check(c, ["pour"]).status == "decided"
    body = Decision.ask("which?").to_body("pour", "local", dialogue_id="d")
    assert body.status == "ask" and body.question == "which?" and body.TOPIC == "planner/decision"
