"""What the host gives any real-time thread: a bare process pacing itself the way the control node does.

    python -m kinebridge.bench.host_wakeup --rate 500 --seconds 20 [--priority 80] [--json]

The process takes the control node's real-time treatment (:func:`~kinebridge.drivers.host.realtime.
configure_realtime`: SCHED_FIFO, locked memory, 1 ns timer slack, PM-QoS) and runs the same
:class:`~kinebridge.drivers.host.realtime.CycleTimer` with nothing else to do — no Python threads, no
bus, no SDK — and reports its wake-up errors. ``kinebridge bench runtime`` runs it beside every
control-loop condition as the baseline: a control node whose period error matches it is as good as
the host allows; the gap between the two is kinebridge's.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from kinebridge.kernels.stats import summary

__all__ = ["measure", "measure_in_child", "main"]


def measure(rate_hz: float, seconds: float, priority: int = 80) -> dict:
    """Run the bare loop in this process for ``seconds``; the wake-up errors (µs) and what was granted."""
    from kinebridge.drivers.host.realtime import CycleTimer, configure_realtime

    if seconds <= 0:
        raise ValueError(f"seconds must be positive, got {seconds}")
    rep = configure_realtime(priority=priority, cpu_dma_latency_us=0)
    n = max(1, int(round(rate_hz * seconds)))
    timer = CycleTimer(rate_hz, history=n)
    timer.start()
    for _ in range(n):
        timer.wait()
    late = timer.recent_lateness_us()
    return {"rate_hz": rate_hz, "seconds": seconds, "granted": rep.summary(),
            "period_error_us": summary(late, digits=1), "misses_over_1ms": int((late > 1000).sum()),
            "overruns": int(timer.overruns)}


def measure_in_child(rate_hz: float, seconds: float, priority: int = 80, timeout_s: float | None = None) -> dict:
    """:func:`measure` in a fresh process (the benchmark's own threads stay out of it)."""
    cmd = [sys.executable, "-m", "kinebridge.bench.host_wakeup", "--rate", str(rate_hz), "--seconds", str(seconds),
           "--priority", str(priority), "--json"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s or seconds * 3 + 30)
    if p.returncode != 0:
        raise RuntimeError(f"host wake-up probe failed (exit {p.returncode}): {p.stderr.strip()[-500:]}")
    return json.loads(p.stdout)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kinebridge.bench.host_wakeup", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--rate", type=float, default=500.0, help="loop rate in Hz")
    ap.add_argument("--seconds", type=float, default=20.0, help="how long to measure")
    ap.add_argument("--priority", type=int, default=80, help="SCHED_FIFO priority (0 = normal scheduling)")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    a = ap.parse_args(argv)
    r = measure(a.rate, a.seconds, a.priority)
    if a.json:
        print(json.dumps(r))
    else:
        pe = r["period_error_us"]
        print(f"{a.rate:g} Hz for {a.seconds:g} s ({r['granted']}): period error p50 {pe['p50']} µs, p99 {pe['p99']} µs, "
              f"max {pe['max']} µs, {r['misses_over_1ms']} ticks late by > 1 ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
