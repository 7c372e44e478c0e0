"""The reconstruction figure of a ``kinebridge train tokenizer`` run (matplotlib, from the ``eval`` extra):
held-out kine chunks (joint deltas over the chunk) and the tool path of held-out episodes decoded chunk by
chunk, original against every tokenizer."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kinebridge.export.tokenizer.codecs import load_codecs
from kinebridge.export.tokenizer.data import KineDataset, episode_chunks
from kinebridge.kernels import rm75

__all__ = ["figure", "decoded_trajectory"]

NAMES = ("bi-level-rvq", "rvq", "bins-256", "fast")
TCP = np.eye(4)
TCP[2, 3] = 0.08


def decoded_trajectory(codec, arrays) -> np.ndarray:
    """The episode's joint trajectory rebuilt from its chunks decoded every H steps, each relative to the
    joints observed at its start (T, 7)."""
    q = np.asarray(arrays["q"], float)
    H = codec.H
    c = episode_chunks(arrays, H, H)
    dec, _ = codec.decode(codec.encode(np.asarray(c.delta) / codec.scale))
    out = q.copy()
    for i, t in enumerate(c.step):
        n = min(H, len(q) - 1 - t)
        if n > 0:
            out[t + 1:t + 1 + n] = q[t] + dec[i, :n] * codec.scale
    return out


def figure(ds: KineDataset, root: Path, path: Path, n_chunks: int = 3, n_episodes: int = 2) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    codecs = load_codecs(root, NAMES)
    eps = ds.episodes("kine", True) or ds.episodes("kine")
    rng = np.random.default_rng(0)
    fig, axes = plt.subplots(2, max(n_chunks, n_episodes), figsize=(4.2 * max(n_chunks, n_episodes), 7.5))
    colors = {"original": "k", "bi-level-rvq": "tab:red", "rvq": "tab:blue", "bins-256": "tab:green", "fast": "tab:purple"}
    for j in range(n_chunks):
        e = eps[int(rng.integers(len(eps)))]
        a = ds.arrays(e["id"], ("q", "action_q", "action_tcp"))
        c = episode_chunks(a, 5, 1)
        k = int(rng.integers(len(c)))
        ax = axes[0, j]
        x = np.asarray(c.delta[k])
        steps = np.arange(1, x.shape[0] + 1)
        for jt in range(7):
            ax.plot(steps, x[:, jt] * 1e3, color=colors["original"], lw=2, alpha=0.6, label="original" if jt == 0 else None)
        for name, cd in codecs.items():
            y, _ = cd.decode(cd.encode(x[None] / cd.scale))
            for jt in range(7):
                ax.plot(steps, y[0, :, jt] * cd.scale[jt] * 1e3, color=colors[name], lw=1, ls="--",
                        label=name if jt == 0 else None)
        ax.set_title(f"episode {e['id']} ({e['task']}), chunk at step {k}", fontsize=9)
        ax.set_xlabel("step (0.1 s)")
        ax.set_ylabel("joint Δ (mrad)")
        if j == 0:
            ax.legend(fontsize=7)
    for j in range(n_episodes):
        e = eps[j % len(eps)]
        a = ds.arrays(e["id"], ("q", "action_q", "action_tcp"))
        d7 = ds.meta(e["id"]).get("d7", rm75.D7_B)
        ax = axes[1, j]

        def xy(q):
            return (rm75.fk_batch(np.ascontiguousarray(q), d7) @ TCP)[:, :2, 3]
        p = xy(a["q"])
        ax.plot(p[:, 1], p[:, 0], color="k", lw=2.5, alpha=0.5, label="original")
        for name, cd in codecs.items():
            pp = xy(decoded_trajectory(cd, a))
            ax.plot(pp[:, 1], pp[:, 0], color=colors[name], lw=1, label=name)
        ax.set_title(f"tool path, episode {e['id']} ({e['task']})\n{e['instruction'][:70]}", fontsize=7)
        ax.set_xlabel("y (m)")
        ax.set_ylabel("x (m)")
        ax.set_aspect("equal", adjustable="datalim")
        if j == 0:
            ax.legend(fontsize=7)
    for j in range(n_episodes, axes.shape[1]):
        axes[1, j].axis("off")
    for j in range(n_chunks, axes.shape[1]):
        axes[0, j].axis("off")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
