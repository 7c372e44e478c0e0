"""`kinebridge run` end to end: the default runtime on the simulated arm, as a user starts it."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from kinebridge.runtime.recording.recorder import read_recording
from tests.test_layering import blocked_training_env


def test_kinebridge_run_executes_the_pour_and_a_replan(tmp_path):
    """The embedded default, with torch, transformers and peft impossible to import in every process."""
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "kinebridge.runtime.cli.main", "run", "--json", "--out", str(out),
         "--ipc-dir", str(tmp_path / "bus"), "--replan-goal", "0.36,0.08,0.10,-10", "--replan-after", "1.0"],
        capture_output=True, text=True, timeout=120, env=blocked_training_env(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    s = json.loads(proc.stdout)
    why = json.dumps({k: v for k, v in s.items() if k != "nodes"}, default=str)[:4000]   # shown on failure
    assert s["completed"] and not s["failed"], why
    assert [t["kind"] for t in s["tasks"]] == ["plan", "replan"], why
    assert all(t["task_to_first_setpoint_ms"] > 0 for t in s["tasks"]), why
    loop = s["loop"]
    assert loop["starved_ticks"] == 0 and loop["chunks_rejected"] == 0 and loop["setpoints_rejected"] == 0, why
    assert loop["chunks_accepted"] > 10 and loop["ticks"] > 400, why
    assert s["final_flange_err_mm"] < 0.5, why            # landed on the plan's last pose
    assert s["tracking"]["flange_err_mm_max"] < 5.0, why  # the simulated arm followed the stream
    # everything went to the recording, and it reads back
    rec = s["recording"]
    topics = {}
    for m in read_recording(rec):
        topics[m.topic] = topics.get(m.topic, 0) + 1
    assert topics["task"] == 2 and topics["trajectory/plan"] == 2 and topics["control/state"] > 400
    assert topics["chunk"] == loop["chunks_accepted"]
    # no seam anywhere: the commanded joints never step beyond the velocity limit
    from kinebridge.kernels import rm75
    q = np.stack([m.arrays["q_cmd"] for m in read_recording(rec, ["control/state"])])
    assert np.all(np.abs(np.diff(q, axis=0)) <= rm75.QD_MAX * 0.005 + 1e-9)


def test_bad_config_is_refused_before_anything_starts(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[control]\nrate_hz = 900\n")
    proc = subprocess.run([sys.executable, "-m", "kinebridge.runtime.cli.main", "run", "--config", str(cfg)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "control.rate_hz" in proc.stderr


def test_a_6f_arm_at_half_speed_on_a_slower_controller(tmp_path):
    """arm.model = RM75-6F and arm.speed_fraction = 0.5 against a controller that reports 60 % joint speeds:
    the control loop enforces model ∩ report × 0.5, announces it, the trajectory node plans within it, and
    every flange figure uses the 6F's d7. Chunks and states travel under configured wire names."""
    from kinebridge.drivers.host.net import free_udp_port
    from kinebridge.drivers.realman.sim.controller import spawn_sim
    from kinebridge.kernels import rm75

    udp = free_udp_port()
    with spawn_sim(host="127.0.0.1", port=0, push_port=udp, model="RM75-6F", joint_speed_scale=0.6) as sim:
        cfg = tmp_path / "6f.toml"
        cfg.write_text(f"""
[bus]
ipc_dir = "{tmp_path}/bus"
[bus.topics]                 # renamed on the wire: publishers and subscribers alike must follow
chunk = "arm1/chunk"
"control/state" = "arm1/state"
[arm]
model = "RM75-6F"
speed_fraction = 0.5
simulate = false
[arm.realman]
ip = "127.0.0.1"
port = {sim.port}
udp_port = {udp}
[recorder]
directory = "{tmp_path}/rec"
[nodes.control]
[nodes.trajectory]
[nodes.recorder]
""")
        proc = subprocess.run([sys.executable, "-m", "kinebridge.runtime.cli.main", "run", "--json", "--config", str(cfg),
                               "--out", str(tmp_path / "run")], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    s = json.loads(proc.stdout)
    why = json.dumps({k: v for k, v in s.items() if k != "nodes"}, default=str)[:3000]
    assert s["completed"] and s["loop"]["setpoints_rejected"] == 0, why
    assert s["final_flange_err_mm"] < 0.5, why                      # FK with the 6F's d7 on both sides
    assert s["nodes"]["trajectory"]["limits"] == "from the control node", s["nodes"]
    assert s["nodes"]["control"]["arm"]["model"] == "RM75-6F"
    rec = s["recording"]
    lim = next(iter(read_recording(rec, ["control/limits"])))
    assert lim.header["model"] == "RM75-6F" and lim.header["d7"] == rm75.D7_6F
    np.testing.assert_allclose(lim.arrays["qd_max"], rm75.QD_MAX * 0.6 * 0.5, rtol=1e-3)
    assert sum(1 for _ in read_recording(rec, ["chunk"])) == s["loop"]["chunks_accepted"] > 0   # recorded by name
    plan = next(iter(read_recording(rec, ["trajectory/plan"])))
    v = np.abs(np.diff(plan.arrays["q"], axis=0)) / plan.header["dt"]
    assert np.all(v <= lim.arrays["qd_max"]), "the plan exceeds what the loop enforces"
