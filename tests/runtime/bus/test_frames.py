"""The shared-memory frame ring: real files in /dev/shm, real processes.

Every frame the writers here write encodes its own number in every pixel (colour channels and depth),
so a copy mixing two frames — a torn frame — is caught pixel by pixel."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid

import numpy as np
import pytest

from kinebridge.drivers.camera.geometry import Intrinsics
from kinebridge.runtime.bus.frames import (DEFAULT_RING_DIR, FrameRingReader, FrameRingWriter, RingBusy, RingNotFound,
                                           ring_path)

SHM = DEFAULT_RING_DIR if os.path.isdir(DEFAULT_RING_DIR) else "/tmp"


@pytest.fixture
def name():
    n = f"test-{uuid.uuid4().hex[:10]}"
    yield n
    ring_path(n, SHM).unlink(missing_ok=True)


def pattern(k: int, h: int, w: int):
    """Frame ``k``: every pixel says k (colour: k mod 251 and k div 251; depth: k + 0.5)."""
    rgb = np.empty((h, w, 3), np.uint8)
    rgb[..., 0] = k % 251
    rgb[..., 1] = (k // 251) % 251
    rgb[..., 2] = 255 - k % 251
    return rgb, np.full((h, w), k + 0.5, np.float32)


def consistent(f) -> bool:
    k = f.frame_seq
    return bool(np.all(f.rgb[..., 0] == k % 251) and np.all(f.rgb[..., 1] == (k // 251) % 251)
                and np.all(f.rgb[..., 2] == 255 - k % 251) and np.all(f.depth == np.float32(k + 0.5)))


def test_a_frame_round_trips_with_its_stamps_and_calibration(name):
    intr = Intrinsics(fx=600.0, fy=600.0, cx=319.5, cy=239.5, width=64, height=48, model="brown_conrady",
                      distortion=(0.1, -0.2, 0.001, 0.002, 0.05))
    T = np.eye(4)
    T[:3, 3] = (1.0, 0.1, 0.6)
    with FrameRingWriter.create(name, slots=4, width=64, height=48, directory=SHM, camera="cam0") as w, \
            FrameRingReader(name, SHM) as r:
        assert r.latest() is None and r.head == 0 and r.camera == "cam0" and r.generation == w.generation
        rgb, depth = pattern(0, 48, 64)
        wr = w.write(rgb, depth, capture_ns=123, device_stamp_ns=456, intrinsics=intr, extrinsics=T)
        f = r.read(wr.slot, wr.frame_seq)
        assert consistent(f) and f.frame_seq == 0 and f.capture_ns == 123 and f.device_stamp_ns == 456
        assert f.intrinsics == intr and np.array_equal(f.extrinsics, T) and f.commit_ns == wr.commit_ns
        assert f.copied_ns >= f.commit_ns
        f.rgb[:] = 0                                              # the copy is the reader's own
        assert consistent(r.latest())
        w.write(*pattern(1, 48, 64), capture_ns=124)              # no device stamp, no calibration
        g = r.latest()
        assert g.frame_seq == 1 and g.device_stamp_ns is None and g.intrinsics is None and g.extrinsics is None
        with pytest.raises(ValueError, match="uint8"):
            w.write(rgb.astype(np.float32), depth, capture_ns=1)
        with pytest.raises(ValueError, match=r"float32 \(48, 64\)"):
            w.write(rgb, depth[:10], capture_ns=1)
    with pytest.raises(ValueError, match="ring name"):
        ring_path("../etc/passwd")


def test_slots_are_reused_and_a_slow_reader_loses_old_frames(name):
    with FrameRingWriter.create(name, slots=3, width=8, height=4, directory=SHM) as w, FrameRingReader(name, SHM) as r:
        refs = [w.write(*pattern(k, 4, 8), capture_ns=k) for k in range(7)]
        assert [x.slot for x in refs] == [0, 1, 2, 0, 1, 2, 0]
        for x in refs[:4]:                                         # overwritten: gone, counted
            assert r.read(x.slot, x.frame_seq) is None
        assert r.lost == 4
        for x in refs[4:]:                                         # the last `slots` frames are still there
            f = r.read(x.slot, x.frame_seq)
            assert f is not None and f.frame_seq == x.frame_seq and consistent(f)
        assert r.latest().frame_seq == 6 and r.head == 7


def test_a_copy_during_a_write_is_never_returned(name):
    """Deterministically: a slot being written is refused, and a copy the writer overtook is discarded."""
    with FrameRingWriter.create(name, slots=2, width=8, height=4, directory=SHM) as w, FrameRingReader(name, SHM) as r:
        w.write(*pattern(0, 4, 8), capture_ns=0)
        w._begin(0)                                               # the writer is in the middle of slot 0
        assert r.read(0, 0) is None and r.lost == 1
        w._commit(0)

        class Overtaking:                                          # the writer comes round while the depth is copied
            def __init__(self, view):
                self.view, self.done = view, False

            def __array__(self, dtype=None, copy=None):
                if not self.done:
                    self.done = True
                    w.write(*pattern(1, 4, 8), capture_ns=1)
                    w.write(*pattern(2, 4, 8), capture_ns=2)         # slot 0 again
                return self.view

        r._depth[0] = Overtaking(r._depth[0])
        assert r.read(0, 0) is None and r.retries == 1 and r.lost == 2   # the torn copy was detected, dropped
        f = r.read(0, None)
        assert f.frame_seq == 2 and consistent(f)


WRITER = textwrap.dedent("""
    import sys, time, numpy as np
    from kinebridge.runtime.bus.frames import FrameRingWriter
    name, shm, seconds, h, w = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    ring = FrameRingWriter.create(name, slots=3, width=w, height=h, directory=shm)
    print("ready", flush=True)
    rgb = np.empty((h, w, 3), np.uint8); depth = np.empty((h, w), np.float32)
    k, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        rgb[..., 0] = k % 251; rgb[..., 1] = (k // 251) % 251; rgb[..., 2] = 255 - k % 251; depth[:] = k + 0.5
        ring.write(rgb, depth, capture_ns=time.monotonic_ns())
        k += 1
    print(k, flush=True)
    if sys.argv[6] == "close":
        ring.close()
    else:
        time.sleep(60)        # killed here: a crashed camera
""")


def _spawn_writer(name, seconds, h, w, end="close"):
    p = subprocess.Popen([sys.executable, "-c", WRITER, name, SHM, str(seconds), str(h), str(w), end],
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    return p


def test_a_slower_reader_in_another_process_never_gets_a_torn_frame_and_never_blocks_the_camera(name):
    h, w = 240, 320
    p = _spawn_writer(name, 3.0, h, w)
    try:
        r = FrameRingReader(name, SHM)
        ok = raw_torn = 0
        out = (np.empty((h, w, 3), np.uint8), np.empty((h, w), np.float32))
        end = time.monotonic() + 2.5
        while time.monotonic() < end:
            f = r.latest(out=out)
            if f is not None:
                assert consistent(f), f"torn frame {f.frame_seq}"
                ok += 1
            # the same copy without the seqlock's check, for comparison: may mix frames
            k = (max(r.head, 1) - 1) % r.slots
            raw = r._rgb[k].copy(), r._depth[k].copy()
            raw_torn += int(len({*np.unique(raw[0][..., 0]).tolist()}) > 1 or
                            raw[1].min() != raw[1].max() or int(raw[1][0, 0] - 0.5) % 251 != int(raw[0][0, 0, 0]))
            time.sleep(0.002)                                    # slower than the camera
        written = int(p.stdout.readline())
    finally:
        p.wait(timeout=30)
    assert ok > 50
    assert written > 5 * ok, (written, ok)                      # the writer ran on regardless of the reader
    print(f"\nwritten {written}, read {ok} consistent, copies retried {r.retries}, unchecked copies torn {raw_torn}")
    r.close()


def test_a_stale_ring_is_replaced_and_readers_follow_it_and_a_live_one_is_refused(name):
    p = _spawn_writer(name, 0.2, 4, 8, end="hang")
    try:
        assert int(p.stdout.readline()) > 0
        with pytest.raises(RingBusy, match=f"pid {p.pid}"):
            FrameRingWriter.create(name, slots=3, width=8, height=4, directory=SHM)
        old = FrameRingReader(name, SHM)
        assert old.latest() is not None
        p.send_signal(signal.SIGKILL)                           # the camera crashes: its ring stays behind
        p.wait(timeout=10)
    finally:
        if p.poll() is None:
            p.kill()
    assert ring_path(name, SHM).exists()
    with FrameRingWriter.create(name, slots=3, width=8, height=4, directory=SHM) as w:
        assert w.replaced == p.pid and w.generation != old.generation
        x = w.write(*pattern(0, 4, 8), capture_ns=1)
        from kinebridge.runtime.bus.messages import FrameRef
        ref = FrameRef(camera="c", ring=name, generation=w.generation, slot=x.slot, frame_seq=x.frame_seq,
                       capture_ns=1, width=8, height=4)
        f = old.read_ref(ref)                                   # the reader re-attaches to the new ring
        assert f is not None and consistent(f) and old.reattached == 1 and old.generation == w.generation
        path = w.path
    assert not path.exists()                                   # closed: removed
    assert old.reattach_if_replaced() is False                 # nothing to re-attach to; the old copy still works
    assert consistent(f)
    with pytest.raises(RingNotFound, match="is its camera running"):
        FrameRingReader(name, SHM)
    assert not list(ring_path(name, SHM).parent.glob(ring_path(name, SHM).name + ".*"))   # no temporary files left
