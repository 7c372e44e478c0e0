"""The camera interface: a stamped, aligned RGB-D :class:`Frame` and the :class:`Camera` contract.

Modelled on LeRobot's ``Camera`` (a config per kind, ``connect``/``read``/``async_read``/
``read_latest``): every camera runs a capture thread that keeps only the newest frame, so

- :meth:`Camera.read_latest` returns the newest frame at once (``None`` before the first),
  never waiting — what a control-rate consumer wants;
- :meth:`Camera.read` waits (up to ``timeout`` s) for a frame newer than the last one this
  camera returned from ``read`` — what a consumer that must see every new image wants;

and the subclass only says how to open, grab one frame (blocking), and close. Stamps:
``host_stamp_ns`` is ``time.monotonic_ns()`` (CLOCK_MONOTONIC, the bus's clock) when the frame
was captured; ``device_stamp_ns`` is the device's own clock (RealSense hardware clock; the
simulated world's time for the synthetic camera); ``seq`` counts frames from 0 per open.
"""

from __future__ import annotations

import abc
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from kinebridge.drivers.camera.geometry import Intrinsics

__all__ = ["Frame", "GroundTruth", "Camera", "CameraError", "CameraNotFound", "CameraBusy",
           "UnsupportedMode", "CameraTimeout", "CameraClosed"]


class CameraError(RuntimeError):
    """A camera could not be opened or stopped delivering frames; the message says what to do."""


class CameraNotFound(CameraError):
    """No such device is connected."""


class CameraBusy(CameraError):
    """The device exists but another program holds it."""


class UnsupportedMode(CameraError, ValueError):
    """The device does not offer the requested resolution / rate / format."""


class CameraTimeout(CameraError, TimeoutError):
    """No new frame within the timeout."""


class CameraClosed(CameraError):
    """The camera is not open."""


@dataclass(frozen=True)
class GroundTruth:
    """What the simulated world knows about a synthetic frame (base frame of the arm, metres).

    ``segmentation`` (H, W) int32 holds label ids, ``labels[id]`` their names; ``keypoints_3d``
    ``{label: {name: xyz}}``; ``keypoints_2d`` ``{label: {name: (u, v, z, visible)}}`` with
    (u, v) in pixels, z the depth along the optical axis and ``visible`` true when the point is
    in the image and nothing nearer covers its pixel; ``object_poses`` ``{name: (4, 4)}``;
    ``visible_pixels`` ``{label: count}`` of the segmentation (empty without it).
    """

    labels: tuple[str, ...]
    segmentation: np.ndarray | None
    keypoints_3d: dict
    keypoints_2d: dict
    object_poses: dict
    flange: np.ndarray
    held: np.ndarray | None
    world_time: float
    visible_pixels: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Frame:
    """One aligned RGB-D capture.

    ``rgb`` (H, W, 3) uint8; ``depth`` (H, W) float32 metres along the optical axis, aligned to
    ``rgb`` (0 = no depth); ``intrinsics`` of both; ``extrinsics`` T_base_cam (4, 4) or ``None``
    if the camera is not calibrated; stamps as in the module docstring.
    """

    rgb: np.ndarray
    depth: np.ndarray
    intrinsics: Intrinsics
    extrinsics: np.ndarray | None
    host_stamp_ns: int
    device_stamp_ns: int | None
    seq: int
    ground_truth: GroundTruth | None = None
    meta: dict = field(default_factory=dict)


class Camera(abc.ABC):
    """Open/close, newest-frame and next-frame reads over a capture thread (see the module docstring)."""

    #: the ``kind`` of its config
    kind: str = ""

    def __init__(self, config):
        self.config = config
        self._cond = threading.Condition()
        self._latest: Frame | None = None
        self._returned_seq = -1
        self._seq = 0
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._open = False

    # ------------------------------------------------------------------------ subclass API

    @abc.abstractmethod
    def _start(self) -> None:
        """Connect to the device (caller's thread); raise a :class:`CameraError` on failure."""

    def _thread_init(self) -> None:
        """Per-thread setup in the capture thread (e.g. a GL context)."""

    @abc.abstractmethod
    def _grab(self) -> Frame | None:
        """Block until the next frame and return it (``seq`` is filled in); ``None`` to retry."""

    def _thread_exit(self) -> None:
        """Per-thread teardown in the capture thread."""

    @abc.abstractmethod
    def _stop_device(self) -> None:
        """Release the device (caller's thread, after the capture thread has ended)."""

    # ------------------------------------------------------------------------------ public

    @property
    def is_open(self) -> bool:
        return self._open

    def open(self) -> "Camera":
        """Connect and start capturing; returns self. Opening an open camera is an error."""
        if self._open:
            raise CameraError(f"{type(self).__name__} is already open")
        self._start()
        self._stop.clear()
        self._error = None
        self._latest = None
        self._returned_seq = -1
        self._seq = 0
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), name=f"camera-{self.kind}", daemon=True)
        self._thread.start()
        ready.wait()
        if self._error is not None:
            err = self._error
            self._thread.join()
            self._stop_device()
            raise err
        self._open = True
        return self

    def _run(self, ready: threading.Event) -> None:
        try:
            self._thread_init()
        except BaseException as err:  # noqa: BLE001 - handed to open()
            self._error = err
            ready.set()
            return
        ready.set()
        try:
            while not self._stop.is_set():
                frame = self._grab()
                if frame is None:
                    continue
                with self._cond:
                    frame = _with_seq(frame, self._seq)
                    self._seq += 1
                    self._latest = frame
                    self._cond.notify_all()
        except BaseException as err:  # noqa: BLE001 - reported by the next read
            with self._cond:
                self._error = err
                self._cond.notify_all()
        finally:
            try:
                self._thread_exit()
            except Exception:  # noqa: BLE001
                pass

    def _check(self) -> None:
        if not self._open:
            raise CameraClosed(f"{type(self).__name__} is not open; call open() (or use it as a context manager)")
        if self._error is not None:
            raise CameraError(f"{type(self).__name__} stopped: {self._error}") from self._error

    def read_latest(self) -> Frame | None:
        """The newest frame, without waiting (``None`` before the first one arrives)."""
        with self._cond:
            self._check()
            return self._latest

    def read(self, timeout: float = 1.0) -> Frame:
        """The next frame newer than the last one ``read`` returned; waits up to ``timeout`` s."""
        deadline = time.monotonic() + float(timeout)
        with self._cond:
            while True:
                self._check()
                f = self._latest
                if f is not None and f.seq > self._returned_seq:
                    self._returned_seq = f.seq
                    return f
                left = deadline - time.monotonic()
                if left <= 0:
                    raise CameraTimeout(f"{type(self).__name__}: no new frame within {timeout:.3g} s "
                                        f"({self._seq} frames so far)")
                self._cond.wait(left)

    def close(self) -> None:
        """Stop capturing and release the device; closing a closed camera does nothing."""
        if not self._open:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10.0)
        self._open = False
        self._stop_device()

    def __enter__(self) -> "Camera":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass


def _with_seq(frame: Frame, seq: int) -> Frame:
    if frame.seq == seq:
        return frame
    from dataclasses import replace
    return replace(frame, seq=seq)
