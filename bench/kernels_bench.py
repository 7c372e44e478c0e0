"""``kinebridge bench kernels``: every trajectory kernel against its NumPy reference, same run.

Each kernel is timed after warm-up (median, p95, min over ``repeats`` calls) next to the plain-NumPy
reference in :mod:`kinebridge.kernels.ref` on the same inputs; the ratio is reference / kernel
median. JIT compile time and cached-load time are measured in fresh subprocesses (an empty
``NUMBA_CACHE_DIR``, then the same one again). Inputs: LASA GShape (7 demos × 200 points,
[t, x, y, ẋ, ẏ], 1400 × 5) and the synthetic 3-D pour of :mod:`kinebridge.bench.synthetic_skills`.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from kinebridge.kernels.stats import summary

# (target median in ms or None, what the target is) from the issue that introduced the kernels
TARGETS = {
    "kmp_fit_n400_d4": 40.0, "kmp_via_move": 2.0, "kmp_via_new_time": 2.0, "gmr_1000_cov": 5.0,
    "em_1400x5_k8": 150.0, "lfe_generalize_2frames_200_pos_ori": 10.0,
}
MIN_RATIO = 5.0


def _time(fn, repeats: int, warmup: int = 2) -> dict:
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return summary(ts, 1e3)     # ms


def _cases():
    """(name, kernel fn, reference fn, note) for every benchmarked kernel; inputs built once."""
    from kinebridge.bench import lasa_protocol as proto
    from kinebridge.bench.synthetic_skills import pouring_demos, random_frames
    from kinebridge.kernels import metrics, quaternion
    from kinebridge.kernels.gmm import fit_em, init_time_based, em_tensor
    from kinebridge.kernels.gmr import gmr, reference
    from kinebridge.kernels.kmp import KMP
    from kinebridge.kernels.lfe_kmp import LFEKMP
    from kinebridge.kernels.ref import gmm as rgmm, gmr as rgmr, kmp as rkmp, lfe_kmp as rlfe
    from kinebridge.kernels.ref import metrics as rmetrics, quaternion as rquat
    from kinebridge.kernels.tpgmm import project, time_frame
    from kinebridge.kernels.gmm import init_time_based_tensor

    demos = proto.load_demos("GShape")
    data = proto.stack(demos)                                                # 1400 × 5
    init = init_time_based(data, 8)
    model, _ = fit_em(data, init)
    tq = np.linspace(0.01, 2.0, 1000)
    cases = []
    cases.append(("gmr_1000_cov", lambda: gmr(model, tq),
                  lambda: rgmr.gmr(model.priors, model.means, model.covariances, tq, [0], [1, 2, 3, 4]),
                  "GMR means + covariances at 1000 times, K=8, 1 input → 4 outputs"))
    cases.append(("em_1400x5_k8", lambda: fit_em(data, init),
                  lambda: rgmm.em(data, init.priors, init.means, init.covariances),
                  "EM from the time-based init until the LL gain < 1e-4 (same iterations both sides)"))
    ab = [[time_frame(f.rotation, f.origin) for f in proto.frames_for(d.position[0], d.position[-1])] for d in demos]
    A = np.concatenate([np.broadcast_to(np.stack([a for a, _ in x]), (200, 2, 5, 5)) for x in ab])
    b = np.concatenate([np.broadcast_to(np.stack([v for _, v in x]), (200, 2, 5)) for x in ab])
    local = project(data, A, b)
    pri, mu0, cov0 = init_time_based_tensor(local, 8)
    cases.append(("tpgmm_em_2frames", lambda: em_tensor(local, pri, mu0, cov0),
                  lambda: rgmm.em(local, pri, mu0, cov0), "EM on the 2-frame tensor (2 × 1400 × 5), K=8"))

    t400 = np.linspace(0.005, 2.0, 400)
    mu, sig = reference(model, t400)
    kmp = KMP(h=6.0, lam=1.0, lam_c=60.0, kernel="fd").fit(t400, mu, sig)
    ref_inv = rkmp.KMPReference(h=6.0, lam=1.0, lam_c=60.0, solver="inv")
    ref_chol = rkmp.KMPReference(h=6.0, lam=1.0, lam_c=60.0, solver="cholesky")
    cases.append(("kmp_fit_n400_d4", lambda: kmp.fit(t400, mu, sig), lambda: ref_inv.fit(t400, mu, sig),
                  "K + λΣ assembly and Cholesky, n = 1600; reference: kron assembly + inv() as the original code"))
    cases.append(("kmp_fit_n400_d4_vs_cholesky", lambda: kmp.fit(t400, mu, sig), lambda: ref_chol.fit(t400, mu, sig),
                  "same fit; reference: kron assembly + scipy Cholesky (LAPACK dominates both)"))
    via_sigma = np.diag([1e-6, 1e-6, 1e3, 1e3])
    rng = np.random.default_rng(0)
    kmp.set_via_points([t400[0], t400[-1]], np.zeros((2, 4)), via_sigma)
    kmp.predict(t400[:1])

    def via_move():  # the bridge moves the start and goal: same times, new values
        kmp.set_via_points([t400[0], t400[-1]], rng.normal(0, 10, (2, 4)) * [1, 1, 0, 0], via_sigma)
        kmp.predict(t400[:1])

    def via_new_time():  # a via-point at a time not seen before
        kmp.set_via_points([t400[0], float(rng.uniform(0.3, 1.7))], rng.normal(0, 10, (2, 4)), via_sigma)
        kmp.predict(t400[:1])

    def ref_via():
        tv, mv, sv = t400, mu, sig
        for tt, m in ((t400[0], rng.normal(0, 10, 4)), (t400[-1], rng.normal(0, 10, 4))):
            tv, mv, sv = rkmp.insert_point(tv, mv, sv, tt, m, via_sigma)
        ref_inv.fit(tv, mv, sv)
        ref_inv.predict(t400[:1])

    cases.append(("kmp_via_move", via_move, ref_via,
                  "move start + goal via-points (same times): bordered solve reuses the factor; reference refits"))
    cases.append(("kmp_via_new_time", via_new_time, ref_via,
                  "one via-point at a new time: two triangular solves with 4 right-hand sides"))
    kmp_pred = KMP(h=6.0, lam=1.0, lam_c=60.0, kernel="fd").fit(t400, mu, sig)
    ref_pred = rkmp.KMPReference(h=6.0, lam=1.0, lam_c=60.0, solver="inv").fit(t400, mu, sig, with_cov=True)
    cases.append(("kmp_predict_mean_400", lambda: kmp_pred.predict(t400), lambda: ref_pred.predict(t400),
                  "mean at 400 times, FD kernel (4 exp per pair)"))
    t100 = t400[::4]
    cases.append(("kmp_predict_cov_100", lambda: kmp_pred.predict_cov(t100), lambda: ref_pred.predict_cov(t100),
                  "mean + covariance at 100 times"))

    pour, frames = pouring_demos()
    lfe = LFEKMP(h=100.0, lam=1.0).fit(pour, frames)
    new = random_frames(np.random.default_rng(1))
    cases.append(("lfe_generalize_2frames_200_pos_ori", lambda: lfe.generalize(new), lambda: rlfe.generalize(lfe, new),
                  "new task frames → product over 2 frames at 200 times, position+velocity (6-D) and "
                  "orientation (S³ product with transport); local KMP results cached at fit"))
    qm = quaternion.exp(0.3 * rng.standard_normal((200, 2, 3)))
    qc = np.broadcast_to(np.diag([1e-3, 2e-3, 5e-4]), (200, 2, 3, 3)).copy()
    cases.append(("quaternion_product_200x2", lambda: quaternion.product_batch(qm, qc),
                  lambda: rquat.product_batch(qm, qc), "Riemannian product of 2 Gaussians at 200 times"))
    x, y = rng.standard_normal((200, 2)).cumsum(0), rng.standard_normal((200, 2)).cumsum(0)
    cases.append(("dtw_200x200", lambda: metrics.dtw_distance(x, y), lambda: rmetrics.dtw_distance(x, y), "DTW"))
    cases.append(("frechet_200x200", lambda: metrics.frechet_distance(x, y), lambda: rmetrics.frechet_distance(x, y),
                  "discrete Fréchet"))
    return cases


def _jit_times() -> dict:
    """Import + first-call times in fresh processes: empty cache (compile) then the same cache (load)."""
    out = {}
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        for label in ("compile", "cached_load"):
            res = Path(cache) / f"{label}.json"
            subprocess.run([sys.executable, "-m", "kinebridge.bench.jit_probe", str(res)], env=env, check=True)
            out[label] = json.loads(res.read_text())
    return out


def _environment() -> dict:
    import numba
    import scipy
    return {"python": platform.python_version(), "numpy": np.__version__, "scipy": scipy.__version__,
            "numba": numba.__version__, "cpus": os.cpu_count(), "machine": platform.machine(),
            "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS", "default")}


def main(repeats: int = 30, quick: bool = False, out: Path = Path("out/bench/kernels.json")) -> dict:
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    console = Console(stderr=True)
    repeats = 3 if quick else repeats
    results = {"environment": _environment(), "repeats": repeats, "kernels": {}}
    with console.status("building benchmark inputs (LASA GShape, synthetic pour) and warming the JIT…"):
        cases = _cases()
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("kernels", total=len(cases))
        for name, fn, ref, note in cases:
            k = _time(fn, repeats)
            r = _time(ref, max(3, repeats // 3))  # the references are slow; fewer runs
            target = TARGETS.get(name)
            results["kernels"][name] = {
                "note": note, "kernel": k, "reference": r, "ratio": r["p50"] / k["p50"],
                "target_ms": target, "meets_target": None if target is None else k["p50"] <= target,
                "meets_ratio": r["p50"] / k["p50"] >= MIN_RATIO}
            bar.advance(task)
    if not quick:
        with console.status("JIT compile and cached-load times (fresh subprocesses)…"):
            results["jit"] = _jit_times()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))

    table = Table(title=f"kinebridge kernels vs NumPy reference ({repeats} runs; ms)")
    for col in ("kernel", "median", "p95", "ref median", "ratio", "target", "met"):
        table.add_column(col, justify="right")
    for name, r in results["kernels"].items():
        tgt = r["target_ms"]
        met = "" if tgt is None else ("yes" if r["meets_target"] else "NO")
        table.add_row(name, f"{r['kernel']['p50']:.3f}", f"{r['kernel']['p95']:.3f}",
                      f"{r['reference']['p50']:.3f}", f"{r['ratio']:.1f}×", "" if tgt is None else f"≤ {tgt:g}", met)
    Console(width=140).print(table)
    if "jit" in results:
        jt = Table(title="first call in a fresh process (s)")
        for col in ("group", "JIT compile", "cached load"):
            jt.add_column(col, justify="right")
        for key in results["jit"]["compile"]:
            jt.add_row(key, f"{results['jit']['compile'][key]:.3f}", f"{results['jit']['cached_load'][key]:.3f}")
        Console(width=140).print(jt)
    console.print(f"wrote {out}")
    return results
