"""The bus codec's cost per message, in one process: encode, decode and both, against pickle.

Two messages, the bus's common ones:

* ``chunk_50x7``: a typical header (``seq``, ``stamp_ns``, ``src``, ``t0``, ``dt``, ``derived``) and one
  50×7 float64 array (an action chunk);
* ``state_7``: the same header and two 7-float arrays (``q``, ``qd``: a joint state).

For each: :func:`~kinebridge.runtime.bus.codec.encode`, :func:`~kinebridge.runtime.bus.codec.decode` (of the
frames as the wire delivers them: ``bytes``) and ``decode(encode(...))``, against the baseline measured
in the same run: ``pickle.loads(pickle.dumps({**header, **arrays}, protocol=5))``.

Each figure is µs per message. A repeat times ``n`` messages in batches of ``batch``; ``p50`` is the
median over repeats of the per-message mean of each repeat, ``p99`` the 99th percentile of the per-batch
means (what an unlucky stretch of messages costs: scheduling, GC), ``min`` the best repeat. The garbage
collector stays on, as in the runtime.

    python -m kinebridge.bench.codec_bench [--n 20000] [--repeats 7] [--out out/bench/codec.json]
"""

from __future__ import annotations

import argparse
import json
import pickle
import platform
import time
from pathlib import Path

import numpy as np

from kinebridge.runtime.bus import messages as M

__all__ = ["run", "print_report", "main"]

HEADER = {"v": 1, "seq": 123, "stamp_ns": 1234567890123, "src": "trajectory", "t0": 12.5, "dt": 0.01,
          "derived": [{"src": "supervisor", "topic": M.Task.TOPIC, "seq": 4, "stamp_ns": 1234567}]}


def _cases() -> dict:
    rng = np.random.default_rng(0)
    return {"chunk_50x7": ("chunk/joints", dict(HEADER), {"q": rng.normal(size=(50, 7))}),
            "state_7": ("state/joints", dict(HEADER), {"q": rng.normal(size=7), "qd": rng.normal(size=7)})}


def _time(fn, n: int, repeats: int, batch: int) -> dict:
    """µs per message of ``fn()``: median and best over repeats, p99 over batches."""
    batch = max(1, min(batch, n))
    nb = max(1, n // batch)
    clock = time.perf_counter_ns
    for _ in range(min(n, 1000)):  # warm up (caches, per-thread packers, branch predictors)
        fn()
    per_repeat, per_batch = [], []
    for _ in range(repeats):
        total = 0
        for _ in range(nb):
            t0 = clock()
            for _ in range(batch):
                fn()
            dt = clock() - t0
            total += dt
            per_batch.append(dt / batch / 1e3)
        per_repeat.append(total / (nb * batch) / 1e3)
    return {"p50": float(np.median(per_repeat)), "p99": float(np.percentile(per_batch, 99)),
            "min": float(min(per_repeat)), "messages": nb * batch * repeats}


def run(n: int = 20000, repeats: int = 7, batch: int = 100) -> dict:
    """Time the codec and the pickle baseline; µs per message (see the module docstring)."""
    import ormsgpack

    from kinebridge.runtime.bus.codec import decode, encode

    out: dict = {"n": n, "repeats": repeats, "batch": batch, "python": platform.python_version(),
                 "numpy": np.__version__, "ormsgpack": ormsgpack.__version__,
                 "machine": platform.machine(), "cases": {}}
    for name, (topic, header, arrays) in _cases().items():
        frames = [bytes(f) for f in encode(topic, header, arrays)]  # what the wire delivers
        msg = decode(frames)                                         # the bench measures a correct codec
        assert msg.header == header and all(np.array_equal(msg.arrays[k], a) for k, a in arrays.items())
        data = {**header, **arrays}
        res = {
            "encode": _time(lambda: encode(topic, header, arrays), n, repeats, batch),
            "decode": _time(lambda: decode(frames), n, repeats, batch),
            "encode_decode": _time(lambda: decode(encode(topic, header, arrays)), n, repeats, batch),
            "pickle5_dumps_loads": _time(lambda: pickle.loads(pickle.dumps(data, protocol=5)), n, repeats, batch),
            "bytes": {"frames": [len(f) for f in frames], "total": sum(len(f) for f in frames),
                      "pickle5": len(pickle.dumps(data, protocol=5))},
        }
        res["speedup_vs_pickle"] = res["pickle5_dumps_loads"]["p50"] / res["encode_decode"]["p50"]
        out["cases"][name] = res
    return out


def print_report(result: dict) -> None:
    """A plain-text table of :func:`run`'s result."""
    print(f"codec: µs per message, same process (n={result['n']} × {result['repeats']} repeats, "
          f"batches of {result['batch']}; python {result['python']}, numpy {result['numpy']}, "
          f"ormsgpack {result['ormsgpack']})")
    print(f"{'case':<12} {'what':<22} {'p50':>8} {'p99':>8} {'min':>8}")
    for name, c in result["cases"].items():
        for what in ("encode", "decode", "encode_decode", "pickle5_dumps_loads"):
            s = c[what]
            label = what if what != "pickle5_dumps_loads" else "pickle5 (baseline)"
            print(f"{name:<12} {label:<22} {s['p50']:8.2f} {s['p99']:8.2f} {s['min']:8.2f}")
        print(f"{name:<12} {'speedup vs pickle':<22} {c['speedup_vs_pickle']:8.1f}×   "
              f"({c['bytes']['total']} B on the wire, pickle {c['bytes']['pickle5']} B)")


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m kinebridge.bench.codec_bench", description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=20000, help="messages per repeat (default 20000)")
    ap.add_argument("--repeats", type=int, default=7, help="repeats (default 7)")
    ap.add_argument("--batch", type=int, default=100, help="messages per timed batch, for p99 (default 100)")
    ap.add_argument("--out", default="out/bench/codec.json", help="JSON output (default out/bench/codec.json)")
    args = ap.parse_args(argv)
    if args.n < 1 or args.repeats < 1 or args.batch < 1:
        ap.error("--n, --repeats and --batch must be positive")
    result = run(n=args.n, repeats=args.repeats, batch=args.batch)
    print_report(result)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
