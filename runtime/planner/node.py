"""The planner node (kind ``planner``, non-critical): instructions in, decisions out, never in the way.

It listens to ``planner/instruction`` (the user's words, an optional dialogue id) and keeps the latest
``perception/keypoints`` (from perception, or the world's ground truth) as the candidates — or, with
``[planner] scene_seed``, the ground truth of that simulated scene. Each instruction is decided by the
configured planner (``[planner] kind``: the embedded local grammar, or GI/DI on an OpenAI-compatible
endpoint) on a **worker thread**, so the node's loop keeps heartbeating and reading the bus while a
VLM takes seconds; the planner itself times out, retries with backoff and reports the endpoint's state.

* ``planner/decision`` is published for every instruction: decided, ask or failed, stamped ``derived``
  from the instruction, the keypoints message and what that was derived from (the frame);
* an instruction not decided within ``decision_timeout_s`` gets a failed decision naming the time;
  the late answer is dropped and a fresh worker takes the next instruction;
* no candidates (no keypoints yet, or older than ``candidates_max_age_s``) → failed, naming why;
* more than :data:`MAX_QUEUED` instructions waiting → the newest is refused (failed, "busy");
* the heartbeat's ``detail.planner`` says what it does: kind, model, busy, queued, counts, the last
  latency and the endpoint's state; the status is ``degraded`` while the endpoint is down (the
  control loop is another process and never waits for any of this).

Dialogues are kept by ``dialogue_id`` (an instruction without one joins the default dialogue) for
``dialogue_ttl_s``, so the answer to a question is resolved in the dialogue that asked it.
Hook for the camera ring: :meth:`PlannerNode.frame_for` returns the frame a keypoints message was
computed from (None until frames are readable here), drawn with the candidate ids for a VLM.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field

from kinebridge.runtime.bus import messages as M
from kinebridge.runtime.node import Node

__all__ = ["PlannerNode", "MAX_QUEUED"]

MAX_QUEUED = 8


@dataclass
class _Job:
    msg: object                    # the instruction message
    cands: list
    derived: list
    image: object
    received: float = field(default_factory=time.monotonic)
    started: float | None = None
    abandoned: bool = False


class PlannerNode(Node):
    topics = (M.Instruction.TOPIC, M.Keypoints.TOPIC, M.WorldTruth.TOPIC)
    tick_hz = 20.0

    def setup(self) -> None:
        from kinebridge.runtime.planner.base import make_planner

        self.pcfg = self.cfg.planner
        self.planner = make_planner(self.pcfg)
        self.scene_cands = None
        if self.pcfg.scene_seed is not None:
            from kinebridge.drivers.world import SceneSpec, World
            from kinebridge.runtime.planner.candidates import from_world

            world = World(SceneSpec.random(self.pcfg.scene_seed, ambiguous=True, particles=0, tool="none"))
            self.scene_cands = from_world(world)
        self.keypoints = None              # (message, candidates, local time received): the candidates in use
        self.sources: dict = {}            # "perception" | "world" → (message, candidates, local time received)
        self.dialogues: dict = {}
        self.jobs: queue.Queue = queue.Queue()
        self.results: queue.Queue = queue.Queue()
        self.current: _Job | None = None
        self.generation = 0
        self.counts = {"decided": 0, "ask": 0, "failed": 0, "timeouts": 0, "refused": 0}
        self.last_ms = None
        self._start_worker()
        self._report()

    # ------------------------------------------------------------------------------- worker
    def _start_worker(self) -> None:
        self.generation += 1
        threading.Thread(target=self._work, args=(self.generation,), name=f"planner-worker-{self.generation}",
                         daemon=True).start()

    def _work(self, gen: int) -> None:
        from kinebridge.runtime.planner.base import Decision

        while not self.stopping and gen == self.generation:
            try:
                job = self.jobs.get(timeout=0.2)
            except queue.Empty:
                continue
            job.started = time.monotonic()
            self.current = job
            body = job.msg.body
            dialogue = self._dialogue(body.dialogue_id)
            try:
                d = self.planner.decide(body.text, job.cands, image=job.image, history=dialogue)
            except Exception as exc:        # noqa: BLE001 - a planner bug fails the decision, not the node
                d = Decision.failed(f"the planner raised {type(exc).__name__}: {exc}")
            std = getattr(self.planner, "standard_instruction", None)
            self.results.put((job, d, std))
            if gen != self.generation:      # abandoned meanwhile: a fresh worker has taken over
                return

    def _dialogue(self, did):
        from kinebridge.runtime.planner.base import Dialogue

        key = did or ""
        now = time.monotonic()
        for k in [k for k, v in self.dialogues.items() if now - v.updated > self.pcfg.dialogue_ttl_s]:
            del self.dialogues[k]
        if key not in self.dialogues:
            self.dialogues[key] = Dialogue(id=key)
        return self.dialogues[key]

    # ----------------------------------------------------------------------------- messages
    def frame_for(self, keypoints_msg):
        """The frame ``keypoints_msg`` was computed from, (H, W, 3) uint8, or None (the default: frames
        in the camera's shared-memory ring are not read here yet)."""
        return None

    def on_message(self, msg) -> None:
        if msg.topic in (M.Keypoints.TOPIC, M.WorldTruth.TOPIC):
            from kinebridge.runtime.planner.candidates import CandidateError, from_keypoints_message

            src = "perception" if msg.topic == M.Keypoints.TOPIC else "world"
            if self.pcfg.candidates not in (src, "auto"):
                return
            try:
                objects = msg.body.objects
                if src == "world":     # the world's table objects (the held mug is not among them)
                    objects = [o for o in objects if o.get("class") and o.get("keypoints")]
                self.sources[src] = (msg, from_keypoints_message(objects), time.monotonic())
                self.detail.pop("keypoints_error", None)
            except CandidateError as exc:
                self.detail["keypoints_error"] = str(exc)[:300]
            self.keypoints = self._candidates()
            return
        if msg.topic != M.Instruction.TOPIC:
            return
        if self.scene_cands is not None:
            cands, derived, image = self.scene_cands, [msg.stamp], None
        else:
            kp = self.keypoints = self._candidates() if self.sources else self.keypoints
            if kp is None:
                what = {"perception": M.Keypoints.TOPIC, "world": M.WorldTruth.TOPIC}.get(
                    self.pcfg.candidates, f"{M.Keypoints.TOPIC} or {M.WorldTruth.TOPIC}")
                return self._refuse(msg, f"no {what} received yet: no candidates to decide on")
            age = time.monotonic() - kp[2]
            if age > self.pcfg.candidates_max_age_s:
                return self._refuse(msg, f"the latest perception/keypoints are {age:.1f} s old (> "
                                         f"planner.candidates_max_age_s = {self.pcfg.candidates_max_age_s} s)")
            cands = kp[1]
            derived = [msg.stamp, kp[0].stamp, *kp[0].derived][:16]
            image = self.frame_for(kp[0]) if self.pcfg.image else None
        if self.jobs.qsize() >= MAX_QUEUED:
            self.counts["refused"] += 1
            return self._refuse(msg, f"busy: {MAX_QUEUED} instructions are waiting")
        self.jobs.put(_Job(msg, list(cands), derived, image))

    def _candidates(self):
        """The candidates to decide on (``[planner] candidates``; auto: perception's latest message when it
        has an object with keypoints and is fresh, else the world's ground truth)."""
        per, world = self.sources.get("perception"), self.sources.get("world")
        if self.pcfg.candidates == "auto" and world is not None:
            fresh = per is not None and time.monotonic() - per[2] <= self.pcfg.candidates_max_age_s
            return per if fresh and per[1] else world
        return per if self.pcfg.candidates != "world" else world

    def _refuse(self, msg, reason: str) -> None:
        from kinebridge.runtime.planner.base import Decision

        self._publish(_Job(msg, [], [msg.stamp], None), Decision.failed(reason), None)

    def _publish(self, job: _Job, d, std) -> None:
        self.counts[d.status] += 1
        ms = (time.monotonic() - job.received) * 1e3
        self.last_ms = round(ms, 1)
        body = job.msg.body
        self.pub.send(d.to_body(body.text, getattr(self.planner, "name", "planner"), dialogue_id=body.dialogue_id,
                                standard_instruction=std, candidates=[c.id for c in job.cands][:64],
                                latency_ms=round(ms, 3)), derived=job.derived)

    def on_tick(self, now: float) -> None:
        from kinebridge.runtime.planner.base import Decision

        while True:
            try:
                job, d, std = self.results.get_nowait()
            except queue.Empty:
                break
            if not job.abandoned:
                self._publish(job, d, std)
            if self.current is job:
                self.current = None
        job = self.current
        if job is not None and not job.abandoned and job.started is not None \
                and now - job.started > self.pcfg.decision_timeout_s:
            job.abandoned = True
            self.current = None
            self.counts["timeouts"] += 1
            self._publish(job, Decision.failed(f"the planner did not decide within planner.decision_timeout_s = "
                                               f"{self.pcfg.decision_timeout_s} s"), None)
            self._start_worker()            # the stuck call finishes on its own; the next job does not wait for it
        self._report()

    def _report(self) -> None:
        state = getattr(self.planner, "endpoint_state", "local")
        job = self.current
        self.detail["planner"] = {
            "kind": self.pcfg.kind, "name": getattr(self.planner, "name", ""), "endpoint": state,
            "busy_s": None if job is None or job.started is None else round(time.monotonic() - job.started, 2),
            "queued": self.jobs.qsize(), **self.counts, "last_ms": self.last_ms,
            "candidates": "scene" if self.scene_cands is not None else
            ("none yet" if self.keypoints is None else f"{len(self.keypoints[1])} from {self.keypoints[0].topic}")}
        if self.status in ("ready", "degraded"):
            self.status = "degraded" if str(state).startswith("down") else "ready"

    def teardown(self) -> None:
        self.generation += 1              # workers exit
        close = getattr(getattr(self, "planner", None), "close", None)
        if close is not None:
            close()
