"""The simulated RealMan controller's options, defined once for ``kinebridge sim`` and
``python -m kinebridge.drivers.realman.sim.controller`` (argparse only: building the CLI stays cheap)."""

from __future__ import annotations

import argparse

__all__ = ["add_arguments", "READY_DEG", "MODEL_NAMES"]

MODEL_NAMES = ("RM75-6F", "RM75-B")   # kinebridge.drivers.arm.model.ARM_MODELS (a test keeps them equal)
#: where the simulated arm starts unless told otherwise: above the table in front of the base, tool
#: pointing down (flange at 0.36, -0.15, 0.17 m on the RM75-B), elbow and wrist well away from singularities
READY_DEG = (-38.36, 54.94, 34.24, 63.56, -29.45, 69.5, -185.82)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The simulator's options (shared with ``kinebridge sim``)."""
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 for every interface)")
    p.add_argument("--port", type=int, default=8080, help="TCP port of the JSON protocol; 0 picks a free one")
    p.add_argument("--push-port", type=int, default=8089,
                   help="UDP port the state push goes to until a client configures one; 0 picks a free one")
    p.add_argument("--cycle", type=int, default=1, help="initial push period in units of 5 ms (1…100)")
    p.add_argument("--model", choices=MODEL_NAMES, default="RM75-B", help="arm variant (sets the flange length d7)")
    p.add_argument("--gen", type=int, choices=(3, 4), default=3, help="controller generation of the software-info reply")
    p.add_argument("--log", action="store_true", help="print a wire transcript (RX/TX with times) to stderr")
    p.add_argument("--exit-with-stdin", action="store_true",
                   help="shut down when stdin reaches EOF (spawn_sim uses it so the simulator never outlives "
                        "the process that started it)")
    p.add_argument("--initial-joints", default=",".join(f"{v:g}" for v in READY_DEG), metavar="DEG,...",
                   help="joint angles the arm starts at, 7 comma-separated degrees (default: a ready pose above "
                        "the table, tool pointing down, away from singularities)")
    p.add_argument("--joint-speed-scale", type=float, default=1.0,
                   help="report and enforce joint speed limits this fraction of the model's (a controller "
                        "configured with slower joints)")
    p.add_argument("--rt-priority", type=int, default=10,
                   help="run the push thread under SCHED_FIFO at this priority (1…99) where the OS permits it "
                        "(else normal scheduling, reported as push.sched_fifo in the stats); 0 = never")
