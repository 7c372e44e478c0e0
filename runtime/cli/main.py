"""The ``kinebridge`` command line.

    kinebridge eval lasa     LASA shape-preservation evaluation (KMP, TP-GMM, LFE-KMP)
    kinebridge bench kernels Numba kernels against their NumPy references
    kinebridge bench golden  parity with the original KMP code's outputs
    kinebridge bench arm     RM75 kinematics vs the SDK; SDK streaming into the simulated controller
    kinebridge sim           simulated RealMan RM75 controller (JSON/TCP + UDP push, SDK-compatible)
    kinebridge run           the controller daemon (default: one pouring task on the simulated arm)
    kinebridge replay        play an MCAP recording back into the bus (or --info: what it holds)
    kinebridge keys          CurveZMQ keys for nodes on other machines

Subcommands import their modules lazily, so ``kinebridge --help`` is instant and a missing optional
dependency only matters for the subcommand that needs it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _add_eval(sub):
    ev = sub.add_parser("eval", help="accuracy evaluations", description="Accuracy evaluations.")
    ev_sub = ev.add_subparsers(dest="what", required=True, metavar="{lasa}")
    la = ev_sub.add_parser(
        "lasa", help="shape preservation on the LASA handwriting dataset (VL-MP Table II)",
        description=(
            "Generalise every LASA shape to perturbed start/end task parameters with KMP, TP-GMM, TP-GMR and "
            "LFE-KMP, score each path against the oracle similarity transform (c_s, κ_s, endpoint errors, RMSE, "
            "DTW, Fréchet, swept area) and write lasa_eval.json plus figures. The protocol is deterministic; see "
            "docs/benchmarks.md."),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    la.add_argument("--shapes", default="GShape,all",
                    help="comma-separated LASA shape names; 'all' adds every shape (30) after the named ones")
    la.add_argument("--random-cases", type=int, default=10, help="seeded random start/end perturbations per shape")
    la.add_argument("--seed", type=int, default=0, help="seed of the random perturbations")
    la.add_argument("--points", type=int, default=200, help="samples per demonstration after resampling")
    la.add_argument("--components", type=int, default=8, help="GMM components")
    la.add_argument("--methods", default="kmp,tp-gmm,tp-gmr,lfe-kmp,lfe-kmp-gmr,lfe-kmp-both",
                    help="comma-separated methods to compare")
    la.add_argument("--kernel", choices=("analytic", "fd"), default="analytic",
                    help="KMP kernel: exact derivatives or the original code's finite differences")
    la.add_argument("--no-tune", action="store_true",
                    help="use the original KMP settings h=6, λ=1 instead of held-out-RMSE tuning")
    la.add_argument("--out", type=Path, default=Path("out/lasa"), help="output directory")
    la.add_argument("--no-plot", action="store_true", help="skip the figures")
    la.set_defaults(func=_run_eval_lasa)


def _add_bench(sub):
    be = sub.add_parser("bench", help="latency benchmarks", description="Latency benchmarks.")
    be_sub = be.add_subparsers(dest="what", required=True, metavar="{kernels,golden,arm,runtime}")
    ke = be_sub.add_parser(
        "kernels", help="Numba kernels vs their NumPy references",
        description=("Time every trajectory kernel (GMR, EM, TP-GMM, KMP fit / via-point update / prediction, "
                     "LFE-KMP generalisation, metrics) against its NumPy reference in the same run: median, p95 "
                     "and the ratio. JIT compile time and cached-load time are measured separately in fresh "
                     "subprocesses. Writes JSON."),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ke.add_argument("--repeats", type=int, default=30, help="timed repetitions per kernel")
    ke.add_argument("--quick", action="store_true", help="few repetitions, no JIT subprocesses (for tests)")
    ke.add_argument("--out", type=Path, default=Path("out/bench/kernels.json"), help="JSON output path")
    ke.set_defaults(func=_run_bench_kernels)
    go = be_sub.add_parser(
        "golden", help="parity with the original KMP code's outputs (letter G)",
        description=("Rerun robInfLib's letter-G pipeline (time-based init, EM, GMR, KMP demos 1 and 2 with "
                     "via-points) with kinebridge's kernels in finite-difference mode and print the largest "
                     "differences from the outputs the original code produced under Octave."),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    go.add_argument("--data", type=Path, default=Path("../shared/data"),
                    help="folder holding golden_kmp_letterG.npz")
    go.add_argument("--out", type=Path, default=Path("out/bench/golden.json"), help="JSON output path")
    go.set_defaults(func=_run_bench_golden)
    ar = be_sub.add_parser(
        "arm", help="RM75 FK/IK against the SDK, and pass-through streaming into the simulated controller",
        description=("Time kinebridge's RM75 forward and inverse kinematics against RealMan's own algorithm library "
                     "(the official SDK, same run; accuracy and success rates too), then start `kinebridge sim` as a "
                     "separate process and stream a smooth joint sweep through the official SDK (movej_canfd, high "
                     "follow) at each rate: setpoints sent vs received with an order-sensitive checksum, send → "
                     "controller and command → push latency, tracking error, push period error, streaming-loop tick "
                     "error. Writes JSON."),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ar.add_argument("--rates", default="100,200,500", help="comma-separated streaming rates in Hz (≤ 500)")
    ar.add_argument("--seconds", type=float, default=5.0, help="streaming time per rate")
    ar.add_argument("--ik-n", type=int, default=2000, help="random targets / configurations for the kinematics part")
    ar.add_argument("--quick", action="store_true", help="small kinematics run (for tests)")
    ar.add_argument("--out", type=Path, default=Path("out/bench/arm.json"), help="JSON output path")
    ar.set_defaults(func=_run_bench_arm)
    rt = be_sub.add_parser(
        "runtime", help="the runtime's latencies: codec, bus hop, control-loop period error, chunk → setpoint, "
                        "task → setpoint, restart, cold start",
        description=("Measure kinebridge's runtime on real processes: codec cost against pickle, one-way bus hop "
                     "between two processes against raw pyzmq, the control node's period error at each rate idle "
                     "(alone with the simulated controller) and loaded (trajectory node planning pour after pour, "
                     "recorder writing every topic), chunk → first setpoint and task → first setpoint latency, the "
                     "recorder's restart after SIGKILL, and cold start to streaming. Writes JSON and a histogram "
                     "plot."),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    rt.add_argument("--rates", default="200,500", help="comma-separated control rates in Hz (≤ 500)")
    rt.add_argument("--seconds", type=float, default=60.0, help="seconds per control-loop condition (the targets are stated over 60 s)")
    rt.add_argument("--quick", action="store_true", help="small run (for tests)")
    rt.add_argument("--no-plot", action="store_true", help="skip the histogram")
    rt.add_argument("--out", type=Path, default=Path("out/bench/runtime.json"), help="JSON output path")
    rt.set_defaults(func=_run_bench_runtime)


def _run_eval_lasa(args) -> int:
    from kinebridge.bench import lasa_eval, lasa_protocol

    names = [s.strip() for s in args.shapes.split(",") if s.strip()]
    shapes = []
    for n in names:
        for s in (lasa_protocol.shape_names() if n == "all" else [n]):
            if s not in shapes:
                shapes.append(s)
    cfg = lasa_eval.EvalConfig(shapes=shapes, n_random=args.random_cases, seed=args.seed, n_points=args.points,
                               n_components=args.components, tune=not args.no_tune, kernel=args.kernel,
                               methods=tuple(m.strip() for m in args.methods.split(",") if m.strip()))
    for m in cfg.methods:
        if m not in lasa_eval.METHODS:
            raise SystemExit(f"--methods: unknown method {m!r}; choose from {', '.join(lasa_eval.METHODS)}")
    for s in shapes:
        if s not in lasa_protocol.shape_names():
            raise SystemExit(f"--shapes: unknown LASA shape {s!r}; choose from {', '.join(lasa_protocol.shape_names())}")
    result = lasa_eval.run(cfg, args.out, plot=not args.no_plot)
    lasa_eval.print_report(result)
    print(f"wrote {args.out / 'lasa_eval.json'}", file=sys.stderr)
    return 0


def _run_bench_kernels(args) -> int:
    from kinebridge.bench import kernels_bench

    kernels_bench.main(repeats=args.repeats, quick=args.quick, out=args.out)
    return 0


def _run_bench_golden(args) -> int:
    from kinebridge.bench import golden

    golden.main(args.data, args.out)
    return 0


def _run_bench_arm(args) -> int:
    from kinebridge.bench import arm_bench

    try:
        rates = tuple(float(r) for r in args.rates.split(",") if r.strip())
    except ValueError:
        raise ValueError(f"--rates: expected comma-separated numbers in Hz, got {args.rates!r}") from None
    if not rates or any(not 1.0 <= r <= 500.0 for r in rates):
        raise ValueError(f"--rates: every rate must be within 1..500 Hz (the controller's fastest period is 2 ms), "
                         f"got {args.rates!r}")
    if args.seconds <= 0:
        raise ValueError(f"--seconds must be positive, got {args.seconds}")
    result = arm_bench.run(rates, args.seconds, ik_n=args.ik_n, quick=args.quick, out=args.out)
    arm_bench.print_report(result)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


def _run_bench_runtime(args) -> int:
    from kinebridge.bench import runtime_bench

    try:
        rates = tuple(float(r) for r in args.rates.split(",") if r.strip())
    except ValueError:
        raise ValueError(f"--rates: expected comma-separated numbers in Hz, got {args.rates!r}") from None
    if not rates or any(not 10.0 <= r <= 500.0 for r in rates):
        raise ValueError(f"--rates: every rate must be within 10..500 Hz, got {args.rates!r}")
    if args.seconds <= 0:
        raise ValueError(f"--seconds must be positive, got {args.seconds}")
    result = runtime_bench.run(rates, args.seconds, out=args.out, quick=args.quick, plot=not args.no_plot)
    runtime_bench.print_report(result)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


def _add_sim(sub):
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
                     "kinebridge.drivers.sim_controller for the details and the kinebridge_sim_stats command."),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    si.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 for every interface)")
    si.add_argument("--port", type=int, default=8080, help="TCP port of the JSON protocol; 0 picks a free one")
    si.add_argument("--push-port", type=int, default=8089,
                    help="UDP port the state push goes to until a client configures one; 0 picks a free one")
    si.add_argument("--cycle", type=int, default=1, help="initial push period in units of 5 ms (1…100)")
    si.add_argument("--model", choices=("RM75-B", "RM75-6F"), default="RM75-B",
                    help="arm variant (sets the flange length and the reported product version)")
    si.add_argument("--gen", type=int, choices=(3, 4), default=3, help="controller generation the software info reports")
    si.add_argument("--log", action="store_true", help="print a wire transcript (RX/TX with times) to stderr")
    si.add_argument("--rt-priority", type=int, default=10,
                    help="SCHED_FIFO priority of the push thread where the OS permits it (else normal scheduling); "
                         "0 = never")
    si.set_defaults(func=_run_sim)


def _run_sim(args) -> int:
    from kinebridge.drivers import sim_controller

    return sim_controller.serve(args)


def _floats(text: str, n: int, name: str) -> tuple:
    try:
        v = tuple(float(x) for x in text.split(","))
    except ValueError:
        raise ValueError(f"{name}: expected {n} comma-separated numbers, got {text!r}") from None
    if len(v) != n:
        raise ValueError(f"{name}: expected {n} comma-separated numbers, got {len(v)} in {text!r}")
    return v


def _add_run(sub):
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
    ru.add_argument("--print-config", action="store_true", help="print the embedded default config and exit")
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
    ru.set_defaults(func=_run_run)


def _run_run(args) -> int:
    from kinebridge.runtime import run as run_mod
    from kinebridge.runtime.config import DEFAULT_TOML

    if args.print_config:
        print(DEFAULT_TOML)
        return 0
    if args.timeout <= 0:
        raise ValueError(f"--timeout must be positive, got {args.timeout}")
    opts = run_mod.RunOptions(
        config=str(args.config) if args.config else None, goal=_floats(args.goal, 4, "--goal"),
        replan_goal=_floats(args.replan_goal, 4, "--replan-goal") if args.replan_goal else None,
        replan_after_s=args.replan_after, serve=args.serve, out=str(args.out), timeout_s=args.timeout,
        rate_hz=args.rate, ipc_dir=args.ipc_dir, record=not args.no_record)
    log = (lambda text: print(text, file=sys.stderr)) if args.json else print
    summary = run_mod.run(opts, log=log)
    if args.json:
        import json
        print(json.dumps(summary, indent=2, default=str))
    else:
        run_mod.print_summary(summary)
    if summary.get("failed"):
        print(f"kinebridge: error: {summary['failed']}", file=sys.stderr)
        return 1
    if not args.serve and not summary.get("completed"):
        errs = [t.get("error") for t in summary.get("tasks", []) if t.get("error")]
        print(f"kinebridge: error: the task did not complete ({'; '.join(errs) or 'timeout'})", file=sys.stderr)
        return 1
    return 0


def _add_replay(sub):
    rp = sub.add_parser(
        "replay", help="play an MCAP recording back into the bus, or show what it holds",
        description=("Publish every message of a kinebridge recording (.mcap, as the recorder writes it; a file cut "
                     "short by a crash works too) on the bus with its original timing, so nodes under test receive "
                     "what they received on the robot. The replayed headers carry replayed=true and the original "
                     "stamp in `derived`. --info prints per-topic counts, rates and sequence gaps instead."),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    rp.add_argument("recording", type=Path, help="the .mcap file")
    rp.add_argument("--info", action="store_true", help="summarise the recording and exit")
    rp.add_argument("--speed", type=float, default=1.0, help="playback speed (0 = as fast as possible)")
    rp.add_argument("--topics", default=None, help="comma-separated topics to replay (default: all)")
    rp.add_argument("--endpoint", default=None,
                    help="where to publish (default: the endpoint of node --as in --config, else "
                         "ipc://<default bus dir>/replay.sock)")
    rp.add_argument("--config", type=Path, default=None, help="runtime TOML whose endpoints to use")
    rp.add_argument("--as", dest="as_node", default="replay",
                    help="publish as this node (its endpoint from --config), e.g. trajectory to feed a control node")
    rp.add_argument("--loop", action="store_true", help="start again at the end until Ctrl-C")
    rp.set_defaults(func=_run_replay)


def _run_replay(args) -> int:
    import json

    from kinebridge.runtime import recorder

    if not args.recording.is_file():
        raise ValueError(f"{args.recording}: no such recording")
    if args.info:
        print(json.dumps(recorder.summarize(args.recording), indent=2, default=str))
        return 0
    if args.speed < 0:
        raise ValueError(f"--speed must be ≥ 0, got {args.speed}")
    from kinebridge.runtime.bus import Publisher
    from kinebridge.runtime.config import load_config

    endpoint = args.endpoint
    if endpoint is None:
        endpoint = load_config(args.config).endpoint(args.as_node)
    topics = [t.strip() for t in args.topics.split(",")] if args.topics else None
    pub = Publisher(endpoint, args.as_node)
    try:
        import time
        time.sleep(0.3)  # let subscribers connect before the first message
        res = recorder.replay(args.recording, pub, speed=args.speed, topics=topics, loop=args.loop)
    finally:
        pub.close()
    print(json.dumps(res, indent=2, default=str))
    return 0


def _add_keys(sub):
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
    from kinebridge.runtime.bus import write_keys

    for f in write_keys(str(args.dir), args.names):
        print(f)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kinebridge",
        description="kinebridge: VLM-directed, KMP-precise control of a RealMan RM75 arm. "
                    "Run a subcommand with --help for its options.")
    sub = p.add_subparsers(dest="command", required=True, metavar="{run,eval,bench,sim,replay,keys}")
    _add_run(sub)
    _add_eval(sub)
    _add_bench(sub)
    _add_sim(sub)
    _add_replay(sub)
    _add_keys(sub)
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
