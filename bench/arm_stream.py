"""Paced pass-through streaming to an ``ArmDriver`` and what the arm's state push says about it.

Used by ``kinebridge bench arm`` and the hardware-in-the-loop suite: stream a smooth joint
trajectory at a fixed rate (absolute deadlines, sleep then spin for the last 200 µs), record every
send and every state push, and reduce them to tracking error, command-to-push latency and push
period jitter.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from kinebridge.drivers.arm.driver import ArmDriver, ArmState
from kinebridge.drivers.host.realtime import sleep_until

def minimum_jerk(q0, q1, duration_s: float) -> Callable[[float], np.ndarray]:
    """q(t) of a minimum-jerk move from q0 to q1: q0 + (q1-q0)(10s³ − 15s⁴ + 6s⁵), s = t/T."""
    q0, q1 = np.asarray(q0, float), np.asarray(q1, float)

    def q(t: float) -> np.ndarray:
        s = min(max(t / duration_s, 0.0), 1.0)
        return q0 + (q1 - q0) * (10 * s**3 - 15 * s**4 + 6 * s**5)

    return q


def peak_speed_minimum_jerk(q0, q1, duration_s: float) -> np.ndarray:
    """Peak joint speed of :func:`minimum_jerk`: 1.875 |q1 − q0| / T."""
    return 1.875 * np.abs(np.asarray(q1, float) - np.asarray(q0, float)) / duration_s


def sine_sweep(q_center, amplitude, frequency_hz: float) -> Callable[[float], np.ndarray]:
    """q(t) = q_c + A (1 − cos 2πft)/2 per joint: starts at rest at q_c, smooth, bounded speed πfA."""
    qc, a = np.asarray(q_center, float), np.asarray(amplitude, float)

    def q(t: float) -> np.ndarray:
        return qc + a * 0.5 * (1.0 - np.cos(2.0 * np.pi * frequency_hz * t))

    return q


@dataclass
class StreamRecord:
    rate_hz: float
    send_ns: np.ndarray            # CLOCK_MONOTONIC before each send
    send_call_us: np.ndarray       # duration of the driver call
    tick_error_us: np.ndarray      # send time − deadline
    q_cmd: np.ndarray              # (N, 7) rad
    push_ns: np.ndarray            # arrival of each state push during the stream
    push_q: np.ndarray             # (M, 7) rad
    errors: list = field(default_factory=list)

    def tracking_error(self) -> np.ndarray:
        """Per push: max |q_push − q_cmd| (rad) against the newest setpoint sent before the push."""
        idx = np.searchsorted(self.send_ns, self.push_ns, side="right") - 1
        ok = idx >= 0
        return np.max(np.abs(self.push_q[ok] - self.q_cmd[idx[ok]]), axis=1)

    def command_to_push_latency_ms(self, tol_rad: float = np.radians(0.0015)) -> np.ndarray:
        """For each setpoint, time until the first push that reports it (joints within ``tol_rad``).

        Meaningful where the arm reproduces the setpoint exactly in its push (the simulator in high
        follow); setpoints never reported (superseded before a push) are left out."""
        out = []
        j = 0
        for k in range(len(self.send_ns)):
            while j < len(self.push_ns) and self.push_ns[j] < self.send_ns[k]:
                j += 1
            for m in range(j, min(j + 8, len(self.push_ns))):
                if np.max(np.abs(self.push_q[m] - self.q_cmd[k])) <= tol_rad:
                    out.append((self.push_ns[m] - self.send_ns[k]) / 1e6)
                    break
        return np.asarray(out)

    def push_period_error_us(self, nominal_s: float) -> np.ndarray:
        return np.abs(np.diff(self.push_ns) / 1e3 - nominal_s * 1e6)


def stream(driver: ArmDriver, trajectory: Callable[[float], np.ndarray], rate_hz: float, duration_s: float,
           *, hold_s: float = 0.0) -> StreamRecord:
    """Stream ``trajectory(t)`` at ``rate_hz`` for ``duration_s`` (+ ``hold_s`` at the final point)."""
    period_ns = int(round(1e9 / rate_hz))
    n = int(round((duration_s + hold_s) * rate_hz)) + 1
    q_cmd = np.empty((n, driver.dof))
    send_ns = np.empty(n, dtype=np.int64)
    call_us = np.empty(n)
    tick_err = np.empty(n)
    pushes: list[tuple[int, np.ndarray]] = []
    lock = threading.Lock()

    def on_state(st: ArmState) -> None:
        with lock:
            pushes.append((st.stamp_ns, st.q))

    for k in range(n):
        q_cmd[k] = trajectory(min(k / rate_hz, duration_s))
    driver.add_state_callback(on_state)
    errors = []
    try:
        t0 = time.monotonic_ns() + 2 * period_ns
        for k in range(n):
            deadline = t0 + k * period_ns
            sleep_until(deadline)
            a = time.monotonic_ns()
            try:
                driver.send_joint_setpoint(q_cmd[k])
            except Exception as exc:  # recorded; the caller decides what a failure means
                errors.append((k, repr(exc)))
                n = k
                break
            b = time.monotonic_ns()
            send_ns[k], call_us[k], tick_err[k] = a, (b - a) / 1e3, (a - deadline) / 1e3
        time.sleep(0.05)  # let the last pushes arrive
    finally:
        driver.remove_state_callback(on_state)
    with lock:
        p = [x for x in pushes if x[0] >= (send_ns[0] if n else 0)]
    push_ns = np.array([x[0] for x in p], dtype=np.int64)
    push_q = np.array([x[1] for x in p]).reshape(len(p), driver.dof)
    return StreamRecord(rate_hz, send_ns[:n], call_us[:n], tick_err[:n], q_cmd[:n], push_ns, push_q, errors)
