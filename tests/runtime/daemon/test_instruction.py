"""`kinebridge run --instruction` end to end on the simulated world, as a user starts it: world → camera →
perception → planner → bridge → trajectory → control, the world scoring the pour; and a decision of several
sub-tasks executed in order, the second only after the first one's task ended."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

CLI = [sys.executable, "-m", "kinebridge.runtime.cli.main"]

# tiny and fast: one reachable mug (scene 21), few water spheres, a slow camera, one perception thread
TINY = """
[world]
seed = 21
mugs = 1
distractors = 1
particles = 40

[world.cameras.scene]
kind = "synthetic"
fps = 5.0

[perception]
threads = 1

[bridge]
wait_s = 3.0
"""

# two reachable mugs of different colours (scene 184: mug0 green, mug1 orange), the world's ground truth only
TWO = """
[world]
seed = 184
mugs = 2
distractors = 0
particles = 40
cameras = {}

[bridge]
wait_s = 3.0
"""


def test_the_pipeline_config_adds_the_nodes_and_follows_the_keypoint_source():
    from kinebridge.runtime.config import RuntimeConfig, load_config
    from kinebridge.runtime.daemon.instruction import enable_in_config

    data = enable_in_config(load_config(None).model_dump(), "auto")
    cfg = RuntimeConfig.model_validate(data)
    kinds = {s.kind for s in cfg.nodes.values() if s.enabled}
    assert {"control", "trajectory", "ingress", "world", "perception", "planner", "bridge"} <= kinds
    assert (cfg.planner.candidates, cfg.bridge.keypoints, cfg.trajectory.skill) == ("auto", "auto", "pour_mug")
    assert cfg.arm.sim_initial_deg is not None and cfg.nodes["control"].critical
    world = RuntimeConfig.model_validate(enable_in_config(load_config(None).model_dump(), "world"))
    assert "perception" not in {s.kind for s in world.nodes.values() if s.enabled}
    assert (world.planner.candidates, world.bridge.keypoints) == ("world", "world")
    real = load_config(None).model_dump()
    real["arm"]["simulate"] = False
    with pytest.raises(ValueError, match="simulated world"):
        enable_in_config(real)
    with pytest.raises(ValueError, match="--keypoints"):
        enable_in_config(load_config(None).model_dump(), "camera")


def _run(tmp_path, toml: str, instruction: str, *extra, timeout=110):
    cfg = tmp_path / "runtime.toml"
    cfg.write_text(toml)
    env = {**__import__("os").environ, "MUJOCO_GL": "egl"}
    proc = subprocess.run([*CLI, "run", "--json", "--no-record", "--config", str(cfg), "--out", str(tmp_path / "run"),
                           "--ipc-dir", str(tmp_path / "bus"), "--instruction", instruction, "--timeout", "60",
                           "--settle", "1.5", *extra], capture_output=True, text=True, timeout=timeout, env=env)
    s = json.loads(proc.stdout) if proc.stdout.strip().startswith("{") else {}
    return proc, s


def test_run_instruction_pours_and_reports_the_decision_subtasks_and_the_worlds_score(tmp_path):
    proc, s = _run(tmp_path, TINY, "pour water into the mug")
    why = proc.stderr[-3000:] + json.dumps(s.get("instruction"), default=str)[:3000]
    assert proc.returncode == 0, why
    inst = s["instruction"]
    d = inst["decision"]
    assert (d["status"], d["skill"], d["planner"]) == ("decided", "pour", "local"), why
    # the one mug on the table, by the world's name or perception's id — never the mug the arm holds (nor the
    # gripper seen as one): one candidate
    assert d["candidates_from"] in ("perception", "world") and d["candidates"] == [d["target"]], why
    assert d["target"] == "mug0" if d["candidates_from"] == "world" else d["target"].startswith("mug-"), why
    # every sub-task done, in order, as one task (the pour's phases are one skill motion)
    subs = inst["subtasks"]
    assert [r["index"] for r in subs] == list(range(len(d["subtasks"]))) and len(subs) >= 1, why
    assert all(r["status"] == "done" for r in subs) and len({r["task_id"] for r in subs}) == 1, why
    # which keypoints the bridge used is said (auto: perception's when usable, else the world's)
    assert inst["keypoints_source"] == "perception" or inst["keypoints_source"].startswith("world"), why
    assert inst["perception"] is not None and inst["perception"]["messages"] > 0, why     # perception ran
    # the world's score of the pour: counts that add up, and water left the held mug
    w = inst["world"]
    assert w is not None and w["target"] == "mug0" and w["total"] == 40, why
    assert all(isinstance(w[k], int) and w[k] >= 0 for k in ("in_target", "spilt", "collisions", "in_source")), why
    assert isinstance(w["success"], bool), why
    assert w["in_source"] < w["total"], why                            # the pour happened
    assert s["completed"] is True and not s["failed"], why
    # the task went through trajectory → control: its stages traced
    assert len(s["tasks"]) == 1 and s["tasks"][0]["skill"] == "pour_mug", why
    assert s["tasks"][0]["task_to_first_setpoint_ms"] > 0, why


def test_a_decision_of_several_subtasks_executes_them_in_order(tmp_path):
    proc, s = _run(tmp_path, TWO, "pour water into the orange mug then pour into the green mug", "--keypoints",
                   "world")
    why = proc.stderr[-3000:] + json.dumps(s.get("instruction"), default=str)[:3000]
    inst = s["instruction"]
    d = inst["decision"]
    assert d["status"] == "decided" and d["candidates_from"] == "world", why
    assert [x["target"] for x in d["subtasks"]] == ["mug1", "mug1", "mug0", "mug0"], why
    subs = inst["subtasks"]
    assert [r["index"] for r in subs] == [0, 1, 2, 3], why
    # the orange mug first, as one task; done before the green mug's task was sent (a second task id)
    assert [r["status"] for r in subs[:2]] == ["done", "done"], why
    assert subs[0]["task_id"].endswith(":0") and (subs[2]["task_id"] or "").endswith(":1"), why
    log = proc.stderr
    assert log.index("sub-task 2/4 done") < log.index("sub-task 3/4 started"), why
    # the second step's outcome is reported either way: done, or failed with the reason (and then exit 1)
    assert subs[2]["status"] in ("done", "failed") and subs[3]["status"] == subs[2]["status"], why
    if subs[2]["status"] == "failed":
        assert subs[2]["reason"] and proc.returncode == 1 and "sub-task 2 failed" in inst["error"], why
    else:
        assert proc.returncode == 0 and inst["completed"], why
    seqs = [t["task_seq"] for t in s["tasks"]]
    assert seqs == sorted(seqs) and len(seqs) == 2, why
    assert inst["world"]["target"] == "mug1", why       # the world counted the pour into the decided target


def test_task_instruction_to_a_serving_daemon_follows_the_decision_and_its_subtasks(tmp_path):
    """`kinebridge run --serve --pipeline` takes words from `kinebridge task --instruction` through the ingress."""
    import os
    import signal
    import time

    cfg = tmp_path / "runtime.toml"
    cfg.write_text(TINY.replace('[world.cameras.scene]\nkind = "synthetic"\nfps = 5.0\n', "")
                   .replace("particles = 40", "particles = 40\ncameras = {}"))
    bus = str(tmp_path / "bus")
    env = {**os.environ, "MUJOCO_GL": "egl"}
    p = subprocess.Popen([*CLI, "run", "--serve", "--pipeline", "--keypoints", "world", "--no-record", "--config",
                          str(cfg), "--ipc-dir", bus, "--out", str(tmp_path / "run")],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        end = time.monotonic() + 90
        while time.monotonic() < end:
            r = subprocess.run([*CLI, "status", "--ipc-dir", bus, "--json"], capture_output=True, text=True, timeout=30)
            if r.returncode == 0 and all(n["status"] in ("ready", "streaming")
                                         for n in json.loads(r.stdout)["nodes"].values()):
                break
            assert p.poll() is None, p.stdout.read()
            time.sleep(0.5)
        else:
            pytest.fail(f"the daemon did not become healthy: {r.stdout[-2000:]} {r.stderr[-2000:]}")
        time.sleep(1.0)                                  # the world's truth reaches the planner
        r = subprocess.run([*CLI, "task", "--ipc-dir", bus, "--instruction", "pour water into the mug", "--wait",
                            "--json", "--wait-timeout", "60"], capture_output=True, text=True, timeout=90)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        out = json.loads(r.stdout)
        assert out["completed"] and out["decision"]["status"] == "decided" and out["decision"]["target"] == "mug0"
        assert [x["status"] for x in out["subtasks"]] == ["done"] * out["decision"]["subtasks"]
        assert all(x["keypoints_source"] == "world" for x in out["subtasks"])
        # an instruction the planner cannot resolve: its answer, exit 1, nothing moves
        r = subprocess.run([*CLI, "task", "--ipc-dir", bus, "--instruction", "pour water into the blue bowl",
                            "--wait", "--json", "--wait-timeout", "30"], capture_output=True, text=True, timeout=60)
        assert r.returncode == 1, r.stdout[-2000:] + r.stderr[-2000:]
        out = json.loads(r.stdout)
        assert out["decision"]["status"] in ("ask", "failed") and not out["completed"]
        assert out["decision"]["question"] or out["decision"]["reason"]
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(30)
        finally:
            if p.poll() is None:
                p.kill()
