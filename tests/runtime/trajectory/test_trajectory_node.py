"""The trajectory node in this process against raw peers: chunk times on a remote control node's clock,
a task before any live state, the end of a plan not re-sent in short tails."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import zmq

from kinebridge.drivers.realman.sim.options import READY_DEG
from kinebridge.runtime.bus.codec import encode
from kinebridge.runtime.bus.messages import Stamp
from kinebridge.runtime.bus.sockets import Subscriber
from kinebridge.runtime.config import RuntimeConfig, load_config


def _trajectory_node(tmp_path, raw_endpoint_of: str):
    """A trajectory node in this process (config: control + trajectory on ipc under ``tmp_path``) and a
    raw PUB socket bound where node ``raw_endpoint_of`` would publish."""
    from kinebridge.runtime.node import node_class

    data = load_config(None).model_dump()
    data["bus"]["ipc_dir"] = str(tmp_path / "bus")
    data["nodes"] = {k: v for k, v in data["nodes"].items() if k in ("control", "trajectory")}
    cfg = RuntimeConfig.model_validate(data)
    (tmp_path / "bus").mkdir()
    ctx = zmq.Context()
    raw = ctx.socket(zmq.PUB)
    raw.setsockopt(zmq.LINGER, 0)
    raw.bind(cfg.endpoint(raw_endpoint_of))
    return cfg, node_class("trajectory")("trajectory", cfg), ctx, raw


OFFSET_NS = 4_000_000_000_000        # the "remote" control node's clock: 4000 s ahead of this machine


def test_trajectory_node_stamps_chunks_on_a_remote_control_clock(tmp_path):
    """The trajectory node (in this process) hears a control node whose CLOCK_MONOTONIC is 4000 s ahead
    (a raw publisher on the control node's endpoint, stamping with that clock); the plan and the chunks it
    publishes are on that clock, not on this machine's."""
    cfg, node, ctx, control = _trajectory_node(tmp_path, "control")
    th = threading.Thread(target=node.run, daemon=True)
    th.start()
    out = Subscriber([cfg.endpoint("trajectory")], ("trajectory/plan", "chunk", "trajectory/error"))
    q_ready = np.radians(READY_DEG)
    seq = 0

    def send(topic, header, arrays=None):
        nonlocal seq
        seq += 1
        control.send_multipart(encode(topic, {"v": 1, "seq": seq, "stamp_ns": time.monotonic_ns() + OFFSET_NS,
                                              "src": "control", **header}, arrays))

    try:
        end = time.monotonic() + 60                 # the node fits LFE-KMP at start (Numba warm-up on CI)
        plan = None
        while plan is None and time.monotonic() < end:
            send("control/state", {"t": 0.0, "tick": seq, "sent": True, "starved": 0, "held": 0, "at_rest": True},
                 {"q_cmd": q_ready, "q": q_ready})
            if node.status == "ready" and seq % 20 == 0:
                t_task = time.monotonic()
                send("task", {"skill": "pour", "params": {"cup": [0.45, 0.18, 0.08, 20.0]}})
            for m in out.drain():
                assert m.topic != "trajectory/error", m.header
                if m.topic == "trajectory/plan":
                    plan = m
            time.sleep(0.005)
        assert plan is not None, "no plan within 60 s"
        t_remote = t_task + OFFSET_NS * 1e-9
        lead = cfg.trajectory.lead_s
        assert t_remote + lead - 0.05 < plan.header["t0"] < time.monotonic() + OFFSET_NS * 1e-9 + lead
        chunk = out.recv(2000)
        while chunk is not None and chunk.topic != "chunk":
            chunk = out.recv(2000)
        assert chunk is not None
        assert abs(chunk.header["t0"] - (time.monotonic() + OFFSET_NS * 1e-9)) < 2.0
    finally:
        node.stop()
        th.join(10)
        out.close()
        control.close()
        ctx.term()


def test_a_task_before_any_live_state_waits_then_fails_with_the_reason(tmp_path):
    """No control node: a task is held for the first live control/state, then reported as an error that
    names the likely cause, instead of being planned from an unknown pose on an unknown clock."""
    cfg, node, ctx, ops = _trajectory_node(tmp_path, "supervisor")
    th = threading.Thread(target=node.run, daemon=True)
    th.start()
    out = Subscriber([cfg.endpoint("trajectory")], ("trajectory/plan", "chunk", "trajectory/error"))
    try:
        end = time.monotonic() + 60
        while node.status != "ready" and time.monotonic() < end:
            time.sleep(0.02)
        time.sleep(0.2)                                   # slow joiners
        ops.send_multipart(encode("task", {"v": 1, "seq": 1, "stamp_ns": time.monotonic_ns(), "src": "supervisor",
                                           "params": {"cup": [0.45, 0.18, 0.08, 20.0]}}))
        t_sent = time.monotonic()
        msg = out.recv(5000)
        assert msg is not None and msg.topic == "trajectory/error"
        assert "no live control/state" in msg.header["reason"]
        assert time.monotonic() - t_sent >= 1.9           # it waited for the state first
        assert msg.derived[0].topic == "task"
    finally:
        node.stop()
        th.join(10)
        out.close()
        ops.close()
        ctx.term()


def test_the_end_of_a_plan_is_not_resent_in_short_tail_chunks(tmp_path):
    """Once a chunk reaching the plan's end is out, the node re-sends the end only in chunks long enough
    to arrive before they are over: a 20 ms tail would reach the control node already stale."""
    from kinebridge.runtime.trajectory.node import TAIL_RESEND_S
    from kinebridge.runtime.trajectory.planner import JointPlan

    cfg, node, ctx, raw = _trajectory_node(tmp_path, "supervisor")
    sub = Subscriber([cfg.endpoint("trajectory")], ("chunk",))
    try:
        time.sleep(0.2)
        n = 200
        node.plan = JointPlan(t0=100.0, dt=0.01, q=np.zeros((n, 7)), pose=np.zeros((n, 7)), phase=np.zeros(n),
                              frames=[])
        node.task_stamp = Stamp(src="t", topic="task", seq=0, stamp_ns=0)
        node._publish_chunk(100.0)                         # the plan's first chunk
        t_end = node.plan.t_end
        times = np.arange(100.1, t_end + 0.05, 0.1)        # the 10 Hz ticks that follow
        for t in times:
            node._publish_chunk(float(t), first=False)
        time.sleep(0.2)
        sent = [(m.header["t0"], m.arrays["q"].shape[0]) for m in sub.drain()]
    finally:
        sub.close()
        node.pub.close(), node.sub.close(), node.ctx.term()
        raw.close(), ctx.term()
    ends = [t0 + 0.01 * (k - 1) for t0, k in sent]
    assert pytest.approx(max(ends)) == t_end                          # the end was sent
    short_tails = [(t0, k) for (t0, k), e in zip(sent, ends) if abs(e - t_end) < 1e-9 and t_end - t0 < TAIL_RESEND_S]
    assert short_tails == []
    # every tick with at least TAIL_RESEND_S left re-sent (a lost chunk is made good), none after
    assert len(sent) == 1 + int(np.sum(times <= t_end - TAIL_RESEND_S + 1e-9))
