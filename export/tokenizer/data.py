"""Reading the Kine data set from disk, and the action chunks the tokenizers learn (numpy only).

The data set (``kinebridge data kine``, :mod:`kinebridge.bench.kine.generate`) is a directory with
``manifest.json`` and, per episode, ``episodes/ep_NNNNNN.npz`` (arrays) and ``episodes/ep_NNNNNN.json``
(language, attributes, labels). :class:`KineDataset` reads the manifest, filters episodes by split and
hold-out, and streams their arrays lazily (an ``.npz`` member is only decompressed when it is read), so a
training loop iterates episodes — or the chunk table — without holding the data set in memory.

An **action chunk** at step t is the joint motion over the next ``H`` steps relative to the joint state
observed at t (KineVLA's A_{t:t+H}, joint positions as on Kine-Realman):

    Δ_k = action_q[t + k − 1] − q[t],   k = 1 … H     (rad; action_q[t] is the target for step t + 1)

padded with the episode's last target past its end. The tokenizers see Δ / scale (per joint). The
matching end-effector chunk is ``action_tcp[t:t + H]``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["KineDataset", "Chunks", "episode_chunks", "FORMAT", "H_DEFAULT"]

FORMAT = "kinebridge-kine-1"
H_DEFAULT = 5


@dataclass
class Chunks:
    """A table of chunks: ``q0`` (n, 7) anchors, ``delta`` (n, H, 7) rad, ``tcp`` (n, H, 7) end-effector
    targets, ``episode`` (n,) episode ids, ``step`` (n,) t."""

    q0: np.ndarray
    delta: np.ndarray
    tcp: np.ndarray
    episode: np.ndarray
    step: np.ndarray

    def __len__(self) -> int:
        return int(self.q0.shape[0])

    def take(self, idx) -> "Chunks":
        return Chunks(self.q0[idx], self.delta[idx], self.tcp[idx], self.episode[idx], self.step[idx])

    @staticmethod
    def concat(parts) -> "Chunks":
        parts = [p for p in parts if len(p)]
        if not parts:
            return Chunks(np.zeros((0, 7)), np.zeros((0, H_DEFAULT, 7)), np.zeros((0, H_DEFAULT, 7)),
                          np.zeros(0, np.int64), np.zeros(0, np.int64))
        return Chunks(*(np.concatenate([getattr(p, k) for p in parts]) for k in ("q0", "delta", "tcp", "episode", "step")))


def episode_chunks(arrays, H: int = H_DEFAULT, stride: int = 1, episode: int = -1) -> Chunks:
    """Every chunk of one episode (``arrays`` with ``q``, ``action_q``, ``action_tcp``), every ``stride`` steps."""
    q = np.asarray(arrays["q"], float)
    aq = np.asarray(arrays["action_q"], float)
    at = np.asarray(arrays["action_tcp"], float)
    T = q.shape[0]
    if T < 1 or aq.shape != q.shape:
        raise ValueError(f"episode {episode}: q {q.shape} and action_q {aq.shape} must be (T ≥ 1, 7) alike")
    ts = np.arange(0, T, stride)
    idx = np.minimum(ts[:, None] + np.arange(H)[None], T - 1)        # (n, H) targets of steps t+1 … t+H
    delta = aq[idx] - q[ts][:, None, :]
    return Chunks(q[ts].copy(), delta, at[idx], np.full(ts.size, episode, np.int64), ts.astype(np.int64))


class KineDataset:
    """A Kine data set on disk (see the module docstring)."""

    def __init__(self, root):
        self.root = Path(root)
        mf = self.root / "manifest.json"
        if not mf.is_file():
            raise ValueError(f"{self.root}: no manifest.json — not a Kine data set (make one with "
                             f"`kinebridge data kine --out {self.root}`)")
        try:
            self.manifest = json.loads(mf.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{mf}: not valid JSON ({exc}); regenerate the data set") from None
        if self.manifest.get("format") != FORMAT:
            raise ValueError(f"{mf}: format {self.manifest.get('format')!r}, expected {FORMAT!r}")
        self.entries = list(self.manifest["episodes"])
        self._by_id = {e["id"]: e for e in self.entries}

    @property
    def config(self) -> dict:
        return self.manifest.get("config", {})

    @property
    def action_hz(self) -> float:
        return float(self.config.get("action_hz", 10.0))

    def episodes(self, split: str | None = None, holdout: bool | None = None, task: str | None = None) -> list[dict]:
        """Manifest entries of ``split`` ('coarse' | 'kine' | None = both), held out or not (None = both)."""
        out = self.entries
        if split is not None:
            if split not in ("coarse", "kine"):
                raise ValueError(f"split: expected 'coarse', 'kine' or None, got {split!r}")
            out = [e for e in out if e["split"] == split]
        if holdout is not None:
            out = [e for e in out if bool(e["holdout"]) == holdout]
        if task is not None:
            out = [e for e in out if e["task"] == task]
        return out

    def meta(self, eid: int) -> dict:
        e = self._by_id[eid]
        return json.loads((self.root / f"{e['file']}.json").read_text())

    def arrays(self, eid: int, keys=None) -> dict:
        """The arrays of episode ``eid`` (only ``keys`` if given; images are decompressed only when asked)."""
        e = self._by_id.get(eid)
        if e is None:
            raise ValueError(f"episode {eid}: not in {self.root}")
        with np.load(self.root / f"{e['file']}.npz", allow_pickle=False) as z:
            return {k: z[k] for k in (keys or z.files) if k in z.files}

    def iter_episodes(self, split=None, holdout=None, keys=None, shuffle: bool = False, seed: int = 0):
        """(entry, arrays) for each episode, optionally shuffled — the streaming path for training loops."""
        es = self.episodes(split, holdout)
        order = np.random.default_rng(seed).permutation(len(es)) if shuffle else range(len(es))
        for i in order:
            yield es[i], self.arrays(es[i]["id"], keys)

    def chunks(self, split=None, holdout=None, H: int = H_DEFAULT, stride: int = 1, cache: bool = True) -> Chunks:
        """The chunk table of ``split`` (cached under ``<root>/cache``, a memory-mapped ``.npy`` per field)."""
        tag = f"{split or 'all'}_{'all' if holdout is None else ('test' if holdout else 'train')}_H{H}_s{stride}"
        cdir = self.root / "cache" / tag
        fields = ("q0", "delta", "tcp", "episode", "step")
        n_eps = len(self.episodes(split, holdout))
        stamp = cdir / "episodes.txt"
        if cache and stamp.is_file() and stamp.read_text().strip() == str(n_eps):
            return Chunks(*(np.load(cdir / f"{f}.npy", mmap_mode="r") for f in fields))
        parts = [episode_chunks(a, H, stride, e["id"])
                 for e, a in self.iter_episodes(split, holdout, keys=("q", "action_q", "action_tcp"))]
        c = Chunks.concat(parts)
        if cache:
            cdir.mkdir(parents=True, exist_ok=True)
            for f in fields:
                np.save(cdir / f"{f}.npy", np.ascontiguousarray(getattr(c, f)))
            stamp.write_text(str(n_eps))
        return c
