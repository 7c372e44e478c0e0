"""``kinebridge plot``: one figure of a run from its recording.

Four panels over time (s since the first plotted message, on the control node's CLOCK_MONOTONIC
stamps; the date is the recorder's wall clock): the commanded and measured joints (``control/state``
``q_cmd``, ``q``), the tracking error per joint (``q_cmd − q``), the loop period error
(``control/timing`` ``lateness_ns``: how late each tick woke up; sample i of a batch of n published
at t is placed at ``t − (n − 1 − i) / rate_hz``) and the chunk → first setpoint latency
(``control/chunk_latency`` ``latency_ns``). matplotlib (the ``eval`` extra) is imported here only,
and drawn through its Agg canvas: no display, no global backend switched.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

import numpy as np

from kinebridge.runtime.bus import messages as M
from kinebridge.runtime.recording.reader import read_recording, summarize

__all__ = ["plot_recording", "load_run"]

EXTRA_HINT = "pip install 'kinebridge[eval]'"


def load_run(path) -> dict:
    """The series the figure draws, as numpy arrays (times in s on the senders' CLOCK_MONOTONIC)."""
    S, T, L = M.ControlState.TOPIC, M.ControlTiming.TOPIC, M.ChunkLatency.TOPIC
    st_t, q_cmd, q = [], [], []
    late_t, late = [], []
    lat_t, lat = [], []
    first_log = None
    for m in read_recording(path, [S, T, L]):
        stamp = m.header.get("stamp_ns")
        if type(stamp) is not int:
            continue
        if first_log is None:
            first_log = m.log_time_ns
        t = stamp / 1e9
        try:
            if m.topic == S:
                qc, qm = np.asarray(m.arrays["q_cmd"], float), np.asarray(m.arrays["q"], float)
                if qc.shape != (7,) or qm.shape != (7,):
                    continue
                st_t.append(t)
                q_cmd.append(qc)
                q.append(qm)
            elif m.topic == T:
                a = np.asarray(m.arrays["lateness_ns"], float)
                rate = float(m.header.get("rate_hz") or 0.0)
                dt = 1.0 / rate if rate > 0 else 0.0
                late_t.append(t - (a.size - 1 - np.arange(a.size)) * dt)
                late.append(a / 1e3)
            elif type(m.header.get("latency_ns")) is int:
                lat_t.append(t)
                lat.append(m.header["latency_ns"] / 1e6)
        except (KeyError, TypeError, ValueError):
            continue            # a message that breaks its schema: not drawn
    return {"state_t": np.asarray(st_t), "q_cmd": np.asarray(q_cmd).reshape(-1, 7), "q": np.asarray(q).reshape(-1, 7),
            "lateness_t": np.concatenate(late_t) if late_t else np.zeros(0),
            "lateness_us": np.concatenate(late) if late else np.zeros(0),
            "latency_t": np.asarray(lat_t), "latency_ms": np.asarray(lat), "first_log_time_ns": first_log}


def _pct(x, p):
    return float(np.percentile(x, p)) if len(x) else float("nan")


def plot_recording(path, out=None) -> Path:
    """Draw ``path`` into the PNG ``out`` (default: ``<recording>.png`` beside it); returns ``out``.
    ValueError for a file that is not a recording or holds none of the control node's topics;
    RuntimeError naming the extra to install when matplotlib is missing."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise RuntimeError(f"kinebridge plot needs matplotlib, which comes with the eval extra: {EXTRA_HINT} "
                           f"({exc})") from None
    path = Path(path)
    out = Path(out) if out is not None else path.with_suffix(".png")
    d = load_run(path)
    if not (len(d["state_t"]) or len(d["lateness_t"]) or len(d["latency_t"])):
        held = sorted(summarize(path)["topics"])
        raise ValueError(f"{path}: nothing to plot — no {M.ControlState.TOPIC}, {M.ControlTiming.TOPIC} or "
                         f"{M.ChunkLatency.TOPIC} messages (the recording holds: {', '.join(held) or 'no messages'})")
    t0 = min(x[0] for x in (d["state_t"], d["lateness_t"], d["latency_t"]) if len(x))
    fig = Figure(figsize=(12, 12), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots(4, 1, sharex=True)
    colors = [f"C{j}" for j in range(7)]

    def empty(a, what):
        a.text(0.5, 0.5, f"no {what} in this recording", ha="center", va="center", transform=a.transAxes,
               color="0.4")

    if len(d["state_t"]):
        ts = d["state_t"] - t0
        qc, qm = np.degrees(d["q_cmd"]), np.degrees(d["q"])
        for j in range(7):
            ax[0].plot(ts, qm[:, j], color=colors[j], lw=1.2, label=f"j{j + 1}")
            ax[0].plot(ts, qc[:, j], color=colors[j], lw=1.0, ls="--")
        err = qc - qm
        for j in range(7):
            ax[1].plot(ts, err[:, j], color=colors[j], lw=0.9, label=f"j{j + 1}")
        ax[0].set_title(f"joints (deg): measured q solid, commanded q_cmd dashed — {len(ts)} states")
        ax[0].legend(ncol=7, fontsize=8, loc="upper right")
        ax[1].set_title(f"tracking error q_cmd − q (deg): max |e| {np.abs(err).max():.3g}, "
                        f"rms {np.sqrt(np.mean(err ** 2)):.3g}")
        ax[1].legend(ncol=7, fontsize=8, loc="upper right")
    else:
        empty(ax[0], M.ControlState.TOPIC)
        empty(ax[1], M.ControlState.TOPIC)
    ax[0].set_ylabel("deg")
    ax[1].set_ylabel("deg")
    if len(d["lateness_t"]):
        x = d["lateness_us"]
        ax[2].plot(d["lateness_t"] - t0, x, ".", ms=2, color="C0")
        ax[2].set_title(f"loop period error (wake-up lateness, µs): p50 {_pct(x, 50):.1f}, p99 {_pct(x, 99):.1f}, "
                        f"max {x.max():.1f} — {x.size} ticks")
    else:
        empty(ax[2], M.ControlTiming.TOPIC)
    ax[2].set_ylabel("µs")
    if len(d["latency_t"]):
        x = d["latency_ms"]
        ax[3].plot(d["latency_t"] - t0, x, "o", ms=3, color="C3")
        ax[3].set_title(f"chunk → first setpoint latency (ms): p50 {_pct(x, 50):.2f}, max {x.max():.2f} — "
                        f"{x.size} chunks")
    else:
        empty(ax[3], f"{M.ChunkLatency.TOPIC} (no chunk was executed)")
    ax[3].set_ylabel("ms")
    when = ""
    fl = d["first_log_time_ns"]
    if fl is not None and fl > 10 ** 17:          # a wall-clock log time (recordings since kinebridge-json-2)
        when = " from " + _dt.datetime.fromtimestamp(fl / 1e9, _dt.timezone.utc).astimezone().strftime(
            "%Y-%m-%d %H:%M:%S %Z")
    ax[3].set_xlabel(f"s{when}")
    for a in ax:
        a.grid(True, alpha=0.3)
    fig.suptitle(path.name)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    return out
