"""``kinebridge warmup``: compile every Numba kernel the runtime uses, once, into the on-disk cache.

The first start of a node on a fresh machine otherwise compiles them itself — ~50 s for the simulated
controller alone on a loaded 2-core PC, long enough to look like a hang. ``scripts/main.sh`` and
``scripts/test.sh`` run this as part of set-up (it is quick when the cache is already warm); the
systemd recipe runs it after installing. The cache lives beside the modules (``__pycache__``) or in
``$NUMBA_CACHE_DIR``.
"""

from __future__ import annotations

import argparse
import time


def add(sub):
    w = sub.add_parser("warmup", help="compile the runtime's kernels into the cache (part of set-up)",
                       description=__doc__.split("\n\n")[0] + " Prints what it compiles and how long it took.",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    w.add_argument("--quiet", action="store_true", help="only the summary line")
    w.set_defaults(func=_run)


def _steps():
    """(what, function) pairs: each exercises a group of kernels the way the runtime first calls them."""
    import numpy as np

    def kinematics():
        from kinebridge.drivers.realman.sim.controller import _warm_up_kinematics
        from kinebridge.kernels import rm75
        for d7 in (rm75.D7_B, rm75.D7_6F):
            _warm_up_kinematics(d7)

    def setpoint_checks():
        from kinebridge.drivers.arm.driver import validate_joint_setpoint
        from kinebridge.drivers.arm.model import arm_model
        lim = arm_model("RM75-B").limits
        q = 0.5 * (lim.q_min + lim.q_max)
        validate_joint_setpoint(q, lim, q, 0.01, max_step=0.1)

    def control_loop():
        from kinebridge.drivers.arm.model import arm_model
        from kinebridge.kernels.chunk_blend import ChunkFollower
        from kinebridge.kernels import rm75
        lim = arm_model("RM75-B").limits
        f = ChunkFollower(7, lim.q_min, lim.q_max, lim.qd_max, lim.qdd_max, 0.005, 0.1)
        q = 0.5 * (lim.q_min + lim.q_max)
        f.reset(q)
        f.submit(0.0, 0.02, np.stack([q, q + 1e-3]), 0.0)
        f.step(0.005)
        f.hold(0.01)
        T = np.eye(4)
        rm75.fk_into(q, rm75.D7_B, T)

    def skill_planner():
        from kinebridge.runtime.skills.registry import bundled_skill, skill_names
        from kinebridge.runtime.trajectory.planner import SkillPlanner
        for name in skill_names():
            SkillPlanner(bundled_skill(name))       # fits LFE-KMP and runs one plan (GMM, GMR, KMP, IK)

    return [("RM75 kinematics (FK, IK, paths)", kinematics), ("setpoint checks", setpoint_checks),
            ("control loop (chunk blending, limiter)", control_loop),
            ("skill planner (GMM/EM, GMR, KMP, LFE-KMP, IK)", skill_planner)]


def _run(args) -> int:
    t0 = time.perf_counter()
    for what, fn in _steps():
        t = time.perf_counter()
        if not args.quiet:
            print(f"compiling {what} …", end="", flush=True)
        fn()
        if not args.quiet:
            print(f" {time.perf_counter() - t:.1f} s", flush=True)
    print(f"kinebridge kernels ready ({time.perf_counter() - t0:.1f} s)", flush=True)
    return 0
