"""``kinebridge bench arm``: RM75 kinematics against RealMan's SDK and the NumPy reference, same run.

Timings (µs, median and p95 after warm-up):

* FK — :func:`kinebridge.kernels.rm75.fk` per call, :func:`~kinebridge.kernels.rm75.fk_batch` per
  pose (whole batch timed, divided by its size), the NumPy reference
  (:mod:`kinebridge.kernels.ref.rm75`) per call and the SDK's ``Algo.rm_algo_forward_kinematics``
  per call (degrees in, list out: what a caller of the SDK pays).
* IK on a streamed path (:func:`figure_eight`, 1000 points in front of the home pose with a
  wobbling tool orientation, ≤ 1 mm and ≤ 2 mrad between points): :func:`~kinebridge.kernels.rm75.ik` per call and
  the NumPy reference per call, both seeded from the previous solution;
  :func:`~kinebridge.kernels.rm75.ik_path` per pose; the SDK's ``rm_algo_inverse_kinematics``
  seeded from its own previous solution (building ``rm_inverse_kinematics_params_t`` included).

Accuracy: FK against the SDK over ``n`` random joint vectors within the limits, for RM75-B and
RM75-6F (position max |Δ|, rotation angle of R_sdk R_kbᵀ; the SDK computes in float32, so ~1e-7 is
its floor). IK over ``n`` random reachable targets (FK of random joint vectors within the limits),
every solver seeded from the same perturbed configuration (σ = 0.1 rad per joint): success rate
(the solver says it converged *and* the float64 FK of its answer is within 1e-5 m / 1e-4 rad) and
the largest errors among the targets it solved. Path continuity: largest joint step along the
streamed path next to the largest Cartesian step.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import time

import numpy as np

from kinebridge.kernels.stats import summary

POS_TOL = 1e-5   # m, what "solved" means for every solver in the accuracy rows
ROT_TOL = 1e-4   # rad
TARGET_RATIO = 20.0  # kinebridge must be ≥ 20× faster than the SDK (FK batch, IK per streamed pose)


# ------------------------------------------------------------------------------------------ helpers


def _stats(samples_s) -> dict:
    return summary(samples_s, 1e6)      # µs


def _time_each(fn, args_list) -> dict:
    """Time fn(*args) once per element of args_list."""
    ts = []
    for args in args_list:
        t0 = time.perf_counter()
        fn(*args)
        ts.append(time.perf_counter() - t0)
    return _stats(ts)


def _time_batch(fn, n_items: int, repeats: int) -> dict:
    """Time fn() ``repeats`` times; per-item statistics (each run divided by n_items)."""
    fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) / n_items)
    return _stats(ts)


def _rot_angle(Ra, Rb) -> np.ndarray:
    """Angle of Ra Rbᵀ for stacks (..., 3, 3)."""
    c = (np.einsum("...ij,...ij->...", Ra, Rb) - 1.0) / 2.0
    return np.arccos(np.clip(c, -1.0, 1.0))


def _sdk():
    """(module, version, reason): the RealMan SDK if importable."""
    try:
        from Robotic_Arm import rm_robot_interface as sdk
    except Exception as exc:  # noqa: BLE001 - any import problem means "no SDK rows"
        return None, None, f"Robotic_Arm not importable ({type(exc).__name__}: {exc})"
    try:
        version = importlib.metadata.version("robotic-arm")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return sdk, version, None


def _sdk_algo(sdk, variant: str):
    force = {"B": sdk.rm_force_type_e.RM_MODEL_RM_B_E, "6F": sdk.rm_force_type_e.RM_MODEL_RM_SF_E}[variant]
    return sdk.Algo(sdk.rm_robot_arm_model_e.RM_MODEL_RM_75_E, force)


def figure_eight(n: int, d7: float):
    """(n, 4, 4) streamed path: a 0.10 m × 0.24 m figure-eight 8 cm inside the home pose, tool wobbling ±0.2 rad.

    Chosen well inside the reachable set: the wrist centre stays 0.29–0.45 m from the shoulder
    (reach 0.466 m) and the smallest singular value of J along the IK path stays above 0.05.
    """
    from kinebridge.kernels import rm75
    T0 = rm75.fk(rm75.Q_HOME, d7)
    t = np.linspace(0.0, 2.0 * np.pi, n)
    T = np.repeat(T0[None], n, axis=0)
    T[:, 0, 3] += -0.08 + 0.05 * np.sin(2.0 * t)
    T[:, 1, 3] += 0.12 * np.sin(t)
    T[:, 2, 3] += 0.03 * (1.0 - np.cos(t))
    rpy = np.stack([0.2 * np.sin(t), 0.15 * np.sin(2.0 * t), 0.2 * (1.0 - np.cos(t))], axis=1)
    T[:, :3, :3] = rm75.rpy_to_matrix(rpy) @ T0[:3, :3]
    return T


def _environment() -> dict:
    import numba
    return {"python": platform.python_version(), "numpy": np.__version__, "numba": numba.__version__,
            "cpus": os.cpu_count(), "machine": platform.machine(), "processor": platform.processor()}


# ---------------------------------------------------------------------------------------------- run


def run(n: int = 2000, seed: int = 0, quick: bool = False) -> dict:
    """Measure RM75 FK/IK speed and accuracy (kinebridge, NumPy reference, RealMan SDK) in one run.

    ``n`` random configurations for the accuracy rows and the single-call timings; ``quick`` cuts
    everything to a smoke-test size. Returns a JSON-serialisable dict (see :func:`print_report`).
    """
    from kinebridge.kernels import rm75
    from kinebridge.kernels.ref import rm75 as ref

    n = max(20, min(n, 200)) if quick else int(n)
    n_path = 200 if quick else 1000
    n_ref = 30 if quick else min(n, 300)        # the NumPy reference is slow
    repeats = 5 if quick else 30
    rng = np.random.default_rng(seed)
    sdk, sdk_version, sdk_reason = _sdk()
    result: dict = {"environment": _environment(), "n": n, "seed": seed, "quick": quick,
                    "sdk": {"available": sdk is not None, "version": sdk_version, "reason": sdk_reason},
                    "tolerances": {"pos_m": POS_TOL, "rot_rad": ROT_TOL}}

    # warm the JIT (and the caches) before timing anything
    rm75.ik_path(figure_eight(5, rm75.D7_B), rm75.Q_HOME)
    rm75.ik(rm75.fk(rm75.Q_HOME), rm75.Q_HOME)
    rm75.fk_batch(rm75.Q_HOME[None])

    Q = rng.uniform(rm75.Q_MIN, rm75.Q_MAX, size=(n, 7))
    Qdeg = [[float(v) for v in row] for row in np.degrees(Q)]
    algo = _sdk_algo(sdk, "B") if sdk is not None else None

    # ------------------------------------------------------------------ FK timing
    fk = {"kinebridge_single": _time_each(rm75.fk, [(q,) for q in Q]),
          "kinebridge_batch": _time_batch(lambda: rm75.fk_batch(Q), n, repeats),
          "numpy_ref": _time_each(ref.fk, [(q,) for q in Q[:n_ref]])}
    if algo is not None:
        fk["sdk"] = _time_each(lambda qd: algo.rm_algo_forward_kinematics(qd, flag=1), [(qd,) for qd in Qdeg])
    result["fk"] = fk

    # ------------------------------------------------------------------ IK timing on a streamed path
    T_path = figure_eight(n_path, rm75.D7_B)
    q_start = rm75.ik(T_path[0], rm75.Q_HOME).q          # every solver starts on the path
    Q_path, ok_path = rm75.ik_path(T_path, q_start)
    ik = {"kinebridge_path": _time_batch(lambda: rm75.ik_path(T_path, q_start), n_path, max(3, repeats // 3))}
    seeds = np.vstack([q_start[None], Q_path[:-1]])
    ik["kinebridge_single"] = _time_each(rm75.ik, list(zip(T_path, seeds)))
    ik["numpy_ref"] = _time_each(lambda T, s: ref.ik(T, s, q_min=rm75.Q_MIN, q_max=rm75.Q_MAX),
                                 list(zip(T_path[:n_ref], seeds[:n_ref])))
    path = {"n_points": n_path,
            "max_cartesian_step_m": float(np.linalg.norm(np.diff(T_path[:, :3, 3], axis=0), axis=1).max()),
            "max_rotation_step_rad": float(_rot_angle(T_path[1:, :3, :3], T_path[:-1, :3, :3]).max())}
    T_kb = rm75.fk_batch(Q_path)
    path["kinebridge"] = {
        "ok_rate": float(ok_path.mean()),
        "max_joint_step_rad": float(np.abs(np.diff(np.vstack([q_start, Q_path]), axis=0)).max()),
        "max_pos_err_m": float(np.linalg.norm(T_kb[:, :3, 3] - T_path[:, :3, 3], axis=1).max()),
        "max_rot_err_rad": float(_rot_angle(T_kb[:, :3, :3], T_path[:, :3, :3]).max())}
    if algo is not None:
        poses = rm75.matrix_to_pose6(T_path)
        q_prev = [float(v) for v in np.degrees(q_start)]
        q_sdk, rets, ts = [], [], []
        for pose in poses:
            pose_l = [float(v) for v in pose]
            t0 = time.perf_counter()
            ret, q_out = algo.rm_algo_inverse_kinematics(sdk.rm_inverse_kinematics_params_t(q_prev, pose_l, 1))
            ts.append(time.perf_counter() - t0)
            rets.append(ret)
            if ret == 0:
                q_prev = q_out
            q_sdk.append(q_prev)
        ik["sdk"] = _stats(ts)
        Qs = np.radians(np.array(q_sdk, dtype=float))
        Ts = rm75.fk_batch(Qs)
        path["sdk"] = {
            "ok_rate": float(np.mean(np.array(rets) == 0)),
            "max_joint_step_rad": float(np.abs(np.diff(np.vstack([q_start, Qs]), axis=0)).max()),
            "max_pos_err_m": float(np.linalg.norm(Ts[:, :3, 3] - T_path[:, :3, 3], axis=1).max()),
            "max_rot_err_rad": float(_rot_angle(Ts[:, :3, :3], T_path[:, :3, :3]).max())}
    result["ik"] = ik
    result["path"] = path

    # ------------------------------------------------------------------ ratios
    def ratios(group: dict, rows: tuple) -> None:
        for row in rows:
            k = group[row]["p50"]
            group[row]["x_vs_numpy"] = group["numpy_ref"]["p50"] / k
            group[row]["x_vs_sdk"] = group["sdk"]["p50"] / k if "sdk" in group else None
    ratios(fk, ("kinebridge_single", "kinebridge_batch"))
    ratios(ik, ("kinebridge_single", "kinebridge_path"))
    result["targets"] = {
        "min_ratio_vs_sdk": TARGET_RATIO,
        "fk_batch_met": None if "sdk" not in fk else fk["kinebridge_batch"]["x_vs_sdk"] >= TARGET_RATIO,
        "ik_path_met": None if "sdk" not in ik else ik["kinebridge_path"]["x_vs_sdk"] >= TARGET_RATIO}

    # ------------------------------------------------------------------ accuracy, B and 6F
    result["fk_accuracy"] = {}
    result["ik_accuracy"] = {}
    for variant, d7 in (("B", rm75.D7_B), ("6F", rm75.D7_6F)):
        T = rm75.fk_batch(Q, d7)
        ref_err = max(float(np.abs(rm75.fk(q, d7) - ref.fk(q, d7)).max()) for q in Q[:n_ref])
        fa = {"numpy_ref_max_abs": ref_err}
        va = _sdk_algo(sdk, variant) if sdk is not None else None
        if va is not None:
            S = np.array([va.rm_algo_forward_kinematics(qd, flag=0) for qd in Qdeg], dtype=float)
            quat = S[:, 3:] / np.linalg.norm(S[:, 3:], axis=1, keepdims=True)
            fa["sdk_max_pos_m"] = float(np.abs(S[:, :3] - T[:, :3, 3]).max())
            fa["sdk_max_rot_rad"] = float(_rot_angle(rm75.quat_to_matrix(quat), T[:, :3, :3]).max())
        result["fk_accuracy"][variant] = fa

        seeds_ik = np.clip(Q + rng.normal(0.0, 0.1, Q.shape), rm75.Q_MIN, rm75.Q_MAX)
        solvers = {"kinebridge": lambda Tt, s: (lambda r: (r.ok, r.q))(rm75.ik(Tt, s, d7)),
                   "kinebridge_no_restarts": lambda Tt, s: (lambda r: (r.ok, r.q))(rm75.ik(Tt, s, d7, restarts=False))}
        if va is not None:
            def sdk_ik(Tt, s, va=va):
                ret, q_out = va.rm_algo_inverse_kinematics(sdk.rm_inverse_kinematics_params_t(
                    [float(v) for v in np.degrees(s)], [float(v) for v in rm75.matrix_to_pose6(Tt)], 1))
                return ret == 0, np.radians(np.array(q_out, dtype=float))
            solvers["sdk"] = sdk_ik
        ia = {}
        for name, solve in solvers.items():
            said_ok, Qs = [], []
            for Tt, s in zip(T, seeds_ik):
                ok, q = solve(Tt, s)
                said_ok.append(bool(ok))
                Qs.append(q)
            Qs = np.array(Qs)
            Tq = rm75.fk_batch(Qs, d7)
            pe = np.linalg.norm(Tq[:, :3, 3] - T[:, :3, 3], axis=1)
            re = _rot_angle(Tq[:, :3, :3], T[:, :3, :3])
            said_ok = np.array(said_ok)
            solved = said_ok & (pe <= POS_TOL) & (re <= ROT_TOL)
            within = np.all((Qs >= rm75.Q_MIN - 1e-9) & (Qs <= rm75.Q_MAX + 1e-9), axis=1)
            ia[name] = {"n": int(len(T)), "success_rate": float(solved.mean()),
                        "reported_ok_rate": float(said_ok.mean()),
                        "within_limits_rate": float(within[said_ok].mean()) if said_ok.any() else None,
                        "max_pos_err_m": float(pe[solved].max()) if solved.any() else None,
                        "max_rot_err_rad": float(re[solved].max()) if solved.any() else None,
                        "median_pos_err_m": float(np.median(pe[solved])) if solved.any() else None}
        result["ik_accuracy"][variant] = ia
    return result


# ------------------------------------------------------------------------------------------- report


def _fmt(x, spec: str = ".3g") -> str:
    return "—" if x is None else format(x, spec)


def print_report(result: dict) -> None:
    """Rich tables of :func:`run`'s result."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=140)
    env = result["environment"]
    sdk = result["sdk"]
    console.print(f"RM75 kinematics benchmark — n={result['n']}, seed={result['seed']}, "
                  f"{'quick' if result['quick'] else 'full'}; {env['cpus']} CPUs, numpy {env['numpy']}, "
                  f"numba {env['numba']}; SDK: "
                  + (f"robotic-arm {sdk['version']}" if sdk["available"] else f"not available — {sdk['reason']}"))

    timing = Table(title="timing (µs per pose; ratios = other median / kinebridge median)")
    for col in ("operation", "median", "p95", "× vs SDK", "× vs NumPy", "samples"):
        timing.add_column(col, justify="right" if col != "operation" else "left")
    labels = {
        ("fk", "kinebridge_single"): "FK kinebridge fk() per call",
        ("fk", "kinebridge_batch"): "FK kinebridge fk_batch per pose",
        ("fk", "numpy_ref"): "FK NumPy reference",
        ("fk", "sdk"): "FK SDK rm_algo_forward_kinematics",
        ("ik", "kinebridge_single"): "IK kinebridge ik() per call (warm)",
        ("ik", "kinebridge_path"): "IK kinebridge ik_path per pose",
        ("ik", "numpy_ref"): "IK NumPy reference DLS (warm)",
        ("ik", "sdk"): "IK SDK rm_algo_inverse_kinematics (warm)",
    }
    for (group, row), label in labels.items():
        r = result[group].get(row)
        if r is None:
            continue
        timing.add_row(label, f"{r['p50']:.3f}", f"{r['p95']:.3f}",
                       _fmt(r.get("x_vs_sdk"), ".1f") + ("×" if r.get("x_vs_sdk") else ""),
                       _fmt(r.get("x_vs_numpy"), ".1f") + ("×" if r.get("x_vs_numpy") else ""), str(r["n"]))
    console.print(timing)
    tg = result["targets"]
    console.print(f"target ≥ {tg['min_ratio_vs_sdk']:g}× the SDK: FK batch "
                  f"{_fmt(tg['fk_batch_met'], '')}, IK per streamed pose {_fmt(tg['ik_path_met'], '')}")

    acc = Table(title="FK accuracy (max over random configurations within the limits)")
    for col in ("variant", "vs SDK |Δpos| (m)", "vs SDK rotation (rad)", "vs NumPy ref max |Δ|"):
        acc.add_column(col, justify="right")
    for variant, fa in result["fk_accuracy"].items():
        acc.add_row(variant, _fmt(fa.get("sdk_max_pos_m")), _fmt(fa.get("sdk_max_rot_rad")),
                    _fmt(fa["numpy_ref_max_abs"]))
    console.print(acc)

    ika = Table(title=f"IK on random reachable targets, seeds perturbed by σ = 0.1 rad (solved = reported "
                      f"ok and within {result['tolerances']['pos_m']:g} m / {result['tolerances']['rot_rad']:g} rad)")
    for col in ("variant", "solver", "solved", "reported ok", "in limits", "max pos err (m)", "max rot err (rad)",
                "median pos err (m)"):
        ika.add_column(col, justify="right")
    for variant, solvers in result["ik_accuracy"].items():
        for name, r in solvers.items():
            ika.add_row(variant, name, f"{100 * r['success_rate']:.2f} %", f"{100 * r['reported_ok_rate']:.2f} %",
                        "—" if r["within_limits_rate"] is None else f"{100 * r['within_limits_rate']:.1f} %",
                        _fmt(r["max_pos_err_m"]), _fmt(r["max_rot_err_rad"]), _fmt(r["median_pos_err_m"]))
    console.print(ika)

    p = result["path"]
    pt = Table(title=f"streamed figure-eight, {p['n_points']} points (max Cartesian step "
                     f"{1e3 * p['max_cartesian_step_m']:.2f} mm, "
                     f"max rotation step {1e3 * p['max_rotation_step_rad']:.2f} mrad)")
    for col in ("solver", "ok", "max joint step (rad)", "max pos err (m)", "max rot err (rad)"):
        pt.add_column(col, justify="right")
    for name in ("kinebridge", "sdk"):
        if name in p:
            r = p[name]
            pt.add_row(name, f"{100 * r['ok_rate']:.1f} %", _fmt(r["max_joint_step_rad"]), _fmt(r["max_pos_err_m"]),
                       _fmt(r["max_rot_err_rad"]))
    console.print(pt)
