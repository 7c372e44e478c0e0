"""``kinebridge eval tokenizer``: the four tokenizers on the kine split's held-out episodes.

Per tokenizer (all at the budget the run was trained for):

* **reconstruction** — L1 of the decoded joint chunks (rad, mean over steps and joints) and of the tool
  centre point they put the arm at (m, mean over steps and x, y, z), every chunk of every held-out episode;
* **predicates preserved** — each held-out episode rebuilt from its chunks decoded every H steps (each
  relative to the joints observed at its start, as a policy's chunks are), and the episode's kinematic
  predicates (:mod:`kinebridge.kernels.kine_predicates`) decided on it: the share of those that hold on the
  original that still hold;
* **goal success in the world** — the rebuilt trajectory executed in the simulated world (sampled at 100 Hz
  by the control loop's cubic Hermite, the episode's grasp/release times), its goal scored by the physics;
  the original 10 Hz actions executed the same way are the reference;
* **codebook usage** (RVQs: share of each level's codes used on the held-out chunks), **tokens per chunk**,
  **decode latency** per chunk (the compiled decoder and ONNX Runtime, median and p99; the baselines'
  numpy decoders);
* for the RVQs, **seams**: the decoded chunks of a held-out episode handed to the control loop's follower
  (:class:`~kinebridge.kernels.chunk_blend.ChunkFollower`, RM75 limits, 200 Hz) one per step, as a policy
  streams them: the jump between consecutive chunks where one takes over, how often the limiter had to act,
  the largest velocity and acceleration against the limits;
* for the bi-level RVQ, **stage II on the coarse split**: coarse held-out L1 after stage I and after stage II.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np

from kinebridge.export.tokenizer.codecs import load_codecs
from kinebridge.export.tokenizer.data import KineDataset, episode_chunks
from kinebridge.export.tokenizer.figure import decoded_trajectory
from kinebridge.kernels import kine_predicates as kp
from kinebridge.kernels import rm75

__all__ = ["evaluate", "main", "NAMES", "upsample"]

NAMES = ("bi-level-rvq", "rvq", "bins-256", "fast")
TCP = np.eye(4)
TCP[2, 3] = 0.08


def _layout(meta):
    from kinebridge.bench.kine.tasks import Layout
    from kinebridge.drivers.world import SceneSpec
    return Layout(meta["task"], SceneSpec.model_validate(meta["scene"]), meta["layout"])


def upsample(q10: np.ndarray, hz: float, dt: float = 0.01) -> np.ndarray:
    """A 1/hz-spaced joint trajectory sampled every ``dt`` by the control loop's cubic Hermite."""
    from kinebridge.kernels.chunk_blend import sample_chunk
    q10 = np.ascontiguousarray(q10, float)
    T = (len(q10) - 1) / hz
    n = int(round(T / dt)) + 1
    out = np.empty((n, q10.shape[1]))
    qd = np.empty(q10.shape[1])
    for i in range(n):
        sample_chunk(i * dt, 0.0, 1.0 / hz, q10, out[i], qd)
    return out


def _execute(meta, q10, hz) -> dict:
    from kinebridge.bench.kine.execute import execute
    from kinebridge.drivers.world import World
    from kinebridge.drivers.world.scoring import PourMonitor
    lay = _layout(meta)
    q = upsample(q10, hz)
    dt = meta.get("plan_dt", 0.01)
    events = [(min(len(q) - 1, int(round(t / dt))), e) for t, e in meta["events"]]
    grip = np.zeros(len(q), bool)
    on = None
    for i, e in sorted(events):
        if e == "grasp":
            on = i
        elif e == "release" and on is not None:
            grip[on:i] = True
            on = None
    if on is not None:
        grip[on:] = True

    class _Plan:
        attach = meta["attach"]

        def joints(self):
            return q, grip, events

    world = World(lay.scene)
    mon = PourMonitor(world, lay.info["target"]) if lay.task == "pour" else None
    try:
        res = execute(world, _Plan(), lay, meta["d7"], images=False, dt=dt, monitor=mon)
    finally:
        if mon is not None:
            mon.close()
    return res["goal"]


def _latency(fn, inputs, repeats: int = 1) -> dict:
    ts = []
    for x in inputs:
        t = time.perf_counter_ns()
        fn(x)
        ts.append(time.perf_counter_ns() - t)
    ts = np.asarray(ts[len(ts) // 10:]) / 1e3      # the first tenth warms caches
    return {"median": round(float(np.median(ts)), 2), "p99": round(float(np.percentile(ts, 99)), 2), "n": int(ts.size)}


def _seams(codec, ds, eps, hz: float, limits, rate_hz: float = 200.0, latency_s: float = 0.005) -> dict:
    """Decoded chunks streamed one per step into the control loop's follower (see the module docstring)."""
    from kinebridge.kernels.chunk_blend import ChunkFollower, sample_chunk
    h = 1.0 / rate_hz
    jumps, acted, ticks, v_ratio, a_ratio, track = [], 0, 0, 0.0, 0.0, 0.0
    for e in eps:
        a = ds.arrays(e["id"], ("q", "action_q", "action_tcp"))
        c = episode_chunks(a, codec.H, 1)
        dec, _ = codec.decode(codec.encode(np.asarray(c.delta) / codec.scale))
        chunks = [(t / hz, np.vstack([a["q"][t], a["q"][t] + dec[i] * codec.scale])) for i, t in enumerate(c.step)]
        f = ChunkFollower(7, limits.q_min, limits.q_max, limits.qd_max, limits.qdd_max, h, blend_s=0.1)
        f.reset(a["q"][0])
        v_prev = np.zeros(7)
        k, nxt = 0, 0
        cur = None
        T_end = (len(a["q"]) - 1) / hz
        qo, qdo, qn, qdn = (np.empty(7) for _ in range(4))
        while k * h <= T_end:
            t = k * h
            while nxt < len(chunks) and chunks[nxt][0] + latency_s <= t:
                t0, Q = chunks[nxt]
                if cur is not None:             # the step between the chunk in force and the new one, where it takes over
                    sample_chunk(t, cur[0], 1.0 / hz, cur[1], qo, qdo)
                    sample_chunk(t, t0, 1.0 / hz, Q, qn, qdn)
                    jumps.append(float(np.max(np.abs(qn - qo))))
                f.submit(t0, 1.0 / hz, Q, t)
                cur = (t0, Q)
                nxt += 1
            q_before = f.q.copy()
            q = f.step(t).copy()
            v = (q - q_before) / h
            ticks += 1
            # the limiter acted where the command left the (blended) reference the follower was asked for
            if cur is not None:
                err = float(np.max(np.abs(q - f._q_ref)))
                track = max(track, err)
                acted += int(err > 1e-6)
            v_ratio = max(v_ratio, float(np.max(np.abs(v) / limits.qd_max)))
            a_ratio = max(a_ratio, float(np.max(np.abs(v - v_prev) / h / limits.qdd_max)))
            v_prev = v
            k += 1
    j = np.asarray(jumps) if jumps else np.zeros(1)
    return {"seams": int(len(jumps)), "jump_rad_median": round(float(np.median(j)), 6),
            "jump_rad_p99": round(float(np.percentile(j, 99)), 6), "jump_rad_max": round(float(j.max()), 6),
            "ticks": ticks, "ticks_limiter_acted": acted, "max_command_off_reference_rad": round(track, 7),
            "max_velocity_of_limit": round(v_ratio, 4), "max_acceleration_of_limit": round(a_ratio, 4)}


def evaluate(data: Path, root: Path, names=NAMES, world_episodes: int = 20, log=print) -> dict:
    ds = KineDataset(data)
    hz = ds.action_hz
    codecs = load_codecs(root, names)
    missing = [n for n in names if n not in codecs]
    if missing:
        log(f"not trained (skipped): {missing}")
    held = ds.episodes("kine", True)
    if not held:
        raise ValueError(f"{data}: no held-out kine episodes to evaluate on")
    metas = {e["id"]: ds.meta(e["id"]) for e in held}
    chunks = ds.chunks("kine", True)
    x = np.asarray(chunks.delta)
    q0 = np.asarray(chunks.q0)
    tcp_true = (rm75.fk_batch(np.ascontiguousarray((q0[:, None] + x).reshape(-1, 7)), rm75.D7_B) @ TCP)[:, :3, 3]
    world_eps = sorted(held, key=lambda e: (e["task"], e["id"]))
    by_task: dict = {}
    for e in world_eps:
        by_task.setdefault(e["task"], []).append(e)
    pick = []
    while len(pick) < min(world_episodes, len(world_eps)):        # round robin over the tasks
        for t in sorted(by_task):
            if by_task[t] and len(pick) < world_episodes:
                pick.append(by_task[t].pop(0))
    result = {"data": str(data), "tokenizers_dir": str(root), "held_out": {"episodes": len(held), "chunks": len(x),
                                                                          "world_episodes": len(pick)},
              "tokenizers": {}}
    # the reference: the original actions through the same 10 Hz → world path
    if pick:
        ok = [bool(_execute(metas[e["id"]], ds.arrays(e["id"], ("q",))["q"], hz)["success"]) for e in pick]
        result["reference_goal_success"] = round(float(np.mean(ok)), 4)
        log(f"reference (original 10 Hz actions in the world): {sum(ok)}/{len(ok)} goals")
    import torch  # noqa: F401 - the RVQ encoders
    for name, cd in codecs.items():
        t0 = time.perf_counter()
        r: dict = {"kind": cd.kind}
        toks = cd.encode(x / cd.scale)
        dec, bad = cd.decode(toks)
        err = dec * cd.scale - x
        r["l1"] = float(np.mean(np.abs(err)))
        qh = (q0[:, None] + dec * cd.scale).reshape(-1, 7)
        tcp_hat = (rm75.fk_batch(np.ascontiguousarray(qh), rm75.D7_B) @ TCP)[:, :3, 3]
        r["l1_ee"] = float(np.mean(np.abs(tcp_hat - tcp_true)))
        r["ee_error_p99_m"] = float(np.percentile(np.linalg.norm(tcp_hat - tcp_true, axis=1), 99))
        tpc = cd.tokens_per_chunk(toks)
        r["tokens_per_chunk"] = float(np.mean(tpc))
        r["tokens_per_chunk_max"] = int(np.max(tpc))
        r["decode_failures"] = int(bad)
        if cd.kind == "rvq":
            r["codebook_usage"] = cd.usage(toks)
            r["levels"] = cd.levels
            r["sequence_length"] = cd.manifest["tokens"]["length"]
        # predicates preserved on whole episodes
        kept = total = 0
        per_attr: dict = {}
        from kinebridge.bench.kine import tasks as T
        for e in held:
            m = metas[e["id"]]
            a = ds.arrays(e["id"], ("q", "action_q", "action_tcp", "grip"))
            qd = decoded_trajectory(cd, a)
            lay = _layout(m)
            got = kp.evaluate(m["predicate_attributes"], T.predicate_traj(lay, qd, a["grip"], m["d7"]), m["context"])
            for k, v in m["predicates"].items():
                if v:
                    total += 1
                    kept += int(got.get(k, False))
                    pa = per_attr.setdefault(f"{m['task']}/{k}", [0, 0])
                    pa[0] += int(got.get(k, False))
                    pa[1] += 1
        r["predicates_preserved"] = kept / total if total else None
        r["predicates_by_attribute"] = {k: round(v[0] / v[1], 4) for k, v in sorted(per_attr.items())}
        if pick:
            ok = []
            for e in pick:
                a = ds.arrays(e["id"], ("q", "action_q", "action_tcp"))
                ok.append(bool(_execute(metas[e["id"]], decoded_trajectory(cd, a), hz)["success"]))
            r["goal_success"] = round(float(np.mean(ok)), 4)
        # latency per chunk
        rng = np.random.default_rng(0)
        sel = rng.choice(len(toks), min(3000, len(toks)), replace=False)
        if cd.kind == "rvq":
            from kinebridge.kernels.rvq_decode import decode_into
            w, b = cd.w, cd._buf
            codes = [np.ascontiguousarray(toks[i], np.int64) for i in sel]
            lat = _latency(lambda c: decode_into(c, *w, b.z, b.h1, b.h2, b.y), codes)
            r["decode_us_median"], r["decode_us_p99"] = lat["median"], lat["p99"]
            import onnxruntime as ort
            so = ort.SessionOptions()
            so.intra_op_num_threads = 1
            sess = ort.InferenceSession(str(cd.dir / "decoder.onnx"), so, providers=["CPUExecutionProvider"])
            lo = _latency(lambda c: sess.run(None, {"codes": c[None]}), codes)
            r["onnx_us_median"], r["onnx_us_p99"] = lo["median"], lo["p99"]
            r["decode_backend"] = "compiled (kinebridge.kernels.rvq_decode, numba)"
        else:
            one = [[toks[i]] for i in sel] if cd.kind == "fast" else [toks[i:i + 1] for i in sel]
            lat = _latency(lambda t: cd.decode(t), one)
            r["decode_us_median"], r["decode_us_p99"] = lat["median"], lat["p99"]
            r["decode_backend"] = "numpy"
        if cd.kind == "rvq":
            from kinebridge.drivers.arm.model import arm_model
            seam_eps = sorted(held, key=lambda e: e["id"])[:6]
            r["seams"] = _seams(cd, ds, seam_eps, hz, arm_model("RM75-B").limits)
        r["eval_s"] = round(time.perf_counter() - t0, 1)
        result["tokenizers"][name] = r
        log(f"{name}: L1 {r['l1'] * 1e3:.3f} mrad, EE {r['l1_ee'] * 1e3:.2f} mm, {r['tokens_per_chunk']:.2f} tokens/chunk, "
            f"predicates preserved {r['predicates_preserved']}, goals {r.get('goal_success')}, decode "
            f"{r['decode_us_median']} µs (p99 {r['decode_us_p99']})")
    # stage II on the coarse split
    bl = Path(root) / "bi-level-rvq"
    if (bl / "stage1.pt").exists() and (bl / "stage2.pt").exists():
        import torch
        from kinebridge.export.tokenizer.train import load_rvq
        cte, held_out = ds.chunks("coarse", True), True
        if not len(cte):               # a tiny data set may hold no coarse episode out: judge on all of them
            cte, held_out = ds.chunks("coarse", None), False
        if len(cte):
            scale = np.asarray(json.loads((bl / "manifest.json").read_text())["chunk"]["scale"])
            xc = torch.as_tensor(np.asarray(cte.delta) / scale, dtype=torch.float32)

            def l1(m, fine=None):
                with torch.no_grad():
                    return float(np.mean(np.abs((m(xc, fine)["x_hat"] - xc).numpy() * scale)))
            m1, m2 = load_rvq(bl / "stage1.pt"), load_rvq(bl / "stage2.pt")
            c1, c2, c2l = l1(m1), l1(m2), l1(m2, False)
            result["coarse_split"] = {"chunks": len(cte), "held_out": held_out, "stage1_l1": c1, "stage2_l1": c2, "stage2_goal_level_only_l1": c2l,
                                      "degradation": c2 / c1 - 1.0, "degradation_goal_level_only": c2l / c1 - 1.0}
    tk = result["tokenizers"]
    if "bi-level-rvq" in tk:
        b = tk["bi-level-rvq"]
        cmp = {"budget_tokens": b.get("tokens_per_chunk")}
        if "rvq" in tk:
            cmp["l1_reduction_vs_rvq"] = 1.0 - b["l1"] / tk["rvq"]["l1"]
            cmp["meets_30pct_vs_rvq"] = bool(cmp["l1_reduction_vs_rvq"] >= 0.30)
        if "bins-256" in tk:
            cmp["beats_bins_256"] = bool(b["l1"] < tk["bins-256"]["l1"])
        cmp["predicates_preserved_ge_95pct"] = bool((b["predicates_preserved"] or 0) >= 0.95)
        if "coarse_split" in result:
            cmp["coarse_degradation_le_5pct"] = bool(result["coarse_split"]["degradation"] <= 0.05)
        cmp["decode_median_le_50us"] = bool(b["decode_us_median"] <= 50.0)
        result["comparison"] = cmp
    return result


def print_table(res: dict) -> None:
    tk = res["tokenizers"]
    print(f"{'tokenizer':14} {'tokens':>7} {'L1 mrad':>8} {'EE mm':>7} {'preds':>6} {'goals':>6} {'usage':>12} "
          f"{'dec µs':>7} {'p99':>7} {'onnx µs':>8}")
    for n, r in tk.items():
        u = r.get("codebook_usage")
        us = f"{min(u):.2f}-{max(u):.2f}" if u else "-"
        print(f"{n:14} {r['tokens_per_chunk']:7.2f} {r['l1'] * 1e3:8.3f} {r['l1_ee'] * 1e3:7.2f} "
              f"{(r['predicates_preserved'] or 0):6.3f} {r.get('goal_success', float('nan')):6.3f} {us:>12} "
              f"{r['decode_us_median']:7.1f} {r['decode_us_p99']:7.1f} {r.get('onnx_us_median', float('nan')):8.1f}")
    if "reference_goal_success" in res:
        print(f"reference (original actions at 10 Hz in the world): goals {res['reference_goal_success']:.3f}")
    if "coarse_split" in res:
        c = res["coarse_split"]
        print(f"coarse split: stage I L1 {c['stage1_l1'] * 1e3:.3f} mrad → stage II {c['stage2_l1'] * 1e3:.3f} "
              f"({100 * c['degradation']:+.1f} %), goal level only {c['stage2_goal_level_only_l1'] * 1e3:.3f} "
              f"({100 * c['degradation_goal_level_only']:+.1f} %)")
    if "comparison" in res:
        print("comparison:", json.dumps(res["comparison"]))


def main(args, extra=None) -> dict:
    names = tuple(n.strip() for n in args.which.split(",") if n.strip())
    import sys
    res = evaluate(args.data, args.tokenizers, names, args.world_episodes, log=lambda s: print(s, file=sys.stderr))
    if extra is not None:
        extra(res)
    out = args.out or Path(args.tokenizers) / "eval.json"
    Path(out).write_text(json.dumps(res, indent=1, default=lambda o: o.item() if hasattr(o, "item") else str(o)))
    if args.json:
        print(json.dumps(res, indent=1, default=lambda o: o.item() if hasattr(o, "item") else str(o)))
    else:
        print_table(res)
        print(f"wrote {out}")
    return res
