"""``kinebridge replay`` and ``kinebridge plot``: recordings back onto the bus, repaired, or drawn."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_replay(sub):
    rp = sub.add_parser(
        "replay", help="play an MCAP recording back into the bus, show what it holds, or repair a cut one",
        description=("Publish every message of a kinebridge recording (.mcap, as the recorder writes it; a file cut "
                     "short by a crash works too) on the bus with its original timing, so nodes under test receive "
                     "what they received on the robot. The replayed headers carry replayed=true and the original "
                     "stamp in `derived`. --info prints per-topic counts, rates and sequence gaps instead. "
                     "--recover rewrites a file cut short by a crash (no summary or index: Foxglove and the "
                     "standard MCAP readers cannot seek in it) into a complete indexed file, --out or "
                     "<name>-recovered.mcap beside it; the cut file is left as it is."),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    rp.add_argument("recording", type=Path, help="the .mcap file")
    rp.add_argument("--info", action="store_true", help="summarise the recording and exit")
    rp.add_argument("--recover", action="store_true",
                    help="rewrite the recording into a complete, indexed file and exit")
    rp.add_argument("--out", type=Path, default=None,
                    help="with --recover: the file to write (default: <name>-recovered.mcap beside it)")
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

    from kinebridge.runtime.recording import reader

    if not args.recording.is_file():
        raise ValueError(f"{args.recording}: no such recording")
    if args.out is not None and not args.recover:
        raise ValueError("--out goes with --recover")
    if args.info and args.recover:
        raise ValueError("--info and --recover: one at a time")
    if args.info:
        print(json.dumps(reader.summarize(args.recording), indent=2, default=str))
        return 0
    if args.recover:
        print(json.dumps(reader.recover(args.recording, args.out), indent=2, default=str))
        return 0
    if args.speed < 0:
        raise ValueError(f"--speed must be ≥ 0, got {args.speed}")
    from kinebridge.runtime.bus.sockets import Publisher
    from kinebridge.runtime.config import load_config
    from kinebridge.runtime.recording.replay import replay

    endpoint = args.endpoint
    if endpoint is None:
        endpoint = load_config(args.config).endpoint(args.as_node)
    topics = [t.strip() for t in args.topics.split(",")] if args.topics else None
    pub = Publisher(endpoint, args.as_node)
    try:
        import time
        time.sleep(0.3)  # let subscribers connect before the first message
        res = replay(args.recording, pub, speed=args.speed, topics=topics, loop=args.loop)
    finally:
        pub.close()
    print(json.dumps(res, indent=2, default=str))
    return 0


def add_plot(sub):
    pl = sub.add_parser(
        "plot", help="figure of a run: commanded vs measured joints, tracking error, loop timing, chunk latency",
        description=("Draw a kinebridge recording (.mcap; a file cut short by a crash works too) as one PNG: "
                     "commanded and measured joints (control/state q_cmd, q), the tracking error per joint, the "
                     "control loop's period error (control/timing lateness) and the chunk → first setpoint "
                     "latency (control/chunk_latency), over time. Needs matplotlib (the eval extra)."),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    pl.add_argument("recording", type=Path, help="the .mcap file")
    pl.add_argument("--out", type=Path, default=None, help="the PNG to write (default: <recording>.png beside it)")
    pl.set_defaults(func=_run_plot)


def _run_plot(args) -> int:
    from kinebridge.runtime.recording.plot import plot_recording

    out = plot_recording(args.recording, args.out)
    print(out)
    return 0
