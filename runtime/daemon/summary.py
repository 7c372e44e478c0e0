"""The figures of a ``kinebridge run``: read off the messages the supervisor collected.

Every stage is traced through the bus stamps: a ``chunk``'s ``derived`` names the ``task`` it was
planned for, a ``control/chunk_latency``'s names the chunk, so task → plan → first chunk → first
setpoint is measured on CLOCK_MONOTONIC without any extra instrumentation.
"""

from __future__ import annotations

import numpy as np

from kinebridge.runtime.bus import messages as M
from kinebridge.kernels.stats import summary as _pct

__all__ = ["summarize_run", "print_summary"]


def _from(m, topic: str):
    """The stamp of the ``topic`` message ``m`` was derived from, or None."""
    return next((d for d in m.derived if d.topic == topic), None)


def summarize_run(messages, task_stamps, d7: float) -> dict:
    """Figures of a run from the messages the supervisor collected (typed, validated)."""
    from kinebridge.kernels import rm75

    by: dict = {}
    for m in messages:
        by.setdefault(m.topic, []).append(m)
    out: dict = {}
    states = by.get(M.ControlState.TOPIC, [])
    if states:
        q_cmd = np.stack([m.arrays["q_cmd"] for m in states])
        q_meas = np.stack([m.arrays["q"] for m in states])
        p_cmd = rm75.fk_batch(q_cmd, d7)[:, :3, 3]
        p_meas = rm75.fk_batch(q_meas, d7)[:, :3, 3]
        e = np.linalg.norm(p_cmd - p_meas, axis=1)
        out["tracking"] = {"states": len(states), "flange_err_mm_rms": float(np.sqrt(np.mean(e ** 2)) * 1e3),
                           "flange_err_mm_max": float(e.max() * 1e3),
                           "joint_err_deg_max": float(np.degrees(np.abs(q_cmd - q_meas).max()))}
    timing = by.get(M.ControlTiming.TOPIC, [])
    if timing:
        late = np.concatenate([m.arrays["lateness_ns"] for m in timing]) / 1e3
        tick = np.concatenate([m.arrays["tick_ns"] for m in timing]) / 1e3
        last: M.ControlTiming = timing[-1].body
        out["loop"] = {"rate_hz": last.rate_hz, "ticks": last.ticks, "period_error_us": _pct(late),
                       "tick_work_us": _pct(tick), "overruns": last.overruns, "starved_ticks": last.starved_ticks,
                       "held_ticks": last.held_ticks, "chunks_accepted": last.chunks_accepted,
                       "chunks_rejected": last.chunks_rejected, "chunks_superseded": last.chunks_superseded,
                       "late_ticks": last.late_ticks, "links_lost": last.links_lost, "reconnects": last.reconnects,
                       "workspace_violations": last.workspace_violations,
                       "setpoints_rejected": last.setpoints_rejected}
    lat = by.get(M.ChunkLatency.TOPIC, [])
    out["chunk_to_setpoint_us"] = _pct([m.body.latency_ns / 1e3 for m in lat])
    # trace each task through plan → first chunk → first setpoint via the `derived` stamps
    chunk_task = {}
    for m in by.get(M.Chunk.TOPIC, []):
        d = _from(m, M.Task.TOPIC)
        if d is not None:
            chunk_task[(m.stamp.src, m.stamp.seq)] = d.stamp_ns
    first_set: dict = {}
    for m in lat:
        d = _from(m, M.Chunk.TOPIC)
        t_task = chunk_task.get((d.src, d.seq)) if d is not None else None
        if t_task is not None and t_task not in first_set:
            first_set[t_task] = d.stamp_ns + m.body.latency_ns

    def of_task(topic: str, ts):
        return next((m for m in by.get(topic, []) if (d := _from(m, M.Task.TOPIC)) is not None
                     and d.stamp_ns == ts.stamp_ns), None)

    stages = []
    for ts in task_stamps:
        row: dict = {"task_seq": ts.seq}
        plan = of_task(M.PlanMsg.TOPIC, ts)
        if plan is not None:
            b: M.PlanMsg = plan.body
            row.update(kind=b.kind, skill=b.skill, task_to_plan_ms=(plan.stamp.stamp_ns - ts.stamp_ns) / 1e6,
                       plan_compute_ms=b.plan_ms, plan_stages_ms=b.stages_ms, ik_max_pos_err_m=b.max_pos_err)
        chunk = of_task(M.Chunk.TOPIC, ts)
        if chunk is not None:
            row["task_to_first_chunk_ms"] = (chunk.stamp.stamp_ns - ts.stamp_ns) / 1e6
        if ts.stamp_ns in first_set:
            row["task_to_first_setpoint_ms"] = (first_set[ts.stamp_ns] - ts.stamp_ns) / 1e6
        err = of_task(M.TaskError.TOPIC, ts)
        if err is not None:
            row["error"] = err.body.reason
        stages.append(row)
    out["tasks"] = stages
    plans = by.get(M.PlanMsg.TOPIC, [])
    if plans and states:
        final = plans[-1].arrays["pose"][-1]
        reached = rm75.fk(states[-1].arrays["q"], d7)
        out["final_flange_err_mm"] = float(np.linalg.norm(reached[:3, 3] - final[:3]) * 1e3)
    out["rejects"] = [m.body.reason for m in by.get(M.ChunkReject.TOPIC, [])]
    return out


def _fmt(v, unit="", nd=2):
    return "—" if v is None else f"{v:.{nd}f}{unit}"


def _instruction_rows(t, inst: dict) -> None:
    """``kinebridge run --instruction``: the decision, each sub-task, the world's score."""
    from rich.markup import escape as esc

    t.add_row("instruction", repr(inst.get("text")))
    d = inst.get("decision")
    if d is None:
        t.add_row("decision", "[red]none[/red]")
    else:
        what = (f"{d['skill']} → {d['target']}" if d["status"] == "decided" else d.get("question") or d.get("reason"))
        t.add_row("decision", f"{d['status']}: {esc(str(what))}  ({d['planner']}, {_fmt(d.get('latency_ms'), ' ms', 1)}; "
                              f"candidates from {d.get('candidates_from') or '?'}: {', '.join(d['candidates'])})")
    per = inst.get("perception")
    if per is not None:
        t.add_row("perception", f"{per['messages']} messages, {per['objects']} object(s) in the last"
                                + (f" — {esc(per['reason'])}" if per.get("reason") else ""))
    for r in inst.get("subtasks", []):
        colour = {"done": "green", "failed": "red", "skipped": "yellow"}.get(r["status"], "white")
        t.add_row(f"sub-task {r['index']}", f"[{colour}]{r['status']}[/{colour}] {r['skill']} on {r['target']}"
                                           + (f": {esc(r['description'])}" if r.get("description") else "")
                                           + (f"  (keypoints: {esc(r['keypoints_source'])})"
                                              if r.get("keypoints_source") else "")
                                           + (f" — {esc(r['reason'])}" if r.get("reason") else ""))
    w = inst.get("world")
    if w is not None:
        ok = w.get("success")
        t.add_row("world's score", f"[{'green' if ok else 'red'}]{'success' if ok else 'no success'}[/]  in target "
                                   f"{w.get('in_target')}/{w.get('total')}, spilt {w.get('spilt')}, in flight "
                                   f"{w.get('in_flight')}, left in the held mug {w.get('in_source')}, collisions "
                                   f"{w.get('collisions')}" + (f" ({', '.join(w['collided_with'])})"
                                                               if w.get("collided_with") else ""))
    if inst.get("error"):
        t.add_row("outcome", f"[red]{esc(inst['error'])}[/red]")


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
    inst = s.get("instruction")
    if inst:
        _instruction_rows(t, inst)
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
