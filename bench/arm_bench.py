"""``kinebridge bench arm``: kinematics against RealMan's own algorithm library, and pass-through
streaming through the official SDK into the simulated controller.

Streaming part, per rate (100/200/500 Hz by default): a smooth joint sweep is streamed with
``rm_movej_canfd`` (high follow) by :class:`~kinebridge.drivers.realman.arm.RealmanArm`; the
simulator runs as a separate process. Reported:

* setpoints sent vs received by the controller, and an order-sensitive checksum of their values
  computed on both sides (a dropped, duplicated or reordered setpoint changes it);
* send → controller arrival latency (both clocks are CLOCK_MONOTONIC on one machine);
* command → push latency: time until the state push first reports a setpoint;
* tracking error: pushed joints against the newest setpoint sent before the push;
* push period error as received by the driver, and as the simulator measured it when sending;
* the streaming loop's own tick error and the cost of one driver call.
"""

from __future__ import annotations

import json
import platform
import socket
import time
from pathlib import Path

import numpy as np

from kinebridge.bench.arm_stream import sine_sweep, stream
from kinebridge.drivers.host.net import free_udp_port
from kinebridge.kernels.stats import summary

DEG = np.pi / 180


_pct = summary
_free_udp_port = free_udp_port


def wire_checksum(q_cmd_rad: np.ndarray) -> int:
    """The simulator's order-sensitive checksum over the integer wire values (0.001°) of the setpoints.

    SDK 1.1.6 stores each joint as a C float, multiplies by 1000 in double precision and truncates
    toward zero (found by matching checksums: float32 arithmetic or rounding disagree on ~1 point in
    a few hundred); mirror that so both sides sum the same integers."""
    from kinebridge.drivers.realman.sim.controller import passthrough_checksum

    deg32 = np.degrees(q_cmd_rad).astype(np.float32).astype(np.float64)
    wire = np.trunc(deg32 * 1000.0).astype(np.int64)
    return passthrough_checksum(wire)


def run_streaming(rates=(100.0, 200.0, 500.0), seconds: float = 5.0, progress=None) -> dict:
    from kinebridge.drivers.realman.arm import RealmanArm, RealmanConfig
    from kinebridge.drivers.realman.sim.controller import spawn_sim
    from kinebridge.kernels import rm75

    udp = _free_udp_port()
    out = {"seconds_per_rate": seconds, "rates": []}
    t_spawn = time.perf_counter()
    with spawn_sim(port=0, push_port=udp) as sim:
        out["sim_start_s"] = time.perf_counter() - t_spawn
        drv = RealmanArm(RealmanConfig(ip="127.0.0.1", port=sim.port, udp_port=udp))
        t0 = time.perf_counter()
        drv.connect()
        out["connect_s"] = time.perf_counter() - t0
        try:
            home = np.asarray(rm75.Q_HOME, dtype=float)
            drv.move_joints(home, speed_percent=50)
            amp = np.array([30, 20, 30, 20, 30, 20, 30], dtype=float) * DEG
            freq = 0.4  # peak joint speed π f A ≈ 38°/s
            for rate in rates:
                drv.move_joints(home, speed_percent=50)
                sim.reset_stats()
                rec = stream(drv, sine_sweep(home, amp, freq), rate, seconds)
                time.sleep(0.05)
                stats = sim.stats(arrivals=True)
                pt = stats["passthrough"]
                arrivals = np.asarray(stats.get("arrival_ns", []), dtype=np.int64)
                n = len(rec.send_ns)
                m = min(n, len(arrivals))
                sent_cs = wire_checksum(rec.q_cmd)
                row = {
                    "rate_hz": rate,
                    "sent": n,
                    "received": int(pt["received"]),
                    "accepted": int(pt["accepted"]),
                    "dropped": int(n - pt["received"]),
                    "checksum_match": int(pt["checksum"]) == sent_cs,
                    "stream_errors": rec.errors,
                    "send_to_arrival_ms": _pct((arrivals[-m:] - rec.send_ns[-m:]) / 1e6) if m else {"n": 0},
                    "command_to_push_ms": _pct(rec.command_to_push_latency_ms()),
                    "tracking_error_deg": _pct(np.degrees(rec.tracking_error())),
                    "push_period_error_us_driver": _pct(rec.push_period_error_us(drv.config.push_period_s)),
                    "push_period_error_us_sim": stats.get("push", {}),
                    "tick_error_us": _pct(rec.tick_error_us),
                    "send_call_us": _pct(rec.send_call_us),
                }
                out["rates"].append(row)
                if progress:
                    progress(rate)
        finally:
            drv.close()
    return out


def run(rates=(100.0, 200.0, 500.0), seconds: float = 5.0, ik_n: int = 2000, quick: bool = False,
        out: Path | None = None) -> dict:
    from rich.progress import Progress

    from kinebridge.bench import kinematics_bench

    result = {"host": platform.node(), "python": platform.python_version(), "cpus": __import__("os").cpu_count()}
    with Progress(transient=True) as bar:
        task = bar.add_task("kinematics vs the SDK's algorithm library", total=1 + len(rates))
        result["kinematics"] = kinematics_bench.run(n=ik_n, quick=quick)
        bar.advance(task)
        bar.update(task, description="pass-through streaming into kinebridge sim")
        result["streaming"] = run_streaming(rates, seconds, progress=lambda r: bar.advance(task))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2, default=float))
    return result


def print_report(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    from kinebridge.bench import kinematics_bench

    kinematics_bench.print_report(result["kinematics"])
    s = result["streaming"]
    con = Console()
    con.print(f"simulator start {s['sim_start_s']:.2f} s, SDK connect + push set-up {s['connect_s'] * 1e3:.0f} ms")
    t = Table(title=f"pass-through streaming into kinebridge sim ({s['seconds_per_rate']:g} s per rate, high follow)")
    t.add_column("metric")
    for r in s["rates"]:
        t.add_column(f"{r['rate_hz']:.0f} Hz", justify="right")

    def fmt(d, keys=("p50", "p99", "max"), spec=".2f"):
        return " / ".join(format(d[k], spec) if k in d else "–" for k in keys)

    rows = [
        ("setpoints sent / received", lambda r: f"{r['sent']} / {r['received']}"),
        ("order checksum", lambda r: "match" if r["checksum_match"] else "MISMATCH"),
        ("send → controller ms p50/p99/max", lambda r: fmt(r["send_to_arrival_ms"], spec=".3f")),
        ("command → push ms p50/p99/max", lambda r: fmt(r["command_to_push_ms"])),
        ("tracking error ° p50/p99/max", lambda r: fmt(r["tracking_error_deg"], spec=".4f")),
        ("push period error µs p50/p99/max (driver)", lambda r: fmt(r["push_period_error_us_driver"], spec=".0f")),
        ("push period error µs p50/p99/max (sim)",
         lambda r: fmt(r["push_period_error_us_sim"].get("period_error_us", {}), spec=".0f")),
        ("stream tick error µs p50/p99/max", lambda r: fmt(r["tick_error_us"], spec=".0f")),
        ("driver send call µs p50/p99", lambda r: fmt(r["send_call_us"], ("p50", "p99"), ".0f")),
    ]
    for name, f in rows:
        t.add_row(name, *(f(r) for r in s["rates"]))
    con.print(t)
