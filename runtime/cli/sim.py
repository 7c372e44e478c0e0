"""``kinebridge sim``: the simulated RealMan controller in the foreground."""

from __future__ import annotations

import argparse

from kinebridge.drivers.realman.sim.options import add_arguments


def add_sim(sub):
    si = sub.add_parser(
        "sim", help="simulated RealMan RM75 controller (no hardware needed)",
        description=("Run a simulated RealMan RM75 controller until Ctrl-C / SIGTERM. It speaks the controller's "
                     "JSON/TCP protocol and UDP state push exactly as RealMan's official SDK 1.1.6 expects, so the "
                     "unmodified SDK (and kinebridge's RealMan driver) connects to it: connect handshake, state "
                     "queries, movej/movel/movej_p with completion messages, movej_canfd/movep_canfd pass-through "
                     "(high and low follow, overspeed and joint-limit faults), stop/pause/continue, power, gripper. "
                     "The push goes every CYCLE x 5 ms to the address set with set_realtime_push, else to each "
                     "connected client's host at --push-port. Prints one JSON 'ready' line with the ports on "
                     "stdout once it accepts connections (port 0 picks a free port). See "
                     "kinebridge.drivers.realman.sim.controller for the details and the kinebridge_sim_stats command."),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_arguments(si)
    si.set_defaults(func=_run_sim)


def _run_sim(args) -> int:
    from kinebridge.drivers.realman.sim import controller as sim_controller

    return sim_controller.serve(args)
