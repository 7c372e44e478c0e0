"""First-call times of the Numba kernels, for ``kinebridge bench kernels``.

Run as ``python -m kinebridge.bench.jit_probe OUT.json`` in a fresh process: it times the import
and the first call of each kernel group on tiny inputs. With an empty ``NUMBA_CACHE_DIR`` that is
JIT compilation; run again with the same directory it is the cached load.
"""

from __future__ import annotations

import json
import sys
import time


def main(out_path: str) -> None:
    t0 = time.perf_counter()
    import numpy as np

    from kinebridge.kernels import metrics, quaternion
    from kinebridge.kernels.gaussian import gaussian_product
    from kinebridge.kernels.gmm import fit_gmm
    from kinebridge.kernels.gmr import gmr
    from kinebridge.kernels.kmp import KMP
    from kinebridge.kernels.tpgmm import fit_tpgmm
    times = {"import_s": time.perf_counter() - t0}

    rng = np.random.default_rng(0)
    t = np.linspace(0.01, 1.0, 40)
    data = np.column_stack([t, np.sin(3 * t), np.cos(2 * t)]) + 1e-3 * rng.standard_normal((40, 3))

    def first(name, fn):
        s = time.perf_counter()
        fn()
        times[name] = time.perf_counter() - s

    state = {}
    first("gmm_em", lambda: state.setdefault("gmm", fit_gmm(data, 3)[0]))
    first("gmr", lambda: gmr(state["gmm"], t))
    first("tpgmm_em", lambda: fit_tpgmm(np.stack([data, data + 1.0]), 3))
    mu, sig = gmr(state["gmm"], t)
    first("kmp_fit", lambda: state.setdefault("kmp", KMP(h=6.0, lam=1.0, derivatives=True).fit(t, mu, sig)))
    first("kmp_via_update", lambda: state["kmp"].set_via_points([t[0], 0.505], np.zeros((2, 2)), 1e-6 * np.eye(2))
          .predict(t[:1]))
    first("kmp_predict_cov", lambda: state["kmp"].predict_cov(t[:5]))
    first("gaussian_product", lambda: gaussian_product(np.zeros((5, 2, 2)), np.broadcast_to(np.eye(2), (5, 2, 2, 2))))
    q = quaternion.exp(0.1 * rng.standard_normal((5, 2, 3)))
    first("quaternion_product", lambda: quaternion.product_batch(q, np.broadcast_to(0.01 * np.eye(3), (5, 2, 3, 3))))
    x = rng.standard_normal((30, 2))
    first("metrics", lambda: metrics.shape_report(x, x + 0.1))
    times["total_s"] = time.perf_counter() - t0
    with open(out_path, "w") as f:
        json.dump(times, f)


if __name__ == "__main__":
    main(sys.argv[1])
