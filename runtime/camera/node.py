"""The camera node (kind ``camera``): one camera's frames into a shared-memory ring, ``camera/frame``
on the bus, frames recorded at ``[camera] record_hz``.

    [nodes.cam0]
    kind = "camera"
    [camera]
    device = { kind = "realsense", width = 640, height = 480, fps = 30 }

The camera is ``[camera] devices.<node name>`` or ``[camera] device``, made by
:func:`kinebridge.drivers.camera.make_camera` (``realsense``, ``replay``; ``synthetic`` renders a
static world built from ``[world]`` — the world node is the one that moves). Its ring is
``<bus tag>-<node name>`` in ``[camera] ring_dir``; consumers attach to the ring a ``camera/frame``
names (:class:`~kinebridge.runtime.bus.frames.FrameRingReader`). The node listens to nothing.

The loop waits on the bus socket and on each camera pump's pipe at once (``zmq.Poller``), so a
frame is announced as soon as it is in the ring, and ticks at ``tick_hz`` (the world node steps
its physics there). A camera that fails (unplugged, stalled) fails the node, which the supervisor
restarts; its ring is removed on every exit path, and a ring left by a killed node is replaced at
the next start.
"""

from __future__ import annotations

import math
import time

import zmq

from kinebridge.runtime.bus import messages as M
from kinebridge.runtime.camera.config import ring_name
from kinebridge.runtime.camera.pump import FramePump
from kinebridge.runtime.node import Node

__all__ = ["CameraNode", "yield_threads"]

RENDER_NICE = 10         # synthetic cameras render at this much lower priority than the node's loop


def yield_threads(keep: set[int], nice: int = RENDER_NICE) -> list[str]:
    """Lower the priority (``nice`` more) of this process's threads except ``keep`` (native ids) and
    ZeroMQ's I/O threads: a renderer's threads (the camera's capture thread, llvmpipe's rasterisers)
    then yield the CPU to the node's loop (bus, physics, heartbeat) on a busy machine. Returns the
    names of the threads lowered (Linux; elsewhere nothing)."""
    import os

    done = []
    try:
        tids = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        return done
    for tid in tids:
        if tid in keep:
            continue
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                comm = f.read().strip()
            if comm.startswith("ZMQ"):
                continue
            os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
            done.append(comm)
        except OSError:
            continue
    return done


class CameraNode(Node):
    tick_hz = 2.0

    def subscriptions(self):
        return None                       # a camera listens to nothing

    # ----------------------------------------------------------------------- for subclasses
    def make_cameras(self) -> dict:
        """{camera name: unopened Camera}."""
        from kinebridge.drivers.camera import make_camera

        device = self.cfg.camera.device_for(self.name)
        if device is None:
            raise ValueError(f"camera node {self.name!r}: no camera configured; set [camera] device (or "
                             f"[camera.devices.{self.name}]) to a camera config, e.g. {{ kind = \"realsense\" }}")
        context = {}
        if device.get("kind") == "synthetic":
            from kinebridge.runtime.world.scene import build_world
            self.detail["setup"] = "building the world for the synthetic camera"
            context["world"] = build_world(self.cfg, [device])
        return {self.name: make_camera(device, **context)}

    def capture_clock(self, camera: str):
        """``f(frame) -> capture_ns`` for ``camera`` (None: the frame's host stamp)."""
        return None

    def renders(self) -> bool:
        """Whether this node's cameras render (synthetic): their threads then yield to the loop."""
        return (self.cfg.camera.device_for(self.name) or {}).get("kind") == "synthetic"

    # ----------------------------------------------------------------------------- the node
    def setup(self) -> None:
        self.pumps: list[FramePump] = []
        self.detail["setup"] = "opening the cameras"
        for name, cam in self.make_cameras().items():
            pump = FramePump(name, cam, self.cfg.camera, ring_name(self.cfg.bus.ipc_dir, name),
                             clock=self.capture_clock(name))
            self.pumps.append(pump)
            pump.start()
        if self.renders():
            import threading
            keep = {threading.main_thread().native_id, *(p.native_id for p in self.pumps)}
            self.detail["yielding_threads"] = len(yield_threads(keep))
        self.detail.pop("setup", None)
        self._update_detail()

    def publish_frames(self) -> None:
        for p in self.pumps:
            for body in p.take():
                self.pub.send(body)
                if isinstance(body, M.FrameRef):
                    p.stats["published"] += 1
            if p.error is not None:
                raise RuntimeError(f"camera {p.name!r} stopped: {type(p.error).__name__}: {p.error}") from p.error

    def _update_detail(self) -> None:
        self.detail["cameras"] = {p.name: p.detail() for p in getattr(self, "pumps", ())}

    def loop(self) -> None:
        poller = zmq.Poller()
        poller.register(self.sub.sock, zmq.POLLIN)
        for p in self.pumps:
            poller.register(p.fileno(), zmq.POLLIN)
        period = 1.0 / self.tick_hz
        next_tick = time.monotonic()
        next_detail = 0.0
        while not self.stopping:
            wait = min(next_tick, self._next_hb) - time.monotonic()
            ready = dict(poller.poll(max(0, math.ceil(wait * 1e3))))
            if self.sub.sock in ready:
                for m in self.sub.drain():
                    self.on_message(m)
            self.publish_frames()
            now = time.monotonic()
            if now >= next_tick:
                self.on_tick(now)
                next_tick = max(next_tick + period, now)
            if now >= next_detail:
                self._update_detail()
                next_detail = now + 0.5
            self.heartbeat(now)

    def teardown(self) -> None:
        for p in getattr(self, "pumps", ()):
            try:
                p.close()
            except Exception as exc:  # close every camera and ring, report the first failure
                self.detail.setdefault("teardown", f"{p.name}: {exc}")
        self._update_detail()
