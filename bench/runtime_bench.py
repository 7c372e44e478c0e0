"""``kinebridge bench runtime``: the runtime's latency figures, measured on real processes.

* **codec**: encode, decode and both for a 50×7 chunk and a 7-joint state, in one process, against
  pickle protocol 5 of the same data (the baseline, same run);
* **bus hop**: one-way latency publisher process → subscriber process over ipc (stamp → received and
  validated), for the chunk and the state, against raw pyzmq frames without the codec (same run);
* **control loop**: period error (p50/p99/p99.9/max, overruns) of the control node at each rate,
  *idle* (control node alone with the simulated controller) and *loaded* (the full runtime: the
  trajectory node planning pour after pour, the recorder writing every topic, the supervisor);
* **chunk → setpoint**: chunk stamp → the tick that first sent a setpoint from it;
* **task → first setpoint**: task published → first setpoint of its plan (LFE-KMP + IK + bus);
* **restart**: the recorder SIGKILLed during the loaded run → its first heartbeat again;
* **cold start**: simulator + supervisor + control node, start → streaming;
* **host baseline**: before each rate's conditions, a bare process with the control node's real-time
  treatment pacing itself at that rate with nothing else to do (:mod:`kinebridge.bench.host_wakeup`) —
  the period error any loop on this host gets; the control node's is judged against it.

Prints a table, writes JSON and histograms of the period error (``--out``).
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

from kinebridge.bench import host_wakeup
from kinebridge.kernels.stats import summary
from kinebridge.runtime.bus import messages as M

CUPS = [(0.45, 0.18, 0.08, 20.0), (0.36, 0.08, 0.10, -10.0)]


_pct = summary


# ------------------------------------------------------------------------------------- codec
def codec(n: int = 20000, repeats: int = 7) -> dict:
    from kinebridge.runtime.bus.codec import decode, encode

    out = {}
    cases = {"chunk_50x7": ({"t0": 12.5, "dt": 0.01, "derived": [
                                {"src": "supervisor", "topic": M.Task.TOPIC, "seq": 4, "stamp_ns": 123456789}]},
                            {"q": np.random.default_rng(0).normal(size=(50, 7))}),
             "state_7": ({"t": 1.0, "tick": 10, "sent": True, "starved": 0, "held": 0, "at_rest": False},
                         {"q_cmd": np.zeros(7), "q": np.ones(7)})}
    for name, (h, arrays) in cases.items():
        hdr = {"v": 1, "seq": 1, "stamp_ns": time.monotonic_ns(), "src": "bench", **h}
        frames = [bytes(f) for f in encode(M.Chunk.TOPIC, hdr, arrays)]

        def t(f):
            per = []
            for _ in range(repeats):
                a = time.perf_counter_ns()
                for _ in range(n):
                    f()
                per.append((time.perf_counter_ns() - a) / n / 1e3)
            return float(np.median(per)), float(max(per))

        enc = t(lambda: encode(M.Chunk.TOPIC, hdr, arrays))
        dec = t(lambda: decode(frames))
        both = t(lambda: decode(encode(M.Chunk.TOPIC, hdr, arrays)))
        base = t(lambda: pickle.loads(pickle.dumps((hdr, arrays), protocol=5)))
        out[name] = {"encode_us": enc[0], "decode_us": dec[0], "encode_decode_us": both[0],
                     "encode_decode_worst_repeat_us": both[1], "pickle5_us": base[0],
                     "speedup_vs_pickle": base[0] / both[0]}
    return out


# ----------------------------------------------------------------------------------- bus hop
_SENDER = textwrap.dedent("""
    import sys, time, numpy as np, zmq
    from kinebridge.runtime.bus import messages as M
    from kinebridge.runtime.bus.sockets import Publisher
    ep, n, rate, raw = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4] == "raw"
    pub = Publisher(ep, "bench")
    time.sleep(0.5)
    chunk, state = np.zeros((50, 7)), np.zeros(7)
    period = 1.0 / rate
    nxt = time.monotonic()
    for i in range(n):
        nxt += period
        while time.monotonic() < nxt:
            time.sleep(max(0.0, nxt - time.monotonic() - 2e-4))
        if raw:
            kind, a = ("chunk", chunk) if i % 2 else ("control/state", state)
            pub.sock.send_multipart([kind.encode(), time.monotonic_ns().to_bytes(8, "little"), a.data])
        elif i % 2:
            pub.send(M.Chunk(t0=1.0 + i, dt=0.01), {"q": chunk})
        else:
            pub.send(M.ControlState(t=1.0 * i, tick=i, sent=True, starved=0, held=0, at_rest=False),
                     {"q_cmd": state, "q": state})
    time.sleep(0.3)
    pub.close()
""")


def bus_hop(n: int = 4000, rate: float = 500.0) -> dict:
    """One-way latency (stamp → receipt, µs) publisher process → this process over ipc.

    Two receivers: *waiting* blocks in ``poll`` until a message comes (its own wake-up is in the
    figure: what the recorder or a planner sees); *polling* checks the socket without blocking in a
    loop (the figure is the message's arrival in the receiver's queue: what the control node, which
    reads the bus on its own schedule, sees). Each against raw pyzmq frames without the codec."""
    import zmq

    from kinebridge.runtime.bus.sockets import Subscriber

    out = {}
    for receiver in ("waiting", "polling"):
        for mode in ("codec", "raw"):
            d = tempfile.mkdtemp(prefix="kb-hop-")
            ep = f"ipc://{d}/hop.sock"
            proc = subprocess.Popen([sys.executable, "-c", _SENDER, ep, str(n), str(rate), mode])
            sub = Subscriber([ep], (M.Chunk.TOPIC, M.ControlState.TOPIC))
            sock = sub.sock
            lat = {M.Chunk.TOPIC: [], M.ControlState.TOPIC: []}
            deadline = time.monotonic() + n / rate + 10
            got = 0
            while got < n and time.monotonic() < deadline:
                if receiver == "waiting":
                    if not sock.poll(200):
                        if proc.poll() is not None:
                            break
                        continue
                    frames = sock.recv_multipart(copy=False)
                else:
                    try:
                        frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        if got % 64 == 0 and proc.poll() is not None:
                            break
                        continue
                now = time.monotonic_ns()
                if mode == "raw":
                    topic = bytes(frames[0].buffer).decode()
                    stamp = int.from_bytes(frames[1].buffer, "little")
                else:                    # what every node does: decode and validate against the schema
                    m = sub._accept(frames)
                    topic, stamp = m.topic, m.stamp.stamp_ns
                lat[topic].append((now - stamp) / 1e3)
                got += 1
            proc.wait(10)
            sub.close()
            key = mode if receiver == "waiting" else f"{mode}_polling"
            out[key] = {k: _pct(v) for k, v in lat.items()}
            out[key]["received"] = got
            out[key]["sent"] = n
    return out


# ----------------------------------------------------------------------------- control loop
def _config(rate: float, nodes: list[str], workdir: Path):
    """The embedded default at ``rate`` with only ``nodes``, its bus and recordings under ``workdir``."""
    from kinebridge.runtime.config import RuntimeConfig, load_config

    data = load_config(None).model_dump()
    data["bus"]["ipc_dir"] = str(workdir / "bus")
    data["control"]["rate_hz"] = float(rate)
    data["recorder"]["directory"] = str(workdir / "rec")
    data["nodes"] = {k: v for k, v in data["nodes"].items() if k in nodes}
    return RuntimeConfig.model_validate(data)


def control_loop(rate: float, seconds: float, loaded: bool, workdir: Path, progress=None) -> dict:
    from kinebridge.runtime.supervisor.launch import launch

    nodes = ["control", "trajectory", "recorder"] if loaded else ["control"]
    cfg = _config(rate, nodes, workdir / f"{int(rate)}-{'loaded' if loaded else 'idle'}")
    rt = launch(cfg, workdir / f"run-{int(rate)}-{int(loaded)}", log=lambda s: None,
                listen=(M.Heartbeat.TOPIC, M.ControlTiming.TOPIC, M.ChunkLatency.TOPIC, M.Chunk.TOPIC, M.TaskDone.TOPIC,
                        M.TaskError.TOPIC, M.ControlState.TOPIC))
    sup = rt.supervisor
    res: dict = {"rate_hz": rate, "loaded": loaded, "seconds": seconds}
    late, lat, waiting, work = [], [], [], []
    tasks, first_set = [], []
    try:
        t_end = time.monotonic() + seconds
        killed = False
        i = 0
        first_chunk = {}          # chunk seq → stamp of the task it is the first chunk of
        traced = set()            # tasks whose first chunk is known
        if loaded:
            tasks.append(sup.send(M.Task(skill="pour", params={"cup": list(CUPS[0])})))
        rng = np.random.default_rng(1)
        q_hold = None
        next_probe = time.monotonic() + 0.2
        while time.monotonic() < t_end:
            # idle: probe chunks (hold the current setpoint) published at random phases against the
            # control ticks, so chunk → setpoint covers every arrival phase, the worst one included
            if not loaded and q_hold is not None and time.monotonic() >= next_probe:
                time.sleep(rng.uniform(0.0, 1.0 / rate))   # (the loop wakes on control/state, just after a tick)
                now = time.monotonic()
                sup.pub.publish(M.Chunk.TOPIC, {"t0": now, "dt": 0.02}, {"q": np.tile(q_hold, (10, 1))})
                next_probe = now + rng.uniform(0.03, 0.07)
            sup.poll(20)
            for m in sup.messages:
                if m.topic == M.ControlTiming.TOPIC:
                    late.append(m.arrays["lateness_ns"] / 1e3)
                elif m.topic == M.ChunkLatency.TOPIC:
                    b = m.body
                    lat.append(b.latency_ns / 1e3)
                    waiting.append(b.waiting_ns / 1e3)
                    work.append(b.tick_work_ns / 1e3)
                    d = m.derived[0]                     # the chunk
                    t_task = first_chunk.pop((d.src, d.seq), None)
                    if t_task is not None:
                        first_set.append((d.stamp_ns + b.latency_ns - t_task) / 1e6)
                elif m.topic == M.Chunk.TOPIC:
                    der = next((d for d in m.derived if d.topic == M.Task.TOPIC), None)
                    if der is not None and der.stamp_ns not in traced:
                        traced.add(der.stamp_ns)
                        first_chunk[(m.stamp.src, m.stamp.seq)] = der.stamp_ns
                elif m.topic == M.ControlState.TOPIC:
                    q_hold = np.array(m.arrays["q_cmd"])
                elif m.topic in (M.TaskDone.TOPIC, M.TaskError.TOPIC) and loaded:
                    i += 1
                    tasks.append(sup.send(M.Task(skill="pour", params={"cup": list(CUPS[i % 2])})))
            sup.messages.clear()
            if loaded and not killed and time.monotonic() > t_end - seconds / 2:
                os.kill(sup.nodes["recorder"].pid, signal.SIGKILL)
                killed = True
            if progress:
                progress(1 - max(0.0, t_end - time.monotonic()) / seconds)
        sup.poll(50)
        res["restart_s"] = sup.nodes["recorder"].restart_latency_s if loaded else []
        res["failed"] = sup.failed
    finally:
        rt.shutdown()
    lateness = np.concatenate(late) if late else np.zeros(0)
    res["period_error_us"] = _pct(lateness)
    res["misses_over_1ms"] = int(np.sum(lateness > 1000))
    res["chunk_to_setpoint_us"] = _pct(lat)
    res["chunk_waiting_us"] = _pct(waiting)          # publish → the tick that drained it
    res["chunk_tick_work_us"] = _pct(work)           # that tick's start → setpoint sent
    res["_chunk"] = np.array([lat, waiting, work])
    res["task_to_first_setpoint_ms"] = _pct(first_set)
    res["tasks"] = len(tasks)
    res["_lateness"] = lateness
    return res


def cold_start(repeats: int = 3, workdir: Path | None = None) -> dict:
    from kinebridge.runtime.supervisor.launch import launch

    times = []
    for k in range(repeats):
        t0 = time.monotonic()
        rt = launch(_config(200.0, ["control"], workdir / f"cold{k}"), workdir / f"cold-run{k}", log=lambda s: None,
                    t_start=t0)
        try:
            times.append(rt.timings["ready_to_stream_s"])
        finally:
            rt.shutdown()
    return {"start_to_streaming_s": times, "median_s": float(np.median(times))}


# ---------------------------------------------------------------------------------- report
def run(rates=(200.0, 500.0), seconds: float = 60.0, out: Path = Path("out/bench/runtime.json"),
        quick: bool = False, plot: bool = True) -> dict:
    from tqdm import tqdm

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="kb-bench-runtime-"))
    result: dict = {"machine": {"cpus": os.cpu_count(), "euid": os.geteuid()}}
    result["codec"] = codec(n=2000 if quick else 20000, repeats=3 if quick else 7)
    result["bus_hop_us"] = bus_hop(n=400 if quick else 4000)
    loops, host = [], []
    with tqdm(total=len(rates) * 3, desc="control loop", unit="run") as bar:
        for r in rates:
            # the baseline: what the host gives a bare real-time loop at this rate, in the same run
            host.append(host_wakeup.measure_in_child(r, 2.0 if quick else min(seconds, 20.0)))
            bar.update()
            for loaded in (False, True):
                loops.append(control_loop(r, seconds, loaded, work))
                bar.update()
    result["control_loop"] = [{k: v for k, v in x.items() if not k.startswith("_")} for x in loops]
    result["host_wakeup"] = host
    result["cold_start"] = cold_start(1 if quick else 3, work)
    out.write_text(json.dumps(result, indent=2))
    if plot:
        try:
            _plot(loops, out.with_suffix(".png"))
            result["plot"] = str(out.with_suffix(".png"))
        except ImportError:
            pass
    return result


def _plot(loops, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(loops), figsize=(4 * len(loops), 3.2), sharey=True)
    for ax, x in zip(np.atleast_1d(axes), loops):
        a = np.clip(x["_lateness"], 0.01, None)
        ax.hist(a, bins=np.logspace(-2, 4, 60), color="tab:blue" if not x["loaded"] else "tab:orange")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"{x['rate_hz']:g} Hz, {'loaded' if x['loaded'] else 'idle'}")
        ax.set_xlabel("period error (µs)")
        ax.axvline(100, color="k", lw=0.8, ls="--")
    np.atleast_1d(axes)[0].set_ylabel("ticks")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def print_report(r: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console()
    t = Table(title="codec (µs per message, same process)", title_justify="left")
    for c in ("message", "encode", "decode", "encode+decode", "pickle5 (baseline)", "× faster"):
        t.add_column(c)
    for name, c in r["codec"].items():
        t.add_row(name, f"{c['encode_us']:.2f}", f"{c['decode_us']:.2f}", f"{c['encode_decode_us']:.2f}",
                  f"{c['pickle5_us']:.2f}", f"{c['speedup_vs_pickle']:.1f}")
    con.print(t)
    t = Table(title="bus hop, process → process over ipc (µs)", title_justify="left")
    for c in ("path", "message", "p50", "p99", "p99.9", "max"):
        t.add_column(c)
    for mode, d in r["bus_hop_us"].items():
        path = "kinebridge bus" if mode.startswith("codec") else "raw pyzmq (baseline)"
        path += ", polling receiver" if mode.endswith("_polling") else ", waiting receiver"
        for k in (M.ControlState.TOPIC, M.Chunk.TOPIC):
            s = d.get(k) or {}
            if s.get("n"):
                t.add_row(path, k, f"{s['p50']:.0f}", f"{s['p99']:.0f}", f"{s['p99.9']:.0f}", f"{s['max']:.0f}")
    con.print(t)
    t = Table(title="control node (period error µs; chunk → setpoint µs; task → first setpoint ms)",
              title_justify="left")
    for c in ("rate", "load", "p50", "p99", "p99.9", "max", ">1 ms", "chunk→set p50/p99/max", "task→set p50",
              "restart s"):
        t.add_column(c)
    for x in r["control_loop"]:
        pe, cs, ts = x["period_error_us"], x["chunk_to_setpoint_us"], x["task_to_first_setpoint_ms"]
        t.add_row(f"{x['rate_hz']:g} Hz", "loaded" if x["loaded"] else "idle", f"{pe['p50'] or 0:.1f}",
                  f"{pe['p99'] or 0:.1f}", f"{pe['p99.9'] or 0:.0f}", f"{pe['max'] or 0:.0f}",
                  str(x["misses_over_1ms"]),
                  f"{cs['p50']:.0f}/{cs['p99']:.0f}/{cs['max']:.0f}" if cs["n"] else "—",
                  f"{ts['p50']:.1f}" if ts["n"] else "—", ", ".join(f"{v:.2f}" for v in x.get("restart_s", [])) or "—")
    for h in r.get("host_wakeup", []):
        pe = h["period_error_us"]
        t.add_row(f"{h['rate_hz']:g} Hz", "host baseline", f"{pe['p50'] or 0:.1f}", f"{pe['p99'] or 0:.1f}",
                  f"{pe['p99.9'] or 0:.0f}", f"{pe['max'] or 0:.0f}", str(h["misses_over_1ms"]), "—", "—", "—")
    con.print(t)
    if r.get("host_wakeup"):
        con.print("host baseline: a bare process with the control node's real-time treatment and nothing else "
                  "(kinebridge.bench.host_wakeup) — the floor any control loop on this host can reach")
    cs = r["cold_start"]
    con.print(f"cold start → streaming: median {cs['median_s']:.2f} s ({', '.join(f'{v:.2f}' for v in cs['start_to_streaming_s'])})")
