"""The ``kinebridge`` command line.

    kinebridge eval lasa     LASA shape-preservation evaluation (KMP, TP-GMM, LFE-KMP)
    kinebridge bench kernels Numba kernels against their NumPy references
    kinebridge bench golden  parity with the original KMP code's outputs
    kinebridge bench arm     RM75 kinematics vs the SDK; SDK streaming into the simulated controller
    kinebridge sim           simulated RealMan RM75 controller (JSON/TCP + UDP push, SDK-compatible)
    kinebridge run           the controller daemon (default: one pouring task on the simulated arm)
    kinebridge replay        play an MCAP recording back into the bus (--info: what it holds; --recover: repair a cut one)
    kinebridge plot          figure of a recording: joints commanded vs measured, tracking error, loop timing
    kinebridge keys          CurveZMQ keys for nodes on other machines
    kinebridge task          a task to a running daemon (--wait: until it ends)
    kinebridge status        a running daemon's health (exit 0 only when healthy)
    kinebridge stop|estop|clear   hold the arm, e-stop it (latched), acknowledge and resume

Subcommands import their modules lazily, so ``kinebridge --help`` is instant and a missing optional
dependency only matters for the subcommand that needs it.
"""

from __future__ import annotations

import argparse
import sys

from kinebridge.runtime.cli import daemon, evaluate, operate, perception, recording, setup, sim


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kinebridge",
        description="kinebridge: VLM-directed, KMP-precise control of a RealMan RM75 arm. "
                    "Run a subcommand with --help for its options.")
    sub = p.add_subparsers(dest="command", required=True, metavar="{run,task,status,stop,estop,clear,eval,bench,sim,replay,plot,keys}")
    daemon.add_run(sub)
    evaluate.add_eval(sub)
    evaluate.add_bench(sub)
    sim.add_sim(sub)
    recording.add_replay(sub)
    recording.add_plot(sub)
    daemon.add_keys(sub)
    operate.add(sub)
    setup.add(sub)
    perception.add(sub)
    __import__("kinebridge.runtime.cli.planner", fromlist=["add"]).add(sub)
    __import__("kinebridge.runtime.cli.world", fromlist=["add"]).add(sub)
    __import__("kinebridge.runtime.cli.skill", fromlist=["add"]).add(sub)
    __import__("kinebridge.runtime.cli.tokenizer", fromlist=["add"]).add(sub)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ValueError as exc:  # bad input named by the kernels: one clear line, no traceback
        print(f"kinebridge: error: {exc}", file=sys.stderr)
        return 2
    except (RuntimeError, TimeoutError) as exc:  # a process that would not start: its reason, no traceback
        print(f"kinebridge: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
