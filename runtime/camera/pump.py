"""One camera's frames into its shared-memory ring, onto the bus and into the recording.

A :class:`FramePump` owns an (unopened) :class:`~kinebridge.drivers.camera.base.Camera` and a thread:
the camera's own capture thread grabs frames; the pump's thread takes each new one
(``Camera.read``), keeps it only if it is due at ``[camera] publish_hz``, copies it into the ring
(:class:`~kinebridge.runtime.bus.frames.FrameRingWriter`), builds its ``camera/frame`` body and —
at ``[camera] record_hz`` — the ``camera/color`` (JPEG/PNG, ``foxglove.CompressedImage``) and
``camera/depth`` (16UC1 mm, ``foxglove.RawImage``) bodies the recorder writes, then wakes the node's
loop through a pipe. The node's thread only publishes what :meth:`FramePump.take` hands it: the bus
socket stays single-threaded, and copies and compression (numpy and OpenCV release the GIL) run
beside the node's other work instead of delaying it.

The camera node and the world node both use it, so a consumer cannot tell a real camera from a
simulated one: same ring layout, same messages. ``clock(frame)`` gives the capture stamp
(CLOCK_MONOTONIC ns; default ``frame.host_stamp_ns``, the world node passes its world's clock).
"""

from __future__ import annotations

import base64
import collections
import os
import threading
import time

import numpy as np

from kinebridge.runtime.bus import messages as M
from kinebridge.runtime.bus.frames import FrameRingWriter
from kinebridge.runtime.camera.config import CameraSection

__all__ = ["FramePump", "Schedule", "encode_color", "encode_depth", "recorded_bodies", "wall_time"]

QUEUE = 256          # bodies waiting for the node's loop; beyond, the oldest are dropped (counted)


class Schedule:
    """Keeps events at ``hz`` on their own stamps (0: every one): an event is due if it is no earlier
    than half a source period (``source_hz``) before its slot, so a 30 Hz camera at 30 Hz keeps every
    frame despite jitter and at 10 Hz keeps every third."""

    def __init__(self, hz: float, source_hz: float):
        self.period_ns = int(1e9 / hz) if hz > 0 else 0
        self.tol_ns = int(0.5e9 / source_hz) if source_hz > 0 else 0
        self.next_ns: int | None = None

    def due(self, t_ns: int) -> bool:
        if not self.period_ns:
            return True
        if self.next_ns is None or t_ns >= self.next_ns - self.tol_ns:
            base = t_ns if self.next_ns is None else max(self.next_ns, t_ns - self.tol_ns)
            if self.next_ns is not None and t_ns - self.next_ns > self.period_ns:
                base = t_ns                                   # a long gap: restart the schedule
            self.next_ns = base + self.period_ns
            return True
        return False


def wall_time(monotonic_ns: int) -> dict:
    """A CLOCK_MONOTONIC stamp as Foxglove's ``{sec, nsec}`` on the wall clock (Unix epoch)."""
    unix = int(monotonic_ns) + (time.time_ns() - time.monotonic_ns())
    unix = max(unix, 0)
    return {"sec": unix // 1_000_000_000, "nsec": unix % 1_000_000_000}


def _cv2():
    try:
        import cv2
    except ImportError as exc:
        raise RuntimeError("recording camera frames ([camera] record_hz > 0) needs OpenCV: pip install "
                           "'kinebridge[world]' (or opencv-python-headless), or set [camera] record_hz = 0") from exc
    return cv2


def encode_color(rgb: np.ndarray, fmt: str = "jpeg", quality: int = 90) -> str:
    """``rgb`` (H, W, 3) uint8 as a base64 JPEG or PNG."""
    cv2 = _cv2()
    bgr = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR)
    if fmt == "jpeg":
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    elif fmt == "png":
        ok, buf = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    else:
        raise ValueError(f"format: expected 'jpeg' or 'png', got {fmt!r}")
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {rgb.shape} frame as {fmt}")
    return base64.b64encode(buf.tobytes()).decode("ascii")


def encode_depth(depth: np.ndarray) -> tuple[str, int]:
    """``depth`` (H, W) float32 metres as base64 little-endian uint16 millimetres (0: no depth, also for
    anything beyond 65.535 m or not finite); and the row length in bytes."""
    mm = np.asarray(depth, np.float64) * 1000.0
    ok = np.isfinite(mm) & (mm > 0) & (mm <= 65535.0)
    out = np.where(ok, np.rint(np.where(ok, mm, 0.0)), 0.0).astype("<u2")
    return base64.b64encode(out.tobytes()).decode("ascii"), int(out.shape[1] * 2)


def recorded_bodies(camera: str, f, frame_seq: int, capture_ns: int, fmt: str = "jpeg",
                    quality: int = 90) -> list[M.Body]:
    """The ``camera/color`` (``fmt``: jpeg or png) and ``camera/depth`` bodies of frame ``f`` (a
    :class:`~kinebridge.drivers.camera.base.Frame`), numbered ``frame_seq``, captured at ``capture_ns``."""
    h, w = f.rgb.shape[:2]
    common = dict(timestamp=wall_time(capture_ns), frame_id=camera, camera=camera, frame_seq=frame_seq,
                  capture_ns=capture_ns, device_stamp_ns=f.device_stamp_ns)
    i = f.intrinsics
    K = [float(i.fx), 0.0, float(i.cx), 0.0, float(i.fy), float(i.cy), 0.0, 0.0, 1.0]
    T = None if f.extrinsics is None else [float(x) for x in np.asarray(f.extrinsics, float).reshape(16)]
    color = M.CameraColor(**common, format=fmt, data=encode_color(f.rgb, fmt, quality), width=w, height=h, K=K,
                          distortion_model=i.model, D=[float(x) for x in i.distortion][:16], T_base_cam=T)
    data, step = encode_depth(f.depth)
    return [color, M.CameraDepth(**common, width=w, height=h, step=step, data=data)]


class FramePump:
    """``camera`` (unopened) → the ring ``ring`` → ``camera/frame`` (+ recorded frames); see the module docstring."""

    def __init__(self, name: str, camera, section: CameraSection, ring: str, *, clock=None):
        self.name = name
        self.camera = camera
        self.section = section
        self.ring_name = ring
        self.clock = clock or (lambda f: f.host_stamp_ns)
        self.writer: FrameRingWriter | None = None
        fps = float(getattr(camera.config, "fps", 0.0) or 0.0)
        self._publish = Schedule(section.publish_hz, fps)
        self._record = Schedule(section.record_hz, min(fps, section.publish_hz) if section.publish_hz else fps)
        self._queue: collections.deque = collections.deque()
        self._lock = threading.Lock()
        self._r, self._w = os.pipe()
        os.set_blocking(self._r, False)
        os.set_blocking(self._w, False)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None
        self.finished = False             # the camera's stream ended (a replay without loop)
        self.stats = {"frames": 0, "published": 0, "skipped": 0, "recorded": 0, "queue_dropped": 0,
                      "write_us_max": 0, "record_ms_max": 0.0, "replaced_stale_ring": None}
        self._t_rate = (time.monotonic(), 0)
        self.fps = 0.0
        self.last_capture_ns: int | None = None

    # ------------------------------------------------------------------------------- life cycle
    def start(self) -> None:
        """Open the camera (and create the ring, if its size is known) and start the pump's thread."""
        if self.section.record_hz > 0:
            _cv2()                        # a missing OpenCV is a set-up error, not a failure at the first record
        self.camera.open()
        cfg = self.camera.config
        w, h = getattr(cfg, "width", None), getattr(cfg, "height", None)
        if w and h:
            self._ring(int(w), int(h))
        self._thread = threading.Thread(target=self._run, name=f"pump-{self.name}", daemon=True)
        self._thread.start()

    def _ring(self, width: int, height: int) -> FrameRingWriter:
        if self.writer is not None and (self.writer.width, self.writer.height) == (width, height):
            return self.writer
        if self.writer is not None:
            self.writer.close()
        self.writer = FrameRingWriter.create(self.ring_name, slots=self.section.slots, width=width, height=height,
                                             directory=self.section.ring_dir, camera=self.name)
        if self.writer.replaced:
            self.stats["replaced_stale_ring"] = self.writer.replaced
        return self.writer

    @property
    def native_id(self) -> int | None:
        """The pump thread's kernel thread id (None before :meth:`start`)."""
        return None if self._thread is None else self._thread.native_id

    def fileno(self) -> int:
        """Readable when bodies are waiting in :meth:`take` (or the pump stopped)."""
        return self._r

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10.0)
        try:
            self.camera.close()
        finally:
            if self.writer is not None:
                self.writer.close()
            for fd in (self._r, self._w):
                try:
                    os.close(fd)
                except OSError:
                    pass

    # ------------------------------------------------------------------------------- the thread
    def _run(self) -> None:
        from kinebridge.drivers.camera.base import CameraError, CameraTimeout

        try:
            while not self._stop.is_set():
                try:
                    f = self.camera.read(timeout=0.25)
                except CameraTimeout:
                    continue
                except CameraError as exc:
                    if getattr(exc.__cause__, "end_of_stream", False) or getattr(exc, "end_of_stream", False):
                        self.finished = True
                        return
                    raise
                self._frame(f)
        except BaseException as exc:  # noqa: BLE001 - handed to the node's loop
            self.error = exc
        finally:
            self._wake()

    def _frame(self, f) -> None:
        st = self.stats
        st["frames"] += 1
        cap = int(self.clock(f))
        if not self._publish.due(cap):
            st["skipped"] += 1
            return
        h, w = f.rgb.shape[:2]
        ring = self._ring(w, h)
        t0 = time.perf_counter_ns()
        wr = ring.write(f.rgb, f.depth, capture_ns=cap, device_stamp_ns=f.device_stamp_ns, intrinsics=f.intrinsics,
                        extrinsics=f.extrinsics)
        st["write_us_max"] = max(st["write_us_max"], (time.perf_counter_ns() - t0) // 1000)
        out = [M.FrameRef(camera=self.name, ring=self.ring_name, generation=ring.generation, slot=wr.slot,
                          frame_seq=wr.frame_seq, capture_ns=cap, device_stamp_ns=f.device_stamp_ns, width=w, height=h)]
        if self.section.record_hz > 0 and self._record.due(cap):
            t1 = time.perf_counter()
            out += self.recorded(f, wr.frame_seq, cap)
            st["recorded"] += 1
            st["record_ms_max"] = round(max(st["record_ms_max"], (time.perf_counter() - t1) * 1e3), 2)
        self.last_capture_ns = cap
        with self._lock:
            self._queue.extend(out)
            while len(self._queue) > QUEUE:
                self._queue.popleft()
                st["queue_dropped"] += 1
        self._wake()

    def recorded(self, f, frame_seq: int, capture_ns: int) -> list[M.Body]:
        """The ``camera/color`` and ``camera/depth`` bodies of frame ``f``."""
        return recorded_bodies(self.name, f, frame_seq, capture_ns, self.section.record_format,
                               self.section.jpeg_quality)

    def _wake(self) -> None:
        try:
            os.write(self._w, b"\0")
        except (BlockingIOError, OSError):
            pass                              # the pipe is full: the loop is awake anyway

    # ------------------------------------------------------------------------------- the node's side
    def take(self) -> list[M.Body]:
        """Bodies to publish, oldest first (the node's thread calls this when :meth:`fileno` is readable)."""
        try:
            while os.read(self._r, 4096):
                pass
        except (BlockingIOError, OSError):
            pass
        with self._lock:
            out = list(self._queue)
            self._queue.clear()
        return out

    def detail(self) -> dict:
        now = time.monotonic()
        t, n = self._t_rate
        if now - t >= 1.0:
            self.fps = round((self.stats["published"] - n) / (now - t), 1)
            self._t_rate = (now, self.stats["published"])
        d = dict(self.stats, fps=self.fps, ring=str(self.writer.path) if self.writer else None)
        if self.last_capture_ns is not None:
            d["last_frame_age_s"] = round((time.monotonic_ns() - self.last_capture_ns) / 1e9, 3)
        if self.finished:
            d["finished"] = True
        return d
