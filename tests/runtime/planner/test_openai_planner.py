"""The real openai client against a local HTTP server replaying each failure mode: an invalid reply is re-asked
once with the error, then rejected quoting it; endpoint failures are retried with backoff, then reported; a
server without json_schema gets plain JSON instructions; GI and DI share one dialogue; the frame travels as a
PNG data URL; the API key never appears in logs, decisions or the dialogue."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

pytest.importorskip("openai")

from kinebridge.runtime.planner.base import Decision, Dialogue, PlannerError  # noqa: E402
from kinebridge.runtime.planner.candidates import Candidate, enrich  # noqa: E402
from kinebridge.runtime.planner.config import PlannerConfig  # noqa: E402
from kinebridge.runtime.planner.openai_planner import OpenAIPlanner  # noqa: E402

from .conftest import Reply, completion  # noqa: E402

KEY = "sk-kinebridge-test-SECRET-0123456789"
GI_OK = {"status": "ok", "skill": "pour", "target_class": "mug", "target_description": "the mug on the left",
         "instruction": "pour(target=mug: the mug on the left)", "question": None, "reason": "pour, leftmost mug"}
GI_VAGUE = dict(GI_OK, target_description=None, instruction="pour(target=mug: unspecified)")


def _di(target="mugL"):
    return Decision.decided("pour", target, "leftmost").model_dump()


@pytest.fixture
def cands():
    def mug(i, y):
        return Candidate(id=i, cls="mug", position=(0.45, y, 0.0), color="green", size=(0.08, 0.08, 0.1),
                         keypoints={"K_p1": (0.45, y, 0.1), "K_i": (0.41, y, 0.1), "K_b": (0.5, y, 0.05)})
    return enrich([mug("mugL", -0.2), mug("mugM", 0.0), mug("mugR", 0.2)])


@pytest.fixture
def make(vlm, monkeypatch):
    monkeypatch.setenv("KB_TEST_KEY", KEY)
    planners = []

    def make(**kw):
        cfg = PlannerConfig(kind="openai", base_url=vlm.url, model="test-vlm", api_key_env="KB_TEST_KEY",
                            timeout_s=kw.pop("timeout_s", 10.0), retries=kw.pop("retries", 1), backoff_s=0.01, **kw)
        p = OpenAIPlanner(cfg, skills=None)
        planners.append(p)
        return p
    yield make
    for p in planners:
        p.close()


def _texts(msgs):
    out = []
    for m in msgs:
        c = m["content"]
        out.append(c if isinstance(c, str) else " ".join(p.get("text", "") for p in c))
    return out


def test_gi_then_di_share_one_dialogue_and_the_frame_is_a_data_url(vlm, make, cands):
    vlm.json(GI_OK)
    vlm.json(_di())
    p = make()
    h = Dialogue()
    img = np.full((48, 64, 3), 200, np.uint8)
    d = p.decide("pour water into the mug on the left", cands, image=img, history=h)
    assert d.status == "decided" and d.target == "mugL" and d.skill == "pour"
    assert p.standard_instruction == GI_OK["instruction"]
    gi_req, di_req = vlm.requests
    # structured outputs: a strict json_schema named after each program's reply model
    assert gi_req["response_format"]["type"] == "json_schema"
    assert gi_req["response_format"]["json_schema"]["name"] == "GIReply"
    assert di_req["response_format"]["json_schema"]["name"] == "Decision"
    assert gi_req["response_format"]["json_schema"]["strict"] is True
    # system roles: background, the skill library from the registry, task definition, input/output control
    gi_sys, di_sys = gi_req["messages"][0]["content"], di_req["messages"][0]["content"]
    for s in (gi_sys, di_sys):
        assert s.count("## ") >= 4 and "- pour: carry a held mug" in s and "Input/output control" in s
    assert sum(m["role"] == "assistant" for m in gi_req["messages"]) >= 10       # ~10 exemplar pairs
    # DI sees GI's turns: the user's words and GI's standardised reply, before its own query
    di_texts = _texts(di_req["messages"])
    assert any("Instruction: pour water into the mug on the left" in t for t in di_texts)
    assert any(GI_OK["instruction"] in t and t.startswith("{") for t in di_texts)
    last = di_req["messages"][-1]["content"]
    assert isinstance(last, list) and last[1]["type"] == "image_url"
    assert last[1]["image_url"]["url"].startswith("data:image/png;base64,")
    assert '"id":"mugL"' in last[0]["text"] and '"class":"mug"' in last[0]["text"]
    assert [t.program for t in h.turns] == ["GI", "GI", "DI", "DI"]


def test_a_follow_up_answer_carries_the_dialogue(vlm, make, cands):
    p = make()
    h = Dialogue()
    vlm.json(GI_VAGUE)
    vlm.json(Decision.ask("Which mug: mugL, mugM or mugR?", "no words say which").model_dump())
    d = p.decide("pour me some water", cands, history=h)
    assert d.status == "ask" and "mugL" in d.question
    vlm.json(GI_OK)
    vlm.json(_di())
    d = p.decide("the left one", cands, history=h)
    assert d.status == "decided" and d.target == "mugL"
    texts = _texts(vlm.requests[2]["messages"])           # GI of the answer sees the first exchange
    assert any("pour me some water" in t for t in texts) and any("Which mug: mugL" in t for t in texts)
    assert "This answers your question" in texts[-1]


@pytest.mark.parametrize("bad, expect", [
    (Reply(completion("{not json")), "{not json"),
    (Reply(completion(json.dumps(dict(GI_OK, status="maybe")))), "status"),
    (Reply(completion(None, refusal="I can't help with that")), "refused"),
    (Reply(completion('{"status": "ok", "skill": "po', finish="length")), "cut off"),
    (Reply(b"<html><body>502 Bad Gateway (proxy)</body></html>"), "not JSON"),
], ids=["malformed-json", "schema-violation", "refusal", "truncated", "non-json-body"])
def test_an_invalid_reply_is_re_asked_once_then_rejected_quoting_it(vlm, make, cands, bad, expect):
    vlm.replies += [bad, bad]
    p = make()
    d = p.decide("pour into the mug on the left", cands)
    assert d.status == "failed" and expect in d.reason and "after one re-ask" in d.reason
    assert len(vlm.requests) == 2                                   # asked, re-asked once, no more
    reask = _texts(vlm.requests[1]["messages"])
    assert "Your reply was invalid" in reask[-1]
    if bad.body != b"" and not isinstance(bad.body, bytes):
        assert "reply:" in d.reason
    else:
        assert "502 Bad Gateway" in d.reason                        # the body is quoted


def test_a_reply_fixed_after_the_re_ask_is_used(vlm, make, cands):
    vlm.replies.append(Reply(completion("{not json")))
    vlm.json(GI_OK)
    vlm.json(_di("mug7"))                  # not a candidate: re-asked with the error
    vlm.json(_di("mugL"))
    d = make().decide("pour into the mug on the left", cands)
    assert d.status == "decided" and d.target == "mugL"
    assert len(vlm.requests) == 4
    assert "'mug7' is not a candidate" in _texts(vlm.requests[3]["messages"])[-1]


def test_5xx_then_success_is_retried(vlm, make, cands):
    vlm.replies.append(Reply({"error": {"message": "overloaded"}}, status=500))
    vlm.json(GI_OK)
    vlm.json(_di())
    p = make(retries=2)
    d = p.decide("pour into the mug on the left", cands)
    assert d.status == "decided" and len(vlm.requests) == 3 and p.endpoint_state == "ok"


def test_repeated_5xx_fails_naming_the_endpoint(vlm, make, cands):
    vlm.replies += [Reply({"error": {"message": "unavailable"}}, status=503)] * 3
    p = make(retries=2)
    d = p.decide("pour into the mug on the left", cands)
    assert d.status == "failed" and "down after 3 attempts" in d.reason and "InternalServerError 503" in d.reason
    assert p.endpoint_state.startswith("down")
    assert len(vlm.requests) == 3


def test_a_timeout_fails_after_the_retries(vlm, make, cands):
    vlm.replies += [Reply(completion(json.dumps(GI_OK)), delay=1.0)] * 2
    p = make(timeout_s=0.3, retries=1)
    d = p.decide("pour into the mug on the left", cands)
    assert d.status == "failed" and "APITimeoutError" in d.reason and "2 attempts" in d.reason


def test_a_server_without_json_schema_gets_plain_json_instructions(vlm, make, cands):
    vlm.reject_json_schema = True
    vlm.replies.append(Reply(completion("```json\n" + json.dumps(GI_OK) + "\n```")))
    vlm.replies.append(Reply(completion("Here you are: " + json.dumps(_di()))))
    p = make()
    d = p.decide("pour into the mug on the left", cands)
    assert d.status == "decided" and d.target == "mugL" and p.structured is False
    plain = [r for r in vlm.requests if "response_format" not in r]
    assert len(plain) == 2
    assert "validates against this JSON schema" in plain[0]["messages"][0]["content"]


def test_the_api_key_never_appears_in_logs_decisions_or_the_dialogue(vlm, make, cands, caplog):
    caplog.set_level(logging.DEBUG)
    vlm.replies.append(Reply({"error": {"message": f"Incorrect API key provided: {KEY}"}}, status=500))
    vlm.replies.append(Reply(completion("{bad")))
    vlm.replies.append(Reply(completion(json.dumps(GI_OK))))
    vlm.json(Decision.ask(f"key {KEY}?", "echo").model_dump())       # a model echoing the key is scrubbed too
    h = Dialogue()
    p = make(retries=2)
    d = p.decide("pour into the mug on the left", cands, history=h)
    assert {k.lower(): v for k, v in vlm.headers[0].items()}["authorization"] == f"Bearer {KEY}"   # it is sent
    recorded = caplog.text + d.model_dump_json() + " ".join(h.transcript()) + repr(p.endpoint_state)
    assert KEY not in recorded
    vlm.replies.append(Reply({"error": {"message": f"bad key {KEY}"}}, status=401))
    d = p.decide("pour into the mug on the left", cands)
    assert d.status == "failed" and "KB_TEST_KEY" in d.reason and KEY not in d.reason + caplog.text


def test_a_missing_key_variable_is_named(monkeypatch):
    monkeypatch.delenv("KB_NO_SUCH_KEY", raising=False)
    with pytest.raises(PlannerError, match="KB_NO_SUCH_KEY is not set"):
        OpenAIPlanner(PlannerConfig(kind="openai", api_key_env="KB_NO_SUCH_KEY"))
