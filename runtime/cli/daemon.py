"""``kinebridge run`` and ``keys``: the controller daemon and its keys (``replay`` is in :mod:`.recording`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kinebridge.runtime.cli.args import floats as _floats


def add_run(sub):
    ru = sub.add_parser(
        "run", help="the controller daemon; without --config one pouring task on the simulated arm",
        description=("Start kinebridge's runtime under its supervisor: the control node (fixed-rate loop streaming "
                     "joint setpoints through RealMan's SDK), the trajectory node (LFE-KMP skill generalisation + "
                     "RM75 IK → timestamped chunks) and the recorder (every bus topic to MCAP). Without --config the "
                     "embedded default runs: the simulated RealMan controller is started, the bundled pouring skill "
                     "is generalised to the cup at --goal, executed at control rate, and a summary (tracking error, "
                     "loop period error, starved ticks, stage latencies) is printed and saved as summary.json in the "
                     "run directory. --serve keeps the runtime up until SIGTERM/Ctrl-C (the systemd unit uses it), "
                     "taking tasks from the bus. --config FILE selects the arm and every setting (TOML; "
                     "--print-config shows the default with every table)."),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ru.add_argument("--config", type=Path, default=None, help="runtime TOML (default: the embedded simulated setup)")
    ru.add_argument("--print-config", action="store_true",
                    help="print the configuration (the embedded default, or --config's) with every table and key and exit")
    ru.add_argument("--goal", default="0.45,0.18,0.08,20",
                    help="the cup: x,y,z (m, robot base frame),yaw (deg)")
    ru.add_argument("--replan-goal", default=None,
                    help="a second cup x,y,z,yaw sent mid-motion (shows re-planning without a jump)")
    ru.add_argument("--replan-after", type=float, default=0.8, help="seconds after the first task to send --replan-goal")
    ru.add_argument("--rate", type=float, default=None, help="control rate in Hz (overrides control.rate_hz; ≤ 500)")
    ru.add_argument("--serve", action="store_true", help="stay up as a daemon until SIGTERM/Ctrl-C")
    ru.add_argument("--no-record", action="store_true", help="do not start the recorder")
    ru.add_argument("--timeout", type=float, default=30.0, help="give up on the task after this many seconds")
    ru.add_argument("--out", type=Path, default=Path("out/run"), help="parent of the run directory (logs, summary, recording)")
    ru.add_argument("--ipc-dir", default=None, help="directory of the bus sockets (overrides bus.ipc_dir)")
    ru.add_argument("--json", action="store_true", help="print the summary as JSON instead of a table")
    ru.add_argument("--policy", nargs="+", metavar=("POLICY", "DATASET"), default=None,
                    help="drive the arm from a policy's action tokens instead of the trajectory node: "
                         "`--policy replay-tokens DATASET` streams a Kine data set's tokens through the decoder node "
                         "([policy]; the run lasts --timeout, the simulated arm starts at the episode's start)")
    ru.add_argument("--instruction", default=None, metavar="TEXT",
                    help="run the whole pipeline on the simulated world instead of the one --goal task: world → camera "
                         "→ perception → planner → bridge → trajectory → control; the summary has the decision, each "
                         "sub-task's outcome and the world's pour score (in target, spilt, collisions, success); exit 0 "
                         "when every sub-task was done (whether the world calls the pour a success is in the summary)")
    ru.add_argument("--pipeline", action="store_true",
                    help="with --serve: run the pipeline --instruction runs (world, perception, planner, bridge on the "
                         "simulated world) as a daemon that takes instructions (`kinebridge task --instruction`)")
    ru.add_argument("--keypoints", choices=("auto", "perception", "world"), default="auto",
                    help="--instruction / --pipeline: where candidates and the target's keypoints come from (auto: "
                         "perception's when usable, else the world's ground truth)")
    ru.add_argument("--scene-seed", type=int, default=None, help="--instruction: the world's scene seed (world.seed)")
    ru.add_argument("--settle", type=float, default=2.0,
                    help="--instruction: seconds the water settles after the arm is at rest, before the world scores")
    ru.set_defaults(func=_run_run)


def _run_run(args) -> int:
    from kinebridge.runtime.daemon import run as run_mod

    if args.print_config:
        from kinebridge.runtime.config import load_config, render_toml
        cfg = load_config(str(args.config) if args.config else None)
        print(render_toml(cfg, "# kinebridge runtime configuration: every table and key, with its value and what it does.\n"
                               "# Start from this file: `kinebridge run --print-config > runtime.toml`, edit, "
                               "`kinebridge run --config runtime.toml`."), end="")
        return 0
    sys.stdout.reconfigure(line_buffering=True)      # one event per line, also when stdout is the journal
    if args.timeout <= 0:
        raise ValueError(f"--timeout must be positive, got {args.timeout}")
    opts = run_mod.RunOptions(
        config=str(args.config) if args.config else None, goal=_floats(args.goal, 4, "--goal"),
        replan_goal=_floats(args.replan_goal, 4, "--replan-goal") if args.replan_goal else None,
        replan_after_s=args.replan_after, serve=args.serve, out=str(args.out), timeout_s=args.timeout,
        rate_hz=args.rate, ipc_dir=args.ipc_dir, record=not args.no_record,
        policy=args.policy[0] if args.policy else None,
        policy_source=args.policy[1] if args.policy and len(args.policy) > 1 else None,
        instruction=args.instruction, keypoints=args.keypoints, scene_seed=args.scene_seed, settle_s=args.settle,
        pipeline=args.pipeline)
    if args.pipeline and not args.serve:
        raise ValueError("--pipeline serves the pipeline as a daemon: add --serve (or run one --instruction)")
    if args.instruction is not None and (args.serve or args.policy):
        raise ValueError("--instruction runs one instruction; with --serve send it with `kinebridge task --instruction`"
                         if args.serve else "--instruction and --policy are two ways to drive the arm: choose one")
    if args.policy and len(args.policy) > 2:
        raise ValueError(f"--policy takes POLICY [DATASET], got {args.policy}")
    log = (lambda text: print(text, file=sys.stderr)) if args.json else print
    summary = run_mod.run(opts, log=log)
    if args.policy and not args.serve:             # a policy run completes when its policy node is done
        summary["completed"] = any(n.get("kind") == "policy" and n.get("status") == "done"
                                   for n in (summary.get("nodes") or {}).values())
    if args.json:
        import json
        print(json.dumps(summary, indent=2, default=str))
    else:
        run_mod.print_summary(summary)
    if summary.get("failed"):
        print(f"kinebridge: error: {summary['failed']}", file=sys.stderr)
        return 1
    if args.instruction is not None and not summary.get("completed"):
        inst = summary.get("instruction") or {}
        print(f"kinebridge: error: the instruction did not complete ({inst.get('error') or summary.get('interrupted')})",
              file=sys.stderr)
        return 1
    if not args.serve and not summary.get("completed"):
        errs = [t.get("error") for t in summary.get("tasks", []) if t.get("error")]
        print(f"kinebridge: error: the task did not complete ({'; '.join(errs) or 'timeout'})", file=sys.stderr)
        return 1
    return 0


def add_keys(sub):
    ke = sub.add_parser(
        "keys", help="CurveZMQ keys for runtime nodes on other machines",
        description=("Write a CurveZMQ keypair per node name into DIR (<name>.key public, <name>.key_secret private, "
                     "mode 0600). Set bus.curve_keys = DIR in the runtime config on every machine and copy the public "
                     "keys of the peers there: a node then accepts only peers whose public key is in DIR, and every "
                     "tcp:// endpoint off loopback is encrypted and authenticated. kinebridge refuses remote "
                     "endpoints without keys."),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ke.add_argument("--dir", required=True, type=Path, help="key directory")
    ke.add_argument("names", nargs="+", help="node names (control, trajectory, recorder, supervisor, ...)")
    ke.set_defaults(func=_run_keys)


def _run_keys(args) -> int:
    from kinebridge.runtime.bus.sockets import write_keys

    for f in write_keys(str(args.dir), args.names):
        print(f)
    return 0
