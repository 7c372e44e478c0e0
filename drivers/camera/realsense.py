"""Intel RealSense (D435i) camera through pyrealsense2: colour + depth aligned to colour.

pyrealsense2 is imported when a camera is made (it needs Debian's ``libusb-1.0-0``; its wheels
exist for x86_64 only — there is no aarch64 wheel on the package index, so on an ARM robot PC
build librealsense with its Python bindings from source).

The device is driven at the sensor level, the way librealsense's own tests drive it: pick the
depth sensor's z16 profile and the colour sensor's rgb8 profile that match the config (else
:class:`UnsupportedMode` listing what the device offers), open both sensors, start them into
one ``rs.syncer`` (which pairs depth and colour by timestamp), and in the capture thread wait
for a pair, align depth to colour with ``rs.align(rs.stream.color)`` (librealsense's own
reprojection through the depth→colour extrinsics) and convert z16 to metres with the depth
sensor's ``depth_units``. This path is the same for a USB camera and for an
``rs.software_device`` (frames injected by a test or a replay), so the hardware-free tests run
this code, not a stand-in.

Intrinsics are the colour stream's as the device reports them (after alignment, depth shares
them); the device stamp is the frame's timestamp (ms, converted to ns) in its reported domain
(``meta["timestamp_domain"]``: hardware clock, global time or system time).
"""

from __future__ import annotations

import time

import numpy as np

from kinebridge.drivers.camera import geometry
from kinebridge.drivers.camera.base import (Camera, CameraBusy, CameraError, CameraNotFound, CameraTimeout, Frame,
                                            UnsupportedMode)
from kinebridge.drivers.camera.configs import RealsenseCameraConfig

__all__ = ["RealsenseCamera", "import_pyrealsense2"]


def import_pyrealsense2():
    """``pyrealsense2``, or an ImportError that says how to install it on this platform."""
    try:
        import pyrealsense2 as rs
    except ImportError as err:
        import platform
        hint = ("pip install pyrealsense2 (x86_64 wheels only; on aarch64 build librealsense with "
                "-DBUILD_PYTHON_BINDINGS=ON)")
        if "libusb" in str(err):
            hint = "apt-get install -y libusb-1.0-0 (pyrealsense2 links against it)"
        raise ImportError(f"pyrealsense2 is not usable on {platform.machine()}: {err}; {hint}") from err
    if not hasattr(rs, "pipeline"):   # an empty namespace package: the wheel did not match the platform
        raise ImportError("pyrealsense2 imported without its native module; reinstall the wheel for this "
                          "platform (x86_64 only on the package index)")
    return rs


def _intrinsics(rs, p) -> geometry.Intrinsics:
    i = p.as_video_stream_profile().get_intrinsics()
    models = {rs.distortion.none: "none", rs.distortion.brown_conrady: "brown_conrady",
              rs.distortion.inverse_brown_conrady: "inverse_brown_conrady",
              rs.distortion.kannala_brandt4: "kannala_brandt4"}
    return geometry.Intrinsics(fx=i.fx, fy=i.fy, cx=i.ppx, cy=i.ppy, width=i.width, height=i.height,
                               model=models.get(i.model, "other"), distortion=tuple(float(c) for c in i.coeffs))


class RealsenseCamera(Camera):
    """A RealSense camera per ``config``; ``device`` (e.g. an ``rs.software_device``) or
    ``context`` (an ``rs.context``) replace discovery on USB."""

    kind = "realsense"

    def __init__(self, config: RealsenseCameraConfig | None = None, *, device=None, context=None):
        config = RealsenseCameraConfig() if config is None else config
        super().__init__(config)
        self.rs = import_pyrealsense2()
        self._device_arg, self._context_arg = device, context
        self.extrinsics = None if config.extrinsics is None else config.extrinsics.pose()
        self.intrinsics: geometry.Intrinsics | None = None
        self._sensors: list = []
        self._sync = None
        self._align = None
        self._units = 0.001
        self.device_name = ""
        self.serial = ""

    # ---------------------------------------------------------------------------- device

    def _find_device(self):
        rs = self.rs
        if self._device_arg is not None:
            return self._device_arg
        ctx = self._context_arg if self._context_arg is not None else rs.context()
        devices = list(ctx.query_devices())
        want = self.config.serial
        found = []
        for d in devices:
            try:
                found.append((d.get_info(rs.camera_info.serial_number), d))
            except RuntimeError:
                continue
        if want is not None:
            for s, d in found:
                if s == want:
                    return d
            raise CameraNotFound(f"RealSense serial {want} is not connected (found: {[s for s, _ in found] or 'none'}); "
                                 "check the USB 3 cable and port, `rs-enumerate-devices`, and librealsense's udev rules")
        if not found:
            raise CameraNotFound("no RealSense camera is connected; plug the D435i into a USB 3 port, check "
                                 "`rs-enumerate-devices` and librealsense's udev rules (99-realsense-libusb.rules)")
        if len(found) > 1:
            raise CameraError(f"{len(found)} RealSense cameras are connected ({[s for s, _ in found]}); "
                              "set serial in the camera config")
        return found[0][1]

    @staticmethod
    def _sensor(rs, device, stream):
        for s in device.query_sensors():
            if any(p.stream_type() == stream for p in s.get_stream_profiles()):
                return s
        raise UnsupportedMode(f"the device has no {stream} sensor; a D435i has 'Stereo Module' (depth) and "
                              "'RGB Camera' (colour)")

    @staticmethod
    def _profile(rs, sensor, stream, fmt, width, height, fps):
        offered = []
        for p in sensor.get_stream_profiles():
            if p.stream_type() != stream or p.format() != fmt:
                continue
            v = p.as_video_stream_profile()
            offered.append((v.width(), v.height(), p.fps()))
            if (v.width(), v.height()) == (width, height) and abs(p.fps() - fps) < 1e-6:
                return p
        modes = ", ".join(f"{w}x{h}@{f}" for w, h, f in sorted(set(offered))) or "none"
        raise UnsupportedMode(f"{stream} {width}x{height} at {fps:g} frames/s ({fmt}) is not offered by this "
                              f"device; it offers: {modes}. Set width/height/fps (or depth_width/depth_height) "
                              "in the camera config to one of them")

    def _start(self) -> None:
        rs = self.rs
        c = self.config
        dev = self._find_device()
        try:
            self.device_name = dev.get_info(rs.camera_info.name)
        except RuntimeError:
            self.device_name = "RealSense"
        try:
            self.serial = dev.get_info(rs.camera_info.serial_number)
        except RuntimeError:
            self.serial = ""
        depth_s = self._sensor(rs, dev, rs.stream.depth)
        color_s = self._sensor(rs, dev, rs.stream.color)
        fps = c.fps
        dp = self._profile(rs, depth_s, rs.stream.depth, rs.format.z16, c.depth_width or c.width,
                           c.depth_height or c.height, fps)
        cp = self._profile(rs, color_s, rs.stream.color, rs.format.rgb8, c.width, c.height, fps)
        try:
            self._units = float(depth_s.get_option(rs.option.depth_units))
        except RuntimeError:
            self._units = 0.001
        self.intrinsics = _intrinsics(rs, cp)
        self._sync = rs.syncer(4)
        opened = []
        try:
            for s, p in ((depth_s, dp), (color_s, cp)):
                s.open(p)
                opened.append(s)
            for s in opened:
                s.start(self._sync)
        except RuntimeError as err:
            for s in opened:
                try:
                    s.close()
                except RuntimeError:
                    pass
            msg = str(err)
            if any(k in msg.lower() for k in ("busy", "resource", "power state", "already", "in use", "streaming")):
                raise CameraBusy(f"RealSense {self.serial or ''} is in use by another program ({msg}); close "
                                 "realsense-viewer / other processes holding it, or unplug and replug it") from err
            raise CameraError(f"RealSense {self.serial or ''} would not start streaming: {msg}") from err
        self._sensors = opened
        self._align = rs.align(rs.stream.color)
        self._last_frame = time.monotonic()
        self._deadline = self._last_frame + c.timeout_s

    def _waited(self) -> float:
        return time.monotonic() - self._last_frame

    # --------------------------------------------------------------------------- capture

    def _grab(self) -> Frame | None:
        try:
            # short waits so close() is prompt; the stall deadline decides when the device is gone
            fs = self._sync.wait_for_frames(100)
        except RuntimeError as err:
            if self._stop.is_set():
                return None
            if time.monotonic() > self._deadline:
                raise CameraTimeout(f"RealSense {self.serial}: no frames for {self._waited():.1f} s ({err}); "
                                    "unplugged? check the USB 3 link (`rs-enumerate-devices -s`)") from err
            return None
        stamp = time.monotonic_ns()
        if fs.size() < 2 or not fs.get_depth_frame() or not fs.get_color_frame():
            return None          # the syncer released an unpaired frame; wait for a pair
        aligned = self._align.process(fs)
        d = aligned.get_depth_frame()
        col = aligned.get_color_frame()
        self._last_frame = time.monotonic()
        self._deadline = self._last_frame + self.config.frame_timeout_ms / 1000
        depth = np.asanyarray(d.get_data()).astype(np.float32) * np.float32(self._units)
        rgb = np.array(np.asanyarray(col.get_data()), dtype=np.uint8, copy=True)
        ts_ms = col.get_timestamp()
        return Frame(rgb=rgb, depth=depth, intrinsics=self.intrinsics,
                     extrinsics=None if self.extrinsics is None else self.extrinsics.copy(), host_stamp_ns=stamp,
                     device_stamp_ns=int(round(ts_ms * 1e6)), seq=0,
                     meta={"timestamp_domain": str(col.get_frame_timestamp_domain()),
                           "frame_number": int(col.get_frame_number()), "serial": self.serial})

    def _stop_device(self) -> None:
        for s in self._sensors:
            for op in (s.stop, s.close):
                try:
                    op()
                except RuntimeError:
                    pass
        self._sensors = []
        self._sync = None
