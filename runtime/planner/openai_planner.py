"""A VLM planner on any OpenAI-compatible endpoint: VL-MP's GI and DI prompt programs in one dialogue.

Two prompt programs (VL-MP III.A, Fig. 7), each a system role — background, the skill-library
specification generated from :mod:`kinebridge.runtime.skills.registry`, the task definition and
input/output control (``prompts/gi.md``, ``prompts/di.md``) — followed by its exemplar
query/response pairs (``prompts/gi.json``, ``prompts/di.json``, ~10 each) and the turns of the
dialogue so far, which both programs share:

1. **GI** (Generate Instruction) turns the user's words into a standardised instruction
   (:class:`GIReply`: skill, target class, the words describing the target) — or asks what to do,
   or fails when no skill does what is asked;
2. **DI** (Disambiguate Instruction) sees GI's turns, the candidates (JSON) and, when the model
   takes images, the frame with the candidate ids drawn (a PNG data URL), and returns the
   :class:`~kinebridge.runtime.planner.base.Decision`.

Replies are parsed into the pydantic schemas through structured outputs
(``client.chat.completions.parse(response_format=Model)``, a strict ``json_schema``); a server that
refuses ``json_schema`` (HTTP 400/422 naming it) is switched to plain JSON instructions (the schema in
the system role) with the same validation. A reply that fails validation — malformed JSON, a schema
violation, a refusal, a truncated reply (``finish_reason = length``), a non-JSON body, a target that is
not a candidate — is re-asked once with the error; a second failure is rejected, quoting it. Endpoint
failures (connection, timeout, 429, 5xx) are re-sent ``retries`` times with exponential backoff, then
the decision fails naming the endpoint's state. The API key is read from the environment variable
named in the config and scrubbed from every text this module produces; it is never logged.

``openai`` is imported when the planner is made (the ``planner`` extra), never by the control path.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kinebridge.runtime.planner.base import Decision, Dialogue, Planner, PlannerError, SkillSpec, skill_library, \
    skill_library_text
from kinebridge.runtime.planner.candidates import Candidate
from kinebridge.runtime.planner.config import PlannerConfig

__all__ = ["OpenAIPlanner", "GIReply", "EndpointError", "InvalidReply", "load_program", "PROMPTS"]

PROMPTS = Path(__file__).parent / "prompts"
log = logging.getLogger("kinebridge.planner")
QUOTE = 300           # characters of a bad reply quoted in a failed decision


class GIReply(BaseModel):
    """GI's standardised instruction."""

    model_config = ConfigDict(extra="forbid")

    status: Literal["ok", "ask", "failed"]
    skill: str | None = Field(description="a skill name from the library, or null")
    target_class: str | None = Field(description="mug, bowl, box, plate, … or null")
    target_description: str | None = Field(description="the user's words saying which object, or null")
    instruction: str = Field(description="standardised: <skill>(target=<class>: <description|unspecified>)")
    question: str | None = Field(description="ask: what to ask the user; else null")
    reason: str = Field(description="one sentence: why")


class EndpointError(RuntimeError):
    """The endpoint did not answer usefully (connection, timeout, 429, 5xx, a body that is not JSON)."""


class InvalidReply(ValueError):
    """A reply that does not validate; ``reply`` is what the model said (for the re-ask and the quote)."""

    def __init__(self, error: str, reply: str):
        super().__init__(error)
        self.error, self.reply = error, reply


def load_program(name: str) -> tuple[str, list[dict]]:
    """(system role template, exemplars) of prompt program ``name`` ("gi" or "di")."""
    system = (PROMPTS / f"{name}.md").read_text()
    data = json.loads((PROMPTS / f"{name}.json").read_text())
    return system, data["exemplars"]


def _validation_text(exc: ValidationError) -> str:
    parts = []
    for e in exc.errors()[:4]:
        loc = ".".join(str(p) for p in e["loc"]) or "(reply)"
        parts.append(f"{loc}: {e['msg']}")
    return "; ".join(parts)


def _strip_fences(text: str) -> str:
    t = text.strip()
    m = re.match(r"^```(?:json)?\s*(.*?)\s*```$", t, re.S)
    if m:
        t = m.group(1)
    if not t.startswith("{"):                 # prose around one object: take the outermost braces
        i, j = t.find("{"), t.rfind("}")
        if 0 <= i < j:
            t = t[i:j + 1]
    return t


class _Scrub(logging.Filter):
    """Removes the API key from every log record of the openai client and its HTTP library."""

    def __init__(self, secret: str):
        super().__init__()
        self.secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secret:
            try:
                msg = record.getMessage()
            except Exception:          # noqa: BLE001 - a broken record is not ours to fix
                return True
            if self.secret in msg:
                record.msg, record.args = msg.replace(self.secret, "***"), ()
        return True


class OpenAIPlanner(Planner):
    """GI + DI on an OpenAI-compatible endpoint (see the module docstring).

    ``config``: the ``[planner]`` table (or its fields as keywords); ``skills``: the skill library
    (default: the registry's); ``client``: an ``openai.OpenAI`` to use instead of making one."""

    def __init__(self, config: PlannerConfig | None = None, *, skills: list[SkillSpec] | None = None, client=None,
                 sleep=time.sleep, **fields):
        self.cfg = config if config is not None else PlannerConfig(kind="openai", **fields)
        try:
            import openai
        except ImportError:
            raise PlannerError("the openai planner needs the openai package: pip install 'kinebridge[planner]'") \
                from None
        self._openai = openai
        self._key = os.environ.get(self.cfg.api_key_env)
        if client is None and not self._key:
            raise PlannerError(f"planner.api_key_env: the environment variable {self.cfg.api_key_env} is not set "
                               f"(export it with the endpoint's key; a local server without keys: EMPTY)")
        self._filter = _Scrub(self._key or "")
        for name in ("openai", "httpx2", "httpcore2", "httpx", "httpcore"):
            logging.getLogger(name).addFilter(self._filter)
        self.client = client if client is not None else openai.OpenAI(
            base_url=self.cfg.base_url, api_key=self._key, timeout=self.cfg.timeout_s, max_retries=0)
        self.skills = skills if skills is not None else skill_library()
        self.name = f"openai:{self.cfg.model}"
        self.structured = self.cfg.structured != "json"      # False once a server refused json_schema
        self.endpoint_state = "unknown"                       # ok | down: … (what the node reports)
        self.calls = 0
        self._sleep = sleep
        spec = skill_library_text(self.skills)
        self.programs = {}
        for prog, model in (("gi", GIReply), ("di", Decision)):
            system, exemplars = load_program(prog)
            self.programs[prog] = (system.replace("{skills}", spec), exemplars, model)

    # --------------------------------------------------------------------------------- helpers
    def scrub(self, text: str) -> str:
        """``text`` without the API key (every text this planner returns or records goes through this)."""
        return text.replace(self._key, "***") if self._key and len(self._key) >= 4 else text

    def _system(self, prog: str) -> str:
        system, _, model = self.programs[prog]
        schema = "" if self.structured else (
            "\nReply with a JSON object that validates against this JSON schema:\n"
            + json.dumps(model.model_json_schema(), separators=(",", ":")))
        return system.replace("{schema}", schema)

    def _messages(self, prog: str, history: Dialogue, query) -> list[dict]:
        _, exemplars, _ = self.programs[prog]
        msgs = [{"role": "system", "content": self._system(prog)}]
        for ex in exemplars:
            msgs.append({"role": "user", "content": f"[{prog.upper()}] {ex['query']}"})
            msgs.append({"role": "assistant", "content": json.dumps(ex["response"], separators=(",", ":"))})
        for t in history.turns:              # the shared dialogue: DI sees GI's turns and GI sees DI's
            msgs.append({"role": t.role, "content": t.content})
        msgs.append({"role": "user", "content": query})
        return msgs

    def _request(self, messages: list[dict], model: type[BaseModel]):
        """One request with endpoint retries; returns (parsed model, reply text). Raises InvalidReply,
        EndpointError or PlannerError."""
        oa = self._openai
        delay = self.cfg.backoff_s
        last = None
        for attempt in range(self.cfg.retries + 1):
            if attempt:
                self._sleep(min(delay, 30.0))
                delay *= 2
            self.calls += 1
            try:
                return self._once(messages, model)
            except (oa.APITimeoutError, oa.APIConnectionError, oa.RateLimitError, oa.InternalServerError,
                    EndpointError) as exc:
                last = exc
                self.endpoint_state = f"down: {self._describe(exc)}"
                log.warning("planner endpoint attempt %d/%d failed: %s", attempt + 1, self.cfg.retries + 1,
                            self.scrub(self._describe(exc)))
            except oa.APIStatusError as exc:
                if exc.status_code >= 500:
                    last = exc
                    self.endpoint_state = f"down: {self._describe(exc)}"
                    continue
                if self.structured and self.cfg.structured == "auto" and exc.status_code in (400, 422) \
                        and re.search(r"json_schema|response_format|structured|guided", str(exc), re.I):
                    log.warning("the endpoint refuses json_schema (%s); falling back to JSON instructions",
                                exc.status_code)
                    self.structured = False
                    messages = [dict(messages[0], content=self._system_for(messages, model))] + messages[1:]
                    return self._request(messages, model)
                self.endpoint_state = f"refused: {self._describe(exc)}"
                hint = f" (check {self.cfg.api_key_env})" if exc.status_code in (401, 403) else ""
                raise PlannerError(self.scrub(f"the endpoint refused the request: {self._describe(exc)}{hint}")) \
                    from None
        raise EndpointError(self.scrub(f"endpoint {self.cfg.base_url or 'api.openai.com'} down after "
                                       f"{self.cfg.retries + 1} attempts: {self._describe(last)}"))

    def _system_for(self, messages, model) -> str:
        prog = "gi" if model is GIReply else "di"
        return self._system(prog)

    @staticmethod
    def _describe(exc) -> str:
        code = getattr(exc, "status_code", None)
        text = str(exc).splitlines()[0][:200] if str(exc) else ""
        return f"{type(exc).__name__}{f' {code}' if code else ''}: {text}"

    def _once(self, messages, model):
        oa = self._openai
        kw = dict(model=self.cfg.model, messages=messages, temperature=self.cfg.temperature,
                  max_tokens=self.cfg.max_tokens)
        if self.structured:
            raw = self.client.chat.completions.with_raw_response.parse(response_format=model, **kw)
        else:
            raw = self.client.chat.completions.with_raw_response.create(**kw)
        body = raw.http_response.text
        try:
            content = json.loads(body)["choices"][0]["message"].get("content") or ""
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            content = body
        try:
            resp = raw.parse()
        except json.JSONDecodeError:
            self.endpoint_state = "ok"
            raise InvalidReply("the endpoint's reply is not JSON (a proxy or a server error page?)", body) from None
        except oa.LengthFinishReasonError:
            raise InvalidReply(f"the reply was cut off at max_tokens = {self.cfg.max_tokens} (finish_reason = "
                               "length); answer with the JSON object only, shorter", content) from None
        except oa.ContentFilterFinishReasonError:
            raise InvalidReply("the reply was stopped by the endpoint's content filter", content) from None
        except ValidationError as exc:
            self.endpoint_state = "ok"
            raise InvalidReply(_validation_text(exc), content) from None
        self.endpoint_state = "ok"
        choice = resp.choices[0]
        msg = choice.message
        if getattr(msg, "refusal", None):
            raise InvalidReply(f"the model refused: {msg.refusal}", msg.refusal)
        if self.structured:
            if msg.parsed is None:
                raise InvalidReply("the reply is empty", content)
            return msg.parsed, content
        if choice.finish_reason == "length":
            raise InvalidReply(f"the reply was cut off at max_tokens = {self.cfg.max_tokens} (finish_reason = "
                               "length); answer with the JSON object only, shorter", content)
        try:
            return model.model_validate_json(_strip_fences(content)), content
        except ValidationError as exc:
            raise InvalidReply(_validation_text(exc), content) from None

    def _ask_program(self, prog: str, history: Dialogue, query, check=None):
        """Run one program turn: request, validate (+ ``check``), re-ask once with the error. Returns the
        parsed reply; records the query and the valid reply in ``history``; raises InvalidReply with the
        second error, EndpointError, PlannerError."""
        model = self.programs[prog][2]
        messages = self._messages(prog, history, query)
        for attempt in range(2):
            try:
                parsed, text = self._request(messages, model)
                if check is not None:
                    err = check(parsed)
                    if err:
                        raise InvalidReply(err, text)
            except InvalidReply as bad:
                if attempt == 1:
                    raise
                log.info("%s reply invalid, re-asking once: %s", prog.upper(), self.scrub(bad.error))
                messages = messages + [
                    {"role": "assistant", "content": bad.reply[:4000] or "(empty)"},
                    {"role": "user", "content": f"[{prog.upper()}] Your reply was invalid: {bad.error}. Reply again "
                                                f"with only the JSON object, following the output control."}]
                continue
            text_query = query if isinstance(query, str) else next(p["text"] for p in query if p["type"] == "text")
            history.add("user", self.scrub(text_query), prog.upper())
            history.add("assistant", self.scrub(parsed.model_dump_json()), prog.upper())
            return parsed
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------------------------ decide
    def decide(self, instruction: str, candidates: list[Candidate], image=None,
               history: Dialogue | None = None) -> Decision:
        history = history if history is not None else Dialogue()
        try:
            d = self._decide(instruction, candidates, image, history)
        except InvalidReply as bad:
            quote = bad.reply.strip().replace("\n", " ")
            quote = quote[:QUOTE] + ("…" if len(quote) > QUOTE else "")
            d = Decision.failed(self.scrub(f"the model's reply stayed invalid after one re-ask: {bad.error}; "
                                           f"reply: {quote!r}"))
        except EndpointError as exc:
            d = Decision.failed(self.scrub(str(exc)))
        except PlannerError as exc:
            d = Decision.failed(self.scrub(str(exc)))
        history.last_decision = d
        return d

    def _decide(self, instruction, candidates, image, history) -> Decision:
        note = ""
        last = history.last_decision
        if last is not None and last.status == "ask":
            note = f"\n(This answers your question in this dialogue: {last.question!r}.)"
        skills = [s.name for s in self.skills]

        def check_gi(g: GIReply):
            if g.status == "ok" and g.skill not in skills:
                return f"skill {g.skill!r} is not in the skill library {skills}"
            if g.status == "ask" and not g.question:
                return "status ask needs the question"
            return None

        self.standard_instruction = None
        gi = self._ask_program("gi", history, f"[GI] Instruction: {instruction}{note}", check_gi)
        self.standard_instruction = self.scrub(gi.instruction) or None
        if gi.status == "failed":
            return Decision.failed(self.scrub(gi.reason or "GI: no skill does this"))
        if gi.status == "ask":
            return Decision.ask(self.scrub(gi.question), self.scrub(gi.reason))
        text = (f"[DI] Standardised instruction (GI): {gi.instruction}\nCandidates: "
                + json.dumps([c.brief() for c in candidates], separators=(",", ":")))
        query = text
        if image is not None and self.cfg.image:
            from kinebridge.runtime.planner.image import data_url, draw_ids

            url = image if isinstance(image, str) else data_url(draw_ids(image, candidates))
            query = [{"type": "text", "text": text + "\nThe frame shows the candidate ids drawn at their objects."},
                     {"type": "image_url", "image_url": {"url": url}}]

        def check_di(d: Decision):
            c = d.check(candidates, skills)
            return c.reason if c.status == "failed" and d.status == "decided" else None

        d = self._ask_program("di", history, query, check_di)
        return d.model_copy(update={"reason": self.scrub(d.reason), "question": d.question and self.scrub(d.question)})

    def close(self) -> None:
        for name in ("openai", "httpx2", "httpcore2", "httpx", "httpcore"):
            logging.getLogger(name).removeFilter(self._filter)
        try:
            self.client.close()
        except Exception:  # noqa: BLE001
            pass
