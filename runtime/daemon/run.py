"""``kinebridge run``: the controller daemon, and its one-task demonstration.

Without ``--config`` it runs the embedded default end to end: start the simulated RealMan controller,
start the nodes (control, trajectory, recorder) under the supervisor phase by phase
(:mod:`~kinebridge.runtime.supervisor.launch`), connect through the official SDK, wait until the
control loop streams, send one task (pour into a cup at ``--goal``), execute it at control rate,
and print a summary — tracking error, loop jitter, starved ticks and the latency of every stage —
which is also saved as ``summary.json`` in the run directory.

With ``--serve`` it stays up as a daemon (the systemd unit runs this) until SIGTERM/SIGINT, taking
tasks from the bus; ``--config`` selects the arm (``arm.simulate = false`` for real hardware).
"""

from __future__ import annotations

import json
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from kinebridge.runtime.bus import messages as M
from kinebridge.runtime.config import RuntimeConfig, load_config
from kinebridge.runtime.daemon.summary import print_summary, summarize_run

__all__ = ["RunOptions", "run", "summarize_run", "print_summary", "LISTEN"]

LISTEN = (M.Heartbeat, M.Chunk, M.ControlState, M.ControlTiming, M.ChunkLatency, M.ChunkReject, M.PlanMsg,
          M.TaskDone, M.TaskError)
LISTEN = tuple(b.TOPIC for b in LISTEN)


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
    policy: str | None = None                   # --policy replay-tokens: the decoder + policy nodes drive the arm
    policy_source: str | None = None            # … and its data set
    instruction: str | None = None              # --instruction: world → … → control on the simulated world
    keypoints: str = "auto"                     # … where candidates and keypoints come from (auto, perception, world)
    scene_seed: int | None = None               # … the world's scene seed (overrides world.seed)
    settle_s: float = 2.0                       # … the water settles this long after the arm is at rest
    pipeline: bool = False                      # --serve --pipeline: that runtime as a daemon (task --instruction)


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
    if opts.policy is not None:
        from kinebridge.runtime.policy.replay import enable_in_config
        enable_in_config(data, opts.policy, opts.policy_source)
    if opts.instruction is not None or opts.pipeline:
        from kinebridge.runtime.daemon.instruction import enable_in_config as enable_instruction
        enable_instruction(data, opts.keypoints)
        if opts.scene_seed is not None:
            data["world"]["seed"] = int(opts.scene_seed)
    cfg = RuntimeConfig.model_validate(data)
    from kinebridge.runtime.daemon.checks import refuse_dangerous
    refuse_dangerous(cfg, opts.config or "embedded default")
    return cfg, run_dir


def _serve(sup, stop, notify, log, summary: dict) -> dict:
    """The daemon's loop: supervise, answer operator commands, feed systemd's watchdog, until SIGTERM."""
    sup.keep_messages = False
    latched = sup.latched()
    notify.ready("serving" + (f"; arm held: {latched}" if latched else ""))
    log("serving; SIGTERM or Ctrl-C stops" + (f" (the arm is held: {latched}; `kinebridge clear` resumes)"
                                               if latched else ""))
    last_state = None
    while not stop["flag"]:
        sup.poll(100)
        notify.watchdog()
        state = sup.failed or sup.latched() or "serving"
        if state != last_state:
            notify.status(state if state == "serving" else f"holding the arm: {state}; `kinebridge clear` resumes")
            last_state = state
    notify.stopping()
    summary["failed"] = sup.failed
    return summary


def _settle(sup, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        sup.poll(10)


def _task(cup) -> M.Task:
    return M.Task(skill="pour", params={"cup": [float(v) for v in cup]})


def _ended(msgs, topic: str, task: M.Stamp) -> bool:
    return any(m.topic == topic and any(d.stamp_ns == task.stamp_ns for d in m.derived) for m in msgs)


def _instruction(opts: RunOptions, rt, stop, log, summary: dict) -> dict:
    """``--instruction``: one instruction through world → … → control, scored by the world."""
    from kinebridge.drivers.arm.factory import model_of
    from kinebridge.runtime.daemon.instruction import execute

    sup = rt.supervisor
    perception = any(s.enabled and s.kind == "perception" for s in rt.cfg.nodes.values())
    inst = execute(sup, opts.instruction, timeout_s=opts.timeout_s, settle_s=opts.settle_s, perception=perception,
                   should_stop=lambda: stop["flag"], log=log)
    tasks = inst.pop("task_stamps")
    sup.poll(50)
    summary["instruction"] = inst
    summary["completed"] = inst["completed"]
    summary["failed"] = sup.failed
    summary["events"] = [e for _, e in sup.events]
    summary["nodes"] = sup.status()
    summary.update(summarize_run(sup.messages, tasks, model_of(rt.cfg.arm).d7))
    return summary


def run(opts: RunOptions, log=print) -> dict:
    """Run the daemon (``opts.serve``) or one task end to end; returns the summary.

    One runtime per bus directory and per arm (:class:`~kinebridge.runtime.daemon.lock.RuntimeLock`); SIGTERM
    or SIGINT at any moment, start-up included, stops it within the nodes' grace periods. Under systemd
    (``Type=notify``) it reports readiness, feeds the watchdog from the supervisor's loop and says what it
    is doing in ``systemctl status``. A daemon whose control node died, or whose arm was e-stopped, stays up
    holding the arm still until ``kinebridge clear`` (it never returns to motion by itself)."""
    from kinebridge.runtime.daemon.lock import RuntimeLock
    from kinebridge.runtime.daemon.notify import Notifier
    from kinebridge.runtime.supervisor.launch import launch
    from kinebridge.runtime.supervisor.supervisor import Interrupted

    t_cmd = time.monotonic()
    stop = {"flag": False}

    def on_signal(signum, frame):
        stop["flag"] = True

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}   # before anything starts
    try:
        cfg, run_dir = _prepare(opts)
    except BaseException:
        for s, h in old.items():
            signal.signal(s, h)
        raise
    summary: dict = {"run_dir": str(run_dir)}
    notify = Notifier()
    if stop["flag"]:
        summary["interrupted"] = "stopped before the runtime started"
        for s, h in old.items():
            signal.signal(s, h)
        return summary
    rt = None
    real_arm = None if cfg.arm.simulate else f"{cfg.arm.realman.ip}:{cfg.arm.realman.port}"
    lock = RuntimeLock(cfg.bus.ipc_dir, real_arm)
    try:
        lock.acquire({"config": opts.config, "run_dir": str(run_dir), "rpc": cfg.rpc_endpoint(),
                      "ingress": cfg.ingress_endpoint(), "endpoints": cfg.endpoints(),
                      "ipc_dir": cfg.bus.ipc_dir, "serve": opts.serve})
        notify.status("starting")
        try:
            listen = LISTEN
            if opts.instruction is not None and not opts.serve:
                from kinebridge.runtime.daemon.instruction import LISTEN as LISTEN_INSTRUCTION
                listen = LISTEN + LISTEN_INSTRUCTION
            rt = launch(cfg, run_dir, listen=listen, log=log, t_start=t_cmd, should_stop=lambda: stop["flag"])
        except Interrupted as exc:
            summary["interrupted"] = str(exc)
            log(f"stopped during start-up ({exc})")
            return summary
        sup = rt.supervisor
        lock.update({"endpoints": rt.cfg.endpoints(), "arm": f"{rt.cfg.arm.realman.ip}:{rt.cfg.arm.realman.port}"})
        summary.update(rt.timings)
        if opts.serve:
            return _serve(sup, stop, notify, log, summary)
        latched = sup.latched()
        if latched:
            summary["failed"] = f"the arm is held ({latched}); `kinebridge clear` resumes"
            return summary
        if opts.instruction is not None:
            return _instruction(opts, rt, stop, log, summary)
        tasks = [sup.send(_task(opts.goal))]
        t_task = time.monotonic()
        sent_replan = opts.replan_goal is None
        done_for = None
        deadline = time.monotonic() + opts.timeout_s
        while time.monotonic() < deadline and not stop["flag"] and not sup.failed:
            sup.poll(20)
            if not sent_replan and time.monotonic() - t_task >= opts.replan_after_s:
                tasks.append(sup.send(_task(opts.replan_goal)))
                sent_replan = True
            msgs = sup.messages
            if any(m.topic == M.TaskError.TOPIC for m in msgs):
                break
            if done_for is None and sent_replan and _ended(msgs, M.TaskDone.TOPIC, tasks[-1]):
                done_for = time.monotonic()
            if done_for is not None:
                st = [m for m in msgs[-5:] if m.topic == M.ControlState.TOPIC]
                if (st and st[-1].body.at_rest) or time.monotonic() - done_for > 2.0:
                    _settle(sup, 0.1)      # one more push period or so: the measured state catches up
                    break
        sup.poll(50)
        summary["completed"] = done_for is not None
        summary["failed"] = sup.failed
        summary["events"] = [e for _, e in sup.events]
        summary["nodes"] = sup.status()
        from kinebridge.drivers.arm.factory import model_of
        summary.update(summarize_run(sup.messages, tasks, model_of(rt.cfg.arm).d7))
        return summary
    finally:
        if rt is not None:
            rt.shutdown()
        lock.release()
        for s, h in old.items():
            signal.signal(s, h)
        run_dir.mkdir(parents=True, exist_ok=True)
        started = time.time() - (time.monotonic() - t_cmd) - 1.0
        recs = sorted((p for p in Path(cfg.recorder.directory).glob("*.mcap") if p.stat().st_mtime >= started),
                      key=lambda p: p.stat().st_mtime)
        if recs:
            summary["recording"] = str(recs[-1])
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
