"""The control node under the supervisor, streaming into the simulated controller over the real SDK.

Real processes throughout: ``kinebridge sim``, the control node (``python -m kinebridge.runtime.node``)
and the supervisor in the test process, talking over ZeroMQ ipc sockets.
"""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest

from kinebridge.drivers.host.net import free_udp_port
from kinebridge.drivers.realman.arm import RealmanArm
from kinebridge.drivers.realman.sim.controller import spawn_sim
from kinebridge.runtime.config import parse_config
from kinebridge.runtime.supervisor.supervisor import Supervisor

SIM_IP = "127.0.0.5"
LISTEN = ("heartbeat", "control/state", "control/timing", "control/chunk_latency", "control/reject")


@pytest.fixture
def sim():
    udp = free_udp_port()
    with spawn_sim(host=SIM_IP, port=0, push_port=udp, initial_joints_deg=(0.0,) * 7) as p:   # exact on the wire
        yield p, udp


def _config(tmp_path, sim, extra=""):
    p, udp = sim
    return parse_config(f'''
[bus]
ipc_dir = "{tmp_path}/bus"
[arm]
simulate = false
[arm.realman]
ip = "{SIM_IP}"
port = {p.port}
udp_port = {udp}
link_timeout_periods = 10
[control]
watchdog_s = 5.0
[control.realtime]
priority = 0
lock_memory = false
[supervisor]
heartbeat_timeout_s = 1.0
[nodes.control]
critical = true
{extra}''')


@pytest.fixture
def runtime(tmp_path, sim):
    sup = Supervisor(_config(tmp_path, sim), tmp_path / "run", listen=LISTEN, log=lambda s: None)
    sup.start()
    sup.wait_ready(["control"], statuses=("streaming",))
    yield sup
    sup.shutdown()


def _pump(sup, seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        sup.poll(10)


def _last_state(sup):
    st = [m for m in sup.messages if m.topic == "control/state"]
    return st[-1]


def _min_jerk(q0, q1, n=51):
    s = np.linspace(0, 1, n)[:, None]
    return q0 + (q1 - q0) * (10 * s**3 - 15 * s**4 + 6 * s**5)


def test_chunks_on_the_bus_reach_the_arm_and_bad_ones_are_rejected(runtime):
    sup = runtime
    _pump(sup, 0.2)
    q0 = _last_state(sup).arrays["q"].copy()
    q1 = q0 + np.radians([6, -5, 5, 6, -5, 5, 8])
    good = _min_jerk(q0, q1)
    bad = good.copy()
    bad[10, 3] = np.nan
    now = time.monotonic()
    sup.publish("chunk", {"t0": now, "dt": 0.02}, {"q": bad})                       # NaN
    sup.publish("chunk", {"t0": now, "dt": 0.02}, {"q": good[:, :6]})               # wrong width
    sup.publish("chunk", {"dt": 0.02}, {"q": good})                                 # no t0
    sup.publish("chunk", {"t0": now, "dt": 0.02}, {"q": good + np.radians(400)})    # beyond joint limits
    _pump(sup, 0.2)
    rejects = [m.header["reason"] for m in sup.messages if m.topic == "control/reject"]
    assert len(rejects) == 4, rejects
    assert any("nan" in r.lower() or "finite" in r.lower() for r in rejects)
    assert any("t0" in r for r in rejects)
    held = _last_state(sup)
    np.testing.assert_allclose(held.arrays["q_cmd"], q0, atol=1e-9)   # nothing bad was sent on

    stamp = sup.publish("chunk", {"t0": time.monotonic(), "dt": 0.02}, {"q": good})
    _pump(sup, 1.5)
    last = _last_state(sup)
    np.testing.assert_allclose(last.arrays["q_cmd"], q1, atol=1e-9)
    np.testing.assert_allclose(last.arrays["q"], q1, atol=1e-3)      # the simulated arm got there
    lat = [m for m in sup.messages if m.topic == "control/chunk_latency"]
    assert len(lat) == 1 and lat[0].derived[0].seq == stamp.seq
    assert 0 < lat[0].header["latency_ns"] < 1e9
    timing = [m for m in sup.messages if m.topic == "control/timing"]
    assert timing and timing[-1].header["chunks_accepted"] == 1 and timing[-1].header["chunks_rejected"] == 4
    # states arrive every tick at 200 Hz: no hole longer than a few periods while streaming
    ticks = np.array([m.header["tick"] for m in sup.messages if m.topic == "control/state"])
    assert np.all(np.diff(ticks) >= 1)


def test_estop_stops_the_arm_latched_until_clear(runtime, sim):
    """An e-stop stops the arm at once and latches: the runtime stays up (state keeps flowing), every chunk
    is refused naming the latch — also after a restart of the control node — until `clear` resumes."""
    sup = runtime
    _pump(sup, 0.2)
    q0 = _last_state(sup).arrays["q"].copy()
    sup.publish("chunk", {"t0": time.monotonic(), "dt": 0.05}, {"q": _min_jerk(q0, q0 + np.radians(20), 61)})
    _pump(sup, 0.5)
    sup.estop("test")
    _pump(sup, 1.5)
    assert not sup.failed and "e-stop" in (_last_state(sup).header["latched"] or "")
    _assert_arm_still(sim)
    assert sup.latched() and "test" in sup.latched() and sup.cfg.latch_path().exists()   # remembered on disk
    q1 = _last_state(sup).arrays["q"].copy()
    sup.messages.clear()
    sup.publish("chunk", {"t0": time.monotonic(), "dt": 0.05}, {"q": _min_jerk(q1, q1 + np.radians(5), 21)})
    _pump(sup, 0.3)
    rejects = [m.body.reason for m in sup.messages if m.topic == "control/reject"]
    assert rejects and "latched" in rejects[0] and "kinebridge clear" in rejects[0]
    assert sup.clear("test") == "resuming" and not sup.cfg.latch_path().exists()
    end = time.monotonic() + 10          # (a link lost meanwhile is re-established first, then the clear applies)
    while _last_state(sup).header["latched"] is not None and time.monotonic() < end:
        _pump(sup, 0.1)
    assert _last_state(sup).header["latched"] is None
    q2 = _last_state(sup).arrays["q"].copy()
    sup.messages.clear()
    sup.publish("chunk", {"t0": time.monotonic(), "dt": 0.05}, {"q": _min_jerk(q2, q2 + np.radians(5), 21)})
    _pump(sup, 1.5)
    timing = [m for m in sup.messages if m.topic == "control/timing"]
    assert timing[-1].body.chunks_accepted >= 2                       # moving again after the clear


def _assert_arm_still(sim):
    """The simulated arm does not move (asked over the controller's JSON protocol: a second SDK client
    would re-point the state push away from the control node)."""
    p, udp = sim
    from kinebridge.drivers.realman.sim.controller import request
    a = np.array(request(p.host, p.port, {"command": "get_joint_degree"}, want="joint_degree")["joint"], float)
    time.sleep(0.5)
    b = np.array(request(p.host, p.port, {"command": "get_joint_degree"}, want="joint_degree")["joint"], float)
    np.testing.assert_allclose(b, a, atol=1e-6)      # not drifting (0.001° units on the wire)


def test_sigterm_decelerates_to_rest_before_stopping(runtime, sim):
    sup = runtime
    _pump(sup, 0.2)
    q0 = _last_state(sup).arrays["q"].copy()
    sup.publish("chunk", {"t0": time.monotonic(), "dt": 0.05}, {"q": _min_jerk(q0, q0 + np.radians(25), 61)})
    _pump(sup, 1.0)
    sup.nodes["control"].proc.send_signal(signal.SIGTERM)
    sup.nodes["control"].proc.wait(5)
    sup.poll(50)
    states = [m for m in sup.messages if m.topic == "control/state"]
    q = np.stack([m.arrays["q_cmd"] for m in states])
    v = np.diff(q, axis=0) / 0.005
    assert np.abs(v[-1]).max() < 1e-6                       # came to rest before exiting
    assert np.abs(v).max() > 0.05                           # it was moving when the signal came
    a = np.diff(v, axis=0) / 0.005
    from kinebridge.kernels import rm75
    assert np.all(np.abs(a) <= rm75.QDD_MAX * 1.0001 + 1e-9)   # and never braked harder than allowed
    _assert_arm_still(sim)
