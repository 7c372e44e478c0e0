"""``kinebridge eval`` and ``kinebridge bench``: accuracy evaluations and latency benchmarks."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kinebridge.runtime.cli.args import rates_hz
from kinebridge.runtime.cli.groups import group


def add_eval(sub):
    ev_sub = group(sub, "eval", "accuracy evaluations")
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
    __import__("kinebridge.runtime.cli.skill", fromlist=["add_eval_pour"]).add_eval_pour(ev_sub)


def add_bench(sub):
    be = sub.add_parser("bench", help="latency benchmarks", description="Latency benchmarks.")
    be_sub = be.add_subparsers(dest="what", required=True, metavar="{kernels,golden,arm,runtime,faults,...}")
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
    __import__("kinebridge.runtime.cli.world", fromlist=["add_bench_camera"]).add_bench_camera(be_sub)
    __import__("kinebridge.runtime.cli.perception", fromlist=["add_bench"]).add_bench(be_sub)
    fa = be_sub.add_parser(
        "faults", help="the daemon against bad input and faults: fuzzing, kill -9 of the supervisor, a second "
                       "instance, task latency through the ingress",
        description=("Drive generated messages (random frames and msgpack, plausible-but-wrong chunks, tasks, heartbeats, "
                     "commands) into a live control node and supervisor, count crashes (0), setpoints outside the limits "
                     "(0) and drops by reason; SIGKILL a serving daemon mid-motion (arm at rest, no orphans); start a "
                     "second instance (refused); time tasks through the ingress to their first setpoint. Writes JSON."),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    fa.add_argument("--fuzz", type=int, default=100_000, help="fuzz messages")
    fa.add_argument("--tasks", type=int, default=20, help="tasks timed through the ingress")
    fa.add_argument("--quick", action="store_true", help="small run (for tests)")
    fa.add_argument("--latency-only", action="store_true",
                    help="only the latencies through the ingress: tasks, and instructions (LocalPlanner → bridge → "
                         "trajectory → control: instruction → first setpoint)")
    fa.add_argument("--out", type=Path, default=Path("out/bench/faults.json"), help="JSON output path")
    fa.set_defaults(func=_run_bench_faults)


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


def _run_bench_faults(args) -> int:
    from kinebridge.bench import faults

    r = faults.run(args.fuzz, args.tasks, args.out, args.quick, args.latency_only)
    faults.print_report(r)
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
