"""Recording figures: MB per hour of a default ``kinebridge run`` recording, the recorder's CPU per
message, what the chunk flush interval costs, and how long the standard seeking reader takes to open
a one-hour recording and read its last minute.

    python -m kinebridge.bench.recording_bench [--source REC.mcap] [--hour-s 3600] [--out out/bench/recording.json]
                                               [--baseline OLD_recorder.py]

Without ``--source`` it runs the embedded default (``kinebridge run --json``, about 15 s) and measures
its recording. The message stream of that recording (re-encoded as bus frames, with its receive
times) is then written again on a simulated clock — once per flush interval, and looped to
``--hour-s`` for the one-hour file — so every figure comes from the same messages.
``--baseline`` names another recorder module (e.g. ``git show <rev>:runtime/recording/recorder.py``)
to write the same stream with, for before/after figures.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

__all__ = ["run", "main"]


def default_run(workdir: Path) -> tuple[Path, dict]:
    """Run the embedded default once; its recording and summary."""
    proc = subprocess.run([sys.executable, "-m", "kinebridge.runtime.cli.main", "run", "--json", "--out",
                           str(workdir / "run"), "--ipc-dir", str(workdir / "bus")],
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"kinebridge run failed: {proc.stderr[-2000:]}")
    s = json.loads(proc.stdout)
    return Path(s["recording"]), s


def load_stream(path) -> list[tuple[int, str, list]]:
    """``(log_time_ns relative to the first, topic, bus frames)`` of every message of a recording."""
    from kinebridge.runtime.bus.codec import encode
    from kinebridge.runtime.recording.reader import read_recording

    out = []
    t0 = None
    for m in read_recording(path):
        t0 = m.log_time_ns if t0 is None else t0
        frames = [bytes(f) for f in encode(m.topic, m.header, m.arrays)]
        out.append((m.log_time_ns - t0, m.topic, frames))
    return out


class _SimClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def write_stream(stream, path, *, flush_every_s: float, repeat_to_s: float | None = None, module=None) -> dict:
    """Write ``stream`` into ``path`` with the recorder of ``module`` (default: kinebridge's), its
    flushes on a simulated clock that follows the receive times; looped until ``repeat_to_s``."""
    from kinebridge.runtime.recording import recorder as default_module

    mod = module or default_module
    clock = _SimClock()
    wall0 = time.time_ns()
    try:
        rec = mod.McapRecorder(path, flush_every_s=flush_every_s, clock=clock)
    except TypeError:                                   # a recorder without a simulated clock
        rec = mod.McapRecorder(path, flush_every_s=flush_every_s)
    span = stream[-1][0] + 20_000_000                   # one loop of the stream, plus a gap
    loops = 1 if repeat_to_s is None else max(1, int(np.ceil(repeat_to_s * 1e9 / span)))
    n = 0
    cpu0 = time.process_time()
    for k in range(loops):
        base = k * span
        for rel, _topic, frames in stream:
            t = base + rel
            if repeat_to_s is not None and t > repeat_to_s * 1e9:
                break
            clock.now = t / 1e9
            rec.write_frames(frames, wall0 + t)
            n += 1
    cpu_write = time.process_time() - cpu0
    t_close = time.perf_counter()
    rec.close()
    close_s = time.perf_counter() - t_close
    duration_s = (min(loops * span, repeat_to_s * 1e9) if repeat_to_s else stream[-1][0]) / 1e9
    size = os.path.getsize(path)
    return {"messages": n, "bytes": size, "duration_s": duration_s,
            "mb_per_hour": size / 1e6 / duration_s * 3600 if duration_s > 0 else None,
            "cpu_us_per_message": cpu_write / n * 1e6, "close_s": close_s,
            "chunks": getattr(rec, "chunks", None)}


def _iter_from(reader, start_ns):
    try:
        return reader.iter_messages(starting_at=start_ns)
    except TypeError:                                   # mcap < 1.6
        return reader.iter_messages(start_time=start_ns)


def seek_last_minute(path) -> dict:
    """Open ``path`` with the standard seeking reader and read every message of its last minute."""
    from mcap.reader import make_reader

    t0 = time.perf_counter()
    with open(path, "rb") as f:
        reader = make_reader(f)
        summary = reader.get_summary()
        t_open = time.perf_counter() - t0
        if summary is not None and summary.statistics is not None and summary.chunk_indexes:
            end = summary.statistics.message_end_time
        else:                                           # unindexed: the end is known only after a scan
            end = max(m.log_time for _s, _c, m in reader.iter_messages(log_time_order=False))
        n = sum(1 for _ in _iter_from(reader, end - 60_000_000_000))
    return {"open_s": t_open, "open_and_last_minute_s": time.perf_counter() - t0, "last_minute_messages": n,
            "chunk_indexes": len(summary.chunk_indexes) if summary is not None else 0}


def _load_module(path):
    spec = importlib.util.spec_from_file_location("_baseline_recorder", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod                        # (dataclasses look their module up)
    spec.loader.exec_module(mod)
    return mod


def _encode_us(stream, topic: str) -> float | None:
    from kinebridge.runtime.bus.codec import decode
    from kinebridge.runtime.recording.encoding import message_json

    msgs = [decode(fr) for _t, tp, fr in stream if tp == topic][:500]
    if not msgs:
        return None
    t0 = time.perf_counter()
    for _ in range(3):
        for m in msgs:
            message_json(m.header, m.arrays)
    return (time.perf_counter() - t0) / (3 * len(msgs)) * 1e6


def run(source=None, *, flushes=(0.02, 0.05, 0.1, 0.25, 0.5, 1.0), default_flush: float | None = None,
        hour_s: float = 3600.0, baseline=None) -> dict:
    """Every figure as a dict (see the module docstring). ``default_flush``: the interval of the
    one-hour file (default: ``[recorder] flush_every_s``'s default)."""
    from kinebridge.runtime.bus import messages as M
    from kinebridge.runtime.config import RecorderSection
    from kinebridge.runtime.recording.reader import summarize

    if default_flush is None:
        default_flush = RecorderSection().flush_every_s
    out: dict = {"flush_every_s": default_flush}
    with tempfile.TemporaryDirectory(prefix="kb-recbench-") as tmp:
        tmp = Path(tmp)
        if source is None:
            source, s = default_run(tmp)
            out["default_run"] = {"completed": s.get("completed")}
        info = summarize(source)
        out["source"] = {"path": str(source), "bytes": info["bytes"], "duration_s": info["duration_s"],
                         "messages": info["messages"], "chunks": info["chunks"],
                         "mb_per_hour": info["bytes"] / 1e6 / info["duration_s"] * 3600,
                         "rates_hz": {t: v["rate_hz"] for t, v in info["topics"].items()}}
        stream = load_stream(source)
        out["flush"] = {}
        for fl in flushes:
            out["flush"][str(fl)] = write_stream(stream, tmp / f"f{fl}.mcap", flush_every_s=fl)
        out["encode_us"] = {t: _encode_us(stream, t) for t in (M.ControlState.TOPIC, M.Chunk.TOPIC,
                                                               M.ControlTiming.TOPIC, M.Heartbeat.TOPIC)}
        hour = tmp / "hour.mcap"
        out["hour"] = write_stream(stream, hour, flush_every_s=default_flush, repeat_to_s=hour_s)
        out["hour"]["seek"] = seek_last_minute(hour)
        hour.unlink()
        if baseline is not None:
            mod = _load_module(baseline)
            out["baseline"] = {"stream": write_stream(stream, tmp / "b.mcap", flush_every_s=default_flush,
                                                      module=mod)}
            bh = tmp / "bhour.mcap"
            out["baseline"]["hour"] = write_stream(stream, bh, flush_every_s=default_flush, repeat_to_s=hour_s,
                                                   module=mod)
            out["baseline"]["hour"]["seek"] = seek_last_minute(bh)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--source", type=Path, default=None, help="a recording to take the stream from "
                                                            "(default: run kinebridge run once)")
    p.add_argument("--hour-s", type=float, default=3600.0, help="length of the long recording (s)")
    p.add_argument("--baseline", type=Path, default=None, help="another recorder module, for before/after")
    p.add_argument("--out", type=Path, default=Path("out/bench/recording.json"))
    args = p.parse_args(argv)
    res = run(args.source, hour_s=args.hour_s, baseline=args.baseline)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2, default=str))
    print(json.dumps(res, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
