"""The planner interface: ``Planner.decide(instruction, candidates, image=None, history=None) -> Decision``.

A :class:`Decision` is one of

* **decided** — a ``skill`` of the skill library and the ``target`` candidate's id, optionally ordered
  CLAP-style ``subtasks``: each a skill, its target and the keypoints it acts on named in language
  ("rim of the green mug (mug1) opposite its handle");
* **ask** — a clarifying ``question``, when the instruction does not single out one target: a planner
  never guesses;
* **failed** — the ``reason`` (no such skill, an endpoint that is down, a reply that stayed invalid).

The same pydantic models are the structured-output schema the VLM answers in (strict: every field
present, no others), so what a model replies is validated exactly as what the local planner builds.
A :class:`Dialogue` is the multi-turn history of one conversation with the user: its turns (shared by
the prompt programs, so DI sees GI's) and the question pending, if any, so an answer is resolved in
the same dialogue.
"""

from __future__ import annotations

import abc
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from kinebridge.runtime.planner.candidates import Candidate

__all__ = ["Decision", "SubTask", "KeypointRef", "Turn", "Dialogue", "Planner", "PlannerError", "SkillSpec",
           "skill_library", "skill_library_text", "make_planner"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KeypointRef(_Strict):
    """A keypoint a sub-task acts on: which object, which semantic keypoint, and how to say it."""

    object: str = Field(description="candidate id (or 'tool' for the held object)")
    keypoint: str = Field(description="semantic keypoint name: K_i, K_p1, K_p2, K_b")
    phrase: str = Field(description="the keypoint in words, e.g. 'rim of the green mug (mug1)'")


class SubTask(_Strict):
    """One step of a decided task (CLAP: sub-tasks with language-aligned keypoints)."""

    skill: str = Field(description="a skill of the skill library")
    target: str = Field(description="candidate id this step acts on")
    description: str = Field(description="the step in words")
    keypoints: list[KeypointRef] = Field(description="the target keypoints of this step, named in language")


class Decision(_Strict):
    """What the decision layer chose (see the module docstring). ``status`` decides which fields matter:
    decided → skill, target (and subtasks); ask → question; failed → reason."""

    status: Literal["decided", "ask", "failed"]
    skill: str | None = Field(description="decided: the skill name from the skill library; else null")
    target: str | None = Field(description="decided: the id of the candidate the skill acts on; else null")
    question: str | None = Field(description="ask: the clarifying question for the user; else null")
    reason: str = Field(description="why: the rationale (decided), what is ambiguous (ask), the error (failed)")
    subtasks: list[SubTask] = Field(description="decided: the ordered sub-tasks (may be empty); else empty")

    @model_validator(mode="after")
    def _consistent(self):
        if self.status == "decided" and (not self.skill or not self.target):
            raise ValueError("a decided decision names its skill and its target")
        if self.status == "ask" and not self.question:
            raise ValueError("an ask decision carries the question")
        return self

    @classmethod
    def decided(cls, skill: str, target: str, reason: str = "", subtasks=()) -> "Decision":
        return cls(status="decided", skill=skill, target=target, question=None, reason=reason, subtasks=list(subtasks))

    @classmethod
    def ask(cls, question: str, reason: str = "") -> "Decision":
        return cls(status="ask", skill=None, target=None, question=question, reason=reason, subtasks=[])

    @classmethod
    def failed(cls, reason: str) -> "Decision":
        return cls(status="failed", skill=None, target=None, question=None, reason=reason, subtasks=[])

    def check(self, candidates: list[Candidate], skills: list[str] | None = None) -> "Decision":
        """This decision if its skill and target exist; else a failed one naming what does not."""
        if self.status != "decided":
            return self
        ids = [c.id for c in candidates]
        names = skills if skills is not None else [s.name for s in skill_library()]
        bad = []
        if self.skill not in names:
            bad.append(f"skill {self.skill!r} is not in the skill library {names}")
        for t in [self.target] + [s.target for s in self.subtasks]:
            if t not in ids:
                bad.append(f"target {t!r} is not a candidate {ids}")
        for s in self.subtasks:
            if s.skill not in names:
                bad.append(f"sub-task skill {s.skill!r} is not in the skill library {names}")
        return Decision.failed("; ".join(dict.fromkeys(bad))) if bad else self

    def to_body(self, instruction: str, planner: str, **kw):
        """The ``planner/decision`` message body (``kw``: dialogue_id, standard_instruction, candidates,
        latency_ms)."""
        from kinebridge.runtime.bus import messages as M

        return M.Decision(instruction=instruction[:4000], status=self.status, skill=self.skill, target=self.target,
                          question=self.question, reason=self.reason[:4000] or None,
                          subtasks=[s.model_dump() for s in self.subtasks][:32], planner=planner[:200], **kw)


@dataclass
class Turn:
    """One message of a dialogue: who said it, in which prompt program (GI, DI, local), what."""

    role: Literal["user", "assistant"]
    content: str
    program: str = ""


@dataclass
class Dialogue:
    """The history of one conversation: the turns so far and the question pending, if any.

    A planner appends the user's instruction and its own replies (``turns``) and, when it asks, keeps
    what it needs to resolve the answer (``pending``, planner-specific). Every prompt program of an
    :class:`~kinebridge.runtime.planner.openai_planner.OpenAIPlanner` sees every turn, so DI sees GI's."""

    id: str = ""
    turns: list[Turn] = field(default_factory=list)
    pending: Any = None
    last_decision: Decision | None = None
    updated: float = field(default_factory=time.monotonic)

    def add(self, role: str, content: str, program: str = "") -> None:
        self.turns.append(Turn(role, content, program))
        self.updated = time.monotonic()

    def transcript(self) -> list[str]:
        return [f"{t.role}{f' [{t.program}]' if t.program else ''}: {t.content}" for t in self.turns]


class PlannerError(RuntimeError):
    """A planner that cannot run at all (bad configuration, a missing package); the text says the fix."""


class Planner(abc.ABC):
    """Decides on one instruction against the candidates in view; never guesses (see :class:`Decision`)."""

    name: str = "planner"
    #: the last instruction in standard form (GI's, or the local grammar's), for the decision message
    standard_instruction: str | None = None

    @abc.abstractmethod
    def decide(self, instruction: str, candidates: list[Candidate], image=None,
               history: Dialogue | None = None) -> Decision:
        """``image``: the frame (H, W, 3 uint8) or a PNG data URL, with candidate ids drawn or to draw;
        ``history``: the dialogue this instruction belongs to (appended to)."""


# ------------------------------------------------------------------------------------- the skill library
class SkillSpec(_Strict):
    """A skill as a planner is told about it: name, what it does, its task parameters."""

    name: str
    description: str
    params: dict[str, str] = Field(default_factory=dict)
    targets: list[str] = Field(default_factory=list, description="candidate classes the skill may act on")


#: candidate classes each bundled skill may act on (a skill not listed acts on any class)
SKILL_TARGETS: dict[str, tuple[str, ...]] = {"pour": ("mug", "bowl")}


def skill_library() -> list[SkillSpec]:
    """The skill library as :mod:`kinebridge.runtime.skills.registry` defines it (imported here, lazily:
    it loads the kernels)."""
    from kinebridge.runtime.skills import registry

    return [SkillSpec(name=e.name, description=e.description, params=dict(e.params),
                      targets=list(SKILL_TARGETS.get(e.name, ())))
            for e in (registry.entry(n) for n in registry.skill_names())]


def skill_library_text(skills: list[SkillSpec] | None = None) -> str:
    """The skill-library specification for a prompt, one skill per line."""
    lines = []
    for s in skills if skills is not None else skill_library():
        params = "; ".join(f"{k}: {v}" for k, v in s.params.items()) or "frames only"
        targets = ", ".join(s.targets) or "any object"
        lines.append(f"- {s.name}: {s.description}. Acts on: {targets}. Task parameters (filled in by the bridge "
                     f"layer from the target's keypoints, not by you): {params}.")
    return "\n".join(lines)


def make_planner(cfg) -> Planner:
    """The planner a ``[planner]`` table names (``kind`` local or openai)."""
    if cfg.kind == "local":
        from kinebridge.runtime.planner.local_planner import LocalPlanner

        return LocalPlanner()
    if cfg.kind == "openai":
        from kinebridge.runtime.planner.openai_planner import OpenAIPlanner

        return OpenAIPlanner(cfg)
    raise PlannerError(f"planner.kind: unknown planner {cfg.kind!r}; choose local or openai")
