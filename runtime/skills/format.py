"""The skill file: a skill's demonstrations and their task frames, on disk and validated.

A skill is a set of demonstrations — flange position and orientation in the RM75 base frame, on
their own time axes — each with its task frames ``[start pose, goal frame]`` (the frames LFE-KMP
generalises over). On disk it is one ``.npz`` without pickles (``format = "kinebridge-skill-1"``):

* ``meta``: a JSON object string — ``format``, ``name``, ``n_demos``, ``n_frames``, ``description``;
* ``demo{i}_t`` (T,), ``demo{i}_position`` (T, 3) m, ``demo{i}_orientation`` (T, 4) unit (w, x, y, z);
* ``frame{i}_{p}_origin`` (3,) m and ``frame{i}_{p}_rotation`` (3, 3), p = 0 start, 1 goal.

:meth:`Skill.load` checks every entry and names the first bad one with the fix. The registry of
skills kinebridge ships (and how each turns task parameters into frames) is
:mod:`kinebridge.runtime.skills.registry`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kinebridge.kernels import rm75
from kinebridge.kernels.lfe_kmp import Demonstration, TaskFrame

__all__ = ["Skill", "SKILL_FORMAT", "task_frame_from_pose7", "pose7_from_task_frame"]

SKILL_FORMAT = "kinebridge-skill-1"


@dataclass
class Skill:
    """Demonstrations of one skill with their task frames ``frames[i] = [start, goal]``."""

    name: str
    demos: list
    frames: list
    description: str = ""

    @property
    def duration(self) -> float:
        return float(np.median([d.t[-1] - d.t[0] for d in self.demos]))

    def save(self, path) -> None:
        """One ``.npz`` (no pickle): ``demo{i}_t|position|orientation``, ``frame{i}_{p}_origin|rotation``."""
        arrays = {"meta": np.array(json.dumps({"format": SKILL_FORMAT, "name": self.name, "n_demos": len(self.demos),
                                               "n_frames": len(self.frames[0]), "description": self.description}))}
        for i, d in enumerate(self.demos):
            arrays[f"demo{i}_t"] = np.asarray(d.t, float)
            arrays[f"demo{i}_position"] = np.asarray(d.position, float)
            if d.orientation is not None:
                arrays[f"demo{i}_orientation"] = np.asarray(d.orientation, float)
            for p, f in enumerate(self.frames[i]):
                arrays[f"frame{i}_{p}_origin"] = np.asarray(f.origin, float)
                arrays[f"frame{i}_{p}_rotation"] = np.asarray(f.rotation, float)
        np.savez_compressed(path, **arrays)

    @classmethod
    def load(cls, path) -> "Skill":
        """Read a file written by :meth:`save`; ValueError naming the bad or missing entry otherwise."""
        path = Path(path)
        fix = "regenerate it with Skill.save (bundled skills: kinebridge.runtime.skills.registry.write_bundled_skills())"
        try:
            z = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise ValueError(f"{path}: not a kinebridge skill file ({exc}); write one with Skill.save") from None
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise ValueError(f"{path}: a single .npy array, not a kinebridge skill file (.npz); "
                             "write one with Skill.save")
        with z:
            def entry(key):
                if key not in z.files:
                    raise ValueError(f"{path}: missing {key!r} — the file is incomplete; {fix}")
                try:
                    return z[key]
                except (ValueError, OSError, EOFError) as exc:   # object arrays (pickle), damaged member
                    raise ValueError(f"{path}: {key!r} cannot be read ({exc}); {fix}") from None

            if "meta" not in z.files:
                raise ValueError(f"{path}: no 'meta' entry — not a kinebridge skill file (write one with Skill.save)")
            raw = entry("meta")
            try:
                meta = json.loads(str(raw)) if raw.dtype.kind == "U" and raw.ndim == 0 else None
            except json.JSONDecodeError:
                meta = None
            if not isinstance(meta, dict):
                raise ValueError(f"{path}: 'meta' is not a JSON object string — the file is damaged; {fix}")
            if meta.get("format") != SKILL_FORMAT:
                raise ValueError(f"{path}: 'meta' format {meta.get('format')!r}, expected {SKILL_FORMAT!r}; {fix}")
            for key, kind in (("name", str), ("n_demos", int), ("n_frames", int)):
                v = meta.get(key)
                if not isinstance(v, kind) or isinstance(v, bool) or (kind is int and v < 1):
                    raise ValueError(f"{path}: 'meta' field {key!r} must be "
                                     f"{'a string' if kind is str else 'a positive integer'}, got {v!r}; {fix}")

            def get(key, shape):
                a = entry(key)
                if a.dtype.kind != "f" or a.shape != shape or not np.all(np.isfinite(a)):
                    want = "×".join(str(n) for n in shape) or "scalar"
                    raise ValueError(f"{path}: {key!r} must hold finite floats of shape ({want}), "
                                     f"got {a.dtype} {a.shape}; {fix}")
                return a

            demos, frames = [], []
            for i in range(meta["n_demos"]):
                t = entry(f"demo{i}_t")
                if (t.dtype.kind != "f" or t.ndim != 1 or t.size < 3 or not np.all(np.isfinite(t))
                        or np.any(np.diff(t) <= 0)):
                    raise ValueError(f"{path}: 'demo{i}_t' must hold at least 3 finite, strictly increasing times "
                                     f"(float, shape (T,)), got {t.dtype} {t.shape}; {fix}")
                n = t.size
                pos = get(f"demo{i}_position", (n, 3))
                ori = get(f"demo{i}_orientation", (n, 4)) if f"demo{i}_orientation" in z.files else None
                if ori is not None and np.abs(np.linalg.norm(ori, axis=1) - 1).max() > 1e-6:
                    raise ValueError(f"{path}: 'demo{i}_orientation' must hold unit quaternions (w, x, y, z); {fix}")
                demos.append(Demonstration(t=t, position=pos, orientation=ori))
                row = []
                for p in range(meta["n_frames"]):
                    R = get(f"frame{i}_{p}_rotation", (3, 3))
                    if np.abs(R.T @ R - np.eye(3)).max() > 1e-6 or np.linalg.det(R) < 0:
                        raise ValueError(f"{path}: 'frame{i}_{p}_rotation' is not a proper rotation matrix; {fix}")
                    row.append(TaskFrame(get(f"frame{i}_{p}_origin", (3,)), R))
                frames.append(row)
        if any((d.orientation is None) != (demos[0].orientation is None) for d in demos):
            raise ValueError(f"{path}: some demonstrations have orientations and some do not; {fix}")
        return cls(meta["name"], demos, frames, str(meta.get("description", "")))


def task_frame_from_pose7(pose7) -> TaskFrame:
    """[x, y, z, qw, qx, qy, qz] → :class:`TaskFrame`."""
    T = rm75.pose7_to_matrix(np.asarray(pose7, float))
    return TaskFrame(T[:3, 3].copy(), T[:3, :3].copy())


def pose7_from_task_frame(f: TaskFrame) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = f.rotation, f.origin
    return rm75.matrix_to_pose7(T)
