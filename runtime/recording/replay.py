"""Publishing a recording back onto the bus (``kinebridge replay``)."""

from __future__ import annotations

import time
from pathlib import Path

from kinebridge.runtime.bus import messages as M
from kinebridge.runtime.recording.encoding import MALFORMED
from kinebridge.runtime.recording.reader import read_recording

__all__ = ["replay"]


def _count(path, topics) -> int | None:
    """Messages replay will send, from the summary of a complete file (None when there is none)."""
    try:
        from mcap.reader import make_reader
        with open(path, "rb") as f:
            s = make_reader(f).get_summary()
        if s is None or s.statistics is None:
            return None
        return sum(n for cid, n in s.statistics.channel_message_counts.items()
                   if s.channels[cid].topic != MALFORMED and (topics is None or s.channels[cid].topic in topics))
    except Exception:
        return None


def replay(path, publisher, *, speed: float = 1.0, topics=None, loop: bool = False, stop_event=None,
           progress: bool = True) -> dict:
    """Publish a recording through ``publisher`` (a :class:`~kinebridge.runtime.bus.sockets.Publisher`) with its
    recorded timing: message i goes out ``(log_time_i − log_time_0) / speed`` after the first
    (``speed=0``: as fast as possible). The publisher stamps new seq/stamp_ns/src; each header gets
    ``replayed = true`` and ``derived`` = the original message's stamp, so consumers can tell replayed
    data and trace it to the recording. A recording of another bus schema version is refused. ``_malformed`` is never replayed.
    ``loop``: start again at the end until ``stop_event`` is set. Returns ``{count, duration_s}``."""
    from tqdm import tqdm

    if speed < 0:
        raise ValueError(f"replay speed must be ≥ 0 (0 = as fast as possible), got {speed}")
    want = None if topics is None else [t for t in topics if t != MALFORMED]
    total = _count(path, want) if progress else None
    count = 0
    t_start = time.monotonic()
    stopped = False
    while not stopped:
        sent = 0
        t0 = t0_rec = None
        with tqdm(total=total, desc=f"replay {Path(path).name}", unit="msg", disable=not progress) as bar:
            for m in read_recording(path, want):
                if m.topic == MALFORMED:
                    continue
                if stop_event is not None and stop_event.is_set():
                    stopped = True
                    break
                if t0 is None:
                    t0, t0_rec = time.monotonic(), m.log_time_ns
                elif speed > 0:
                    delay = t0 + (m.log_time_ns - t0_rec) / 1e9 / speed - time.monotonic()
                    if delay > 0:
                        if stop_event is not None:
                            if stop_event.wait(delay):
                                stopped = True
                                break
                        else:
                            time.sleep(delay)
                h = m.header
                if h.get("v") != M.SCHEMA_VERSION:
                    raise ValueError(f"{path}: {m.topic!r} was recorded with bus schema version {h.get('v')!r}; "
                                     f"this kinebridge replays version {M.SCHEMA_VERSION} (replay it with the "
                                     f"kinebridge that recorded it)")
                seq, stamp_ns, src = h.get("seq"), h.get("stamp_ns"), h.get("src")
                orig = {"src": src if type(src) is str else "", "topic": m.topic,
                        "seq": seq if type(seq) is int and seq >= 0 else 0,
                        "stamp_ns": stamp_ns if type(stamp_ns) is int else 0}
                header = {k: v for k, v in h.items() if k not in M.RESERVED}
                publisher.publish(m.topic, header, m.arrays, derived=[orig], replayed=True)
                sent += 1
                bar.update()
        count += sent
        if not loop or sent == 0:
            break
    return {"count": count, "duration_s": time.monotonic() - t_start}
