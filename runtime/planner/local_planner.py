"""The embedded offline planner: a small deterministic grammar over the skill library and the candidates.

No model, no network: the instruction is matched against keyword tables and a handful of phrase
patterns, and the resulting constraints are applied to the candidates' attributes. The grammar:

    instruction := step (("then" | "and then" | "after that" | ";") step)*
    step        := [skill words] target [post-modifier]*
    target      := [det] [ordinal] [colour | size | position]* [class noun | "one" | id]
    post        := "on the left/right" | "at the front/back" | "in the middle"
                 | "with the handle (pointing) left/right/towards the camera/away"
                 | "(second|third|…) from the left/right/front/back"
                 | "closest to the camera/me/the robot" | "farthest from …"
                 | relation reference
    relation    := "next to" | "beside" | "near" | "by" | "closest to" | "left of" | "right of"
                 | "in front of" | "behind"
    reference   := [det] [colour | size]* class noun | id   (must itself single out one object)

Constraints are *filters* (class, id, colour, handle side, left of / behind a reference) and *rankers*
(leftmost, nearest the camera, tallest, second from the left, nearest a reference). A step is decided
only when the filters leave candidates and every ranker picks the same one by a clear margin
(:data:`~kinebridge.runtime.planner.candidates.MARGIN_M` = 3 cm, sizes 3 %); otherwise — no target
words ("pour me some water"), a deictic ("the cup over there"), a tie, a negation, a reference that is
itself ambiguous — it asks, naming the candidates it could mean. It never guesses. The question is
kept in the dialogue, and the answer ("the left one", "mug2", "the one next to the blue box") is
resolved among the candidates the question was about.

Left/right/front/behind are as seen from the camera (:mod:`~kinebridge.runtime.planner.candidates`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

import numpy as np

from kinebridge.runtime.planner.base import Decision, Dialogue, KeypointRef, Planner, SkillSpec, SubTask, skill_library
from kinebridge.runtime.planner.candidates import (CLASS_WORDS, MARGIN_M, SIZE_MARGIN, Candidate, describe,
                                                   keypoint_phrase)

__all__ = ["LocalPlanner", "SKILL_WORDS", "parse_step", "Constraints"]

#: skill → words that ask for it (a skill not listed is asked for by its name)
SKILL_WORDS: dict[str, tuple[str, ...]] = {
    "pour": ("pour", "fill", "refill", "top up", "water", "serve", "coffee", "tea", "juice", "milk", "drink"),
}
#: per skill: which keypoints of the target each sub-task acts on, and how the step is said
SKILL_STEPS: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    "pour": (("bring the held mug's rim over the {d}", ("K_p1", "K_i")),
             ("tilt the held mug to pour into the {d} without touching its handle", ("K_i", "K_b"))),
}
#: verbs of manipulations no bundled skill does (an instruction with one of them and no skill word fails)
OTHER_VERBS = ("pick", "grab", "take", "lift", "move", "push", "put", "place", "stack", "open", "close", "wipe",
               "clean", "throw", "give", "hand", "bring", "shake", "knock", "drop", "rotate", "turn", "slide",
               "carry", "hold", "flip", "sweep", "pull", "stir", "wash", "empty", "tidy", "sort", "arrange")
COLOR_WORDS = {"red": "red", "crimson": "red", "orange": "orange", "yellow": "yellow", "gold": "yellow",
               "green": "green", "lime": "green", "cyan": "cyan", "teal": "cyan", "turquoise": "cyan", "blue": "blue",
               "navy": "blue", "purple": "purple", "violet": "purple", "pink": "pink", "magenta": "pink",
               "brown": "brown", "white": "white", "grey": "grey", "gray": "grey", "black": "black"}
#: size word → (measure, +1 largest / −1 smallest)
SIZE_WORDS = {}
for _ws, _key in ((("big", "bigger", "biggest", "large", "larger", "largest", "huge"), ("volume", 1)),
                  (("small", "smaller", "smallest", "little", "tiny", "mini"), ("volume", -1)),
                  (("tall", "taller", "tallest", "high", "higher", "highest"), ("height", 1)),
                  (("short", "shorter", "shortest", "low", "lower", "lowest", "squat"), ("height", -1)),
                  (("wide", "wider", "widest", "fat", "fatter", "fattest", "broad"), ("width", 1)),
                  (("narrow", "narrower", "narrowest", "thin", "thinner", "thinnest", "slim", "skinny"), ("width", -1))):
    for _w in _ws:
        SIZE_WORDS[_w] = _key
NOUNS = {w: cls for cls, words in CLASS_WORDS.items() for w in words}
NOUNS.update({w + "s": cls for w, cls in list(NOUNS.items())} | {"glasses": "mug", "boxes": "box", "dishes": "plate"})
PRONOUNS = ("one", "it", "that", "this", "them")
NEGATIONS = ("not", "except", "other", "another", "else", "isn't", "don't", "no")
ORDINALS = {"first": 0, "1st": 0, "second": 1, "2nd": 1, "third": 2, "3rd": 2, "fourth": 3, "4th": 3,
            "fifth": 4, "5th": 4}
_DIRECTIONS = {"left": "left", "right": "right", "front": "near_cam", "back": "far_cam"}
_RELATIONS = (("to the left of", "left_of"), ("left of", "left_of"), ("to the right of", "right_of"),
              ("right of", "right_of"), ("in front of", "front_of"), ("behind", "behind"), ("next to", "near"),
              ("beside", "near"), ("besides", "near"), ("nearest to", "near"), ("closest to", "near"),
              ("close to", "near"), ("nearest", "near"), ("closest", "near"), ("near", "near"), ("by", "near"))
_VIEWER = r"(?:me|you|us|the camera|camera|the viewer|the user)"
_ROBOT = r"(?:the robot|robot|the arm|arm|the base|base|the robot arm)"
_STEP_SPLIT = re.compile(r"\s*(?:\band then\b|\bthen\b|\bafter that\b|\bafterwards\b|\band also\b|;)\s*")


@dataclass
class Constraints:
    """What a step says about its target (see the module docstring)."""

    classes: set = field(default_factory=set)
    ids: list = field(default_factory=list)
    colors: list = field(default_factory=list)
    handle: str | None = None
    rankers: list = field(default_factory=list)          # ("pos", key) | ("size", measure, sign) | ("ord", k, dir)
    relations: list = field(default_factory=list)        # (rel, Constraints of the reference)
    negated: bool = False
    words: list = field(default_factory=list)            # the words that carried a constraint (for the reason)

    def empty(self) -> bool:
        return not (self.ids or self.colors or self.handle or self.rankers or self.relations)

    def merged(self, other: "Constraints") -> "Constraints":
        return Constraints(self.classes | other.classes, self.ids + other.ids, self.colors + other.colors,
                           other.handle or self.handle, self.rankers + other.rankers, self.relations + other.relations,
                           self.negated or other.negated, self.words + other.words)


def _norm(text: str, ids: list[str]) -> str:
    t = " " + text.lower().replace("’", "'") + " "
    t = re.sub(r"[^\w'\s;-]", " ", t)
    t = t.replace("-", " ")
    for i in sorted(ids, key=len, reverse=True):      # "mug 1" → "mug1" when mug1 is a candidate
        m = re.match(r"^([a-z_]+?)(\d+)$", i.lower())
        if m:
            t = re.sub(rf"\b{m.group(1)}\s+(?:number\s+|no\s+|#\s*)?{m.group(2)}\b", i.lower(), t)
    return re.sub(r"\s+", " ", t).strip()


def _find_skill(text: str, skills: list[SkillSpec]) -> tuple[str | None, str | None]:
    """(skill, the word that named it) — or (None, an unknown manipulation verb if one is there)."""
    for s in skills:
        for w in (s.name,) + SKILL_WORDS.get(s.name, ()):
            if re.search(rf"\b{re.escape(w)}\w*", text):
                return s.name, w
    for v in OTHER_VERBS:
        if re.search(rf"\b{v}(?:s|ed|ing)?\b", text):
            return None, v
    return None, None


def _parse_np(text: str, c: Constraints, ids: set[str], ref: bool = False) -> None:
    """Adjectives, nouns and ids of a noun phrase into ``c`` (in place)."""
    for tok in text.split():
        if tok in ids:
            c.ids.append(tok)
            c.words.append(tok)
        elif tok in NOUNS:
            c.classes.add(NOUNS[tok])
        elif tok in COLOR_WORDS:
            c.colors.append(COLOR_WORDS[tok])
            c.words.append(tok)
        elif tok in SIZE_WORDS:
            c.rankers.append(("size",) + SIZE_WORDS[tok])
            c.words.append(tok)
        elif not ref and tok in ("left", "leftmost", "lefthand"):
            c.rankers.append(("pos", "left"))
            c.words.append(tok)
        elif not ref and tok in ("right", "rightmost", "righthand"):
            c.rankers.append(("pos", "right"))
            c.words.append(tok)
        elif not ref and tok in ("front", "nearest", "closest", "near", "nearer", "closer", "foremost"):
            c.rankers.append(("pos", "near_cam"))
            c.words.append(tok)
        elif not ref and tok in ("back", "rear", "far", "farthest", "furthest", "farther", "further", "behind",
                                 "backmost", "hindmost"):
            c.rankers.append(("pos", "far_cam"))
            c.words.append(tok)
        elif not ref and tok in ("middle", "center", "centre", "central"):
            c.rankers.append(("pos", "middle"))
            c.words.append(tok)
        elif tok in NEGATIONS:
            c.negated = True


def parse_step(text: str, ids: set[str]) -> Constraints:
    """The constraints a step puts on its target (``text`` normalised by :func:`_norm`)."""
    c = Constraints()
    t = f" {text} "
    # handle side first ("with the handle on the left" is not a position)
    m = re.search(r"\b(?:with|whose|that has|which has|having)?\s*(?:its |the |a )?handles?\s+(?:is |are )?"
                  r"(?:pointing|points|point|facing|faces|face|turned|sticking out|on|to|towards|toward)?\s*"
                  rf"(?:to |on )?(?:the )?(left|right|towards? {_VIEWER}|away(?: from {_VIEWER})?|front|back)\b", t)
    if m:
        w = m.group(1)
        c.handle = ("left" if w == "left" else "right" if w == "right" else
                    "away from the camera" if w.startswith("away") or w == "back" else "towards the camera")
        c.words.append(m.group(0).strip())
        t = t[:m.start()] + " " + t[m.end():]
    # viewer/robot distances ("closest to me", "farthest from the robot") before generic relations
    for pat, key in ((rf"\b(?:closest|nearest|close|near|next)(?: to)? {_VIEWER}\b", "near_cam"),
                     (rf"\b(?:farthest|furthest|far) (?:away )?from {_VIEWER}\b", "far_cam"),
                     (rf"\b(?:closest|nearest|close|near|next)(?: to)? {_ROBOT}\b", "near_robot"),
                     (rf"\b(?:farthest|furthest|far) (?:away )?from {_ROBOT}\b", "far_robot")):
        m = re.search(pat, t)
        if m:
            c.rankers.append(("pos", key))
            c.words.append(m.group(0).strip())
            t = t[:m.start()] + " " + t[m.end():]
    # ordinals: "the second (mug) from the left", "the third one from the right"
    m = re.search(r"\b(first|second|third|fourth|fifth|1st|2nd|3rd|4th|5th|last)\s+(?:\w+\s+){0,2}?from\s+the\s+"
                  r"(left|right|front|back)\b", t)
    if m:
        k = -1 if m.group(1) == "last" else ORDINALS[m.group(1)]
        c.rankers.append(("ord", k, _DIRECTIONS[m.group(2)]))
        c.words.append(m.group(0).strip())
        between = m.group(0).split()[1:-3]
        _parse_np(" ".join(between), c, ids)
        t = t[:m.start()] + " " + t[m.end():]
    elif re.search(r"\b(first|second|third|fourth|fifth|1st|2nd|3rd|4th|5th)\b", t):
        c.rankers.append(("ord", None, None))             # "the second mug": second from where? ambiguous
        c.words.append(re.search(r"\b(first|second|third|fourth|fifth|1st|2nd|3rd|4th|5th)\b", t).group(0))
    # relations to a reference object: "next to the blue box", "left of mug2"
    while True:
        hit = None
        for phrase, rel in _RELATIONS:
            m = re.search(rf"\b{phrase}\s+((?:the |a |that |this )?(?:\w+\s+){{0,3}}?)"
                          rf"({'|'.join(sorted(NOUNS, key=len, reverse=True))}|{'|'.join(sorted(ids, key=len, reverse=True)) or '_'})\b", t)
            if m and (hit is None or m.start() < hit[0].start()):
                hit = (m, rel)
        if hit is None:
            break
        m, rel = hit
        r = Constraints()
        _parse_np(m.group(1) + " " + m.group(2), r, ids, ref=True)
        c.relations.append((rel, r))
        c.words.append(m.group(0).strip())
        t = t[:m.start()] + " " + t[m.end():]
    # "far left", "furthest to the right", "most left": a side, not a distance from the camera
    t = re.sub(r"\b(?:far|farthest|furthest|most|the very)\s+(?:to\s+the\s+|to\s+)?(left|right)\b", r" \1 ", t)
    # "behind" / "in front" alone are positions
    t = re.sub(r"\bin front\b", " front ", t)
    t = re.sub(r"\b(?:on|at|to|in) the (left|right|front|back|middle|center|centre)(?: side)?(?: of the table)?\b",
               r" \1 ", t)
    t = re.sub(r"\bover there\b|\bthere\b|\bhere\b", " ", t)
    _parse_np(t, c, ids)
    return c


# ------------------------------------------------------------------------------------------ resolve
def _measure(c: Candidate, what: str) -> float | None:
    if c.size is None:
        return None
    w, d, h = c.size
    return {"volume": w * d * h, "height": h, "width": max(w, d)}[what]


def _key(c: Candidate, key: str) -> float:
    lat, depth = c.view
    return {"left": lat, "right": -lat, "near_cam": depth, "far_cam": -depth,
            "near_robot": float(np.hypot(*c.position[:2])), "far_robot": -float(np.hypot(*c.position[:2]))}[key]


def _unique_min(pool: list[Candidate], values: list[float], margin: float) -> Candidate | None:
    order = np.argsort(values, kind="stable")
    if len(pool) == 1:
        return pool[0]
    if values[order[1]] - values[order[0]] >= margin:
        return pool[int(order[0])]
    return None


def _rank(pool: list[Candidate], ranker: tuple, refs: dict) -> tuple[Candidate | None, str]:
    """The one candidate ``ranker`` picks from ``pool`` by a clear margin, or (None, why not)."""
    kind = ranker[0]
    if kind == "pos":
        key = ranker[1]
        if key == "middle":
            if len(pool) % 2 == 0:
                return None, f"there is no middle one of {len(pool)}"
            lat = sorted(pool, key=lambda c: c.view[0])
            gaps = np.diff([c.view[0] for c in lat])
            if len(pool) == 1 or all(g >= MARGIN_M for g in gaps):
                return lat[len(pool) // 2], ""
            return None, "they stand too close side by side to tell which is in the middle"
        got = _unique_min(pool, [_key(c, key) for c in pool], MARGIN_M)
        return got, "" if got else f"two of them are about as far {key.replace('_', ' ')}"
    if kind == "size":
        _, what, sign = ranker
        vals = [_measure(c, what) for c in pool]
        if any(v is None for v in vals):
            return None, "their sizes are not known"
        got = _unique_min(pool, [-sign * float(np.log(v)) for v in vals], float(np.log1p(SIZE_MARGIN)))
        return got, "" if got else f"they are about the same {what}"
    if kind == "ord":
        _, k, direction = ranker
        if k is None:
            return None, "an ordinal needs a direction (from the left, from the right, …)"
        key = {"left": "left", "right": "right", "near_cam": "near_cam", "far_cam": "far_cam"}[direction]
        order = sorted(pool, key=lambda c: _key(c, key))
        vals = [_key(c, key) for c in order]
        k = len(order) - 1 if k == -1 else k
        if k >= len(order):
            return None, f"there are only {len(order)}"
        gaps_ok = all(vals[j + 1] - vals[j] >= MARGIN_M for j in range(max(0, k - 1), min(k + 1, len(vals) - 1)))
        return (order[k], "") if gaps_ok else (None, "they stand too close together to count them")
    if kind == "near":
        ref = refs[id(ranker)]
        d = [float(np.hypot(c.position[0] - ref.position[0], c.position[1] - ref.position[1])) for c in pool]
        got = _unique_min(pool, d, MARGIN_M)
        return got, "" if got else f"two of them are about as close to {ref.id}"
    raise AssertionError(ranker)


class _Ask(Exception):
    def __init__(self, question: str, reason: str, pool: list[Candidate]):
        super().__init__(reason)
        self.question, self.reason, self.pool = question, reason, pool


class _Fail(Exception):
    pass


def _noun(classes) -> str:
    return " or ".join(sorted(classes)) if classes else "object"


def _which(pool: list[Candidate], classes, lead: str = "") -> str:
    noun = _noun({c.cls for c in pool} or classes)
    listed = "; ".join(describe(c) for c in pool)
    return f"{lead}Which {noun} do you mean: {listed}?"


def _resolve(cons: Constraints, cands: list[Candidate], classes: set[str], pool_ids: list[str] | None = None,
             ) -> Candidate:
    """The candidate ``cons`` single out (raises :class:`_Ask` or :class:`_Fail`)."""
    pool = [c for c in cands if (not classes or c.cls in classes)]
    if pool_ids is not None:
        pool = [c for c in pool if c.id.lower() in pool_ids]
    if cons.negated:
        raise _Ask(_which(pool, classes, "I do not resolve negations ('not', 'other') reliably. "), "negation", pool)
    if cons.ids:
        named = [c for c in cands if c.id.lower() in cons.ids]
        if len(set(cons.ids)) > 1:
            raise _Ask(f"You named {', '.join(sorted(set(cons.ids)))}: which one?", "several ids named", named)
        if not named:
            raise _Fail(f"no candidate {cons.ids[0]!r}")
        if classes and named[0].cls not in classes:
            raise _Fail(f"{named[0].id} is a {named[0].cls}; this skill acts on {_noun(classes)}")
        pool = named
    if cons.colors:
        want = set(cons.colors)
        if len(want) > 1:
            raise _Ask(_which(pool, classes, f"You said {' and '.join(sorted(want))}. "), "two colours", pool)
        pool = [c for c in pool if c.color in want]
    if cons.handle:
        pool = [c for c in pool if c.handle == cons.handle]
    refs = {}
    rankers = list(cons.rankers)
    for rel, rc in cons.relations:
        ref_pool = [c for c in cands if (not rc.classes or c.cls in rc.classes)]
        try:
            ref = _resolve(rc, cands, rc.classes or set())
        except _Ask as a:
            noun = _noun(rc.classes)
            raise _Ask(f"Which {noun} do you mean as the reference: {'; '.join(describe(c) for c in a.pool or ref_pool)}?",
                       f"the reference {noun} is ambiguous", a.pool or ref_pool) from None
        except _Fail as f:
            raise _Ask(f"I do not see that reference ({f}). " + _which(pool, classes), str(f), pool) from None
        pool = [c for c in pool if c.id != ref.id]
        lat, depth = ref.view
        if rel == "left_of":
            pool = [c for c in pool if c.view[0] < lat - MARGIN_M]
        elif rel == "right_of":
            pool = [c for c in pool if c.view[0] > lat + MARGIN_M]
        elif rel == "front_of":
            pool = [c for c in pool if c.view[1] < depth - MARGIN_M]
        elif rel == "behind":
            pool = [c for c in pool if c.view[1] > depth + MARGIN_M]
        else:
            r = ("near", ref.id)
            refs[id(r)] = ref
            rankers.append(r)
    if not pool:
        everything = [c for c in cands if not classes or c.cls in classes]
        said = " ".join(cons.words) or _noun(classes)
        raise _Ask(f"I see no {_noun(classes)} matching '{said}'. " + _which(everything, classes),
                   "nothing matches", everything)
    if not rankers:
        if len(pool) == 1:
            return pool[0]
        raise _Ask(_which(pool, classes, f"I see {len(pool)} that fit. "), "the instruction fits several", pool)
    picks, why = [], []
    for r in rankers:
        got, reason = _rank(pool, r, refs)
        if got is None:
            why.append(reason)
        else:
            picks.append(got)
    if why:
        raise _Ask(_which(pool, classes, f"I cannot tell ({why[0]}). "), why[0], pool)
    if len({c.id for c in picks}) > 1:
        raise _Ask(_which(pool, classes, "Your description fits more than one. "), "the words point at different ones",
                   pool)
    return picks[0]


@dataclass
class _Pending:
    """What a question of the local planner left open: the skill, the step's constraints, the candidates
    it asked about, the sub-tasks decided before it and the steps after it."""

    skill: str | None
    classes: set
    cons: Constraints
    pool: list
    done: list
    rest: list


class LocalPlanner(Planner):
    """The embedded offline planner (see the module docstring)."""

    name = "local"

    def __init__(self, skills: list[SkillSpec] | None = None):
        self.skills = skills if skills is not None else skill_library()

    def _targets(self, skill: str | None) -> set[str]:
        for s in self.skills:
            if s.name == skill:
                return set(s.targets)
        return set()

    def decide(self, instruction: str, candidates: list[Candidate], image=None,
               history: Dialogue | None = None) -> Decision:
        history = history if history is not None else Dialogue()
        history.add("user", instruction, "local")
        d = self._decide(instruction, list(candidates), history)
        d = d.check(candidates, [s.name for s in self.skills])
        history.last_decision = d
        history.add("assistant", d.question if d.status == "ask" else
                    (f"{d.skill} → {d.target}" if d.status == "decided" else f"failed: {d.reason}"), "local")
        return d

    def _decide(self, instruction: str, cands: list[Candidate], history: Dialogue) -> Decision:
        ids = {c.id.lower() for c in cands}
        text = _norm(instruction, [c.id for c in cands])
        if not text:
            return Decision.ask("What would you like me to do?", "empty instruction")
        pending: _Pending | None = history.pending if isinstance(history.pending, _Pending) else None
        history.pending = None
        steps = [s for s in _STEP_SPLIT.split(text) if s.strip()]
        skill, word = _find_skill(steps[0], self.skills)
        first = parse_step(steps[0], ids)
        if pending is not None and (skill is None or first.empty()):
            # an answer to the pending question, resolved among the candidates the question was about
            if skill is None and word is not None:
                return Decision.failed(f"no skill for '{word}': the skill library has {[s.name for s in self.skills]}")
            skill = skill or pending.skill
            if skill is None:           # still no skill ("the cup over there" → "that one")
                history.pending = pending
                return self._what(first.classes or pending.classes)
            targets = self._targets(skill)
            if first.empty() and not first.classes:
                history.pending = replace(pending, skill=skill)
                if pending.skill is None:      # the answer gave the skill: now resolve the target asked about
                    return self._steps(skill, pending.cons, (pending.classes & targets if targets and pending.classes
                                                             else pending.classes or targets),
                                       None, pending.done, list(pending.rest), cands, history)
                return Decision.ask(_which(pending.pool, pending.classes, "I still cannot tell which one you mean. "
                                           "Please name one by its id or by where it stands. "),
                                    "the answer names no attribute of the target")
            classes = first.classes or pending.classes or targets
            if targets:
                classes = classes & targets
                if not classes:
                    return Decision.failed(f"{skill} acts on {_noun(targets)}, not on a {_noun(first.classes)}")
            pool = [c.id.lower() for c in pending.pool] if pending.pool and not first.ids else None
            cons = first if pending.skill is None else pending.cons.merged(first)
            return self._steps(skill, cons, classes, pool, pending.done, list(pending.rest), cands, history)
        if skill is None:
            if word is not None:
                return Decision.failed(f"no skill for '{word}': the skill library has "
                                       f"{[s.name for s in self.skills]} ({'; '.join(s.description for s in self.skills)})")
            history.pending = _Pending(None, first.classes, first, [], [], steps[1:])
            return self._what(first.classes)
        targets = self._targets(skill)
        if targets and first.classes and not first.classes & targets:
            return Decision.failed(f"{skill} acts on {_noun(targets)}, not on a {_noun(first.classes)}")
        classes = (first.classes & targets if first.classes else targets) if targets else first.classes
        return self._steps(skill, first, classes, None, [], steps[1:], cands, history)

    def _what(self, classes) -> Decision:
        what = " or ".join(s.name for s in self.skills)
        return Decision.ask(f"What should I do{' with the ' + _noun(classes) if classes else ''}? I can {what} "
                            f"({'; '.join(s.description for s in self.skills)}).", "the instruction names no skill")

    def _steps(self, skill, cons, classes, pool_ids, done, rest, cands, history) -> Decision:
        subtasks = list(done)
        ids = {c.id.lower() for c in cands}
        said = []
        while True:
            try:
                target = _resolve(cons, cands, classes, pool_ids)
            except _Ask as a:
                history.pending = _Pending(skill, classes, cons, a.pool, subtasks, rest)
                return Decision.ask(a.question, a.reason)
            except _Fail as f:
                return Decision.failed(str(f))
            subtasks += self._subtasks(skill, target)
            said.append(f"{target.id} ({' '.join(cons.words) or 'the only ' + _noun(classes)})")
            if not rest:
                break
            nxt = rest.pop(0)
            s2, w2 = _find_skill(nxt, self.skills)
            if s2 is None and w2 is not None:
                return Decision.failed(f"no skill for '{w2}' in step '{nxt}': the skill library has "
                                       f"{[s.name for s in self.skills]}")
            skill = s2 or skill
            cons = parse_step(nxt, ids)
            targets = self._targets(skill)
            classes = (cons.classes & targets if cons.classes else targets) if targets else cons.classes
            pool_ids = None
        first = subtasks[0]
        return Decision.decided(first.skill, first.target, "target: " + ", then ".join(said), subtasks)

    def _subtasks(self, skill: str, target: Candidate) -> list[SubTask]:
        d = f"{target.color + ' ' if target.color else ''}{target.cls} ({target.id})"
        out = []
        for text, names in SKILL_STEPS.get(skill, (("{d}", ("K_p1",)),)):
            kps = [KeypointRef(object=target.id, keypoint=k, phrase=keypoint_phrase(target, k))
                   for k in names if k in target.keypoints]
            out.append(SubTask(skill=skill, target=target.id, description=text.format(d=d), keypoints=kps))
        return out
