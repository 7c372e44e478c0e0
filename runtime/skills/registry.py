"""The skills kinebridge knows: bundled skill files, and how each turns task parameters into frames.

A :class:`SkillEntry` names a skill, the bundled file it is loaded from, the task parameters it takes
(``params`` of a ``task`` message) and the function that resolves them into the goal frame —
``{"cup": [x, y, z, yaw°]}`` is the pour skill's; every skill also takes its frames directly
(``goal`` / ``start`` as x, y, z, qw, qx, qy, qz). A skill given by path (a ``.npz`` written by
:meth:`~kinebridge.runtime.skills.format.Skill.save`) takes frames only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from kinebridge.kernels.lfe_kmp import TaskFrame
from kinebridge.runtime.skills import pour
from kinebridge.runtime.skills.format import Skill

__all__ = ["SkillEntry", "SKILLS", "SKILL_DIR", "skill_names", "entry", "load_skill", "bundled_skill",
           "write_bundled_skills", "resolve_goal", "check_skill_spec"]

SKILL_DIR = Path(__file__).parent


@dataclass(frozen=True)
class SkillEntry:
    name: str
    description: str
    make: Callable[[], Skill]                       # regenerates the bundled file's content
    params: dict[str, str] = field(default_factory=dict)   # task parameter → what it is
    goal: Callable[[dict], TaskFrame] | None = None         # task parameters → goal frame

    @property
    def file(self) -> Path:
        return SKILL_DIR / f"{self.name}.npz"


SKILLS: dict[str, SkillEntry] = {e.name: e for e in (
    SkillEntry("pour", "carry a held mug from its grasp pose to a cup and tilt it over the cup", pour.pouring_skill,
               {"cup": "[x, y, z (m), yaw (°)] of the target cup in the arm's base frame"}, pour.goal_from_params),
)}


def skill_names() -> list[str]:
    return sorted(SKILLS)


def entry(name: str) -> SkillEntry:
    try:
        return SKILLS[name]
    except KeyError:
        raise ValueError(f"unknown skill {name!r}; bundled skills: {skill_names()} (or give a skill .npz path)") from None


def _is_path(spec: str) -> bool:
    return spec.endswith(".npz") or "/" in spec


def check_skill_spec(spec: str, where: str = "trajectory.skill") -> str:
    """``spec`` if it names a bundled skill or an existing skill file; ValueError naming ``where``."""
    if _is_path(spec):
        if not Path(spec).is_file():
            raise ValueError(f"{where}: no skill file {spec!r} (or give a bundled name: {skill_names()})")
    elif spec not in SKILLS:
        raise ValueError(f"{where}: unknown skill {spec!r}; bundled skills: {skill_names()} (or a .npz path)")
    return spec


def bundled_skill(name: str = "pour") -> Skill:
    e = entry(name)
    if not e.file.is_file():
        raise ValueError(f"the bundled skill file {e.file} is missing; regenerate it with "
                         f"kinebridge.runtime.skills.registry.write_bundled_skills()")
    return Skill.load(e.file)


def load_skill(spec: str) -> Skill:
    """A bundled skill by name, or a skill file by path."""
    check_skill_spec(spec, "skill")
    return Skill.load(spec) if _is_path(spec) else bundled_skill(spec)


def resolve_goal(spec: str, params: dict) -> TaskFrame:
    """The goal frame of skill ``spec`` for task parameters ``params``; ValueError naming what is wrong."""
    e = SKILLS.get(spec) if not _is_path(spec) else None
    if e is None or e.goal is None:
        raise ValueError(f"skill {spec!r} takes no task parameters; give the goal frame as "
                         f"'goal' = [x, y, z, qw, qx, qy, qz]")
    unknown = sorted(set(params) - set(e.params))
    if unknown:
        raise ValueError(f"skill {spec!r} takes params {sorted(e.params)}, got unknown {unknown}")
    return e.goal(params)


def write_bundled_skills(directory: Path | None = None) -> list[Path]:
    """(Re)generate the skill files shipped with kinebridge."""
    d = Path(directory) if directory is not None else SKILL_DIR
    d.mkdir(parents=True, exist_ok=True)
    out = []
    for e in SKILLS.values():
        path = d / f"{e.name}.npz"
        e.make().save(path)
        out.append(path)
    return out
