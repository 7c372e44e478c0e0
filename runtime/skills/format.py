"""The skill file: a skill's demonstrations and their task frames, on disk and validated.

A skill is a set of demonstrations — flange position and orientation in the RM75 base frame, on
their own time axes — each with its task frames ``[start pose, goal frame]`` (the frames LFE-KMP
generalises over). On disk it is one ``.npz`` without pickles.

**Version 1** (``format = "kinebridge-skill-1"``, still read):

* ``meta``: a JSON object string — ``format``, ``name``, ``n_demos``, ``n_frames``, ``description``;
* ``demo{i}_t`` (T,), ``demo{i}_position`` (T, 3) m, ``demo{i}_orientation`` (T, 4) unit (w, x, y, z);
* ``frame{i}_{p}_origin`` (3,) m and ``frame{i}_{p}_rotation`` (3, 3), p = 0 start, 1 goal.

**Version 2** (``format = "kinebridge-skill-2"``, what :meth:`Skill.save` writes) adds what the bridge
layer needs (VL-MP Fig. 3: a local frame per frame of the demonstration, the last frame as the
interaction state), every addition optional:

* ``demo{i}_object`` (T, 7): the manipulated object's *local frame* at every sample, from its keypoints
  (origin K_p1, z from K_p2 to K_p1, x towards K_i; x, y, z, qw, qx, qy, qz in the base frame);
* ``demo{i}_final_master`` / ``demo{i}_final_slave`` (K, 3) m: the final frame's keypoints of the target
  (master) and of the manipulated object (slave), base frame, rows named by ``meta.keypoints.master`` /
  ``meta.keypoints.slave`` (a keypoint a demonstration did not see is a row of NaN — the only place NaN
  is allowed);
* ``meta`` gains ``interaction`` (the interaction state learned from the final frames:
  :class:`kinebridge.kernels.bridge.InteractionState` as a dict — normalised ``pos`` mean/variance,
  α mean/variance, the final local frame ``R_local``, θ, ``handle_clearance``, ``n``), ``keypoints``
  (``master`` and ``slave``: the keypoint names in row order, ``definitions``: what each keypoint is,
  ``slave_flange``: the held object's keypoints in the flange frame while it is held) and ``metadata``
  (free-form JSON: where the demonstrations came from — world, video, kinesthetic —, seeds, the
  physics' scores, the demonstrator's settings).

:meth:`Skill.load` checks every entry and names the first bad one with the fix. The registry of
skills kinebridge ships (and how each turns task parameters into frames) is
:mod:`kinebridge.runtime.skills.registry`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kinebridge.kernels import rm75
from kinebridge.kernels.lfe_kmp import Demonstration, TaskFrame

__all__ = ["Skill", "SKILL_FORMAT", "SKILL_FORMAT_V1", "task_frame_from_pose7", "pose7_from_task_frame"]

SKILL_FORMAT = "kinebridge-skill-2"
SKILL_FORMAT_V1 = "kinebridge-skill-1"
_FORMATS = {SKILL_FORMAT_V1: 1, SKILL_FORMAT: 2}


@dataclass
class Skill:
    """Demonstrations of one skill with their task frames ``frames[i] = [start, goal]``; the version-2
    additions (module docstring) are optional: ``objects[i]`` (T, 7) local object frames,
    ``final_keypoints[i]`` = {"master": {K: xyz}, "slave": {K: xyz}}, ``interaction`` (dict),
    ``keypoints`` (names, definitions, slave_flange), ``metadata``. ``version``: the file's format."""

    name: str
    demos: list
    frames: list
    description: str = ""
    objects: list | None = None
    final_keypoints: list | None = None
    interaction: dict | None = None
    keypoints: dict = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)
    version: int = 2

    def interaction_state(self):
        """The interaction state as :class:`kinebridge.kernels.bridge.InteractionState`; ValueError if the
        skill has none (a version-1 file, a skill recorded without a target)."""
        from kinebridge.kernels.bridge import InteractionState

        if not self.interaction:
            raise ValueError(f"skill {self.name!r} has no interaction state (record it with its target's keypoints: "
                             f"kinebridge skill record|fit)")
        return InteractionState.from_dict(self.interaction)

    @property
    def duration(self) -> float:
        return float(np.median([d.t[-1] - d.t[0] for d in self.demos]))

    def save(self, path) -> None:
        """One ``.npz`` (no pickle), version 2: ``demo{i}_t|position|orientation``, ``frame{i}_{p}_origin|rotation``
        and the version-2 entries that are set."""
        meta = {"format": SKILL_FORMAT, "name": self.name, "n_demos": len(self.demos),
                "n_frames": len(self.frames[0]), "description": self.description}
        names = {}
        if self.final_keypoints:
            for role in ("master", "slave"):
                names[role] = sorted({k for fk in self.final_keypoints for k in (fk.get(role) or {})})
        kp = dict(self.keypoints)
        kp.update({role: n for role, n in names.items()})
        if kp:
            meta["keypoints"] = _jsonable(kp)
        if self.interaction:
            meta["interaction"] = _jsonable(self.interaction)
        if self.metadata:
            meta["metadata"] = _jsonable(self.metadata)
        arrays = {"meta": np.array(json.dumps(meta))}
        for i, d in enumerate(self.demos):
            if self.objects is not None and self.objects[i] is not None:
                arrays[f"demo{i}_object"] = np.asarray(self.objects[i], float)
            if self.final_keypoints:
                for role in ("master", "slave"):
                    got = self.final_keypoints[i].get(role) or {}
                    arrays[f"demo{i}_final_{role}"] = np.array(
                        [np.asarray(got[k], float) if got.get(k) is not None else np.full(3, np.nan)
                         for k in names[role]], float).reshape(-1, 3)
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
            version = _FORMATS.get(meta.get("format"))
            if version is None:
                raise ValueError(f"{path}: 'meta' format {meta.get('format')!r}, expected {SKILL_FORMAT!r} (or "
                                 f"{SKILL_FORMAT_V1!r}); {fix}")
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
            extra = _load_v2(path, z, meta, version, demos, get, entry, fix) if version >= 2 else {}
        if any((d.orientation is None) != (demos[0].orientation is None) for d in demos):
            raise ValueError(f"{path}: some demonstrations have orientations and some do not; {fix}")
        return cls(meta["name"], demos, frames, str(meta.get("description", "")), version=version, **extra)


def _jsonable(x):
    """``x`` with numpy arrays and scalars as lists and floats (non-finite floats as None)."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, (np.floating, float)):
        return float(x) if np.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def _load_v2(path, z, meta, version, demos, get, entry, fix) -> dict:
    """The version-2 entries of an open skill file, checked (see the module docstring)."""
    out: dict = {}
    for key in ("keypoints", "metadata", "interaction"):
        v = meta.get(key)
        if v is not None and not isinstance(v, dict):
            raise ValueError(f"{path}: 'meta' field {key!r} must be a JSON object, got {type(v).__name__}; {fix}")
    kp = dict(meta.get("keypoints") or {})
    out["keypoints"], out["metadata"] = kp, dict(meta.get("metadata") or {})
    if meta.get("interaction") is not None:
        from kinebridge.kernels.bridge import InteractionState
        try:
            InteractionState.from_dict(meta["interaction"])
        except ValueError as exc:
            raise ValueError(f"{path}: 'meta' interaction: {exc}; {fix}") from None
        out["interaction"] = dict(meta["interaction"])
    flange = kp.get("slave_flange")
    if flange is not None:
        if not isinstance(flange, dict) or not all(
                isinstance(v, list) and len(v) == 3 and all(isinstance(c, (int, float)) and np.isfinite(c) for c in v)
                for v in flange.values()):
            raise ValueError(f"{path}: 'meta' keypoints.slave_flange must map keypoint names to [x, y, z] (m); {fix}")
    objects = [None] * len(demos)
    for i, d in enumerate(demos):
        if f"demo{i}_object" in z.files:
            o = get(f"demo{i}_object", (d.t.size, 7))
            if np.abs(np.linalg.norm(o[:, 3:], axis=1) - 1).max() > 1e-6:
                raise ValueError(f"{path}: 'demo{i}_object' must hold poses x, y, z, qw, qx, qy, qz with unit "
                                 f"quaternions; {fix}")
            objects[i] = o
    if any(o is not None for o in objects):
        out["objects"] = objects
    finals, any_final = [], False
    for i in range(len(demos)):
        row = {}
        for role in ("master", "slave"):
            key = f"demo{i}_final_{role}"
            if key not in z.files:
                continue
            names = kp.get(role)
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise ValueError(f"{path}: {key!r} needs 'meta' keypoints.{role}, the keypoint names of its rows; {fix}")
            a = entry(key)
            if a.dtype.kind != "f" or a.shape != (len(names), 3) or np.isinf(a).any():
                raise ValueError(f"{path}: {key!r} must hold ({len(names)}, 3) floats (rows {names}), got "
                                 f"{a.dtype} {a.shape}; {fix}")
            row[role] = {n: a[k].copy() for k, n in enumerate(names) if np.all(np.isfinite(a[k]))}
            any_final = True
        finals.append(row)
    if any_final:
        out["final_keypoints"] = finals
    return out


def task_frame_from_pose7(pose7) -> TaskFrame:
    """[x, y, z, qw, qx, qy, qz] → :class:`TaskFrame`."""
    T = rm75.pose7_to_matrix(np.asarray(pose7, float))
    return TaskFrame(T[:3, 3].copy(), T[:3, :3].copy())


def pose7_from_task_frame(f: TaskFrame) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = f.rotation, f.origin
    return rm75.matrix_to_pose7(T)
