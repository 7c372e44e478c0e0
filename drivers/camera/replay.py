"""The replay camera: frames from a kinebridge recording, played back with their recorded timing.

A camera node records frames at ``[camera] record_hz`` as two messages per frame: colour as
``foxglove.CompressedImage`` (JPEG or PNG) and depth as ``foxglove.RawImage`` (16UC1, millimetres),
each with the frame's camera, number, capture stamp (CLOCK_MONOTONIC ns), device stamp and — on
the colour message — its calibration (``K``, ``distortion_model``, ``D``, ``T_base_cam``). This camera
reads those channels (found by their schema names, so any recording of kinebridge's layout plays),
pairs colour and depth of one frame, and releases frame *i* ``(capture_i − capture_0) / speed``
after the first (``Camera.read`` waits for it, ``read_latest`` has the newest released). Each
``Frame`` has the recorded intrinsics and extrinsics (``extrinsics`` in the config replaces the
recorded pose), ``host_stamp_ns`` = when it was released here, ``device_stamp_ns`` = the recorded
device stamp, and ``meta`` = the recorded ``capture_ns`` and ``frame_seq`` and the file.

At the end of the recording the stream ends — reads raise ``CameraError`` caused by
:class:`ReplayEnded` (``end_of_stream``) once the last frame was taken — or, with ``loop``, starts
again. A recording without frames is refused at ``open`` naming what it holds. Files cut short by
a crash play up to their last complete chunk. Needs ``mcap`` (a runtime dependency) and OpenCV
(the world extra) to decode the images.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kinebridge.drivers.camera import geometry
from kinebridge.drivers.camera.base import Camera, CameraError, CameraNotFound, Frame, UnsupportedMode
from kinebridge.drivers.camera.configs import ReplayCameraConfig

__all__ = ["ReplayCamera", "ReplayEnded", "COLOR_SCHEMA", "DEPTH_SCHEMA", "recorded_frames"]

COLOR_SCHEMA = "foxglove.CompressedImage"    # the schema names the recorder gives camera/color and camera/depth
DEPTH_SCHEMA = "foxglove.RawImage"
_PENDING = 64                                # unpaired halves kept while scanning (a cut pair is dropped)


class ReplayEnded(CameraError):
    """The recording has no more frames."""

    end_of_stream = True


@dataclass
class RecordedFrame:
    """One recorded frame's colour and depth messages (decoded JSON) and the file they came from."""

    camera: str
    frame_seq: int
    capture_ns: int
    color: dict
    depth: dict
    file: Path


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(path.glob("*.mcap"))
        if not files:
            raise CameraNotFound(f"replay: {path} holds no .mcap recordings")
        return files
    if not path.is_file():
        raise CameraNotFound(f"replay: no recording at {path}")
    return [path]


def _messages(file: Path, topics_seen: set):
    """(schema name, topic, message bytes) of the image channels of ``file``, in file order; a cut file
    up to its last complete record."""
    from mcap.reader import NonSeekingReader, make_reader

    with open(file, "rb") as f:
        try:
            summary = make_reader(f).get_summary()
        except Exception:  # noqa: BLE001 - a file cut by a crash has no summary: read it linearly
            summary = None
        f.seek(0)
        topics = None
        if summary is not None and summary.chunk_indexes:
            topics_seen.update(c.topic for c in summary.channels.values())
            topics = [c.topic for c in summary.channels.values()
                      if summary.schemas.get(c.schema_id) is not None
                      and summary.schemas[c.schema_id].name in (COLOR_SCHEMA, DEPTH_SCHEMA)]
            if not topics:
                return
            it = make_reader(f).iter_messages(topics=topics, log_time_order=False)
        else:
            it = NonSeekingReader(f).iter_messages(log_time_order=False)
        try:
            for schema, channel, message in it:
                topics_seen.add(channel.topic)
                if schema is not None and schema.name in (COLOR_SCHEMA, DEPTH_SCHEMA):
                    yield schema.name, channel.topic, message.data
        except Exception:  # noqa: BLE001 - the torn end of a crashed recorder's file
            return


def recorded_frames(path, camera: str | None = None, topics_seen: set | None = None):
    """The frames of the recording(s) at ``path`` (file or directory), colour and depth paired, in order
    (:class:`RecordedFrame`); ``camera``: only that camera's (default: the first camera found's)."""
    topics_seen = set() if topics_seen is None else topics_seen
    for file in _files(Path(path)):
        pending: dict = {}
        for schema, topic, data in _messages(file, topics_seen):
            try:
                doc = json.loads(data)
            except ValueError:
                continue
            cam = doc.get("camera") or doc.get("frame_id") or topic
            if camera is None:
                camera = cam
            if cam != camera:
                continue
            cap = doc.get("capture_ns")
            if not isinstance(cap, int):
                ts = doc.get("timestamp") or {}
                cap = int(ts.get("sec", 0)) * 1_000_000_000 + int(ts.get("nsec", 0))
            key = (doc.get("frame_seq"), cap)
            half = pending.setdefault(key, {})
            half["color" if schema == COLOR_SCHEMA else "depth"] = doc
            if len(half) == 2:
                del pending[key]
                fs = key[0] if isinstance(key[0], int) else -1
                yield RecordedFrame(cam, fs, cap, half["color"], half["depth"], file)
            while len(pending) > _PENDING:
                pending.pop(next(iter(pending)))


def _import_cv2():
    try:
        import cv2
    except ImportError as exc:
        raise CameraError("the replay camera decodes JPEG/PNG with OpenCV: pip install 'kinebridge[world]' "
                          "(or opencv-python-headless)") from exc
    return cv2


class ReplayCamera(Camera):
    """Plays back the frames of a recording per :class:`~kinebridge.drivers.camera.configs.ReplayCameraConfig`."""

    kind = "replay"

    def __init__(self, config: ReplayCameraConfig | None = None):
        if config is None:
            raise ValueError("ReplayCamera needs a config naming the recording: make_camera({'kind': 'replay', "
                             "'path': 'out/recordings/kinebridge-….mcap'})")
        super().__init__(config)
        self.path = Path(config.path)
        self.extrinsics = None if config.extrinsics is None else config.extrinsics.pose()
        self.intrinsics: geometry.Intrinsics | None = None
        self.frames_played = 0
        self._it = None
        self._next: RecordedFrame | None = None
        self._t0: tuple[int, int] | None = None

    # ------------------------------------------------------------------------------- device
    def _start(self) -> None:
        self._cv2 = _import_cv2()
        seen: set = set()
        self._it = recorded_frames(self.path, self.config.camera, seen)
        first = next(self._it, None)
        if first is None:
            which = f" of camera {self.config.camera!r}" if self.config.camera else ""
            raise CameraError(f"replay: {self.path} holds no recorded camera frames{which} (colour {COLOR_SCHEMA} + "
                              f"depth {DEPTH_SCHEMA}, as a camera node records them at [camera] record_hz > 0); "
                              f"its topics: {sorted(seen) or 'none'}")
        c = first.color
        w, h = int(c.get("width", 0)), int(c.get("height", 0))
        cfg = self.config
        if (cfg.width is not None and cfg.width != w) or (cfg.height is not None and cfg.height != h):
            raise UnsupportedMode(f"replay: {self.path} holds {w}×{h} frames of camera {first.camera!r}; the "
                                  f"config asks for {cfg.width}×{cfg.height} (omit width/height to take the recorded size)")
        self.camera_name = first.camera
        self.intrinsics = self._intrinsics(c, w, h)
        self._next = first
        self._t0 = None
        self._resume_ns = None
        self._released_ns = 0
        self._last_capture_ns = None
        self._gap_ns = int(1e9 / cfg.fps)
        self.frames_played = 0

    def _intrinsics(self, c: dict, w: int, h: int) -> geometry.Intrinsics:
        K = c.get("K") or [0.0] * 9
        model = c.get("distortion_model", "none")
        if model not in ("none", "brown_conrady", "inverse_brown_conrady", "kannala_brandt4"):
            model = "other"
        return geometry.Intrinsics(fx=float(K[0]), fy=float(K[4]), cx=float(K[2]), cy=float(K[5]), width=w, height=h,
                                   model=model, distortion=tuple(float(x) for x in (c.get("D") or [0.0] * 5)))

    def _take(self) -> RecordedFrame | None:
        rec, self._next = self._next, None
        if rec is None:
            rec = next(self._it, None)
        if rec is None and self.config.loop and self.frames_played:
            self._it = recorded_frames(self.path, self.camera_name)
            self._t0 = None                       # the next pass starts one recorded frame interval later
            self._resume_ns = self._released_ns + int(self._gap_ns / self.config.speed)
            rec = next(self._it, None)
        return rec

    def _grab(self) -> Frame | None:
        rec = self._take()
        if rec is None:
            # let the last frame be read before the stream ends (an error hides the newest frame)
            deadline = time.monotonic() + 2.0
            while self._returned_seq < self._seq - 1 and time.monotonic() < deadline and not self._stop.is_set():
                self._stop.wait(0.005)
            raise ReplayEnded(f"replay of {self.path} ended after {self.frames_played} frames")
        now = time.monotonic_ns()
        if self._t0 is None:
            due = self._resume_ns
        else:
            due = self._t0[0] + (rec.capture_ns - self._t0[1]) / self.config.speed
        if due is not None and due > now:
            if self._stop.wait((due - now) / 1e9):
                self._next = rec                  # stopped while waiting: keep it for a reopen
                return None
            now = time.monotonic_ns()
        if self._t0 is None:
            self._t0 = (now, rec.capture_ns)
            self._resume_ns = None
        if self._last_capture_ns is not None and rec.capture_ns > self._last_capture_ns:
            self._gap_ns = rec.capture_ns - self._last_capture_ns
        self._last_capture_ns = rec.capture_ns
        self._released_ns = now
        frame = self._decode(rec)
        self.frames_played += 1
        return frame

    def _decode(self, rec: RecordedFrame) -> Frame:
        cv2 = self._cv2
        c, d = rec.color, rec.depth
        w, h = int(c["width"]), int(c["height"])
        buf = np.frombuffer(base64.b64decode(c["data"]), np.uint8)
        bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        if bgr is None or bgr.shape[:2] != (h, w):
            raise CameraError(f"replay: frame {rec.frame_seq} of {rec.file} does not decode as a {w}×{h} "
                              f"{c.get('format')} image")
        rgb = np.ascontiguousarray(bgr[..., ::-1])
        if d.get("encoding", "16UC1") != "16UC1" or (int(d["width"]), int(d["height"])) != (w, h):
            raise CameraError(f"replay: the depth of frame {rec.frame_seq} of {rec.file} is not 16UC1 {w}×{h}")
        raw = np.frombuffer(base64.b64decode(d["data"]), "<u2")
        step = int(d.get("step", 2 * w))
        if raw.size * 2 != step * h:
            raise CameraError(f"replay: the depth of frame {rec.frame_seq} of {rec.file} has {raw.size * 2} bytes, "
                              f"expected {step * h}")
        depth = (raw.reshape(h, step // 2)[:, :w].astype(np.float32) * np.float32(d.get("depth_scale", 0.001)))
        intr = self.intrinsics if (self.intrinsics.width, self.intrinsics.height) == (w, h) else self._intrinsics(c, w, h)
        T = self.extrinsics
        if T is None and c.get("T_base_cam") is not None:
            T = np.asarray(c["T_base_cam"], float).reshape(4, 4)
        dev = c.get("device_stamp_ns")
        return Frame(rgb=rgb, depth=depth, intrinsics=intr, extrinsics=None if T is None else T.copy(),
                     host_stamp_ns=time.monotonic_ns(), device_stamp_ns=dev if isinstance(dev, int) else None, seq=0,
                     meta={"recorded_capture_ns": rec.capture_ns, "recorded_frame_seq": rec.frame_seq,
                           "camera": rec.camera, "file": str(rec.file)})

    def _stop_device(self) -> None:
        self._it = None
