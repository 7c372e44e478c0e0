"""One frame → a perception/keypoints body (bad input explicit, never a keypoint at the origin), and the
perception node: stamped messages derived from the frame, camera errors reported, recovery."""

import time

import numpy as np
import pytest

from kinebridge.drivers.camera.base import CameraError, Frame
from kinebridge.drivers.camera.geometry import Intrinsics, look_at, project
from kinebridge.runtime.bus import messages as M
from kinebridge.runtime.perception.detector import Detection, DetectionResult, Detector
from kinebridge.runtime.perception.pipeline import Perception

KP = ("K_i", "K_p1", "K_p2", "K_b")
INTR = Intrinsics.from_fovy(640, 480, 42.5)
T = look_at((1.05, 0.0, 0.62), (0.38, 0.0, 0.04))


def frame(extrinsics=T, seq=0):
    return Frame(rgb=np.full((480, 640, 3), 90, np.uint8), depth=np.full((480, 640), 0.9, np.float32), intrinsics=INTR,
                 extrinsics=extrinsics, host_stamp_ns=time.monotonic_ns(), device_stamp_ns=None, seq=seq)


def mug_det(depth_ok=(True,) * 4, cls="mug", with_kp=True):
    xyz = np.array([[0.41, 0.0, 0.1], [0.45, 0.0, 0.1], [0.45, 0.0, 0.0], [0.52, 0.0, 0.05]])
    uv, z = project(xyz, INTR, T)
    ok = np.array(depth_ok)
    return Detection(cls=cls, score=0.9, box=np.array([uv[:, 0].min() - 5, uv[:, 1].min() - 5, uv[:, 0].max() + 5,
                                                        uv[:, 1].max() + 5]), centre=uv.mean(0),
                     uv=uv if with_kp else None, z=np.where(ok, z, np.nan) if with_kp else None,
                     conf=np.full(4, 0.8) if with_kp else None, visible=np.ones(4) if with_kp else None,
                     depth_ok=ok if with_kp else None, source="stub", extra={"regressed": np.zeros(4, bool)}), xyz


class Stub(Detector):
    classes = ("mug",)
    keypoints = KP

    def __init__(self, dets):
        self.dets = dets

    def detect(self, frame):
        return DetectionResult(list(self.dets), None if self.dets else "nothing in view: no object of a known class "
                                                                     "detected", {"inference": 0.1})


def test_keypoints_back_project_to_the_base_frame():
    d, xyz = mug_det()
    r = Perception(Stub([d]), KP, camera="cam").process(frame())
    (c,) = r.body.objects
    assert c["status"] == "ok" and c["class"] == "mug"
    for k, name in enumerate(KP):
        assert np.allclose(c["keypoints"][name], xyz[k], atol=1e-4)
    assert r.body.reason is None and r.body.camera == "cam" and r.body.width == 640


def test_a_depth_hole_at_a_keypoint_is_reported_not_invented():
    d, xyz = mug_det(depth_ok=(True, False, True, True))
    (c,) = Perception(Stub([d]), KP).process(frame()).body.objects
    assert "K_p1" not in c["keypoints"] and c["keypoint_detail"]["K_p1"]["status"] == "no_depth"
    assert c["status"] == "low_confidence" and "K_p1 no depth" in c["reason"]
    assert all(np.linalg.norm(v) > 0.1 for v in c["keypoints"].values())        # nothing at the origin
    d, _ = mug_det(depth_ok=(False,) * 4)
    r = Perception(Stub([d]), KP).process(frame())
    (c,) = r.body.objects
    assert c["keypoints"] == {} and "no depth at any keypoint" in c["reason"]


def test_nothing_in_view_unknown_class_and_no_calibration_are_explicit():
    r = Perception(Stub([]), KP).process(frame())
    assert r.body.objects == [] and r.body.reason.startswith("nothing in view")
    d, _ = mug_det(cls="bowl", with_kp=False)
    d.reason = "unknown class: the keypoint model knows ['mug'], not 'bowl'"
    r = Perception(Stub([d]), KP).process(frame())
    (c,) = r.body.objects
    assert c["keypoints"] == {} and c["status"] == "no_keypoints" and c["reason"].startswith("unknown class")
    assert r.body.reason.startswith("low confidence")
    d, _ = mug_det()
    (c,) = Perception(Stub([d]), KP).process(frame(extrinsics=None)).body.objects
    assert c["keypoints"] == {} and "not calibrated" in c["reason"]


def test_the_message_registry_refuses_bad_objects():
    with pytest.raises(ValueError, match="keypoints"):
        M.Keypoints(objects=[{"id": "m", "class": "mug", "keypoints": {"K_p1": [0.0, float("nan"), 0.1]}}])
    with pytest.raises(ValueError, match="class"):
        M.Keypoints(objects=[{"id": "m", "keypoints": {}}])
    with pytest.raises(ValueError, match="unknown|Extra"):
        M.Keypoints(objects=[{"id": "m", "class": "mug", "keypoints": {}, "colour": "red"}])


# ------------------------------------------------------------------------------------------- the node
@pytest.fixture
def shipped():
    pytest.importorskip("onnxruntime")
    from kinebridge.export.keypoints.model import DEFAULT_MODEL
    if not DEFAULT_MODEL.exists():
        pytest.skip("the shipped keypoint model is not installed")
    return DEFAULT_MODEL


def _cfg(tmp_path, **perception):
    from kinebridge.runtime.config import RuntimeConfig, load_config
    data = load_config(None).model_dump()
    data["bus"]["ipc_dir"] = str(tmp_path)
    data["nodes"] = {"perception": {"kind": "perception"}}
    data["perception"] = {"providers": "cpu", "threads": 1, **perception}
    return RuntimeConfig.model_validate(data)


class Flaky:
    """A frame source that fails (an unplugged camera) when told to."""

    name = "flaky"

    def __init__(self, frames):
        from kinebridge.runtime.perception.node import FramesSource
        self.inner = FramesSource(frames, name="flaky")
        self.broken = False
        self.opened = 0

    def open(self):
        if self.broken:
            raise CameraError("no RealSense connected")
        self.opened += 1

    def next(self, timeout):
        if self.broken:
            raise CameraError("device disconnected")
        return self.inner.next(timeout)

    def close(self):
        pass

    def stamp(self, f):
        return self.inner.stamp(f)


def test_the_node_publishes_keypoints_derived_from_the_frame_and_reports_a_lost_camera(tmp_path, shipped):
    from kinebridge.runtime.bus.sockets import Subscriber
    from kinebridge.runtime.perception.node import PerceptionNode

    cfg = _cfg(tmp_path, reopen_s=0.05)
    src = Flaky([frame(seq=0), frame(seq=1)])
    node = PerceptionNode("perception", cfg, source=src)
    sub = Subscriber([cfg.endpoint("perception")], (M.Keypoints.TOPIC,), name="test")
    try:
        node.setup()
        assert node.detail["provider"] == "CPUExecutionProvider" and node.detail["model"].startswith("mug_kp@")
        got = None
        for _ in range(100):                                # the subscription takes a moment to connect
            assert node.step(timeout=0.05)
            got = sub.recv(timeout_ms=50)
            if got is not None:
                break
        assert got is not None
        b = got.body
        assert b.capture_ns is not None and b.frame_seq is not None and b.model.startswith("mug_kp@")
        assert b.provider == "CPUExecutionProvider" and b.objects == [] and b.reason.startswith("nothing in view")
        (d,) = got.derived
        assert d.topic == M.FrameRef.TOPIC and d.seq == b.frame_seq and d.stamp_ns == b.capture_ns and d.src == "flaky"
        assert node.latency_ns and max(node.latency_ns) < 5e9
        src.broken = True
        assert not node.step(timeout=0.01)
        msg = sub.recv(timeout_ms=2000)
        while msg is not None and msg.body.reason and not msg.body.reason.startswith("camera"):
            msg = sub.recv(timeout_ms=2000)
        assert msg is not None and msg.body.reason.startswith("camera error: device disconnected")
        assert msg.body.objects == [] and node.status == "degraded"
        src.broken = False
        time.sleep(0.06)
        for _ in range(5):
            if node.step(timeout=0.05):
                break
        assert node.status != "degraded" and src.opened >= 2
    finally:
        node.teardown()
        sub.close()
        node.pub.close()
        node.sub.close()
        node.ctx.term()


def test_the_node_reads_frames_a_camera_node_writes_into_its_ring(tmp_path, shipped):
    from kinebridge.runtime.bus.codec import Message
    from kinebridge.runtime.bus.frames import FrameRingWriter
    from kinebridge.runtime.bus.sockets import Subscriber
    from kinebridge.runtime.perception.node import PerceptionNode, RingSource

    cfg = _cfg(tmp_path, source="ring", camera="cam0")
    ring = FrameRingWriter.create("kb-test-cam0", slots=4, width=640, height=480, directory=tmp_path, camera="cam0")
    node = PerceptionNode("perception", cfg)
    assert M.FrameRef.TOPIC in node.subscriptions()
    node.source = RingSource("cam0", str(tmp_path))
    sub = Subscriber([cfg.endpoint("perception")], (M.Keypoints.TOPIC,), name="test")
    try:
        node.setup()
        f = frame(seq=0)
        got = None
        for k in range(100):
            w = ring.write(f.rgb, f.depth, capture_ns=time.monotonic_ns(), intrinsics=INTR, extrinsics=T)
            ref = M.FrameRef(camera="cam0", ring="kb-test-cam0", generation=ring.generation, slot=w.slot,
                             frame_seq=w.frame_seq, capture_ns=time.monotonic_ns(), width=640, height=480)
            msg = Message(M.FrameRef.TOPIC, ref.header())
            msg.body, msg.stamp = ref, M.Stamp(src="camera", topic=M.FrameRef.TOPIC, seq=k, stamp_ns=ref.capture_ns)
            node.on_message(msg)
            assert node.step(timeout=0.05)
            got = sub.recv(timeout_ms=50)
            if got is not None:
                break
        assert got is not None and got.derived[0].src == "camera" and got.derived[0].topic == M.FrameRef.TOPIC
        assert got.body.frame_seq == got.derived[0].seq or got.body.frame_seq >= 0
        other = M.FrameRef(camera="cam1", ring="x", generation=1, slot=0, frame_seq=0, capture_ns=1, width=640,
                           height=480)
        m2 = Message(M.FrameRef.TOPIC, other.header())
        m2.body, m2.stamp = other, M.Stamp(src="camera", topic=M.FrameRef.TOPIC, seq=0, stamp_ns=1)
        node.on_message(m2)                                   # another camera's frames are not ours
        assert node.source.next(0.01) is None
    finally:
        node.teardown()
        ring.close()
        sub.close()
        node.pub.close()
        node.sub.close()
        node.ctx.term()


def test_a_reference_to_a_ring_that_is_gone_is_a_lost_frame(tmp_path):
    # a recording replayed later announces frames of rings whose cameras no longer run
    from kinebridge.runtime.bus.codec import Message
    from kinebridge.runtime.perception.node import RingSource
    src = RingSource(ring_dir=str(tmp_path))
    ref = M.FrameRef(camera="top", ring="kb-top-gone", generation=1, slot=0, frame_seq=7, capture_ns=1,
                     width=64, height=48)
    src.offer(Message(M.FrameRef.TOPIC, {}, {}, body=ref,
                      stamp=M.Stamp(src="replay", topic=M.FrameRef.TOPIC, seq=7, stamp_ns=1)))
    assert src.next(0.01) is None and src.lost == 1
    assert src.next(0.01) is None and src.lost == 1          # nothing offered since: no frame, nothing lost
