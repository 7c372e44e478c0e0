"""A consumer in its own process: listens to one node's camera/frame, copies each frame out of its ring.

    python subscriber.py CONFIG_JSON NODE N_FRAMES OUT.npz [TIMEOUT_S]

Writes the first frames it copied (by frame_seq) and, per frame, capture → copied latency (ns) and the
reader's lost/retry counts to OUT.npz (and OUT.json)."""

from __future__ import annotations

import json
import sys
import time

import numpy as np

from kinebridge.runtime.bus import messages as M
from kinebridge.runtime.bus.frames import FrameRingReader
from kinebridge.runtime.bus.sockets import Subscriber
from kinebridge.runtime.config import RuntimeConfig


def main(cfg_path, node, n, out, timeout_s=20.0):
    cfg = RuntimeConfig.model_validate_json(open(cfg_path).read())
    sub = Subscriber([cfg.endpoint(node)], (M.FrameRef.TOPIC,), name="test-subscriber")
    readers: dict[str, FrameRingReader] = {}
    keep, lat, seqs, missing = {}, [], [], 0
    end = time.monotonic() + float(timeout_s)
    while len(seqs) < int(n) and time.monotonic() < end:
        m = sub.recv(timeout_ms=200)
        if m is None:
            continue
        ref: M.FrameRef = m.body
        r = readers.get(ref.ring)
        if r is None:
            r = readers[ref.ring] = FrameRingReader(ref.ring, cfg.camera.ring_dir, wait_s=2.0)
        f = r.read_ref(ref)
        if f is None:
            missing += 1
            continue
        lat.append(f.copied_ns - f.capture_ns)
        seqs.append(f.frame_seq)
        if len(keep) < 6:
            keep[f.frame_seq] = f
    arrays = {f"rgb_{k}": f.rgb for k, f in keep.items()}
    arrays.update({f"depth_{k}": f.depth for k, f in keep.items()})
    np.savez(out, **arrays)
    first = next(iter(keep.values()), None)
    info = {"seqs": seqs, "latency_ns": lat, "missing": missing, "cameras": sorted({f.camera for f in keep.values()}),
            "lost": sum(r.lost for r in readers.values()), "retries": sum(r.retries for r in readers.values()),
            "intrinsics": None if first is None or first.intrinsics is None else first.intrinsics.model_dump(),
            "extrinsics": None if first is None or first.extrinsics is None else first.extrinsics.tolist()}
    with open(str(out) + ".json", "w") as fh:
        json.dump(info, fh)
    sub.close()
    return 0 if len(seqs) >= int(n) else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
