"""The perception node (kind ``perception``): camera frames → stamped ``perception/keypoints``.

    [nodes.perception]          # and a [perception] table (runtime/perception/config.py)

Each new frame runs the keypoint model (an ONNX Runtime session: TensorRT > CUDA > CPU), the
decoder, back-projection, the tracker and the candidate description
(:class:`~kinebridge.runtime.perception.pipeline.Perception`), and one ``perception/keypoints``
message goes out whose ``derived`` names the frame (``camera/frame`` stamp: the camera, its frame
number, its capture time on CLOCK_MONOTONIC), so a consumer knows which image the ids and pixels
belong to and how old they are.

**Frame sources** (:class:`FrameSource`): ``next(timeout)`` returns the newest frame not yet
processed, or None when none came. :class:`CameraSource` opens a
:class:`~kinebridge.drivers.camera.base.Camera` in this process (``[perception] source =
"camera"``: a RealSense, or the synthetic camera over its own world); :class:`FramesSource` feeds
frames from memory (tests, the benchmark); :class:`RingSource` reads the shared-memory ring a
camera or world node announces on ``camera/frame`` (``source = "ring"``).

**Never blocking anyone.** The camera captures in its own thread and keeps only its newest frame;
this node takes the newest one when it is free, so a slow model skips frames (counted in the
heartbeat) instead of queueing them, and the camera never waits for it. The node is its own
process: the control loop's process and its cores' real-time priorities are untouched (ONNX
Runtime's threads do not spin by default, see :mod:`kinebridge.export.session`).

**Bad input**: a missing, corrupt or mismatched model fails the set-up with the reason (the
supervisor reports it); an unplugged or stalled camera is reported on ``perception/keypoints``
(no objects, ``reason = "camera …"``, at most once a second) and in the heartbeat, and the camera is
reopened every ``reopen_s``; depth holes, nothing in view and unknown classes are explicit in the
message (see the pipeline).
"""

from __future__ import annotations

import abc
import collections
import time

import numpy as np

from kinebridge.runtime.bus import messages as M
from kinebridge.runtime.node import Node

__all__ = ["FrameSource", "CameraSource", "FramesSource", "RingSource", "PerceptionNode", "build_perception"]


class FrameSource(abc.ABC):
    """Where frames come from. ``next`` must never block longer than ``timeout``."""

    name: str = ""

    def open(self) -> None:
        """Acquire the device/ring; raise with the reason if it cannot be opened."""

    @abc.abstractmethod
    def next(self, timeout: float):
        """The newest frame not returned before (a :class:`~kinebridge.drivers.camera.base.Frame`), or None."""

    def close(self) -> None:
        """Release what open acquired."""

    def stamp(self, frame) -> M.Stamp:
        """The ``derived`` stamp of a frame: its camera, ``camera/frame``, its number, its capture time."""
        return M.Stamp(src=self.name or "camera", topic=M.FrameRef.TOPIC, seq=int(frame.seq),
                       stamp_ns=int(frame.host_stamp_ns))


class CameraSource(FrameSource):
    """A camera opened in this process (``make_camera(config, **context)``)."""

    def __init__(self, camera, name: str = ""):
        self.camera = camera
        self.name = name or getattr(camera, "kind", "camera")

    def open(self) -> None:
        if not self.camera.is_open:
            self.camera.open()

    def next(self, timeout: float):
        from kinebridge.drivers.camera.base import CameraTimeout
        try:
            return self.camera.read(timeout=timeout)
        except CameraTimeout:
            return None

    def close(self) -> None:
        self.camera.close()


class FramesSource(FrameSource):
    """Frames from memory, each re-stamped with ``time.monotonic_ns()`` when handed out (optionally
    paced at ``fps``): the benchmark's and the tests' camera."""

    def __init__(self, frames, fps: float | None = None, name: str = "frames", loop: bool = True):
        self.frames = list(frames)
        self.fps, self.name, self.loop = fps, name, loop
        self._k = 0
        self._next_t = None

    def next(self, timeout: float):
        from dataclasses import replace
        if not self.frames or (not self.loop and self._k >= len(self.frames)):
            time.sleep(min(timeout, 0.01))
            return None
        now = time.monotonic()
        if self.fps:
            if self._next_t is None:
                self._next_t = now
            wait = self._next_t - now
            if wait > timeout:
                time.sleep(timeout)
                return None
            if wait > 0:
                time.sleep(wait)
            self._next_t = max(self._next_t + 1.0 / self.fps, time.monotonic() - 1.0 / self.fps)
        f = self.frames[self._k % len(self.frames)]
        seq = self._k
        self._k += 1
        return replace(f, seq=seq, host_stamp_ns=time.monotonic_ns())


class RingSource(FrameSource):
    """Frames another node writes into a shared-memory ring (:mod:`kinebridge.runtime.bus.frames`) and
    announces on ``camera/frame``; the node hands each announcement to :meth:`offer`."""

    def __init__(self, camera: str = "", ring_dir: str = "/dev/shm"):
        self.name = camera
        self.ring_dir = ring_dir
        self._reader = None
        self._ref = None
        self._ref_stamp = None
        self.lost = 0

    def offer(self, msg) -> None:
        b = msg.body
        if self.name and b.camera != self.name:
            return
        if not self.name:
            self.name = b.camera
        self._ref, self._ref_stamp = b, msg.stamp

    def next(self, timeout: float):
        if self._ref is None:
            return None
        ref, self._ref = self._ref, None
        try:
            from kinebridge.runtime.bus import frames
        except ImportError as exc:       # pragma: no cover - the ring ships with the camera nodes
            raise RuntimeError("source = ring needs kinebridge.runtime.bus.frames (the shared-memory ring); "
                               "use source = camera") from exc
        if self._reader is None or self._reader.name != ref.ring:
            try:
                self._reader = frames.FrameRingReader(ref.ring, self.ring_dir)
            except frames.RingNotFound:     # a replayed reference to a ring whose camera is gone: a lost frame
                self.lost += 1
                return None
        rf = self._reader.read_ref(ref)
        if rf is None:
            self.lost += 1
            return None
        if rf.intrinsics is None:
            raise RuntimeError(f"ring {ref.ring!r} carries no intrinsics for camera {ref.camera!r}: keypoints need "
                               "the camera's calibration (the camera node writes it when the camera reports it)")
        from kinebridge.drivers.camera.base import Frame
        return Frame(rgb=rf.rgb, depth=rf.depth, intrinsics=rf.intrinsics, extrinsics=rf.extrinsics,
                     host_stamp_ns=rf.capture_ns, device_stamp_ns=rf.device_stamp_ns, seq=rf.frame_seq,
                     meta={"ring": ref.ring, "slot": rf.slot})

    def stamp(self, frame) -> M.Stamp:
        if self._ref_stamp is not None:
            return self._ref_stamp
        return super().stamp(frame)

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None


def build_perception(section, camera_name: str = ""):
    """The model, its detector (open vocabulary combined if configured) and the pipeline for ``section``."""
    from kinebridge.export.keypoints.model import load
    from kinebridge.runtime.perception.detector import CombinedDetector, KeypointDetector, OpenVocabDetector
    from kinebridge.runtime.perception.pipeline import Perception

    model = load(section.model or None, providers=section.providers, threads=section.threads, spin=section.spin)
    det = KeypointDetector(model)
    if section.open_vocab is not None:
        ov = OpenVocabDetector(section.open_vocab.model, section.open_vocab.queries,
                               threshold=section.open_vocab.threshold, threads=section.threads,
                               providers=section.providers)
        det = CombinedDetector(det, ov)
    return model, Perception(det, model.keypoints, camera=camera_name, model_name=model.name,
                             provider=model.session.provider,
                             support_z=section.table_z_m if section.table_support else None)


def _camera_source(section) -> CameraSource:
    from kinebridge.drivers.camera.configs import make_camera, parse_camera_config

    dev = section.device or {"kind": "synthetic", "width": 640, "height": 480, "fps": 30.0}
    cfg = parse_camera_config(dev)
    context = {}
    if cfg.kind == "synthetic":
        from kinebridge.drivers.world.spec import SceneSpec
        from kinebridge.drivers.world.world import World
        scene = SceneSpec.random(section.scene_seed, particles=0).model_copy(
            update={"render_size": (max(640, cfg.width), max(480, cfg.height))})
        context["world"] = World(scene)
    return CameraSource(make_camera(cfg, **context), name=cfg.kind)


class PerceptionNode(Node):
    """See the module docstring."""

    tick_hz = 10.0

    def __init__(self, name, cfg, source: FrameSource | None = None):
        self.section = cfg.perception
        self._source_given = source
        super().__init__(name, cfg)
        self.source: FrameSource | None = source
        self.latency_ns: collections.deque = collections.deque(maxlen=300)
        self.frames = self.published = self.skipped = self.camera_errors = 0
        self._last_seq = None
        self._last_report = 0.0
        self._last_pub = 0.0
        self._camera_error: str | None = None
        self._next_open = 0.0
        self._ready_at = time.monotonic()

    def subscriptions(self):
        topics = (M.FrameRef.TOPIC,) if self.cfg.perception.source == "ring" and self._source_given is None else ()
        return topics + ((M.ControlState.TOPIC,) if self.section.held_exclusion_m > 0 else ())

    # ----------------------------------------------------------------------------- set-up
    def setup(self) -> None:
        if self.source is None:
            self.source = (RingSource(self.section.camera, self.cfg.camera.ring_dir) if self.section.source == "ring"
                           else _camera_source(self.section))
        self.model, self.perception = build_perception(self.section, self.source.name)
        self.perception.warmup(*self.model.size)
        if self.section.held_exclusion_m > 0:         # load the FK kernel now, under the set-up heartbeat
            from kinebridge.drivers.arm.factory import model_of
            from kinebridge.kernels import rm75
            self._kin = (rm75, model_of(self.cfg.arm).d7)
            rm75.fk(np.asarray(rm75.Q_HOME, float), self._kin[1])
        self._ready_at = time.monotonic()
        self.detail.update({"model": self.model.name, "provider": self.model.session.provider,
                            "provider_reason": self.model.session.reason, "threads": self.section.threads,
                            "source": type(self.source).__name__})
        self._open_source()

    def _open_source(self) -> bool:
        try:
            self.source.open()
        except Exception as exc:  # noqa: BLE001 - a camera that cannot open is reported, then retried
            self._camera_error = f"camera could not be opened: {exc}"
            self._next_open = time.monotonic() + self.section.reopen_s
            return False
        self._camera_error = None
        return True

    def teardown(self) -> None:
        if self.source is not None:
            try:
                self.source.close()
            except Exception:  # noqa: BLE001
                pass

    # ------------------------------------------------------------------------------ loop
    def on_message(self, msg) -> None:
        if msg.topic == M.FrameRef.TOPIC and isinstance(self.source, RingSource):
            self.source.offer(msg)
        elif msg.topic == M.ControlState.TOPIC:
            self._q = msg.arrays["q"]

    def _flange(self):
        """The flange's position in the base frame from the newest control/state (None before one)."""
        if getattr(self, "_q", None) is None:
            return None
        if getattr(self, "_kin", None) is None:
            from kinebridge.drivers.arm.factory import model_of
            from kinebridge.kernels import rm75
            self._kin = (rm75, model_of(self.cfg.arm).d7)
        rm75, d7 = self._kin
        return rm75.fk(np.asarray(self._q, float), d7)[:3, 3]

    def _without_held(self, body: M.Keypoints) -> M.Keypoints:
        """``body`` without the objects the arm holds (``[perception] held_exclusion_m``), each named in its reason."""
        from kinebridge.runtime.perception.candidates import without_held
        flange = self._flange()
        if flange is None:
            return body
        body, held = without_held(body, flange, self.section.held_exclusion_m, self.section.table_z_m)
        self.held_dropped = getattr(self, "held_dropped", 0) + held
        return body

    def _report(self, reason: str) -> None:
        now = time.monotonic()
        if now - self._last_report >= 1.0:
            self._last_report = now
            self.pub.send(M.Keypoints(camera=self.source.name if self.source else "", reason=reason,
                                      model=getattr(self, "model", None) and self.model.name or "",
                                      provider=getattr(self, "model", None) and self.model.session.provider or ""))
        self.detail["camera_error"] = reason
        self.status = "degraded"

    def step(self, timeout: float = 0.05) -> bool:
        """Take the newest frame (waiting at most ``timeout``), process and publish it; True if it did."""
        if self._camera_error is not None:
            if time.monotonic() >= self._next_open:
                self.source.close()
                self._open_source()
            if self._camera_error is not None:
                self._report(self._camera_error)
                time.sleep(min(timeout, 0.05))
                return False
        try:
            frame = self.source.next(timeout)
        except Exception as exc:  # noqa: BLE001 - an unplugged camera: report, reopen later
            self.camera_errors += 1
            self._camera_error = f"camera error: {exc}"
            self._next_open = time.monotonic() + self.section.reopen_s
            self._report(self._camera_error)
            return False
        now = time.monotonic()
        if frame is None:
            if now - max(self._last_pub, self._ready_at) > self.section.frame_timeout_s:
                if self.frames:
                    self._report(f"camera stalled: no frame for {now - self._last_pub:.1f} s")
                else:
                    self._report("camera: no frames yet" + (f" from {self.section.camera!r}" if self.section.camera
                                                             else "") + f" ({type(self.source).__name__})")
            return False
        if self._last_seq is not None and frame.seq > self._last_seq + 1:
            self.skipped += frame.seq - self._last_seq - 1
        self._last_seq = frame.seq
        if self.section.rate_hz and now - self._last_pub < 1.0 / self.section.rate_hz:
            return False
        self.frames += 1
        if self.status == "degraded":
            self.status = "ready"
            self.detail.pop("camera_error", None)
        r = self.perception.process(frame)
        self.pub.send(self._without_held(r.body), derived=[self.source.stamp(frame)])
        done = time.monotonic_ns()
        self.latency_ns.append(done - frame.host_stamp_ns)
        self.published += 1
        self._last_pub = time.monotonic()
        return True

    def loop(self) -> None:
        while not self.stopping:
            msg = self.sub.recv(timeout_ms=0)
            while msg is not None:
                self.on_message(msg)
                msg = self.sub.recv(timeout_ms=0)
            self.step(timeout=0.05)
            self._stats()
            self.heartbeat()

    def _stats(self) -> None:
        if self.latency_ns:
            lat = np.asarray(self.latency_ns, float) * 1e-6
            self.detail.update({"frames": self.frames, "published": self.published, "skipped": self.skipped,
                                "held_dropped": getattr(self, "held_dropped", 0),
                                "latency_ms_p50": round(float(np.median(lat)), 2),
                                "latency_ms_p95": round(float(np.percentile(lat, 95)), 2)})
