"""`kinebridge run` end to end: the default runtime on the simulated arm, as a user starts it."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from kinebridge.runtime.recorder import read_recording


def test_kinebridge_run_executes_the_pour_and_a_replan(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "kinebridge.runtime.cli", "run", "--json", "--out", str(out),
         "--ipc-dir", str(tmp_path / "bus"), "--replan-goal", "0.36,0.08,0.10,-10", "--replan-after", "1.0"],
        capture_output=True, text=True, timeout=120)
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
    proc = subprocess.run([sys.executable, "-m", "kinebridge.runtime.cli", "run", "--config", str(cfg)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "control.rate_hz" in proc.stderr
