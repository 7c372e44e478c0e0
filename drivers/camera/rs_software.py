"""A software RealSense: an ``rs.software_device`` shaped like a D435i that frames are injected into.

librealsense's software device has the sensors, stream profiles, options and extrinsics of a
real camera and feeds injected frames through the same syncer / align machinery, so
:class:`~kinebridge.drivers.camera.realsense.RealsenseCamera` runs unchanged on it: this is how
the RealSense path is tested without hardware, and how recorded RGB-D can be replayed into it.

``SoftwareD435(modes=[(640, 480, 30), ...])`` offers those colour and depth modes; after the
camera has opened the sensors, :meth:`SoftwareD435.start` runs a thread that calls
``source(k) -> (rgb uint8 (H, W, 3), depth_m float32 (H, W))`` and injects both at ``fps``
with hardware-clock timestamps (ms since start) and frame numbers.
"""

from __future__ import annotations

import threading
import time

import numpy as np

__all__ = ["SoftwareD435"]


class SoftwareD435:
    def __init__(self, modes=((640, 480, 30),), *, fx: float = 615.0, depth_units: float = 0.001,
                 serial: str = "000000000001", baseline_m: float = 0.0):
        from kinebridge.drivers.camera.realsense import import_pyrealsense2

        rs = self.rs = import_pyrealsense2()
        self.depth_units = float(depth_units)
        self.fx = float(fx)
        self.device = rs.software_device()
        self.device.register_info(rs.camera_info.name, "Intel RealSense D435I (software)")
        self.device.register_info(rs.camera_info.serial_number, serial)
        self.depth_sensor = self.device.add_sensor("Stereo Module")
        self.color_sensor = self.device.add_sensor("RGB Camera")
        self.depth_sensor.add_read_only_option(rs.option.depth_units, self.depth_units)
        self._profiles: dict[tuple[str, int, int, int], object] = {}
        uid = 0
        for w, h, fps in modes:
            for kind, sensor, stream, fmt, bpp in (("depth", self.depth_sensor, rs.stream.depth, rs.format.z16, 2),
                                                   ("color", self.color_sensor, rs.stream.color, rs.format.rgb8, 3)):
                vs = rs.video_stream()
                vs.type, vs.index, vs.uid = stream, 0, uid
                vs.width, vs.height, vs.fps, vs.bpp, vs.fmt = w, h, fps, bpp, fmt
                vs.intrinsics = self.intrinsics(w, h)
                self._profiles[(kind, w, h, fps)] = sensor.add_video_stream(vs)
                uid += 1
        ext = rs.extrinsics()
        ext.rotation = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
        ext.translation = [baseline_m, 0.0, 0.0]
        for (kind, w, h, fps), p in self._profiles.items():
            if kind == "depth":
                for (k2, w2, h2, f2), p2 in self._profiles.items():
                    if k2 == "color":
                        p.register_extrinsics_to(p2, ext)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.injected = 0

    def intrinsics(self, w: int, h: int):
        rs = self.rs
        i = rs.intrinsics()
        i.width, i.height = w, h
        i.fx = i.fy = self.fx * w / 640.0
        i.ppx, i.ppy = (w - 1) / 2.0, (h - 1) / 2.0
        i.model = rs.distortion.none
        i.coeffs = [0.0] * 5
        return i

    def _active(self, sensor):
        profiles = sensor.get_active_streams()
        if not profiles:
            raise RuntimeError("the camera has not opened this sensor yet; open the camera before start()")
        return profiles[0].as_video_stream_profile()

    def start(self, source) -> None:
        """Inject ``source(k)`` frames at the opened mode's rate until :meth:`stop`."""
        dp, cp = self._active(self.depth_sensor), self._active(self.color_sensor)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(source, dp, cp), daemon=True, name="sw-d435")
        self._thread.start()

    def _run(self, source, dp, cp) -> None:
        rs = self.rs
        period = 1.0 / dp.fps()
        t0 = time.monotonic()
        k = 0
        while not self._stop.is_set():
            rgb, depth_m = source(k)
            z16 = np.clip(np.round(np.asarray(depth_m, np.float64) / self.depth_units), 0, 65535).astype(np.uint16)
            rgb = np.ascontiguousarray(rgb, np.uint8)
            ts = (time.monotonic() - t0) * 1000.0
            for sensor, prof, pix, bpp in ((self.depth_sensor, dp, z16, 2), (self.color_sensor, cp, rgb, 3)):
                f = rs.software_video_frame()
                f.pixels = pix
                f.stride = pix.shape[1] * bpp
                f.bpp = bpp
                f.timestamp = ts
                f.domain = rs.timestamp_domain.hardware_clock
                f.frame_number = k + 1
                f.profile = prof
                if bpp == 2:
                    f.depth_units = self.depth_units
                sensor.on_video_frame(f)
            self.injected += 1
            k += 1
            self._stop.wait(max(0.0, t0 + k * period - time.monotonic()))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None
