"""``kinebridge run``: the controller daemon, and its one-task demonstration.

Without ``--config`` it runs the embedded default end to end: start the simulated RealMan controller,
start the nodes (control, trajectory, recorder) under the supervisor, connect through the official
SDK, wait until the control loop streams, send one task (pour into a cup at ``--goal``), execute it
at control rate, and print a summary — tracking error, loop jitter, starved ticks and the latency
of every stage — which is also saved as ``summary.json`` in the run directory.

With ``--serve`` it stays up as a daemon (the systemd unit runs this) until SIGTERM/SIGINT, taking
tasks from the bus; ``--config`` selects the arm (``arm.simulate = false`` for real hardware).
"""

from __future__ import annotations

import json
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kinebridge.runtime.config import RuntimeConfig, load_config

__all__ = ["RunOptions", "run", "summarize_run"]

LISTEN = ("heartbeat", "chunk", "control/state", "control/timing", "control/chunk_latency", "control/reject",
          "trajectory/plan", "trajectory/done", "trajectory/error")


def _free_udp_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _pct(a, qs=(50, 99, 99.9, 100)):
    a = np.asarray(a, dtype=np.float64)
    if a.size == 0:
        return {f"p{q:g}" if q < 100 else "max": None for q in qs}
    v = np.percentile(a, qs)
    return {(f"p{q:g}" if q < 100 else "max"): float(x) for q, x in zip(qs, v)}


def summarize_run(messages, task_stamps, d7: float) -> dict:
    """Figures of a run from the messages the supervisor collected."""
    from kinebridge.kernels import rm75

    by = {}
    for m in messages:
        by.setdefault(m.topic, []).append(m)
    out: dict = {}
    states = by.get("control/state", [])
    if states:
        q_cmd = np.stack([m.arrays["q_cmd"] for m in states])
        q_meas = np.stack([m.arrays["q"] for m in states])
        p_cmd = rm75.fk_batch(q_cmd, d7)[:, :3, 3]
        p_meas = rm75.fk_batch(q_meas, d7)[:, :3, 3]
        e = np.linalg.norm(p_cmd - p_meas, axis=1)
        out["tracking"] = {"states": len(states), "flange_err_mm_rms": float(np.sqrt(np.mean(e ** 2)) * 1e3),
                           "flange_err_mm_max": float(e.max() * 1e3),
                           "joint_err_deg_max": float(np.degrees(np.abs(q_cmd - q_meas).max()))}
    timing = by.get("control/timing", [])
    if timing:
        late = np.concatenate([m.arrays["lateness_ns"] for m in timing]) / 1e3
        tick = np.concatenate([m.arrays["tick_ns"] for m in timing]) / 1e3
        last = timing[-1].header
        out["loop"] = {"rate_hz": last["rate_hz"], "ticks": last["ticks"], "period_error_us": _pct(late),
                       "tick_work_us": _pct(tick), "overruns": last["overruns"], "starved_ticks": last["starved_ticks"],
                       "held_ticks": last["held_ticks"], "chunks_accepted": last["chunks_accepted"],
                       "chunks_rejected": last["chunks_rejected"], "workspace_violations": last["workspace_violations"],
                       "setpoints_rejected": last["setpoints_rejected"]}
    lat = [m.header["latency_ns"] / 1e3 for m in by.get("control/chunk_latency", [])]
    out["chunk_to_setpoint_us"] = _pct(lat)
    # trace each task through plan → first chunk → first setpoint via the `derived` stamps
    chunk_task = {}
    for m in by.get("chunk", []):
        for d in m.header.get("derived", []):
            if d[1] == "task":
                chunk_task[(m.header["src"], m.header["seq"])] = d[3]
    first_set = {}
    for m in by.get("control/chunk_latency", []):
        d = m.header["derived"][0]
        t_task = chunk_task.get((d[0], d[2]))
        if t_task is not None and t_task not in first_set:
            first_set[t_task] = d[3] + m.header["latency_ns"]
    stages = []
    for ts in task_stamps:
        row = {"task_seq": ts["seq"]}
        plan = next((m for m in by.get("trajectory/plan", []) if m.header["derived"][0][3] == ts["stamp_ns"]), None)
        if plan is not None:
            row["kind"] = plan.header["kind"]
            row["task_to_plan_ms"] = (plan.header["stamp_ns"] - ts["stamp_ns"]) / 1e6
            row["plan_compute_ms"] = plan.header["plan_ms"]
            row["plan_stages_ms"] = plan.header["stages_ms"]
            row["ik_max_pos_err_m"] = plan.header["max_pos_err"]
        chunk = next((m for m in by.get("chunk", []) if m.header.get("derived", [[None] * 4])[0][3] == ts["stamp_ns"]),
                     None)
        if chunk is not None:
            row["task_to_first_chunk_ms"] = (chunk.header["stamp_ns"] - ts["stamp_ns"]) / 1e6
        if ts["stamp_ns"] in first_set:
            row["task_to_first_setpoint_ms"] = (first_set[ts["stamp_ns"]] - ts["stamp_ns"]) / 1e6
        err = next((m for m in by.get("trajectory/error", []) if m.header["derived"][0][3] == ts["stamp_ns"]), None)
        if err is not None:
            row["error"] = err.header["reason"]
        stages.append(row)
    out["tasks"] = stages
    plans = by.get("trajectory/plan", [])
    if plans and states:
        final = plans[-1].arrays["pose"][-1]
        reached = rm75.fk(states[-1].arrays["q"], d7)
        out["final_flange_err_mm"] = float(np.linalg.norm(reached[:3, 3] - final[:3]) * 1e3)
    out["rejects"] = [m.header["reason"] for m in by.get("control/reject", [])]
    return out


@dataclass
class RunOptions:
    """What ``kinebridge run`` was asked for (see ``kinebridge run --help``)."""

    config: str | None = None
    goal: tuple = (0.45, 0.18, 0.08, 20.0)      # the cup: x, y, z (m), yaw (°), robot base frame
    replan_goal: tuple | None = None            # a second cup, sent mid-motion
    replan_after_s: float = 0.8
    serve: bool = False
    out: str = "out/run"
    timeout_s: float = 30.0
    rate_hz: float | None = None
    ipc_dir: str | None = None
    record: bool = True


def _prepare(opts: RunOptions) -> tuple[RuntimeConfig, Path]:
    cfg = load_config(opts.config)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = Path(opts.out) / stamp
    n = 1
    while run_dir.exists():
        run_dir = Path(opts.out) / f"{stamp}-{n}"
        n += 1
    upd = {}
    if opts.rate_hz is not None:
        upd["control"] = cfg.control.model_copy(update={"rate_hz": float(opts.rate_hz)})
    if opts.ipc_dir is not None:
        upd["bus"] = cfg.bus.model_copy(update={"ipc_dir": str(opts.ipc_dir)})
    if upd:
        cfg = RuntimeConfig.model_validate({**cfg.model_dump(), **{k: v.model_dump() for k, v in upd.items()}})
    nodes = dict(cfg.nodes)
    if not opts.record:
        nodes = {k: v for k, v in nodes.items() if v.kind != "recorder"}
    data = cfg.model_dump()
    data["nodes"] = {k: v.model_dump() for k, v in nodes.items()}
    if "recorder" in {v.kind for v in nodes.values()} and opts.config is None:
        data["recorder"]["directory"] = str(run_dir)
    return RuntimeConfig.model_validate(data), run_dir


def _settle(sup, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        sup.poll(10)


def run(opts: RunOptions, log=print) -> dict:
    """Run the daemon (``opts.serve``) or one task end to end; returns the summary."""
    from kinebridge.runtime.supervisor import Supervisor

    t_cmd = time.monotonic()
    cfg, run_dir = _prepare(opts)
    sim = None
    summary: dict = {"run_dir": str(run_dir)}
    stop = {"flag": False}

    def on_signal(signum, frame):
        stop["flag"] = True

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    sup = None
    try:
        if cfg.arm.simulate:
            from kinebridge.drivers.sim_controller import spawn_sim
            udp = _free_udp_port()
            sim = spawn_sim(host="127.0.0.1", port=0, push_port=udp, model=cfg.arm.sim_model,
                            initial_joints_deg=cfg.arm.sim_initial_deg)
            data = cfg.model_dump()
            data["arm"]["realman"].update(ip="127.0.0.1", port=sim.port, udp_port=udp)
            cfg = RuntimeConfig.model_validate(data)
            log(f"simulated RealMan controller ({cfg.arm.sim_model}) on 127.0.0.1:{sim.port}")
        sup = Supervisor(cfg, run_dir, listen=LISTEN, log=log)
        control = [n for n, s in cfg.nodes.items() if s.enabled and s.kind == "control"]
        # the control node (and the recorder, to record its start) first, with the CPUs to itself; the
        # producers once the arm is streaming
        first = [n for n, s in cfg.nodes.items() if s.enabled and s.kind in ("control", "recorder")]
        sup.start(first)
        if control:
            sup.wait_ready(control, statuses=("streaming",))
        sup.start([n for n in sup.nodes if n not in first])
        summary["ready_to_stream_s"] = time.monotonic() - t_cmd
        log(f"streaming {time.monotonic() - t_cmd:.2f} s after start "
            f"({sup.status()[control[0]].get('realtime', '')})" if control else "no control node configured")
        sup.wait_ready()
        summary["all_nodes_ready_s"] = time.monotonic() - t_cmd
        if opts.serve:
            log("serving; SIGTERM or Ctrl-C stops")
            while not stop["flag"] and not sup.failed:
                sup.poll(100)
                sup.messages.clear()
            summary["failed"] = sup.failed
            return summary
        tasks = [sup.publish("task", {"cup": list(map(float, opts.goal))})]
        t_task = time.monotonic()
        sent_replan = opts.replan_goal is None
        done_for = None
        deadline = time.monotonic() + opts.timeout_s
        while time.monotonic() < deadline and not stop["flag"] and not sup.failed:
            sup.poll(20)
            if not sent_replan and time.monotonic() - t_task >= opts.replan_after_s:
                tasks.append(sup.publish("task", {"cup": list(map(float, opts.replan_goal))}))
                sent_replan = True
            msgs = sup.messages
            if any(m.topic == "trajectory/error" for m in msgs):
                break
            if done_for is None and sent_replan:
                if any(m.topic == "trajectory/done" and m.header["derived"][0][3] == tasks[-1]["stamp_ns"]
                       for m in msgs):
                    done_for = time.monotonic()
            if done_for is not None:
                st = [m for m in msgs[-5:] if m.topic == "control/state"]
                if (st and st[-1].header["at_rest"]) or time.monotonic() - done_for > 2.0:
                    _settle(sup, 0.1)      # one more push period or so: the measured state catches up
                    break
        sup.poll(50)
        summary["completed"] = done_for is not None
        summary["failed"] = sup.failed
        summary["events"] = [e for _, e in sup.events]
        summary["nodes"] = sup.status()
        summary.update(summarize_run(sup.messages, tasks, cfg.control.d7))
        return summary
    finally:
        if sup is not None:
            sup.shutdown()
        if sim is not None:
            sim.terminate() if hasattr(sim, "terminate") else sim.kill()
        for s, h in old.items():
            signal.signal(s, h)
        run_dir.mkdir(parents=True, exist_ok=True)
        recs = sorted(run_dir.glob("*.mcap"))
        if recs:
            summary["recording"] = str(recs[-1])
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))


def _fmt(v, unit="", nd=2):
    return "—" if v is None else f"{v:.{nd}f}{unit}"


def print_summary(s: dict) -> None:
    """The run summary as a table (rich)."""
    from rich.console import Console
    from rich.table import Table

    con = Console()
    t = Table(title="kinebridge run", show_header=False, title_justify="left")
    t.add_column("what", style="bold")
    t.add_column("value")
    t.add_row("completed", str(s.get("completed")) + (f"  (FAILED: {s['failed']})" if s.get("failed") else ""))
    t.add_row("ready to stream", _fmt(s.get("ready_to_stream_s"), " s") + f"   all nodes ready {_fmt(s.get('all_nodes_ready_s'), ' s')}")
    loop = s.get("loop")
    if loop:
        pe = loop["period_error_us"]
        t.add_row("control loop", f"{loop['rate_hz']:g} Hz, {loop['ticks']} ticks, overruns {loop['overruns']}")
        t.add_row("period error", f"p50 {_fmt(pe['p50'], ' µs', 1)}  p99 {_fmt(pe['p99'], ' µs', 1)}  "
                                  f"p99.9 {_fmt(pe['p99.9'], ' µs', 1)}  max {_fmt(pe['max'], ' µs', 1)}")
        tw = loop["tick_work_us"]
        t.add_row("tick work", f"p50 {_fmt(tw['p50'], ' µs', 1)}  p99 {_fmt(tw['p99'], ' µs', 1)}  max {_fmt(tw['max'], ' µs', 1)}")
        t.add_row("starved / held ticks", f"{loop['starved_ticks']} / {loop['held_ticks']}")
        t.add_row("chunks accepted / rejected", f"{loop['chunks_accepted']} / {loop['chunks_rejected']}")
        t.add_row("workspace / setpoint rejections", f"{loop['workspace_violations']} / {loop['setpoints_rejected']}")
    c2s = s.get("chunk_to_setpoint_us", {})
    t.add_row("chunk → setpoint", f"p50 {_fmt(c2s.get('p50'), ' µs', 0)}  p99 {_fmt(c2s.get('p99'), ' µs', 0)}  "
                                  f"max {_fmt(c2s.get('max'), ' µs', 0)}")
    for task in s.get("tasks", []):
        name = f"task {task['task_seq']} ({task.get('kind', '?')})"
        if "error" in task:
            t.add_row(name, f"[red]{task['error']}[/red]")
            continue
        t.add_row(name, f"task→plan {_fmt(task.get('task_to_plan_ms'), ' ms', 1)} (compute "
                        f"{_fmt(task.get('plan_compute_ms'), ' ms', 1)}), →first chunk "
                        f"{_fmt(task.get('task_to_first_chunk_ms'), ' ms', 1)}, →first setpoint "
                        f"{_fmt(task.get('task_to_first_setpoint_ms'), ' ms', 1)}")
    tr = s.get("tracking")
    if tr:
        t.add_row("tracking (commanded vs measured flange)",
                  f"rms {_fmt(tr['flange_err_mm_rms'], ' mm', 3)}  max {_fmt(tr['flange_err_mm_max'], ' mm', 3)}  "
                  f"joint max {_fmt(tr['joint_err_deg_max'], '°', 3)}")
    if "final_flange_err_mm" in s:
        t.add_row("final pose vs plan", _fmt(s["final_flange_err_mm"], " mm", 3))
    if s.get("rejects"):
        t.add_row("rejected chunks", "; ".join(s["rejects"][:3]))
    for e in s.get("events", []):
        t.add_row("event", e)
    t.add_row("run directory", s.get("run_dir", ""))
    if s.get("recording"):
        t.add_row("recording", s["recording"])
    con.print(t)
