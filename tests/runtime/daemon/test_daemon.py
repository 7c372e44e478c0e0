"""The controller daemon as a lab runs it: `kinebridge run --serve` on the simulated arm, talked to with
`kinebridge status|task|stop|estop|clear`; a second instance refused; SIGTERM at start-up; the
supervisor SIGKILLed mid-motion; fuzzed input; the systemd unit."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time

import pytest

from kinebridge.bench import faults

CLI = [sys.executable, "-m", "kinebridge.runtime.cli.main"]


def _cli(*args, timeout=60):
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    d = tmp_path_factory.mktemp("daemon")
    bus = str(d / "bus")
    p = subprocess.Popen([*CLI, "run", "--serve", "--ipc-dir", bus, "--out", str(d / "run")],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    end = time.monotonic() + 120
    while time.monotonic() < end:
        r = _cli("status", "--ipc-dir", bus, "--json")
        if r.returncode == 0:
            break
        assert p.poll() is None, p.stdout.read()
        time.sleep(0.5)
    else:
        p.kill()
        pytest.fail(f"the daemon did not become healthy: {r.stdout} {r.stderr}")
    yield bus, p
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(30)
    finally:
        if p.poll() is None:
            p.kill()


def test_status_task_stop_clear_estop(daemon):
    bus, proc = daemon
    r = _cli("status", "--ipc-dir", bus, "--json")
    s = json.loads(r.stdout)
    assert r.returncode == 0 and s["healthy"] and set(s["nodes"]) == {"control", "trajectory", "recorder", "ingress"}
    assert s["link"] == "streaming" and s["realtime"]
    r = _cli("task", "--ipc-dir", bus, "--cup", "0.45,0.18,0.08,20", "--wait", "--json", timeout=90)
    out = json.loads(r.stdout)
    assert r.returncode == 0 and out["completed"] and out["plan"]["kind"] == "plan", r.stderr
    # an unreachable task: answered with the reason, exit 1
    r = _cli("task", "--ipc-dir", bus, "--cup", "1.5,0,0.1,0", "--wait", timeout=60)
    assert r.returncode == 1 and "reach" in r.stderr
    # stop mid-motion: the task ends with the reason, the daemon reports the hold until clear
    t = subprocess.Popen([*CLI, "task", "--ipc-dir", bus, "--cup", "0.36,0.08,0.10,-10", "--wait"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)
    assert _cli("stop", "--ipc-dir", bus, "--reason", "test").returncode == 0
    _, err = t.communicate(timeout=30)
    assert t.returncode == 1 and "stopped by the operator" in err
    r = _cli("status", "--ipc-dir", bus, "--json")
    assert r.returncode == 1 and "hold" in json.loads(r.stdout)["latched"]
    assert _cli("clear", "--ipc-dir", bus).returncode == 0
    _wait_healthy(bus)
    # e-stop: latched (a task is refused), remembered until clear
    assert _cli("estop", "--ipc-dir", bus, "--reason", "test").returncode == 0
    time.sleep(0.5)
    s = json.loads(_cli("status", "--ipc-dir", bus, "--json").stdout)
    assert not s["healthy"] and "e-stop" in s["latched"]
    r = _cli("task", "--ipc-dir", bus, "--cup", "0.45,0.18,0.08,20", "--wait", timeout=60)
    assert r.returncode == 1 and "held" in r.stderr
    assert _cli("clear", "--ipc-dir", bus).returncode == 0
    _wait_healthy(bus)
    assert proc.poll() is None


def _wait_healthy(bus, timeout=20):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if _cli("status", "--ipc-dir", bus).returncode == 0:
            return
        time.sleep(0.3)
    pytest.fail(_cli("status", "--ipc-dir", bus).stdout)


def test_status_without_a_runtime_says_so(tmp_path):
    r = _cli("status", "--ipc-dir", str(tmp_path / "nobody"))
    assert r.returncode == 3 and "no kinebridge runtime is running" in r.stderr


def test_sigterm_during_start_up_stops_promptly(tmp_path):
    for delay in (0.3, 3.0):                     # while it imports; while the simulator and the nodes start
        p = subprocess.Popen([*CLI, "run", "--serve", "--ipc-dir", str(tmp_path / f"bus{delay}"),
                              "--out", str(tmp_path / "run")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
        time.sleep(delay)
        t = time.monotonic()
        p.send_signal(signal.SIGTERM)
        p.wait(20)
        assert time.monotonic() - t < 15
        out = p.stdout.read()
        # stopped by its handler (0), or by the signal itself before it had started anything (-15)
        assert p.returncode in (0, -signal.SIGTERM) and "Traceback" not in out, out
        time.sleep(1.0)
        assert faults._descendants(p.pid) == []             # no node left behind


def test_the_supervisor_killed_leaves_no_arm_moving_and_no_orphans_and_a_second_start_is_refused(tmp_path):
    r = faults.kill_supervisor(tmp_path)
    assert r["speed_at_kill_rad_s"] > 0.01                   # it was moving
    assert r["at_rest_after_s"] is not None and r["at_rest_after_s"] < 1.0
    assert r["orphans_after_2s"] == 0, r.get("orphans")
    assert r["second_instance_refused"], r["second_instance_message"]
    assert r["sigterm_exit_code"] == 0


def test_fuzzed_messages_never_crash_the_control_node_or_the_supervisor(tmp_path):
    r = faults.fuzz(4000, seed=7, workdir=tmp_path)
    assert r["control_alive"] and r["control_restarts"] == 0 and not r["supervisor_failed"], r
    assert r["setpoints_outside_limits"] == 0
    assert r["simulator"]["passthrough_accepted"] == r["simulator"]["passthrough_received"] > 0   # valid chunks ran
    assert sum(r["dropped_by_reason"].values()) > 500 and r["rejects_published"] > 100


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze (Debian's systemd)")
def test_the_systemd_unit_is_hardened_and_follows_the_policy():
    from pathlib import Path
    unit = Path(__file__).resolve().parents[3] / "runtime" / "daemon" / "systemd" / "kinebridge.service"
    text = unit.read_text()
    for line in ("Type=notify", "WatchdogSec=", "DynamicUser=yes", "RestartPreventExitStatus=2", "LimitRTPRIO=90",
                 "TimeoutStopSec="):
        assert line in text, line
    stop_s = int(next(ln for ln in text.splitlines() if ln.startswith("TimeoutStopSec=")).split("=")[1])
    assert stop_s >= 2 + 3 * 3          # deceleration (≤ 2 s) + each stop phase's grace (3 s)
    r = subprocess.run(["systemd-analyze", "security", "--offline=true", str(unit)], capture_output=True, text=True)
    line = next(ln for ln in r.stdout.splitlines() if "Overall exposure level" in ln)
    score = float(line.split(":")[1].split()[0])
    assert score <= 2.5, line
