"""The world node (kind ``world``): the simulated MuJoCo world in its own process, following the arm.

    [nodes.world]          # the table enables it; [world] configures the scene and its cameras

**Following the arm.** It listens to ``control/state`` — the joints the controller reports, stamped
on CLOCK_MONOTONIC by the control node — and queues each state with its stamp
(:meth:`World.follow <kinebridge.drivers.world.world.World.follow>`); at ``[world] physics_hz`` it
steps the physics up to ``now − [world] follow_delay_s`` (:meth:`World.advance_to`), the arm driven
kinematically along the piecewise-linear interpolant of the reported states. The delay (10 ms:
two 200 Hz states) keeps the world on the interpolated path rather than holding the newest state
and jumping to the next one. It is a jitter buffer: a state arriving older than the delay raises it
to that age (at most ``follow_delay_max_s``; the world waits, the arm pausing rather than jumping
on the next late state), and it relaxes back to ``follow_delay_s`` with the world running 1 % faster
than real time. The world, and every frame its cameras render, shows the arm as the controller
reported it that long ago, and frames are stamped with that time (the world's clock on
CLOCK_MONOTONIC), not with the moment they were rendered. The first state places the arm
(its held mug's water comes along). A state that arrives after the world has passed its stamp
places the arm where the reported states put it now, and a world further behind than ``[world]
max_lag_s`` (a stalled process) skips ahead and places the arm likewise, instead of running the
backlog: a kinematic jump stepped in one 2.5 ms step would fling the water out of the mug. A tick
steps for at most 0.1 s of wall time, so a world slower than real time falls behind rather than
stalling the loop. Without states (no control node, or it stopped) the world keeps real time with
the arm where it was.

**Cameras.** The node is a :class:`~kinebridge.runtime.camera.node.CameraNode` whose cameras are the
``[world.cameras]`` synthetic ones rendering this world: the same rings, ``camera/frame``,
``camera/color`` and ``camera/depth`` as a camera node's, so perception cannot tell them apart. The
renders run in the cameras' threads at a lower priority (nice +10: physics and the bus come first
on a busy machine) and read the world under its lock.

**Ground truth.** ``world/truth`` (``[world] truth_hz``, and at once on ``world/truth_request``):
every object's pose, keypoints, class, colour, size and position (what a planner decides on, so the
truth can serve as its candidates: ``[planner] candidates = "world"``), the held mug, the flange, the
joints the world shows and the pour counts since the start or the last ``reset_pour`` — of the
scene's target, or of the request's ``target`` (``kinebridge run --instruction`` counts the pour into
the decided target).

The node is another process, so it never delays the control loop (measured: ``kinebridge bench
camera`` compares the loop's period error with and without it).
"""

from __future__ import annotations

import bisect
import time
from collections import deque

import numpy as np

from kinebridge.runtime.bus import messages as M
from kinebridge.runtime.camera.node import CameraNode

__all__ = ["WorldNode", "pose7"]

TICK_BUDGET_S = 0.1      # wall-clock seconds one tick may spend stepping (then the loop runs again)
CHUNK_S = 0.01           # simulated seconds stepped between checks of that budget


def pose7(T) -> list[float]:
    """A (4, 4) pose as [x, y, z, qw, qx, qy, qz] (qw ≥ 0)."""
    T = np.asarray(T, float)
    R = T[:3, :3]
    tr = np.trace(R)
    if tr > 0:
        s = 2.0 * np.sqrt(tr + 1.0)
        q = [0.25 * s, (R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s]
    else:
        i = int(np.argmax(np.diag(R)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * np.sqrt(max(1.0 + R[i, i] - R[j, j] - R[k, k], 1e-300))
        q = [0.0, 0.0, 0.0, 0.0]
        q[0] = (R[k, j] - R[j, k]) / s
        q[1 + i] = 0.25 * s
        q[1 + j] = (R[j, i] + R[i, j]) / s
        q[1 + k] = (R[k, i] + R[i, k]) / s
    q = np.asarray(q)
    q = q / np.linalg.norm(q)
    if q[0] < 0:
        q = -q
    return [float(x) for x in (*T[:3, 3], *q)]


def _plain(v):
    """Numpy scalars/arrays and tuples in a score as plain JSON-like values."""
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    return v


def _describe(o, T) -> dict:
    """What a planner needs of a scene object besides its keypoints (the same fields as perception's
    candidates: ``class``, ``color`` RGB, ``size`` width/depth/height m, ``position``), so ``world/truth``
    can serve as the candidates (``[planner] candidates = "world"``)."""
    from kinebridge.runtime.planner.candidates import _class_of_spec, _size_of_spec

    out = {"class": _class_of_spec(o), "color": [float(x) for x in o.color[:3]],
           "position": [float(x) for x in np.asarray(T, float)[:3, 3]]}
    size = _size_of_spec(o)
    if size is not None:
        out["size"] = [float(x) for x in size]
    return out


class WorldNode(CameraNode):
    def subscriptions(self):
        return (M.ControlState.TOPIC, M.TruthRequest.TOPIC)

    # ----------------------------------------------------------------------------- set-up
    def make_cameras(self) -> dict:
        from kinebridge.drivers.camera import make_camera
        from kinebridge.runtime.world.scene import build_world

        w = self.cfg.world
        self.detail["setup"] = "building the world"
        cams = w.cameras
        from kinebridge.drivers.world.gl import load_mujoco

        self._mj = load_mujoco()
        self.world = build_world(self.cfg, list(cams.values()))
        self.monitor = None
        self._new_monitor()
        return {name: make_camera(c, world=self.world) for name, c in cams.items()}

    def _new_monitor(self, target: str | None = None) -> None:
        """Count a new pour into ``target`` (default: the scene's target); an object that is not a container
        of the scene is reported in the heartbeat (``pour_error``) and the scene's target counted instead."""
        from kinebridge.drivers.world.scoring import PourMonitor

        if self.monitor is not None:
            self.monitor.close()
            self.monitor = None
        self.detail.pop("pour_error", None)
        if target is not None:
            try:
                self.monitor = PourMonitor(self.world, target)
                return
            except ValueError as exc:
                self.detail["pour_error"] = str(exc)[:300]
        if self.world.scene.target is not None:
            self.monitor = PourMonitor(self.world)

    def renders(self) -> bool:
        return True

    def capture_clock(self, camera: str):
        world = self.world

        def clock(frame) -> int:
            epoch = world.epoch_s
            if epoch is None or frame.device_stamp_ns is None:
                return frame.host_stamp_ns
            return int(round(epoch * 1e9)) + int(frame.device_stamp_ns)
        return clock

    def setup(self) -> None:
        w = self.cfg.world
        self.tick_hz = w.physics_hz
        self._truth_period = 1.0 / w.truth_hz if w.truth_hz > 0 else None
        self._next_truth = 0.0
        self.follow = {"states": 0, "refused": 0, "stale": 0, "late": 0, "placed": 0, "late_ms_max": 0.0, "last_error": None,
                       "last_state_s": None, "skipped_s": 0.0, "steps": 0, "step_s": 0.0}
        self._lag: list[float] = []
        self._states: deque = deque(maxlen=400)          # (stamp, q) of the last 2 s of reported states
        self._delay = w.follow_delay_s
        self._last_tick = time.monotonic()
        self._rtf_window = (time.monotonic(), 0.0, 0.0)     # wall, simulated, stepping time at its start
        super().setup()
        self.detail["scene"] = {"seed": self.world.scene.seed, "objects": [o.name for o in self.world.scene.objects],
                                "target": self.world.scene.target, "water": int(self.world.built.particle_bodies.size)}

    # ----------------------------------------------------------------------------- messages
    def on_message(self, msg) -> None:
        if msg.topic == M.ControlState.TOPIC:
            stamp = msg.stamp.stamp_ns * 1e-9
            clock = self.world.clock_s
            age = time.monotonic() - stamp
            if age > self.cfg.world.max_lag_s:
                self.follow["stale"] += 1                     # queued while the node set up: too old to show
                return
            if age > self._delay:                             # a jitter buffer: wait longer for the next states
                self._delay = min(self.cfg.world.follow_delay_max_s, age + 0.002)
            try:
                q = msg.arrays["q"]
                self.world.follow(q, stamp)
                self._states.append((stamp, np.array(q, dtype=float)))
                self.follow["states"] += 1
                self.follow["last_state_s"] = stamp
                if clock is not None and stamp < clock:
                    # the world had passed it, holding the previous state: instead of stepping to the newer
                    # joints in one step (a velocity spike), place the arm where they put it now
                    self.follow["late"] += 1
                    self.follow["late_ms_max"] = round(max(self.follow["late_ms_max"], (clock - stamp) * 1e3), 2)
                    with self.world.lock:
                        self._place(self.world.clock_s)
            except ValueError as exc:          # out of order, outside the world's joint limits
                self.follow["refused"] += 1
                self.follow["last_error"] = str(exc)[:300]
        elif msg.topic == M.TruthRequest.TOPIC:
            body: M.TruthRequest = msg.body
            if body.reset_pour:
                with self.world.lock:
                    self._new_monitor(body.target)
            self.publish_truth(body.request_id, derived=[msg.stamp])

    # ----------------------------------------------------------------------------- physics
    def on_tick(self, now: float) -> None:
        world = self.world
        f = self.follow
        floor = self.cfg.world.follow_delay_s
        if self._delay > floor:                               # back to the configured delay, 1 % faster than real time
            self._delay = max(floor, self._delay - 0.01 * (now - self._last_tick))
        self._last_tick = now
        target = now - self._delay
        t0 = time.perf_counter()
        n = 0
        with world.lock:                       # (renders take the lock: they see the stepped, updated state)
            clock = world.clock_s
            if clock is not None and target - clock > self.cfg.world.max_lag_s:
                # stalled (a loaded box): skip ahead rather than run the backlog, and place the arm where the
                # controller reported it then, its water with it — stepping there would fling the water out
                world.epoch_s += target - clock - world.timestep
                f["skipped_s"] = round(f["skipped_s"] + target - clock, 3)
                self._place(world.clock_s)
            # in chunks, for at most TICK_BUDGET_S: a world slower than real time falls behind (and skips
            # ahead at max_lag_s) while the loop keeps announcing frames, answering and heartbeating
            while True:
                clock = world.clock_s
                k = world.advance_to(target if clock is None else min(target, clock + CHUNK_S))
                n += k
                if not k or time.perf_counter() - t0 > TICK_BUDGET_S:
                    break
            if n:
                # mj_step leaves body and site poses at the step's start (positions are computed before the
                # integration): bring them to the state after it, so truth and renders show the world's time
                self._mj.mj_kinematics(world.model, world.data)
        f["steps"] += n
        f["step_s"] += time.perf_counter() - t0
        self._lag.append(target - world.clock_s)
        if self._truth_period is not None and now >= self._next_truth:
            self._next_truth = max(self._next_truth + self._truth_period, now)
            self.publish_truth()

    def _q_at(self, t: float):
        """The reported joints at CLOCK_MONOTONIC ``t`` (interpolated; held after the newest), or None."""
        st = self._states
        if not st:
            return None
        stamps = [x[0] for x in st]
        k = bisect.bisect_right(stamps, t)
        if k == 0:
            return st[0][1]
        if k == len(st):
            return st[-1][1]
        (ta, qa), (tb, qb) = st[k - 1], st[k]
        return qa + (qb - qa) * ((t - ta) / (tb - ta))

    def _place(self, t: float) -> None:
        """Put the arm (and the water in its mug) where the controller reported it at ``t``, at rest."""
        q = self._q_at(t)
        if q is not None:
            try:
                self.world.set_arm(q)
                self.follow["placed"] += 1
            except ValueError:
                pass

    def _update_detail(self) -> None:
        super()._update_detail()
        if not hasattr(self, "follow"):
            return
        now = time.monotonic()
        wall0, sim0, step0 = self._rtf_window
        f = self.follow
        sim = f["steps"] * self.world.timestep
        d = dict(f)
        if now - wall0 >= 1.0:
            # real-time factor: simulated seconds per second spent stepping (the headroom; ≥ 1 keeps real time)
            spent = f["step_s"] - step0
            self.detail_rtf = round((sim - sim0) / spent, 2) if spent > 0 else None
            self._rtf_window = (now, sim, f["step_s"])
        d["rtf"] = getattr(self, "detail_rtf", None)
        d["rtf_run"] = round(sim / f["step_s"], 2) if f["step_s"] > 0 else None     # since the start
        if self._lag:
            lag = np.asarray(self._lag[-2000:])
            d["lag_ms_p99"] = round(float(np.percentile(lag, 99)) * 1e3, 2)
            self._lag = self._lag[-2000:]
        d["following"] = self._following(now)
        d["delay_ms"] = round(self._delay * 1e3, 1)
        d.pop("step_s")
        self.detail["world"] = d

    def _following(self, now: float) -> bool:
        last = self.follow["last_state_s"]
        return last is not None and now - last < 0.5

    # ----------------------------------------------------------------------------- ground truth
    def truth(self, request_id: str | None = None) -> tuple[M.WorldTruth, dict]:
        w = self.world
        with w.lock:
            gt = w.ground_truth()
            inside = int(w.water_in_tool().sum())
            score = self.monitor.score() if self.monitor is not None else None
            clock = w.clock_s
        kps = gt["keypoints"]
        objects = [{"name": o.name, "kind": o.kind, "pose": pose7(gt["objects"][o.name]),
                    "keypoints": {k: [float(x) for x in v] for k, v in kps.get(o.name, {}).items()},
                    **_describe(o, gt["objects"][o.name])}
                   for o in w.scene.objects]
        held = None
        if gt["held"] is not None:
            held = {"pose": pose7(gt["held"]), "water_inside": inside,
                    "keypoints": {k: [float(x) for x in v] for k, v in kps.get("tool", {}).items()}}
        body = M.WorldTruth(world_time=float(gt["time"]), clock_ns=None if clock is None else int(round(clock * 1e9)),
                            seed=w.scene.seed, target=self.monitor.target if self.monitor is not None else
                            w.scene.target, objects=objects, held=held,
                            flange=pose7(gt["flange"]), pour=None if score is None else _plain(score.to_dict()),
                            following=self._following(time.monotonic()), request_id=request_id)
        return body, {"q": np.asarray(gt["arm_q"], np.float64)}

    def publish_truth(self, request_id: str | None = None, derived=()) -> None:
        body, arrays = self.truth(request_id)
        self.pub.send(body, arrays, derived)

    def teardown(self) -> None:
        super().teardown()
        if getattr(self, "monitor", None) is not None:
            self.monitor.close()
