"""Executing a decision's sub-tasks in order (CLAP), no I/O: events in, reports and the next step out.

A decided ``planner/decision`` carries an ordered list of ``subtasks`` (each a skill, a target and the
keypoints it acts on, named in language). A :class:`Sequence` runs them:

* **steps** — consecutive sub-tasks with the same skill and target are phases of *one* skill motion
  (the LocalPlanner's pour is "bring the rim over the mug" then "tilt to pour": the ``pour_mug``
  skill's one demonstrated motion), so they are one step, executed as one ``task``; a decision
  without sub-tasks is one step of its own skill and target (reported as sub-task 0 of 1);
* one step at a time: :meth:`Sequence.next_step` is the step whose task to build; the next one is
  only offered once the previous one has **ended** — ``trajectory/done`` for its task id
  (:meth:`done`); the first step is offered at once;
* a failure stops the sequence: the bridge refusing the step (:meth:`refused`), ``trajectory/error``
  for its task (:meth:`failed`), or no end within ``timeout_s`` of the task being sent (:meth:`tick`)
  — its sub-tasks are reported ``failed`` with the reason, every later one ``skipped`` naming the
  failed one, and nothing more is sent (the arm holds where the last plan left it);
* :meth:`cancel` (a newer decision supersedes this one) reports what had not finished as ``skipped``.

Every call returns the :class:`Report` s it produced (one per sub-task affected), in order; the
node publishes each as a ``bridge/subtask`` message.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Report", "Step", "Sequence", "steps_of"]


@dataclass(frozen=True)
class Report:
    """One sub-task's outcome (the ``bridge/subtask`` body's fields)."""

    index: int
    count: int
    step: int
    status: str                      # started, done, failed, skipped
    skill: str | None
    target: str | None
    description: str | None = None
    reason: str | None = None
    task_id: str | None = None
    keypoints_source: str | None = None


@dataclass
class Step:
    """Sub-tasks ``indices`` executed as one task of ``skill`` on ``target``."""

    number: int
    skill: str
    target: str
    indices: list[int]
    descriptions: list[str | None] = field(default_factory=list)
    task_id: str | None = None
    keypoints_source: str | None = None
    sent_at: float | None = None


def steps_of(skill: str | None, target: str | None, subtasks) -> list[Step]:
    """The steps of a decision (see the module docstring); ``subtasks``: dicts with ``skill``, ``target``
    and optionally ``description``. A sub-task without a skill or target is a ValueError naming it."""
    subs = list(subtasks or ())
    if not subs:
        if not skill or not target:
            raise ValueError("a decided decision names its skill and its target")
        return [Step(0, skill, target, [0], [None])]
    steps: list[Step] = []
    for i, s in enumerate(subs):
        sk, tg = (s.get("skill"), s.get("target")) if isinstance(s, dict) else (None, None)
        if not isinstance(sk, str) or not sk or not isinstance(tg, str) or not tg:
            raise ValueError(f"subtasks[{i}]: a sub-task names its skill and its target (got {s!r})")
        desc = s.get("description") if isinstance(s.get("description"), str) else None
        if steps and steps[-1].skill == sk and steps[-1].target == tg:
            steps[-1].indices.append(i)
            steps[-1].descriptions.append(desc)
        else:
            steps.append(Step(len(steps), sk, tg, [i], [desc]))
    return steps


class Sequence:
    """The sub-tasks of one decision, executed in order (module docstring)."""

    def __init__(self, skill: str | None, target: str | None, subtasks=(), *, timeout_s: float = 120.0):
        self.steps = steps_of(skill, target, subtasks)
        self.count = sum(len(s.indices) for s in self.steps)
        self.timeout_s = float(timeout_s)
        self.current = 0                 # index into steps of the step running or to run
        self.waiting = True              # the current step's task is still to be built (next_step offers it)
        self.state = "running"           # running, done, failed, cancelled

    # ------------------------------------------------------------------------------ queries
    @property
    def finished(self) -> bool:
        return self.state != "running"

    def next_step(self) -> Step | None:
        """The step whose task the node should build now, or None (one running, or finished)."""
        if self.finished or not self.waiting:
            return None
        return self.steps[self.current]

    def owns(self, task_id: str | None) -> bool:
        """Whether ``task_id`` is the task of the step running now."""
        return (not self.finished and not self.waiting and task_id is not None
                and self.steps[self.current].task_id == task_id)

    # ------------------------------------------------------------------------------- events
    def sent(self, task_id: str, now: float, keypoints_source: str | None = None) -> list[Report]:
        """The current step's task went out as ``task_id``: its sub-tasks are started."""
        st = self._step("sent")
        if not self.waiting:
            raise RuntimeError(f"step {st.number} was already sent as {st.task_id!r}")
        st.task_id, st.sent_at, st.keypoints_source = task_id, float(now), keypoints_source
        self.waiting = False
        return self._reports(st, "started")

    def done(self, task_id: str | None) -> list[Report]:
        """``trajectory/done`` for ``task_id``: the step's sub-tasks are done; the next step is offered
        (or the sequence is done). A task id of another step is ignored (no reports)."""
        if not self.owns(task_id):
            return []
        st = self.steps[self.current]
        out = self._reports(st, "done")
        self.current += 1
        if self.current >= len(self.steps):
            self.state = "done"
        else:
            self.waiting = True
        return out

    def failed(self, task_id: str | None, reason: str) -> list[Report]:
        """``trajectory/error`` for ``task_id``: the sequence stops (ignored for another task id)."""
        if not self.owns(task_id):
            return []
        return self._fail(f"the trajectory node could not execute it: {reason}")

    def refused(self, reason: str) -> list[Report]:
        """The bridge could not build the current step's task (``reason``: its code and sentence)."""
        self._step("refused")
        return self._fail(f"the bridge refused it: {reason}")

    def tick(self, now: float) -> list[Report]:
        """A step whose task has not ended ``timeout_s`` after it was sent fails."""
        if self.finished or self.waiting:
            return []
        st = self.steps[self.current]
        if st.sent_at is not None and now - st.sent_at > self.timeout_s:
            return self._fail(f"its task {st.task_id} did not end within {self.timeout_s:g} s "
                              f"([bridge] subtask_timeout_s)")
        return []

    def cancel(self, reason: str) -> list[Report]:
        """Stop here (a newer decision supersedes this one): what had not finished is skipped."""
        if self.finished:
            return []
        self.state = "cancelled"
        out = []
        for st in self.steps[self.current:]:
            out += self._reports(st, "skipped", reason)
        return out

    # ------------------------------------------------------------------------------ helpers
    def _step(self, what: str) -> Step:
        if self.finished:
            raise RuntimeError(f"{what}: the sequence is {self.state}")
        return self.steps[self.current]

    def _fail(self, reason: str) -> list[Report]:
        st = self.steps[self.current]
        self.state = "failed"
        out = self._reports(st, "failed", reason)
        first = st.indices[0]
        for later in self.steps[self.current + 1:]:
            out += self._reports(later, "skipped", f"sub-task {first} ({st.skill} on {st.target}) failed: {reason}")
        return out

    def _reports(self, st: Step, status: str, reason: str | None = None) -> list[Report]:
        return [Report(index=i, count=self.count, step=st.number, status=status, skill=st.skill, target=st.target,
                       description=d, reason=reason, task_id=st.task_id, keypoints_source=st.keypoints_source)
                for i, d in zip(st.indices, st.descriptions)]
