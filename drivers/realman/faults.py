"""Controller-side faults against the real SDK and the simulated controller, as functions a benchmark or a
test calls: FIN / RST closes of the TCP connection followed by ``reconnect()``, and a deterministic kill of
the SDK's receive thread.

Real parts only: ``kinebridge sim`` in its own process (``kinebridge_sim_drop_clients`` makes it end
the connection), the unmodified SDK in this process, real TCP and UDP.

    from kinebridge.drivers.realman.faults import run_reconnect_cycles
    r = run_reconnect_cycles(100)          # alternating FIN / RST; r["reconnects_ok"] == 100

    python -m kinebridge.drivers.realman.faults 100 alternate [--plain] [--no-recovery] [--no-wait] [--rt]
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
import time
from collections import Counter

from kinebridge.drivers.arm.driver import ArmError
from kinebridge.drivers.realman import sdk
from kinebridge.kernels.stats import summary

__all__ = ["run_reconnect_cycles", "kill_sdk_receive_thread"]


def _stream(arm, n: int, rate_hz: float) -> int:
    """Hold the current posture for ``n`` setpoints at ``rate_hz``; returns how many were sent."""
    q = arm.wait_for_state(1.0, newer_than_seq=arm.read_state().seq).q
    period = 1.0 / rate_hz
    t = time.monotonic()
    for _ in range(n):
        arm.send_joint_setpoint(q)
        t += period
        time.sleep(max(0.0, t - time.monotonic()))
    return n


def _received(sim) -> int:
    return int(sim.stats()["passthrough"]["received"])


def _await_received(sim, at_least: int, timeout_s: float = 0.5) -> int:
    deadline = time.monotonic() + timeout_s
    got = _received(sim)
    while got < at_least and time.monotonic() < deadline:
        time.sleep(0.005)
        got = _received(sim)
    return got


def run_reconnect_cycles(n: int = 100, how: str = "alternate", *, host: str = "127.0.0.2", sim=None,
                         udp_port: int | None = None, stream_points: int = 10, rate_hz: float = 200.0,
                         reconnect_timeout_s: float = 5.0, detect_timeout_s: float = 1.0,
                         wait_for_detection: bool = True, seed: int = 0, safe_release: bool = True,
                         auto_reinitialise: bool = True, stop_at_first_failure: bool = True,
                         rt_priority: int = 0, progress=None) -> dict:
    """``n`` times: stream, let the controller end the connection, ``reconnect()``, stream again.

    ``how``: ``"fin"``, ``"rst"`` or ``"alternate"`` (FIN on even cycles, RST on odd). A simulator is
    spawned on ``host`` (a loopback address of its own: the SDK tells arms apart by the push's source
    address) unless ``sim`` (a :class:`~kinebridge.drivers.realman.sim.controller.SimProcess`) is given.
    Each cycle streams ``stream_points`` setpoints at ``rate_hz`` and checks the simulator received them
    ("streaming resumed"), drops the connection, waits for the driver to declare the link lost (unless
    ``wait_for_detection`` is False: then it reconnects at once, 0–20 ms after the drop, the way the
    defect was first hit), and reconnects. ``safe_release`` / ``auto_reinitialise`` False switch off
    the driver's protections (:data:`kinebridge.drivers.realman.sdk.SETTINGS`) to measure the SDK as it is.
    ``rt_priority`` > 0 runs the driver's threads (the SDK's receive and UDP threads, the watchdog) under
    SCHED_FIFO at that priority where permitted (``[arm.realman] thread_priority``), as in the control
    node; 0 leaves them at normal priority.

    Returns ``{"cycles", "how", "reconnects_ok", "streaming_resumed", "failures": [{"cycle", "how",
    "error", "sdk_receive_thread_alive"}], "detect_ms": summary, "reconnect_ms": summary,
    "loss_reasons": {reason: n}, "sdk_receive_thread_deaths", "sdk": sdk.status(), "elapsed_s"}``."""
    from kinebridge.drivers.arm.model import arm_model
    from kinebridge.drivers.host.net import free_udp_port
    from kinebridge.drivers.realman.arm import RealmanArm, RealmanConfig
    from kinebridge.drivers.realman.sim.controller import spawn_sim

    if how not in ("fin", "rst", "alternate"):
        raise ValueError(f"how must be 'fin', 'rst' or 'alternate', got {how!r}")
    rng = random.Random(seed)
    saved = dict(sdk.SETTINGS)
    sdk.SETTINGS.update(safe_release=bool(safe_release), auto_reinitialise=bool(auto_reinitialise))
    own_sim = sim is None
    udp = udp_port or (sim.push_port if sim is not None else free_udp_port())
    if own_sim:
        sim = spawn_sim(host=host, port=0, push_port=udp)
    arm = RealmanArm(RealmanConfig(ip=sim.host, port=sim.port, udp_port=udp, thread_priority=int(rt_priority)),
                     arm_model("RM75-B"))
    sdk_before = sdk.status()
    fds_before = _open_fds()
    detect_ms: list[float] = []
    reconnect_ms: list[float] = []
    reasons: Counter = Counter()
    failures: list[dict] = []
    ok = resumed = 0
    t_start = time.monotonic()
    try:
        arm.connect()
        for i in range(n):
            kind = how if how != "alternate" else ("fin" if i % 2 == 0 else "rst")
            try:
                before = _received(sim)
                sent = _stream(arm, stream_points, rate_hz)
                if _await_received(sim, before + sent) >= before + sent:
                    resumed += 1 if i > 0 else 0
                t_drop = time.monotonic_ns()
                dropped = sim.drop_clients(kind)
                if dropped == 0:
                    reasons["nothing to drop"] += 1
                if wait_for_detection:
                    deadline = time.monotonic() + detect_timeout_s
                    while arm.link_state != "lost" and time.monotonic() < deadline:
                        time.sleep(0.001)
                    if arm.link_state == "lost":
                        detect_ms.append((arm.lost_at_ns - t_drop) / 1e6)
                        reasons[_reason_kind(arm.lost_reason)] += 1
                    else:
                        reasons["not detected"] += 1
                        if progress:
                            progress(f"cycle {i + 1} ({kind}): loss not detected within {detect_timeout_s} s; "
                                     f"link {arm.link_state}, {dropped} dropped, tcp probe {_tcp_state(arm)}, sdk {sdk.status()}")
                else:
                    time.sleep(rng.uniform(0.0, 0.02))
                t0 = time.monotonic_ns()
                arm.reconnect(timeout_s=reconnect_timeout_s)
                reconnect_ms.append((time.monotonic_ns() - t0) / 1e6)
                ok += 1
            except (ArmError, OSError, TimeoutError) as exc:
                failure = {"cycle": i + 1, "how": kind, "error": str(exc),
                           "sdk_receive_thread_alive": sdk.receive_thread_alive(),
                           "driver_longest_push_gap_ms": round(arm.link_health().longest_gap_s * 1e3, 1)}
                with contextlib.suppress(Exception):   # was the controller late, or this process?
                    failure["sim_push_period_error_max_us"] = sim.stats()["push"]["period_error_us"]["max"]
                failures.append(failure)
                if progress:
                    progress(f"cycle {i + 1} ({kind}) failed: {exc}")
                if stop_at_first_failure:
                    break
                with contextlib.suppress(ArmError):
                    arm.reconnect(timeout_s=reconnect_timeout_s)
            if progress and (i + 1) % 10 == 0:
                progress(f"{i + 1}/{n} cycles, {ok} reconnects, {len(failures)} failures")
        if arm.link_alive:                 # the last reconnect streams too
            with contextlib.suppress(ArmError, OSError, TimeoutError):
                before = _received(sim)
                sent = _stream(arm, stream_points, rate_hz)
                if _await_received(sim, before + sent) >= before + sent:
                    resumed += 1
    finally:
        with contextlib.suppress(Exception):
            arm.close()
        if own_sim:
            sim.terminate()
        sdk.SETTINGS.update(saved)
    after = sdk.status()
    deadline = time.monotonic() + 1.0        # retired fds close once the receive thread has moved on
    while sdk.status()["fds_pending_close"] and time.monotonic() < deadline:
        time.sleep(0.02)
    return {"fds_open_delta": _open_fds() - fds_before,"cycles": n, "how": how, "reconnects_ok": ok, "streaming_resumed": resumed, "failures": failures,
            "detect_ms": summary(detect_ms, digits=2), "reconnect_ms": summary(reconnect_ms, digits=1),
            "loss_reasons": dict(reasons),
            "sdk_receive_thread_deaths": after["reinitialisations"] - sdk_before["reinitialisations"]
            + (1 if after["receive_thread_alive"] is False else 0),
            "safe_release": bool(safe_release), "auto_reinitialise": bool(auto_reinitialise),
            "sdk": after, "elapsed_s": round(time.monotonic() - t_start, 2)}


def _tcp_state(arm):
    probe = arm._tcp
    if probe is None:
        return None
    try:
        return probe.getsockopt(6, 11, 8)[0]    # IPPROTO_TCP, TCP_INFO: tcpi_state
    except OSError as exc:
        return str(exc)


def _open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return -1


def _reason_kind(reason: str | None) -> str:
    if not reason:
        return "none"
    for key, kind in (("(FIN)", "fin"), ("(RST)", "rst"), ("no state push", "silence"),
                      ("receive thread", "sdk receive thread"), ("returned", "send failed")):
        if key in reason:
            return kind
    return reason[:60]


def kill_sdk_receive_thread(arm, timeout_s: float = 2.0) -> bool:
    """End the SDK's TCP receive thread the way the defect does: close a socket it watches behind the
    SDK's back, so its next ``select()`` fails with EBADF. Deterministic (the thread re-reads its fds
    every ≤ 200 ms); returns whether it died within ``timeout_s``. ``arm``: a connected
    :class:`~kinebridge.drivers.realman.arm.RealmanArm`. Test aid: afterwards no request is answered
    in this process until ``reconnect()`` restarts the SDK."""
    handle = arm._arm
    fd = sdk.socket_fd(handle)
    if fd is None or sdk.receive_thread_alive() is None:
        return False
    entry = sdk._slot(handle)
    os.close(fd)
    deadline = time.monotonic() + timeout_s
    while sdk.receive_thread_alive() and time.monotonic() < deadline:
        time.sleep(0.005)
    if entry is not None:          # the fd number may be reused: the SDK must not touch it again
        sock = ctypes.c_void_p.from_address(entry + sdk._SLOT_SOCKET).value
        if sock:
            ctypes.c_int.from_address(sock).value = -1
    return sdk.receive_thread_alive() is False


def _main() -> None:  # pragma: no cover - `python -m kinebridge.drivers.realman.faults N [how]`
    import json
    import sys

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    how = sys.argv[2] if len(sys.argv) > 2 else "alternate"
    flags = set(sys.argv[3:])
    r = run_reconnect_cycles(n, how, safe_release="--plain" not in flags,
                             auto_reinitialise="--no-recovery" not in flags,
                             wait_for_detection="--no-wait" not in flags, rt_priority=78 if "--rt" in flags else 0,
                             progress=lambda s: print(s, file=sys.stderr, flush=True))
    print(json.dumps(r, indent=1, default=str))


if __name__ == "__main__":  # pragma: no cover
    _main()
