"""The control loop streams chunks through the real driver and SDK into the simulated controller."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from kinebridge.drivers.host.net import free_udp_port
from kinebridge.drivers.realman.arm import RealmanArm, RealmanConfig
from kinebridge.drivers.realman.sim.controller import spawn_sim
from kinebridge.kernels import rm75
from kinebridge.runtime.control.loop import ControlConfig, ControlLoop


@pytest.fixture(scope="module")
def sim():
    udp = free_udp_port()
    with spawn_sim(host="127.0.0.3", port=0, push_port=udp) as p:
        yield p, udp


@pytest.fixture
def arm(sim):
    p, udp = sim
    drv = RealmanArm(RealmanConfig(ip="127.0.0.3", port=p.port, udp_port=udp))
    drv.connect()
    drv.move_joints(rm75.Q_HOME, speed_percent=50)
    yield drv
    drv.close()


def _run(loop, seconds):
    th = threading.Thread(target=loop.run, daemon=True)
    th.start()
    return th


def _min_jerk_chunk(q0, q1, T, dt=0.02):
    s = np.linspace(0, 1, int(T / dt) + 1)[:, None]
    return q0 + (q1 - q0) * (10 * s**3 - 15 * s**4 + 6 * s**5)


def test_chunk_is_executed_at_control_rate(arm):
    loop = ControlLoop(arm, ControlConfig(rate_hz=200, watchdog_s=5.0))
    q0 = arm.read_state().q
    q1 = q0 + np.radians([10, -8, 12, 6, -10, 8, 15])
    th = _run(loop, 0)
    time.sleep(0.05)
    loop.submit(time.monotonic() + 0.02, 0.02, _min_jerk_chunk(q0, q1, 1.0))
    time.sleep(1.4)
    loop.stop()
    th.join(2.0)
    st = loop.stats
    assert st.chunks_accepted == 1 and st.setpoints_rejected == 0 and st.stopped_reason is None
    assert st.sent == st.ticks > 250
    final = arm.wait_for_state(0.5, newer_than_seq=arm.read_state().seq).q
    assert np.max(np.abs(final - q1)) < np.radians(0.01)
    assert np.median(loop.timer.recent_lateness_us()) < 500


def test_bad_chunks_are_refused_at_the_boundary(arm):
    loop = ControlLoop(arm)
    with pytest.raises(ValueError, match="non-finite"):
        loop.submit(time.monotonic(), 0.02, np.full((5, 7), np.nan))
    with pytest.raises(ValueError, match="shape"):
        loop.submit(time.monotonic(), 0.02, np.zeros((5, 6)))


def test_estop_stops_the_arm_mid_motion(arm):
    loop = ControlLoop(arm, ControlConfig(rate_hz=200, watchdog_s=5.0))
    q0 = arm.read_state().q
    q1 = q0 + np.radians([20, 0, 20, 0, 20, 0, 20])
    th = _run(loop, 0)
    loop.submit(time.monotonic(), 0.02, _min_jerk_chunk(q0, q1, 1.5))
    time.sleep(0.5)
    loop.estop()
    th.join(2.0)
    assert loop.stats.estopped
    time.sleep(0.3)
    a = arm.read_state().q
    time.sleep(0.2)
    b = arm.read_state().q
    assert np.max(np.abs(b - a)) < np.radians(0.01) and np.max(np.abs(b - q1)) > np.radians(1)


def test_watchdog_holds_when_input_goes_stale(arm):
    loop = ControlLoop(arm, ControlConfig(rate_hz=200, watchdog_s=0.2))
    q0 = arm.read_state().q
    q1 = q0 + np.radians([20, 0, 20, 0, 20, 0, 20])
    th = _run(loop, 0)
    loop.submit(time.monotonic(), 0.02, _min_jerk_chunk(q0, q1, 2.0))  # one chunk, never refreshed
    time.sleep(1.0)
    loop.stop()
    th.join(2.0)
    assert loop.stats.held_ticks > 0
    assert np.max(np.abs(arm.read_state().q - q1)) > np.radians(5)  # stopped well short of the target


def test_workspace_box_keeps_the_flange_inside(arm):
    q0 = arm.read_state().q
    z0 = rm75.fk(q0)[2, 3]
    cfg = ControlConfig(rate_hz=200, watchdog_s=5.0, workspace_min=(-0.7, -0.7, z0 - 0.01),
                        workspace_max=(0.7, 0.7, 1.0))
    loop = ControlLoop(arm, cfg)
    q1 = q0 + np.radians([0, 25, 0, 25, 0, 0, 0])   # reaches down, through the floor of the box
    th = _run(loop, 0)
    loop.submit(time.monotonic(), 0.02, _min_jerk_chunk(q0, q1, 1.0))
    time.sleep(1.3)
    loop.stop()
    th.join(2.0)
    assert loop.stats.workspace_violations > 0
    z = rm75.fk(arm.read_state().q)[2, 3]
    assert z >= z0 - 0.01 - 1e-3


def test_a_chunk_handed_in_between_ticks_is_blended_before_the_next_tick(arm):
    """``between_ticks`` gets the next deadline while it is still ahead; a chunk submitted there is in
    the follower before the tick starts (the tick only steps and sends) and is executed."""
    loop = ControlLoop(arm, ControlConfig(rate_hz=200, watchdog_s=5.0))
    q0 = arm.read_state().q
    q1 = q0 + np.radians([6, -5, 8, 4, -6, 5, 9])
    seen, at_tick = [], []

    def between(next_deadline_ns):
        seen.append((time.monotonic_ns(), next_deadline_ns, loop.stats.chunks_accepted))
        if len(seen) == 20:
            loop.submit(time.monotonic() + 0.01, 0.02, _min_jerk_chunk(q0, q1, 0.6))

    def before(t):          # the start of a tick, before it steps
        if len(seen) == 20 and not at_tick:
            at_tick.append(loop.stats.chunks_accepted)

    th = threading.Thread(target=loop.run, kwargs={"between_ticks": between, "before_tick": before}, daemon=True)
    th.start()
    time.sleep(1.2)
    loop.stop()
    th.join(2.0)
    assert all(now < deadline for now, deadline, _ in seen[:20])
    steps = np.diff([d for _, d, _ in seen[:20]])
    assert np.all(steps % 5_000_000 == 0) and np.all(steps > 0)      # on the 200 Hz grid
    assert seen[19][2] == 0 and at_tick == [1]
    final = arm.wait_for_state(0.5, newer_than_seq=arm.read_state().seq).q
    assert np.max(np.abs(final - q1)) < np.radians(0.01)
